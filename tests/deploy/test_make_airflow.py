"""`make airflow` as a new user meets it: scripts/airflow_ui.py started as the Makefile starts it,
with its own environment (airflow standalone: scheduler, DAG processor, triggerer and API server on
SQLite, local Spark, a file:// data root), on the demo corpus laid out smaller beforehand (the
script lays out the whole corpus only when the inputs are missing).

One module-scoped start, checked through the REST API as the UI's user (the generated admin
password): the DAGs are live from the start, triggering nb_train with its defaults is followed by
an asset-triggered nb_predict that succeeds and evaluates its predictions (its row in the quality
history), and no DAG run fails (the scheduled runs made on unpausing skip or succeed).

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

from processes import free_port, log_tail, start, stop, stop_on_sigterm, wait_until

pytestmark = pytest.mark.services

REPO_ROOT = Path(__file__).resolve().parents[2]
# doc_vectors (scheduled on unpausing) reads the test split and needs more documents than its 128 dims.
TRAIN_DOCS, TEST_DOCS = 300, 200
DAGS = ("nb_train", "nb_predict", "doc_vectors", "knn_neighbors")
START_TIMEOUT = 700  # beyond the script's own (scripts/airflow_ui.py), which then says why
RUN_TIMEOUT = 1500
USER_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "JAVA_HOME", "TMPDIR", "USER", "SPARK_SUBMIT_OPTS")


class AirflowUI:
    def __init__(self, base_url: str, home: Path, data_root: Path, process):
        self.base_url, self.home, self.data_root, self.process = base_url, home, data_root, process
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

    def explain(self, run: dict) -> str:
        instances = self.api("GET", f"/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances").json()
        return json.dumps([(ti["task_id"], ti["state"]) for ti in instances.get("task_instances", [])]) + \
            "\n" + log_tail(self.process, 6000)


def whole_log(process) -> str:
    return process.log_path.read_text(errors="replace") if process.log_path.exists() else ""


def user_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in USER_ENVIRONMENT if name in os.environ}


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory):
    from nbknn_local.environment import lay_out_corpus

    base = tmp_path_factory.mktemp("make-airflow")
    data_root, home = base / "data", base / "airflow_home"
    lay_out_corpus(data_root, TRAIN_DOCS, TEST_DOCS)
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
            ui = AirflowUI(f"http://127.0.0.1:{port}", home, data_root, process)
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

    predict = ui.wait_for("nb_predict", lambda run: run["run_type"] == "asset_triggered",
                          "an asset-triggered nb_predict run")
    assert predict["state"] == "success", ui.explain(predict)

    version = (ui.data_root / "models" / "naive_bayes" / "LATEST").read_text().strip()
    runs = [d for d in (ui.data_root / "predictions" / "naive_bayes").iterdir() if not d.name.startswith("_")]
    (summary,) = [s for s in (json.loads((d / "report" / "summary.json").read_text()) for d in runs)
                  if s["model"]["version"] == version]
    assert summary["counts"]["predicted"] == TEST_DOCS and summary["metrics"]["labelled_documents"] == TEST_DOCS
    rows = [json.loads(p.read_text()) for p in (ui.data_root / "predictions" / "naive_bayes" / "_quality_history").glob("*.json")]
    assert [(row["model_version"], row["accuracy"]) for row in rows] == [(version, summary["metrics"]["accuracy"])]


def test_no_dag_run_failed(airflow_ui):
    """The scheduled runs made when the DAGs were unpaused skip at plan or succeed; none fails."""
    failed = {dag_id: [run["dag_run_id"] for run in airflow_ui.runs(dag_id) if run["state"] == "failed"]
              for dag_id in DAGS}
    assert failed == dict.fromkeys(DAGS, []), log_tail(airflow_ui.process, 6000)
