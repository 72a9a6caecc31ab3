"""Per-batch kernels of the kNN modes (numpy / scikit-learn / annoy, no pyspark).

What a Spark task runs on one batch of queries: :func:`kneighbors_topk` (broadcast, metrics
the GEMM kernel does not cover), :func:`block_topk` (blocked, whose partial results
:func:`~nbknn.knn.topk.merge_topk` merges),
:func:`annoy_topk` (annoy), and the recall measure of the approximate mode. Results use the
:class:`~nbknn.knn.topk.TopK` conventions of :mod:`nbknn.knn.topk`: rows sorted by
(distance, id), padding (+inf, sentinel id) on the right.
"""

from __future__ import annotations

import numpy as np

from nbknn.contract import ANNOY_METRICS
from nbknn.knn import gemm
from nbknn.knn.row_groups import id_ranks, query_ids_as_ranks, real_topk
from nbknn.knn.topk import DEFAULT_MAX_PAIR_BYTES, TopK, local_topk, pad_id_for, validate_metric

#: Relative tolerance under which the k-th kept distance counts as tied with the farthest
#: candidate scikit-learn returned. Over-detecting a tie only costs an exact recomputation of the
#: row; under-detecting could let scikit-learn's arbitrary choice among tied points through.
TIE_RTOL = 1e-9

#: Query rows whose distances to the reference scikit-learn's brute ``kneighbors`` holds at once
#: in :func:`kneighbors_topk`: its ``ArgKmin`` reduction (euclidean) works in chunks of
#: ``pairwise_dist_chunk_size`` rows and the other metrics in chunks bounded by ``working_memory``;
#: both are set to this many rows (measured: 128 is within 3 % of 256 for ArgKmin, 64 is 18 %
#: slower). The blocked mode's plan counts on it.
KERNEL_CHUNK_ROWS = 128



# --------------------------------------------------------------------------------------------
# broadcast: a fitted NearestNeighbors, queried in batches
# --------------------------------------------------------------------------------------------


def kneighbors_topk(
    model, ref_ids: np.ndarray, query_ids: np.ndarray, Q: np.ndarray, k: int,
    metric: str, exclude_self: bool, max_pair_bytes: int = DEFAULT_MAX_PAIR_BYTES,
) -> TopK:
    """Top-k of queries Q (nq, d) among the reference a brute ``NearestNeighbors`` was fitted on.

    ``model.kneighbors(Q)`` is asked for ``m = k + 1`` neighbours (``k + 2`` with
    ``exclude_self``, capped at n): the query's own id (when present) is dropped and the rest
    sorted by (distance, id). scikit-learn's choice among points tied at its m-th distance is
    arbitrary, so a row is taken as it is only when its k-th kept distance lies strictly below the
    farthest returned one (then every point at most that far was returned); other rows are
    recomputed exactly against the whole reference with :func:`local_topk`, which resolves ties
    by id. The result is therefore the exact top-k in (distance, id) order, like the blocked mode.

    ref_ids (n,), query_ids (nq,), Q (nq, d) -> TopK of shape (nq, k).
    """
    metric = validate_metric(metric)
    n = ref_ids.shape[0]
    m = min(n, k + 1 + int(exclude_self))
    # Distances of at most KERNEL_CHUNK_ROWS query rows at a time (working_memory is in MiB):
    # bounded memory, and for the metrics without a fused reduction (cosine) several times faster
    # than scikit-learn's default 1 GiB chunks, which leave the CPU caches.
    from sklearn import config_context

    with config_context(working_memory=KERNEL_CHUNK_ROWS * n * 8 / 2**20, pairwise_dist_chunk_size=KERNEL_CHUNK_ROWS):
        dist, idx = model.kneighbors(Q, n_neighbors=m)
    cand = ref_ids[idx]
    if exclude_self:
        is_self = cand == query_ids[:, None]
        masked = np.where(is_self, np.inf, dist)
    else:
        is_self = np.zeros(cand.shape, dtype=bool)
        masked = dist
    order = np.lexsort((cand, is_self, masked), axis=1)[:, :k]
    out_ids = np.take_along_axis(cand, order, axis=1)
    out_d = np.take_along_axis(masked, order, axis=1)
    if m < n:
        farthest = dist[:, -1]
        tied = out_d[:, -1] >= farthest - TIE_RTOL * np.abs(farthest)
        if tied.any():
            rows = np.flatnonzero(tied)
            # The model keeps the reference matrix it was fitted on (the same array, no copy).
            exact = local_topk(query_ids[rows], Q[rows], ref_ids, model._fit_X, k, metric, exclude_self,
                               max_pair_bytes)
            out_ids[rows], out_d[rows] = exact.ids, exact.distances
    return TopK(out_ids, out_d)


def block_topk(
    query_ids: np.ndarray, Q: np.ndarray, ref_ids: np.ndarray, R: np.ndarray, k: int, metric: str,
    exclude_self: bool, max_pair_bytes: int,
) -> tuple[TopK, int]:
    """Top-k of queries Q (nq, d) among one reference block R (nr, d): the blocked mode's kernel,
    and the number of rows the exact kernel recomputed by brute force.

    Same contract as :func:`~nbknn.knn.topk.local_topk` (width ``min(k, nr)``, rows sorted by
    (distance, id), padded where a small block lacks usable neighbours). A block with more than
    ``k + 1 + exclude_self`` rows is answered by the exact GEMM kernel (:func:`gemm_topk`) for
    euclidean, sqeuclidean and cosine, else by scikit-learn's brute ``kneighbors`` through
    :func:`kneighbors_topk`; smaller blocks go to ``local_topk`` directly.
    """
    metric = validate_metric(metric)
    nr = R.shape[0]
    if nr <= k + 1 + int(exclude_self):
        return local_topk(query_ids, Q, ref_ids, R, k, metric, exclude_self, max_pair_bytes), 0
    if metric in gemm.METRICS:
        return gemm_topk(query_ids, Q, ref_ids, R, k, metric, exclude_self)
    from sklearn.neighbors import NearestNeighbors

    model = NearestNeighbors(algorithm="brute", metric=metric).fit(R)
    return kneighbors_topk(model, ref_ids, query_ids, Q, k, metric, exclude_self, max_pair_bytes), 0


