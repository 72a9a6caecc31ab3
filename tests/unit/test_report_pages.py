"""The report tasks' drawing (no Spark): what they write for each kind of run, and what they leave alone."""

from __future__ import annotations

import json

from PIL import Image

from nbknn import contract
from nbknn_airflow import model_publish, report_pages


def metrics(history_uri: str | None = None) -> dict:
    per_class = {"a": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2},
                 "b": {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1}}
    document = {"labels": ["a", "b"], "confusion_matrix": [[1, 1], [0, 1]], "per_class": per_class,
                "documents": 3, "accuracy": 2 / 3, "macro_f1": 2 / 3, "macro_precision": 0.75,
                "macro_recall": 0.75, "model_version": "v1"}
    if history_uri:
        document["quality_history"] = {"uri": history_uri, "run_key": "r2", "runs": 1}
    return document


def test_an_unlabelled_run_has_nothing_to_draw(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    assert report_pages.publish_report_pages(tmp_path.as_uri()) is None
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_the_page_shows_every_row_of_the_history_written_by_then(tmp_path):
    history = tmp_path / "_quality_history"
    history.mkdir()
    for key, date, accuracy in (("r1", "2026-11-01T06:00:00+00:00", 0.5), ("r2", "2026-11-02T06:00:00+00:00", 2 / 3),
                                ("r3", "2026-11-03T06:00:00+00:00", 0.7)):
        row = {"run_key": key, "run_date": date, "model_version": "v1", "documents": 3, "accuracy": accuracy,
               "macro_f1": accuracy, "per_class_f1": {}}
        (history / f"{key}.json").write_text(json.dumps(row))
    (history / contract.small_file_temp_name("r4.json", "0" * 32)).write_text('{"run_key": "r4", "accur')
    report = tmp_path / "report"
    report.mkdir()
    (report / contract.METRICS_NAME).write_text(json.dumps(metrics(history.as_uri())))
    pages = report_pages.publish_report_pages(report.as_uri())
    names = [contract.QUALITY_HISTORY_PNG_NAME, contract.CLASS_F1_PNG_NAME, contract.CONFUSION_PNG_NAME,
             contract.REPORT_HTML_NAME]
    assert pages["files"] == [f"{report.as_uri()}/{name}" for name in names]  # the page last
    # The rows as they stand when the task draws (r3 came after this run), the killed write skipped.
    assert "3 evaluated run(s)" in (report / contract.REPORT_HTML_NAME).read_text()
    for name in names[:3]:
        with Image.open(report / name) as picture:
            picture.verify()
    assert sorted(p.name for p in report.iterdir()) == sorted([contract.METRICS_NAME, *names])


def test_a_knn_summary_without_distances_draws_nothing_and_one_with_them_draws_its_picture(tmp_path):
    summary = {"k": 3, "metric": "euclidean", "mode": "broadcast", "query_vectors": 10, "annoy": None}
    assert report_pages.publish_knn_picture({**summary, "distance_by_rank": None}, tmp_path.as_uri()) is None
    assert list(tmp_path.iterdir()) == []
    stats = {"ranks": [1, 2, 3], "p10": [0.1, 0.2, 0.3], "median": [0.2, 0.3, 0.4], "p90": [0.3, 0.4, 0.5]}
    uri = report_pages.publish_knn_picture({**summary, "distance_by_rank": stats}, tmp_path.as_uri())
    assert uri == f"{tmp_path.as_uri()}/{contract.DISTANCE_PNG_NAME}"
    with Image.open(tmp_path / contract.DISTANCE_PNG_NAME) as picture:
        assert picture.size == (700, 400)


def test_bytes_are_written_whole_and_replace_the_file(tmp_path):
    target = tmp_path / "picture.png"
    target.write_bytes(b"old")
    data = bytes(range(256)) * 4
    model_publish.write_bytes_atomic(target.as_uri(), data)
    assert target.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["picture.png"]
