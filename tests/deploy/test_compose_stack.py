"""The compose stack's services as REAL local processes, started from docker-compose.yml itself.

No Docker engine runs here, so the containers are replaced by processes on 127.0.0.1, but what
they run is read from the compose file: each Airflow service's command and environment (the
LocalExecutor, the FAB auth manager, the JWT secret, the Fernet key, the execution API URL, the
database URL command, the Spark connection and Spark properties, the pool), the init job's
script, the Spark master's and workers' commands and environment (shared secret, no kill links),
and the healthchecks. Only what a container would provide is replaced (compose_file.Localiser):
service host names become 127.0.0.1 with free ports, /opt/airflow becomes a temporary Airflow home
with the compose's bind mounts linked into it, the HDFS data root becomes a file:// root (no HDFS
runs here), and the class archive the image build makes is the suite's own, linked where the
compose's JVM options look for it. The metadata DB is PostgreSQL from Debian's package (`make`
installs it), set up from the postgres service's environment. Test-only additions are listed in TEST_ONLY_* below.

Order of events (one stack for the module):
  (a) every component reports healthy, the compose healthchecks pass, FAB issues a REST token for
      the admin the init job created (and refuses a wrong password), the init job made the pool;
  (b) an invalid param is refused by the API with the validation message; no run is created;
  (c) unpausing nb_train makes the scheduler create the run of the latest complete daily interval;
      the scheduler is killed (SIGKILL, with its task processes) while a Spark task runs and
      restarted from the same command; the run completes, the killed task on a later try, every
      Spark task in the pool, on the cluster (no kill links on the master UI), authenticated, with
      one executor per application, drivers and executors mapping Spark's classes from the image's
      class archive; the model's tables equal scikit-learn's counts of the same documents;
  (d) the model publication (an Asset event) makes the scheduler run nb_predict, which succeeds;
  (e) knn_neighbors' first scheduled run, with no vectors yet, skips at its plan; then, with
      knn_neighbors paused again, doc_vectors' scheduled run publishes vectors and their Asset
      event (an Asset event running knn_neighbors is `make airflow`'s subject, with an oracle:
      tests/deploy/test_make_airflow.py);
  (f) headless Chromium logs in through FAB's form, changes k in knn_neighbors' trigger form,
      submits it and sees the run succeed with that k on doc_vectors' vectors (its conf, its
      XCom, its neighbours).
"""

from __future__ import annotations

import glob
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, urlparse

import compose_file
import pyarrow.parquet as pq
import pyspark
import pytest
import requests
from compose_file import Localiser, command, environment

from helpers import VENV_BIN, model_differences_from_sklearn, write_jsonl
from nbknn import contract
from processes import free_port, get_json, start, stop, stop_on_sigterm, wait_until
from submit_jvm import QUICK_JIT

pytestmark = pytest.mark.services

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
RUN_TIMEOUT = 480
TRAIN_DOCS = 200
# doc_vectors' scheduled run keeps its default 128 dimensions, which need more documents than that.
TEST_DOCS = 200
# (f) changes k in knn_neighbors' trigger form from its default to this.
FORM_K = 3
AIRFLOW_SERVICES = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]
SPARK_WORKERS = ["spark-worker-1", "spark-worker-2"]
# The JVM option naming a class-data-sharing archive (the image's: Dockerfile, docker-compose.yml).
ARCHIVE_OPTION = "-XX:SharedArchiveFile="
# Spark properties the test adds to the compose's NBKNN_SPARK_CONF: small shuffles for small data,
# no driver UI, and for executor JVMs the quick JIT before the compose's own options -- speed only.
TEST_ONLY_SPARK_CONF = {"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"}
# Worker size: the compose default (2 cores, 2g each) on this 2-core machine, with 1g executors.
# Airflow timings the test changes -- speed only: the DAG files do not change while the stack runs,
# so the dag-processor parses each once at start instead of every 30 s (each parse a process of its
# own, CPU the DAG runs need); the scheduler killed in (c) counts as dead after 15 s without a
# heartbeat (default 30; it heartbeats every 5 s), which is what its restart waits for.
TEST_ONLY_AIRFLOW_ENV = {"AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
                         "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15"}


