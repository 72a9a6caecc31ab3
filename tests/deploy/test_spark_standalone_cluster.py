"""The DAGs on a REAL Spark standalone cluster: a master and a worker, separate JVMs started from the
installed pyspark on 127.0.0.1, with the spark_default connection pointing at the master.

The same DAG runs go through local mode (local[2]) and through the cluster; their outputs must be
equal. On the cluster, executors are other JVMs started by the worker, with Python workers that can
import the library only from the zip spark_submit.py ships (``--py-files``): this is what proves the
code shipping works, which local mode cannot (there the driver's own interpreter runs everything).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyspark
import pytest
from sklearn.datasets import load_digits

from helpers import run_dag_test, write_jsonl
from processes import free_port, get_json, start, stop, stop_on_sigterm, wait_until

pytestmark = pytest.mark.cluster

SPARK_CLASS = str(Path(sys.executable).parent / "spark-class")
TRAIN_DOCS, TEST_DOCS, NUM_SHARDS = 300, 100, 2


@pytest.fixture(scope="module")
def standalone_cluster(tmp_path_factory):
    """A Spark standalone master and one worker (2 cores, 2 GB) on 127.0.0.1; stopped at the end."""
    base = tmp_path_factory.mktemp("spark-standalone")
    ports = {name: free_port() for name in ("master", "master_ui", "worker", "worker_ui")}
    env = {
        **os.environ,
        # spark-class finds SPARK_HOME with whatever `python3` is on PATH: point it at this pyspark.
        "SPARK_HOME": str(Path(pyspark.__file__).parent),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOCAL_DIRS": str(base / "local"),
        "SPARK_WORKER_DIR": str(base / "work"),
        "SPARK_LOG_DIR": str(base / "logs"),
        "SPARK_NO_DAEMONIZE": "1",
        # Keep the daemons small: they share the machine with the driver and executors.
        "SPARK_DAEMON_MEMORY": "512m",
    }
    master_url = f"spark://127.0.0.1:{ports['master']}"
    master_json = f"http://127.0.0.1:{ports['master_ui']}/json/"
    master = worker = None
    with stop_on_sigterm():
        try:
            master = start(
                [SPARK_CLASS, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                 "--port", str(ports["master"]), "--webui-port", str(ports["master_ui"])],
                env, base / "master.log",
            )
            wait_until(lambda: get_json(master_json), 90, "Spark master UI", processes=(master,))
            worker = start(
                [SPARK_CLASS, "org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1",
                 "--port", str(ports["worker"]), "--webui-port", str(ports["worker_ui"]),
                 "--cores", "2", "--memory", "2g", "--work-dir", str(base / "work")],
                env, base / "worker.log",
            )

            def alive_worker():
                state = get_json(master_json) or {}
                return [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]

            (registered,) = wait_until(alive_worker, 90, "worker registration", processes=(master, worker))
            assert registered["cores"] == 2
            yield {"master_url": master_url, "master_json": master_json, "work_dir": base / "work"}
        finally:
            stop(worker)
            stop(master)


def _run(dag_id: str, conf: dict, root: Path, spark_master: str) -> None:
    result = run_dag_test(dag_id, conf, root.as_uri(), timeout=600, spark_master=spark_master)
    assert result.returncode == 0, f"{dag_id} on {spark_master}:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"


def _rows(directory: Path, sort_by: list[str], drop: tuple[str, ...] = ()) -> list[dict]:
    table = pq.read_table(directory)
    table = table.drop_columns([c for c in drop if c in table.column_names])
    return sorted(table.to_pylist(), key=lambda row: [row[key] for key in sort_by])


def _model_dir(root: Path) -> Path:
    models = root / "models" / "naive_bayes"
    return models / (models / "LATEST").read_text().strip()


def _lay_out_inputs(root: Path, corpus) -> None:
    write_jsonl(root / "input" / "nb_train" / "labelled" / "docs.jsonl", corpus("reuters-r8", "train", TRAIN_DOCS))
    write_jsonl(root / "input" / "nb_predict" / "documents" / "docs.jsonl", corpus("reuters-r8", "test", TEST_DOCS))
    X = load_digits().data[:400].astype(np.float64)
    ids = np.arange(400, dtype=np.int64) * 3 + 1
    (root / "input" / "digits").mkdir(parents=True)
    table = pa.table({"id": pa.array(ids), "vector": pa.array([x.tolist() for x in X], type=pa.list_(pa.float64()))})
    pq.write_table(table, root / "input" / "digits" / "part-0.parquet")


KNN_CONF = {"input_uri": "input/digits", "k": 5, "mode": "blocked", "block_bytes_budget": 1_048_576}


def test_dags_on_a_standalone_cluster_equal_local_mode(airflow_db, corpus, tmp_path, monkeypatch, standalone_cluster):
    # The driver (spark-submit under `airflow dags test`) binds and advertises 127.0.0.1 too.
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    roots = {"local": tmp_path / "local", "cluster": tmp_path / "cluster"}
    masters = {"local": "local[2]", "cluster": standalone_cluster["master_url"]}
    for mode, root in roots.items():
        _lay_out_inputs(root, corpus)
        _run("nb_train", {"num_shards": NUM_SHARDS}, root, masters[mode])
        _run("nb_predict", {"top_n": 2}, root, masters[mode])
        _run("knn_neighbors", KNN_CONF, root, masters[mode])

    # Model: the class and term tables are equal (versions and paths differ, the counts may not).
    local_model, cluster_model = _model_dir(roots["local"]), _model_dir(roots["cluster"])
    for table, key in [("classes", ["class_id"]), ("vocabulary", ["term_id"]), ("term_counts", ["class_id", "term_id"])]:
        local_rows = _rows(local_model / table, key)
        assert local_rows, f"empty {table}"
        assert _rows(cluster_model / table, key) == local_rows, table
    local_manifest = json.loads((local_model / "manifest.json").read_text())
    cluster_manifest = json.loads((cluster_model / "manifest.json").read_text())
    for key in ("counts", "records", "num_shards", "shards", "model"):
        assert cluster_manifest[key] == local_manifest[key], key
    assert local_manifest["num_shards"] == NUM_SHARDS

    # Predictions: the same class for every document, the same probabilities.
    (local_run,) = (roots["local"] / "predictions" / "naive_bayes").iterdir()
    (cluster_run,) = (roots["cluster"] / "predictions" / "naive_bayes").iterdir()
    local_predictions = _rows(local_run / "predictions", ["doc_id"])
    cluster_predictions = _rows(cluster_run / "predictions", ["doc_id"])
    assert len(local_predictions) == TEST_DOCS
    assert [(r["doc_id"], r["label"]) for r in cluster_predictions] == [(r["doc_id"], r["label"]) for r in local_predictions]
    np.testing.assert_allclose([r["probability"] for r in cluster_predictions],
                               [r["probability"] for r in local_predictions], rtol=1e-12)

    # Neighbours: the same ids in the same order, the same distances.
    (local_knn,) = (roots["local"] / "neighbors").iterdir()
    (cluster_knn,) = (roots["cluster"] / "neighbors").iterdir()
    local_neighbors = _rows(local_knn / "neighbors", ["id"])
    cluster_neighbors = _rows(cluster_knn / "neighbors", ["id"])
    assert len(local_neighbors) == 400
    assert [r["neighbor_ids"] for r in cluster_neighbors] == [r["neighbor_ids"] for r in local_neighbors]
    np.testing.assert_allclose([r["distances"] for r in cluster_neighbors],
                               [r["distances"] for r in local_neighbors], rtol=1e-12)

    # The cluster really ran them: the master lists the applications as completed, and the worker
    # started executors for them, each of which fetched the library zip shipped with --py-files.
    state = get_json(standalone_cluster["master_json"])
    completed = sorted(app["name"] for app in state["completedapps"])
    expected = sorted(["nb_class_prior", "nb_term_counts", "nb_publish_model", "nb_vectorize", "nb_combine",
                       "knn_neighbors", *(f"nb_predict_shard_{shard}" for shard in range(NUM_SHARDS))])
    assert completed == expected
    app_dirs = sorted(standalone_cluster["work_dir"].glob("app-*"))
    assert len(app_dirs) == len(completed)
    for app_dir in app_dirs:
        executor_dirs = [d for d in app_dir.iterdir() if d.is_dir()]
        assert executor_dirs, f"no executor ran for {app_dir.name}"
        assert any(list(executor.glob("nbknn-*.zip")) for executor in executor_dirs), f"{app_dir.name}: library zip not fetched"
