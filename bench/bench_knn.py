"""Exact all-points kNN: this pipeline's blocked and broadcast modes vs scikit-learn brute force
vs the classic per-row recipe, on the same vectors and the same 2 cores.

    python bench/bench_knn.py [--sizes 20000,50000] [--d 128] [--k 10] [--reps 3] [--large-reps 1]
                              [--large-metrics euclidean]

Scaled down for a shared 2-core machine: the target sizes are n = 50 000 and 200 000 (make bench-large); here 20 000 (both
metrics, 3 repetitions) and 50 000 (euclidean, 1 repetition).

* scikit-learn: :func:`sklearn_all_points` (``NearestNeighbors(algorithm="brute")``, fit
  + ``kneighbors()`` over all points, self excluded), one process, its BLAS on both cores.
* this pipeline: ``nbknn.knn.job.compute_neighbors`` in ``blocked`` and ``broadcast`` mode on a
  persisted, counted frame read from Parquet (reading and validating are not timed on either
  side), output written to Parquet sorted by id as the application publishes it
  (``nbknn.knn.job.write_sorted_by_id``); then checked against scikit-learn (same neighbour ids).
* the classic recipe: a fitted ``NearestNeighbors`` is broadcast and ``kneighbors`` is called once
  per row in an RDD ``map``. Running it over every row would take far too long, so it runs on a
  sample of ``s`` rows, each ``kneighbors`` call timed inside its task; the whole run is estimated
  as ``n * (mean call time) / 2`` (2 cores), leaving out the job's fixed cost and the per-row
  conversions: a lower bound of the recipe's time, i.e. in the recipe's favour.

Throughput is in (query, reference) pairs per second: n * (n - 1) pairs for an all-points run.
Data: Gaussian vectors, float64, fixed seed (no distance ties, so the neighbour ids must match).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import common
import numpy as np
from common import Timer, log, ratio

METRICS = ("euclidean", "cosine")


def write_vectors(X: np.ndarray, path: Path) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, d = X.shape
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), d).cast(pa.list_(pa.float64()))
    table = pa.table({"id": pa.array(np.arange(n, dtype=np.int64)), "vector": vectors})
    path.mkdir(parents=True, exist_ok=True)
    # Several files: the frame gets several partitions, as a real input would.
    rows = -(-n // 8)
    for i, start in enumerate(range(0, n, rows)):
        pq.write_table(table.slice(start, rows), path / f"part-{i:03d}.parquet")
    return path.as_uri()


def sklearn_all_points(X: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Neighbour row numbers (n, k) of every row of X, itself excluded: scikit-learn brute force."""
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(X).kneighbors()[1]


def spark_mode(spark, frame, mode: str, k: int, metric: str, out_uri: str):
    """Run one exact mode to Parquet; returns (neighbour ids (n, k) in id order, details)."""
    from nbknn.knn.job import KnnOptions, compute_neighbors, write_sorted_by_id

    result = compute_neighbors(frame, frame, mode, KnnOptions(k=k, metric=metric, mode=mode))
    try:
        write_sorted_by_id(result.frame, out_uri)
    finally:
        result.release()
    return {**result.details, "query_rows_computed": result.rows_computed.value}


def read_neighbors(spark, out_uri: str) -> np.ndarray:
    table = spark.read.parquet(out_uri).select("id", "neighbor_ids").toArrow()
    order = np.argsort(np.asarray(table.column("id")))
    ids = np.array(table.column("neighbor_ids").to_pylist(), dtype=np.int64)
    return ids[order]


def per_row_recipe(spark, frame, X: np.ndarray, k: int, metric: str, rows: int) -> dict:
    """The classic recipe over the first ``rows`` rows of the frame (2 partitions): job seconds and
    the summed seconds of the ``kneighbors`` calls themselves (timed inside the tasks)."""
    from sklearn.neighbors import NearestNeighbors

    model = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric=metric).fit(X)
    sample = frame.where(frame.id < rows).select("id", "vector").repartition(2)
    sample = sample.persist()
    sample.count()
    started = time.perf_counter()
    shared = spark.sparkContext.broadcast(model)

    def one_row(row):
        import time as time_

        import numpy as np_

        t = time_.perf_counter()
        dist, idx = shared.value.kneighbors(np_.asarray(row["vector"]).reshape(1, -1))
        return row["id"], idx[0].tolist(), dist[0].tolist(), time_.perf_counter() - t

    out = sample.rdd.map(one_row).collect()
    seconds = time.perf_counter() - started
    shared.destroy()
    sample.unpersist()
    assert len(out) == rows, (len(out), rows)
    return {"rows": rows, "job_seconds": seconds, "call_seconds": sum(r[3] for r in out)}


