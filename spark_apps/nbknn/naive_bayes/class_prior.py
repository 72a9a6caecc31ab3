"""The class prior job (dict1): validate the labelled input, quarantine bad records, count
documents per class, and record the input folders the counts come from (the model's lineage)."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from nbknn.common import fs
from nbknn.common.provenance import code_version
from nbknn.inputs.documents import (
    InputError,
    InputSpec,
    check_reject_fraction,
    label_changes_from_rows,
    read_counts_from_rows,
    read_documents,
    write_rejects,
)
from nbknn.naive_bayes.merge import folder_uri
from nbknn.naive_bayes.staging import forget_staged_manifest, input_summary, summary_uri, write_class_priors


def counts_by_reason_label_and_folder(documents: DataFrame) -> DataFrame:
    """One pass over the input: records per (reject_reason, label, folder, label_change); label is
    null for rejects. The folder (the directory of the record's file) is a partition the model's
    counts come from (its lineage); label_change says how the label policy changed the label."""
    folder = F.regexp_extract(F.col("source"), r"^(.*)/[^/]*$", 1)
    return documents.groupBy("reject_reason", "label", folder.alias("folder"), "label_change").count()


def class_priors(label_counts: list[tuple[str, int]]) -> list[tuple[int, str, int]]:
    """(class_id, label, doc_count) with class ids in sorted label order (as numpy.unique sorts).

    Python sorts strings by code point, as Spark and scikit-learn do, so ids agree everywhere.
    """
    totals: dict[str, int] = {}
    for label, count in label_counts:
        totals[label] = totals.get(label, 0) + count
    return [(class_id, label, totals[label]) for class_id, label in enumerate(sorted(totals))]


def run_class_prior(
    spark: SparkSession, spec: InputSpec, model_dir: str, rejects_uri: str, max_reject_fraction: float
) -> dict:
    """Validate the input and count documents per class; returns (and stores) the job summary."""
    forget_staged_manifest(spark, model_dir)
    documents = read_documents(spark, spec, labelled=True)
    rows = counts_by_reason_label_and_folder(documents).collect()
    counts = read_counts_from_rows(
        ((row["reject_reason"], row["count"]) for row in rows),
        label_changes_from_rows((row["reject_reason"], row["label_change"], row["count"]) for row in rows),
    )
    # The folders the documents came from: the partitions this model's counts will hold.
    folders = sorted({folder_uri(row["folder"]) for row in rows if row["reject_reason"] is None})
    if counts.rejected:
        write_rejects(documents, rejects_uri)
    else:
        # A retry over repaired input must not leave the first attempt's rejects behind.
        fs.delete(spark, rejects_uri)
    check_reject_fraction(counts, max_reject_fraction, rejects_uri)
    if counts.accepted == 0:
        raise InputError(f"no record of {spec.uri} was accepted; see the rejects at {rejects_uri}")
    priors = class_priors([(row["label"], row["count"]) for row in rows if row["reject_reason"] is None])
    write_class_priors(spark, model_dir, priors)
    summary = {
        "job": "class_prior",
        "input": input_summary(spec),
        "records": counts.to_dict(),
        "rejects_uri": rejects_uri if counts.rejected else None,
        "classes": len(priors),
        "partitions": folders,
        "code_version": code_version(),
    }
    fs.write_json_atomic(spark, summary_uri(model_dir, "class_prior"), summary)
    return summary
