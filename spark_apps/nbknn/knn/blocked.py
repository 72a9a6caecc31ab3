"""The ``blocked`` kNN mode: exact top-k with bounded memory and no collect of the reference set.

The reference rows are numbered (per-partition offsets + the position inside the partition, i.e.
``zipWithIndex`` without leaving the DataFrame) and row i goes to block ``i // block_rows``, so
every block holds at most ``block_rows`` rows; :func:`~nbknn.knn.planning.block_plan` sizes the
blocks from ``block_bytes_budget``. The blocks are assembled one per partition (identity
partitioner) and cached; the queries are cut into chunks of ``query_chunk_rows`` rows and cached.
A cartesian product of the two RDDs makes one task per (query partition, block partition); each
pair (query chunk, block) gives a local top-k (:func:`~nbknn.knn.kernels.block_topk`:
scikit-learn's brute ``kneighbors``, i.e. its fused ``ArgKmin`` reduction for euclidean, with the
exact (distance, id) repair of tied rows), merged per chunk inside the task; then ``reduceByKey``
with :func:`~nbknn.knn.topk.merge_topk` merges the chunk's partial results of the block
partitions, row by row and vectorised, into the global top-k. BLAS and OpenMP run
``spark.task.cpus`` threads per task (threadpoolctl), so the task slots do not oversubscribe the
cores.

Memory of one step of a task: the block (b (8d + 8) bytes), the query chunk (q (8d + 16k)) and
the distance/selection temporaries (min(q, KERNEL_CHUNK_ROWS) b 32: the kernel holds the
distances of KERNEL_CHUNK_ROWS query rows at a time), which the plan keeps under the budget;
Spark's own buffers (the cached blocks, the shuffle of partial results: q k 16 bytes per chunk
and block partition) come on top and spill to disk.
"""

from __future__ import annotations

import functools
import logging
from typing import Iterator

import numpy as np
import pyarrow as pa
from pyspark import RDD, Accumulator, StorageLevel, TaskContext
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from nbknn.contract import DEFAULT_BLOCK_BYTES_BUDGET, DEFAULT_METRIC
from nbknn.knn.arrow import arrow_id_type, check_queries, describe, numpy_chunks, output_schema
from nbknn.knn.kernels import block_topk
from nbknn.knn.mode import KnnResult, limit_task_threads, task_function
from nbknn.knn.planning import DEFAULT_QUERY_CHUNK_ROWS, BlockPlan, block_plan
from nbknn.knn.topk import TopK, merge_topk, pad_id_for, validate_k, validate_metric

log = logging.getLogger(__name__)


def neighbors_blocked(
    queries: DataFrame, reference: DataFrame, k: int, metric: str = DEFAULT_METRIC,
    exclude_self: bool = True, block_bytes_budget: int = DEFAULT_BLOCK_BYTES_BUDGET,
    block_rows: int | None = None, query_chunk_rows: int = DEFAULT_QUERY_CHUNK_ROWS,
) -> KnnResult:
    """Exact top-k from (query chunk x reference block) local top-k's merged per query.

    ``reference`` must give the same rows in the same partitions every time it is computed (a
    file scan or a persisted frame: the run persists it): its rows are numbered in a first job.
    """
    spark = reference.sparkSession
    sc = spark.sparkContext
    metric = validate_metric(metric)
    n, d, id_type = describe(reference)
    k = validate_k(k, n, self_join=exclude_self)
    check_queries(queries, id_type)
    plan = block_plan(n, d, k, block_bytes_budget, block_rows, query_chunk_rows)
    # Several blocks may share a partition (a task then streams them one by one): this bounds the
    # number of tasks of the cartesian product, (query partitions) x (block partitions).
    block_partitions = max(1, min(plan.n_blocks, sc.defaultParallelism))
    blocks = reference_blocks(reference, plan, d, id_type, block_partitions)
    chunks = query_chunks(queries, d, id_type, plan.query_chunk_rows)
    rows_computed = sc.accumulator(0)
    partitions = int(spark.conf.get("spark.sql.shuffle.partitions"))
    merged = (
        chunks.cartesian(blocks)
        .mapPartitions(task_function(
            task_topk, k=k, metric=metric, exclude_self=exclude_self, max_pair_bytes=plan.max_pair_bytes
        ))
        .reduceByKey(task_function(merge_chunk_results, k=k), partitions)
        .flatMap(task_function(output_rows, k=k, rows_computed=rows_computed))
    )
    # The rows are built here from validated arrays of the declared types: checking every value
    # again in Python (verifySchema) cost more than the kernel's merges.
    frame = spark.createDataFrame(merged, output_schema(id_type), verifySchema=False)
    details = {
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
    return KnnResult(frame, details, rows_computed, functools.partial(unpersist_all, blocks, chunks))


def unpersist_all(*rdds: RDD) -> None:
    for rdd in rdds:
        rdd.unpersist()


# --------------------------------------------------------------------------------------------
# The reference blocks
# --------------------------------------------------------------------------------------------


def partition_offsets(frame: DataFrame) -> dict[int, int]:
    """Index of the first row of every non-empty partition (rows numbered partition by partition)."""
    rows = frame.select(F.spark_partition_id().alias("p")).groupBy("p").count().collect()
    offsets, running = {}, 0
    for p, count in sorted((row["p"], row["count"]) for row in rows):
        offsets[p] = running
        running += count
    return offsets


def reference_blocks(reference: DataFrame, plan: BlockPlan, d: int, id_type: str, block_partitions: int) -> RDD:
    """Persisted RDD of (block number, (ids, R)), the blocks of ``plan`` spread over ``block_partitions``."""
    offsets = partition_offsets(reference.select("id"))
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
        .persist(StorageLevel.MEMORY_AND_DISK)
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


def task_topk(pairs, k: int, metric: str, exclude_self: bool, max_pair_bytes: int):
    """Every (query chunk, block) pair of one task, merged per chunk inside the task: the
    shuffle then carries one partial result per (chunk, block partition), not per block."""
    limit_task_threads()
    partial: dict = {}
    for (query_ids, Q), (_, (ref_ids, R)) in pairs:
        # The first query id names the chunk: ids are unique, and the chunk's row order is
        # the same in every pair, so partial results of one key line up row by row.
        key = query_ids[0].item()
        result = block_topk(query_ids, Q, ref_ids, R, k, metric, exclude_self, max_pair_bytes)
        if key in partial:
            result = merge_topk(partial[key][1], result, k)
        partial[key] = (query_ids, result)
    return iter(partial.items())


def merge_chunk_results(a: tuple[np.ndarray, TopK], b: tuple[np.ndarray, TopK], k: int):
    """Two partial results of one query chunk -> (query ids, merged top-k)."""
    return a[0], merge_topk(a[1], b[1], k)


def output_rows(item, k: int, rows_computed: Accumulator):
    """A chunk's merged result -> its output rows (id, neighbor_ids, distances)."""
    _, (query_ids, result) = item
    ids, dist = result
    if ids.shape[1] != k or (ids == pad_id_for(ids)).any():
        raise RuntimeError(f"internal error: a merged row has fewer than k={k} neighbours")
    rows_computed.add(query_ids.shape[0])
    return zip(query_ids.tolist(), ids.tolist(), dist.tolist())
