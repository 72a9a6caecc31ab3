"""How prediction's outputs (vectors, each shard's scores, predictions, report) are published and
read back.

Every output directory is written under a temporary sibling whose name starts with '_' (skipped
by Spark and Hadoop readers), completed with its ``_summary.json``, then renamed into place
(:func:`nbknn.common.fs.publish_dir`). A retry builds a fresh temporary directory and replaces its
own run's earlier output, so a reader sees a whole output or none, never a partial one; an output
without its summary is treated as missing.
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql.types import StructType

from nbknn.common import fs
from nbknn.common.driver_parquet import read_driver_table
from nbknn.common.errors import NotRetryableError
from nbknn.contract import SUMMARY_NAME, join_uri


class IncompleteScores(NotRetryableError):
    """Some shard of the model has not (or not completely, or not for these vectors) been scored.

    Retrying the combiner cannot help: the shard passes (or the whole run) must be rerun."""


#: Written outputs of at most this many bytes (Parquet, every column) are summarised on the driver
#: from one read of the columns a summary needs: at that size a query with a shuffle costs more
#: to plan and run than the read (0.2-0.3 s a run at 20 Newsgroups' 7 528 test documents). The
#: predictions of 150 560 documents take 1.4 MB, their three summary columns 11 MB in Arrow: 4 MiB
#: keeps the driver's share of a large run's summary to some tens of MB.
DRIVER_SUMMARY_MAX_BYTES = 4 * 1024 * 1024


def small_output_columns(spark: SparkSession, uri: str, schema: StructType):
    """The columns of ``schema`` (a subset of the Parquet output at ``uri``) as an Arrow table,
    read by the driver without a Spark job, when the output is small enough to summarise there
    (:data:`DRIVER_SUMMARY_MAX_BYTES`); else None, and the caller asks Spark with ``schema``."""
    return read_driver_table(spark, uri, schema.fieldNames(), DRIVER_SUMMARY_MAX_BYTES)


def summary_uri(output_uri: str) -> str:
    return join_uri(output_uri, SUMMARY_NAME)


def publish_output(spark: SparkSession, temp_uri: str, target_uri: str, summary: dict) -> None:
    """Complete the temporary directory with its summary, then rename it into place."""
    fs.write_json_atomic(spark, summary_uri(temp_uri), summary)
    fs.publish_dir(spark, temp_uri, target_uri)


def read_output_summary(spark: SparkSession, output_uri: str, what: str) -> dict:
    """The summary of a published output (IncompleteScores when it is missing)."""
    uri = summary_uri(output_uri)
    if not fs.exists(spark, uri):
        raise IncompleteScores(f"{what} at {output_uri} is missing or incomplete (no {SUMMARY_NAME})")
    return fs.read_json(spark, uri)
