"""The ``blocked`` kNN mode: exact top-k with bounded memory and no collect of the reference set.

The reference rows are numbered (per-partition offsets + the position inside the partition, i.e.
``zipWithIndex`` without leaving the DataFrame) and row i goes to block ``i // block_rows``, so
every block holds at most ``block_rows`` rows. The blocks are assembled one per partition
(identity partitioner). Two plans:

* All points (the queries are the reference) with euclidean, sqeuclidean or cosine: every pair
  of blocks is one unit (:mod:`nbknn.knn.row_groups`), each product computed once and updating
  the rows of both blocks. As the blocks are assembled, each runs its diagonal unit (one centring
  and scaling for the whole set, from the same job that numbers the rows) and is cached with its
  rows' seeds; then every block is sent to each cross unit it belongs to, one shuffle partition
  per unit, so a task receives exactly its two blocks. A block's partial results are merged in
  one Arrow call (:func:`~nbknn.knn.partials.merged_groups`; in its own partition and in id order
  when the input's partitions are disjoint ascending runs of ids, :func:`in_id_order`, so the
  output needs no sort). Memory of one unit: two blocks and
  their copy in the joined set, the candidate state and one float32 product tile,
  :func:`~nbknn.knn.planning.pair_block_plan`, which sizes the blocks from ``block_bytes_budget``.
* Otherwise the queries are cut into chunks of ``query_chunk_rows`` rows and cached; a cartesian
  product of the chunks and the blocks makes one task per (query partition, block partition);
  each pair (query chunk, block) gives a local top-k (:func:`~nbknn.knn.kernels.block_topk`: the
  GEMM kernel, or scikit-learn's brute ``kneighbors`` for the other metrics), merged per chunk
  inside the task, then across block partitions by ``reduceByKey``
  (:func:`~nbknn.knn.partials.merge_partials`). Memory of one step: the block (b (8d + 8)
  bytes), the query chunk (q (8d + 16k)) and the distance temporaries, which
  :func:`~nbknn.knn.planning.block_plan` keeps under the budget.

BLAS and OpenMP run ``spark.task.cpus`` threads per task (threadpoolctl), so the task slots do not
oversubscribe the cores. Spark's own buffers (the cached blocks, the shuffle of partial results:
k 16 bytes per row and unit) come on top and spill to disk.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Iterator

import numpy as np
import pyarrow as pa
from pyspark import RDD, Accumulator, StorageLevel, TaskContext
from pyspark.sql import DataFrame

from nbknn.contract import DEFAULT_BLOCK_BYTES_BUDGET, DEFAULT_METRIC
from nbknn.knn import gemm
from nbknn.knn.arrow import arrow_id_type, check_queries, describe, numpy_chunks, output_schema
from nbknn.knn.kernels import block_topk
from nbknn.knn.mode import KnnResult, limit_task_threads, task_function, task_slots
from nbknn.knn.one_task import fits_one_task, one_task_neighbors
from nbknn.knn.partials import (
    counted_cross,
    counted_diagonal,
    merge_partials,
    merged_groups,
    merged_in_id_order,
    output_rows,
)
from nbknn.knn.planning import DEFAULT_QUERY_CHUNK_ROWS, BlockPlan, block_plan, pair_block_plan
from nbknn.knn.row_groups import cross_pairs, prepare_group
from nbknn.knn.topk import merge_topk, validate_k, validate_metric

log = logging.getLogger(__name__)


def neighbors_blocked(
    queries: DataFrame, reference: DataFrame, k: int, metric: str = DEFAULT_METRIC,
    exclude_self: bool = True, block_bytes_budget: int = DEFAULT_BLOCK_BYTES_BUDGET,
    block_rows: int | None = None, query_chunk_rows: int = DEFAULT_QUERY_CHUNK_ROWS, self_join: bool = False,
) -> KnnResult:
    """Exact top-k from (query chunk x reference block) local top-k's merged per query, or for an
    all-points run (``self_join``) with a GEMM metric from pairs of blocks.

    ``reference`` must give the same rows in the same partitions every time it is computed (a
    file scan or a persisted frame: the run persists it): its rows are numbered in a first job.
    """
    metric = validate_metric(metric)
    n, d, id_type = describe(reference)
    k = validate_k(k, n, self_join=exclude_self)
    check_queries(queries, id_type)
    if self_join and block_rows is None and fits_one_task(reference.sparkSession.sparkContext, n, d, k, metric,
                                                          block_bytes_budget):
        return one_task_neighbors(reference, n, d, id_type, k, metric, exclude_self)
    if self_join and metric in gemm.METRICS:
        return blocked_pairs(reference, n, d, id_type, k, metric, exclude_self, block_bytes_budget, block_rows)
    return blocked_chunks(queries, reference, n, d, id_type, k, metric, exclude_self, block_bytes_budget,
                          block_rows, query_chunk_rows)


def blocked_chunks(
    queries: DataFrame, reference: DataFrame, n: int, d: int, id_type: str, k: int, metric: str,
    exclude_self: bool, block_bytes_budget: int, block_rows: int | None, query_chunk_rows: int,
) -> KnnResult:
    """(query chunk x reference block) pairs: one task per (query partition, block partition)."""
    spark = reference.sparkSession
    sc = spark.sparkContext
    plan = block_plan(n, d, k, block_bytes_budget, block_rows, query_chunk_rows)
    # Several blocks may share a partition (a task then streams them one by one): this bounds the
    # number of tasks of the cartesian product, (query partitions) x (block partitions).
    block_partitions = max(1, min(plan.n_blocks, sc.defaultParallelism))
    offsets, _, _ = partition_profile(reference, d, id_type)
    blocks = reference_blocks(reference, plan, d, id_type, block_partitions, offsets).persist(
        StorageLevel.MEMORY_AND_DISK)
    chunks = query_chunks(queries, d, id_type, plan.query_chunk_rows)
    rows_computed, fallback_rows = sc.accumulator(0), sc.accumulator(0)
    partitions = int(spark.conf.get("spark.sql.shuffle.partitions"))
    merged = (
        chunks.cartesian(blocks)
        .mapPartitions(task_function(
            task_topk, k=k, metric=metric, exclude_self=exclude_self, max_pair_bytes=plan.max_pair_bytes,
            fallback_rows=fallback_rows,
        ))
        .reduceByKey(task_function(merge_partials, k=k), partitions)
        .flatMap(task_function(output_rows, k=k, rows_computed=rows_computed))
    )
    # The rows are built here from validated arrays of the declared types: checking every value
    # again in Python (verifySchema) cost more than the kernel's merges.
    frame = spark.createDataFrame(merged, output_schema(id_type), verifySchema=False)
    details = {
        "kernel": "gemm" if metric in gemm.METRICS else "scikit-learn",
        "n_blocks": plan.n_blocks,
        "block_rows": plan.block_rows,
        "query_chunk_rows": plan.query_chunk_rows,
        "estimated_task_bytes": plan.estimated_bytes,
        "block_bytes_budget": block_bytes_budget,
        "block_rows_override": block_rows,
        "block_partitions": block_partitions,
        "query_partitions": chunks.getNumPartitions(),
    }
    log.info("blocked kNN: %d blocks of <= %d rows, %d-row query chunks",
             plan.n_blocks, plan.block_rows, plan.query_chunk_rows)
    return KnnResult(frame, details, rows_computed, functools.partial(unpersist_all, blocks, chunks), fallback_rows)


def blocked_pairs(
    reference: DataFrame, n: int, d: int, id_type: str, k: int, metric: str, exclude_self: bool,
    block_bytes_budget: int, block_rows: int | None,
) -> KnnResult:
    """All points from pairs of blocks (:mod:`nbknn.knn.row_groups`): the blocks run their
    diagonal unit as they are assembled and are cached with their rows' seeds; then each block goes
    to the cross units it belongs to (one shuffle partition per unit, :func:`unit_members`); the
    partial results are merged per block (:mod:`nbknn.knn.partials`)."""
    spark = reference.sparkSession
    sc = spark.sparkContext
    plan = pair_block_plan(n, d, k, block_bytes_budget, block_rows, task_slots(sc))
    # One block per partition: the diagonal units are tasks of equal size.
    block_partitions = plan.n_blocks
    offsets, stats, id_ordered = partition_profile(reference, d, id_type)
    frame_ = gemm.frame_from_stats(metric, *stats)
    rows_computed, fallback_rows, kernel_seconds = sc.accumulator(0), sc.accumulator(0), sc.accumulator(0.0)
    counters = dict(k=k, exclude_self=exclude_self, fallback_rows=fallback_rows, kernel_seconds=kernel_seconds)
    # Each block's diagonal unit runs as the blocks are assembled: the cached blocks carry their
    # rows' seeds into the cross units.
    seeded = (
        reference_blocks(reference, plan, d, id_type, block_partitions, offsets)
        .map(task_function(seeded_block, frame=frame_, **counters))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    units = {pair: index for index, pair in enumerate(cross_pairs(plan.n_blocks))}
    cross = (
        seeded.flatMap(task_function(unit_members, units=units))
        .partitionBy(max(1, len(units)), unit_partition)
        .mapPartitions(task_function(pair_unit, frame=frame_, **counters))
    )
    partials = seeded.map(lambda item: item[1]).union(cross)
    if id_ordered:
        frame = merged_in_id_order(spark, partials, plan.n_blocks, id_type, k, rows_computed)
    else:
        frame = merged_groups(spark, partials, id_type, k, rows_computed)
    details = {
        "kernel": "gemm",
        "input_in_id_order": id_ordered,
        "n_blocks": plan.n_blocks,
        "block_rows": plan.block_rows,
        "units": plan.n_blocks * (plan.n_blocks + 1) // 2,
        "estimated_task_bytes": plan.estimated_bytes,
        "block_bytes_budget": block_bytes_budget,
        "block_rows_override": block_rows,
        "block_partitions": block_partitions,
        "task_slots": task_slots(sc),
    }
    log.info("blocked kNN (pairs of blocks): %d blocks of <= %d rows, %d units",
             plan.n_blocks, plan.block_rows, details["units"])
    return KnnResult(frame, details, rows_computed, seeded.unpersist, fallback_rows, kernel_seconds,
                     sorted_by_id=id_ordered)


def seeded_block(
    item, frame: gemm.Frame, k: int, exclude_self: bool, fallback_rows: Accumulator, kernel_seconds: Accumulator
):
    """An assembled block -> ((number, ids, rows, its rows' seeds), its diagonal unit's encoded
    partial). The cached block keeps its float64 rows only: a unit prepares it again (a float32
    copy, far cheaper than shipping one)."""
    limit_task_threads()
    block, (ids, X) = item
    encoded, seeded = counted_diagonal(prepare_group(block, ids, X, frame), k, exclude_self, fallback_rows,
                                       kernel_seconds)
    return (block, ids, X, seeded.seed), encoded


def unit_members(item, units: dict[tuple[int, int], int]):
    """A cached block -> (unit index, the block) for every cross unit (a, b), a < b, it is in."""
    block = item[0]
    number = block[0]
    return [(index, block) for (a, b), index in units.items() if number in (a, b)]


def unit_partition(index: int) -> int:
    """Partitioner of the units' blocks: unit i in partition i."""
    return index


def pair_unit(items, frame: gemm.Frame, k: int, exclude_self: bool, fallback_rows: Accumulator,
              kernel_seconds: Accumulator):
    """One task: the two blocks of its unit -> the encoded partial results of both."""
    limit_task_threads()
    blocks = sorted((block for _, block in items), key=lambda block: block[0])
    if not blocks:
        return
    if len(blocks) != 2:
        raise RuntimeError(f"internal error: a unit received {len(blocks)} blocks, expected 2")
    a, b = (dataclasses.replace(prepare_group(number, ids, X, frame), seed=seed) for number, ids, X, seed in blocks)
    yield from counted_cross(a, b, k, exclude_self, fallback_rows, kernel_seconds)


def unpersist_all(*rdds: RDD) -> None:
    for rdd in rdds:
        rdd.unpersist()


# --------------------------------------------------------------------------------------------
# The reference blocks
# --------------------------------------------------------------------------------------------


def partition_profile(frame: DataFrame, d: int, id_type: str = "long") -> tuple[dict[int, int], tuple, bool]:
    """One job over the vectors: the index of the first row of every non-empty partition, (count,
    column sums, minima, maxima) of the whole set, and whether the rows are numbered in id order.

    When every partition's ids ascend and the partitions' id ranges do not overlap (a set written
    sorted by id, read back in any partition order), the partitions are numbered in the order of
    their ids, so row numbers, and the blocks cut from them, follow the ids; otherwise partition
    by partition."""
    id_sql = spark_id_type(id_type)
    schema = (f"p int, count bigint, sums array<double>, mins array<double>, maxs array<double>, "
              f"first_id {id_sql}, last_id {id_sql}, ascending boolean")
    rows = frame.select("id", "vector").mapInArrow(
        task_function(partition_stats, d=d, id_type=id_type), schema).collect()
    id_ordered = in_id_order(rows)
    offsets, running = {}, 0
    for row in sorted(rows, key=(lambda row: row["first_id"]) if id_ordered else (lambda row: row["p"])):
        offsets[row["p"]] = running
        running += row["count"]
    stats = (
        running,
        np.sum([row["sums"] for row in rows], axis=0),
        np.min([row["mins"] for row in rows], axis=0),
        np.max([row["maxs"] for row in rows], axis=0),
    )
    return offsets, stats, id_ordered


def in_id_order(rows: list) -> bool:
    """Whether partitions whose ids each ascend can be ordered so that all ids ascend."""
    if not all(row["ascending"] for row in rows):
        return False
    ranges = sorted((row["first_id"], row["last_id"]) for row in rows)
    return all(last < following for (_, last), (following, _) in zip(ranges, ranges[1:]))


def profile_schema(id_type: str) -> pa.Schema:
    return pa.schema([
        ("p", pa.int32()), ("count", pa.int64()),
        ("sums", pa.list_(pa.float64())), ("mins", pa.list_(pa.float64())), ("maxs", pa.list_(pa.float64())),
        ("first_id", arrow_id_type(id_type)), ("last_id", arrow_id_type(id_type)), ("ascending", pa.bool_()),
    ])


def partition_stats(batches: Iterator[pa.RecordBatch], d: int, id_type: str) -> Iterator[pa.RecordBatch]:
    count, sums = 0, np.zeros(d)
    mins, maxs = np.full(d, np.inf), np.full(d, -np.inf)
    first = last = None
    ascending = True
    for ids, X in numpy_chunks(batches, d, id_type, 1 << 30):
        if ids.shape[0] == 0:
            continue
        ascending = ascending and bool((ids[1:] > ids[:-1]).all()) and (last is None or last < ids[0])
        first = ids[0] if first is None else first
        last = ids[-1]
        count += X.shape[0]
        sums += X.sum(axis=0)
        np.minimum(mins, X.min(axis=0), out=mins)
        np.maximum(maxs, X.max(axis=0), out=maxs)
    if count:
        yield pa.RecordBatch.from_pylist([{
            "p": TaskContext.get().partitionId(), "count": count,
            "sums": sums.tolist(), "mins": mins.tolist(), "maxs": maxs.tolist(),
            "first_id": first.item(), "last_id": last.item(), "ascending": ascending,
        }], schema=profile_schema(id_type))


def reference_blocks(
    reference: DataFrame, plan: BlockPlan, d: int, id_type: str, block_partitions: int, offsets: dict[int, int]
) -> RDD:
    """RDD of (block number, (ids, R)), the blocks of ``plan`` spread over ``block_partitions``
    (``offsets``: first row of every partition, from :func:`partition_profile`)."""
    piece_schema = f"block int, start bigint, ids array<{spark_id_type(id_type)}>, data binary"
    return (
        reference.select("id", "vector")
        .mapInArrow(
            task_function(block_pieces, offsets=offsets, block_rows=plan.block_rows, d=d, id_type=id_type),
            piece_schema,
        )
        .rdd.map(task_function(to_block_piece, d=d, id_type=id_type))
        .repartitionAndSortWithinPartitions(block_partitions, block_of_piece, keyfunc=lambda key: key)
        .mapPartitions(task_function(assemble_blocks, block_rows=plan.block_rows))
    )


def block_pieces(
    batches: Iterator[pa.RecordBatch], offsets: dict[int, int], block_rows: int, d: int, id_type: str
) -> Iterator[pa.RecordBatch]:
    """Consecutive rows of one partition, cut where the block changes (never a whole block held)."""
    partition = TaskContext.get().partitionId()
    first = offsets.get(partition, 0)
    seen = 0
    for ids, X in numpy_chunks(batches, d, id_type, 1 << 30):
        index = first + seen + np.arange(ids.shape[0], dtype=np.int64)
        seen += ids.shape[0]
        blocks = index // block_rows
        cuts = np.flatnonzero(np.diff(blocks)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, ids.shape[0]]):
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array([int(blocks[lo])], type=pa.int32()),
                    pa.array([int(index[lo])], type=pa.int64()),
                    pa.array([ids[lo:hi]], type=pa.list_(arrow_id_type(id_type))),
                    pa.array([X[lo:hi].tobytes()], type=pa.binary()),
                ],
                names=["block", "start", "ids", "data"],
            )