def _test_dotenv() -> dict[str, str]:
    """The .env a user would write from .env.example: every required value filled in (test secrets;
    the database password has every character a URL or a shell could trip on)."""
    from cryptography.fernet import Fernet

    values = {
        "AIRFLOW_FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW_JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW_API_SECRET_KEY": secrets.token_hex(32),
        "AIRFLOW_ADMIN_USERNAME": "operator",
        "AIRFLOW_ADMIN_PASSWORD": "Adm1n " + secrets.token_urlsafe(8) + " $HOME'\"",
        "POSTGRES_USER": "nbknn",
        "POSTGRES_PASSWORD": "p@ss:w/rd%25#$x?" + secrets.token_hex(4),
        "SPARK_AUTH_SECRET": secrets.token_hex(32),
    }
    missing = set(compose_file.required_variables()) - set(values)
    assert not missing, f".env.example requires values the test does not fill in: {missing}"
    return values


def _postgres_bin() -> Path:
    """The directory of Debian's PostgreSQL server binaries (the `postgresql` package)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("postgres")
    if which:
        return Path(which).resolve().parent
    message = "PostgreSQL is not installed (make installs Debian's `postgresql` package when run as root)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class Postgres:
    """A PostgreSQL server on 127.0.0.1 set up as the postgres image does from its environment
    (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB), run as the `postgres` system user when root."""

    def __init__(self, env: dict[str, str], base: Path):
        self.bin = _postgres_bin()
        self.port = free_port()
        self.user, self.password, self.db = env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]
        # initdb and postgres refuse to run as root; the data folder must belong to their user.
        self.run_as = "postgres" if os.geteuid() == 0 else None
        self.dir = Path(tempfile.mkdtemp(prefix="nbknn-postgres-"))
        if self.run_as:
            shutil.chown(self.dir, self.run_as)
        self.log = base / "postgres.log"
        self.process = None

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        # cwd: the server's own folder, which its user can enter wherever the checkout lies.
        result = subprocess.run(args, user=self.run_as, cwd=self.dir, capture_output=True, text=True, timeout=120,
                                **kwargs)
        assert result.returncode == 0, f"{args[0]}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
        return result

    def start(self) -> None:
        password_file = self.dir / "password"
        password_file.write_text(self.password)
        if self.run_as:
            shutil.chown(password_file, self.run_as)
        self._run([str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", self.user,
                   f"--pwfile={password_file}", "--auth=scram-sha-256", "--encoding=UTF8"])
        password_file.unlink()
        self.log_file = open(self.log, "ab")
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.dir / "data"), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}"],
            user=self.run_as, cwd=self.dir, stdout=self.log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        client = {**os.environ, "PGPASSWORD": self.password}
        wait_until(lambda: subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                          capture_output=True).returncode == 0,
                   60, "PostgreSQL accepting connections", processes=(self.process,))
        # The postgres image creates POSTGRES_DB owned by POSTGRES_USER on first start.
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                        self.db], env=client, check=True, capture_output=True, timeout=60)

    def healthcheck(self, test: list[str]) -> None:
        """The compose healthcheck (pg_isready -U user -d db) against this server."""
        assert test[0] == "CMD-SHELL" and test[1].startswith("pg_isready"), test
        script = test[1].replace("pg_isready", f"{self.bin / 'pg_isready'} -h 127.0.0.1 -p {self.port}", 1)
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                                env={**os.environ, "POSTGRES_USER": self.user, "POSTGRES_DB": self.db})
        assert result.returncode == 0, result.stdout + result.stderr

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        if self.process:
            self.log_file.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Stack:
    """The running stack: processes by service name, their environments, a FAB-authenticated REST
    client, and the local data root."""

    def __init__(self, base: Path, dotenv: dict[str, str]):
        self.base, self.dotenv = base, dotenv
        self.home, self.data_root = base / "home", base / "data"
        self.processes: dict[str, subprocess.Popen] = {}
        self.stale: list[subprocess.Popen] = []
        self.ports = {name: free_port() for name in
                      ("api", "scheduler_health", "master", "master_ui", *SPARK_WORKERS)}
        self.base_url = f"http://127.0.0.1:{self.ports['api']}"
        self.session = requests.Session()

    # --- environments -------------------------------------------------------------------------

    def localiser(self, postgres_port: int) -> Localiser:
        return Localiser({
            "postgres:5432": f"127.0.0.1:{postgres_port}",
            "airflow-apiserver:8080": f"127.0.0.1:{self.ports['api']}",
            "spark-master:7077": f"127.0.0.1:{self.ports['master']}",
        }, self.home)

    def airflow_env(self, service: str) -> dict[str, str]:
        compose_env = environment(service, self.dotenv)
        env = {**os.environ, **self.localise(compose_env)}
        # HDFS is not run here: the same layout under a file:// root.
        assert urlparse(compose_env["NBKNN_DATA_ROOT"]).scheme == "hdfs"
        env["NBKNN_DATA_ROOT"] = self.data_root.as_uri()
        spark_conf = json.loads(env["NBKNN_SPARK_CONF"])
        executor_jvm = f"{QUICK_JIT} {spark_conf['spark.executor.extraJavaOptions']}"
        env["NBKNN_SPARK_CONF"] = json.dumps({**spark_conf, **TEST_ONLY_SPARK_CONF,
                                              "spark.executor.extraJavaOptions": executor_jvm})
        env.update({
            # What the image provides: Airflow's home (with the compose's bind mounts in it), the
            # virtualenv's airflow/python/spark-submit on PATH.
            "AIRFLOW_HOME": str(self.home),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "SPARK_LOCAL_IP": "127.0.0.1",
            # In the container the api-server listens on 8080 and the scheduler's health server on
            # 8974 (the defaults); here on free ports of the loopback interface.
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.ports["api"]),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(self.ports["scheduler_health"]),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            **TEST_ONLY_AIRFLOW_ENV,
        })
        for name in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER",
                     "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__UNIT_TEST_MODE"):
            env.pop(name, None)  # set by tests/conftest.py for the other tests; the image has none
        return env

    def spark_env(self, service: str) -> dict[str, str]:
        env = {**os.environ, **self.localise(environment(service, self.dotenv))}
        env.update({
            "SPARK_HOME": str(Path(pyspark.__file__).parent),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_DIRS": str(self.base / service / "local"),
            "SPARK_LOG_DIR": str(self.base / service / "logs"),
        })
        return env

    # --- processes ----------------------------------------------------------------------------

    def start_airflow(self, service: str) -> subprocess.Popen:
        argv = command(service, self.dotenv)
        process = start([str(VENV_BIN / "airflow"), *argv], self.airflow_env(service),
                        self.base / f"{service}.log", cwd=self.home)
        self.processes[service] = process
        return process

    def start_spark(self, service: str) -> subprocess.Popen:
        argv = [self.localise_arg(service, part) for part in command(service, self.dotenv)]
        argv = self._local_ports(service, argv)
        assert argv[0] == "spark-class"
        process = start([str(VENV_BIN / "spark-class"), *argv[1:]], self.spark_env(service),
                        self.base / f"{service}.log")
        self.processes[service] = process
        return process

    def _local_ports(self, service: str, argv: list[str]) -> list[str]:
        """--port/--webui-port values of the compose command -> this machine's free ports; the
        worker's work dir (one container path) -> a folder per worker."""
        local = {("spark-master", "--port"): self.ports["master"],
                 ("spark-master", "--webui-port"): self.ports["master_ui"]}
        local.update({(worker, "--webui-port"): self.ports[worker] for worker in SPARK_WORKERS})
        out = list(argv)
        for i, part in enumerate(argv[:-1]):
            if (service, part) in local:
                out[i + 1] = str(local[(service, part)])
            if part == "--work-dir":
                out[i + 1] = str(self.base / service / "work")
        return out

    def localise(self, env: dict[str, str]) -> dict[str, str]:
        return self._localiser.environment(env)

    def localise_arg(self, service: str, value: str) -> str:
        return self._localiser.value(value)

    # --- REST API -----------------------------------------------------------------------------

    def login(self, username: str, password: str) -> requests.Response:
        return requests.post(f"{self.base_url}/auth/token", json={"username": username, "password": password},
                             timeout=30)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=30, **kwargs)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        response = self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})
        assert response.status_code == 200 and response.json()["is_paused"] is paused, response.text

    def unpause(self, dag_id: str) -> None:
        self.set_paused(dag_id, False)

    def trigger(self, dag_id: str, conf: dict) -> requests.Response:
        return self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})

    def runs(self, dag_id: str) -> list[dict]:
        response = self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})
        assert response.status_code == 200, response.text
        return response.json()["dag_runs"]

    def task_instances(self, run: dict) -> list[dict]:
        response = self.api("GET", f"/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances")
        assert response.status_code == 200, response.text
        return response.json()["task_instances"]

    def wait_for_run(self, dag_id: str, run_type: str, timeout: float = RUN_TIMEOUT) -> dict:
        def finished():
            found = [run for run in self.runs(dag_id) if run["run_type"] == run_type]
            return found and found[0]["state"] in ("success", "failed") and found[0]

        return wait_until(finished, timeout, f"{run_type} run of {dag_id}", interval=3,
                          processes=self.live_processes())

    def wait_for_run_id(self, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        def finished():
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}").json()
            return run.get("state") in ("success", "failed") and run

        return wait_until(finished, timeout, f"run {run_id} of {dag_id}", interval=3,
                          processes=self.live_processes())

    def live_processes(self) -> tuple[subprocess.Popen, ...]:
        return tuple(self.processes.values())

    def explain(self, run: dict) -> str:
        """Task states of a run and the end of its failed tasks' logs, for assertion messages."""
        dag_id, run_id = run["dag_id"], run["dag_run_id"]
        lines = [f"{run_id}: {run['state']}"]
        for ti in self.task_instances(run):
            lines.append(f"  {ti['task_id']}[{ti['map_index']}] {ti['state']} try {ti['try_number']}")
            if ti["state"] in ("failed", "upstream_failed", "up_for_retry"):
                for log in sorted((self.home / "logs").glob(f"dag_id={dag_id}/run_id={run_id}/task_id={ti['task_id']}/**/*.log")):
                    lines.append(log.read_text(errors="replace")[-3000:])
        return "\n".join(lines)


