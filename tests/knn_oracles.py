"""Reference implementations of the kNN top-k, used only by the tests.

The library merges partial results as arrays (:func:`nbknn.knn.topk.merge_topk`); these oracles
give the same answer in other forms, so the tests can check it: per query on Python lists
(:func:`topk_to_rows`, :func:`merge_topk_rows`), the identity element of the merge
(:func:`empty_topk`), consecutive reference blocks (:func:`block_bounds`), and scikit-learn's brute
force with indices turned into ids (:func:`brute_force_all_points`, :func:`brute_force_query`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.neighbors import NearestNeighbors

from nbknn.knn.topk import TopK, pad_id_for, validate_k, validate_metric


def empty_topk(n_queries: int, string_ids: bool = False) -> TopK:
    """Width-0 result: the identity element of :func:`~nbknn.knn.topk.merge_topk`."""
    dtype = np.dtype("U1") if string_ids else np.dtype(np.int64)
    return TopK(np.empty((n_queries, 0), dtype=dtype), np.empty((n_queries, 0)))


def merge_topk_rows(
    a: Sequence[tuple[float, int | str]], b: Sequence[tuple[float, int | str]], k: int
) -> list[tuple[float, int | str]]:
    """Per-query merge on Python lists, for a ``reduceByKey`` keyed by query id.

    a, b: lists of ``(distance, neighbour_id)`` (no padding entries) -> the k smallest of a + b
    by (distance, id), sorted. Associative and commutative like :func:`~nbknn.knn.topk.merge_topk`.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1 (got {k!r})")
    return sorted([*a, *b], key=lambda t: (t[0], t[1]))[: int(k)]


def topk_to_rows(query_ids, result: TopK) -> list[tuple[int | str, list[tuple[float, int | str]]]]:
    """Array result -> ``[(query_id, [(distance, neighbour_id), ...]), ...]`` without padding.

    Python scalars (int/str/float) throughout, ready for :func:`merge_topk_rows` or a DataFrame.
    """
    ids, d = result
    query_ids = np.asarray(query_ids)
    if query_ids.shape[0] != ids.shape[0]:
        raise ValueError(
            f"one query id per row expected (expected {ids.shape[0]}, got {query_ids.shape[0]})"
        )
    pad = ids == pad_id_for(ids)
    out = []
    for qi in range(ids.shape[0]):
        keep = ~pad[qi]
        pairs = [(float(x), i.item()) for x, i in zip(d[qi][keep], ids[qi][keep])]
        out.append((query_ids[qi].item(), pairs))
    return out


def brute_force_all_points(
    ids, X, k: int, metric: str = "euclidean", exclude_self: bool = True
) -> TopK:
    """All-points kNN of X (n, d) with ``NearestNeighbors(algorithm="brute")``, indices -> ids.

    With ``exclude_self`` this is ``kneighbors()`` without X (the query excluded by index, which
    is by id since ids are unique); otherwise ``kneighbors(X)`` (each point usually its own first
    neighbour). Returns (ids (n, k), distances (n, k)) in scikit-learn's order: ascending distance,
    ties in no guaranteed order.
    """
    metric = validate_metric(metric)
    X = np.asarray(X, dtype=np.float64)
    ids = np.asarray(ids)
    if np.unique(ids).shape[0] != ids.shape[0]:
        raise ValueError("ids must be unique")
    k = validate_k(k, X.shape[0], self_join=exclude_self)
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(X)
    dist, idx = nn.kneighbors() if exclude_self else nn.kneighbors(X)
    return TopK(ids[idx], dist)


def brute_force_query(ref_ids, R, Q, k: int, metric: str = "euclidean") -> TopK:
    """kNN of separate queries Q (nq, d) among R (nr, d) with sklearn brute ``kneighbors(Q)``."""
    metric = validate_metric(metric)
    R = np.asarray(R, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    ref_ids = np.asarray(ref_ids)
    k = validate_k(k, R.shape[0], self_join=False)
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(R)
    dist, idx = nn.kneighbors(Q)
    return TopK(ref_ids[idx], dist)


def block_bounds(n_reference: int, block_rows: int) -> list[tuple[int, int]]:
    """[(start, stop), ...] cutting range(n_reference) into consecutive blocks of block_rows."""
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1 (got {block_rows})")
    return [(s, min(s + block_rows, n_reference)) for s in range(0, n_reference, block_rows)]


def direct_distances(q, R, metric):
    """Distances of q to the rows of R in float64 as written: sqrt(sum((x - y)**2)), its square,
    or 1 - x.y / (|x| |y|) (1 when either vector is zero)."""
    if metric == "cosine":
        qn = np.sqrt((q * q).sum())
        rn = np.sqrt((R * R).sum(axis=1))
        den = qn * rn
        with np.errstate(invalid="ignore", divide="ignore"):
            v = 1.0 - (R * q).sum(axis=1) / den
        v[den == 0] = 1.0
        return v
    diff = R - q
    v = (diff * diff).sum(axis=1)
    return np.sqrt(v) if metric == "euclidean" else v


def direct_topk(Q, query_ids, R, ref_ids, k, metric, exclude_self):
    """The exact top-k by direct float64 brute force, ordered by (distance, id); a row with fewer
    than k admissible references is padded with (-1, +inf)."""
    query_ids, ref_ids = np.asarray(query_ids), np.asarray(ref_ids)
    m = Q.shape[0]
    ids = np.full((m, k), -1, ref_ids.dtype) if ref_ids.dtype.kind != "U" else np.full((m, k), "", ref_ids.dtype)
    dist = np.full((m, k), np.inf)
    for i in range(m):
        v = direct_distances(Q[i], R, metric)
        keep = np.arange(R.shape[0])
        if exclude_self:
            keep = keep[ref_ids != query_ids[i]]
        order = np.lexsort((ref_ids[keep], v[keep]))[:k]
        ids[i, : len(order)] = ref_ids[keep[order]]
        dist[i, : len(order)] = v[keep[order]]
    return ids, dist


def assert_all_points_rows_equal_direct(rows: list[dict], ids, X, k: int, metric: str) -> None:
    """A published all-points output (rows of id, neighbor_ids, distances, in any order) is the
    direct float64 brute force's on ``X`` (self excluded): one row per id, the neighbour ids in
    (distance, id) order, the same distances."""
    ids = np.asarray(ids)
    by_id = {row["id"]: row for row in rows}
    assert len(by_id) == len(rows) and sorted(by_id) == sorted(ids.tolist()), "one output row per vector"
    want_ids, want_distances = direct_topk(X, ids, X, ids, k, metric, exclude_self=True)
    assert [by_id[i]["neighbor_ids"] for i in ids.tolist()] == want_ids.tolist()
    np.testing.assert_allclose([by_id[i]["distances"] for i in ids.tolist()], want_distances, rtol=1e-12, atol=1e-12)
