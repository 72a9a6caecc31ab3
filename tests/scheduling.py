"""How `make test` shares the suite between its pytest-xdist workers (``--dist loadfile``).

A work unit is a test module, so that module-scoped fixtures (a standalone cluster, Airflow
services, the fault-injection reference runs) start once. Units are handed out longest first
(``order_longest_first``, from MODULE_SECONDS), and a worker is given its next unit only when the
last test of its current one starts (``LongestFirstFileScheduling``): xdist's own rule gives it
when two tests are left, which committed a worker to the next long module minutes before it was
free while the other worker ran out of work.

A worker cannot start the last test it holds before it knows the next one (pytest tears
module-scoped fixtures down by looking at the next item), so a module whose only test is long
would take its successor with it at once: such modules end with a short test of their own.
"""

from __future__ import annotations

import json
from pathlib import Path

from xdist.scheduler import LoadFileScheduling

# Seconds of one worker per module on a 2-core machine (two workers), from a full run: the "module
# seconds" section at the end of the pytest output (also in build/test-module-seconds.json).
# Only the order matters; a module missing here is estimated from its engine markers.
MODULE_SECONDS = {
    "tests/reliability/test_fault_injection.py": 370,
    "tests/deploy/test_compose_stack.py": 300,
    "tests/e2e/test_demo.py": 250,
    "tests/spark/test_nb_predict.py": 230,
    "tests/deploy/test_spark_standalone_cluster.py": 210,
    "tests/spark/test_knn_spark.py": 200,
    "tests/deploy/test_make_airflow.py": 170,
    "tests/e2e/test_nb_train_incremental_e2e.py": 120,
    "tests/spark/test_nb_incremental.py": 90,
    "tests/spark/test_nb_incremental_selection.py": 60,
    "tests/reliability/test_bad_input_matrix.py": 60,
    "tests/spark/test_nb_top_terms.py": 40,
    "tests/spark/test_nb_selection_spark.py": 40,
    "tests/spark/test_tokenizer_spark.py": 30,
}
MARKER_SECONDS = {"services": 300, "cluster": 200, "reliability": 100, "e2e": 60, "spark": 30}


def module_of(nodeid: str) -> str:
    return nodeid.split("::")[0]


def estimated_seconds(module: str, items) -> float:
    if module in MODULE_SECONDS:
        return MODULE_SECONDS[module]
    markers = {marker for item in items for marker in MARKER_SECONDS if item.get_closest_marker(marker)}
    return max((MARKER_SECONDS[m] for m in markers), default=1.0)


def order_longest_first(items: list) -> None:
    """Sort the collected items in place: modules by estimated seconds, longest first; a module's
    tests stay together and in their order (``--no-loadscope-reorder`` keeps this order)."""
    by_module: dict[str, list] = {}
    for item in items:
        by_module.setdefault(module_of(item.nodeid), []).append(item)
    cost = {module: estimated_seconds(module, its) for module, its in by_module.items()}
    items.sort(key=lambda item: -cost[module_of(item.nodeid)])


class LongestFirstFileScheduling(LoadFileScheduling):
    """``loadfile`` that gives a worker its next module only when its last pending test starts."""

    def _reschedule(self, node) -> None:
        if node.shutting_down:
            return
        if not self.workqueue:
            node.shutdown()
            return
        if self._pending_of(self.assigned_work[node]) > 1:
            return
        self._assign_work_unit(node)


class ModuleSeconds:
    """Seconds spent per test module (setup, call and teardown of its tests), longest first."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, report) -> None:
        module = module_of(report.nodeid)
        self.seconds[module] = self.seconds.get(module, 0.0) + report.duration

    def longest(self, count: int) -> list[tuple[str, float]]:
        return sorted(self.seconds.items(), key=lambda kv: -kv[1])[:count]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({m: round(s, 1) for m, s in self.longest(len(self.seconds))}, indent=1) + "\n")
