"""Deployment settings, read from the environment when a task runs (never at DAG parse time).

NBKNN_DATA_ROOT       URI under which every output is written (default: file://<repo>/data).
NBKNN_INPUT_ROOTS     comma-separated extra URIs that inputs may come from (default: none).
NBKNN_SPARK_CONN_ID   Airflow connection of the Spark master (default: spark_default).
NBKNN_PYSPARK_PYTHON  Python that runs the Spark driver and executors (default: this interpreter).
NBKNN_SPARK_CONF      JSON object of extra Spark properties for every application.
NBKNN_BUILD_DIR       where the zip shipped to executors is built (default: <repo>/build).
NBKNN_WEBHDFS_PORT    HTTP port of the namenode, for Airflow-side reads of hdfs:// (default: 9870).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SPARK_APPS_DIR = REPO_ROOT / "spark_apps"
LIBRARY_PACKAGE = "nbknn"


def data_root() -> str:
    return os.environ.get("NBKNN_DATA_ROOT", (REPO_ROOT / "data").as_uri()).rstrip("/")


def input_roots() -> list[str]:
    """Roots that inputs may be read from: the data root and any configured extra roots."""
    extra = [root.strip().rstrip("/") for root in os.environ.get("NBKNN_INPUT_ROOTS", "").split(",")]
    return [data_root(), *[root for root in extra if root]]


def spark_conn_id() -> str:
    return os.environ.get("NBKNN_SPARK_CONN_ID", "spark_default")


def pyspark_python() -> str:
    return os.environ.get("NBKNN_PYSPARK_PYTHON", sys.executable)


def extra_spark_conf() -> dict[str, str]:
    raw = os.environ.get("NBKNN_SPARK_CONF", "")
    if not raw:
        return {}
    conf = json.loads(raw)
    if not isinstance(conf, dict):
        raise ValueError(f"NBKNN_SPARK_CONF must be a JSON object (got {raw!r})")
    return {str(key): str(value) for key, value in conf.items()}


def build_dir() -> Path:
    return Path(os.environ.get("NBKNN_BUILD_DIR", REPO_ROOT / "build"))


def webhdfs_port() -> int:
    return int(os.environ.get("NBKNN_WEBHDFS_PORT", "9870"))