def to_block_piece(row, d: int, id_type: str):
    """A piece row -> ((block, first row), (ids, X))."""
    return (row["block"], row["start"]), (ids_from_list(row["ids"], id_type), matrix_from_bytes(row["data"], d))


def block_of_piece(key) -> int:
    """Partitioner of the pieces: the block number (Spark takes it modulo the partitions)."""
    return key[0]


def assemble_blocks(items, block_rows: int):
    """Pieces sorted by (block, first row) -> one (block, (ids, R)) per block, one block held at a time."""
    current, ids_parts, x_parts = None, [], []
    for (block, _), (ids, X) in items:
        if block != current and ids_parts:
            yield assembled_block(current, ids_parts, x_parts, block_rows)
            ids_parts, x_parts = [], []
        current = block
        ids_parts.append(ids)
        x_parts.append(X)
    if ids_parts:
        yield assembled_block(current, ids_parts, x_parts, block_rows)


def assembled_block(block: int, ids_parts: list, x_parts: list, block_rows: int):
    ids = np.concatenate(ids_parts)
    if ids.shape[0] > block_rows:
        raise RuntimeError(
            f"block {block} has {ids.shape[0]} rows, more than block_rows={block_rows}: the reference "
            "frame changed between jobs (it must be deterministic)"
        )
    return block, (ids, np.concatenate(x_parts))


