"""The DAGs' ``report`` tasks: draw a run's pictures (and nb_predict's page) beside the numbers its
Spark application published.

The Spark applications publish the numbers (nb_predict's ``metrics.json``, knn_neighbors'
``summary.json``) and leave the drawing to these tasks, which run anyway and need no JVM:
matplotlib took 0.4-1 s of an nb_predict driver's time per run (more at many classes), plus its
import, the whole application waiting on it.

Each file is written under a hidden temporary name and renamed over its place
(``model_publish.write_bytes_atomic``), the page last: a reader sees a picture whole or not at all,
and the page only once the pictures it shows are there. A retry draws them again from the same
metrics and the quality history as it then stands; a retried prediction republishes the report
without them until this task runs again.
"""

from __future__ import annotations

from nbknn.contract import DISTANCE_PNG_NAME, METRICS_NAME, REPORT_HTML_NAME, join_uri
from nbknn.naive_bayes.quality_history import rows_in
from nbknn_airflow import model_publish, storage


def read_history(history_uri: str) -> list:
    """The quality history's rows in run order (hidden temporary files skipped)."""
    if not storage.exists(history_uri):
        return []
    return rows_in(model_publish.list_names(history_uri), lambda name: storage.read_json(join_uri(history_uri, name)))


def publish_report_pages(report_uri: str) -> dict | None:
    """Draw the pictures and the page of the report published at ``report_uri``; returns the page's
    and the pictures' URIs, None when the run had no labelled document (no metrics, nothing to draw)."""
    # numpy and matplotlib only when drawing: Airflow imports every module of plugins/ in each process.
    from nbknn.naive_bayes.report_pictures import report_files

    metrics_uri = join_uri(report_uri, METRICS_NAME)
    if not storage.exists(metrics_uri):
        return None
    metrics = storage.read_json(metrics_uri)
    history = metrics.get("quality_history")
    rows = read_history(history["uri"]) if history else None
    written = []
    for name, content in report_files(metrics, rows):
        uri = join_uri(report_uri, name)
        model_publish.write_bytes_atomic(uri, content)
        written.append(uri)
    return {"page": join_uri(report_uri, REPORT_HTML_NAME), "files": written}


def publish_knn_picture(summary: dict, report_uri: str) -> str | None:
    """Draw a knn_neighbors run's distance-by-rank picture from its ``summary`` into ``report_uri``;
    returns its URI (None for a summary without the numbers)."""
    from nbknn.knn.distance_picture import summary_picture

    picture = summary_picture(summary)
    if picture is None:
        return None
    uri = join_uri(report_uri, DISTANCE_PNG_NAME)
    model_publish.write_bytes_atomic(uri, picture)
    return uri
