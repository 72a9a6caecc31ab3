"""All-points k-nearest neighbours on Spark: the ``knn_neighbors`` application's library.

Input frames hold ``id`` (bigint or string) and ``vector`` (array<double>, one dimension, finite,
ids unique: what :mod:`nbknn.vectors` accepts). Each mode returns a lazy frame of
``id, neighbor_ids, distances`` (one row per query, neighbours nearest first, ties by id) wrapped in
a :class:`KnnResult` that also carries the mode's details and a ``release`` for what it cached.

Modes
-----
``broadcast``
    The reference set is collected on the driver, a ``NearestNeighbors(algorithm="brute")`` is
    fitted on it and broadcast; every query partition is answered with ``kneighbors`` on batches
    of up to ``query_chunk_rows`` rows (``mapInArrow``). Driver and every executor hold the
    reference matrix (n * d * 8 bytes): allowed only up to ``broadcast_max_bytes``.
``blocked``
    Exact with bounded memory and no collect of the reference set. The reference rows are numbered
    (per-partition offsets + the position inside the partition, i.e. ``zipWithIndex`` without
    leaving the DataFrame) and row i goes to block ``i // block_rows``, so every block holds at
    most ``block_rows`` rows; :func:`~nbknn.knn_core.plan_blocks` sizes the blocks from
    ``block_bytes_budget``. The blocks are assembled one per partition (identity partitioner) and
    cached; the queries are cut into chunks of ``query_chunk_rows`` rows and cached. A cartesian
    product of the two RDDs makes one task per (query partition, block partition); each pair
    (query chunk, block) gives a local top-k (:func:`~nbknn.knn_kernels.block_topk`:
    scikit-learn's brute ``kneighbors``, i.e. its fused ``ArgKmin`` reduction for euclidean, with
    the exact (distance, id) repair of tied rows), merged per chunk inside the task; then
    ``reduceByKey`` with :func:`~nbknn.knn_core.merge_topk` merges the chunk's partial results of
    the block partitions, row by row and vectorised, into the global top-k. BLAS and OpenMP run
    ``spark.task.cpus`` threads per task (threadpoolctl), so the task slots do not oversubscribe
    the cores.
    Memory of one step of a task: the block (b (8d + 8) bytes), the query chunk
    (q (8d + 16k)) and the distance/selection temporaries (min(q, KERNEL_CHUNK_ROWS) b 32: the
    kernel holds the distances of KERNEL_CHUNK_ROWS query rows at a time), which plan_blocks keeps
    under the budget; Spark's own buffers (the cached blocks, the shuffle of partial results:
    q k 16 bytes per chunk and block partition) come on top and spill to disk.
``auto``
    ``broadcast`` when the reference matrix (n * d * 8 bytes) fits ``broadcast_max_bytes``, else
    ``blocked``; the choice and its reason are logged and go into the summary.
``annoy``
    Approximate. The reference set is collected on the driver (same ``broadcast_max_bytes`` limit;
    the index takes about n * (4d + 16) bytes plus its trees), an Annoy index is built once with a
    fixed seed, saved to a local file and shipped to the executors with ``SparkContext.addFile``;
    each Python worker memory-maps it (``SparkFiles.get``) once and answers its batches. The run
    measures recall@k against the exact neighbours (knn_core brute force) of a sample of queries.

All modes exclude a query's own id when ``exclude_self`` (scikit-learn's ``kneighbors()``
without X: an identical twin with another id stays a neighbour) and order neighbours by
(distance, id); the exact modes agree with each other and with scikit-learn brute force.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import Accumulator, SparkFiles, StorageLevel, TaskContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, LongType, StringType, StructField, StructType
from sklearn.neighbors import NearestNeighbors

from nbknn import fs
from nbknn.documents import InputError, check_reject_fraction, publish_rejects
from nbknn.knn_core import (
    BYTES_PER_PAIR,
    BlockPlan,
    TopK,
    _task_bytes,
    local_topk,
    merge_topk,
    pad_id_for,
    plan_blocks,
    validate_k,
    validate_metric,
)
from nbknn.knn_kernels import (
    KERNEL_CHUNK_ROWS,
    annoy_metric,
    annoy_topk,
    block_topk,
    build_annoy_index,
    kneighbors_topk,
    limit_threads,
    recall_at_k,
)
from nbknn.provenance import code_version
from nbknn.vectors import (
    VectorSpec,
    accepted_vectors,
    check_unique_ids,
    choose_dimension,
    choose_id_type,
    finalize,
    profile,
    read_vectors,
    rejected_vectors,
)

log = logging.getLogger(__name__)

MODES = ("auto", "broadcast", "blocked", "annoy")
DEFAULT_K = 10
DEFAULT_METRIC = "euclidean"
DEFAULT_BLOCK_BYTES_BUDGET = 64 * 1024 * 1024
DEFAULT_BROADCAST_MAX_BYTES = 256 * 1024 * 1024
# Query rows per batch (broadcast, annoy) and per element of the blocked mode's product with the
# reference blocks: every (element, block) pair ships both through the Python worker, so larger
# elements ship the blocks fewer times; the kernel itself works in KERNEL_CHUNK_ROWS-row pieces.
DEFAULT_QUERY_CHUNK_ROWS = 8192
DEFAULT_ANNOY_TREES = 50
DEFAULT_ANNOY_SEED = 42
DEFAULT_RECALL_SAMPLE = 1000

OUTPUT_COLUMNS = ("id", "neighbor_ids", "distances")


@dataclass(frozen=True)
class KnnOptions:
    """What to compute and how (the defaults of the application live here)."""

    k: int = DEFAULT_K
    metric: str = DEFAULT_METRIC
    exclude_self: bool = True
    mode: str = "auto"
    block_bytes_budget: int = DEFAULT_BLOCK_BYTES_BUDGET
    broadcast_max_bytes: int = DEFAULT_BROADCAST_MAX_BYTES
    query_chunk_rows: int = DEFAULT_QUERY_CHUNK_ROWS
    # Rows per reference block, overriding the size derived from block_bytes_budget.
    block_rows: int | None = None
    annoy_trees: int = DEFAULT_ANNOY_TREES
    annoy_search_k: int = -1
    annoy_seed: int = DEFAULT_ANNOY_SEED
    recall_sample: int = DEFAULT_RECALL_SAMPLE

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} (got {self.mode!r})")
        validate_metric(self.metric)
        for name in ("block_bytes_budget", "broadcast_max_bytes", "query_chunk_rows", "annoy_trees", "recall_sample"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.block_rows is not None and self.block_rows < 1:
            raise ValueError(f"block_rows must be >= 1 (got {self.block_rows})")
        if self.mode == "annoy":
            annoy_metric(self.metric)


@dataclass
class KnnResult:
    """A mode's lazy output frame, what it did, and how to free what it cached once written.

    ``rows_computed`` counts the output rows the mode's last Python step produced, in every task
    attempt: once the frame is written it equals the number of queries unless tasks ran again
    (a retry, a lost executor, or a plan that evaluates the frame twice).
    """

    frame: DataFrame
    details: dict
    rows_computed: Accumulator
    release: Callable[[], None] = field(default=lambda: None)


# --------------------------------------------------------------------------------------------
# Frames <-> numpy
# --------------------------------------------------------------------------------------------


def id_type_of(frame: DataFrame) -> str:
    """``long`` for an integer id column, ``string`` for a string one."""
    spark_type = dict(frame.dtypes)["id"]
    if spark_type in ("bigint", "int", "smallint", "tinyint"):
        return "long"
    if spark_type == "string":
        return "string"
    raise TypeError(f"id column must be an integer or a string (got {spark_type})")


def output_schema(id_type: str) -> StructType:
    spark_id = LongType() if id_type == "long" else StringType()
    return StructType(
        [
            StructField("id", spark_id, False),
            StructField("neighbor_ids", ArrayType(spark_id, False), False),
            StructField("distances", ArrayType(DoubleType(), False), False),
        ]
    )


def _arrow_id_type(id_type: str) -> pa.DataType:
    return pa.int64() if id_type == "long" else pa.string()


def _ids_to_numpy(array, id_type: str) -> np.ndarray:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if id_type == "long":
        return array.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return np.array(array.to_pylist(), dtype=str)


def _vectors_to_numpy(array, d: int) -> np.ndarray:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    values = pc.list_flatten(array).to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(values, dtype=np.float64).reshape(-1, d)


def _chunks(batches: Iterator[pa.RecordBatch], d: int, id_type: str, rows: int):
    """(ids, X) numpy chunks of at most ``rows`` rows from Arrow batches of (id, vector)."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        ids = _ids_to_numpy(batch.column("id"), id_type)
        X = _vectors_to_numpy(batch.column("vector"), d)
        for start in range(0, ids.shape[0], rows):
            yield ids[start : start + rows], X[start : start + rows]


