"""Exact blocked k-nearest-neighbours: the numpy/scikit-learn kernels that Spark tasks call.

The all-points problem: for each query vector, its k nearest neighbours among a reference set.
Spark splits the reference set into blocks; a task computes, for one partition of queries and one
reference block, a *local* top-k (:func:`local_topk`); the local results of one query are then
merged (:func:`merge_topk` on arrays, :func:`merge_topk_rows` on Python lists) into the global
top-k. Everything here is plain numpy / scikit-learn and never imports pyspark.

Conventions
-----------
* Ids are a 1-D array of int64 or of strings (numpy ``U``); the vectors are float64, shape (n, d).
* A top-k result is a :class:`TopK` ``(ids, distances)``, both of shape (n_queries, w), each row
  sorted by the total order ``(distance, is_padding, id)`` ascending: nearer first, equal
  distances by ascending id. Sorting by id on ties makes every result deterministic and the merge
  associative and commutative.
* Padding: a block holding fewer usable neighbours than k does not make the result ragged. The
  width is ``w = min(k, n_reference_in_block)`` and rows that have fewer than ``w`` usable
  neighbours (the query's own id was excluded from a small block) are filled on the right with
  distance ``+inf`` and the sentinel id :data:`PAD_ID_INT` (``-2**63``) for integer ids or
  :data:`PAD_ID_STR` (``""``) for string ids. Real ids may not equal the sentinel (checked).
  Merging results of widths wa and wb gives width ``min(k, wa + wb)``; once the blocks cover a
  reference set of n vectors the width is ``min(k, n)`` and, with ``validate_k`` satisfied, no
  padding remains.
* Self-join: the query set is the reference set. Like ``NearestNeighbors.kneighbors()`` called
  without X, the query is excluded by *identity*: here the reference whose id equals the query's
  id, never a reference that merely lies at distance 0 (an identical twin with another id stays a
  neighbour at distance 0).

Matching scikit-learn's brute force
-----------------------------------
Distances come from ``sklearn.metrics.pairwise_distances``. For ``euclidean`` scikit-learn 1.9's
``NearestNeighbors(algorithm="brute")`` uses the ``ArgKmin`` reduction, which computes squared
distances as ``||x||^2 - 2 x.y + ||y||^2`` (BLAS GEMM), clips at 0 and takes the square root of the
k selected values; ``pairwise_distances(metric="euclidean")`` computes the same expansion with the
same operation order, so the two agree to rounding (the only difference is which BLAS call sums
the dot products). ``sqeuclidean`` is computed by the same expansion (``squared=True``) and not by
scipy's difference-based ``cdist``, to stay on sklearn brute's formula. ``cosine`` is not supported
by ``ArgKmin``: sklearn brute falls back to ``pairwise_distances_chunked`` with
``cosine_distances``, i.e. exactly the function used here. The other metrics are summed
coordinate by coordinate in both (scipy ``cdist`` here, sklearn's ``DistanceMetric`` there).
Caveat inherited from the expansion: for (near-)duplicates the euclidean distance carries an
absolute error of order ``sqrt(eps) * ||x||`` in sklearn as well as here, so very small distances
agree only to an absolute tolerance; distances of integer-valued data are exact in both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors
from sklearn.utils.extmath import row_norms

from nbknn.errors import ConfigError

#: Sentinel id of padding entries for integer ids.
PAD_ID_INT = np.iinfo(np.int64).min
#: Sentinel id of padding entries for string ids.
PAD_ID_STR = ""

#: Metric name accepted -> canonical name (the one used for computation and reported).
SUPPORTED_METRICS: dict[str, str] = {
    "euclidean": "euclidean",
    "l2": "euclidean",
    "sqeuclidean": "sqeuclidean",
    "cosine": "cosine",
    "manhattan": "manhattan",
    "cityblock": "manhattan",
    "l1": "manhattan",
    "chebyshev": "chebyshev",
    "canberra": "canberra",
}

#: Working memory per (query, reference) pair inside :func:`local_topk`: the float64 distance
#: matrix, the copy made by ``np.partition``, the int64 result of ``np.argpartition`` and two
#: boolean masks (self-exclusion, ``<= k-th``), rounded up.
BYTES_PER_PAIR = 32

#: Default bound on the pair working memory of one query chunk in :func:`local_topk`.
DEFAULT_MAX_PAIR_BYTES = 64 * 1024 * 1024


class TopK(NamedTuple):
    """A (possibly partial) top-k result for n_queries queries.

    ids: (n_queries, w) int64 or str array, padding = the sentinel id.
    distances: (n_queries, w) float64, padding = +inf; rows sorted by (distance, is_pad, id).
    """

    ids: np.ndarray
    distances: np.ndarray


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def validate_k(k: int, n_reference: int, self_join: bool) -> int:
    """Check k against the size of the whole reference set; returns k as an int.

    k >= 1; in a self-join every query is itself a reference and is excluded, so k < n_reference;
    otherwise k <= n_reference. A wrong k is the caller's error (ConfigError: exit 65, no retry).
    """
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an integer (got {type(k).__name__}: {k!r})")
    k = int(k)
    if k < 1:
        raise ConfigError(f"k must be >= 1 (got k={k})")
    if self_join and k >= n_reference:
        raise ConfigError(
            "k must be < number of reference vectors in a self-join "
            f"(k={k}, n={n_reference})"
        )
    if not self_join and k > n_reference:
        raise ConfigError(f"k must be <= number of reference vectors (k={k}, n={n_reference})")
    return k


def validate_metric(metric: str) -> str:
    """Return the canonical name of a supported metric (``l2`` -> ``euclidean``, ...)."""
    if not isinstance(metric, str) or metric.lower() not in SUPPORTED_METRICS:
        raise ValueError(
            f"unsupported metric {metric!r}: expected one of {sorted(SUPPORTED_METRICS)}"
        )
    return SUPPORTED_METRICS[metric.lower()]


def _validate_vectors(X, name: str) -> np.ndarray:
    """(n, d) finite float64, C-ordered."""
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d) (got shape {X.shape})")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} must contain only finite values (got NaN or inf)")
    return X


def _validate_ids(ids, n: int, name: str) -> np.ndarray:
    """1-D ids of length n, int64 or numpy str, none equal to the padding sentinel."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"{name} must be 1-D (got shape {ids.shape})")
    if ids.shape[0] != n:
        raise ValueError(f"{name} must have one id per vector (expected {n}, got {ids.shape[0]})")
    if ids.dtype.kind in "iu":
        if ids.dtype.kind == "u" and ids.size and ids.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{name} must fit in int64 (got max {ids.max()})")
        ids = ids.astype(np.int64, copy=False)
    elif ids.dtype.kind == "O" and all(isinstance(v, str) for v in ids):
        ids = ids.astype(str)
    elif ids.dtype.kind == "O" and all(isinstance(v, (int, np.integer)) for v in ids):
        ids = ids.astype(np.int64)
    elif ids.dtype.kind != "U":
        raise TypeError(f"{name} must be integers or strings (got dtype {ids.dtype})")
    if n and (ids == _pad_id(ids)).any():
        raise ValueError(f"{name} must not contain the padding sentinel id {_pad_id(ids)!r}")
    return ids


