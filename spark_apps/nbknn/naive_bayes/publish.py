"""Publishing a model: write its manifest into the staging directory, move the directory into place
and point ``LATEST`` at it, each by one atomic rename.

The manifest is built from the training jobs' summaries (:func:`nbknn.contract.model_manifest`);
its lineage lists every input folder whose documents the model counts, across its ancestry.
nb_train's ``publish`` task does the same without Spark (``nbknn_airflow.model_publish``); this
application remains for running the pipeline's steps as Spark applications only.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession

from nbknn import contract
from nbknn.common import fs
from nbknn.common.errors import ConfigError
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
    selection: bool = False,
) -> dict:
    """Write the manifest, rename staging into place, point LATEST at the version; returns the manifest.

    With ``selection`` the model's parameters are those the selection job chose (its summary in
    the staging directory), and the manifest keeps its table.

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
            manifest = build_manifest(spark, staging_dir, version, model_type, alpha, fit_prior, lineage, selection)
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
    problem = contract.model_params_problem(model_type, alpha)
    if problem:
        raise ConfigError(problem)


def build_manifest(
    spark: SparkSession,
    staging_dir: str,
    version: str,
    model_type: str,
    alpha: float,
    fit_prior: bool,
    lineage: dict,
    selection: bool = False,
) -> dict:
    """The manifest of the model staged in ``staging_dir``, from the summaries its jobs wrote
    (:func:`nbknn.contract.model_manifest`); with ``selection``, for the point selection chose."""
    prior = fs.read_json(spark, summary_uri(staging_dir, "class_prior"))
    terms = fs.read_json(spark, summary_uri(staging_dir, "term_counts"))
    merge_uri = summary_uri(staging_dir, "merge")
    merge = fs.read_json(spark, merge_uri) if fs.exists(spark, merge_uri) else None
    chosen = fs.read_json(spark, summary_uri(staging_dir, contract.SELECTION_JOB)) if selection else None
    model = contract.selected_model(chosen) if chosen else {"type": model_type, "alpha": alpha, "fit_prior": fit_prior}
    created_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return contract.model_manifest(prior, terms, merge, version, model, lineage, created_at, chosen)
