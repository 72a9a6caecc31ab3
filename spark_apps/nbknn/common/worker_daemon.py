"""The Python worker daemon of the project's Spark applications: PySpark's own daemon, started
after importing what the tasks use, so every worker it forks begins with it loaded.

A Python worker that starts on its own imports numpy, pyarrow and the project: time paid again by
every fresh worker, mid-job, while the other task slots wait. Applications select this daemon (or
the kNN application's, :mod:`nbknn.knn.worker_daemon`, which also loads the exact kernel's
compiled loops) with ``spark.python.daemon.module`` (:func:`nbknn.common.session.build_session`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable

#: What the workers of every application import (each fork imports PySpark's worker module).
PRELOADED = ("numpy", "pyarrow", "pyspark.worker", "nbknn.contract")
#: This daemon's workers also score Naive Bayes batches: scipy and the scoring modules. Without
#: them a cold prediction pass at x20 took 1.0-1.6 s longer than a warm one, with them 0.5-0.7 s.
SCORING_PRELOADED = (*PRELOADED, "nbknn.naive_bayes.single_pass")


def preload(modules: Iterable[str] = PRELOADED, warm_up: Callable[[], None] | None = None) -> None:
    """Import ``modules``, then call ``warm_up``; a failure here only costs the workers their head
    start, so it is reported and the daemon starts anyway."""
    try:
        for name in modules:
            importlib.import_module(name)
        if warm_up is not None:
            warm_up()
    except Exception as error:  # noqa: BLE001 - the daemon must start regardless
        print(f"nbknn worker daemon: preload failed ({type(error).__name__}: {error})", file=sys.stderr)


def serve() -> None:
    """PySpark's daemon, in this process: the workers it forks inherit what was preloaded."""
    from pyspark import daemon

    daemon.manager()


if __name__ == "__main__":
    preload(SCORING_PRELOADED)
    serve()