def _pad_id(ids: np.ndarray):
    return PAD_ID_STR if ids.dtype.kind == "U" else PAD_ID_INT


def pad_id_for(ids) -> int | str:
    """The padding sentinel for an id array (:data:`PAD_ID_STR` for strings, else int)."""
    return _pad_id(np.asarray(ids))


def _check_same_id_kind(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if (a.dtype.kind == "U") != (b.dtype.kind == "U"):
        raise TypeError(
            f"{what}: ids must be all integers or all strings (got {a.dtype}, {b.dtype})"
        )


# --------------------------------------------------------------------------------------------
# Distances and local top-k
# --------------------------------------------------------------------------------------------


def block_distances(Q: np.ndarray, R: np.ndarray, metric: str, r_sq_norms=None) -> np.ndarray:
    """Distance matrix (nq, nr) between validated float64 blocks Q (nq, d) and R (nr, d).

    ``metric`` is canonical. For the euclidean family ``r_sq_norms`` (nr,) may carry the
    precomputed squared row norms of R (as ``row_norms(R, squared=True)`` gives them), so a block
    processed in several query chunks computes them once.
    """
    if metric in ("euclidean", "sqeuclidean"):
        kw = {"squared": metric == "sqeuclidean"}
        if r_sq_norms is not None:
            kw["Y_norm_squared"] = r_sq_norms
        return pairwise_distances(Q, R, metric="euclidean", **kw)
    return pairwise_distances(Q, R, metric=metric)


def _select_sorted(D: np.ndarray, pad: np.ndarray | None, ref_ids: np.ndarray, w: int):
    """Per row of D (m, nr), the w smallest entries in (distance, pad, id) order.

    Returns column indices (m, w). Exact under ties: every entry equal to the w-th smallest
    distance takes part in the (distance, pad, id) sort, so which of the tied ids are kept does
    not depend on argpartition's arbitrary order.
    """
    m, nr = D.shape
    if w < nr:
        kth = np.partition(D, w - 1, axis=1)[:, w - 1]
        n_cand = int((D <= kth[:, None]).sum(axis=1).max())
    else:
        n_cand = nr
    if n_cand < nr:
        cand = np.argpartition(D, n_cand - 1, axis=1)[:, :n_cand]
    else:
        cand = np.broadcast_to(np.arange(nr), (m, nr))
    d_c = np.take_along_axis(D, cand, axis=1)
    id_c = ref_ids[cand]
    keys = [id_c]
    if pad is not None:
        keys.append(np.take_along_axis(pad, cand, axis=1))
    keys.append(d_c)
    order = np.lexsort(keys, axis=1)[:, :w]
    return np.take_along_axis(cand, order, axis=1)


def local_topk(
    query_ids,
    Q,
    ref_ids,
    R,
    k: int,
    metric: str = "euclidean",
    exclude_self: bool = True,
    max_pair_bytes: int = DEFAULT_MAX_PAIR_BYTES,
) -> TopK:
    """Top-k of each query among one reference block.

    query_ids (nq,), Q (nq, d), ref_ids (nr,), R (nr, d), k >= 1 (may exceed nr: small blocks are
    allowed). With ``exclude_self`` the pair (query, reference) with equal ids is skipped.
    Returns a :class:`TopK` of width ``w = min(k, nr)``, rows sorted by (distance, id), padded
    with (+inf, sentinel id) where a row has fewer than w usable references.

    Queries are processed in chunks of ``max(1, max_pair_bytes // (nr * BYTES_PER_PAIR))`` rows,
    bounding the working memory of a chunk to about ``max_pair_bytes``.
    """
    metric = validate_metric(metric)
    Q = _validate_vectors(Q, "Q")
    R = _validate_vectors(R, "R")
    if Q.shape[1] != R.shape[1]:
        raise ValueError(
            f"Q and R must have the same dimension (Q has {Q.shape[1]}, R has {R.shape[1]})"
        )
    query_ids = _validate_ids(query_ids, Q.shape[0], "query_ids")
    ref_ids = _validate_ids(ref_ids, R.shape[0], "ref_ids")
    _check_same_id_kind(query_ids, ref_ids, "local_topk")
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1 (got {k!r})")
    if max_pair_bytes < 1:
        raise ValueError(f"max_pair_bytes must be >= 1 (got {max_pair_bytes})")

    nq, nr = Q.shape[0], R.shape[0]
    w = min(int(k), nr)
    pad_id = _pad_id(ref_ids)
    out_ids = np.full((nq, w), pad_id, dtype=ref_ids.dtype)
    out_d = np.full((nq, w), np.inf)
    if nq == 0 or w == 0:
        return TopK(out_ids, out_d)

    r_sq_norms = row_norms(R, squared=True) if metric in ("euclidean", "sqeuclidean") else None
    rows = max(1, int(max_pair_bytes) // (nr * BYTES_PER_PAIR))
    for start in range(0, nq, rows):
        stop = min(start + rows, nq)
        D = block_distances(Q[start:stop], R, metric, r_sq_norms)
        pad = None
        if exclude_self:
            pad = query_ids[start:stop, None] == ref_ids[None, :]
            if pad.any():
                D[pad] = np.inf
            else:
                pad = None
        cols = _select_sorted(D, pad, ref_ids, w)
        d_sel = np.take_along_axis(D, cols, axis=1)
        id_sel = ref_ids[cols]
        if pad is not None:
            is_pad = np.take_along_axis(pad, cols, axis=1)
            d_sel[is_pad] = np.inf
            id_sel[is_pad] = pad_id
        out_d[start:stop] = d_sel
        out_ids[start:stop] = id_sel
    return TopK(out_ids, out_d)


# --------------------------------------------------------------------------------------------
# Merging
# --------------------------------------------------------------------------------------------


def empty_topk(n_queries: int, string_ids: bool = False) -> TopK:
    """Width-0 result: the identity element of :func:`merge_topk` (for folds/aggregates)."""
    dtype = np.dtype("U1") if string_ids else np.dtype(np.int64)
    return TopK(np.empty((n_queries, 0), dtype=dtype), np.empty((n_queries, 0)))


def merge_topk(a: TopK, b: TopK, k: int) -> TopK:
    """Merge two partial results for the same queries (same row order) into the top-k.

    a: (nq, wa), b: (nq, wb) -> (nq, min(k, wa + wb)), rows sorted by (distance, is_pad, id).
    The result is the k smallest entries of the union under that total order, hence associative
    and commutative: partial results may be reduced in any grouping and order, provided each
    reference id occurs in only one of them (the blocks partition the reference set).
    """
    a_ids, a_d = np.asarray(a[0]), np.asarray(a[1], dtype=np.float64)
    b_ids, b_d = np.asarray(b[0]), np.asarray(b[1], dtype=np.float64)
    for name, ids, d in (("a", a_ids, a_d), ("b", b_ids, b_d)):
        if ids.ndim != 2 or ids.shape != d.shape:
            raise ValueError(
                f"{name}: ids and distances must be 2-D of equal shape (got {ids.shape}, {d.shape})"
            )
    if a_ids.shape[0] != b_ids.shape[0]:
        raise ValueError(
            "a and b must hold the same queries "
            f"(expected {a_ids.shape[0]} rows, got {b_ids.shape[0]})"
        )
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1 (got {k!r})")
    if a_ids.shape[1] == 0 and b_ids.shape[1] == 0:
        return TopK(a_ids if a_ids.dtype.kind == "U" else b_ids, a_d)
    if a_ids.shape[1] and b_ids.shape[1]:
        _check_same_id_kind(a_ids, b_ids, "merge_topk")
    if a_ids.dtype.kind != "U" and b_ids.dtype.kind != "U":
        a_ids, b_ids = a_ids.astype(np.int64, copy=False), b_ids.astype(np.int64, copy=False)
    if a_ids.shape[1] == 0:
        ids, d = b_ids, b_d
    elif b_ids.shape[1] == 0:
        ids, d = a_ids, a_d
    else:
        ids = np.concatenate([a_ids, b_ids], axis=1)
        d = np.concatenate([a_d, b_d], axis=1)
    w = min(int(k), ids.shape[1])
    is_pad = ids == _pad_id(ids)
    order = np.lexsort((ids, is_pad, d), axis=1)[:, :w]
    return TopK(np.take_along_axis(ids, order, axis=1), np.take_along_axis(d, order, axis=1))


def merge_topk_rows(
    a: Sequence[tuple[float, int | str]], b: Sequence[tuple[float, int | str]], k: int
) -> list[tuple[float, int | str]]:
    """Per-query merge on Python lists, for a ``reduceByKey`` keyed by query id.

    a, b: lists of ``(distance, neighbour_id)`` (no padding entries) -> the k smallest of a + b
    by (distance, id), sorted. Associative and commutative like :func:`merge_topk`.
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
    pad = ids == _pad_id(ids)
    out = []
    for qi in range(ids.shape[0]):
        keep = ~pad[qi]
        pairs = [(float(x), i.item()) for x, i in zip(d[qi][keep], ids[qi][keep])]
        out.append((query_ids[qi].item(), pairs))
    return out


# --------------------------------------------------------------------------------------------
# Single-process reference (scikit-learn brute force)
# --------------------------------------------------------------------------------------------


def brute_force_all_points(
    ids, X, k: int, metric: str = "euclidean", exclude_self: bool = True
) -> TopK:
    """All-points kNN of X (n, d) with ``NearestNeighbors(algorithm="brute")``, indices -> ids.

    With ``exclude_self`` this is ``kneighbors()`` without X (the query excluded by index, which
    is by id since ids are unique); otherwise ``kneighbors(X)`` (each point usually its own first
    neighbour). Returns (ids (n, k), distances (n, k)) in scikit-learn's order: ascending distance,
    ties in no guaranteed order. The anchor for tests and benchmarks.
    """
    metric = validate_metric(metric)
    X = _validate_vectors(X, "X")
    ids = _validate_ids(ids, X.shape[0], "ids")
    if np.unique(ids).shape[0] != ids.shape[0]:
        raise ValueError("ids must be unique")
    k = validate_k(k, X.shape[0], self_join=exclude_self)
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(X)
    dist, idx = nn.kneighbors() if exclude_self else nn.kneighbors(X)
    return TopK(ids[idx], dist)


def brute_force_query(ref_ids, R, Q, k: int, metric: str = "euclidean") -> TopK:
    """kNN of separate queries Q (nq, d) among R (nr, d) with sklearn brute ``kneighbors(Q)``."""
    metric = validate_metric(metric)
    R = _validate_vectors(R, "R")
    Q = _validate_vectors(Q, "Q")
    ref_ids = _validate_ids(ref_ids, R.shape[0], "ref_ids")
    k = validate_k(k, R.shape[0], self_join=False)
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(R)
    dist, idx = nn.kneighbors(Q)
    return TopK(ref_ids[idx], dist)


# --------------------------------------------------------------------------------------------
# Block planning
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockPlan:
    """How to cut n_reference vectors into blocks and queries into chunks.

    ``block_rows`` per block (the last may be shorter: see :func:`block_bounds`),
    ``query_chunk_rows`` per local_topk chunk, ``max_pair_bytes`` to pass to :func:`local_topk`,
    ``estimated_bytes`` the bound of the formula in :func:`plan_blocks`.
    """

    n_blocks: int
    block_rows: int
    query_chunk_rows: int
    max_pair_bytes: int
    estimated_bytes: int


def _task_bytes(b: int, q: int, d: int, k: int, pair_rows: int | None = None) -> int:
    """Memory of one (query chunk x block) step: see :func:`plan_blocks`."""
    rows = q if pair_rows is None else min(q, pair_rows)
    return b * (8 * d + 8) + rows * b * BYTES_PER_PAIR + q * (8 * d + 16 * k)


def plan_blocks(
    n_reference: int,
    d: int,
    k: int,
    block_bytes_budget: int,
    query_chunk_rows: int = 1024,
    pair_rows: int | None = None,
) -> BlockPlan:
    """Number and size of reference blocks so that one task step fits in the budget.

    With b reference rows per block and q query rows per chunk, one step holds
        block:        b * (8 d + 8)          (float64 vectors + int64 ids)
        pair memory:  p * b * BYTES_PER_PAIR (distance matrix and selection temporaries)
        query chunk:  q * (8 d + 16 k)       (vectors + the chunk's top-k ids and distances)
    where p = q, or ``min(q, pair_rows)`` for a kernel that holds the distances of at most
    ``pair_rows`` query rows at a time (scikit-learn's chunked reductions), and
    ``b = floor((budget - q (8 d + 16 k)) / (8 d + 8 + p BYTES_PER_PAIR))``, capped at
    n_reference. If not even b = 1 fits, q is halved until it does (error when q = 1 does not
    fit). The blocks are then balanced: ``n_blocks = ceil(n / b)``, ``block_rows =
    ceil(n / n_blocks)`` (<= b). Blocks smaller than k are correct (merging fills the top-k) but
    waste work; a budget giving b >= k + 1 is preferable.
    """
    for name, v, lo in (("n_reference", n_reference, 1), ("d", d, 1), ("k", k, 1),
                        ("block_bytes_budget", block_bytes_budget, 1),
                        ("query_chunk_rows", query_chunk_rows, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo} (got {v!r})")
    if pair_rows is not None and (isinstance(pair_rows, bool) or not isinstance(pair_rows, (int, np.integer))
                                  or pair_rows < 1):
        raise ValueError(f"pair_rows must be an integer >= 1 (got {pair_rows!r})")
    q = int(query_chunk_rows)
    while True:
        p = q if pair_rows is None else min(q, int(pair_rows))
        b = (block_bytes_budget - q * (8 * d + 16 * k)) // (8 * d + 8 + p * BYTES_PER_PAIR)
        if b >= 1 or q == 1:
            break
        q = max(1, q // 2)
    if b < 1:
        raise ValueError(
            f"block_bytes_budget too small: expected >= {_task_bytes(1, 1, d, k)} bytes "
            f"for one reference row and one query row (got {block_bytes_budget})"
        )
    b = min(int(b), int(n_reference))
    n_blocks = math.ceil(n_reference / b)
    b = math.ceil(n_reference / n_blocks)
    return BlockPlan(
        n_blocks=n_blocks,
        block_rows=b,
        query_chunk_rows=q,
        max_pair_bytes=p * b * BYTES_PER_PAIR,
        estimated_bytes=_task_bytes(b, q, d, k, pair_rows),
    )


def block_bounds(n_reference: int, block_rows: int) -> list[tuple[int, int]]:
    """[(start, stop), ...] cutting range(n_reference) into consecutive blocks of block_rows."""
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1 (got {block_rows})")
    return [(s, min(s + block_rows, n_reference)) for s in range(0, n_reference, block_rows)]
