"""Partial top-k results on Spark: keyed by a row group or a query chunk, merged, written out.

A key's value is (query ids, :class:`~nbknn.knn.topk.TopK`), always with the same rows in the
same order; ``reduceByKey`` with :func:`merge_partials` merges the partial results row by row,
:func:`output_rows` turns the merged result into output rows and checks it is complete.
"""

from __future__ import annotations

import numpy as np
from pyspark import Accumulator

from nbknn.knn.topk import TopK, merge_topk, pad_id_for


def merge_partials(a: tuple[np.ndarray, TopK], b: tuple[np.ndarray, TopK], k: int):
    """Two partial results of the same rows -> (their ids, the merged top-k)."""
    return a[0], merge_topk(a[1], b[1], k)


def output_rows(item, k: int, rows_computed: Accumulator):
    """A key's merged result -> its output rows (id, neighbor_ids, distances)."""
    _, (query_ids, result) = item
    ids, dist = result
    if ids.shape[1] != k or (ids == pad_id_for(ids)).any():
        raise RuntimeError(f"internal error: a merged row has fewer than k={k} neighbours")
    rows_computed.add(query_ids.shape[0])
    return zip(query_ids.tolist(), ids.tolist(), dist.tolist())


def spread_units(units: list, slices: int) -> list[list]:
    """Units dealt round-robin into at most ``slices`` lists (one Spark task each): the units come
    largest first, so every task gets a like share of large and small ones."""
    slices = max(1, min(slices, len(units)))
    return [units[i::slices] for i in range(slices)]
