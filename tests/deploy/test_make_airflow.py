"""`make airflow` as a new user meets it: scripts/airflow_ui.py started as the Makefile starts it,
with its own environment (airflow standalone: scheduler, DAG processor, triggerer and API server on
SQLite, local Spark, a file:// data root), on the demo corpus laid out smaller beforehand (the
script lays out the whole corpus only when the inputs are missing).

One module-scoped start, checked through the REST API as the UI's user (the generated admin
password): the DAGs are live from the start, triggering nb_train with its defaults is followed by
an asset-triggered nb_predict that succeeds and evaluates its predictions (its row in the quality
history), doc_vectors' scheduled run (made on unpausing) is followed by an asset-triggered
knn_neighbors, and no DAG run fails (the scheduled runs made on unpausing skip or succeed).

These two runs are also the suite's end-to-end check of the default training and prediction paths
(full training without selection, then the single pass), with scikit-learn as the oracle: the
model's tables equal its counts of the accepted documents, the predictions its labels and
probabilities; a few bad records in both inputs are quarantined with their reasons and counted.
The knn_neighbors run is the suite's end-to-end check of a run started by an Asset event, with
the direct float64 brute force as the oracle. (`airflow dags test` runs every DAG in the demo,
tests/e2e/test_demo.py.)

The script gets a user's environment, not the test session's: PATH, HOME, the locale and Java;
only SPARK_SUBMIT_OPTS (JVM options of the short spark-submits, tests/submit_jvm.py) is passed on.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import requests

from helpers import dag_param_defaults, model_differences_from_sklearn, sklearn_nb_predictions, write_jsonl
from processes import free_port, log_tail, start, stop, stop_on_sigterm, wait_until

pytestmark = pytest.mark.services

REPO_ROOT = Path(__file__).resolve().parents[2]
# doc_vectors (scheduled on unpausing) reads the test split and needs more documents than its 128 dims.
TRAIN_DOCS, TEST_DOCS = 300, 200
DAGS = ("nb_train", "nb_predict", "doc_vectors", "knn_neighbors")
# Bad records beside the corpus, each in a file of its own: quarantined, within the default
# max_reject_fraction (1 %).
BAD_TRAIN_RECORDS = {"malformed_json": "{not json", "missing_text": '{"id": "no-text", "label": "earn"}'}
BAD_PREDICT_RECORD = '{"id": "broken"'
UNLABELLED = {"id": "no-label", "text": "oil prices rose sharply"}  # labels are optional in prediction
START_TIMEOUT = 700  # beyond the script's own (scripts/airflow_ui.py), which then says why
RUN_TIMEOUT = 1500
USER_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "JAVA_HOME", "TMPDIR", "USER", "SPARK_SUBMIT_OPTS")


class AirflowUI:
    def __init__(self, base_url: str, home: Path, data_root: Path, process, train: list, test: list):
        self.base_url, self.home, self.data_root, self.process = base_url, home, data_root, process
        self.train, self.test = train, test  # the good documents of the inputs
        self.finished: dict[str, dict] = {}  # the runs the first test waited for, by DAG id
        self.session = requests.Session()

    def login(self) -> None:
        passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        token = requests.post(f"{self.base_url}/auth/token",
                              json={"username": "admin", "password": passwords["admin"]}, timeout=30)
        assert token.status_code in (200, 201), token.text
        self.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=60, **kwargs)

    def runs(self, dag_id: str) -> list[dict]:
        response = self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})
        return response.json()["dag_runs"] if response.ok else []

    def wait_for(self, dag_id: str, match, what: str) -> dict:
        def finished():
            found = [run for run in self.runs(dag_id) if match(run)]
            return found and found[0]["state"] in ("success", "failed") and found[0]
        return wait_until(finished, RUN_TIMEOUT, what, interval=5, processes=(self.process,))

    def task_states(self, run: dict) -> dict[str, str]:
        """{task id: state} of a run's task instances (empty when the API does not answer)."""
        response = self.api("GET", f"/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances")
        instances = response.json().get("task_instances", []) if response.ok else []
        return {ti["task_id"]: ti["state"] for ti in instances}

    def explain(self, run: dict) -> str:
        return json.dumps(self.task_states(run)) + "\n" + log_tail(self.process, 6000)


def whole_log(process) -> str:
    return process.log_path.read_text(errors="replace") if process.log_path.exists() else ""


