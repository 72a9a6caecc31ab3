"""The quality history of nb_predict, from real prediction runs on the shared session.

Two runs (two models trained on different slices of Reuters R8; one run on the single pass, one on
the per-shard path) write into one history: its rows hold each run's accuracy, macro-F1 and
per-class F1 as scikit-learn computes them from scikit-learn's own predictions, in date order; the
second run's report draws both; a retry replaces its own row; a killed write's temporary file is
skipped and then removed; rows written at once by many writers are all there.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from helpers import local_path, predict_in_process, sklearn_nb_predictions, train_model_in_process

pytestmark = pytest.mark.spark

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TEST_DOCUMENTS = 250
RUNS = [  # (run key, run date, training documents, prediction path)
    ("scheduled__2026-11-01-aaaa1111", "2026-11-01T06:00:00+00:00", 150, "single_pass"),
    ("scheduled__2026-11-02-bbbb2222", "2026-11-02T06:00:00+00:00", 800, "per_shard"),
]


def sklearn_quality(train: list, test: list) -> dict:
    """Accuracy, macro-F1 and per-class F1 (classes with true documents) of scikit-learn's MultinomialNB."""
    from sklearn.metrics import accuracy_score, f1_score

    predicted = sklearn_nb_predictions(train, test, alpha=1.0)
    y_true = [d["label"] for d in test]
    y_pred = [predicted[d["id"]][0] for d in test]
    labels = sorted(set(y_true) | set(y_pred))
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "macro_f1": f1_score(y_true, y_pred, average="macro", zero_division=0),
        "per_class_f1": {label: f for label, f in zip(labels, per_class) if label in set(y_true)},
    }


@pytest.fixture(scope="module")
def history_runs(spark, corpus, tmp_path_factory):
    """The two runs, made once: (history target of each run, expected quality of each, model of each)."""
    from nbknn.naive_bayes.quality_history import HistoryTarget

    base = tmp_path_factory.mktemp("quality_history")
    history_uri = (base / "predictions" / "_quality_history").as_uri()
    train_all, test = corpus("reuters-r8", "train"), corpus("reuters-r8", "test", TEST_DOCUMENTS)
    targets, expected, models = [], [], []
    for i, (key, date, n_train, path) in enumerate(RUNS):
        train = train_all[:n_train]
        model = train_model_in_process(spark, train, base / f"model-{i}", num_shards=2, version=f"v{i + 1}")
        target = HistoryTarget(uri=history_uri, run_key=key, run_date=date)
        predict_in_process(spark, model, test, base / f"run-{i}", path=path, history=target)
        targets.append(target)
        expected.append({**sklearn_quality(train, test), "model_version": f"v{i + 1}"})
        models.append(model)
    return targets, expected, models


def test_each_run_adds_its_row_with_the_quality_scikit_learn_measures(spark, history_runs):
    from nbknn.naive_bayes.quality_history import read_history

    targets, expected, _ = history_runs
    rows = read_history(spark, targets[0].uri)
    assert [(r.run_key, r.run_date, r.model_version) for r in rows] == [
        (t.run_key, t.run_date, e["model_version"]) for t, e in zip(targets, expected)
    ]
    for row, want in zip(rows, expected):
        assert row.accuracy == pytest.approx(want["accuracy"], abs=1e-12)
        assert row.macro_f1 == pytest.approx(want["macro_f1"], abs=1e-12)
        assert row.per_class_f1 == pytest.approx(want["per_class_f1"], abs=1e-12)
        assert row.documents == TEST_DOCUMENTS
    # The two models differ enough for the history to show a change.
    assert rows[1].accuracy - rows[0].accuracy > 0.02


def test_the_second_runs_report_plots_both_runs(spark, history_runs):
    from nbknn.naive_bayes.quality_history import history_figure, read_history
    from nbknn_airflow import report_pages

    targets, expected, models = history_runs
    runs = local_path(models[0]).parents[2]
    report = runs / "run-1" / "run" / "report"
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["quality_history"] == {"uri": targets[1].uri, "run_key": targets[1].run_key, "runs": 2}
    first = json.loads((runs / "run-0" / "run" / "report" / "metrics.json").read_text())
    assert first["quality_history"]["runs"] == 1  # the history as it stood when the first run wrote its row
    summary = json.loads((report / "summary.json").read_text())
    assert summary["metrics"]["quality_history_uri"] == targets[1].uri
    # The DAG's report task (no Spark) reads the same rows and draws them.
    assert report_pages.read_history(targets[1].uri) == read_history(spark, targets[1].uri)
    report_pages.publish_report_pages(report.as_uri())
    picture = (report / "quality_history.png").read_bytes()
    assert picture[:8] == b"\x89PNG\r\n\x1a\n"
    page = (report / "report.html").read_text()
    assert 'src="quality_history.png"' in page and f"2 evaluated run(s) in {targets[1].uri}" in page
    # What the picture plots is the rows' values (tests/unit/test_quality_history_picture.py checks
    # that the PNG draws what the figure holds).
    lines = history_figure(read_history(spark, targets[1].uri)).axes[0].get_lines()
    plotted = [list(line.get_ydata()) for line in lines[:2]]
    assert plotted == [pytest.approx([e["accuracy"] for e in expected], abs=1e-12),
                       pytest.approx([e["macro_f1"] for e in expected], abs=1e-12)]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(report / "quality_history.png", ARTIFACTS / "quality-history.png")


def test_a_retry_replaces_its_own_row_and_removes_a_killed_writes_temporary_file(spark, corpus, history_runs):
    from nbknn.contract import small_file_temp_name
    from nbknn.naive_bayes.quality_history import read_history

    targets, _, models = history_runs
    folder = local_path(targets[0].uri)
    before = {r.run_key: r for r in read_history(spark, targets[0].uri)}
    # What a write of the first run's row killed before its rename leaves: a hidden, partial file.
    abandoned = folder / small_file_temp_name(f"{targets[0].run_key}.json", "0" * 32)
    abandoned.write_text('{"run_key": "scheduled__2026-11-01-aaaa1111", "accur')
    assert read_history(spark, targets[0].uri) == list(before.values())  # skipped by readers

    predict_in_process(spark, models[0], corpus("reuters-r8", "test", TEST_DOCUMENTS), local_path(models[0]).parents[2] / "retry",
                       path="single_pass", history=targets[0])
    after = read_history(spark, targets[0].uri)
    assert [r.run_key for r in after] == [t.run_key for t in targets]  # replaced, not added
    assert after[0] == before[targets[0].run_key]  # the same run gives the same row
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t.run_key}.json" for t in targets)


def test_rows_written_at_once_are_all_kept(spark, tmp_path):
    """Many writers at once (as concurrent runs): no row is lost and none is partial."""
    from nbknn.naive_bayes.quality_history import HistoryTarget, QualityRow, read_history, write_row

    uri = (tmp_path / "_quality_history").as_uri()
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(5):
                target = HistoryTarget(uri, f"run-{w}-{i}", f"2026-11-{w + 1:02d}T00:00:0{i}+00:00")
                write_row(spark, target, QualityRow(target.run_key, target.run_date, "v", 10, w / 10, i / 10, {}))
                write_row(spark, target, QualityRow(target.run_key, target.run_date, "v", 10, w / 10, i / 10, {}))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = read_history(spark, uri)
    assert [(r.run_key, r.accuracy, r.macro_f1) for r in rows] == [
        (f"run-{w}-{i}", w / 10, i / 10) for w in range(4) for i in range(5)
    ]
    assert [p.name for p in (tmp_path / "_quality_history").iterdir() if p.name.startswith(".")] == []
