"""The ``broadcast`` kNN mode: exact top-k from a fitted reference model broadcast to every task.

The reference set is collected on the driver, a ``NearestNeighbors(algorithm="brute")`` is fitted
on it and broadcast; every query partition is answered with ``kneighbors`` on batches of up to
``query_chunk_rows`` rows (``mapInArrow``, :func:`~nbknn.knn.kernels.kneighbors_topk`). Driver
and every executor hold the reference matrix (n * d * 8 bytes): the application allows it only up
to ``broadcast_max_bytes``.
"""

from __future__ import annotations

from typing import Iterator

import pyarrow as pa
from pyspark import Accumulator, Broadcast
from pyspark.sql import DataFrame
from sklearn.neighbors import NearestNeighbors

from nbknn.contract import DEFAULT_METRIC
from nbknn.knn.arrow import check_queries, collect_vectors, id_type_of, numpy_chunks, output_schema, result_batch
from nbknn.knn.kernels import kneighbors_topk
from nbknn.knn.mode import KnnResult, limit_task_threads, task_function
from nbknn.knn.planning import DEFAULT_QUERY_CHUNK_ROWS
from nbknn.knn.topk import validate_k, validate_metric


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
    check_queries(queries, id_type)
    model = NearestNeighbors(algorithm="brute", metric=metric).fit(R)
    shared = spark.sparkContext.broadcast((model, ref_ids))
    rows_computed = spark.sparkContext.accumulator(0)
    answer = task_function(
        answer_batches, shared=shared, rows_computed=rows_computed, d=R.shape[1], id_type=id_type, k=k,
        metric=metric, exclude_self=exclude_self, query_chunk_rows=query_chunk_rows,
    )
    frame = queries.select("id", "vector").mapInArrow(answer, output_schema(id_type))
    details = {"reference_vectors": int(ref_ids.shape[0]), "query_chunk_rows": query_chunk_rows}
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
