"""The one place where the project's Spark applications build their SparkSession."""

from __future__ import annotations

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

#: The Python worker daemon: PySpark's, with the tasks' imports done once before it forks workers.
#: The executors' Python must have the project installed (the image does); a cluster that ships
#: it only with --py-files sets ``spark.python.daemon.module=pyspark.daemon``, which is kept.
WORKER_DAEMON_MODULE = "nbknn.common.worker_daemon"
DAEMON_MODULE_KEY = "spark.python.daemon.module"


def build_session(app_name: str) -> SparkSession:
    """Session for an entry script; master and resources come from spark-submit, not from code."""
    builder = SparkSession.builder.appName(app_name)
    SparkContext._ensure_initialized()  # the JVM, so that SparkConf() reads spark-submit's settings
    if not SparkConf().contains(DAEMON_MODULE_KEY):
        builder = builder.config(DAEMON_MODULE_KEY, WORKER_DAEMON_MODULE)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
