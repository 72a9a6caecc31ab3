"""The ``broadcast`` kNN mode: exact top-k with the reference set broadcast to every task.

The reference set is collected on the driver and broadcast. For euclidean, sqeuclidean and cosine
the exact GEMM kernel (:mod:`nbknn.knn.gemm`) answers:

* an all-points run (the queries are the reference) is cut into row groups
  (:mod:`nbknn.knn.row_groups`): one job runs the diagonal unit of every group and collects its
  rows' seeds, a second the cross units in batches; every product of the n^2 / 2 is computed
  once and updates both of its rows. The rows are ordered by id on the driver, so each group is
  a run of ids: a group's partial results are merged in its own partition, in id order, and the
  output needs no sort (:func:`~nbknn.knn.partials.merged_in_id_order`). A Python worker
  prepares each group it meets once (float32 operands, about as large again as the group) and
  keeps it for the application's later tasks;
* separate queries are answered batch by batch (``mapInArrow``) against the whole reference.

Other metrics use a fitted ``NearestNeighbors(algorithm="brute")`` broadcast instead
(:func:`~nbknn.knn.kernels.kneighbors_topk`). Driver and every executor hold the reference matrix
(n * d * 8 bytes): the application allows it only up to ``broadcast_max_bytes``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterator

import numpy as np
import pyarrow as pa
from pyspark import RDD, Accumulator, Broadcast, StorageLevel
from pyspark.sql import DataFrame

from nbknn.contract import DEFAULT_BLOCK_BYTES_BUDGET, DEFAULT_METRIC
from nbknn.knn import gemm
from nbknn.knn.arrow import (
    check_queries,
    collect_vectors,
    describe,
    id_type_of,
    numpy_chunks,
    output_schema,
    result_batch,
)
from nbknn.knn.kernels import kneighbors_topk
from nbknn.knn.mode import KnnResult, limit_task_threads, task_function, task_slots, task_threads
from nbknn.knn.one_task import fits_one_task, one_task_neighbors
from nbknn.knn.partials import counted_cross, counted_diagonal, merged_in_id_order, spread_units
from nbknn.knn.planning import DEFAULT_QUERY_CHUNK_ROWS, all_points_groups
from nbknn.knn.row_groups import (
    RowGroup,
    cross_pairs,
    group_starts,
    id_ranks,
    prepare_group,
    query_ids_as_ranks,
    real_topk,
)
from nbknn.knn.topk import validate_k, validate_metric


def neighbors_broadcast(
    queries: DataFrame, reference: DataFrame, k: int, metric: str = DEFAULT_METRIC,
    exclude_self: bool = True, query_chunk_rows: int = DEFAULT_QUERY_CHUNK_ROWS, self_join: bool = False,
    block_bytes_budget: int = DEFAULT_BLOCK_BYTES_BUDGET,
) -> KnnResult:
    """Exact top-k from the broadcast reference (``self_join``: the queries are the reference)."""
    metric = validate_metric(metric)
    if self_join and metric in gemm.METRICS:
        n, d, id_type = describe(reference)
        if fits_one_task(reference.sparkSession.sparkContext, n, d, validate_k(k, n, self_join=exclude_self),
                         metric, block_bytes_budget):
            return one_task_neighbors(reference, n, d, id_type, k, metric, exclude_self)
    ref_ids, R = collect_vectors(reference)
    k = validate_k(k, ref_ids.shape[0], self_join=exclude_self)
    id_type = id_type_of(reference)
    check_queries(queries, id_type)
    if metric not in gemm.METRICS:
        return broadcast_fitted_model(queries, ref_ids, R, k, metric, exclude_self, query_chunk_rows, id_type)
    if self_join:
        return broadcast_group_pairs(reference, ref_ids, R, k, metric, exclude_self, id_type, block_bytes_budget)
    return broadcast_query_batches(queries, ref_ids, R, k, metric, exclude_self, query_chunk_rows, id_type)


# --------------------------------------------------------------------------------------------
# All points: pairs of row groups
# --------------------------------------------------------------------------------------------


def broadcast_group_pairs(
    reference: DataFrame, ref_ids: np.ndarray, R: np.ndarray, k: int, metric: str, exclude_self: bool,
    id_type: str, block_bytes_budget: int,
) -> KnnResult:
    """Two jobs: the diagonal units (one task per group), whose k-th distances are collected as the
    seeds of the cross units; then the cross units, in batches of like total size per task."""
    spark = reference.sparkSession
    sc = spark.sparkContext
    # In id order, every group is a run of consecutive ids: merged group by group, the output
    # comes out sorted by id.
    order = np.argsort(ref_ids, kind="stable")
    ref_ids, R = ref_ids[order], R[order]
    n, d = R.shape
    slots = task_slots(sc)
    n_groups = all_points_groups(n, d, k, block_bytes_budget, slots)
    starts = group_starts(n, n_groups)
    shared = sc.broadcast((ref_ids, R, gemm.frame_for(metric, R), starts))
    rows_computed, fallback_rows, kernel_seconds = sc.accumulator(0), sc.accumulator(0), sc.accumulator(0.0)
    counters = dict(k=k, exclude_self=exclude_self, fallback_rows=fallback_rows, kernel_seconds=kernel_seconds)
    diagonal = (
        sc.parallelize(range(n_groups), n_groups)
        .map(task_function(broadcast_diagonal, shared=shared, **counters))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    seeds = sc.broadcast(dict(diagonal.map(lambda item: (item[0], item[2])).collect()))
    slices = spread_units(cross_pairs(n_groups), 4 * slots)
    cross = sc.parallelize(slices, max(1, len(slices))).flatMap(
        task_function(broadcast_units, shared=shared, seeds=seeds, **counters)
    )
    frame = merged_in_id_order(spark, diagonal.map(lambda item: item[1]).union(cross), n_groups, id_type, k,
                               rows_computed)
    details = {"kernel": "gemm", "reference_vectors": n, "row_groups": n_groups,
               "group_rows": int(np.diff(starts).max()), "units": n_groups * (n_groups + 1) // 2,
               "task_slots": slots}
    return KnnResult(frame, details, rows_computed, functools.partial(release_all, diagonal, shared, seeds),
                     fallback_rows=fallback_rows, kernel_seconds=kernel_seconds, sorted_by_id=True)


def release_all(diagonal: RDD, *shared: Broadcast) -> None:
    diagonal.unpersist()
    for value in shared:
        value.unpersist()


#: The broadcast value a Python worker prepared groups of, and those groups (kept across tasks).
_prepared: dict = {"value": None, "groups": {}}


def prepared_group(shared: Broadcast, number: int) -> RowGroup:
    value = shared.value
    if _prepared["value"] is not value:
        _prepared.update(value=value, groups={})
    groups = _prepared["groups"]
    if number not in groups:
        ids, R, frame, starts = value
        lo, hi = starts[number], starts[number + 1]
        groups[number] = prepare_group(number, ids[lo:hi], R[lo:hi], frame)
    return groups[number]


def broadcast_diagonal(
    number: int, shared: Broadcast, k: int, exclude_self: bool, fallback_rows: Accumulator,
    kernel_seconds: Accumulator,
):
    """One task: the diagonal unit of a group -> (group, its encoded partial result, its seeds)."""
    limit_task_threads()
    encoded, seeded = counted_diagonal(prepared_group(shared, number), k, exclude_self, fallback_rows, kernel_seconds)
    return number, encoded, seeded.seed


def broadcast_units(
    units, shared: Broadcast, seeds: Broadcast, k: int, exclude_self: bool, fallback_rows: Accumulator,
    kernel_seconds: Accumulator,
):
    """One task: its cross units (pairs of group numbers) -> encoded partial results of their groups."""
    limit_task_threads()
    for a, b in units:
        group_a = dataclasses.replace(prepared_group(shared, a), seed=seeds.value[a])
        group_b = dataclasses.replace(prepared_group(shared, b), seed=seeds.value[b])
        yield from counted_cross(group_a, group_b, k, exclude_self, fallback_rows, kernel_seconds)


# --------------------------------------------------------------------------------------------
# Separate queries: batches against the whole reference
# --------------------------------------------------------------------------------------------


def broadcast_query_batches(
    queries: DataFrame, ref_ids: np.ndarray, R: np.ndarray, k: int, metric: str, exclude_self: bool,
    query_chunk_rows: int, id_type: str,
) -> KnnResult:
    sc = queries.sparkSession.sparkContext
    unique, ranks = id_ranks(ref_ids)
    shared = sc.broadcast((unique, ranks, R))
    rows_computed, fallback_rows = sc.accumulator(0), sc.accumulator(0)
    answer = task_function(
        exact_batches, shared=shared, rows_computed=rows_computed, fallback_rows=fallback_rows, d=R.shape[1],
        id_type=id_type, k=k, metric=metric, exclude_self=exclude_self, query_chunk_rows=query_chunk_rows,
    )
    frame = queries.select("id", "vector").mapInArrow(answer, output_schema(id_type))
    details = {"kernel": "gemm", "reference_vectors": int(ref_ids.shape[0]), "query_chunk_rows": query_chunk_rows}
    return KnnResult(frame, details, rows_computed, release=shared.unpersist, fallback_rows=fallback_rows)


def exact_batches(
    batches: Iterator[pa.RecordBatch], shared: Broadcast, rows_computed: Accumulator, fallback_rows: Accumulator,
    d: int, id_type: str, k: int, metric: str, exclude_self: bool, query_chunk_rows: int,
) -> Iterator[pa.RecordBatch]:
    """One task: the exact neighbours of its query batches among the broadcast reference."""
    limit_task_threads()
    unique, ranks, R = shared.value
    for query_ids, Q in numpy_chunks(batches, d, id_type, query_chunk_rows):
        ids, dist, info = gemm.exact_topk(Q, query_ids_as_ranks(query_ids, unique), R, ranks, k, metric,
                                          exclude_self, n_threads=task_threads())
        fallback_rows.add(info["fallback_rows"])
        batch = result_batch(query_ids, real_topk(ids, dist, unique), id_type)
        rows_computed.add(batch.num_rows)
        yield batch


# --------------------------------------------------------------------------------------------
# Other metrics: a fitted scikit-learn model
# --------------------------------------------------------------------------------------------


def broadcast_fitted_model(
    queries: DataFrame, ref_ids: np.ndarray, R: np.ndarray, k: int, metric: str, exclude_self: bool,
    query_chunk_rows: int, id_type: str,
) -> KnnResult:
    sc = queries.sparkSession.sparkContext
    from sklearn.neighbors import NearestNeighbors

    model = NearestNeighbors(algorithm="brute", metric=metric).fit(R)
    shared = sc.broadcast((model, ref_ids))
    rows_computed = sc.accumulator(0)
    answer = task_function(
        answer_batches, shared=shared, rows_computed=rows_computed, d=R.shape[1], id_type=id_type, k=k,
        metric=metric, exclude_self=exclude_self, query_chunk_rows=query_chunk_rows,
    )
    frame = queries.select("id", "vector").mapInArrow(answer, output_schema(id_type))
    details = {"kernel": "scikit-learn", "reference_vectors": int(ref_ids.shape[0]),
               "query_chunk_rows": query_chunk_rows}
    return KnnResult(frame, details, rows_computed, release=shared.unpersist)


def answer_batches(
    batches: Iterator[pa.RecordBatch], shared: Broadcast, rows_computed: Accumulator, d: int, id_type: str,
    k: int, metric: str, exclude_self: bool, query_chunk_rows: int,
) -> Iterator[pa.RecordBatch]:
    """One task: the neighbour batches of its query batches, from the broadcast (model, ids)."""
    limit_task_threads()
    fitted, ids = shared.value
    for query_ids, Q in numpy_chunks(batches, d, id_type, query_chunk_rows):
        batch = result_batch(query_ids, kneighbors_topk(fitted, ids, query_ids, Q, k, metric, exclude_self), id_type)
        rows_computed.add(batch.num_rows)
        yield batch
