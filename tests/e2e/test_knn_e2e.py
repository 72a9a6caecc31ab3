"""knn_neighbors end to end: `airflow dags test` with the real SparkSubmitOperator and spark-submit.

Annoy on JSON lines here; the exact blocked mode (chosen by ``auto``, on Parquet) goes through
Airflow on the standalone cluster (tests/deploy/test_spark_standalone_cluster.py), the broadcast
mode in the demo (tests/e2e/test_demo.py), and ``auto``'s choice on the document vectors in the
compose stack."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_digits

from helpers import run_dag_test, write_jsonl

pytestmark = pytest.mark.e2e


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
