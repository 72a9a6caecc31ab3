"""The embedded local environment shared by ``make demo`` and ``make airflow``: an Airflow home
with a SQLite DB, local Spark, a file:// data root, and the demo corpus laid out where the DAGs'
Param defaults look (so a trigger from the UI form needs no typing)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from nbknn_airflow.settings import build_dir, extra_spark_conf
from nbknn_local import corpora
from nbknn_local.jvm import short_job_options, spark_class_archive

REPO_ROOT = Path(__file__).resolve().parents[2]

CORPUS = "reuters-r52"
TRAIN_PARTITIONS = ("date=2026-11-19", "date=2026-11-20", "date=2026-11-21")
# Where the DAGs' Param defaults look, so that a UI trigger on the demo data needs no typing.
TRAIN_INPUT = "input/nb_train/labelled"
SCORING_INPUT = "input/nb_predict/documents"
VECTORS = "input/knn_neighbors/vectors"


def environment(data_root: Path, airflow_home: Path, port: int | None = None, host: str = "127.0.0.1") -> dict[str, str]:
    venv_bin = Path(sys.executable).parent
    env = dict(os.environ)
    # Spark properties of the caller's NBKNN_SPARK_CONF (e.g. an event log) go on top of these.
    spark_conf = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "8", **extra_spark_conf()}
    env.update(
        {
            "PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[*]"}),
            "NBKNN_DATA_ROOT": data_root.as_uri(),
            "NBKNN_SPARK_CONF": json.dumps(spark_conf),
            # The caller's JVM options win (the test suite passes its own).
            "SPARK_SUBMIT_OPTS": env.get("SPARK_SUBMIT_OPTS") or short_job_jvm_options(venv_bin),
        }
    )
    if port is not None:
        # `make airflow`. Airflow 3: tasks reach the execution API on the API server's port; a
        # non-default port must be given to both. The UI listens on this machine only unless the
        # caller names another interface (`make airflow HOST=0.0.0.0`).
        env["AIRFLOW__API__PORT"] = str(port)
        env["AIRFLOW__API__HOST"] = host
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{port}/execution/"
        # The DAGs run on their schedules and assets from the start: nb_predict follows nb_train,
        # knn_neighbors follows doc_vectors; a scheduled run whose input is missing skips itself.
        env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
        # airflow standalone starts the scheduler and the API server together and the DAGs are live
        # at once: on a loaded machine the first scheduled tasks start before the API server
        # listens. Their task runners then retry for minutes (random exponential waits up to 90 s)
        # instead of failing after the default 5 attempts.
        env["AIRFLOW__WORKERS__EXECUTION_API_RETRIES"] = "10"
    return env


def short_job_jvm_options(venv_bin: Path) -> str:
    """The quick JIT and Spark's class archive for the embedded environment's applications, which
    are short: the nb_predict task on the demo corpus took 22 s with the JVM's defaults, 17 s with
    the archive and 14 s with both (a fresh spark-submit each, medians of 3). The archive is built
    on first use, once per machine."""
    archive_dir = build_dir() / "jvm"
    if not any(archive_dir.glob("*.jsa")):
        print(f"building a class archive of Spark's classes under {archive_dir} (once per machine, "
              "about a minute): every Spark task then starts faster", flush=True)
    return short_job_options(spark_class_archive(archive_dir, venv_bin))


def lay_out_corpus(data_root: Path, limit_train: int | None, limit_test: int | None) -> tuple[list, list]:
    """Training split in dated partitions, test split as scoring input; returns both."""
    train = corpora.documents(CORPUS, "train", limit_train)
    test = corpora.documents(CORPUS, "test", limit_test)
    for i, partition in enumerate(TRAIN_PARTITIONS):
        corpora.write_jsonl(train[i :: len(TRAIN_PARTITIONS)], data_root / TRAIN_INPUT / partition / "part-00000.jsonl")
    corpora.write_jsonl(test, data_root / SCORING_INPUT / "part-00000.jsonl")
    return train, test


