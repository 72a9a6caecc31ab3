"""What the Spark kNN modes (broadcast, blocked, annoy) share: the result they return and the
thread cap their Python tasks set before running a kernel."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

from pyspark import Accumulator, TaskContext
from pyspark.sql import DataFrame

from nbknn.knn.kernels import limit_threads


@dataclass
class KnnResult:
    """A mode's lazy output frame, what it did, and how to free what it cached once written.

    ``rows_computed`` counts the output rows the mode's last Python step produced, in every task
    attempt: once the frame is written it equals the number of queries unless tasks ran again
    (a retry, a lost executor, or a plan that evaluates the frame twice).
    """

    frame: DataFrame
    details: dict
    rows_computed: Accumulator
    release: Callable[[], None] = field(default=lambda: None)
    #: Rows the exact kernel recomputed by brute force (its float32 bound was too wide for them).
    fallback_rows: Accumulator | None = None
    #: Seconds the exact kernel ran inside the tasks (preparation, products, filter, re-rank),
    #: summed over the tasks: beside the job's time, what Spark itself costs.
    kernel_seconds: Accumulator | None = None
    #: The frame's partitions come in id order, each sorted by id: written as it is, it is sorted.
    sorted_by_id: bool = False

    def counters(self) -> dict:
        """What the tasks counted, once the frame is written."""
        counters = {}
        if self.fallback_rows is not None:
            counters["exact_fallback_rows"] = self.fallback_rows.value
        if self.kernel_seconds is not None:
            counters["kernel_task_seconds"] = round(self.kernel_seconds.value, 3)
        return counters


def limit_task_threads() -> None:
    """Inside a task: BLAS / OpenMP threads = the task's cores (spark.task.cpus, default 1)."""
    limit_threads(task_threads())


def task_threads() -> int:
    """The cores of the running task (spark.task.cpus), 1 outside a task."""
    context = TaskContext.get()
    return context.cpus() if context is not None else 1


def task_slots(sc) -> int:
    """Tasks that run at once: the cores (``defaultParallelism``) over ``spark.task.cpus``."""
    return max(1, sc.defaultParallelism // int(sc.getConf().get("spark.task.cpus", "1")))


def task_function(function: Callable, /, **arguments) -> Callable:
    """``function`` with ``arguments`` bound, to hand to a Spark operation: a picklable partial
    that keeps the function's name (Spark names a Python UDF after its function in plans)."""
    return functools.update_wrapper(functools.partial(function, **arguments), function)
