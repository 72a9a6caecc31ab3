"""All-points exact kNN cut into pairs of row groups (numpy, no pyspark).

The rows of the set are cut into groups; every pair of groups (a, b) with a <= b is one unit of
work: (a, a) joins the group with itself, (a, b) joins a with b in both directions from one
product per pair of blocks (the Gram matrix is symmetric, so the n^2 / 2 products of an
all-points run are each computed once). A unit gives, for the rows of its groups, their exact
top-k among the unit's candidates (:mod:`nbknn.knn.gemm`); a group belongs to every unit it
pairs with, and the candidates of those units partition the set, so merging a group's partial
results (:func:`~nbknn.knn.topk.merge_topk`) gives its exact top-k over the whole set.

The diagonal units run first: a row's k-th distance within its own group bounds its k-th
distance over the whole set from above, so the cross units start every row's threshold there
(:func:`~nbknn.knn.gemm.seed_thresholds`) instead of at +inf and drop most candidates at once.

Inside a unit the kernel breaks ties by rank: the ids of the unit's two groups are replaced by
their ranks in sorted order (so the rank order is the id order, for integer and string ids)
and mapped back afterwards; padding becomes the id type's sentinel.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from nbknn.knn.gemm import PAD, Frame, PreparedRows, cross_topk, group_topk, prepare_rows, seed_thresholds
from nbknn.knn.topk import TopK, pad_id_for


@dataclass
class RowGroup:
    """One group of rows: its number, its real ids (int64 or str), its prepared rows, the scale of
    their frame and, once its diagonal unit ran, its rows' seeds (prepared space)."""

    number: int
    ids: np.ndarray
    rows: PreparedRows
    scale: float = 1.0
    seed: np.ndarray | None = None


def prepare_group(number: int, ids: np.ndarray, X: np.ndarray, frame: Frame) -> RowGroup:
    # The kernel's own ids are set per unit (ranks); positions stand in until then.
    return RowGroup(number, ids, prepare_rows(X, np.arange(ids.shape[0]), frame), frame.scale)


def diagonal_unit(group: RowGroup, k: int, exclude_self: bool, n_threads: int = 1):
    """The unit (a, a): its partial results, the kernel's info, and the group with its seeds."""
    partials, info = unit_partials(group, group, k, exclude_self, n_threads)
    _, (_, result) = partials[0]
    kth = result.distances[:, k - 1]  # +inf where the group holds fewer than k candidates
    seeded = dataclasses.replace(group, seed=seed_thresholds(kth, group.rows.metric, group.scale))
    return partials, info, seeded


def group_starts(n: int, n_groups: int) -> np.ndarray:
    """Row where each of ``n_groups`` balanced groups starts, then n."""
    return np.linspace(0, n, n_groups + 1).round().astype(np.int64)


def cross_pairs(n_groups: int) -> list[tuple[int, int]]:
    """Every cross unit (a, b), a < b (the diagonal ones run first, on their own)."""
    return [(a, b) for a in range(n_groups) for b in range(a + 1, n_groups)]


def unit_partials(a: RowGroup, b: RowGroup, k: int, exclude_self: bool, n_threads: int = 1):
    """The unit (a, b): [(group number, (real ids, TopK)), ...] for a (and b when it is another
    group), and the kernel's info."""
    if a.number == b.number:
        unique, ranks = id_ranks(a.ids)
        ids, dist, info = group_topk(with_ids(a.rows, ranks), k, exclude_self, n_threads=n_threads)
        return [(a.number, (a.ids, real_topk(ids, dist, unique)))], info
    unique, ranks = id_ranks(np.concatenate([a.ids, b.ids]))
    ma = a.ids.shape[0]
    ids_a, dist_a, ids_b, dist_b, info = cross_topk(
        with_ids(a.rows, ranks[:ma]), with_ids(b.rows, ranks[ma:]), k, exclude_self, n_threads=n_threads,
        seed_a=a.seed, seed_b=b.seed,
    )
    return [(a.number, (a.ids, real_topk(ids_a, dist_a, unique))),
            (b.number, (b.ids, real_topk(ids_b, dist_b, unique)))], info


def id_ranks(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique ids, rank of every id): rank order is id order; equal ids share a rank."""
    unique, ranks = np.unique(ids, return_inverse=True)
    return unique, ranks.astype(np.int64).reshape(-1)


def with_ids(rows: PreparedRows, ids: np.ndarray) -> PreparedRows:
    return dataclasses.replace(rows, ids=ids)


def real_topk(rank_ids: np.ndarray, distances: np.ndarray, unique: np.ndarray) -> TopK:
    """The kernel's rank ids -> real ids; its padding -> the sentinel of the id type."""
    padding = rank_ids == PAD
    ids = unique[np.where(padding, 0, rank_ids)]
    if padding.any():
        ids = ids.astype(unique.dtype, copy=True)
        ids[padding] = pad_id_for(unique)
    return TopK(ids, distances)


def query_ids_as_ranks(query_ids: np.ndarray, unique: np.ndarray) -> np.ndarray:
    """Ranks of query ids among the reference's sorted unique ids; a query id absent from the
    reference gets -2, which equals no rank and no padding (the kernel only compares query ids
    with candidate ids, to exclude a query's own id)."""
    position = np.searchsorted(unique, query_ids)
    inside = position < unique.shape[0]
    found = np.zeros(query_ids.shape[0], dtype=bool)
    found[inside] = unique[position[inside]] == query_ids[inside]
    return np.where(found, position, -2).astype(np.int64)
