"""The applications' Python worker daemons, task cores and session defaults, through a real
spark-submit: the workers forked by the kNN application's daemon start with the kNN kernel's
compiled loops already loaded, those of the other applications with numpy, pyarrow and the Naive
Bayes scorers but without the kernel; an application that asks for whole-executor tasks (kNN) gets
tasks with all of local[2]'s cores; the session defaults (``nbknn.common.session.SESSION_DEFAULTS``)
are in force; a daemon, ``spark.task.cpus`` or a session default chosen on the command line wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.spark

# A task reports, before touching anything itself, whether its worker process already holds numpy
# and pyarrow and the kernel's loaded loops, which daemon module started its parent, and its cores.
APP = """
import json, sys
from pyspark import TaskContext
from nbknn.common.session import build_session

def probe(_):
    preloaded = "pyarrow" in sys.modules and "numpy" in sys.modules
    scorers = "nbknn.naive_bayes.scoring" in sys.modules
    from nbknn.knn import gemm_compiled
    with open("/proc/%d/cmdline" % __import__("os").getppid(), "rb") as f:
        parent = f.read().split(b"\\0")
    return [json.dumps({"kernel_loaded": bool(gemm_compiled._loaded), "preloaded": preloaded, "scorers": scorers,
                        "daemon": parent[parent.index(b"-m") + 1].decode(),
                        "cpus": TaskContext.get().cpus()})]

options = sys.argv[2].split(",")
spark = build_session("worker-daemon-probe", whole_executor_tasks="whole" in options, knn_kernel="knn" in options)
rows = spark.sparkContext.parallelize(range(2), 2).flatMap(probe).collect()
debugging = spark.conf.get("spark.python.sql.dataFrameDebugging.enabled")
with open(sys.argv[1], "w") as out:
    out.write(json.dumps([dict(json.loads(row), debugging=debugging) for row in rows]))
spark.stop()
"""


def submit_probe(tmp_path: Path, *conf: str, options: str = "default") -> list[dict]:
    """The probe's report from each of two tasks, with the driver's DataFrame debugging setting;
    ``options``: comma-separated build_session flags, ``whole`` (whole-executor tasks) and ``knn``
    (the kNN kernel's daemon)."""
    app = tmp_path / "probe.py"
    app.write_text(APP)
    out = tmp_path / "probe.json"
    venv_bin = Path(sys.executable).parent
    command = [str(venv_bin / "spark-submit"), "--master", "local[2]", *conf, str(app), str(out), options]
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", "PYSPARK_PYTHON": sys.executable}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(out.read_text())


def test_the_knn_workers_start_with_the_kernel_loaded_and_every_core(tmp_path):
    probes = submit_probe(tmp_path, options="whole,knn")
    assert probes == [{"kernel_loaded": True, "preloaded": True, "scorers": False, "daemon": "nbknn.knn.worker_daemon",
                       "cpus": 2,
                       "debugging": "false"}] * 2


def test_the_other_applications_workers_start_with_the_scorers_but_not_the_kernel(tmp_path):
    probes = submit_probe(tmp_path)
    assert probes == [{"kernel_loaded": False, "preloaded": True, "scorers": True, "daemon": "nbknn.common.worker_daemon",
                       "cpus": 1, "debugging": "false"}] * 2


def test_a_daemon_task_cores_and_debugging_set_on_the_command_line_are_kept(tmp_path):
    probes = submit_probe(tmp_path, "--conf", "spark.python.daemon.module=pyspark.daemon",
                          "--conf", "spark.task.cpus=1", "--conf", "spark.python.sql.dataFrameDebugging.enabled=true",
                          options="whole,knn")
    assert probes == [{"kernel_loaded": False, "preloaded": False, "scorers": False, "daemon": "pyspark.daemon", "cpus": 1,
                       "debugging": "true"}] * 2
