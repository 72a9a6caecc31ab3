"""The one place where the project's Spark applications build their SparkSession."""

from __future__ import annotations

import os
import re

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

#: The Python worker daemons: PySpark's, with the tasks' imports done once before it forks workers
#: (the kNN application's also loads the exact kernel's compiled loops). The executors' Python must
#: have the project installed (the image does); a cluster that ships it only with --py-files sets
#: ``spark.python.daemon.module=pyspark.daemon``, which is kept.
WORKER_DAEMON_MODULE = "nbknn.common.worker_daemon"
KNN_WORKER_DAEMON_MODULE = "nbknn.knn.worker_daemon"
DAEMON_MODULE_KEY = "spark.python.daemon.module"
TASK_CPUS_KEY = "spark.task.cpus"
#: Settings every session of the project takes unless spark-submit sets them. PySpark's DataFrame
#: debugging records the Python call site of every Column function through four Py4J round trips
#: (about 500 of an x1 prediction's 1 300, 0.1 s of its 1.6 s); the call site only adds the
#: Python line to a Spark analysis error, whose Python traceback names it anyway.
SESSION_DEFAULTS = {"spark.python.sql.dataFrameDebugging.enabled": "false"}


def build_session(app_name: str, whole_executor_tasks: bool = False, knn_kernel: bool = False) -> SparkSession:
    """Session for an entry script; master and resources come from spark-submit, not from code.

    ``whole_executor_tasks``: every task gets all the cores of its executor (``spark.task.cpus``,
    unless spark-submit sets it): for applications whose tasks run a multi-threaded kernel (kNN),
    one task per executor at a time, its BLAS threads on every core. ``knn_kernel``: the tasks run
    the exact kNN kernel, whose compiled loops the worker daemon loads before forking."""
    builder = SparkSession.builder.appName(app_name)
    SparkContext._ensure_initialized()  # the JVM, so that SparkConf() reads spark-submit's settings
    conf = SparkConf()
    for key, value in SESSION_DEFAULTS.items():
        if not conf.contains(key):
            builder = builder.config(key, value)
    if not conf.contains(DAEMON_MODULE_KEY):
        builder = builder.config(DAEMON_MODULE_KEY, KNN_WORKER_DAEMON_MODULE if knn_kernel else WORKER_DAEMON_MODULE)
    if whole_executor_tasks and not conf.contains(TASK_CPUS_KEY):
        cores = executor_cores(conf.get("spark.master", ""), conf.get("spark.executor.cores", None))
        if cores is not None and cores > 1:
            builder = builder.config(TASK_CPUS_KEY, str(cores))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def executor_cores(master: str, configured: str | None) -> int | None:
    """Cores of one executor: local[N] -> N, local[*] -> this machine's, local -> 1; on a cluster
    ``spark.executor.cores`` when set, else unknown (None: the cluster manager decides)."""
    local = re.fullmatch(r"local(?:\[(\d+|\*)(?:,\d+)?\])?", master.strip())
    if local:
        count = local.group(1)
        return 1 if count is None else (os.cpu_count() or 1) if count == "*" else int(count)
    return int(configured) if configured else None
