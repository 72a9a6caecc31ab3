"""The prediction and kNN DAGs on a REAL Spark standalone cluster: a master and a worker, separate
JVMs started from the installed pyspark on 127.0.0.1, with the spark_default connection pointing at
the master.

The DAG runs go through the cluster. The predictions must equal those of the same job in local mode
(local[2], computed in process by the library functions the application calls) and scikit-learn's;
the neighbours must equal the direct float64 brute force's, ids (ties broken by id) and
distances. These are also the end-to-end tests of two DAG paths that no other test takes through
Airflow: nb_predict's per-shard path (one mapped task instance per shard) and knn_neighbors' blocked
mode chosen by ``auto`` on a Parquet input with its own column names. On the cluster,
executors are other JVMs started by the worker, with Python workers that can import the library
only from the zip spark_submit.py ships (``--py-files``): this is what proves the code shipping
works, which local mode cannot (there the driver's own interpreter runs everything). nb_train's
applications run on a standalone cluster in the compose-stack test, whose model is checked against
scikit-learn's counts; here prediction starts from the local-mode model, published as the latest.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyspark
import pytest
from sklearn.datasets import load_digits

from helpers import (
    latest_run_task_states,
    local_path,
    predict_in_process,
    run_dag_tests,
    sklearn_nb_predictions,
    train_model_in_process,
    write_jsonl,
)
from knn_oracles import assert_all_points_rows_equal_direct
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


def _run(runs: dict[str, dict], root: Path, log_dir: Path, spark_master: str) -> None:
    result = run_dag_tests(runs, root.as_uri(), log_dir, spark_master=spark_master)
    logs = "".join(f"\n--- {path.name}\n{path.read_text(errors='replace')[-6000:]}" for path in log_dir.glob("*.log"))
    assert result.returncode == 0, f"on {spark_master}:\n{result.stdout}{result.stderr[-3000:]}{logs}"


def _rows(directory: Path, sort_by: list[str]) -> list[dict]:
    return sorted(pq.read_table(directory).to_pylist(), key=lambda row: [row[key] for key in sort_by])


def _model_dir(root: Path) -> Path:
    models = root / "models" / "naive_bayes"
    return models / (models / "LATEST").read_text().strip()


def _digits() -> tuple[np.ndarray, np.ndarray]:
    return np.arange(400, dtype=np.int64) * 3 + 1, load_digits().data[:400].astype(np.float64)


def _lay_out_inputs(root: Path, test: list[dict]) -> None:
    write_jsonl(root / "input" / "nb_predict" / "documents" / "docs.jsonl", test)
    ids, X = _digits()
    (root / "input" / "digits").mkdir(parents=True)
    table = pa.table({"item_id": pa.array(ids),
                      "embedding": pa.array([x.tolist() for x in X], type=pa.list_(pa.float64()))})
    pq.write_table(table, root / "input" / "digits" / "part-0.parquet")


# auto picks blocked: 400 x 64 x 8 = 204800 bytes > broadcast_max_bytes.
KNN_CONF = {"input_uri": "input/digits", "input_format": "parquet", "id_column": "item_id", "vector_column": "embedding",
            "k": 5, "mode": "auto", "broadcast_max_bytes": 100_000, "block_bytes_budget": 1_048_576}


def _local_mode_references(spark, train: list[dict], test: list[dict], workdir: Path) -> dict:
    """The model and the predictions in local mode, with the library functions the applications
    call, on the shared local[2] SparkSession (no spark-submit: local mode's DAG runs are the e2e
    tests' subject)."""
    model_dir = train_model_in_process(spark, train, workdir / "train", num_shards=NUM_SHARDS)
    predictions, _, _ = predict_in_process(spark, model_dir, test, workdir / "predict", top_n=2)
    return {"model": local_path(model_dir), "predictions": predictions}


def _publish_as_latest(model: Path, root: Path) -> None:
    """The published model directory ``model`` as the data root's latest Naive Bayes model."""
    from nbknn import contract

    models = root / "models" / "naive_bayes"
    shutil.copytree(model, models / model.name)
    (models / contract.LATEST_NAME).write_text(model.name + "\n")


@dataclass
class ClusterRuns:
    """The two DAGs run on the cluster and the same jobs in local mode, made once for the module."""

    root: Path
    train: list
    test: list
    local: dict
    predict_states: dict


@pytest.fixture(scope="module")
def cluster_runs(airflow_db, spark, corpus, tmp_path_factory, standalone_cluster) -> ClusterRuns:
    base = tmp_path_factory.mktemp("cluster-runs")
    train, test = corpus("reuters-r8", "train", TRAIN_DOCS), corpus("reuters-r8", "test", TEST_DOCS)
    root = base / "cluster"
    _lay_out_inputs(root, test)
    local = _local_mode_references(spark, train, test, base / "local")

    # nb_train's applications on a standalone cluster are the compose stack's subject
    # (tests/deploy/test_compose_stack.py); here prediction starts from the local-mode model.
    _publish_as_latest(local["model"], root)

    # The driver (spark-submit under `airflow dags test`) binds and advertises 127.0.0.1 too.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        master = standalone_cluster["master_url"]
        # One mapped pass per shard: the path of models too large for one broadcast, on real executors.
        _run({"nb_predict": {"top_n": 2, "prediction_path": "per_shard"}, "knn_neighbors": KNN_CONF}, root,
             base / "dag-logs", master)
        predict_states = latest_run_task_states("nb_predict")
    return ClusterRuns(root, train, test, local, predict_states)


def test_per_shard_predictions_on_the_cluster_equal_local_mode_and_sklearn(cluster_runs):
    root, local = cluster_runs.root, cluster_runs.local
    # The same class for every document, the same probabilities, as local mode and as scikit-learn
    # on the same documents; one mapped predict_shard task instance per shard.
    (cluster_run,) = [d for d in (root / "predictions" / "naive_bayes").iterdir() if not d.name.startswith("_")]
    cluster_predictions = _rows(cluster_run / "predictions", ["doc_id"])
    local_predictions = [local["predictions"][doc_id] for doc_id in sorted(local["predictions"])]
    assert len(local_predictions) == TEST_DOCS
    assert [(r["doc_id"], r["label"]) for r in cluster_predictions] == [(r["doc_id"], r["label"]) for r in local_predictions]
    np.testing.assert_allclose([r["probability"] for r in cluster_predictions],
                               [r["probability"] for r in local_predictions], rtol=1e-12)
    alpha = json.loads((_model_dir(root) / "manifest.json").read_text())["model"]["alpha"]
    expected = sklearn_nb_predictions(cluster_runs.train, cluster_runs.test, alpha)
    assert [(r["doc_id"], r["label"]) for r in cluster_predictions] == [(r["doc_id"], expected[r["doc_id"]][0])
                                                                        for r in cluster_predictions]
    np.testing.assert_allclose([r["probability"] for r in cluster_predictions],
                               [expected[r["doc_id"]][1] for r in cluster_predictions], rtol=0, atol=1e-9)
    summary = json.loads((cluster_run / "report" / "summary.json").read_text())
    assert summary["path"] == "per_shard" and summary["counts"]["reconciled"], summary
    assert summary["counts"]["predicted"] == TEST_DOCS
    states = cluster_runs.predict_states
    assert {key: state for key, state in states.items() if key[0] == "predict_shard"} == {
        ("predict_shard", shard): "success" for shard in range(NUM_SHARDS)}, states
    assert {task for (task, _), state in states.items() if state == "success"} == {
        "plan", "choose_path", "vectorize", "shard_passes", "predict_shard", "combine", "report"}, states
    assert set(states.values()) <= {"success", "skipped"}, states


def test_blocked_neighbours_on_the_cluster_equal_the_direct_brute_force(cluster_runs):
    root = cluster_runs.root
    # The digits' integer pixels tie often: the ids must be the brute force's in (distance, id)
    # order, the distances its own.
    (cluster_knn,) = (root / "neighbors").iterdir()
    assert ":" not in cluster_knn.name  # the run id's colons do not reach a path
    ids, X = _digits()
    assert_all_points_rows_equal_direct(pq.read_table(cluster_knn / "neighbors").to_pylist(), ids, X,
                                        KNN_CONF["k"], "euclidean")
    summary = json.loads((cluster_knn / "report" / "summary.json").read_text())
    assert summary["mode"] == "blocked"
    assert summary["mode_reason"] == "reference matrix 204800 bytes > broadcast_max_bytes 100000"
    assert summary["records"]["reference"] == {"read": 400, "accepted": 400, "rejected": 0, "rejected_by_reason": {}}
    assert summary["k"] == 5 and summary["output"]["rows"] == 400
    assert sorted(p.name for p in cluster_knn.iterdir()) == ["neighbors", "report"]


def test_the_cluster_ran_every_application_with_the_shipped_library(cluster_runs, standalone_cluster):
    # The cluster really ran them: the master lists the applications as completed, and the worker
    # started executors for them, each of which fetched the library zip shipped with --py-files
    # (and the tokeniser's jar, with --jars).
    state = get_json(standalone_cluster["master_json"])
    completed = sorted(app["name"] for app in state["completedapps"])
    expected = sorted(["nb_vectorize", "nb_combine", "knn_neighbors",
                       *(f"nb_predict_shard_{shard}" for shard in range(NUM_SHARDS))])
    assert completed == expected
    # Executors fetch the zip when they run a task; applications whose tasks run Python code (the
    # library's batch functions) must have it.
    names = {app["id"]: app["name"] for app in state["completedapps"]}
    app_dirs = sorted(standalone_cluster["work_dir"].glob("app-*"))
    assert len(app_dirs) == len(completed)
    for app_dir in app_dirs:
        executor_dirs = [d for d in app_dir.iterdir() if d.is_dir()]
        assert executor_dirs, f"no executor ran for {app_dir.name}"
        if names[app_dir.name].startswith(("nb_predict_shard", "knn_neighbors")):
            assert any(list(executor.glob("nbknn-*.zip")) for executor in executor_dirs), (
                f"{names[app_dir.name]} ({app_dir.name}): library zip not fetched"
            )
        # The tokeniser's scanner (spark_submit.py's --jars): vectorising tokenises on the executors.
        if names[app_dir.name] == "nb_vectorize":
            assert any(list(executor.glob("nbknn-token-scanner-*.jar")) for executor in executor_dirs), (
                f"nb_vectorize ({app_dir.name}): the token scanner's jar not fetched"
            )
