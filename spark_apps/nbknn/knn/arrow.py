"""Vector frames <-> numpy for the kNN modes: Arrow batches in, Arrow batches of neighbours out.

Inside a task the modes read (id, vector) Arrow batches as numpy chunks (:func:`numpy_chunks`)
and answer with batches of :func:`output_schema` (:func:`result_batch`); on the driver
:func:`collect_vectors` and :func:`describe` read a whole validated vector frame.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, LongType, StringType, StructField, StructType

from nbknn.contract import NEIGHBOR_COLUMNS
from nbknn.inputs.documents import InputError
from nbknn.knn.topk import TopK, pad_id_for


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


def output_arrow_schema(id_type: str) -> pa.Schema:
    """:func:`output_schema` in Arrow, with its non-null list elements (what grouped Arrow UDFs
    check their results against)."""
    arrow_id = arrow_id_type(id_type)
    return pa.schema([
        pa.field("id", arrow_id, nullable=False),
        pa.field("neighbor_ids", pa.list_(pa.field("element", arrow_id, nullable=False)), nullable=False),
        pa.field("distances", pa.list_(pa.field("element", pa.float64(), nullable=False)), nullable=False),
    ])


def arrow_id_type(id_type: str) -> pa.DataType:
    return pa.int64() if id_type == "long" else pa.string()


def ids_to_numpy(array, id_type: str) -> np.ndarray:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if id_type == "long":
        return array.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return np.array(array.to_pylist(), dtype=str)


def vectors_to_numpy(array, d: int) -> np.ndarray:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    values = pc.list_flatten(array).to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(values, dtype=np.float64).reshape(-1, d)


def numpy_chunks(batches: Iterator[pa.RecordBatch], d: int, id_type: str, rows: int):
    """(ids, X) numpy chunks of at most ``rows`` rows from Arrow batches of (id, vector)."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        ids = ids_to_numpy(batch.column("id"), id_type)
        X = vectors_to_numpy(batch.column("vector"), d)
        for start in range(0, ids.shape[0], rows):
            yield ids[start : start + rows], X[start : start + rows]


def result_batch(query_ids: np.ndarray, result: TopK, id_type: str) -> pa.RecordBatch:
    """One output batch (id, neighbor_ids, distances); padding entries are left out."""
    ids, d = result
    keep = ids != pad_id_for(ids) if ids.size else np.zeros(ids.shape, dtype=bool)
    offsets = pa.array(np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32))
    arrow_id = arrow_id_type(id_type)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(query_ids, type=arrow_id),
            pa.ListArray.from_arrays(offsets, pa.array(ids[keep], type=arrow_id)),
            pa.ListArray.from_arrays(offsets, pa.array(d[keep], type=pa.float64())),
        ],
        names=list(NEIGHBOR_COLUMNS),
    )


def collect_vectors(frame: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The whole frame on the driver: ids (n,), vectors (n, d) float64."""
    id_type = id_type_of(frame)
    table = frame.select("id", "vector").toArrow()
    ids = ids_to_numpy(table.column("id"), id_type)
    if ids.shape[0] == 0:
        raise InputError("no reference vectors")
    d = len(table.column("vector")[0])
    return ids, vectors_to_numpy(table.column("vector"), d)


def describe(frame: DataFrame) -> tuple[int, int, str]:
    """(number of rows, dimension, id type) of a validated vector frame."""
    n = frame.count()
    if n == 0:
        raise InputError("no reference vectors")
    d = frame.select(F.size("vector")).first()[0]
    return n, int(d), id_type_of(frame)


def check_queries(queries: DataFrame, id_type: str) -> None:
    """TypeError unless the queries' ids have the reference's id type."""
    if id_type_of(queries) != id_type:
        raise TypeError(
            f"queries and reference must have the same id type (got {id_type_of(queries)}, {id_type})"
        )