def _result_batch(query_ids: np.ndarray, result: TopK, id_type: str) -> pa.RecordBatch:
    """One output batch (id, neighbor_ids, distances); padding entries are left out."""
    ids, d = result
    keep = ids != pad_id_for(ids) if ids.size else np.zeros(ids.shape, dtype=bool)
    offsets = pa.array(np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32))
    arrow_id = _arrow_id_type(id_type)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(query_ids, type=arrow_id),
            pa.ListArray.from_arrays(offsets, pa.array(ids[keep], type=arrow_id)),
            pa.ListArray.from_arrays(offsets, pa.array(d[keep], type=pa.float64())),
        ],
        names=list(OUTPUT_COLUMNS),
    )


def collect_vectors(frame: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The whole frame on the driver: ids (n,), vectors (n, d) float64."""
    id_type = id_type_of(frame)
    table = frame.select("id", "vector").toArrow()
    ids = _ids_to_numpy(table.column("id"), id_type)
    if ids.shape[0] == 0:
        raise InputError("no reference vectors")
    d = len(table.column("vector")[0])
    return ids, _vectors_to_numpy(table.column("vector"), d)


def describe(frame: DataFrame) -> tuple[int, int, str]:
    """(number of rows, dimension, id type) of a validated vector frame."""
    n = frame.count()
    if n == 0:
        raise InputError("no reference vectors")
    d = frame.select(F.size("vector")).first()[0]
    return n, int(d), id_type_of(frame)


def _check_queries(queries: DataFrame, id_type: str) -> None:
    if id_type_of(queries) != id_type:
        raise TypeError(
            f"queries and reference must have the same id type (got {id_type_of(queries)}, {id_type})"
        )


# --------------------------------------------------------------------------------------------
# Modes
# --------------------------------------------------------------------------------------------


def choose_mode(requested: str, n_reference: int, d: int, broadcast_max_bytes: int) -> tuple[str, str]:
    """(mode, reason): ``auto`` compares the reference matrix's n * d * 8 bytes with the budget."""
    if requested not in MODES:
        raise ValueError(f"mode must be one of {MODES} (got {requested!r})")
    size = n_reference * d * 8
    if requested != "auto":
        if requested in ("broadcast", "annoy") and size > broadcast_max_bytes:
            raise InputError(
                f"mode={requested} collects the reference set on the driver: expected at most "
                f"broadcast_max_bytes={broadcast_max_bytes} bytes, got {size} (n={n_reference} x d={d} x 8); "
                "use mode=blocked or raise broadcast_max_bytes"
            )
        return requested, "requested"
    if size <= broadcast_max_bytes:
        return "broadcast", f"reference matrix {size} bytes <= broadcast_max_bytes {broadcast_max_bytes}"
    return "blocked", f"reference matrix {size} bytes > broadcast_max_bytes {broadcast_max_bytes}"


def neighbors_broadcast(
    queries: DataFrame, reference: DataFrame, k: int, metric: str = DEFAULT_METRIC,
    exclude_self: bool = True, query_chunk_rows: int = DEFAULT_QUERY_CHUNK_ROWS,
) -> KnnResult:
    """Exact top-k with a broadcast, fitted ``NearestNeighbors(algorithm="brute")``."""
    spark = reference.sparkSession
    metric = validate_metric(metric)
    ref_ids, R = collect_vectors(reference)
    k = validate_k(k, ref_ids.shape[0], self_join=exclude_self)
    id_type = id_type_of(reference)
    _check_queries(queries, id_type)
    model = NearestNeighbors(algorithm="brute", metric=metric).fit(R)
    shared = spark.sparkContext.broadcast((model, ref_ids))
    rows_computed = spark.sparkContext.accumulator(0)
    d = R.shape[1]

    def answer(batches):
        _limit_task_threads()
        fitted, ids = shared.value
        for query_ids, Q in _chunks(batches, d, id_type, query_chunk_rows):
            batch = _result_batch(query_ids, kneighbors_topk(fitted, ids, query_ids, Q, k, metric, exclude_self), id_type)
            rows_computed.add(batch.num_rows)
            yield batch

    frame = queries.select("id", "vector").mapInArrow(answer, output_schema(id_type))
    details = {"reference_vectors": int(ref_ids.shape[0]), "query_chunk_rows": query_chunk_rows}
    return KnnResult(frame, details, rows_computed, release=lambda: shared.unpersist())


def _limit_task_threads() -> None:
    """Inside a task: BLAS / OpenMP threads = the task's cores (spark.task.cpus, default 1)."""
    context = TaskContext.get()
    limit_threads(context.cpus() if context is not None else 1)


def block_plan(
    n: int, d: int, k: int, block_bytes_budget: int, block_rows: int | None = None,
    query_chunk_rows: int = DEFAULT_QUERY_CHUNK_ROWS,
) -> BlockPlan:
    """Blocks sized from the budget (knn_core.plan_blocks), or of ``block_rows`` rows when given.

    The kernel (knn_kernels.block_topk) holds the distances of at most KERNEL_CHUNK_ROWS query
    rows to a block at a time, whatever the query chunk's size: the plan counts that, not q."""
    if block_rows is None:
        return plan_blocks(n, d, k, block_bytes_budget, query_chunk_rows, pair_rows=KERNEL_CHUNK_ROWS)
    b = min(int(block_rows), n)
    q = int(query_chunk_rows)
    return BlockPlan(
        n_blocks=math.ceil(n / b),
        block_rows=b,
        query_chunk_rows=q,
        max_pair_bytes=min(q, KERNEL_CHUNK_ROWS) * b * BYTES_PER_PAIR,
        estimated_bytes=_task_bytes(b, q, d, k, KERNEL_CHUNK_ROWS),
    )


def _partition_offsets(frame: DataFrame) -> dict[int, int]:
    """Index of the first row of every non-empty partition (rows numbered partition by partition)."""
    rows = frame.select(F.spark_partition_id().alias("p")).groupBy("p").count().collect()
    offsets, running = {}, 0
    for p, count in sorted((row["p"], row["count"]) for row in rows):
        offsets[p] = running
        running += count
    return offsets


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
    _check_queries(queries, id_type)
    plan = block_plan(n, d, k, block_bytes_budget, block_rows, query_chunk_rows)
    b, n_blocks, q = plan.block_rows, plan.n_blocks, plan.query_chunk_rows
    offsets = _partition_offsets(reference.select("id"))
    piece_schema = f"block int, start bigint, ids array<{'bigint' if id_type == 'long' else 'string'}>, data binary"

    def pieces(batches):
        """Consecutive rows of one partition, cut where the block changes (never a whole block held)."""
        partition = TaskContext.get().partitionId()
        first = offsets.get(partition, 0)
        seen = 0
        for ids, X in _chunks(batches, d, id_type, 1 << 30):
            index = first + seen + np.arange(ids.shape[0], dtype=np.int64)
            seen += ids.shape[0]
            blocks = index // b
            cuts = np.flatnonzero(np.diff(blocks)) + 1
            for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, ids.shape[0]]):
                yield pa.RecordBatch.from_arrays(
                    [
                        pa.array([int(blocks[lo])], type=pa.int32()),
                        pa.array([int(index[lo])], type=pa.int64()),
                        pa.array([ids[lo:hi]], type=pa.list_(_arrow_id_type(id_type))),
                        pa.array([X[lo:hi].tobytes()], type=pa.binary()),
                    ],
                    names=["block", "start", "ids", "data"],
                )

    def to_block_piece(row):
        ids = np.asarray(row["ids"], dtype=np.int64 if id_type == "long" else str)
        return (row["block"], row["start"]), (ids, np.frombuffer(row["data"], dtype=np.float64).reshape(-1, d))

    def assemble(items):
        """Pieces sorted by (block, first row) -> one (block, (ids, R)) per block, one block held at a time."""
        current, ids_parts, x_parts = None, [], []
        for (block, _), (ids, X) in items:
            if block != current and ids_parts:
                yield _block(current, ids_parts, x_parts)
                ids_parts, x_parts = [], []
            current = block
            ids_parts.append(ids)
            x_parts.append(X)
        if ids_parts:
            yield _block(current, ids_parts, x_parts)

    def _block(block, ids_parts, x_parts):
        ids = np.concatenate(ids_parts)
        if ids.shape[0] > b:
            raise RuntimeError(
                f"block {block} has {ids.shape[0]} rows, more than block_rows={b}: the reference "
                "frame changed between jobs (it must be deterministic)"
            )
        return block, (ids, np.concatenate(x_parts))

    # Several blocks may share a partition (a task then streams them one by one): this bounds the
    # number of tasks of the cartesian product, (query partitions) x (block partitions).
    block_partitions = max(1, min(n_blocks, sc.defaultParallelism))
    blocks = (
        reference.select("id", "vector")
        .mapInArrow(pieces, piece_schema)
        .rdd.map(to_block_piece)
        .repartitionAndSortWithinPartitions(block_partitions, lambda key: key[0], keyfunc=lambda key: key)
        .mapPartitions(assemble)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )

    def query_chunks(batches):
        for ids, Q in _chunks(batches, d, id_type, q):
            yield pa.RecordBatch.from_arrays(
                [pa.array([ids], type=pa.list_(_arrow_id_type(id_type))), pa.array([Q.tobytes()], type=pa.binary())],
                names=["ids", "data"],
            )

    def to_chunk(row):
        ids = np.asarray(row["ids"], dtype=np.int64 if id_type == "long" else str)
        return ids, np.frombuffer(row["data"], dtype=np.float64).reshape(-1, d)

    chunks = (
        queries.select("id", "vector")
        .mapInArrow(query_chunks, f"ids array<{'bigint' if id_type == 'long' else 'string'}>, data binary")
        .rdd.map(to_chunk)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    max_pair_bytes = plan.max_pair_bytes

    def local(pairs):
        """Every (query chunk, block) pair of one task, merged per chunk inside the task: the
        shuffle then carries one partial result per (chunk, block partition), not per block."""
        _limit_task_threads()
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

    def merge(a, b_):
        return a[0], merge_topk(a[1], b_[1], k)

    rows_computed = sc.accumulator(0)

    def rows(item):
        _, (query_ids, result) = item
        ids, dist = result
        if ids.shape[1] != k or (ids == pad_id_for(ids)).any():
            raise RuntimeError(f"internal error: a merged row has fewer than k={k} neighbours")
        rows_computed.add(query_ids.shape[0])
        return zip(query_ids.tolist(), ids.tolist(), dist.tolist())

    partitions = int(spark.conf.get("spark.sql.shuffle.partitions"))
    merged = chunks.cartesian(blocks).mapPartitions(local).reduceByKey(merge, partitions).flatMap(rows)
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

    def release():
        blocks.unpersist()
        chunks.unpersist()

    log.info("blocked kNN: %d blocks of <= %d rows, %d-row query chunks", n_blocks, b, q)
    return KnnResult(frame, details, rows_computed, release)


# Annoy indexes opened by this Python worker, by file name (a worker runs many tasks).
_OPEN_INDEXES: dict[str, object] = {}


def _open_index(name: str, d: int, metric_name: str):
    if name not in _OPEN_INDEXES:
        from annoy import AnnoyIndex

        index = AnnoyIndex(d, metric_name)
        index.load(SparkFiles.get(name))  # memory-mapped, shared by the worker's tasks
        _OPEN_INDEXES[name] = index
    return _OPEN_INDEXES[name]


def neighbors_annoy(
    queries: DataFrame, reference: DataFrame, k: int, metric: str = DEFAULT_METRIC,
    exclude_self: bool = True, n_trees: int = DEFAULT_ANNOY_TREES, search_k: int = -1,
    seed: int = DEFAULT_ANNOY_SEED, query_chunk_rows: int = DEFAULT_QUERY_CHUNK_ROWS,
) -> KnnResult:
    """Approximate top-k from an Annoy index file built on the driver and shipped with addFile."""
    spark = reference.sparkSession
    sc = spark.sparkContext
    metric = validate_metric(metric)
    metric_name = annoy_metric(metric)
    ref_ids, R = collect_vectors(reference)
    k = validate_k(k, ref_ids.shape[0], self_join=exclude_self)
    id_type = id_type_of(reference)
    _check_queries(queries, id_type)
    d = R.shape[1]
    local_dir = tempfile.mkdtemp(prefix="nbknn-annoy-")
    # A new name per build: SparkContext.addFile refuses a second file under a name it serves.
    name = f"nbknn-knn-{uuid.uuid4().hex}.ann"
    path = os.path.join(local_dir, name)
    started = time.monotonic()
    build_annoy_index(R, metric, n_trees, seed, path)
    build_seconds = time.monotonic() - started
    index_bytes = os.path.getsize(path)
    del R
    sc.addFile(path)
    shared_ids = sc.broadcast(ref_ids)
    rows_computed = sc.accumulator(0)

    def answer(batches):
        index = _open_index(name, d, metric_name)
        ids = shared_ids.value
        for query_ids, Q in _chunks(batches, d, id_type, query_chunk_rows):
            batch = _result_batch(
                query_ids, annoy_topk(index, ids, query_ids, Q, k, metric, exclude_self, search_k), id_type
            )
            rows_computed.add(batch.num_rows)
            yield batch

    frame = queries.select("id", "vector").mapInArrow(answer, output_schema(id_type))
    details = {
        "annoy_metric": metric_name,
        "n_trees": n_trees,
        "search_k": search_k,
        "seed": seed,
        "index_file": name,
        "index_bytes": index_bytes,
        "build_seconds": round(build_seconds, 3),
    }

    def release():
        shared_ids.unpersist()
        shutil.rmtree(local_dir, ignore_errors=True)

    return KnnResult(frame, details, rows_computed, release)


def measure_recall(
    neighbors: DataFrame, queries: DataFrame, reference: DataFrame, k: int, metric: str,
    exclude_self: bool, sample_size: int = DEFAULT_RECALL_SAMPLE,
) -> dict:
    """recall@k of ``neighbors`` on a deterministic sample of queries (smallest xxhash64 of the id),
    against their exact neighbours computed by knn_core brute force over the whole reference."""
    sample = queries.select("id", "vector").orderBy(F.xxhash64("id"), "id").limit(sample_size)
    query_ids, Q = collect_vectors(sample)
    ref_ids, R = collect_vectors(reference)
    exact = local_topk(query_ids, Q, ref_ids, R, k, metric, exclude_self)
    found = {
        row["id"]: row["neighbor_ids"]
        for row in neighbors.where(F.col("id").isin(query_ids.tolist())).select("id", "neighbor_ids").collect()
    }
    approx = [found.get(qid, []) for qid in query_ids.tolist()]
    return {
        "recall_at_k": round(recall_at_k(approx, exact.ids), 6),
        "k": k,
        "sample_queries": int(query_ids.shape[0]),
        "sample_rule": "queries with the smallest xxhash64(id)",
        "missing_rows": sum(1 for qid in query_ids.tolist() if qid not in found),
    }


def compute_neighbors(
    queries: DataFrame, reference: DataFrame, mode: str, options: KnnOptions
) -> KnnResult:
    """Dispatch to the (resolved, not ``auto``) mode with the options' parameters."""
    common = dict(k=options.k, metric=options.metric, exclude_self=options.exclude_self,
                  query_chunk_rows=options.query_chunk_rows)
    if mode == "broadcast":
        return neighbors_broadcast(queries, reference, **common)
    if mode == "blocked":
        return neighbors_blocked(
            queries, reference, block_bytes_budget=options.block_bytes_budget, block_rows=options.block_rows, **common
        )
    if mode == "annoy":
        return neighbors_annoy(
            queries, reference, n_trees=options.annoy_trees, search_k=options.annoy_search_k,
            seed=options.annoy_seed, **common,
        )
    raise ValueError(f"mode must be one of {MODES[1:]} here (got {mode!r})")


# --------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------


def write_sorted_by_id(frame: DataFrame, uri: str) -> None:
    """Write a mode's output as Parquet sorted by id, computing the neighbours once.

    A global sort first runs a job of its own that reads its whole input to sample the range
    boundaries, then the job that shuffles it: on the mode's lazy frame that is the kernel twice
    (measured: every query row went through the kernel twice). The sort reads a persisted copy.
    """
    computed = frame.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        computed.orderBy("id").write.mode("overwrite").parquet(uri)
    finally:
        computed.unpersist()


def neighbors_uri(output_dir: str) -> str:
    return f"{output_dir.rstrip('/')}/neighbors"


def summary_uri(output_dir: str) -> str:
    return f"{output_dir.rstrip('/')}/report/summary.json"


def run_knn(
    spark: SparkSession,
    reference_spec: VectorSpec,
    output_dir: str,
    rejects_uri: str,
    options: KnnOptions,
    query_spec: VectorSpec | None = None,
    max_reject_fraction: float = 0.01,
    dim: int | None = None,
) -> dict:
    """Read and validate, compute the neighbours, publish them and the summary; returns the summary.

    Output: ``<output_dir>/neighbors`` (Parquet: id, neighbor_ids, distances; sorted by id),
    written beside its final place and renamed into it, replacing an earlier attempt of the run;
    then ``<output_dir>/report/summary.json`` (atomically replaced).
    """
    started = time.monotonic()
    self_join = query_spec is None
    checked_ref = read_vectors(spark, reference_spec)
    profile_ref = profile(checked_ref)
    checked_q = read_vectors(spark, query_spec) if query_spec else None
    profile_q = profile(checked_q) if checked_q is not None else None
    dimension, dimension_rule = choose_dimension(profile_ref, dim)
    id_type = choose_id_type(*[p for p in (profile_ref, profile_q) if p is not None])

    final_ref = finalize(checked_ref, dimension, id_type)
    counts = {"reference": profile_ref.counts(dimension)}
    rejects = rejected_vectors(final_ref, "reference")
    final_q = None
    if checked_q is not None:
        final_q = finalize(checked_q, dimension, id_type)
        counts["queries"] = profile_q.counts(dimension)
        rejects = rejects.unionByName(rejected_vectors(final_q, "queries"))
    any_rejected = any(c.rejected for c in counts.values())
    if any_rejected:
        publish_rejects(rejects, rejects_uri)
    else:
        # A retry over repaired input must not leave the first attempt's rejects behind.
        fs.delete(spark, rejects_uri)
    for name, c in counts.items():
        check_reject_fraction(c, max_reject_fraction, rejects_uri)
        if c.accepted == 0:
            raise InputError(f"no {name} vector was accepted; see the rejects at {rejects_uri}")

    reference = accepted_vectors(final_ref).persist(StorageLevel.MEMORY_AND_DISK)
    queries = reference if self_join else accepted_vectors(final_q).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        check_unique_ids(reference, "reference")
        if not self_join:
            check_unique_ids(queries, "query")
        n_ref = counts["reference"].accepted
        n_queries = counts["queries"].accepted if not self_join else n_ref
        k = validate_k(options.k, n_ref, self_join=options.exclude_self)
        mode, reason = choose_mode(options.mode, n_ref, dimension, options.broadcast_max_bytes)
        log.info("kNN mode %s (requested %s): %s", mode, options.mode, reason)
        read_seconds = time.monotonic() - started

        result = compute_neighbors(queries, reference, mode, options)
        target = neighbors_uri(output_dir)
        staging = f"{output_dir.rstrip('/')}/_tmp-neighbors-{uuid.uuid4().hex[:12]}"
        try:
            write_sorted_by_id(result.frame, staging)
            fs.publish_dir(spark, staging, target)
        finally:
            fs.delete(spark, staging)
            result.release()
        neighbors_seconds = time.monotonic() - started - read_seconds
        written = spark.read.parquet(target)
        rows = written.count()
        if rows != n_queries:
            raise RuntimeError(f"expected one output row per query ({n_queries}), got {rows}")
        recall = None
        if mode == "annoy":
            recall = measure_recall(
                written, queries, reference, k, options.metric, options.exclude_self, options.recall_sample
            )
            log.info("annoy recall@%d = %.4f on %d queries", k, recall["recall_at_k"], recall["sample_queries"])
    finally:
        reference.unpersist()
        if not self_join:
            queries.unpersist()

    summary = {
        "job": "knn_neighbors",
        "input": reference_spec.to_dict(),
        "queries_input": query_spec.to_dict() if query_spec else None,
        "self_join": self_join,
        "records": {name: c.to_dict() for name, c in counts.items()},
        "rejects_uri": rejects_uri if any_rejected else None,
        "dimension": dimension,
        "dimension_rule": dimension_rule,
        "id_type": id_type,
        "k": k,
        "metric": validate_metric(options.metric),
        "exclude_self": options.exclude_self,
        "reference_vectors": n_ref,
        "query_vectors": n_queries,
        "mode_requested": options.mode,
        "mode": mode,
        "mode_reason": reason,
        "reference_bytes_estimate": n_ref * dimension * 8,
        "broadcast_max_bytes": options.broadcast_max_bytes,
        "mode_details": result.details,
        "query_rows_computed": result.rows_computed.value,
        "blocks": result.details if mode == "blocked" else None,
        "annoy": {**result.details, **recall} if mode == "annoy" else None,
        "output": {"uri": target, "rows": rows, "columns": list(OUTPUT_COLUMNS)},
        "timings_seconds": {
            "read_and_validate": round(read_seconds, 3),
            "neighbors_and_write": round(neighbors_seconds, 3),
            "total": round(time.monotonic() - started, 3),
        },
        "code_version": code_version(),
    }
    fs.write_json_atomic(spark, summary_uri(output_dir), summary)
    return summary
