"""Shared test setup: import paths, an isolated Airflow home, one SparkSession, the real corpora.

Airflow reads its configuration when first imported, so the environment is set here, at import
time, before any test module imports Airflow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Every spark-submit the tests start (DAG runs, the demo, the reliability tests) inherits
# SPARK_SUBMIT_OPTS: JVM options for short jobs (tests/submit_jvm.py). The long-lived in-process
# session does not get them (see `spark`); production submits keep the JVM's defaults.
from submit_jvm import QUICK_JIT, spark_class_archive, submit_options  # noqa: E402

os.environ.setdefault("SPARK_SUBMIT_OPTS", QUICK_JIT)

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="nbknn-airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
)


SUBMITTING_MARKERS = ("e2e", "cluster", "services", "reliability")

# `make test` runs the suite on two pytest-xdist workers (`-n 2 --dist loadfile
# --no-loadscope-reorder`): a 2-core machine spends much of the suite in one-threaded JVM and
# Airflow start-ups, which two workers overlap. Each worker has its own Airflow home and
# SparkSession. A work unit is a test module, handed out longest first (tests/scheduling.py).
from scheduling import LongestFirstFileScheduling, ModuleSeconds, order_longest_first  # noqa: E402

MODULE_SECONDS_RECORD = REPO_ROOT / "build" / "test-module-seconds.json"


def pytest_collection_modifyitems(items):
    order_longest_first(items)


@pytest.hookimpl(tryfirst=True)  # before xdist's own (DSession), which would answer first
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") == "loadfile":
        return LongestFirstFileScheduling(config, log)
    return None


_MODULE_SECONDS = ModuleSeconds()
_RELIABILITY_FIGURES: list[tuple[str, dict]] = []


def pytest_runtest_logreport(report):
    """Collects the figures of the reliability tests (tests/reliability/conftest.py), which reach the
    report as user properties when the ``figures`` fixture is torn down; and each module's seconds."""
    _MODULE_SECONDS.add(report)
    if report.when == "teardown" and report.user_properties and report.nodeid.startswith("tests/reliability/"):
        _RELIABILITY_FIGURES.append((report.nodeid.split("::")[-1], dict(report.user_properties)))


def pytest_terminal_summary(terminalreporter):
    if len(_MODULE_SECONDS.seconds) > 1:
        terminalreporter.section("module seconds (setup + call + teardown, longest first)")
        for module, seconds in _MODULE_SECONDS.longest(15):
            terminalreporter.write_line(f"{seconds:8.1f}s {module}")
        _MODULE_SECONDS.save(MODULE_SECONDS_RECORD)
    if _RELIABILITY_FIGURES:
        terminalreporter.section("reliability figures")
        for name, found in _RELIABILITY_FIGURES:
            terminalreporter.write_line(f"{name}: {json.dumps(found, sort_keys=True, default=str)}")


@pytest.fixture(scope="session", autouse=True)
def spark_submit_class_archive(request):
    """Builds (once per machine) the JVM class archive of tests/submit_jvm.py when the session has
    tests that run spark-submit, and hands it to them through SPARK_SUBMIT_OPTS."""
    if os.environ.get("SPARK_SUBMIT_OPTS") != QUICK_JIT:
        return  # set by the caller: left alone
    if not any(item.get_closest_marker(m) for item in request.session.items for m in SUBMITTING_MARKERS):
        return
    archive = spark_class_archive(REPO_ROOT / "build" / "jvm", Path(sys.executable).parent)
    os.environ["SPARK_SUBMIT_OPTS"] = submit_options(archive)


@pytest.fixture(scope="session")
def spark():
    """The one SparkSession of the Spark tests in this process (starting one costs ~15 s)."""
    # The in-process SparkContext starts its Python workers with $PYSPARK_PYTHON (else `python3`,
    # which lacks the virtualenv's pyarrow and numpy).
    os.environ["PYSPARK_PYTHON"] = sys.executable
    # This JVM runs for the whole session: it keeps the optimising JIT (the test options are for
    # the short spark-submits).
    submit_opts = None
    if os.environ.get("SPARK_SUBMIT_OPTS", "").startswith(QUICK_JIT):
        submit_opts = os.environ.pop("SPARK_SUBMIT_OPTS")
    try:
        session = _start_session()
    finally:
        if submit_opts is not None:
            os.environ["SPARK_SUBMIT_OPTS"] = submit_opts
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _start_session():
    from pyspark.sql import SparkSession

    from nbknn.common.session import SESSION_DEFAULTS

    return (
        SparkSession.builder.master("local[2]")
        .config(map=SESSION_DEFAULTS)
        # The tokeniser's scanner, as spark-submit ships it (--jars).
        .config("spark.jars", str(_token_scanner_jar()))
        .appName("nbknn-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "2g")
        # Python workers (mapInArrow, RDD functions) run this interpreter (the virtualenv) and import
        # the library from its folder; spark-submit ships it as a zip instead (nbknn_airflow.spark_submit).
        .config("spark.pyspark.python", sys.executable)
        .config("spark.executorEnv.PYTHONPATH", str(REPO_ROOT / "spark_apps"))
        .getOrCreate()
    )


def _token_scanner_jar() -> Path:
    from nbknn_airflow.token_scanner import token_scanner_jar

    jar = token_scanner_jar(REPO_ROOT / "build")
    if jar is None:
        raise RuntimeError("the tests need a JDK's javac to build the tokeniser's scanner (make check-java)")
    return jar


@pytest.fixture
def task_build_dir(tmp_path, monkeypatch):
    """A build directory of the test's own (NBKNN_BUILD_DIR) for Spark tasks run in this process,
    with the tokeniser's scanner in it already: built once, and not by a javac that a test's
    stand-in for ``subprocess.Popen`` would catch."""
    build = tmp_path / "build"
    build.mkdir()
    jar = _token_scanner_jar()
    shutil.copy(jar, build / jar.name)
    monkeypatch.setenv("NBKNN_BUILD_DIR", str(build))
    return build


@pytest.fixture(scope="session")
def corpus():
    """``corpus(name, split, limit=None)``: documents (id, label, text) of a real corpus."""
    from nbknn_local import corpora

    cache: dict = {}

    def load(name: str, split: str, limit: int | None = None) -> list[dict]:
        key = (name, split, limit)
        if key not in cache:
            cache[key] = corpora.documents(name, split, limit)
        return cache[key]

    return load


@pytest.fixture(scope="session")
def airflow_db():
    """An Airflow metadata DB (SQLite) migrated once for the whole session."""
    from helpers import VENV_BIN, airflow_env_base

    subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"], check=True, env=airflow_env_base(), capture_output=True
    )
    return AIRFLOW_HOME
