"""The exact modes with tasks of every core, as the kNN application runs them on local[2]: one
task slot, so an all-points run within the budget is joined by one task on both cores
(:mod:`nbknn.knn.one_task`) and written in id order as it comes out.

Launching spark-submit is the point: ``spark.task.cpus`` is set by the session the entry script
builds (``build_session(whole_executor_tasks=True)``), before the SparkContext starts. One
application runs both modes and both GEMM metrics on cases that break a careless kernel; the
test compares each output with a direct float64 brute force (ties by id).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from knn_oracles import direct_topk

pytestmark = pytest.mark.spark

APP = """
import json, sys
from nbknn.common.session import build_session
from nbknn.knn.job import KnnOptions, compute_neighbors, write_neighbors

spark = build_session("knn-whole-executor", whole_executor_tasks=True)
out, k = sys.argv[1], int(sys.argv[2])
details = {}
for metric in ("euclidean", "cosine"):
    frame = spark.read.parquet(f"{out}/{metric}-input").persist()
    for mode in ("broadcast", "blocked"):
        result = compute_neighbors(frame, frame, mode, KnnOptions(k=k, metric=metric, mode=mode))
        write_neighbors(result, f"{out}/{mode}-{metric}")
        result.release()
        details[f"{mode}-{metric}"] = {**result.details, "sorted_by_id": result.sorted_by_id}
with open(f"{out}/details.json", "w") as handle:
    json.dump(details, handle)
spark.stop()
"""


def hostile_vectors(metric: str, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """String ids out of numeric order; an integer grid full of exact ties; twins under other ids;
    euclidean: near-duplicate clusters near 1e6 (spread 1e-3, far below what float32 resolves
    there); cosine (whose float64 value itself cannot order such clusters): Gaussian rows and a
    zero vector (at distance 1 from every row)."""
    rng = np.random.default_rng(seed)
    d = 16
    grid = rng.integers(-2, 3, size=(200, d)).astype(np.float64)
    if metric == "euclidean":
        centres = 1e6 + rng.normal(size=(4, d))
        spread = np.repeat(centres, 60, axis=0) + 1e-3 * rng.normal(size=(240, d))
    else:
        spread = np.vstack([rng.normal(size=(239, d)), np.zeros((1, d))])
    X = np.vstack([spread, grid, spread[:30], grid[:10]])
    ids = np.array([f"v{i}" for i in rng.permutation(X.shape[0])])  # "v10" < "v9": not numeric order
    return ids, X


def write_input(path: Path, ids: np.ndarray, X: np.ndarray) -> str:
    path.mkdir(parents=True)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1]).cast(pa.list_(pa.float64()))
    table = pa.table({"id": pa.array(ids.tolist()), "vector": vectors})
    for i, start in enumerate(range(0, len(ids), 200)):  # several files, out of id order
        pq.write_table(table.slice(start, 200), path / f"part-{i}.parquet")
    return path.as_uri()


def test_one_task_on_every_core_equals_the_direct_brute_force(tmp_path):
    k = 12
    cases = {metric: hostile_vectors(metric) for metric in ("euclidean", "cosine")}
    for metric, (ids, X) in cases.items():
        write_input(tmp_path / "out" / f"{metric}-input", ids, X)
    app = tmp_path / "app.py"
    app.write_text(APP)
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", "PYSPARK_PYTHON": sys.executable}
    command = [str(venv_bin / "spark-submit"), "--master", "local[2]", str(app), str(tmp_path / "out"), str(k)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    details = json.loads((tmp_path / "out" / "details.json").read_text())
    for metric, (ids, X) in cases.items():
        order = np.argsort(ids)
        want_ids, want_d = direct_topk(X[order], ids[order], X, ids, k, metric, exclude_self=True)
        for mode in ("broadcast", "blocked"):
            run = details[f"{mode}-{metric}"]
            assert (run["plan"], run["task_slots"], run["sorted_by_id"]) == ("one task", 1, True), run
            table = pq.read_table(tmp_path / "out" / f"{mode}-{metric}")
            # Written as it came out of the one task: in id order without a sort.
            assert table.column("id").to_pylist() == ids[order].tolist()
            assert np.array(table.column("neighbor_ids").to_pylist()).tolist() == want_ids.tolist(), (mode, metric)
            np.testing.assert_allclose(np.array(table.column("distances").to_pylist()), want_d, rtol=1e-9, atol=1e-12)
