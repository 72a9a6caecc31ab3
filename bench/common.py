"""What every benchmark script shares: import paths, the SparkSession, timing, results files.

Benchmarks are not tests: they measure, they do not assert. Each script writes
``bench/results/<name>.json``; ``bench/report.py`` turns every JSON file into the Markdown table
``bench/results/README.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

# One place for the Spark settings of every benchmark: both sides of a comparison run on it.
MASTER = os.environ.get("BENCH_MASTER", "local[2]")
DRIVER_MEMORY = os.environ.get("BENCH_DRIVER_MEMORY", "4g")
SHUFFLE_PARTITIONS = os.environ.get("BENCH_SHUFFLE_PARTITIONS", "4")


def start_spark(app_name: str, extra_conf: dict | None = None):
    """(session, seconds): a local[2] session and the time its JVM start-up took.

    The start-up (JVM launch, session creation, a first trivial job that starts the Python worker
    machinery) is measured here and reported separately: no per-job timing includes it.
    """
    from pyspark.sql import SparkSession

    from nbknn.common.session import DAEMON_MODULE_KEY, SESSION_DEFAULTS, WORKER_DAEMON_MODULE
    from nbknn_airflow.token_scanner import token_scanner_jar

    # Python workers must run this interpreter (the virtualenv); the environment variable is what
    # the worker launcher reads in every deploy mode, the config key is kept for spark-submit.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    started = time.perf_counter()
    builder = (
        SparkSession.builder.master(MASTER)
        .config(map=SESSION_DEFAULTS)
        # The applications' Python worker daemon (nbknn.common.session.build_session).
        .config(DAEMON_MODULE_KEY, WORKER_DAEMON_MODULE)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", SHUFFLE_PARTITIONS)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", DRIVER_MEMORY)
        .config("spark.pyspark.python", sys.executable)
        .config("spark.executorEnv.PYTHONPATH", str(REPO_ROOT / "spark_apps"))
    )
    jar = token_scanner_jar(REPO_ROOT / "build")  # what spark-submit ships the applications
    if jar is not None:
        builder = builder.config("spark.jars", str(jar))
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    spark.range(1).count()
    spark.sparkContext.parallelize([1], 1).map(lambda x: x).count()  # starts a Python worker
    return spark, time.perf_counter() - started


class Timer:
    """Named wall-clock timings, several repetitions each."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    @contextmanager
    def time(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.samples.setdefault(name, []).append(time.perf_counter() - started)

    def add(self, name: str, seconds: float) -> None:
        self.samples.setdefault(name, []).append(seconds)

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def summary(self) -> dict:
        return {
            name: {"median_s": round(statistics.median(v), 4), "samples_s": [round(x, 4) for x in v]}
            for name, v in self.samples.items()
        }


def spread(values: list[float]) -> dict:
    """Median, min and max of repeated measurements (seconds or per-repetition ratios)."""
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def ratio(numerator: float, denominator: float) -> float | None:
    return None if not denominator else round(numerator / denominator, 4)


def machine() -> dict:
    """Where and when the numbers were taken (results are only comparable on one machine)."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions = {}
    for module in ("pyspark", "sklearn", "numpy", "scipy", "pyarrow"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "memory_gb": memory_gb,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "spark_master": MASTER,
        "spark_driver_memory": DRIVER_MEMORY,
        "versions": versions,
    }


def write_results(name: str, results: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    print(f"wrote {path}", flush=True)
    return path


def extract_revision(revision: str, path: str, folder: Path) -> Path:
    """``path`` of this repository at git ``revision``, extracted under ``folder``: returns
    ``folder / path`` (the code a benchmark compares the working tree with)."""
    import io
    import subprocess
    import tarfile

    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", revision, path],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / path


def log(message: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)
