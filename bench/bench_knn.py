"""Exact all-points kNN on Spark (both exact modes) against the tools a user would pick instead.

    python bench/bench_knn.py [--sizes 50000,200000] [--d 128] [--k 10] [--reps 3] [--large-reps 1]
                              [--metrics euclidean,cosine]                                   # make bench-knn

Gaussian vectors, k nearest neighbours of every vector, the vector itself left out. Every method
runs in a process of its own (two OpenMP runtimes in one process slow each other), with both
cores, interleaved, ``--reps`` times at the first size and ``--large-reps`` at the others:

* ``blocked`` and ``broadcast``: this pipeline's modes (``nbknn.knn.job.compute_neighbors`` on a
  persisted, counted frame read from Parquet, written to Parquet sorted by id as the application
  publishes it) on ``local[2]``, tasks of two cores as the application's session sets them:
  Spark job time; the JVM's start-up, reading the input and a warm-up run on a small set are not
  timed;
* scikit-learn brute force, euclidean in float64 (cosine: euclidean on L2-normalised rows, its
  fast path to the same neighbours), ``n_jobs=-1``;
* FAISS ``IndexFlatL2`` (cosine: ``IndexFlatIP`` on normalised rows), float32, 2 threads;
* the classic per-row recipe (a fitted model broadcast, ``kneighbors`` once per row in an RDD
  ``map``), timed on ``--row-sample`` rows inside its tasks and extrapolated as
  ``n * mean call / 2 cores``: a lower bound of its time.

Agreement: on a sample of rows, the share whose neighbour ids equal a direct float64 brute force
(distances from the differences, ties by id) and, for our modes, whose distances are within 1e-9
relative. Writes ``bench/results/<name>.json``; the last lines, one per metric at the first size:
``knn n=.. d=.. k=.. <metric>: ours/faiss=<x> ours/sklearn=<y> agreement=<z>``, throughput ratios
(above 1 means ours is faster) of the slower of the two exact modes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np
from bench_knn_kernel import exact_sample, make_data, run_faiss, run_sklearn, sample_rows

MODES = ("blocked", "broadcast")
METHODS = MODES + ("sklearn", "faiss")


def write_vectors(X: np.ndarray, path: Path) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, d = X.shape
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), d).cast(pa.list_(pa.float64()))
    table = pa.table({"id": pa.array(np.arange(n, dtype=np.int64)), "vector": vectors})
    path.mkdir(parents=True, exist_ok=True)
    rows = -(-n // 8)  # several files: the frame gets several partitions, as a real input would
    for i, start in enumerate(range(0, n, rows)):
        pq.write_table(table.slice(start, rows), path / f"part-{i:03d}.parquet")
    return path.as_uri()


def spark_run(spark, uri: str, mode: str, k: int, metric: str, out_uri: str) -> dict:
    """One mode on the vectors at ``uri``: (seconds of compute + write, details)."""
    from pyspark import StorageLevel

    from nbknn.knn.job import KnnOptions, compute_neighbors, write_neighbors

    frame = spark.read.parquet(uri).persist(StorageLevel.MEMORY_AND_DISK)
    frame.count()
    started = time.perf_counter()
    result = compute_neighbors(frame, frame, mode, KnnOptions(k=k, metric=metric, mode=mode))
    try:
        write_neighbors(result, out_uri)
    finally:
        result.release()
    seconds = time.perf_counter() - started
    frame.unpersist()
    return {"seconds": seconds, "details": {**result.details, **result.counters()}}


def run_spark_mode(mode: str, X: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, dict]:
    from nbknn.common.session import DAEMON_MODULE_KEY, KNN_WORKER_DAEMON_MODULE, TASK_CPUS_KEY, executor_cores

    # The kNN application's own session settings (build_session sets them for spark-submit): its
    # worker daemon, and tasks with every core of the executor.
    conf = {DAEMON_MODULE_KEY: KNN_WORKER_DAEMON_MODULE, TASK_CPUS_KEY: str(executor_cores(common.MASTER, None) or 1)}
    spark, startup = common.start_spark(f"bench-knn-{mode}", conf)
    workdir = Path(tempfile.mkdtemp(prefix="nbknn-bench-knn-"))
    try:
        # Untimed warm-up: Python workers, imports, the kernel's compiled loops.
        warm = write_vectors(X[:3000], workdir / "warm")
        spark_run(spark, warm, mode, k, metric, (workdir / "warm-out").as_uri())
        uri = write_vectors(X, workdir / "vectors")
        out = (workdir / "out").as_uri()
        result = spark_run(spark, uri, mode, k, metric, out)
        table = spark.read.parquet(out).where(f"id in ({','.join(map(str, sample_rows(X.shape[0])))})").toArrow()
    finally:
        spark.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    order = np.argsort(np.asarray(table.column("id")))
    result["sample_distances"] = np.array(table.column("distances").to_pylist())[order].tolist()
    result["spark_startup_s"] = startup
    return np.array(table.column("neighbor_ids").to_pylist())[order], result


def per_row_recipe(X: np.ndarray, k: int, metric: str, rows: int) -> dict:
    """The classic recipe on ``rows`` rows (2 partitions): seconds of the ``kneighbors`` calls."""
    from sklearn.neighbors import NearestNeighbors

    spark, _ = common.start_spark("bench-knn-recipe")
    try:
        model = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric=metric).fit(X)
        shared = spark.sparkContext.broadcast(model)

        def one_row(i):
            import time as time_

            started = time_.perf_counter()
            shared.value.kneighbors(shared.value._fit_X[i : i + 1])
            return time_.perf_counter() - started

        calls = spark.sparkContext.parallelize(range(rows), 2).map(one_row).collect()
    finally:
        spark.stop()
    return {"sample_rows": rows, "seconds_per_kneighbors_call": sum(calls) / rows,
            "estimated_seconds": X.shape[0] * (sum(calls) / rows) / 2,
            "rule": "n * mean call time / 2 cores (lower bound: no job or conversion cost)"}


def worker(method: str, metric: str, n: int, d: int, k: int, row_sample: int) -> None:
    """One timed run in this process; prints its result and the sample rows' neighbours."""
    X = make_data(n, d)
    if method == "recipe":
        print("RESULT " + json.dumps(per_row_recipe(X, k, metric, row_sample)))
        return
    if method in MODES:
        sample_ids, result = run_spark_mode(method, X, k, metric)
    else:
        neighbours, result = {"sklearn": run_sklearn, "faiss": run_faiss}[method](X, k, metric)
        sample_ids = np.asarray(neighbours)[sample_rows(n)]
    result["sample_ids"] = np.asarray(sample_ids).astype(int).tolist()
    print("RESULT " + json.dumps(result))