def bench_size(spark, n: int, d: int, k: int, reps: int, row_sample: int, workdir: Path,
               metrics: tuple[str, ...] = METRICS) -> dict:
    from pyspark import StorageLevel

    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, d))
    uri = write_vectors(X, workdir / f"vectors-{n}")
    frame = spark.read.parquet(uri).persist(StorageLevel.MEMORY_AND_DISK)
    frame.count()
    pairs = n * (n - 1)
    result = {"n": n, "d": d, "k": k, "repetitions": reps, "pairs": pairs, "metrics": {}}
    for metric in metrics:
        timer = Timer()
        agreement = {}
        for rep in range(reps):
            log(f"n={n} {metric} rep {rep}: scikit-learn")
            with timer.time("sklearn"):
                # The frame's ids are the row numbers (write_vectors).
                expected = sklearn_all_points(X, k, metric)
            for mode in ("blocked", "broadcast"):
                log(f"n={n} {metric} rep {rep}: {mode}")
                out = (workdir / f"out-{n}-{metric}-{mode}").as_uri()
                with timer.time(mode):
                    details = spark_mode(spark, frame, mode, k, metric, out)
                if rep == reps - 1:
                    got = read_neighbors(spark, out)
                    agreement[mode] = round(float(np.mean(np.all(got == expected, axis=1))), 6)
                    result.setdefault("mode_details", {})[mode] = details
        log(f"n={n} {metric}: per-row recipe on {row_sample} rows")
        recipe = per_row_recipe(spark, frame, X, k, metric, row_sample)
        per_call = recipe["call_seconds"] / row_sample
        # n calls spread over the 2 cores; the job's fixed cost and the per-row conversions are left
        # out, so this is a lower bound of the recipe's time (in the recipe's favour).
        recipe_estimate = n * per_call / 2

        sklearn_s = timer.median("sklearn")
        row = {
            "seconds": {"sklearn": round(sklearn_s, 3), **{m: round(timer.median(m), 3) for m in ("blocked", "broadcast")},
                        "per_row_recipe_estimated": round(recipe_estimate, 1)},
            "pairs_per_second": {
                "sklearn": round(pairs / sklearn_s),
                "blocked": round(pairs / timer.median("blocked")),
                "broadcast": round(pairs / timer.median("broadcast")),
                "per_row_recipe_estimated": round(pairs / recipe_estimate),
            },
            "per_row_recipe": {"sample_rows": row_sample, "sample_job_seconds": round(recipe["job_seconds"], 3),
                               "seconds_per_kneighbors_call": round(per_call, 6), "extrapolated": True,
                               "rule": "n * mean call time / 2 cores (lower bound: no job or conversion cost)"},
            "agreement_with_sklearn": agreement,
            "timings": timer.summary(),
        }
        for mode in ("blocked", "broadcast"):
            row[f"throughput_ratio_{mode}_over_sklearn"] = ratio(sklearn_s, timer.median(mode))
            row[f"speedup_{mode}_over_per_row_recipe"] = ratio(recipe_estimate, timer.median(mode))
        result["metrics"][metric] = row
        log(f"n={n} {metric}: {row['seconds']}")
    frame.unpersist()
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20000,50000")
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3, help="repetitions at the first size")
    parser.add_argument("--large-reps", type=int, default=1, help="repetitions at the other sizes")
    parser.add_argument("--row-sample", type=int, default=400, help="rows timed for the per-row recipe")
    parser.add_argument("--metrics", default=",".join(METRICS), help="metrics at the first size")
    parser.add_argument("--large-metrics", default="euclidean", help="metrics at the sizes after the first")
    parser.add_argument("--name", default="knn")
    args = parser.parse_args(argv)

    results = {"benchmark": "knn_all_points", "machine": common.machine()}
    spark, startup = common.start_spark("bench-knn")
    results["spark_startup_s"] = round(startup, 3)
    log(f"Spark started in {startup:.1f} s")
    workdir = Path(tempfile.mkdtemp(prefix="nbknn-bench-knn-"))
    try:
        # Warm-up (untimed): Python workers, imports and BLAS of every side on a small set.
        log("warm-up")
        bench_size(spark, 1000, args.d, args.k, 1, 20, workdir / "warmup")
        results["sizes"] = []
        for i, n in enumerate(int(s) for s in args.sizes.split(",")):
            reps = args.reps if i == 0 else args.large_reps
            metrics = tuple((args.metrics if i == 0 else args.large_metrics).split(","))
            results["sizes"].append(bench_size(spark, n, args.d, args.k, reps, args.row_sample, workdir, metrics))
            common.write_results(args.name, results)
    finally:
        spark.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