def user_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in USER_ENVIRONMENT if name in os.environ}


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory):
    from nbknn_local.environment import SCORING_INPUT, TRAIN_INPUT, TRAIN_PARTITIONS, lay_out_corpus

    base = tmp_path_factory.mktemp("make-airflow")
    data_root, home = base / "data", base / "airflow_home"
    train, test = lay_out_corpus(data_root, TRAIN_DOCS, TEST_DOCS)
    write_jsonl(data_root / TRAIN_INPUT / TRAIN_PARTITIONS[0] / "bad.jsonl", list(BAD_TRAIN_RECORDS.values()))
    write_jsonl(data_root / SCORING_INPUT / "extra.jsonl", [UNLABELLED, BAD_PREDICT_RECORD])
    port = free_port()
    command = [sys.executable, str(REPO_ROOT / "scripts" / "airflow_ui.py"), "--port", str(port),
               "--data-root", str(data_root), "--airflow-home", str(home)]
    process = start(command, user_environment(), base / "airflow_ui.log", cwd=REPO_ROOT)
    with stop_on_sigterm():
        try:
            # The whole log: airflow standalone's components can write more than any tail between
            # two looks on a loaded machine, pushing the script's line out of it.
            wait_until(lambda: "Airflow UI: http://127.0.0.1:" in whole_log(process), START_TIMEOUT,
                       "make airflow printed its URL and password", interval=2, processes=(process,))
            ui = AirflowUI(f"http://127.0.0.1:{port}", home, data_root, process, train, test)
            ui.login()
            yield ui
        finally:
            stop(process, grace_seconds=30)


def test_the_dags_are_live_and_nb_train_is_followed_by_an_asset_triggered_nb_predict(airflow_ui):
    ui = airflow_ui

    def parsed_dags():
        found = {dag_id: ui.api("GET", f"/dags/{dag_id}") for dag_id in DAGS}
        return all(r.ok for r in found.values()) and {dag_id: r.json() for dag_id, r in found.items()}

    dags = wait_until(parsed_dags, START_TIMEOUT, "the four DAGs parsed", interval=3, processes=(ui.process,))
    assert {dag_id: dag["is_paused"] for dag_id, dag in dags.items()} == dict.fromkeys(DAGS, False)

    # As the trigger form with its defaults: no conf. SQLite may be locked by another component for
    # a moment on a loaded machine (a 500 "Database error"): then, as a user would, trigger again.
    def trigger():
        response = ui.api("POST", "/dags/nb_train/dagRuns", json={"logical_date": None, "conf": {}})
        assert response.ok or response.status_code >= 500, response.text
        return response.ok and response

    triggered = wait_until(trigger, 120, "nb_train triggered", interval=5, processes=(ui.process,))
    run_id = triggered.json()["dag_run_id"]
    train = ui.wait_for("nb_train", lambda run: run["dag_run_id"] == run_id, "the triggered nb_train run")
    assert train["state"] == "success", ui.explain(train)
    states = ui.task_states(train)
    # A manual run trains in full mode (nothing to merge into), selection is off by default.
    assert states.pop("merge") == states.pop("select") == "skipped", states
    assert set(states.values()) == {"success"}, states

    predict = ui.wait_for("nb_predict", lambda run: run["run_type"] == "asset_triggered",
                          "an asset-triggered nb_predict run")
    assert predict["state"] == "success", ui.explain(predict)
    # The single pass (this small model fits the broadcast budget); the per-shard tasks skipped.
    states = ui.task_states(predict)
    assert {task for task, state in states.items() if state == "success"} == {"plan", "choose_path", "predict", "report"}
    assert set(states.values()) <= {"success", "skipped"}, states
    ui.finished = {"nb_train": train, "nb_predict": predict}


def _published(ui: AirflowUI) -> tuple[str, Path, dict]:
    models = ui.data_root / "models" / "naive_bayes"
    version = (models / "LATEST").read_text().strip()
    return version, models / version, json.loads((models / version / "manifest.json").read_text())


def test_the_model_is_scikit_learns_counts_and_the_bad_records_are_quarantined(airflow_ui):
    ui = airflow_ui
    train = ui.finished["nb_train"]
    version, model_dir, manifest = _published(ui)
    assert manifest["lineage"]["run_id"] == train["dag_run_id"]
    assert manifest["lineage"]["mode"] == "full" and manifest["lineage"]["parent_version"] is None
    assert manifest["model"] == {"type": "multinomial", "alpha": 1.0, "fit_prior": True}
    assert manifest["records"]["read"] == len(ui.train) + len(BAD_TRAIN_RECORDS)
    assert manifest["records"]["accepted"] == len(ui.train)
    assert manifest["records"]["rejected_by_reason"] == dict.fromkeys(BAD_TRAIN_RECORDS, 1)
    rejects = [json.loads(line) for f in ui.data_root.glob("rejects/nb_train/*/part-*") for line in open(f)]
    assert sorted((r["reason"], r["raw"]) for r in rejects) == sorted(BAD_TRAIN_RECORDS.items())
    assert model_differences_from_sklearn(model_dir, ui.train) == []
    shards = sorted(p.name for p in (model_dir / "term_counts").glob("shard=*"))
    assert shards == [f"shard={s['shard']}" for s in manifest["shards"]] and len(shards) == manifest["num_shards"]
    assert sum(s["entries"] for s in manifest["shards"]) == manifest["counts"]["entries"]
    assert not (model_dir.parent / "_staging" / version).exists()
    events = ui.api("GET", "/assets/events", params={"limit": 100}).json()["asset_events"]
    (event,) = [e for e in events if e["source_dag_id"] == "nb_train"]
    assert event["source_run_id"] == train["dag_run_id"]
    assert event["extra"] == {"version": version, "uri": model_dir.as_uri(), "num_shards": manifest["num_shards"]}


