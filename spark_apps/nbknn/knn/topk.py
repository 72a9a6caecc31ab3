"""Exact blocked k-nearest-neighbours: the numpy/scikit-learn kernels that Spark tasks call.

The all-points problem: for each query vector, its k nearest neighbours among a reference set.
Spark splits the reference set into blocks; a task computes, for one partition of queries and one
reference block, a *local* top-k (:func:`local_topk`); the local results of one query are then
merged (:func:`merge_topk`) into the global top-k. Everything here is plain numpy / scikit-learn
and never imports pyspark; the block sizes are planned in :mod:`nbknn.knn.planning`.

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

from typing import NamedTuple

import numpy as np

from nbknn.common.errors import ConfigError
from nbknn.contract import KNN_METRICS
from nbknn.knn.gemm import METRICS as GEMM_METRICS
from nbknn.knn.gemm import exact_distances
from nbknn.knn.gemm_bound import row_norms

#: Sentinel id of padding entries for integer ids.
PAD_ID_INT = np.iinfo(np.int64).min
#: Sentinel id of padding entries for string ids.
PAD_ID_STR = ""

#: Metric name accepted -> canonical name (the one used for computation and reported).
SUPPORTED_METRICS: dict[str, str] = {
    **{metric: metric for metric in KNN_METRICS},
    "l2": "euclidean",
    "cityblock": "manhattan",
    "l1": "manhattan",
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


def block_distances(Q: np.ndarray, R: np.ndarray, metric: str) -> np.ndarray:
    """Distance matrix (nq, nr) between validated float64 blocks Q (nq, d) and R (nr, d).

    ``metric`` is canonical. euclidean, sqeuclidean and cosine are computed directly, row by row,
    as the exact kernel's brute force does (:func:`~nbknn.knn.gemm.exact_distances`: from the
    differences, not from |x|^2 + |y|^2 - 2 x.y, which loses every digit on near-duplicates);
    the other metrics by scikit-learn's ``pairwise_distances``.
    """
    if metric in GEMM_METRICS:
        r_norms = row_norms(R) if metric == "cosine" else None
        D = np.empty((Q.shape[0], R.shape[0]))
        for i in range(Q.shape[0]):
            D[i] = exact_distances(Q[i], R, metric, r_norms)
        return D
    # Imported here: scikit-learn costs a fresh Python worker about a second to import, and the
    # GEMM metrics above never need it.
    from sklearn.metrics import pairwise_distances

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

    rows = max(1, int(max_pair_bytes) // (nr * BYTES_PER_PAIR))
    for start in range(0, nq, rows):
        stop = min(start + rows, nq)
        out_ids[start:stop], out_d[start:stop] = _chunk_topk(
            query_ids[start:stop], Q[start:stop], ref_ids, R, w, metric, exclude_self
        )
    return TopK(out_ids, out_d)


def _chunk_topk(query_ids, Q, ref_ids, R, w: int, metric: str, exclude_self: bool):
    """(ids, distances) of width w for one chunk of validated queries; excluded pairs are padding."""
    D = block_distances(Q, R, metric)
    pad = None
    if exclude_self:
        pad = query_ids[:, None] == ref_ids[None, :]
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
        id_sel[is_pad] = _pad_id(ref_ids)
    return id_sel, d_sel


# --------------------------------------------------------------------------------------------
# Merging
# --------------------------------------------------------------------------------------------


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