def _link_bind_mounts(home: Path) -> None:
    """The compose's bind mounts below /opt/airflow (dags, plugins, spark_apps, config) as links in
    the local Airflow home, so Airflow finds them where the image's defaults look."""
    mounts = compose_file.bind_mounts("airflow-scheduler")
    assert mounts, "the scheduler mounts nothing"
    for target, source in mounts.items():
        assert target.startswith(compose_file.CONTAINER_AIRFLOW_HOME + "/"), target
        link = home / target[len(compose_file.CONTAINER_AIRFLOW_HOME) + 1:]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source)


def _provide_class_archive(stack: Stack) -> Path:
    """What the image build provides (Dockerfile: python -m nbknn_local.jvm): the class archive at
    the path the compose's JVM options name, below the local Airflow home. It is the suite's own
    archive (tests/submit_jvm.py), built by the same code for this JDK and Spark, linked there;
    without one the path stays empty and the JVMs load their classes themselves."""
    driver_options = environment("airflow-scheduler", stack.dotenv)["SPARK_SUBMIT_OPTS"].split()
    (container_path,) = [o.removeprefix(ARCHIVE_OPTION) for o in driver_options if o.startswith(ARCHIVE_OPTION)]
    local = stack.home / container_path.removeprefix(compose_file.CONTAINER_AIRFLOW_HOME + "/")
    suite = [o.removeprefix(ARCHIVE_OPTION) for o in os.environ.get("SPARK_SUBMIT_OPTS", "").split()
             if o.startswith(ARCHIVE_OPTION)]
    if suite:
        local.parent.mkdir(parents=True, exist_ok=True)
        local.symlink_to(suite[0])
    return local


