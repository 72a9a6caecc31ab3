"""All-points kNN on Spark against scikit-learn's brute-force NearestNeighbors.

The oracle is always scikit-learn (``NearestNeighbors(algorithm="brute")``, ``pairwise_distances``)
or numpy applied to its distance matrix, called here; never the code under test. Real vectors:
scikit-learn's bundled digits and Reuters R8 documents (TF-IDF reduced by TruncatedSVD).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors

from helpers import dag_param_defaults, run_entry_in_process, write_jsonl
from knn_oracles import direct_topk
from nbknn.inputs.documents import InputError, TooManyRejects
from nbknn.inputs.vectors import DuplicateIdError, VectorSpec
from nbknn.knn.annoy import neighbors_annoy
from nbknn.knn.blocked import neighbors_blocked
from nbknn.knn.broadcast import neighbors_broadcast
from nbknn.knn.job import KnnOptions, choose_mode, run_knn

pytestmark = pytest.mark.spark

RTOL = 1e-9
ATOL = 1e-12
# Euclidean distances of (near-)duplicates in float data: scikit-learn and the blocked kernel both
# use ||x||^2 - 2 x.y + ||y||^2, whose absolute error is about sqrt(eps) * ||x|| (a true 0 comes
# out as ~1e-8 in either): near zero only an absolute tolerance of that order is meaningful.
ATOL_FLOAT_EUCLIDEAN = 1e-7


# ---------------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def digits():
    X = load_digits().data.astype(np.float64)
    ids = np.arange(X.shape[0], dtype=np.int64) * 3 + 1000
    return ids, X


@pytest.fixture(scope="module")
def reuters_svd(corpus):
    docs = corpus("reuters-r8", "train", 1500)
    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2).fit_transform([d["text"] for d in docs])
    X = TruncatedSVD(n_components=100, random_state=0).fit_transform(tfidf).astype(np.float64)
    ids = np.array([d["id"] for d in docs])
    return ids, X


def make_frame(spark, ids, X, partitions=3):
    id_type = "string" if np.asarray(ids).dtype.kind == "U" else "bigint"
    rows = [(i.item(), x.tolist()) for i, x in zip(np.asarray(ids), X)]
    frame = spark.createDataFrame(rows, f"id {id_type}, vector array<double>").repartition(partitions)
    return frame.persist()


def collect_result(result, query_ids):
    """(neighbour ids, distances) as arrays in the order of ``query_ids``."""
    rows = {row["id"]: row for row in result.frame.collect()}
    result.release()
    assert sorted(rows) == sorted(np.asarray(query_ids).tolist()), "one output row per query"
    ids = np.array([rows[q]["neighbor_ids"] for q in np.asarray(query_ids).tolist()])
    dist = np.array([rows[q]["distances"] for q in np.asarray(query_ids).tolist()])
    return ids, dist


def assert_matches_sklearn(ours_ids, ours_d, sk_d, sk_idx, ref_ids, R, Q, metric, query_ids=None, atol=ATOL):
    """Equal to scikit-learn brute force up to the choice among points tied at the k-th distance.

    Distances agree position by position (1e-9 relative); neighbours strictly nearer than the k-th
    distance are sklearn's; a neighbour at the k-th distance must truly lie there; rows are sorted
    by (distance, id); the query itself is never its own neighbour (when ``query_ids`` is given).
    """
    sk_ids = ref_ids[sk_idx]
    assert ours_ids.shape == sk_ids.shape
    np.testing.assert_allclose(ours_d, sk_d, rtol=RTOL, atol=atol)
    row_of = {v: r for r, v in enumerate(ref_ids.tolist())}
    for i in range(sk_ids.shape[0]):
        row = ours_ids[i].tolist()
        assert len(set(row)) == len(row)
        if query_ids is not None:
            assert query_ids[i] not in row
        same = ours_d[i, 1:] == ours_d[i, :-1]
        assert (np.diff(ours_d[i]) >= 0).all() and all(b > a for a, b, s in zip(row, row[1:], same) if s)
        kth = sk_d[i, -1]
        tol = atol + RTOL * abs(kth)
        sk_set = set(sk_ids[i].tolist())
        for j, nid in enumerate(row):
            if ours_d[i, j] < kth - tol:
                assert nid in sk_set, f"row {i}: {nid} is not among sklearn's neighbours"
            elif nid not in sk_set:
                true_d = pairwise_distances(Q[i : i + 1], R[row_of[nid] : row_of[nid] + 1], metric=metric)[0, 0]
                assert abs(true_d - kth) <= atol + RTOL * max(1.0, kth), f"row {i}: {nid} at {true_d} != k-th {kth}"


def sklearn_self_join(X, k, metric):
    return NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(X).kneighbors()


# ---------------------------------------------------------------------------------- exact modes


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_modes_equal_sklearn_on_digits(spark, digits, metric):
    ids, X = digits
    frame = make_frame(spark, ids, X)
    k = 10
    sk_d, sk_idx = sklearn_self_join(X, k, metric)
    for result in (
        neighbors_broadcast(frame, frame, k, metric, self_join=True),
        neighbors_broadcast(frame, frame, k, metric),
        # 6 MB per unit of two blocks: several blocks of a few hundred rows.
        neighbors_blocked(frame, frame, k, metric, block_bytes_budget=6_000_000, self_join=True),
        # 1.5 MB per step: several blocks of a few hundred rows.
        neighbors_blocked(frame, frame, k, metric, block_bytes_budget=1_500_000, query_chunk_rows=512),
    ):
        assert result.details["kernel"] == "gemm"
        if "n_blocks" in result.details:
            assert result.details["n_blocks"] > 1
            assert result.details["estimated_task_bytes"] <= result.details["block_bytes_budget"]
        ours_ids, ours_d = collect_result(result, ids)
        assert_matches_sklearn(ours_ids, ours_d, sk_d, sk_idx, ids, X, X, metric, query_ids=ids)
    frame.unpersist()


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_modes_equal_sklearn_on_reuters_document_vectors(spark, reuters_svd, metric):
    ids, X = reuters_svd
    frame = make_frame(spark, ids, X)
    k = 10
    sk_d, sk_idx = sklearn_self_join(X, k, metric)
    mode_results = {
        "broadcast": neighbors_broadcast(frame, frame, k, metric, self_join=True),
        "blocked": neighbors_blocked(frame, frame, k, metric, block_rows=400, self_join=True),
    }
    atol = ATOL_FLOAT_EUCLIDEAN if metric == "euclidean" else ATOL
    for result in mode_results.values():
        ours_ids, ours_d = collect_result(result, ids)
        assert_matches_sklearn(ours_ids, ours_d, sk_d, sk_idx, ids, X, X, metric, query_ids=ids, atol=atol)
    frame.unpersist()


def lexsorted_truth(query_ids, Q, ref_ids, R, k, metric, exclude_self):
    """The exact top-k in (distance, id) order from sklearn's full distance matrix and numpy."""
    D = pairwise_distances(Q, R, metric=metric)
    ids_out, d_out = [], []
    for i in range(Q.shape[0]):
        keep = ref_ids != query_ids[i] if exclude_self else np.ones(R.shape[0], dtype=bool)
        order = np.lexsort((ref_ids[keep], D[i, keep]))[:k]
        ids_out.append(ref_ids[keep][order])
        d_out.append(D[i, keep][order])
    return np.array(ids_out), np.array(d_out)


