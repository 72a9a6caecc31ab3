"""Cluster policy of the compose stack (mounted as /opt/airflow/config, which Airflow puts on
sys.path): every Spark task runs in the pool that airflow-init creates, so that at most its slot
count of Spark drivers run at once in the scheduler container, whatever the DAGs ask for.

The pool's name comes from NBKNN_SPARK_POOL (docker-compose.yml); without it nothing changes.
"""

from __future__ import annotations

import os

SPARK_TASK_TYPES = {"SparkSubmitOperator", "LibrarySparkSubmitOperator"}


def task_policy(task) -> None:
    pool = os.environ.get("NBKNN_SPARK_POOL")
    if pool and getattr(task, "task_type", None) in SPARK_TASK_TYPES:
        task.pool = pool
