"""Publishing a model: write its manifest into the staging directory, move the directory into place
and point ``LATEST`` at it, each by one atomic rename.

The manifest is built from the training jobs' summaries; its lineage lists every input folder
whose documents the model counts, across its ancestry.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession

from nbknn import contract
from nbknn.common import fs
from nbknn.common.errors import ConfigError
from nbknn.contract import MODEL_TYPES
from nbknn.naive_bayes.staging import summary_uri


def publish_model(
    spark: SparkSession,
    staging_dir: str,
    version_dir: str,
    latest_uri: str,
    version: str,
    model_type: str,
    alpha: float,
    fit_prior: bool,
    lineage: dict,
) -> dict:
    """Write the manifest, rename staging into place, point LATEST at the version; returns the manifest.

    A rerun after a kill at any point converges: a staging directory that is still there is
    (re)published; a version already in place with no staging left only needs LATEST.
    """
    validate_model_params(model_type, alpha)
    if fs.exists(spark, staging_dir):
        staged_manifest = contract.manifest_uri(staging_dir)
        if fs.exists(spark, staged_manifest):
            # An earlier attempt wrote the manifest and was stopped before the rename; it may
            # already have deleted the job summaries that the manifest is built from.
            manifest = fs.read_json(spark, staged_manifest)
        else:
            manifest = build_manifest(spark, staging_dir, version, model_type, alpha, fit_prior, lineage)
            fs.write_json_atomic(spark, staged_manifest, manifest)
        fs.delete(spark, contract.work_uri(staging_dir, ""))
        # A rerun of a cleared run that had published already swaps its new build in.
        fs.publish_dir(spark, staging_dir, version_dir)
    elif fs.exists(spark, contract.manifest_uri(version_dir)):
        manifest = fs.read_json(spark, contract.manifest_uri(version_dir))
    else:
        raise FileNotFoundError(f"nothing to publish: neither {staging_dir} nor {version_dir} exists")
    fs.write_text_atomic(spark, latest_uri, version + "\n")
    return manifest


def validate_model_params(model_type: str, alpha: float) -> None:
    """Refuse (not retryable) a model type or smoothing the prediction could not apply."""
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"model_type must be one of {MODEL_TYPES} (got {model_type!r})")
    if not alpha > 0:
        raise ConfigError(f"alpha must be > 0 (got {alpha})")


def build_manifest(
    spark: SparkSession,
    staging_dir: str,
    version: str,
    model_type: str,
    alpha: float,
    fit_prior: bool,
    lineage: dict,
) -> dict:
    """The manifest of the model staged in ``staging_dir``, from the summaries its jobs wrote."""
    prior = fs.read_json(spark, summary_uri(staging_dir, "class_prior"))
    terms = fs.read_json(spark, summary_uri(staging_dir, "term_counts"))
    merge_uri = summary_uri(staging_dir, "merge")
    merge = fs.read_json(spark, merge_uri) if fs.exists(spark, merge_uri) else None
    return {
        "format_version": contract.MANIFEST_FORMAT_VERSION,
        "kind": "naive_bayes",
        "version": version,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"type": model_type, "alpha": alpha, "fit_prior": fit_prior},
        "tokenizer": terms["tokenizer"],
        "input": prior["input"],
        "records": prior["records"],
        "rejects_uri": prior["rejects_uri"],
        "counts": {
            "documents": terms["documents"],
            "classes": prior["classes"],
            "vocabulary_size": terms["vocabulary_size"],
            "entries": terms["entries"],
            "tokens": terms["tokens"],
            "terms_below_min_count": terms["terms_below_min_count"],
        },
        "min_term_count": terms["min_term_count"],
        "num_shards": len(terms["shards"]),
        "shards": terms["shards"],
        "shard_imbalance": terms["shard_imbalance"],
        "tables": {
            "classes": "classes",
            "vocabulary": "vocabulary",
            "term_counts": "term_counts",
        },
        "lineage": lineage_of(lineage, prior, merge, version),
        "code_version": terms["code_version"],
    }


def lineage_of(run_lineage: dict, prior_summary: dict, merge_summary: dict | None, version: str) -> dict:
    """The manifest's lineage: the run's own record (from the plan) plus ``parent_version`` and
    ``partitions``, every input folder whose documents the model counts, across its ancestry,
    each with the version (and run) that folded it in."""
    lineage = dict(run_lineage)
    parent_partitions = merge_summary["parent_partitions"] if merge_summary else []
    lineage["parent_version"] = merge_summary["parent_version"] if merge_summary else None
    lineage["partitions"] = [
        *parent_partitions,
        *(
            {"uri": folder, "version": version, "run_id": run_lineage.get("run_id")}
            for folder in prior_summary.get("partitions", [])
        ),
    ]
    return lineage
