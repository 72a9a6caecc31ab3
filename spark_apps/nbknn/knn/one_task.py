"""An all-points run that fits one unit: joined by one task on every core of its executor.

When a task holds all the cores of its executor (one task slot: the kNN application's session
asks for it, :func:`nbknn.common.session.build_session`) and the whole set's diagonal unit fits
``block_bytes_budget`` (:func:`~nbknn.knn.planning.all_points_groups` gives one group), both exact
modes skip their own plan: neither a broadcast nor blocks are needed. The set's partitions are
coalesced into one task, which joins the rows with themselves
(:func:`~nbknn.knn.gemm.self_join_topk`: one product per pair of tiles, on as many threads as
the task has cores; ties broken by the ids' ranks) and emits the output rows in id order:
nothing is merged or sorted after it.

Memory of the task: the diagonal unit (:func:`~nbknn.knn.planning.diagonal_unit_bytes`, whose
float64 rows are filled batch by batch), within the budget, and one Arrow batch of the input
at a time.
"""

from __future__ import annotations

import time
from typing import Iterator

import numpy as np
import pyarrow as pa
from pyspark import Accumulator, SparkContext
from pyspark.sql import DataFrame

from nbknn.knn import gemm
from nbknn.knn.arrow import numpy_chunks, output_arrow_schema, output_schema, result_batch
from nbknn.knn.mode import KnnResult, limit_task_threads, task_function, task_slots, task_threads
from nbknn.knn.planning import all_points_groups, diagonal_unit_bytes
from nbknn.knn.row_groups import id_ranks, real_topk

#: Rows per output Arrow batch.
OUTPUT_BATCH_ROWS = 10_000


def fits_one_task(sc: SparkContext, n: int, d: int, k: int, metric: str, budget: int) -> bool:
    """Whether an all-points run of ``n`` rows runs as one task (see the module's docstring)."""
    return metric in gemm.METRICS and all_points_groups(n, d, k, budget, task_slots(sc)) == 1


def one_task_neighbors(
    reference: DataFrame, n: int, d: int, id_type: str, k: int, metric: str, exclude_self: bool
) -> KnnResult:
    """The output frame of the all-points run of ``reference``, computed by one task."""
    sc = reference.sparkSession.sparkContext
    rows_computed, fallback_rows, kernel_seconds = sc.accumulator(0), sc.accumulator(0), sc.accumulator(0.0)
    whole_set = task_function(
        whole_set_topk, n=n, d=d, id_type=id_type, k=k, metric=metric, exclude_self=exclude_self,
        rows_computed=rows_computed, fallback_rows=fallback_rows, kernel_seconds=kernel_seconds,
    )
    # The run persisted the reference: coalescing reads its cached partitions in one task.
    frame = reference.select("id", "vector").coalesce(1).mapInArrow(whole_set, output_schema(id_type))
    details = {"kernel": "gemm", "plan": "one task", "reference_vectors": n, "task_slots": task_slots(sc),
               "estimated_task_bytes": diagonal_unit_bytes(n, d, k)}
    return KnnResult(frame, details, rows_computed, fallback_rows=fallback_rows, kernel_seconds=kernel_seconds,
                     sorted_by_id=True)


def whole_set_topk(
    batches: Iterator[pa.RecordBatch], n: int, d: int, id_type: str, k: int, metric: str, exclude_self: bool,
    rows_computed: Accumulator, fallback_rows: Accumulator, kernel_seconds: Accumulator,
) -> Iterator[pa.RecordBatch]:
    """The task: the ``n`` rows of the set (its only partition) -> their output rows, in id order."""
    limit_task_threads()
    ids, X = whole_set(batches, n, d, id_type)
    started = time.perf_counter()
    # The kernel breaks ties by rank: rank order is id order (the validated ids are unique).
    unique, ranks = id_ranks(ids)
    rank_ids, distances, info = gemm.self_join_topk(X, ranks, k, metric, exclude_self, n_threads=task_threads())
    kernel_seconds.add(time.perf_counter() - started)
    fallback_rows.add(info["fallback_rows"])
    if rank_ids.shape[1] != k or (rank_ids == gemm.PAD).any():
        raise RuntimeError(f"internal error: a row has fewer than k={k} neighbours")
    in_id_order = np.argsort(ranks, kind="stable")  # only the results are reordered, not X
    result = real_topk(rank_ids[in_id_order], distances[in_id_order], unique)
    table = pa.Table.from_batches([result_batch(unique, result, id_type)]).cast(output_arrow_schema(id_type))
    rows_computed.add(int(ids.shape[0]))
    yield from table.to_batches(max_chunksize=OUTPUT_BATCH_ROWS)


def whole_set(batches: Iterator[pa.RecordBatch], n: int, d: int, id_type: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, X) of every row of the task's batches, X filled in place (no second copy of the set)."""
    X = np.empty((n, d))
    id_chunks, filled = [], 0
    for chunk_ids, chunk in numpy_chunks(batches, d, id_type, n):
        if filled + chunk.shape[0] > n:
            raise RuntimeError(f"internal error: the set has more than the {n} rows counted")
        X[filled:filled + chunk.shape[0]] = chunk
        id_chunks.append(chunk_ids)
        filled += chunk.shape[0]
    if filled != n:
        raise RuntimeError(f"internal error: the set has {filled} rows, {n} counted")
    return np.concatenate(id_chunks), X