def test_duplicates_and_ties_break_by_id_in_every_exact_mode(spark):
    """Integer points on a small grid: exact duplicates (an identical twin stays a neighbour at
    distance 0) and many ties, which every exact mode breaks by id exactly."""
    rng = np.random.default_rng(7)
    # 27 grid points for 40 rows: every row has ties. The cost is in the number of blocks of 5: an
    # all-points run of 8 blocks is 36 tasks (one per block and one per pair of blocks).
    X = rng.integers(0, 3, size=(40, 3)).astype(np.float64)
    X[32:] = X[:8]  # exact duplicates under other ids
    ids = rng.permutation(np.arange(10_000, 10_040)).astype(np.int64)
    frame = make_frame(spark, ids, X)
    k = 7
    sk_d, sk_idx = sklearn_self_join(X, k, "euclidean")
    truth_ids, truth_d = lexsorted_truth(ids, X, ids, X, k, "euclidean", exclude_self=True)
    np.testing.assert_allclose(truth_d, sk_d, rtol=RTOL, atol=ATOL)  # the oracle agrees with sklearn
    for result in (
        neighbors_broadcast(frame, frame, k),
        neighbors_broadcast(frame, frame, k, self_join=True),
        neighbors_blocked(frame, frame, k, block_rows=5),  # blocks smaller than k
        neighbors_blocked(frame, frame, k, block_rows=64),
        neighbors_blocked(frame, frame, k, block_rows=5, self_join=True),  # pairs of blocks smaller than k
        neighbors_blocked(frame, frame, k, block_rows=64, self_join=True),
    ):
        ours_ids, ours_d = collect_result(result, ids)
        assert_matches_sklearn(ours_ids, ours_d, sk_d, sk_idx, ids, X, X, "euclidean", query_ids=ids)
        np.testing.assert_array_equal(ours_ids, truth_ids)
        np.testing.assert_allclose(ours_d, truth_d, rtol=RTOL, atol=ATOL)
    frame.unpersist()


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_all_points_exact_on_near_duplicates_and_large_offsets_with_string_ids(spark, metric):
    """Near-duplicate clusters far from the origin (spread 1e-9 of the norm: the expansion
    |x|^2 + |y|^2 - 2 x.y loses every digit there), twins under other ids, string ids whose order
    is not the numbers' order: both modes equal the direct float64 brute force, ids and all."""
    rng = np.random.default_rng(5)
    centres = 1e6 + 10 * rng.standard_normal((12, 16))
    X = np.vstack([c + 1e-3 * rng.standard_normal((25, 16)) for c in centres])
    X[290:] = X[:10]
    ids = np.array([f"v{i}" for i in rng.permutation(X.shape[0])])
    frame = make_frame(spark, ids, X)
    k = 6
    want_ids, want_d = direct_topk(X, ids, X, ids, k, metric, True)
    for result in (
        neighbors_broadcast(frame, frame, k, metric, self_join=True),
        # 3 blocks: 6 tasks (one per block and one per pair); make_frame's repartition spreads each
        # cluster and its twins over the blocks.
        neighbors_blocked(frame, frame, k, metric, block_rows=100, self_join=True),
        neighbors_blocked(frame, frame, k, metric, block_rows=40),
    ):
        got_ids, got_d = collect_result(result, ids)
        np.testing.assert_allclose(got_d, want_d, rtol=RTOL, atol=ATOL)
        if metric != "cosine":  # cosine ties within float64 rounding may order either way
            np.testing.assert_array_equal(got_ids, want_ids)
    frame.unpersist()