def test_the_predictions_are_scikit_learns_and_the_quality_history_has_their_row(airflow_ui):
    import numpy as np
    import pyarrow.parquet as pq

    ui = airflow_ui
    version, _, manifest = _published(ui)
    runs = [d for d in (ui.data_root / "predictions" / "naive_bayes").iterdir() if not d.name.startswith("_")]
    (run_dir,) = [d for d in runs if json.loads((d / "report" / "summary.json").read_text())["model"]["version"] == version]
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert summary["path"] == "single_pass"
    assert summary["counts"]["read"] == len(ui.test) + 2 and summary["counts"]["rejected"] == 1
    assert summary["counts"]["predicted"] == len(ui.test) + 1 and summary["counts"]["reconciled"]
    assert summary["metrics"]["labelled_documents"] == len(ui.test) == TEST_DOCS
    (reject,) = [json.loads(line) for f in (ui.data_root / "rejects" / "nb_predict" / run_dir.name).glob("part-*")
                 for line in open(f)]
    assert (reject["reason"], reject["raw"]) == ("malformed_json", BAD_PREDICT_RECORD)

    by_id = {row["doc_id"]: row for row in pq.read_table(run_dir / "predictions").to_pylist()}
    assert len(by_id) == len(ui.test) + 1 and by_id[UNLABELLED["id"]]["true_label"] is None
    # The independent oracle: scikit-learn on the same training and test documents.
    expected = sklearn_nb_predictions(ui.train, [*ui.test, UNLABELLED], manifest["model"]["alpha"])
    assert {i: row["label"] for i, row in by_id.items()} == {i: label for i, (label, _) in expected.items()}
    np.testing.assert_allclose([by_id[i]["probability"] for i in expected], [p for _, p in expected.values()],
                               rtol=0, atol=1e-9)
    assert all(by_id[d["id"]]["true_label"] == d["label"] for d in ui.test)

    metrics = json.loads((run_dir / "report" / "metrics.json").read_text())
    correct = sum(by_id[d["id"]]["label"] == d["label"] for d in ui.test)
    assert metrics["documents"] == TEST_DOCS and metrics["accuracy"] == pytest.approx(correct / TEST_DOCS)
    rows = [json.loads(p.read_text()) for p in (ui.data_root / "predictions" / "naive_bayes" / "_quality_history").glob("*.json")]
    assert [(row["model_version"], row["accuracy"]) for row in rows] == [(version, metrics["accuracy"])]


def test_the_scheduled_vectors_run_knn_neighbors_through_their_asset_and_it_finds_the_exact_neighbours(
        airflow_ui):
    """Unpausing made doc_vectors' run of its latest interval; the vectors it published (an Asset
    event) ran knn_neighbors, with its Param defaults, whose neighbours are the direct float64 brute
    force's on those vectors, ids and distances, ties broken by id."""
    import numpy as np
    import pyarrow.parquet as pq

    from knn_oracles import assert_all_points_rows_equal_direct

    ui = airflow_ui
    vectors_run = ui.wait_for("doc_vectors", lambda run: run["run_type"] == "scheduled", "the scheduled doc_vectors run")
    assert vectors_run["state"] == "success", ui.explain(vectors_run)
    knn = ui.wait_for("knn_neighbors", lambda run: run["run_type"] == "asset_triggered",
                      "an asset-triggered knn_neighbors run")
    assert knn["state"] == "success", ui.explain(knn)

    vectors = pq.read_table(ui.data_root / "input" / "knn_neighbors" / "vectors").to_pylist()
    # The test split and the unlabelled document; the malformed record is quarantined.
    assert len(vectors) == len(ui.test) + 1
    ids = np.array([row["id"] for row in vectors])
    X = np.array([row["vector"] for row in vectors])
    (run_dir,) = (ui.data_root / "neighbors").iterdir()
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    defaults = dag_param_defaults("knn_neighbors")
    assert [summary[name] for name in ("k", "metric", "exclude_self")] == [
        defaults[name] for name in ("k", "metric", "exclude_self")], summary
    assert_all_points_rows_equal_direct(pq.read_table(run_dir / "neighbors").to_pylist(), ids, X, summary["k"],
                                        summary["metric"])


def test_no_dag_run_failed(airflow_ui):
    """The scheduled runs made when the DAGs were unpaused skip at plan or succeed; none fails."""
    failed = {dag_id: [run["dag_run_id"] for run in airflow_ui.runs(dag_id) if run["state"] == "failed"]
              for dag_id in DAGS}
    assert failed == dict.fromkeys(DAGS, []), log_tail(airflow_ui.process, 6000)
