"""The ``annoy`` kNN mode: approximate top-k from an Annoy index, and its recall measurement.

The reference set is collected on the driver (the application applies the ``broadcast_max_bytes``
limit; the index takes about n * (4d + 16) bytes plus its trees), an Annoy index is built once
with a fixed seed, saved to a local file and shipped to the executors with
``SparkContext.addFile``; each Python worker memory-maps it (``SparkFiles.get``) once and answers
its batches. :func:`measure_recall` measures recall@k against the exact neighbours
(:func:`~nbknn.knn.topk.local_topk` over the whole reference) of a sample of queries.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
import uuid
from typing import Iterator

import pyarrow as pa
from pyspark import Accumulator, Broadcast, SparkFiles
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from nbknn.contract import DEFAULT_ANNOY_TREES, DEFAULT_METRIC
from nbknn.knn import gemm
from nbknn.knn.arrow import check_queries, collect_vectors, id_type_of, numpy_chunks, output_schema, result_batch
from nbknn.knn.kernels import annoy_metric, annoy_topk, build_annoy_index, gemm_topk, recall_at_k
from nbknn.knn.mode import KnnResult, task_function
from nbknn.knn.planning import DEFAULT_QUERY_CHUNK_ROWS
from nbknn.knn.topk import local_topk, validate_k, validate_metric

DEFAULT_ANNOY_SEED = 42
DEFAULT_RECALL_SAMPLE = 1000

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
    check_queries(queries, id_type)
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
    answer = task_function(
        answer_batches, index_name=name, d=d, metric_name=metric_name, shared_ids=shared_ids,
        rows_computed=rows_computed, id_type=id_type, k=k, metric=metric, exclude_self=exclude_self,
        search_k=search_k, query_chunk_rows=query_chunk_rows,
    )
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
    return KnnResult(frame, details, rows_computed, functools.partial(release_index, shared_ids, local_dir))


def answer_batches(
    batches: Iterator[pa.RecordBatch], index_name: str, d: int, metric_name: str, shared_ids: Broadcast,
    rows_computed: Accumulator, id_type: str, k: int, metric: str, exclude_self: bool, search_k: int,
    query_chunk_rows: int,
) -> Iterator[pa.RecordBatch]:
    """One task: the neighbour batches of its query batches, from the worker's copy of the index."""
    index = _open_index(index_name, d, metric_name)
    ids = shared_ids.value
    for query_ids, Q in numpy_chunks(batches, d, id_type, query_chunk_rows):
        batch = result_batch(
            query_ids, annoy_topk(index, ids, query_ids, Q, k, metric, exclude_self, search_k), id_type
        )
        rows_computed.add(batch.num_rows)
        yield batch


def release_index(shared_ids: Broadcast, local_dir: str) -> None:
    """Drop the broadcast ids and the driver's copy of the index file."""
    shared_ids.unpersist()
    shutil.rmtree(local_dir, ignore_errors=True)


def measure_recall(
    neighbors: DataFrame, queries: DataFrame, reference: DataFrame, k: int, metric: str,
    exclude_self: bool, sample_size: int = DEFAULT_RECALL_SAMPLE,
) -> dict:
    """recall@k of ``neighbors`` on a deterministic sample of queries (smallest xxhash64 of the id),
    against their exact neighbours over the whole reference (the exact GEMM kernel where it covers
    the metric, else local_topk)."""
    sample = queries.select("id", "vector").orderBy(F.xxhash64("id"), "id").limit(sample_size)
    query_ids, Q = collect_vectors(sample)
    ref_ids, R = collect_vectors(reference)
    if metric in gemm.METRICS:
        exact, _ = gemm_topk(query_ids, Q, ref_ids, R, k, metric, exclude_self, n_threads=os.cpu_count())
    else:
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