def test_blocked_equals_broadcast_for_several_block_sizes(spark, digits):
    ids, X = digits
    ids, X = ids[:300], X[:300]
    frame = make_frame(spark, ids, X, partitions=2)
    k = 10
    ref_ids, ref_d = collect_result(neighbors_broadcast(frame, frame, k, "manhattan"), ids)
    sk_d, sk_idx = sklearn_self_join(X, k, "manhattan")
    assert_matches_sklearn(ref_ids, ref_d, sk_d, sk_idx, ids, X, X, "manhattan", query_ids=ids)
    for block_rows in (4, 37, 300):  # 4 < k: blocks smaller than k
        result = neighbors_blocked(frame, frame, k, "manhattan", block_rows=block_rows, query_chunk_rows=100)
        assert result.details["n_blocks"] == math.ceil(300 / block_rows)
        got_ids, got_d = collect_result(result, ids)
        np.testing.assert_array_equal(got_ids, ref_ids)
        np.testing.assert_allclose(got_d, ref_d, rtol=RTOL, atol=ATOL)
    frame.unpersist()


def test_separate_query_set_with_string_ids(spark, reuters_svd):
    ids, X = reuters_svd
    ref_ids, R, q_ids, Q = ids[:1000], X[:1000], ids[1000:1200], X[1000:1200]
    reference, queries = make_frame(spark, ref_ids, R), make_frame(spark, q_ids, Q, partitions=2)
    k = 5
    sk_d, sk_idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(R).kneighbors(Q)
    for result in (
        neighbors_broadcast(queries, reference, k, exclude_self=False),
        neighbors_blocked(queries, reference, k, exclude_self=False, block_rows=128),
    ):
        assert result.details["kernel"] == "gemm"
        ours_ids, ours_d = collect_result(result, q_ids)
        assert_matches_sklearn(ours_ids, ours_d, sk_d, sk_idx, ref_ids, R, Q, "euclidean", atol=ATOL_FLOAT_EUCLIDEAN)
    reference.unpersist()
    queries.unpersist()


