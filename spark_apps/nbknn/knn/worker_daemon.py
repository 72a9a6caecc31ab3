"""The Python worker daemon of the kNN application: the project's (:mod:`nbknn.common.worker_daemon`)
with the exact kernel's modules imported and its compiled loops loaded (numba's cache) before it
forks, about 1 s of CPU that the other applications, which never run the kernel, do not pay."""

from __future__ import annotations

from nbknn.common.worker_daemon import PRELOADED, preload, serve

#: The kNN tasks' imports, beyond every application's.
KNN_PRELOADED = (*PRELOADED, "nbknn.knn.partials", "nbknn.knn.row_groups")


def warm_up_kernel() -> None:
    from nbknn.knn.gemm import warm_up

    warm_up()


if __name__ == "__main__":
    preload(KNN_PRELOADED, warm_up_kernel)
    serve()
