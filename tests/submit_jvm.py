"""JVM options for the spark-submits the tests start: the suite launches about seventy short
Spark applications, and most of each one's CPU is its JVM's start-up.
They get the options of the embedded local environment (:mod:`nbknn_local.jvm`: the quick JIT
and the class archive of Spark's classes).
"""

from __future__ import annotations

import os
from pathlib import Path

from nbknn_local.jvm import QUICK_JIT, short_job_options, spark_class_archive

__all__ = ["QUICK_JIT", "executor_options", "spark_class_archive", "submit_options"]


def submit_options(archive: Path | None) -> str:
    return short_job_options(archive)


def executor_options() -> str:
    """JVM options for the executors of the standalone clusters the tests start: the spark-submits'
    own (the quick JIT, and the class archive when there is one). A standalone worker starts an
    executor with the class path Spark's launcher gives spark-submit (conf, slf4j-api, jars/*), so
    the archive serves it too."""
    submit = os.environ.get("SPARK_SUBMIT_OPTS", "")
    return submit if submit.startswith(QUICK_JIT) else QUICK_JIT