def test_k_too_large_is_refused_with_expected_and_got(spark, digits):
    ids, X = digits
    frame = make_frame(spark, ids[:20], X[:20], partitions=1)
    with pytest.raises(ValueError, match=r"k must be < number of reference vectors in a self-join \(k=20, n=20\)"):
        neighbors_blocked(frame, frame, 20)
    with pytest.raises(ValueError, match=r"k must be <= number of reference vectors \(k=21, n=20\)"):
        neighbors_broadcast(frame, frame, 21, exclude_self=False)
    frame.unpersist()


def test_auto_mode_chooses_by_reference_bytes():
    assert choose_mode("auto", 1000, 10, 80_000)[0] == "broadcast"
    mode, reason = choose_mode("auto", 1000, 10, 79_999)
    assert mode == "blocked" and "80000 bytes > broadcast_max_bytes 79999" in reason
    with pytest.raises(InputError, match="expected at most broadcast_max_bytes=10 bytes, got 80000"):
        choose_mode("broadcast", 1000, 10, 10)


# ---------------------------------------------------------------------------------- annoy


def test_annoy_reaches_recall_at_10_on_real_vectors(spark, reuters_svd):
    ids, X = reuters_svd
    frame = make_frame(spark, ids, X)
    k = 10
    result = neighbors_annoy(frame, frame, k, "cosine", n_trees=50)
    ours_ids, ours_d = collect_result(result, ids)
    _, sk_idx = sklearn_self_join(X, k, "cosine")
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(ours_ids.tolist(), ids[sk_idx].tolist())])
    assert recall >= 0.9, recall
    assert not any(q in row for q, row in zip(ids.tolist(), ours_ids.tolist()))
    # Annoy's distances (float32 vectors) converted to cosine distances: close to the exact ones.
    exact = pairwise_distances(X[:50], X, metric="cosine")
    row_of = {v: r for r, v in enumerate(ids.tolist())}
    for i in range(50):
        true_d = exact[i, [row_of[n] for n in ours_ids[i]]]
        np.testing.assert_allclose(ours_d[i], true_d, atol=1e-5)
    frame.unpersist()


def write_parquet(path: Path, ids, X, vector_type=None):
    path.mkdir(parents=True, exist_ok=True)
    vector_type = vector_type or pa.float32()
    table = pa.table({"item": pa.array(np.asarray(ids).tolist()),
                      "emb": pa.array([x.tolist() for x in X], type=pa.list_(vector_type))})
    pq.write_table(table, path / "part-0.parquet")
    return path.as_uri()


def test_run_knn_annoy_reports_measured_recall(spark, digits, tmp_path):
    ids, X = digits
    uri = write_parquet(tmp_path / "in", ids, X, pa.float64())
    out = (tmp_path / "out").as_uri()
    options = KnnOptions(k=10, mode="annoy", annoy_trees=30, recall_sample=300)
    spec = VectorSpec(uri, format="parquet", id_column="item", vector_column="emb")
    summary = run_knn(spark, spec, out, (tmp_path / "rejects").as_uri(), options)
    assert summary["mode"] == "annoy"
    assert summary["query_rows_computed"] == len(ids)  # each query answered once
    assert summary["annoy"]["sample_queries"] == 300
    assert summary["annoy"]["recall_at_k"] >= 0.9
    written = {r["id"]: r["neighbor_ids"] for r in spark.read.parquet(f"{out}/neighbors").collect()}
    _, sk_idx = sklearn_self_join(X, 10, "euclidean")
    recall = np.mean([len(set(written[q]) & set(ids[row].tolist())) / 10 for q, row in zip(ids.tolist(), sk_idx)])
    assert recall >= 0.9
    # The reported recall is measured on a sample of the same output: it cannot be far from ours.
    assert abs(summary["annoy"]["recall_at_k"] - recall) < 0.05
    assert json.loads((tmp_path / "out" / "report" / "summary.json").read_text()) == summary


# ---------------------------------------------------------------------------------- the application


