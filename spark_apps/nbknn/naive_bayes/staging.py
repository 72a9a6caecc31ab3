"""The staging model directory between the training jobs: what each job leaves there for the next.

The class prior job's priors and every job's summary live in the staging directory's scratch
space (removed when the model is published); the manifest is built from the summaries. Both are
small JSON files written atomically, not Spark tables: in the class prior application's fresh JVM,
starting Spark's Parquet writer for the priors cost more than the counting (the application took
10.7 s with it and 7.8 s without, on 20 Newsgroups).
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from nbknn import contract
from nbknn.common import fs
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
