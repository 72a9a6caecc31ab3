"""Small Parquet tables read and written by the driver itself, through the Hadoop FileSystem
layer of :mod:`nbknn.common.fs`, instead of by Spark.

A Spark read or write is a job: for a table of a few megabytes its planning, scheduling and
commit cost 0.05-0.9 s, where pyarrow takes milliseconds (20 Newsgroups' model: 2.6 MB). Larger
tables stay with Spark, which spreads the decoding over the executors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from nbknn.common import fs
from nbknn.contract import join_uri

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Tables of at most this many bytes (every Parquet file under the directory) are read on the
#: driver: a file that is not local comes through the JVM in one piece.
MAX_DRIVER_READ_BYTES = 8 * 1024 * 1024


def read_driver_table(spark: SparkSession, uri: str, columns: list[str], max_bytes: int = MAX_DRIVER_READ_BYTES):
    """``columns`` of every Parquet file under the directory ``uri`` (partition directories
    included, hidden files skipped as Spark skips them) as one Arrow table; None when the files
    take more than ``max_bytes`` or there are none (then Spark's read says what it makes of it)."""
    files = fs.data_files(spark, uri) if fs.exists(spark, uri) else []
    if not files or sum(size for _, size in files) > max_bytes:
        return None
    parts = [pq.read_table(pa.BufferReader(fs.read_bytes(spark, file_uri)), columns=columns) for file_uri, _ in files]
    return pa.concat_tables(parts)


def write_driver_table(spark: SparkSession, uri: str, table: pa.Table | dict[str, pa.Table]) -> None:
    """Replace the Parquet table at ``uri`` by ``table``, written from the driver: one file, or one
    file per partition directory (``{"shard=0": table, ...}``), then Hadoop's ``_SUCCESS`` marker,
    as a Spark write leaves them. Not atomic: for tables inside a directory that is published as
    a whole (a staged model)."""
    parts = {"": table} if isinstance(table, pa.Table) else table
    fs.delete(spark, uri)
    for directory, part in parts.items():
        buffer = pa.BufferOutputStream()
        pq.write_table(part, buffer)
        folders = [directory] if directory else []
        fs.write_bytes(spark, join_uri(uri, *folders, "part-00000.parquet"), buffer.getvalue().to_pybytes())
    fs.write_bytes(spark, join_uri(uri, "_SUCCESS"), b"")
