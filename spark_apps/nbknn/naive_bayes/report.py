"""The report of a labelled prediction run, as the Spark applications publish it: metrics.json
(accuracy, macro-F1, per-class precision, recall and F1, the confusion matrix), the run's row in
the quality history (:mod:`nbknn.naive_bayes.quality_history`) and the run summary, renamed into
place together. The pictures and the page are drawn from metrics.json afterwards, without Spark
(:mod:`nbknn.naive_bayes.report_pictures`, by the DAG's ``report`` task)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbknn import contract
from nbknn.common import fs
from nbknn.contract import METRICS_NAME, REPORT_SUMMARY_NAME, join_uri
from nbknn.naive_bayes.metrics import classification_metrics
from nbknn.naive_bayes.outputs import publish_output
from nbknn.naive_bayes.quality_history import HistoryTarget, record

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def write_metrics(
    spark: SparkSession, report_dir: str, confusion: list[tuple], predicted: int, labels: list[str], model_version,
    history: HistoryTarget | None = None,
) -> dict | None:
    """Write metrics.json into ``report_dir`` from the (true label, predicted label, count) rows,
    and the run's row into the quality ``history`` (when given); returns the metrics, None when no
    row has a true label."""
    labelled_rows = [(t, p, n) for t, p, n in confusion if t is not None]
    if not labelled_rows:
        return None
    metrics = classification_metrics(labelled_rows)
    metrics["unlabelled_documents"] = predicted - metrics["documents"]
    metrics["true_labels_unknown_to_model"] = sorted({t for t, _, _ in labelled_rows} - set(labels))
    metrics["model_version"] = model_version
    if history is not None:
        runs = record(spark, history, metrics)
        metrics["quality_history"] = {"uri": history.uri, "run_key": history.run_key, "runs": runs}
    fs.write_json_atomic(spark, join_uri(report_dir, METRICS_NAME), metrics)
    return metrics


def metrics_summary(metrics: dict | None, report_uri: str) -> dict | None:
    """Where the published report's metrics are and its headline numbers (None without metrics)."""
    if metrics is None:
        return None
    history = {} if "quality_history" not in metrics else {"quality_history_uri": metrics["quality_history"]["uri"]}
    return {
        "uri": join_uri(report_uri, METRICS_NAME),
        "labelled_documents": metrics["documents"],
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        **history,
    }


def publish_report(spark: SparkSession, summary: dict, confusion: list[tuple], labels: list[str],
                   model_version: str, report_uri: str, history: HistoryTarget | None = None) -> dict:
    """Write metrics and the run summary beside ``report_uri`` (and the run's row into the quality
    ``history``) and rename them into place; returns the summary (with its ``metrics`` entry) as
    the contract writes it."""
    report_temp = fs.temporary_sibling(report_uri)
    fs.mkdirs(spark, report_temp)
    metrics = write_metrics(spark, report_temp, confusion, summary["counts"]["predicted"], labels, model_version,
                            history)
    summary = contract.PredictionSummary(**summary, metrics=metrics_summary(metrics, report_uri)).to_dict()
    fs.write_json_atomic(spark, join_uri(report_temp, REPORT_SUMMARY_NAME), summary)
    publish_output(spark, report_temp, report_uri, summary)
    return summary
