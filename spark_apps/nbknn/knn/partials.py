"""Partial top-k results on Spark: keyed by a row group or a query chunk, merged, written out.

A key's value is (query ids, :class:`~nbknn.knn.topk.TopK`), always with the same rows in the
same order. Query chunks: ``reduceByKey`` with :func:`merge_partials` merges the partial results
row by row, :func:`output_rows` turns the merged result into output rows. Row groups: every
partial result travels as one binary value (:func:`encoded_partial`) and a group's partials are
merged in one Arrow call (:func:`merged_groups`; :func:`merged_in_id_order` when the groups are
runs of ids, which also spares the sort by id), so no output row passes through Spark's
row-by-row conversion of Python objects.
"""

from __future__ import annotations

import pickle
import time
from typing import Iterator

import numpy as np
import pyarrow as pa
from pyspark import RDD, Accumulator
from pyspark.sql import DataFrame, SparkSession

from nbknn.knn.arrow import output_arrow_schema, output_schema, result_batch
from nbknn.knn.mode import task_function, task_threads
from nbknn.knn.row_groups import RowGroup, diagonal_unit, unit_partials
from nbknn.knn.topk import TopK, merge_topk, pad_id_for

#: One partial result of a row group: its number and (row ids, TopK) pickled.
PARTIAL_SCHEMA = "group int, partial binary"
PARTIAL_ARROW_SCHEMA = pa.schema([("group", pa.int32()), ("partial", pa.binary())])


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


def encoded_partial(group: int, row_ids: np.ndarray, result: TopK) -> tuple[int, bytes]:
    """A row of :data:`PARTIAL_SCHEMA`."""
    return int(group), pickle.dumps((row_ids, result.ids, result.distances), protocol=5)


def merged_groups(
    spark: SparkSession, partials: RDD, id_type: str, k: int, rows_computed: Accumulator
) -> DataFrame:
    """The output frame (id, neighbor_ids, distances) of an RDD of :func:`encoded_partial` rows."""
    return (
        spark.createDataFrame(partials, PARTIAL_SCHEMA)
        .groupBy("group")
        .applyInArrow(task_function(merge_group, k=k, id_type=id_type, rows_computed=rows_computed),
                      output_schema(id_type))
    )


def merged_in_id_order(
    spark: SparkSession, partials: RDD, n_groups: int, id_type: str, k: int, rows_computed: Accumulator
) -> DataFrame:
    """Like :func:`merged_groups`, for groups whose rows are in id order and follow one another in
    id order (group g's ids all below group g + 1's): group g's partials go to partition g, which
    merges them, so the frame's partitions come out sorted by id and need no sort before writing."""
    return (
        spark.createDataFrame(partials.partitionBy(n_groups, group_partition), PARTIAL_SCHEMA)
        .mapInArrow(task_function(merge_partition, k=k, id_type=id_type, rows_computed=rows_computed),
                    output_schema(id_type))
    )


def group_partition(group: int) -> int:
    """Partitioner of the partial results: group g in partition g."""
    return group


def merge_partition(
    batches: Iterator[pa.RecordBatch], k: int, id_type: str, rows_computed: Accumulator
) -> Iterator[pa.RecordBatch]:
    """One partition's partial results (one group's) -> its output rows, checked to be in id order."""
    table = pa.Table.from_batches(list(batches), schema=PARTIAL_ARROW_SCHEMA)
    if table.num_rows == 0:
        return
    if len(set(table.column("group").to_pylist())) != 1:
        raise RuntimeError("internal error: a partition holds the partial results of several groups")
    merged = merge_group(table, k, id_type, rows_computed)
    ids = merged.column("id").to_numpy(zero_copy_only=False)
    if ids.shape[0] > 1 and not (ids[1:] >= ids[:-1]).all():
        raise RuntimeError("internal error: a group's rows are not in id order")
    yield from merged.to_batches()


def merge_group(table: pa.Table, k: int, id_type: str, rows_computed: Accumulator) -> pa.Table:
    """All partial results of one group -> its output rows; checks that every row has k neighbours."""
    decoded = [pickle.loads(value) for value in table.column("partial").to_pylist()]
    row_ids, ids, distances = decoded[0]
    merged = TopK(ids, distances)
    for other_rows, ids, distances in decoded[1:]:
        if not np.array_equal(other_rows, row_ids):
            raise RuntimeError("internal error: partial results of a group hold different rows")
        merged = merge_topk(merged, TopK(ids, distances), k)
    if merged.ids.shape[1] != k or (merged.ids == pad_id_for(merged.ids)).any():
        raise RuntimeError(f"internal error: a merged row has fewer than k={k} neighbours")
    rows_computed.add(int(row_ids.shape[0]))
    return pa.Table.from_batches([result_batch(row_ids, merged, id_type)]).cast(output_arrow_schema(id_type))


def counted_diagonal(
    group: RowGroup, k: int, exclude_self: bool, fallback_rows: Accumulator, kernel_seconds: Accumulator
) -> tuple[tuple[int, bytes], RowGroup]:
    """A group's diagonal unit inside a task, its kernel time and fallback rows counted:
    (its encoded partial result, the group with its rows' seeds)."""
    started = time.perf_counter()
    partials, info, seeded = diagonal_unit(group, k, exclude_self, task_threads())
    kernel_seconds.add(time.perf_counter() - started)
    fallback_rows.add(info["fallback_rows"])
    ((number, (row_ids, result)),) = partials
    return encoded_partial(number, row_ids, result), seeded


def counted_cross(
    a: RowGroup, b: RowGroup, k: int, exclude_self: bool, fallback_rows: Accumulator, kernel_seconds: Accumulator
) -> list[tuple[int, bytes]]:
    """A cross unit inside a task, counted likewise: the encoded partial results of both groups."""
    started = time.perf_counter()
    partials, info = unit_partials(a, b, k, exclude_self, task_threads())
    kernel_seconds.add(time.perf_counter() - started)
    fallback_rows.add(info["fallback_rows"])
    return [encoded_partial(number, row_ids, result) for number, (row_ids, result) in partials]