def _class_archive_problems(stack: Stack, run: dict) -> list[str]:
    """Where a Spark JVM of the run could not map the class archive: an executor started without
    the compose's option, or a JVM's CDS warning (a class path or JDK the archive does not match)
    in an executor's stderr or in a task's log (where spark-submit's driver output goes)."""
    problems = []
    option = f"{ARCHIVE_OPTION}{stack.class_archive}"
    for stderr in sorted(glob.glob(str(stack.base / "spark-worker-*" / "work" / "app-*" / "*" / "stderr"))):
        text = Path(stderr).read_text(errors="replace")
        launch = [line for line in text.splitlines() if line.startswith("Spark Executor Command:")]
        if not launch or option not in launch[0]:
            problems.append(f"{stderr}: executor started without {option}")
        if "[cds" in text:
            problems.append(f"{stderr}: {text[text.index('[cds'):][:300]}")
    logs = sorted((stack.home / "logs").glob(f"dag_id={run['dag_id']}/run_id={run['dag_run_id']}/**/*.log"))
    problems += [f"{log}: a CDS warning" for log in logs if "[cds" in log.read_text(errors="replace")]
    return problems if logs else ["no task logs found"]


def _run_init_job(stack: Stack) -> subprocess.CompletedProcess:
    """airflow-init's command (bash -ec SCRIPT) with its environment: migrate, admin user, pool."""
    argv = command("airflow-init", stack.dotenv)
    assert argv[:2] == ["bash", "-ec"], argv
    return subprocess.run(argv, env=stack.airflow_env("airflow-init"), cwd=stack.home, capture_output=True,
                          text=True, timeout=600)