# --------------------------------------------------------------------------------------------
# The query chunks
# --------------------------------------------------------------------------------------------


def query_chunks(queries: DataFrame, d: int, id_type: str, chunk_rows: int) -> RDD:
    """Persisted RDD of (ids, Q), the queries in chunks of at most ``chunk_rows`` rows."""
    return (
        queries.select("id", "vector")
        .mapInArrow(
            task_function(chunk_batches, d=d, id_type=id_type, chunk_rows=chunk_rows),
            f"ids array<{spark_id_type(id_type)}>, data binary",
        )
        .rdd.map(task_function(to_chunk, d=d, id_type=id_type))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )


def chunk_batches(
    batches: Iterator[pa.RecordBatch], d: int, id_type: str, chunk_rows: int
) -> Iterator[pa.RecordBatch]:
    """One (ids, data) row per query chunk of the task's batches."""
    for ids, Q in numpy_chunks(batches, d, id_type, chunk_rows):
        yield pa.RecordBatch.from_arrays(
            [pa.array([ids], type=pa.list_(arrow_id_type(id_type))), pa.array([Q.tobytes()], type=pa.binary())],
            names=["ids", "data"],
        )


def to_chunk(row, d: int, id_type: str):
    return ids_from_list(row["ids"], id_type), matrix_from_bytes(row["data"], d)


