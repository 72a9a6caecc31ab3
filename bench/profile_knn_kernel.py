"""Where the blocked kNN kernel spends its time, without Spark: one process, the same vectors.

    python bench/profile_knn_kernel.py [--n 20000] [--d 128] [--k 10] [--metrics euclidean]

For the block plan the blocked mode uses by default (nbknn.knn.planning.block_plan with the
default budget), all (query chunk x block) steps are run in a loop and split into:
``distances`` (topk.block_distances: scikit-learn pairwise_distances, GEMM), ``select``
(topk._select_sorted: partition + exact tie-aware sort) and ``merge`` (topk.merge_topk),
with BLAS limited to 1 thread (what each of the two Spark tasks should use on 2 cores) and with
BLAS on 2 threads (its default here, i.e. 4 threads on 2 cores when two tasks run at once).
scikit-learn brute force (``kneighbors()``, ArgKmin) over the same data is the anchor. The kernel
total with 1 thread, divided by 2 (two tasks in parallel), is the best a 2-core Spark run of the
current kernel can do.
"""

from __future__ import annotations

import argparse
import time

import common
import numpy as np
from common import log
from threadpoolctl import threadpool_limits


def kernel_seconds(ids, X, k: int, metric: str, plan) -> dict:
    from sklearn.utils.extmath import row_norms

    from nbknn.knn.topk import TopK, _select_sorted, block_distances, merge_topk

    parts = {"distances": 0.0, "select": 0.0, "merge": 0.0}
    n, q, b = X.shape[0], plan.query_chunk_rows, plan.block_rows
    for q0 in range(0, n, q):
        Q, qids = X[q0 : q0 + q], ids[q0 : q0 + q]
        merged = None
        for r0 in range(0, n, b):
            R, rids = X[r0 : r0 + b], ids[r0 : r0 + b]
            t = time.perf_counter()
            norms = row_norms(R, squared=True) if metric == "euclidean" else None
            D = block_distances(Q, R, metric, norms)
            pad = qids[:, None] == rids[None, :]
            if pad.any():
                D[pad] = np.inf
            else:
                pad = None
            t2 = time.perf_counter()
            w = min(k, R.shape[0])
            cols = _select_sorted(D, pad, rids, w)
            local = TopK(rids[cols], np.take_along_axis(D, cols, axis=1))
            t3 = time.perf_counter()
            merged = local if merged is None else merge_topk(merged, local, k)
            t4 = time.perf_counter()
            parts["distances"] += t2 - t
            parts["select"] += t3 - t2
            parts["merge"] += t4 - t3
    parts["total"] = sum(parts.values())
    return {key: round(value, 3) for key, value in parts.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--metrics", default="euclidean", help="comma-separated (cosine is slow: minutes)")
    parser.add_argument("--name", default="knn_profile")
    args = parser.parse_args(argv)

    from bench_knn import sklearn_all_points

    from nbknn.contract import DEFAULT_BLOCK_BYTES_BUDGET
    from nbknn.knn.planning import block_plan

    rng = np.random.default_rng(args.n)
    X = rng.standard_normal((args.n, args.d))
    ids = np.arange(args.n, dtype=np.int64)
    plan = block_plan(args.n, args.d, args.k, DEFAULT_BLOCK_BYTES_BUDGET)
    results = {"benchmark": "knn_kernel_profile", "machine": common.machine(), "n": args.n, "d": args.d,
               "k": args.k, "block_rows": plan.block_rows, "query_chunk_rows": plan.query_chunk_rows, "metrics": {}}
    for metric in args.metrics.split(","):
        row = {}
        for threads in (1, 2):
            with threadpool_limits(threads):
                log(f"{metric}: sklearn brute, {threads} BLAS thread(s)")
                started = time.perf_counter()
                sklearn_all_points(X, args.k, metric)
                row[f"sklearn_brute_{threads}_threads_s"] = round(time.perf_counter() - started, 3)
                log(f"{metric}: blocked kernel, {threads} BLAS thread(s)")
                row[f"blocked_kernel_{threads}_threads"] = kernel_seconds(ids, X, args.k, metric, plan)
        row["blocked_kernel_best_case_on_2_cores_s"] = round(row["blocked_kernel_1_threads"]["total"] / 2, 3)
        row["ratio_sklearn_2_threads_over_kernel_best_case"] = common.ratio(
            row["sklearn_brute_2_threads_s"], row["blocked_kernel_best_case_on_2_cores_s"])
        results["metrics"][metric] = row
        log(f"{metric}: {row}")
    common.write_results(args.name, results)


if __name__ == "__main__":
    main()
