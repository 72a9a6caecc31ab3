"""The DAGs under REAL Airflow services: api-server, scheduler (LocalExecutor) and dag-processor as
separate processes on free ports, with a SQLite metadata DB in a temporary AIRFLOW_HOME.

Nothing goes through `airflow dags test` here: runs are created by the REST API v2 (as the UI's
trigger form does) or by the scheduler itself, and tasks run in the executor's worker processes,
which reach the api-server's execution API. Spark runs in local mode (the cluster is
test_spark_standalone_cluster.py's subject).

Order of events (one set of services for the module):
  (b) an invalid param is refused by the API with the validation message; no run is created;
  (c) unpausing nb_train lets the scheduler create the run of the latest complete daily interval
      at once (catchup=False); it folds that day's partition into a first model and publishes it;
  (d) that publication (the nbknn_naive_bayes_model asset) makes the scheduler create an
      asset-triggered nb_predict run, which scores with exactly that model version;
  (a) a knn_neighbors run triggered through the REST API with conf succeeds and honours the conf.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, urlparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from sklearn.datasets import load_digits

from helpers import VENV_BIN, airflow_env_base, write_jsonl
from processes import free_port, get_json, start, stop, wait_until

pytestmark = pytest.mark.services

ADMIN = "admin"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
RUN_TIMEOUT = 420


class Airflow:
    """A running set of Airflow services and an authenticated REST API v2 client."""

    def __init__(self, base_url: str, home: Path, data_root: Path, password: str):
        self.base_url, self.home, self.data_root, self.password = base_url, home, data_root, password
        response = requests.post(f"{base_url}/auth/token", json={"username": ADMIN, "password": password}, timeout=30)
        assert response.status_code in (200, 201), response.text
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=30, **kwargs)

    def unpause(self, dag_id: str) -> None:
        response = self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        assert response.status_code == 200 and response.json()["is_paused"] is False, response.text

    def trigger(self, dag_id: str, conf: dict) -> requests.Response:
        return self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})

    def runs(self, dag_id: str) -> list[dict]:
        response = self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})
        assert response.status_code == 200, response.text
        return response.json()["dag_runs"]

    def wait_for_run(self, dag_id: str, run_type: str, timeout: float = RUN_TIMEOUT) -> dict:
        """The first run of ``run_type`` once it has finished (success or failed)."""

        def finished():
            found = [run for run in self.runs(dag_id) if run["run_type"] == run_type]
            return found and found[0]["state"] in ("success", "failed") and found[0]

        return wait_until(finished, timeout, f"{run_type} run of {dag_id}", interval=3)

    def wait_for_run_id(self, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        def finished():
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()
            return run.get("state") in ("success", "failed") and run

        return wait_until(finished, timeout, f"run {run_id} of {dag_id}", interval=3)

    def explain(self, run: dict) -> str:
        """Task states of a run and the end of its failed tasks' logs, for assertion messages."""
        dag_id, run_id = run["dag_id"], run["dag_run_id"]
        instances = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json().get("task_instances", [])
        lines = [f"{run_id}: {run['state']}"]
        for ti in instances:
            lines.append(f"  {ti['task_id']}[{ti['map_index']}] {ti['state']}")
            if ti["state"] in ("failed", "upstream_failed", "up_for_retry"):
                for log in sorted((self.home / "logs").glob(f"dag_id={dag_id}/run_id={run_id}/task_id={ti['task_id']}/**/*.log")):
                    lines.append(log.read_text(errors="replace")[-3000:])
        return "\n".join(lines)


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, corpus):
    base = tmp_path_factory.mktemp("airflow-services")
    home, data_root = base / "home", base / "data"
    home.mkdir()
    _lay_out_inputs(data_root, corpus)
    port = free_port()
    password = secrets.token_urlsafe(16)
    passwords_file = home / "simple_auth_manager_passwords.json"
    passwords_file.write_text(json.dumps({ADMIN: password}))
    env = airflow_env_base()
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            # One JWT secret for the api-server (which checks tokens) and the scheduler (which signs
            # the tokens of task workers).
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            # Task workers talk to the execution API of THIS api-server (a non-default port must be given twice).
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "NBKNN_DATA_ROOT": data_root.as_uri(),
            "NBKNN_BUILD_DIR": str(home / "build"),
        }
    )
    airflow_bin = str(VENV_BIN / "airflow")
    migrate = subprocess.run([airflow_bin, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    processes = {}
    try:
        for name, command in [("dag-processor", ["dag-processor"]), ("scheduler", ["scheduler"]),
                              ("api-server", ["api-server", "--port", str(port), "--host", "127.0.0.1"])]:
            processes[name] = start([airflow_bin, *command], env, base / f"{name}.log", cwd=base)
        base_url = f"http://127.0.0.1:{port}"

        def healthy():
            health = get_json(f"{base_url}/api/v2/monitor/health") or {}
            return all(health.get(part, {}).get("status") == "healthy"
                       for part in ("metadatabase", "scheduler", "dag_processor"))

        wait_until(healthy, 180, "healthy api-server, scheduler and dag-processor", interval=2,
                   processes=tuple(processes.values()))
        client = Airflow(base_url, home, data_root, password)
        dag_ids = {"nb_train", "nb_predict", "knn_neighbors"}

        def parsed():
            return all(client.api("GET", f"/dags/{dag_id}").status_code == 200 for dag_id in dag_ids)

        wait_until(parsed, 180, "DAGs parsed by the dag-processor", interval=2, processes=tuple(processes.values()))
        yield client
    finally:
        for name in ("scheduler", "dag-processor", "api-server"):
            stop(processes.get(name))


def _lay_out_inputs(root: Path, corpus) -> None:
    docs = corpus("reuters-r8", "train", 200)
    # The scheduler's nb_train run reads the partition of the latest complete day; around
    # midnight UTC that day may change while the test runs, so both candidates get a copy.
    today = datetime.now(timezone.utc).date()
    for day in (today - timedelta(days=1), today):
        write_jsonl(root / "input" / "nb_train" / "labelled" / f"date={day:%Y-%m-%d}" / "part-0.jsonl", docs)
    write_jsonl(root / "input" / "nb_predict" / "documents" / "docs.jsonl", corpus("reuters-r8", "test", 60))
    X = load_digits().data[:200].astype(np.float64)
    vectors = pa.table({"id": pa.array(np.arange(200, dtype=np.int64)),
                        "vector": pa.array([x.tolist() for x in X], type=pa.list_(pa.float64()))})
    (root / "input" / "knn_neighbors" / "vectors").mkdir(parents=True)
    pq.write_table(vectors, root / "input" / "knn_neighbors" / "vectors" / "part-0.parquet")


def test_b_invalid_param_is_refused_with_a_clear_message(airflow):
    response = airflow.trigger("nb_predict", {"top_n": 1000})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "Invalid input for param top_n" in detail and "maximum of 100" in detail, detail

    response = airflow.trigger("nb_predict", {"input_format": "xml"})
    assert response.status_code == 400, response.text
    assert "Invalid input for param input_format" in response.json()["detail"]
    assert airflow.runs("nb_predict") == []


def test_c_d_scheduled_training_publishes_a_model_that_triggers_prediction(airflow):
    # nb_predict first: an asset event only queues runs of DAGs that are not paused. Unpausing it
    # may also start its cron run for today at once (catchup=False); with no model published yet
    # that run may fail at `plan` -- it is not what this test is about.
    airflow.unpause("nb_predict")
    airflow.unpause("nb_train")

    train = airflow.wait_for_run("nb_train", "scheduled")
    assert train["state"] == "success", airflow.explain(train)
    interval_start = datetime.fromisoformat(train["data_interval_start"])
    assert datetime.fromisoformat(train["data_interval_end"]) - interval_start == timedelta(days=1)
    models = airflow.data_root / "models" / "naive_bayes"
    version = (models / "LATEST").read_text().strip()
    manifest = json.loads((models / version / "manifest.json").read_text())
    assert manifest["lineage"]["run_id"] == train["dag_run_id"]
    assert manifest["records"]["accepted"] == 200

    predict = airflow.wait_for_run("nb_predict", "asset_triggered")
    assert predict["state"] == "success", airflow.explain(predict)
    events = airflow.api("GET", "/assets/events", params={"limit": 100}).json()["asset_events"]
    (event,) = [e for e in events if e["extra"].get("version") == version]
    assert event["source_dag_id"] == "nb_train" and event["source_run_id"] == train["dag_run_id"]
    (run_dir,) = [d for d in (airflow.data_root / "predictions" / "naive_bayes").iterdir()
                  if json.loads((d / "report" / "summary.json").read_text())["model"]["version"] == version]
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert summary["counts"]["predicted"] == 60 and summary["num_shards"] == manifest["num_shards"]


def test_a_rest_triggered_run_with_conf_succeeds(airflow):
    airflow.unpause("knn_neighbors")
    response = airflow.trigger("knn_neighbors", {"k": 3, "metric": "cosine", "mode": "broadcast"})
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["run_type"] == "manual" and run["conf"]["k"] == 3
    run = airflow.wait_for_run_id("knn_neighbors", run["dag_run_id"])
    assert run["state"] == "success", airflow.explain(run)

    summaries = [json.loads(p.read_text()) for p in (airflow.data_root / "neighbors").glob("*/report/summary.json")]
    (summary,) = [s for s in summaries if s["k"] == 3]
    assert summary["metric"] == "cosine" and summary["mode"] == "broadcast"
    rows = pq.read_table(urlparse(summary["output"]["uri"]).path).to_pylist()
    assert len(rows) == 200 and all(len(row["neighbor_ids"]) == 3 for row in rows)
    # The run's report task returned the headline through XCom, visible through the API as well.
    xcom = airflow.api("GET", f"/dags/knn_neighbors/dagRuns/{run['dag_run_id']}/taskInstances/report/xcomEntries/return_value",
                        params={"deserialize": "true"})
    assert xcom.status_code == 200 and xcom.json()["value"]["k"] == 3, xcom.text
    # Unpausing also let the scheduler start today's cron run with the default params (k=10).
    scheduled = airflow.wait_for_run("knn_neighbors", "scheduled")
    assert scheduled["state"] == "success", airflow.explain(scheduled)


# --no-sandbox: CI runs as root, where Chromium's sandbox cannot start. The rest keep Chromium from
# calling home (update checks, sync, background fetches), which a machine without internet refuses.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_e_browser_triggers_a_dag_from_its_form_and_sees_success(airflow):
    """Headless Chromium (the Debian package, driven by Playwright) logs in, opens knn_neighbors'
    trigger form, submits it and finds the run successful; screenshots go to tests/artifacts/.

    knn_neighbors runs one Spark application (nb_predict's runs are test_c_d's subject); while the
    run works the page is left for about:blank, whose polling would otherwise take CPU from it."""
    executable = _chromium()
    if executable is None:
        message = "headless Chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import expect, sync_playwright

    # The UI renders what the API already says; on a loaded 2-core machine that can take longer
    # than Playwright's 5 s default for assertions.
    expect.set_options(timeout=30_000)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    airflow.unpause("knn_neighbors")
    before = {run["dag_run_id"] for run in airflow.runs("knn_neighbors")}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{airflow.base_url}/")
            page.get_by_label("Username").fill(ADMIN)
            page.get_by_label("Password").fill(airflow.password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda url: "/auth/login" not in url)

            page.goto(f"{airflow.base_url}/dags/knn_neighbors")
            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_text("Trigger Dag")).to_be_visible()
            # The form is rendered from the DAG's Params: their descriptions are shown.
            expect(dialog.get_by_text("Neighbours per vector.")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "knn_neighbors-trigger-form.png"), full_page=True)
            dialog.get_by_role("button", name="Trigger").last.click()
            # .first: the UI sometimes renders the toast twice (a strict-mode violation otherwise).
            expect(page.get_by_text("Dag Run Triggered").first).to_be_visible()

            def new_manual_run():
                runs = [r for r in airflow.runs("knn_neighbors")
                        if r["dag_run_id"] not in before and r["run_type"] == "manual"]
                return runs and runs[0]

            run = wait_until(new_manual_run, 60, "the run triggered from the form")
            page.goto("about:blank")
            run = airflow.wait_for_run_id("knn_neighbors", run["dag_run_id"])
            assert run["state"] == "success", airflow.explain(run)

            page.goto(f"{airflow.base_url}/dags/knn_neighbors/runs/{quote(run['dag_run_id'], safe='')}")
            expect(page.get_by_text(re.compile("success", re.IGNORECASE)).first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "knn_neighbors-run-success.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "browser-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