def timed_run(method: str, metric: str, n: int, args, env: dict) -> dict:
    command = [sys.executable, __file__, "--worker", method, metric, "--sizes", str(n), "--d", str(args.d),
               "--k", str(args.k), "--row-sample", str(args.row_sample)]
    process = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode or not lines:
        sys.exit(f"{method} {metric} n={n} failed:\n{process.stdout[-2000:]}\n{process.stderr[-4000:]}")
    return json.loads(lines[0][len("RESULT "):])


def exact_sample_distances(X: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Distances of the sample rows' exact neighbours (direct float64, from the differences)."""
    norms = np.sqrt((X * X).sum(axis=1))
    out = []
    for i, row in zip(sample_rows(X.shape[0]), exact_sample(X, k, metric)):
        if metric == "cosine":
            out.append(1.0 - (X[row] @ X[i]) / (norms[row] * norms[i]))
        else:
            difference = X[row] - X[i]
            out.append(np.sqrt((difference * difference).sum(axis=1)))
    return np.array(out)


def summarise(runs: list[dict], exact_ids: np.ndarray, exact_d: np.ndarray, ours: bool) -> dict:
    seconds = [r["seconds"] for r in runs]
    row = {"median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3),
           "max_s": round(max(seconds), 3), "runs": len(runs)}
    ids_equal = np.array([(np.array(r["sample_ids"]) == exact_ids).all(axis=1) for r in runs])
    row["sample_rows_ids_equal_to_exact"] = float(ids_equal.mean())
    if ours:
        close = [np.isclose(np.array(r["sample_distances"]), exact_d, rtol=1e-9, atol=0).all(axis=1) for r in runs]
        row["sample_rows_ids_and_distances_exact"] = float((ids_equal & np.array(close)).mean())
        row["details"] = runs[-1]["details"]
        row["exact_fallback_rows"] = max(r["details"].get("exact_fallback_rows", 0) for r in runs)
        # The kernel's seconds inside the tasks, per core: the rest of the job's time is Spark's.
        row["kernel_seconds_per_core"] = round(
            statistics.median(r["details"].get("kernel_task_seconds", 0.0) for r in runs) / 2, 3)
    return row


def bench_size(n: int, reps: int, metrics: list[str], args, env: dict) -> dict:
    X = make_data(n, args.d)
    result = {"n": n, "d": args.d, "k": args.k, "repetitions": reps, "metrics": {}}
    for metric in metrics:
        runs: dict = {method: [] for method in METHODS}
        for rep in range(reps):
            shift = rep % len(METHODS)
            for method in METHODS[shift:] + METHODS[:shift]:  # interleaved
                runs[method].append(timed_run(method, metric, n, args, env))
                common.log(f"n={n} {metric} rep {rep} {method}: {runs[method][-1]['seconds']:.2f} s")
        recipe = timed_run("recipe", metric, n, args, env)
        exact_ids, exact_d = exact_sample(X, args.k, metric), exact_sample_distances(X, args.k, metric)
        row = {method: summarise(runs[method], exact_ids, exact_d, method in MODES) for method in METHODS}
        row["per_row_recipe"] = {key: round(value, 6) if isinstance(value, float) else value
                                 for key, value in recipe.items()}
        slower = max(MODES, key=lambda mode: row[mode]["median_s"])
        row["slower_exact_mode"] = slower
        for mode in MODES:
            row[mode]["throughput_over_faiss"] = common.ratio(row["faiss"]["median_s"], row[mode]["median_s"])
            row[mode]["throughput_over_sklearn"] = common.ratio(row["sklearn"]["median_s"], row[mode]["median_s"])
            row[mode]["speedup_over_per_row_recipe"] = common.ratio(recipe["estimated_seconds"], row[mode]["median_s"])
        result["metrics"][metric] = row
    return result


def closing_line(size: dict, metric: str) -> str:
    row = size["metrics"][metric]
    slower = row[row["slower_exact_mode"]]
    return (f"knn n={size['n']} d={size['d']} k={size['k']} {metric}: ours/faiss={slower['throughput_over_faiss']} "
            f"ours/sklearn={slower['throughput_over_sklearn']} "
            f"agreement={slower['sample_rows_ids_and_distances_exact']}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50000,200000")
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3, help="repetitions at the first size")
    parser.add_argument("--large-reps", type=int, default=1, help="repetitions at the other sizes")
    parser.add_argument("--row-sample", type=int, default=200, help="rows timed for the per-row recipe")
    parser.add_argument("--metrics", default="euclidean,cosine")
    parser.add_argument("--name", default="knn")
    parser.add_argument("--worker", nargs=2)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker[0], args.worker[1], int(args.sizes), args.d, args.k, args.row_sample)

    env = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "NUMBA_NUM_THREADS": "2"}
    # Older OpenBLAS builds need these on some CPUs; they slow a current numpy (benchmarks only).
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(name, None)
    metrics = args.metrics.split(",")
    results = {"benchmark": "knn_all_points", "machine": common.machine(), "sizes": []}
    for i, n in enumerate(int(s) for s in args.sizes.split(",")):
        results["sizes"].append(bench_size(n, args.reps if i == 0 else args.large_reps, metrics, args, env))
        common.write_results(args.name, results)
    print("\n".join(closing_line(results["sizes"][0], metric) for metric in metrics))


if __name__ == "__main__":
    main()