def test_the_dags_plan_runs_annoy_on_jsonl_quarantines_and_reports_its_recall(spark, tmp_path, monkeypatch):
    """knn_neighbors' plan (the DAG's Param defaults and a run's conf) and its entry script with the
    plan's arguments, in process: Annoy, cosine, JSON Lines with two bad records. The DAG path goes
    through Airflow with real spark-submits elsewhere: broadcast in the demo, blocked on the
    standalone cluster, ``auto`` in the compose stack and in make airflow."""
    from nbknn_airflow.plans.knn_neighbors import plan_knn

    X = load_digits().data[:400].astype(np.float64)
    records = [{"id": f"d{i}", "vector": x.tolist()} for i, x in enumerate(X)]
    records += ['{"id": "bad-nan", "vector": [NaN]}', '{"id": "bad-dim", "vector": [1.0, 2.0]}']
    write_jsonl(tmp_path / "input" / "vectors.jsonl", records)
    conf = {"input_uri": "input/vectors.jsonl", "input_format": "jsonl", "k": 10, "mode": "annoy",
            "metric": "cosine", "max_reject_fraction": 0.01}
    monkeypatch.setenv("NBKNN_DATA_ROOT", tmp_path.as_uri())
    monkeypatch.delenv("NBKNN_INPUT_ROOTS", raising=False)
    plan = plan_knn({**dag_param_defaults("knn_neighbors"), **conf}, "manual__2026-11-29T00:00:00+00:00")
    run_entry_in_process(spark, "knn_neighbors.py", plan["knn_args"])

    (run_dir,) = (tmp_path / "neighbors").iterdir()
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert summary["mode"] == "annoy" and summary["metric"] == "cosine"
    assert summary["records"]["reference"]["rejected_by_reason"] == {"non_finite_component": 1, "wrong_dimension": 1}
    rejects = [json.loads(line) for f in tmp_path.glob(f"rejects/knn_neighbors/{run_dir.name}/part-*") for line in open(f)]
    assert sorted((r["reason"], json.loads(r["raw"])["id"]) for r in rejects) == [
        ("non_finite_component", "bad-nan"), ("wrong_dimension", "bad-dim")]
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