def _lay_out_inputs(root: Path, corpus) -> None:
    docs = corpus("reuters-r8", "train", TRAIN_DOCS)
    # The scheduler's nb_train run reads the partition of the latest complete day; around
    # midnight UTC that day may change while the test runs, so both candidates get a copy.
    today = datetime.now(timezone.utc).date()
    for day in (today - timedelta(days=1), today):
        write_jsonl(root / "input" / "nb_train" / "labelled" / f"date={day:%Y-%m-%d}" / "part-0.jsonl", docs)
    write_jsonl(root / "input" / "nb_predict" / "documents" / "docs.jsonl", corpus("reuters-r8", "test", TEST_DOCS))


@pytest.fixture(scope="module")
def stack(tmp_path_factory, corpus):
    base = tmp_path_factory.mktemp("compose-stack")
    dotenv = _test_dotenv()
    stack = Stack(base, dotenv)
    stack.home.mkdir()
    _link_bind_mounts(stack.home)
    stack.class_archive = _provide_class_archive(stack)
    _lay_out_inputs(stack.data_root, corpus)
    postgres = Postgres(environment("postgres", dotenv), base)
    with stop_on_sigterm():
        try:
            postgres.start()
            stack._localiser = stack.localiser(postgres.port)
            postgres.healthcheck(compose_file.resolved("postgres", dotenv)["healthcheck"]["test"])

            # Spark first: its JVMs start while the init job migrates the DB.
            master = stack.start_spark("spark-master")
            master_json = f"http://127.0.0.1:{stack.ports['master_ui']}/json/"
            wait_until(lambda: get_json(master_json), 90, "Spark master UI", processes=(master,))
            for worker in SPARK_WORKERS:
                stack.start_spark(worker)

            init = _run_init_job(stack)
            assert init.returncode == 0, f"airflow-init failed:\n{init.stdout[-3000:]}\n{init.stderr[-5000:]}"
            stack.init_output = init.stdout + init.stderr

            for service in AIRFLOW_SERVICES:
                stack.start_airflow(service)

            def healthy():
                health = get_json(f"{stack.base_url}/api/v2/monitor/health") or {}
                return all(health.get(part, {}).get("status") == "healthy"
                           for part in ("metadatabase", "scheduler", "dag_processor", "triggerer"))

            wait_until(healthy, 240, "healthy api-server, scheduler, dag-processor and triggerer", interval=2,
                       processes=stack.live_processes())

            def workers_alive():
                state = get_json(master_json) or {}
                alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
                return len(alive) == len(SPARK_WORKERS) and alive

            stack.workers = wait_until(workers_alive, 90, "both Spark workers registered",
                                       processes=stack.live_processes())
            stack.master_json = master_json

            token = stack.login(dotenv["AIRFLOW_ADMIN_USERNAME"], dotenv["AIRFLOW_ADMIN_PASSWORD"])
            assert token.status_code in (200, 201), token.text
            stack.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

            def parsed():
                return all(stack.api("GET", f"/dags/{dag_id}").status_code == 200
                           for dag_id in ("nb_train", "nb_predict", "doc_vectors", "knn_neighbors"))

            wait_until(parsed, 180, "DAGs parsed by the dag-processor", interval=2, processes=stack.live_processes())
            yield stack
        finally:
            for process in [*stack.processes.values(), *stack.stale]:
                stop(process)
            postgres.stop()


# --- (a) the stack as configured -------------------------------------------------------------