def gemm_topk(
    query_ids: np.ndarray, Q: np.ndarray, ref_ids: np.ndarray, R: np.ndarray, k: int, metric: str,
    exclude_self: bool, n_threads: int = 1,
) -> tuple[TopK, int]:
    """Exact top-k (k <= nr) from the GEMM kernel, ties broken by the real ids (int or str)."""
    unique, ranks = id_ranks(ref_ids)
    ids, dist, info = gemm.exact_topk(Q, query_ids_as_ranks(query_ids, unique), R, ranks, k, metric,
                                      exclude_self, n_threads=n_threads)
    return real_topk(ids, dist, unique), info["fallback_rows"]


_THREADS_LIMITED: list[int] = []


def limit_threads(threads: int) -> None:
    """Cap BLAS and OpenMP threads of this Python worker at ``threads`` (once per worker).

    Spark already runs one task per core (``spark.task.cpus`` each); if every task's BLAS or
    scikit-learn's OpenMP reduction also started one thread per core, 2 tasks on 2 cores would
    run 4+ threads and be slower than with one thread each (measured: bench/results/NOTES.md).
    """
    threads = max(1, int(threads))
    if _THREADS_LIMITED and _THREADS_LIMITED[0] == threads:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    _THREADS_LIMITED[:] = [threads]


# --------------------------------------------------------------------------------------------
# annoy: an index file built once, queried vector by vector inside a batch
# --------------------------------------------------------------------------------------------


def annoy_metric(metric: str) -> str:
    """Annoy's name for a metric, or a ValueError naming the metrics annoy mode supports."""
    metric = validate_metric(metric)
    if metric not in ANNOY_METRICS:
        raise ValueError(
            f"metric {metric!r} is not supported in annoy mode: expected one of {sorted(ANNOY_METRICS)}"
        )
    return ANNOY_METRICS[metric]


def annoy_to_metric(raw: np.ndarray, metric: str) -> np.ndarray:
    """Annoy's distances -> distances of ``metric`` (float32 precision, as Annoy stores vectors)."""
    raw = np.asarray(raw, dtype=np.float64)
    if metric == "cosine":
        return raw * raw / 2.0
    if metric == "sqeuclidean":
        return raw * raw
    return raw


def build_annoy_index(R: np.ndarray, metric: str, n_trees: int, seed: int, path: str) -> None:
    """Build an Annoy index over the rows of R (n, d) (item i = row i) and save it to ``path``.

    Built with one thread and a fixed seed, so the same input gives the same index.
    """
    from annoy import AnnoyIndex

    if n_trees < 1:
        raise ValueError(f"n_trees must be >= 1 (got {n_trees})")
    index = AnnoyIndex(R.shape[1], annoy_metric(metric))
    index.set_seed(int(seed))
    for i, row in enumerate(R):
        index.add_item(i, row)
    index.build(int(n_trees), n_jobs=1)
    index.save(path)
    index.unload()


def annoy_topk(
    index, ref_ids: np.ndarray, query_ids: np.ndarray, Q: np.ndarray, k: int, metric: str,
    exclude_self: bool, search_k: int = -1,
) -> TopK:
    """Approximate top-k of each query from an Annoy index whose item i has id ``ref_ids[i]``.

    Asks for k + 1 items with ``exclude_self`` and drops the query's own id (else the farthest);
    rows sorted by (distance, id). Annoy may return fewer items than asked for (small
    ``search_k``): such rows are padded with (+inf, sentinel id).
    """
    metric = validate_metric(metric)
    nq = Q.shape[0]
    want = k + int(exclude_self)
    pad = pad_id_for(ref_ids)
    out_ids = np.full((nq, k), pad, dtype=ref_ids.dtype)
    out_d = np.full((nq, k), np.inf)
    for row in range(nq):
        items, raw = index.get_nns_by_vector(Q[row], want, search_k=int(search_k), include_distances=True)
        ids = ref_ids[np.asarray(items, dtype=np.int64)]
        d = annoy_to_metric(raw, metric)
        if exclude_self:
            keep = ids != query_ids[row]
            ids, d = ids[keep], d[keep]
        order = np.lexsort((ids, d))[:k]
        out_ids[row, : order.shape[0]] = ids[order]
        out_d[row, : order.shape[0]] = d[order]
    return TopK(out_ids, out_d)


def recall_at_k(approx_ids, exact_ids: np.ndarray) -> float:
    """Mean over queries of |approximate ∩ exact| / k; ``approx_ids`` rows may be shorter than k."""
    exact_ids = np.asarray(exact_ids)
    if exact_ids.ndim != 2 or exact_ids.shape[0] == 0:
        raise ValueError(f"exact_ids must be 2-D with at least one row (got shape {exact_ids.shape})")
    if len(approx_ids) != exact_ids.shape[0]:
        raise ValueError(f"one approximate row per query expected (expected {exact_ids.shape[0]}, got {len(approx_ids)})")
    k = exact_ids.shape[1]
    hits = sum(len(set(np.asarray(a).tolist()) & set(e.tolist())) for a, e in zip(approx_ids, exact_ids))
    return hits / (k * exact_ids.shape[0])