def test_run_knn_parquet_query_set_auto_blocked_and_retry(spark, digits, tmp_path):
    ids, X = digits
    ref_uri = write_parquet(tmp_path / "ref", ids[:1500], X[:1500])  # float32 array column
    q_uri = write_parquet(tmp_path / "queries", ids[1500:], X[1500:])
    out = (tmp_path / "out").as_uri()
    options = KnnOptions(k=8, exclude_self=False, broadcast_max_bytes=1000, block_bytes_budget=400_000)

    def spec(uri):
        return VectorSpec(uri, format="parquet", id_column="item", vector_column="emb")

    summary = run_knn(spark, spec(ref_uri), out, (tmp_path / "rejects").as_uri(), options, query_spec=spec(q_uri))
    assert summary["mode"] == "blocked" and "> broadcast_max_bytes 1000" in summary["mode_reason"]
    assert summary["blocks"]["n_blocks"] > 1
    assert summary["records"]["reference"] == {"read": 1500, "accepted": 1500, "rejected": 0, "rejected_by_reason": {}}
    assert summary["query_vectors"] == 297 and summary["output"]["rows"] == 297
    # The sort by id reads a persisted copy: the sort's sampling job does not merge the blocks again.
    assert summary["query_rows_computed"] == 297
    # float32 vectors as Parquet holds them, compared with sklearn on the same values
    R, Q = X[:1500].astype(np.float32).astype(np.float64), X[1500:].astype(np.float32).astype(np.float64)
    sk_d, sk_idx = NearestNeighbors(n_neighbors=8, algorithm="brute").fit(R).kneighbors(Q)
    frame = spark.read.parquet(f"{out}/neighbors")
    assert frame.columns == ["id", "neighbor_ids", "distances"]
    rows = frame.collect()
    assert [r["id"] for r in rows] == sorted(ids[1500:].tolist())  # published sorted by id
    by_id = {r["id"]: r for r in rows}
    ours_ids = np.array([by_id[q]["neighbor_ids"] for q in ids[1500:].tolist()])
    ours_d = np.array([by_id[q]["distances"] for q in ids[1500:].tolist()])
    assert_matches_sklearn(ours_ids, ours_d, sk_d, sk_idx, ids[:1500], R, Q, "euclidean")

    # A retry replaces its own output whole and leaves nothing else behind.
    again = run_knn(spark, spec(ref_uri), out, (tmp_path / "rejects").as_uri(), options, query_spec=spec(q_uri))
    assert again["output"] == summary["output"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["neighbors", "report"]
    assert sorted(r["id"] for r in spark.read.parquet(f"{out}/neighbors").collect()) == sorted(ids[1500:].tolist())


def good_record(i, x):
    return {"id": f"v{i:03d}", "vector": x.tolist()}


BAD_LINES = {
    "null_component": '{"id": "b1", "vector": [1.0, null, 2.0]}',
    "non_finite_component": '{"id": "b2", "vector": [NaN, 1.0, 2.0]}',
    "non_finite_component#inf": '{"id": "b3", "vector": [1.0, -Infinity, 2.0]}',
    "non_finite_component#overflow": '{"id": "b4", "vector": [1e400, 1.0, 2.0]}',
    "invalid_vector_type": '{"id": "b5", "vector": [1.0, "2", 3.0]}',
    "invalid_vector_type#string": '{"id": "b6", "vector": "1,2,3"}',
    "invalid_vector_type#bool": '{"id": "b7", "vector": [true, 1.0, 2.0]}',
    "invalid_vector_type#nested": '{"id": "b8", "vector": [[1.0], [2.0], [3.0]]}',
    "missing_id": '{"vector": [1.0, 2.0, 3.0]}',
    "invalid_id_type": '{"id": 1.5, "vector": [1.0, 2.0, 3.0]}',
    "empty_id": '{"id": " ", "vector": [1.0, 2.0, 3.0]}',
    "missing_vector": '{"id": "b9", "vector": null}',
    "empty_vector": '{"id": "b10", "vector": []}',
    "malformed_json": '{"id": "b11", "vector": [1.0, 2.0',
    "not_a_json_object": '[1.0, 2.0, 3.0]',
}


def test_bad_vectors_are_quarantined_with_their_reason(spark, tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 3))
    records = [good_record(i, x) for i, x in enumerate(X)]
    records += list(BAD_LINES.values())
    records += ['{"id": "w1", "vector": [1.0, 2.0]}', '{"id": "w2", "vector": [1.0, 2.0, 3.0, 4.0]}']
    path = write_jsonl(tmp_path / "in" / "vectors.jsonl", records)
    rejects = (tmp_path / "rejects").as_uri()
    summary = run_knn(
        spark, VectorSpec(path.as_uri()), (tmp_path / "out").as_uri(), rejects,
        KnnOptions(k=4, mode="broadcast"), max_reject_fraction=0.5,
    )
    expected = {}
    for name in [*BAD_LINES, "wrong_dimension", "wrong_dimension"]:
        reason = name.split("#")[0]
        expected[reason] = expected.get(reason, 0) + 1
    records_summary = summary["records"]["reference"]
    assert records_summary["rejected_by_reason"] == expected
    assert records_summary["read"] == 60 + len(BAD_LINES) + 2 == records_summary["accepted"] + records_summary["rejected"]
    assert summary["dimension"] == 3 and summary["dimension_rule"] == "most_common"
    assert summary["id_type"] == "string"
    # One kernel pass over the accepted queries, though the output is sorted by id before writing.
    assert summary["mode"] == "broadcast" and summary["query_rows_computed"] == 60
    quarantined = spark.read.json(rejects).collect()
    assert sorted(r["reason"] for r in quarantined) == sorted(
        r for r, n in expected.items() for _ in range(n)
    )
    assert {r["dataset"] for r in quarantined} == {"reference"}
    by_raw = {r["raw"]: r["reason"] for r in quarantined}
    for name, line in BAD_LINES.items():
        assert by_raw[line] == name.split("#")[0], line
    # The accepted vectors alone went through the neighbour search, equal to sklearn's.
    got = {r["id"]: r["neighbor_ids"] for r in spark.read.parquet(f"{(tmp_path / 'out').as_uri()}/neighbors").collect()}
    assert sorted(got) == [f"v{i:03d}" for i in range(60)]
    _, sk_idx = sklearn_self_join(X, 4, "euclidean")
    assert got["v000"] == [f"v{j:03d}" for j in sk_idx[0]]


def test_too_many_rejects_fail_the_run(spark, tmp_path):
    records = [good_record(i, x) for i, x in enumerate(np.eye(3))] + [BAD_LINES["null_component"]]
    path = write_jsonl(tmp_path / "vectors.jsonl", records)
    with pytest.raises(TooManyRejects, match=r"rejected 1 of 4 records"):
        run_knn(spark, VectorSpec(path.as_uri()), (tmp_path / "out").as_uri(), (tmp_path / "rej").as_uri(),
                KnnOptions(k=1), max_reject_fraction=0.1)