def test_a_stack_runs_the_compose_configuration_with_fab_login(stack):
    dotenv = stack.dotenv
    scheduler_env = environment("airflow-scheduler", dotenv)
    # The configuration that ran is the compose's: executor, auth manager, DB through the URL command.
    assert scheduler_env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert scheduler_env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("FabAuthManager")
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in scheduler_env
    probe = subprocess.run(
        [str(VENV_BIN / "airflow"), "config", "get-value", "database", "sql_alchemy_conn"],
        env=stack.airflow_env("airflow-scheduler"), capture_output=True, text=True, timeout=120)
    from sqlalchemy.engine import make_url

    url = make_url(probe.stdout.strip())
    assert url.password == dotenv["POSTGRES_PASSWORD"] and url.username == dotenv["POSTGRES_USER"], probe.stderr
    assert url.drivername == "postgresql+psycopg2"

    # FAB: the admin the init job created gets a token; a wrong password does not.
    assert "created with role" in stack.init_output or "already exists" in stack.init_output
    wrong = stack.login(dotenv["AIRFLOW_ADMIN_USERNAME"], dotenv["AIRFLOW_ADMIN_PASSWORD"] + "x")
    assert wrong.status_code in (401, 403), wrong.text
    # Without a token the API refuses.
    assert requests.get(f"{stack.base_url}/api/v2/dags", timeout=30).status_code in (401, 403)

    # The pool of the init job, with the compose's slot count.
    pool_name = scheduler_env["NBKNN_SPARK_POOL"]
    pool = stack.api("GET", f"/pools/{pool_name}")
    assert pool.status_code == 200, pool.text
    assert pool.json()["slots"] == int(environment("airflow-init", dotenv)["NBKNN_SPARK_POOL_SLOTS"])

    # The compose healthchecks of the Airflow services, run as they are written (host names mapped).
    for service in AIRFLOW_SERVICES:
        test = compose_file.resolved(service, dotenv)["healthcheck"]["test"]
        if test[0] == "CMD":
            argv = [stack.localise_arg(service, part) for part in test[1:]]
            port = {"airflow-apiserver": stack.ports["api"], "airflow-scheduler": stack.ports["scheduler_health"]}[service]
            argv = [re.sub(r"localhost:\d+", f"127.0.0.1:{port}", part) for part in argv]
            result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        else:
            script = test[1].replace('--hostname "${HOSTNAME}"', "")
            result = subprocess.run(["bash", "-c", script], env=stack.airflow_env(service), capture_output=True,
                                    text=True, timeout=120)
        assert result.returncode == 0, f"{service} healthcheck {test}: {result.stdout[-2000:]}{result.stderr[-2000:]}"


def test_b_invalid_param_is_refused_with_a_clear_message(stack):
    response = stack.trigger("nb_predict", {"top_n": 1000})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "Invalid input for param top_n" in detail and "maximum of 100" in detail, detail
    response = stack.trigger("nb_predict", {"input_format": "xml"})
    assert response.status_code == 400, response.text
    assert "Invalid input for param input_format" in response.json()["detail"]
    assert stack.runs("nb_predict") == []


# --- (c, d) scheduled training through a scheduler crash, then the Asset-triggered prediction --


SPARK_OPERATOR = "LibrarySparkSubmitOperator"


def _is_spark_task(ti: dict) -> bool:
    return ti["operator"] == SPARK_OPERATOR


