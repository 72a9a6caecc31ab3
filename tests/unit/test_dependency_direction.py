"""Which way the two sides depend on each other (docs/architecture.md, "Dependency direction")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
# Of the library, the Airflow side imports the contract and the Spark-free modules that draw the
# reports (and what those import).
LIBRARY_ALLOWED = {
    "nbknn", "nbknn.contract", "nbknn.common", "nbknn.common.fs", "nbknn.naive_bayes",
    "nbknn.naive_bayes.quality_history", "nbknn.naive_bayes.report_pictures", "nbknn.knn",
    "nbknn.knn.distance_picture",
}


def test_the_airflow_side_imports_no_pyspark_and_only_the_spark_free_library():
    modules = sorted(
        ".".join(path.relative_to(PLUGINS).with_suffix("").parts).removesuffix(".__init__")
        for path in (PLUGINS / "nbknn_airflow").rglob("*.py")
    )
    code = f"import importlib, json, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert [m for m in loaded if m.split(".")[0] == "pyspark"] == []
    assert {m for m in loaded if m.split(".")[0] == "nbknn"} <= LIBRARY_ALLOWED