def test_duplicate_ids_fail_naming_them(spark, tmp_path):
    records = [{"id": i % 7, "vector": [float(i), 1.0]} for i in range(10)]  # ids 0, 1, 2 twice
    path = write_jsonl(tmp_path / "vectors.jsonl", records)
    with pytest.raises(DuplicateIdError, match=r"3 id\(s\) occur more than once, e.g. 0 \(2 times\), 1 \(2 times\), 2 \(2 times\)"):
        run_knn(spark, VectorSpec(path.as_uri()), (tmp_path / "out").as_uri(), (tmp_path / "rej").as_uri(),
                KnnOptions(k=2))
    assert not (tmp_path / "out" / "neighbors").exists()


def test_ambiguous_dimension_and_k_too_large_are_refused(spark, tmp_path):
    tied = [{"id": i, "vector": [1.0] * (2 + i % 2)} for i in range(8)]
    path = write_jsonl(tmp_path / "tied.jsonl", tied)
    run = lambda p, options, **kw: run_knn(  # noqa: E731
        spark, VectorSpec(p.as_uri()), (tmp_path / "out").as_uri(), (tmp_path / "rej").as_uri(), options, **kw
    )
    with pytest.raises(InputError, match=r"ambiguous dimension: lengths \[2, 3\] each occur in 4 records"):
        run(path, KnnOptions(k=1), max_reject_fraction=1.0)
    # With the dimension given, the other length is quarantined; 4 vectors leave room for k <= 3.
    summary = run(path, KnnOptions(k=3, mode="blocked"), max_reject_fraction=1.0, dim=3)
    assert summary["records"]["reference"]["rejected_by_reason"] == {"wrong_dimension": 4}
    assert summary["id_type"] == "long"
    with pytest.raises(ValueError, match=r"k must be < number of reference vectors in a self-join \(k=4, n=4\)"):
        run(path, KnnOptions(k=4), max_reject_fraction=1.0, dim=3)


@pytest.mark.parametrize("input_order", ["ids_sorted", "ids_shuffled"])
def test_all_points_output_is_written_sorted_by_id_with_or_without_a_sort(spark, digits, tmp_path, input_order):
    """An all-points run writes its neighbours sorted by id. broadcast orders the collected rows by
    id, and blocked numbers rows in id order when the input's partitions are sorted runs of ids (a
    set written sorted by id): both then merge group by group in id order and write without a sort.
    Input in another order takes the sort. Read file by file in name order, the ids must ascend,
    and the neighbours equal the direct brute force."""
    from nbknn.knn.job import compute_neighbors, write_neighbors

    ids, X = digits
    ids, X = np.array([f"d{i:05d}" for i in ids[:900]]), X[:900]  # string ids
    if input_order == "ids_sorted":
        frame = spark.createDataFrame([(i, x.tolist()) for i, x in zip(ids.tolist(), X)], "id string, vector array<double>")
        frame = frame.orderBy("id").persist()  # range partitions: sorted runs of ids
    else:
        frame = make_frame(spark, ids, X, partitions=3)  # hash partitions: ids in no order
    truth_ids, truth_d = direct_topk(X, ids, X, ids, 5, "euclidean", exclude_self=True)
    for mode in ("broadcast", "blocked"):
        result = compute_neighbors(frame, frame, mode, KnnOptions(k=5, mode=mode, block_rows=250))
        out = tmp_path / f"{input_order}-{mode}"
        try:
            write_neighbors(result, out.as_uri())
        finally:
            result.release()
        assert result.sorted_by_id == (mode == "broadcast" or input_order == "ids_sorted")
        files = sorted(out.glob("part-*.parquet"))
        table = pa.concat_tables([pq.read_table(f) for f in files])
        written = table.column("id").to_pylist()
        assert written == sorted(written) and len(written) == len(ids), mode
        order = np.argsort(ids)
        assert table.column("neighbor_ids").to_pylist() == truth_ids[order].tolist(), mode
        np.testing.assert_allclose(np.array(table.column("distances").to_pylist()), truth_d[order], rtol=1e-12)
    frame.unpersist()