def test_c_d_scheduled_training_survives_a_scheduler_kill_and_triggers_prediction(stack, corpus):
    stack.unpause("nb_predict")
    stack.unpause("nb_train")

    def running_spark_task():
        found = [run for run in stack.runs("nb_train") if run["run_type"] == "scheduled"]
        if not found:
            return None
        running = [ti for ti in stack.task_instances(found[0]) if _is_spark_task(ti) and ti["state"] == "running"]
        # ... and its application registered with the master.
        active = running and (get_json(stack.master_json) or {}).get("activeapps")
        return active and (found[0], running[0], active)

    run, victim, active = wait_until(running_spark_task, RUN_TIMEOUT,
                                     "a running Spark task of the scheduled nb_train run, on the cluster",
                                     interval=1, processes=stack.live_processes())
    # While it runs, the master UI lists it and offers no kill link (spark.ui.killEnabled=false).
    master_page = requests.get(stack.master_json.replace("/json/", "/"), timeout=30).text
    assert active[0]["id"] in master_page
    assert "app/kill" not in master_page, "the master UI offers kill links"

    # Crash: the scheduler and everything it started (its task processes, their spark-submit).
    scheduler = stack.processes.pop("airflow-scheduler")
    os.killpg(scheduler.pid, signal.SIGKILL)
    scheduler.wait(timeout=30)
    stack.stale.append(scheduler)

    # The api-server sees the scheduler's heartbeat go stale; then it is restarted, from the same
    # command, and resets the orphaned task, which runs again.
    def scheduler_unhealthy():
        health = get_json(f"{stack.base_url}/api/v2/monitor/health") or {}
        return health.get("scheduler", {}).get("status") == "unhealthy"

    wait_until(scheduler_unhealthy, 120, "the killed scheduler reported unhealthy", interval=2)
    stack.start_airflow("airflow-scheduler")

    train = stack.wait_for_run_id("nb_train", run["dag_run_id"])
    assert train["state"] == "success", stack.explain(train)
    interval_start = datetime.fromisoformat(train["data_interval_start"])
    assert datetime.fromisoformat(train["data_interval_end"]) - interval_start == timedelta(days=1)
    instances = {ti["task_id"]: ti for ti in stack.task_instances(train)}
    assert instances[victim["task_id"]]["try_number"] >= 2, (victim, instances[victim["task_id"]])
    # Every Spark task ran in the compose's pool (the cluster policy), the others in the default one.
    pool = environment("airflow-scheduler", stack.dotenv)["NBKNN_SPARK_POOL"]
    spark_tasks = {task_id for task_id, ti in instances.items() if _is_spark_task(ti) and ti["state"] == "success"}
    assert {"class_prior", "term_counts"} <= spark_tasks, instances
    for task_id, ti in instances.items():
        if ti["state"] == "success":
            assert ti["pool"] == (pool if task_id in spark_tasks else "default_pool"), ti

    models = stack.data_root / "models" / "naive_bayes"
    version = (models / "LATEST").read_text().strip()
    manifest = json.loads((models / version / "manifest.json").read_text())
    assert manifest["lineage"]["run_id"] == train["dag_run_id"]
    assert manifest["records"]["accepted"] == TRAIN_DOCS
    # What the cluster's executors counted (with the library shipped to them) is scikit-learn's
    # count of the same documents, class by class and term by term.
    assert model_differences_from_sklearn(models / version, corpus("reuters-r8", "train", TRAIN_DOCS)) == []

    # The applications ran on the cluster, authenticated with the shared secret, and took at most
    # spark.cores.max cores each.
    state = get_json(stack.master_json)
    names = [app["name"] for app in state["completedapps"]]
    assert {"nb_class_prior", "nb_term_counts"} <= set(names), names
    for daemon in ("spark-master", *SPARK_WORKERS):
        log = (stack.base / f"{daemon}.log").read_text(errors="replace")
        assert "SecurityManager: authentication enabled" in log, f"{daemon} runs without spark.authenticate"
    cores_max = int(json.loads(environment("airflow-scheduler", stack.dotenv)["NBKNN_SPARK_CONF"])["spark.cores.max"])
    assert all(app["cores"] <= cores_max for app in state["completedapps"] + active), state["completedapps"]
    # ... as one executor of those cores (spark.executor.cores): one executor JVM per application.
    executors = Counter(app.name for worker in SPARK_WORKERS for app in (stack.base / worker / "work").iterdir()
                        for executor in app.iterdir() if executor.is_dir())
    assert executors and set(executors.values()) == {1}, executors
    # Drivers and executors mapped Spark's classes from the image's archive.
    assert stack.class_archive.exists() and _class_archive_problems(stack, train) == []

    predict = stack.wait_for_run("nb_predict", "asset_triggered")
    assert predict["state"] == "success", stack.explain(predict)
    events = stack.api("GET", "/assets/events", params={"limit": 100}).json()["asset_events"]
    (event,) = [e for e in events if e["extra"].get("version") == version]
    assert event["source_dag_id"] == "nb_train" and event["source_run_id"] == train["dag_run_id"]
    (run_dir,) = [d for d in (stack.data_root / "predictions" / "naive_bayes").iterdir() if not d.name.startswith("_")
                  if json.loads((d / "report" / "summary.json").read_text())["model"]["version"] == version]
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert summary["counts"]["predicted"] == TEST_DOCS and summary["num_shards"] == manifest["num_shards"]


# --- (e) knn_neighbors without vectors, doc_vectors on its schedule ------------------------------


def test_e_doc_vectors_publishes_vectors_on_its_schedule(stack):
    stack.unpause("knn_neighbors")
    # Unpausing starts today's cron run at once (catchup=False). With no vectors yet it has nothing
    # to search: its plan skips, and no Spark application starts. Waited for, so that it cannot
    # race the vectors published below.
    scheduled_knn = stack.wait_for_run("knn_neighbors", "scheduled")
    tasks = {ti["task_id"]: ti for ti in stack.task_instances(scheduled_knn)}
    assert scheduled_knn["state"] == "success", stack.explain(scheduled_knn)
    assert tasks["plan"]["state"] == "skipped" and tasks["knn"]["state"] == "skipped", stack.explain(scheduled_knn)
    # Paused, knn_neighbors is not queued by the vectors' Asset event: (f) runs it once, from its
    # form, on these vectors. The Asset-triggered run is `make airflow`'s (one Spark application
    # fewer on this 2-core machine).
    stack.set_paused("knn_neighbors", True)
    stack.unpause("doc_vectors")
    scheduled_vectors = stack.wait_for_run("doc_vectors", "scheduled")
    assert scheduled_vectors["state"] == "success", stack.explain(scheduled_vectors)
    vectors = pq.read_table(stack.data_root / "input" / "knn_neighbors" / "vectors")
    assert vectors.num_rows == TEST_DOCS
    events = stack.api("GET", "/assets/events", params={"limit": 100}).json()["asset_events"]
    assert [e["source_run_id"] for e in events if e["source_dag_id"] == "doc_vectors"] == [
        scheduled_vectors["dag_run_id"]], events


