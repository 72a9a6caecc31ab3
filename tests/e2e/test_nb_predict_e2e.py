"""End to end: ``airflow dags test nb_predict`` with the real SparkSubmitOperator (local[2]) on a slice
of Reuters R8, with the model the session's ``nb_train`` run published (tests/e2e/conftest.py):
the single pass, equal to scikit-learn on the same documents."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from helpers import run_dag_test, sklearn_nb_predictions, write_jsonl

pytestmark = pytest.mark.e2e

TEST_DOCS = 120


def _task_instances(dag_id: str) -> list[tuple]:
    """(run_id, task_id, map_index, state) of the task instances of the DAG's latest run in the Airflow
    DB (which other test modules of the session share)."""
    db = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "select run_id, task_id, map_index, state from task_instance where dag_id = ? and run_id = "
            "(select run_id from dag_run where dag_id = ? order by id desc limit 1) order by task_id, map_index",
            (dag_id, dag_id),
        ).fetchall()


def _tail(result) -> str:
    return (result.stdout[-4000:] + "\n--- stderr ---\n" + result.stderr[-6000:])


# The single pass, which this small model takes by default (auto). The per-shard path (one mapped
# task instance per shard) goes through Airflow on the standalone cluster
# (tests/deploy/test_spark_standalone_cluster.py), with the same oracle.
PATH, TASKS = "single_pass", {"plan", "choose_path", "predict", "report"}


def test_nb_predict_dag_scores_a_real_corpus_equal_to_sklearn(r8_training_run, corpus):
    import pyarrow.parquet as pq

    root, version = r8_training_run.root, r8_training_run.version
    test_docs = corpus("reuters-r8", "test", TEST_DOCS)
    # One unlabelled document and one malformed line: labels are optional, bad records are quarantined.
    records = [*test_docs, {"id": "no-label", "text": "oil prices rose sharply"}, '{"id": "broken"']
    write_jsonl(root / "input" / "nb_predict" / "documents" / "docs.jsonl", records)

    assert (root / "models" / "naive_bayes" / "LATEST").read_text().strip() == version
    conf = {"top_n": 2, "max_reject_fraction": 0.05}
    predict = run_dag_test("nb_predict", conf, root.as_uri())
    assert predict.returncode == 0, _tail(predict)

    # One run folder; the quality history beside it starts with '_'.
    (run_dir,) = [d for d in (root / "predictions" / "naive_bayes").iterdir() if not d.name.startswith("_")]
    predictions = pq.read_table(run_dir / "predictions").to_pylist()
    assert len(predictions) == TEST_DOCS + 1
    by_id = {row["doc_id"]: row for row in predictions}
    assert by_id["no-label"]["true_label"] is None
    labels = {d["label"] for d in r8_training_run.docs}
    for doc in test_docs:
        row = by_id[doc["id"]]
        assert row["true_label"] == doc["label"]
        assert row["label"] in labels and 0 < row["probability"] <= 1
        assert len(row["top_n"]) == 2 and row["top_n"][0]["label"] == row["label"]

    # The independent oracle: scikit-learn on the same training and test documents.
    expected = sklearn_nb_predictions(r8_training_run.docs, test_docs, r8_training_run.manifest["model"]["alpha"])
    assert [by_id[d["id"]]["label"] for d in test_docs] == [expected[d["id"]][0] for d in test_docs]
    np.testing.assert_allclose([by_id[d["id"]]["probability"] for d in test_docs],
                               [expected[d["id"]][1] for d in test_docs], rtol=0, atol=1e-9)

    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert summary["path"] == PATH
    assert summary["model"]["version"] == version
    assert summary["counts"]["read"] == TEST_DOCS + 2
    assert summary["counts"]["rejected"] == 1 and summary["counts"]["predicted"] == TEST_DOCS + 1
    assert summary["counts"]["reconciled"]
    metrics = json.loads((run_dir / "report" / "metrics.json").read_text())
    assert metrics["documents"] == TEST_DOCS
    correct = sum(by_id[d["id"]]["label"] == d["label"] for d in test_docs)
    assert metrics["accuracy"] == pytest.approx(correct / TEST_DOCS)
    assert (run_dir / "report" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert (root / "rejects" / "nb_predict" / run_dir.name).is_dir()

    instances = _task_instances("nb_predict")
    ran = {task_id for *_, task_id, _, state in instances if state == "success"}
    assert ran == TASKS, instances
    assert all(state in ("success", "skipped") for *_, state in instances)
