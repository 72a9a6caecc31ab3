"""knn_neighbors end to end: `airflow dags test` with the real SparkSubmitOperator and spark-submit."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_digits
from sklearn.neighbors import NearestNeighbors

from helpers import latest_run_task_states, run_dag_test, write_jsonl

pytestmark = pytest.mark.e2e


def test_knn_dag_publishes_neighbours_equal_to_sklearn(airflow_db, tmp_path):
    X = load_digits().data[:500].astype(np.float64)
    ids = np.arange(500, dtype=np.int64) * 10 + 7
    (tmp_path / "input" / "digits").mkdir(parents=True)
    table = pa.table({"item_id": pa.array(ids), "embedding": pa.array([x.tolist() for x in X], type=pa.list_(pa.float64()))})
    pq.write_table(table, tmp_path / "input" / "digits" / "part-0.parquet")
    conf = {"input_uri": "input/digits", "input_format": "parquet", "id_column": "item_id",
            "vector_column": "embedding", "k": 5, "mode": "auto", "broadcast_max_bytes": 100_000,
            "block_bytes_budget": 1_048_576}

    result = run_dag_test("knn_neighbors", conf, tmp_path.as_uri())
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]

    (run_dir,) = (tmp_path / "neighbors").iterdir()
    assert ":" not in run_dir.name
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert summary["mode"] == "blocked"  # 500 x 64 x 8 = 256000 bytes > broadcast_max_bytes
    assert summary["mode_reason"] == "reference matrix 256000 bytes > broadcast_max_bytes 100000"
    assert summary["records"]["reference"] == {"read": 500, "accepted": 500, "rejected": 0, "rejected_by_reason": {}}
    assert summary["k"] == 5 and summary["output"]["rows"] == 500
    assert sorted(p.name for p in run_dir.iterdir()) == ["neighbors", "report"]

    rows = pq.read_table(run_dir / "neighbors").to_pylist()
    assert [r["id"] for r in rows] == sorted(ids.tolist())
    sk_d, sk_idx = NearestNeighbors(n_neighbors=5, algorithm="brute").fit(X).kneighbors()
    position = {v: i for i, v in enumerate(ids.tolist())}
    for row in rows:
        i = position[row["id"]]
        np.testing.assert_allclose(row["distances"], sk_d[i], rtol=1e-9, atol=1e-12)
        strictly_nearer = [n for n, d in zip(row["neighbor_ids"], row["distances"]) if d < sk_d[i, -1]]
        assert set(strictly_nearer) <= set(ids[sk_idx[i]].tolist())
        assert row["id"] not in row["neighbor_ids"]
    states = latest_run_task_states("knn_neighbors")
    assert set(states.values()) == {"success"}, states


def test_knn_dag_annoy_on_jsonl_quarantines_and_reports_recall(airflow_db, tmp_path):
    X = load_digits().data[:400].astype(np.float64)
    records = [{"id": f"d{i}", "vector": x.tolist()} for i, x in enumerate(X)]
    records += ['{"id": "bad-nan", "vector": [NaN]}', '{"id": "bad-dim", "vector": [1.0, 2.0]}']
    write_jsonl(tmp_path / "input" / "vectors.jsonl", records)
    conf = {"input_uri": "input/vectors.jsonl", "input_format": "jsonl", "k": 10, "mode": "annoy",
            "metric": "cosine", "max_reject_fraction": 0.01}

    result = run_dag_test("knn_neighbors", conf, tmp_path.as_uri())
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]

    (run_dir,) = (tmp_path / "neighbors").iterdir()
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert summary["mode"] == "annoy" and summary["metric"] == "cosine"
    assert summary["records"]["reference"]["rejected_by_reason"] == {"non_finite_component": 1, "wrong_dimension": 1}
    rejects = [json.loads(line) for f in tmp_path.glob(f"rejects/knn_neighbors/{run_dir.name}/part-*") for line in open(f)]
    assert sorted(r["reason"] for r in rejects) == ["non_finite_component", "wrong_dimension"]
    rows = pq.read_table(run_dir / "neighbors").to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(f"d{i}" for i in range(400))
    assert all(len(r["neighbor_ids"]) == 10 and r["id"] not in r["neighbor_ids"] for r in rows)

    # The oracle: exact cosine distances of every pair, numpy float64 brute force, self excluded.
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    exact = 1.0 - unit @ unit.T
    np.fill_diagonal(exact, np.inf)
    kth = np.sort(exact, axis=1)[:, 9]
    hits = 0
    for row in rows:
        i = int(row["id"][1:])
        found = [int(n[1:]) for n in row["neighbor_ids"]]
        assert len(set(found)) == 10, row
        # Each reported distance is the true distance of the neighbour it names (Annoy works in float32).
        np.testing.assert_allclose(row["distances"], exact[i, found], rtol=0, atol=1e-5)
        assert row["distances"] == sorted(row["distances"]), row
        # A returned neighbour counts when it is among the true 10 nearest (ties at the 10th included).
        hits += int(np.sum(exact[i, found] <= kth[i] + 1e-12))
    recall = hits / (10 * len(rows))
    assert recall >= 0.9, recall
    # The report's own figure (a sample of queries) tells the same story.
    assert abs(summary["annoy"]["recall_at_k"] - recall) <= 0.05, (summary["annoy"], recall)