def spark_id_type(id_type: str) -> str:
    return "bigint" if id_type == "long" else "string"


def ids_from_list(ids: list, id_type: str) -> np.ndarray:
    return np.asarray(ids, dtype=np.int64 if id_type == "long" else str)


def matrix_from_bytes(data: bytes, d: int) -> np.ndarray:
    return np.frombuffer(data, dtype=np.float64).reshape(-1, d)


# --------------------------------------------------------------------------------------------
# Top-k of every (query chunk, block) pair, merged per chunk
# --------------------------------------------------------------------------------------------


def task_topk(pairs, k: int, metric: str, exclude_self: bool, max_pair_bytes: int, fallback_rows: Accumulator):
    """Every (query chunk, block) pair of one task, merged per chunk inside the task: the
    shuffle then carries one partial result per (chunk, block partition), not per block."""
    limit_task_threads()
    partial: dict = {}
    for (query_ids, Q), (_, (ref_ids, R)) in pairs:
        # The first query id names the chunk: ids are unique, and the chunk's row order is
        # the same in every pair, so partial results of one key line up row by row.
        key = query_ids[0].item()
        result, fallback = block_topk(query_ids, Q, ref_ids, R, k, metric, exclude_self, max_pair_bytes)
        fallback_rows.add(fallback)
        if key in partial:
            result = merge_topk(partial[key][1], result, k)
        partial[key] = (query_ids, result)
    return iter(partial.items())
