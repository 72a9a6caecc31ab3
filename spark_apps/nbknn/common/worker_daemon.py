"""The Python worker daemon of the project's Spark applications: PySpark's own daemon, started
after importing what the tasks use, so every worker it forks begins with it loaded.

A Python worker that starts on its own imports numpy, pyarrow and the project, and loads the
exact kNN kernel's compiled loops: about 2 s on the test machine, paid again by every fresh
worker, mid-job, while the other task slots wait. Applications select it with
``spark.python.daemon.module`` (:func:`nbknn.common.session.build_session`).
"""

from __future__ import annotations

import importlib
import sys

#: What the workers of every application import (the kNN kernel is warmed as well).
PRELOADED = ("numpy", "pyarrow", "nbknn.contract", "nbknn.knn.partials", "nbknn.knn.row_groups")


def preload() -> None:
    """Import :data:`PRELOADED` and load the kernel's compiled code; a failure here only costs the
    workers their head start, so it is reported and the daemon starts anyway."""
    try:
        for name in PRELOADED:
            importlib.import_module(name)
        from nbknn.knn.gemm import warm_up

        warm_up()
    except Exception as error:  # noqa: BLE001 - the daemon must start regardless
        print(f"nbknn worker daemon: preload failed ({type(error).__name__}: {error})", file=sys.stderr)


if __name__ == "__main__":
    preload()
    from pyspark import daemon

    daemon.manager()
