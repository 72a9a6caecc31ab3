"""The exact kNN kernel (nbknn.knn.gemm, no Spark) against the tools a user would pick instead.

    python bench/bench_knn_kernel.py [--n 50000] [--d 128] [--k 10] [--reps 3]   # make bench-knn-kernel

All-points k nearest neighbours of Gaussian data, each side in its own process with 2 threads (two
OpenMP runtimes in one process slow each other), interleaved, ``--reps`` times:

* ours: ``self_join_topk`` (float32 products, proven bound, exact float64 re-rank, symmetric);
* scikit-learn brute force, euclidean in float64 (cosine: euclidean on L2-normalised rows, its
  fast path to the same neighbours);
* FAISS ``IndexFlatL2`` / ``IndexFlatIP`` on normalised rows, float32 (faiss-cpu, installed by the
  make target when missing).

Agreement: on a sample of rows, the share whose ids equal a direct float64 brute force (distances
from the differences, ties by id). Writes ``bench/results/knn_kernel.json``; the last lines are
``knn kernel n=.. d=.. k=.. <metric>: ours/faiss=<x> ours/sklearn=<y> agreement=<z>`` (throughput
ratios: above 1 means ours is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import common
import numpy as np

METHODS = ("ours", "sklearn", "faiss")
SAMPLE_ROWS = 1000


def make_data(n: int, d: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, d))


def sample_rows(n: int) -> np.ndarray:
    return np.sort(np.random.default_rng(123).choice(n, min(SAMPLE_ROWS, n), replace=False))


def run_ours(X: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, dict]:
    from nbknn.knn.gemm import self_join_topk

    ids = np.arange(X.shape[0], dtype=np.int64)
    self_join_topk(X[:2000], ids[:2000], k, metric, n_threads=2)  # numba's compile or cache load
    started = time.perf_counter()
    neighbours, _, info = self_join_topk(X, ids, k, metric, n_threads=2)
    return neighbours, {"seconds": time.perf_counter() - started, "steps": info["timings"],
                        "fallback_rows": info["fallback_rows"]}


def run_sklearn(X: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, dict]:
    from sklearn.neighbors import NearestNeighbors

    started = time.perf_counter()
    rows = X / np.linalg.norm(X, axis=1)[:, None] if metric == "cosine" else X
    model = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="euclidean", n_jobs=-1).fit(rows)
    _, neighbours = model.kneighbors(None, n_neighbors=k)  # the query itself left out
    return neighbours, {"seconds": time.perf_counter() - started}


def run_faiss(X: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, dict]:
    import faiss

    faiss.omp_set_num_threads(2)
    n, d = X.shape
    started = time.perf_counter()
    rows = np.ascontiguousarray(X, dtype=np.float32)
    if metric == "cosine":
        faiss.normalize_L2(rows)
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexFlatL2(d)
    index.add(rows)
    _, found = index.search(rows, k + 1)
    # Leave the query itself out (or the last neighbour when the query is not among the k + 1).
    keep = found != np.arange(n)[:, None]
    keep[keep.all(axis=1), -1] = False
    return found[keep].reshape(n, k), {"seconds": time.perf_counter() - started}


def worker(method: str, metric: str, n: int, d: int, k: int) -> None:
    """One timed run in this process; prints its result and the sample rows' neighbour ids."""
    X = make_data(n, d)
    neighbours, result = {"ours": run_ours, "sklearn": run_sklearn, "faiss": run_faiss}[method](X, k, metric)
    result["sample_ids"] = np.asarray(neighbours)[sample_rows(n)].astype(int).tolist()
    print("RESULT " + json.dumps(result))


def exact_sample(X: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Neighbour ids of the sample rows by direct float64 brute force, ties by id."""
    norms = np.sqrt((X * X).sum(axis=1))
    found = []
    for i in sample_rows(X.shape[0]):
        if metric == "cosine":
            distance = 1.0 - (X @ X[i]) / (norms * norms[i])
        else:
            difference = X - X[i]
            distance = np.sqrt((difference * difference).sum(axis=1))
        distance[i] = np.inf
        order = np.lexsort((np.arange(X.shape[0]), distance))[:k]
        found.append(order)
    return np.array(found)


def timed_run(method: str, metric: str, args, env: dict) -> dict:
    command = [sys.executable, __file__, "--worker", method, metric, "--n", str(args.n), "--d", str(args.d),
               "--k", str(args.k)]
    process = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode or not lines:
        sys.exit(f"{method} {metric} failed:\n{process.stdout[-2000:]}\n{process.stderr[-4000:]}")
    return json.loads(lines[0][len("RESULT "):])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--metrics", default="euclidean,cosine")
    parser.add_argument("--worker", nargs=2)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker[0], args.worker[1], args.n, args.d, args.k)

    env = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "NUMBA_NUM_THREADS": "2"}
    # Older OpenBLAS builds need these on some CPUs; they slow a current numpy (benchmarks only).
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(name, None)
    metrics = args.metrics.split(",")
    runs: dict = {(method, metric): [] for method in METHODS for metric in metrics}
    for rep in range(args.reps):
        for metric in metrics:
            for method in METHODS[rep % len(METHODS):] + METHODS[: rep % len(METHODS)]:  # interleaved
                result = timed_run(method, metric, args, env)
                runs[(method, metric)].append(result)
                common.log(f"rep {rep} {metric} {method}: {result['seconds']:.2f} s")

    X = make_data(args.n, args.d)
    results = {"benchmark": "knn_kernel", "machine": common.machine(), "n": args.n, "d": args.d, "k": args.k,
               "repetitions": args.reps, "metrics": {}}
    closing = []
    for metric in metrics:
        exact = exact_sample(X, args.k, metric)
        row = {}
        for method in METHODS:
            seconds = [r["seconds"] for r in runs[(method, metric)]]
            sample = np.array(runs[(method, metric)][0]["sample_ids"])
            row[method] = {"median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3),
                           "max_s": round(max(seconds), 3),
                           "sample_rows_equal_to_exact": float(np.mean((sample == exact).all(axis=1)))}
        row["ours"]["steps_median_s"] = {
            step: round(statistics.median(r["steps"][step] for r in runs[("ours", metric)]), 3)
            for step in runs[("ours", metric)][0]["steps"]}
        row["ours"]["fallback_rows"] = max(r["fallback_rows"] for r in runs[("ours", metric)])
        faiss_ratio = common.ratio(row["faiss"]["median_s"], row["ours"]["median_s"])
        sklearn_ratio = common.ratio(row["sklearn"]["median_s"], row["ours"]["median_s"])
        row["throughput_ours_over_faiss"], row["throughput_ours_over_sklearn"] = faiss_ratio, sklearn_ratio
        results["metrics"][metric] = row
        closing.append(f"knn kernel n={args.n} d={args.d} k={args.k} {metric}: ours/faiss={faiss_ratio} "
                       f"ours/sklearn={sklearn_ratio} agreement={row['ours']['sample_rows_equal_to_exact']}")
    common.write_results("knn_kernel", results)
    print("\n".join(closing))


if __name__ == "__main__":
    main()
