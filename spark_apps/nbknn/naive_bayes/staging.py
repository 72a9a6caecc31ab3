"""The staging model directory between the training jobs: what each job leaves there for the next.

The class prior job's priors and every job's summary live in the staging directory's scratch
space (removed when the model is published); the manifest is built from the summaries. Both are
small JSON files written atomically, not Spark tables: in the class prior application's fresh JVM,
starting Spark's Parquet writer for the priors cost more than the counting (the application took
10.7 s with it and 7.8 s without, on 20 Newsgroups).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from nbknn import contract
from nbknn.common import fs
from nbknn.contract import join_uri
from nbknn.inputs.documents import InputSpec


def class_priors_uri(model_dir: str) -> str:
    return contract.work_uri(model_dir, "class_priors.json")


def write_class_priors(spark: SparkSession, model_dir: str, priors: list[tuple[int, str, int]]) -> None:
    """(class_id, label, doc_count) of every class, for the term counts job."""
    fs.write_json_atomic(spark, class_priors_uri(model_dir), {"class_priors": [list(prior) for prior in priors]})


def read_class_priors(spark: SparkSession, model_dir: str) -> list[tuple[int, str, int]]:
    """The class prior job's (class_id, label, doc_count), sorted by class id."""
    document = fs.read_json(spark, class_priors_uri(model_dir))
    return sorted((int(class_id), str(label), int(count)) for class_id, label, count in document["class_priors"])


def write_driver_table(spark: SparkSession, uri: str, table: pa.Table | dict[str, pa.Table]) -> None:
    """Replace the Parquet table at ``uri`` by ``table``, written from the driver: one file, or one
    file per partition directory (``{"shard=0": table, ...}``), then Hadoop's ``_SUCCESS`` marker,
    as a Spark write leaves them. For counts already on the driver this costs a fraction of a
    Spark job that would ship them to the JVM and write them from there. (The staged model is
    published as a whole, so the table need not appear atomically.)"""
    parts = {"": table} if isinstance(table, pa.Table) else table
    fs.delete(spark, uri)
    for directory, part in parts.items():
        buffer = pa.BufferOutputStream()
        pq.write_table(part, buffer)
        folders = [directory] if directory else []
        fs.write_bytes(spark, join_uri(uri, *folders, "part-00000.parquet"), buffer.getvalue().to_pybytes())
    fs.write_bytes(spark, join_uri(uri, "_SUCCESS"), b"")


def summary_uri(model_dir: str, job: str) -> str:
    return contract.job_summary_uri(model_dir, job)


def forget_staged_manifest(spark: SparkSession, model_dir: str) -> None:
    """Delete a manifest left in a staging directory by a publish attempt that was stopped before
    its rename: the tables are being counted again, and publishing must describe the new ones."""
    fs.delete(spark, contract.manifest_uri(model_dir))


def input_summary(spec: InputSpec) -> dict:
    """The ``input`` entry of a job summary: where the documents came from and which columns."""
    return {
        "uri": spec.uri,
        "format": spec.format,
        "columns": {"id": spec.id_column, "label": spec.label_column, "text": spec.text_column},
    }