# --- (f) the UI: FAB's login form, then a DAG's trigger form ---------------------------------

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


def test_f_browser_logs_in_through_fab_and_triggers_a_dag_from_its_form(stack):
    """Headless Chromium (the Debian package, driven by Playwright) logs in through FAB's form,
    opens knn_neighbors' trigger form, submits it and finds the run successful; screenshots go to
    tests/artifacts/. While the run works the page is left for about:blank, whose polling would
    otherwise take CPU from it."""
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
    stack.unpause("knn_neighbors")
    before = {run["dag_run_id"] for run in stack.runs("knn_neighbors")}
    username, password = stack.dotenv["AIRFLOW_ADMIN_USERNAME"], stack.dotenv["AIRFLOW_ADMIN_PASSWORD"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{stack.base_url}/")
            page.wait_for_url(lambda url: "login" in url)
            page.screenshot(path=str(ARTIFACTS / "fab-login.png"), full_page=True)
            page.locator("input[name='username']").fill(username)
            page.locator("input[name='password']").fill(password)
            page.get_by_role("button", name="Sign In").click()
            page.wait_for_url(lambda url: "login" not in url)

            page.goto(f"{stack.base_url}/dags/knn_neighbors")
            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_text("Trigger Dag")).to_be_visible()
            # The form is rendered from the DAG's Params: their descriptions are shown.
            expect(dialog.get_by_text("Neighbours per vector.")).to_be_visible()
            # A user's change to a field reaches the run's conf.
            k_field = dialog.get_by_role("spinbutton", name="k", exact=True)
            expect(k_field).to_have_value(str(contract.DEFAULT_K))
            k_field.fill(str(FORM_K))
            page.screenshot(path=str(ARTIFACTS / "knn_neighbors-trigger-form.png"), full_page=True)
            dialog.get_by_role("button", name="Trigger").last.click()
            # .first: the UI sometimes renders the toast twice (a strict-mode violation otherwise).
            expect(page.get_by_text("Dag Run Triggered").first).to_be_visible()

            def new_manual_run():
                runs = [r for r in stack.runs("knn_neighbors")
                        if r["dag_run_id"] not in before and r["run_type"] == "manual"]
                return runs and runs[0]

            run = wait_until(new_manual_run, 60, "the run triggered from the form")
            page.goto("about:blank")
            run = stack.wait_for_run_id("knn_neighbors", run["dag_run_id"])
            assert run["state"] == "success", stack.explain(run)
            # The vectors' Asset event of (e), published while knn_neighbors was paused, queued no
            # run, then or on unpausing: this one is the only Spark run of knn_neighbors here.
            assert sorted(r["run_type"] for r in stack.runs("knn_neighbors")) == ["manual", "scheduled"]

            page.goto(f"{stack.base_url}/dags/knn_neighbors/runs/{quote(run['dag_run_id'], safe='')}")
            expect(page.get_by_text(re.compile("success", re.IGNORECASE)).first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "knn_neighbors-run-success.png"), full_page=True)
            # The run honoured the form's k: its conf, the report task's XCom and the neighbours.
            assert run["conf"]["k"] == FORM_K, run["conf"]
            xcom = stack.api("GET", f"/dags/knn_neighbors/dagRuns/{quote(run['dag_run_id'], safe='')}/taskInstances/"
                                    "report/xcomEntries/return_value", params={"deserialize": "true"})
            assert xcom.status_code == 200 and xcom.json()["value"]["k"] == FORM_K, xcom.text
            summaries = [json.loads(p.read_text()) for p in (stack.data_root / "neighbors").glob("*/report/summary.json")]
            (summary,) = [s for s in summaries if s["k"] == FORM_K]
            rows = pq.read_table(urlparse(summary["output"]["uri"]).path).to_pylist()
            assert len(rows) == TEST_DOCS and all(len(row["neighbor_ids"]) == FORM_K for row in rows)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "browser-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
