"""Exact blocked kNN kernels against scikit-learn's brute-force NearestNeighbors.

The oracle is always scikit-learn (``NearestNeighbors(algorithm="brute")`` or
``pairwise_distances``), called directly here, never the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors

from knn_oracles import (
    block_bounds,
    brute_force_all_points,
    brute_force_query,
    empty_topk,
    merge_topk_rows,
    topk_to_rows,
)
from nbknn.knn.planning import plan_blocks
from nbknn.knn.topk import (
    BYTES_PER_PAIR,
    PAD_ID_INT,
    PAD_ID_STR,
    SUPPORTED_METRICS,
    TopK,
    local_topk,
    merge_topk,
    validate_k,
    validate_metric,
)

RTOL = 1e-9
ATOL = 1e-12
METRICS = ["euclidean", "cosine", "manhattan"]


@pytest.fixture(scope="module")
def digits():
    return load_digits().data.astype(np.float64)


# ---------------------------------------------------------------------------------- helpers


def sk_self_join(X, k, metric):
    """scikit-learn's self-join: kneighbors() without X. Returns (distances, indices)."""
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(X)
    return nn.kneighbors()


def sk_query(R, Q, k, metric):
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(R)
    return nn.kneighbors(Q)


def blocked(query_ids, Q, ref_ids, R, k, metric, block_rows, rng, exclude_self=True, **kw):
    """Local top-k per reference block, merged pairwise in a random grouping and order."""
    parts = [
        local_topk(query_ids, Q, ref_ids[s:e], R[s:e], k, metric, exclude_self=exclude_self, **kw)
        for s, e in block_bounds(len(ref_ids), block_rows)
    ]
    rng.shuffle(parts)
    while len(parts) > 1:
        i, j = rng.choice(len(parts), size=2, replace=False)
        a, b = parts[i], parts[j]
        parts = [p for t, p in enumerate(parts) if t not in (i, j)]
        parts.append(merge_topk(a, b, k))
    return parts[0]


def assert_knn_matches(ours, sk_dist, sk_ids, Q, R, ref_ids, metric, query_ids=None,
                       rtol=RTOL, atol=ATOL):
    """Ours equals scikit-learn's result up to the order of ties.

    Distances must agree position by position. Every neighbour of ours strictly closer than the
    k-th distance must be among sklearn's, at the same distance; at the k-th distance (where the
    choice among tied points is arbitrary in sklearn) each of ours must truly lie at that distance
    (checked with sklearn's pairwise_distances) and must not be the query itself.
    """
    ours_ids, ours_d = ours
    assert ours_ids.shape == sk_ids.shape and ours_d.shape == sk_dist.shape
    np.testing.assert_allclose(ours_d, sk_dist, rtol=rtol, atol=atol)
    row_of = {v: r for r, v in enumerate(ref_ids.tolist())}
    for i in range(sk_ids.shape[0]):
        row_ids = ours_ids[i].tolist()
        assert len(set(row_ids)) == len(row_ids), f"row {i}: repeated neighbour {row_ids}"
        if query_ids is not None:
            assert query_ids[i] not in row_ids, f"row {i}: query itself returned"
        dk = sk_dist[i, -1]
        tol = atol + rtol * abs(dk)
        sk_map = dict(zip(sk_ids[i].tolist(), sk_dist[i].tolist()))
        for j, nid in enumerate(row_ids):
            if ours_d[i, j] < dk - tol:
                assert nid in sk_map, f"row {i}: neighbour {nid} not in sklearn's {sk_map}"
                assert abs(sk_map[nid] - ours_d[i, j]) <= atol + rtol * abs(sk_map[nid])
            elif nid not in sk_map:
                true_d = pairwise_distances(Q[i : i + 1], R[row_of[nid] : row_of[nid] + 1],
                                            metric=metric)[0, 0]
                assert abs(true_d - dk) <= atol + rtol * max(1.0, abs(dk)), (
                    f"row {i}: boundary neighbour {nid} at {true_d}, k-th distance {dk}"
                )


def assert_sorted_by_distance_then_id(res):
    ids, d = res
    assert (np.diff(d, axis=1) >= 0).all()
    same = d[:, 1:] == d[:, :-1]
    assert (ids[:, 1:][same] > ids[:, :-1][same]).all()


# ---------------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("metric", METRICS)
def test_blocked_self_join_matches_sklearn_on_digits(digits, metric):
    X = digits
    ids = np.arange(X.shape[0], dtype=np.int64) * 3 + 1000
    k = 10
    sk_d, sk_i = sk_self_join(X, k, metric)
    rng = np.random.default_rng(0)
    for block_rows in (7, 250, 1797):  # 7 < k: blocks smaller than k
        ours = blocked(ids, X, ids, X, k, metric, block_rows, rng)
        assert_knn_matches(ours, sk_d, ids[sk_i], X, X, ids, metric, query_ids=ids)
        assert_sorted_by_distance_then_id(ours)


@pytest.mark.parametrize("metric", METRICS)
def test_one_row_blocks_match_sklearn(digits, metric):
    X = digits[:120]
    ids = np.random.default_rng(1).permutation(X.shape[0]).astype(np.int64)
    k = 5
    sk_d, sk_i = sk_self_join(X, k, metric)
    ours = blocked(ids, X, ids, X, k, metric, 1, np.random.default_rng(2))
    assert_knn_matches(ours, sk_d, ids[sk_i], X, X, ids, metric, query_ids=ids)


@pytest.mark.parametrize("metric", METRICS)
def test_random_data_blocks_and_query_chunks_match_sklearn(metric):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 20)) * 2.0 + 0.5
    ids = rng.permutation(10_000)[:400].astype(np.int64)
    k = 8
    sk_d, sk_i = sk_self_join(X, k, metric)
    for block_rows in (1, 5, 37, 400):
        # for blocks > 1 row, a small pair budget forces several query chunks (of 60 rows)
        budget = 60 * block_rows * BYTES_PER_PAIR if block_rows > 1 else 2**26
        ours = blocked(ids, X, ids, X, k, metric, block_rows, rng, max_pair_bytes=budget)
        assert_knn_matches(ours, sk_d, ids[sk_i], X, X, ids, metric, query_ids=ids)


def test_string_ids_match_sklearn():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((150, 6))
    ids = np.array([f"doc-{v:05d}" for v in rng.permutation(150)])
    k = 6
    sk_d, sk_i = sk_self_join(X, k, "euclidean")
    ours = blocked(ids, X, ids, X, k, "euclidean", 4, rng)
    assert ours.ids.dtype.kind == "U"
    assert_knn_matches(ours, sk_d, ids[sk_i], X, X, ids, "euclidean", query_ids=ids)


@pytest.mark.parametrize("metric", METRICS)
def test_separate_query_set_matches_sklearn(metric):
    rng = np.random.default_rng(5)
    R = rng.standard_normal((300, 10))
    Q = rng.standard_normal((80, 10))
    Q[:5] = R[10:15]  # queries that coincide with references are NOT excluded
    ref_ids = np.arange(300, dtype=np.int64)
    q_ids = np.arange(80, dtype=np.int64)  # overlapping id ranges: irrelevant without exclusion
    k = 7
    sk_d, sk_i = sk_query(R, Q, k, metric)
    ours = blocked(q_ids, Q, ref_ids, R, k, metric, 23, rng, exclude_self=False)
    assert_knn_matches(ours, sk_d, ref_ids[sk_i], Q, R, ref_ids, metric, atol=1e-7)
    np.testing.assert_array_equal(ours.ids[:5, 0], ref_ids[10:15])


def test_self_join_without_exclusion_matches_kneighbors_X(digits):
    X = digits[:300]
    ids = np.arange(300, dtype=np.int64)
    sk_d, sk_i = sk_query(X, X, 4, "manhattan")
    ours = blocked(ids, X, ids, X, 4, "manhattan", 50, np.random.default_rng(6), exclude_self=False)
    assert_knn_matches(ours, sk_d, ids[sk_i], X, X, ids, "manhattan")


def test_merge_rows_variant_matches_sklearn(digits):
    X = digits[:200]
    ids = np.arange(200, dtype=np.int64) + 5
    k = 6
    rng = np.random.default_rng(7)
    per_query: dict[int, list] = {}
    pieces = []
    for s, e in block_bounds(200, 9):
        pieces.extend(topk_to_rows(ids, local_topk(ids, X, ids[s:e], X[s:e], k, "euclidean")))
    rng.shuffle(pieces)
    for qid, row in pieces:  # what reduceByKey does, in an arbitrary order
        per_query[qid] = merge_topk_rows(per_query[qid], row, k) if qid in per_query else row
    got_d = np.array([[d for d, _ in per_query[q]] for q in ids.tolist()])
    got_i = np.array([[n for _, n in per_query[q]] for q in ids.tolist()])
    sk_d, sk_i = sk_self_join(X, k, "euclidean")
    assert_knn_matches(TopK(got_i, got_d), sk_d, ids[sk_i], X, X, ids, "euclidean", query_ids=ids)


def test_brute_force_reference_is_sklearn(digits):
    X = digits[:400]
    ids = np.arange(400, dtype=np.int64) * 2
    sk_d, sk_i = sk_self_join(X, 5, "cosine")
    ref = brute_force_all_points(ids, X, 5, "cosine")
    np.testing.assert_array_equal(ref.distances, sk_d)
    np.testing.assert_array_equal(ref.ids, ids[sk_i])
    q = brute_force_query(ids, X, X[:10] + 0.5, 3, "manhattan")
    sk_d, sk_i = sk_query(X, X[:10] + 0.5, 3, "manhattan")
    np.testing.assert_array_equal(q.distances, sk_d)
    np.testing.assert_array_equal(q.ids, ids[sk_i])


# ---------------------------------------------------------------------------------- duplicates


@pytest.mark.parametrize("metric", METRICS)
def test_exact_duplicates_twin_kept_self_excluded(metric):
    rng = np.random.default_rng(8)
    X = rng.integers(-8, 9, size=(120, 5)).astype(np.float64)  # integer data: exact distances
    X[0] = np.abs(X[0]) + 1  # nonzero rows for cosine
    X[1] = X[0]  # a pair of twins
    X[2:7] = X[20]  # a group of 6 identical points (20 and 2..6): more than k
    ids = rng.permutation(1000)[:120].astype(np.int64)
    k = 3
    sk_d, sk_i = sk_self_join(X, k, metric)
    ours = blocked(ids, X, ids, X, k, metric, 11, rng)
    assert_knn_matches(ours, sk_d, ids[sk_i], X, X, ids, metric, query_ids=ids)
    # twins: each is the other's first neighbour, at distance 0; the query itself never appears.
    # (cosine: 1 - <x/|x|, x/|x|> rounds to a few eps off the diagonal, in sklearn as here)
    zero = 1e-15 if metric == "cosine" else 0.0
    assert ours.ids[0, 0] == ids[1] and ours.ids[1, 0] == ids[0]
    assert ours.distances[0, 0] <= zero and ours.distances[1, 0] <= zero
    group = [2, 3, 4, 5, 6, 20]
    for q in group:
        expected = sorted(ids[g] for g in group if g != q)[:k]  # tie at 0 broken by id
        assert ours.ids[q].tolist() == expected
        assert (ours.distances[q] <= zero).all()
        assert (sk_d[q] <= zero).all()


def test_float_duplicates_euclidean_match_sklearn_within_cancellation():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((200, 16)) * 3 + 5
    X[[10, 20, 30]] = X[40]
    ids = np.arange(200, dtype=np.int64)
    sk_d, sk_i = sk_self_join(X, 2, "euclidean")
    ours = blocked(ids, X, ids, X, 2, "euclidean", 13, rng)
    # ||x||^2 - 2 x.y + ||y||^2 leaves ~sqrt(eps)*||x|| at true zeros, in sklearn as here
    assert_knn_matches(ours, sk_d, ids[sk_i], X, X, ids, "euclidean", query_ids=ids, atol=1e-6)
    for q in (10, 20, 30, 40):
        assert q not in ours.ids[q] and set(ours.ids[q]) <= {10, 20, 30, 40}


# ---------------------------------------------------------------------------------- ties


@pytest.mark.parametrize("metric", ["euclidean", "manhattan"])
def test_grid_ties_ordered_by_distance_then_id(metric):
    g = np.arange(12, dtype=np.float64)
    X = np.array([(a, b) for a in g for b in g])
    rng = np.random.default_rng(10)
    ids = rng.permutation(10 * len(X))[: len(X)].astype(np.int64)
    k = 6  # 4 neighbours at 1, then a tie among up to 4 (euclidean sqrt2 / manhattan 2)
    D = pairwise_distances(X, metric=metric)
    np.fill_diagonal(D, np.inf)
    order = np.lexsort((np.broadcast_to(ids, D.shape), D), axis=1)[:, :k]
    expected_ids = ids[order]
    expected_d = np.take_along_axis(D, order, axis=1)
    sk_d, sk_i = sk_self_join(X, k, metric)
    for block_rows in (1, 5, 31, len(X)):
        ours = blocked(ids, X, ids, X, k, metric, block_rows, rng)
        np.testing.assert_array_equal(ours.ids, expected_ids)
        np.testing.assert_array_equal(ours.distances, expected_d)
        np.testing.assert_array_equal(np.sort(ours.distances, axis=1), np.sort(sk_d, axis=1))
        assert_knn_matches(ours, sk_d, ids[sk_i], X, X, ids, metric, query_ids=ids)


def test_merge_is_associative_and_commutative():
    rng = np.random.default_rng(11)
    X = rng.integers(0, 3, size=(60, 2)).astype(np.float64)  # heavy ties
    ids = np.arange(60, dtype=np.int64)
    k = 7
    parts = [local_topk(ids, X, ids[s:e], X[s:e], k) for s, e in block_bounds(60, 4)]
    first = None
    for _ in range(5):
        res = blocked(ids, X, ids, X, k, "euclidean", 4, rng)
        if first is None:
            first = res
        np.testing.assert_array_equal(res.ids, first.ids)
        np.testing.assert_array_equal(res.distances, first.distances)
    a, b, c = parts[0], parts[1], parts[2]
    left = merge_topk(merge_topk(a, b, k), c, k)
    right = merge_topk(a, merge_topk(c, b, k), k)
    np.testing.assert_array_equal(left.ids, right.ids)
    np.testing.assert_array_equal(left.distances, right.distances)
    with_empty = merge_topk(empty_topk(60), first, k)
    np.testing.assert_array_equal(with_empty.ids, first.ids)


# ---------------------------------------------------------------------------------- padding


def test_short_block_is_padded_with_inf_and_sentinel():
    X = np.arange(12, dtype=np.float64).reshape(6, 2)
    ids = np.array([10, 11, 12, 13, 14, 15], dtype=np.int64)
    res = local_topk(ids, X, ids[:3], X[:3], k=5)  # block of 3 < k
    assert res.ids.shape == (6, 3)
    # query 11 is in the block: its own entry is dropped, one padding slot remains
    assert res.ids[1].tolist() == [10, 12, PAD_ID_INT]
    assert res.distances[1, 2] == np.inf
    assert res.ids[5].tolist() == [12, 11, 10]
    s_ids = np.array(["a", "b", "c", "d", "e", "f"])
    res_s = local_topk(s_ids, X, s_ids[:2], X[:2], k=4)
    assert res_s.ids[0].tolist() == ["b", PAD_ID_STR]
    merged = merge_topk(res, local_topk(ids, X, ids[3:], X[3:], k=5), 5)
    assert merged.ids.shape == (6, 5) and np.isfinite(merged.distances).all()
    assert (merged.ids != PAD_ID_INT).all()


def test_sentinel_id_rejected():
    X = np.zeros((2, 2))
    with pytest.raises(ValueError, match="padding sentinel"):
        local_topk(np.array([PAD_ID_INT, 1]), X, np.array([0, 1]), X, 1)
    with pytest.raises(ValueError, match="padding sentinel"):
        local_topk(np.array(["", "x"]), X, np.array(["y", "x"]), X, 1)


# ---------------------------------------------------------------------------------- validation


def test_validate_k_messages():
    assert validate_k(9, 10, self_join=True) == 9
    assert validate_k(10, 10, self_join=False) == 10
    with pytest.raises(
        ValueError,
        match=r"k must be < number of reference vectors in a self-join \(k=12, n=10\)",
    ):
        validate_k(12, 10, self_join=True)
    with pytest.raises(ValueError, match=r"self-join \(k=10, n=10\)"):
        validate_k(10, 10, self_join=True)
    with pytest.raises(
        ValueError, match=r"k must be <= number of reference vectors \(k=11, n=10\)"
    ):
        validate_k(11, 10, self_join=False)
    with pytest.raises(ValueError, match=r"k must be >= 1 \(got k=0\)"):
        validate_k(0, 10, self_join=False)
    with pytest.raises(TypeError, match="k must be an integer"):
        validate_k(2.5, 10, self_join=False)
    with pytest.raises(TypeError, match="k must be an integer"):
        validate_k(True, 10, self_join=False)


def test_validate_metric_messages():
    assert validate_metric("l2") == "euclidean"
    assert validate_metric("cityblock") == "manhattan"
    assert validate_metric("cosine") == "cosine"
    assert {"euclidean", "cosine", "manhattan", "cityblock"} <= set(SUPPORTED_METRICS)
    with pytest.raises(
        ValueError, match=r"unsupported metric 'hamming': expected one of \[.*'cosine'"
    ):
        validate_metric("hamming")


def test_boundary_shape_and_value_errors():
    X = np.zeros((4, 3))
    ids = np.arange(4)
    with pytest.raises(ValueError, match=r"same dimension \(Q has 3, R has 2\)"):
        local_topk(ids, X, ids, np.zeros((4, 2)), 2)
    with pytest.raises(ValueError, match=r"one id per vector \(expected 4, got 3\)"):
        local_topk(ids[:3], X, ids, X, 2)
    with pytest.raises(ValueError, match="finite"):
        local_topk(ids, np.full((4, 3), np.nan), ids, X, 2)
    with pytest.raises(ValueError, match="same queries"):
        merge_topk(empty_topk(3), empty_topk(4), 2)
    with pytest.raises(ValueError, match=r"self-join \(k=4, n=4\)"):
        brute_force_all_points(ids, X, 4)


def test_extra_metrics_match_sklearn():
    rng = np.random.default_rng(12)
    X = rng.standard_normal((150, 8))
    ids = np.arange(150, dtype=np.int64)
    for metric in ("sqeuclidean", "chebyshev", "canberra", "l1", "l2"):
        sk_d, sk_i = sk_self_join(X, 4, metric)
        ours = blocked(ids, X, ids, X, 4, metric, 17, rng)
        assert_knn_matches(ours, sk_d, ids[sk_i], X, X, ids, metric, query_ids=ids)


# ---------------------------------------------------------------------------------- planning


def test_plan_blocks_respects_budget():
    n, d, k = 100_000, 64, 10
    for budget in (2**20, 16 * 2**20, 256 * 2**20):
        plan = plan_blocks(n, d, k, budget)
        b, q = plan.block_rows, plan.query_chunk_rows
        used = b * (8 * d + 8) + q * b * BYTES_PER_PAIR + q * (8 * d + 16 * k)
        assert used == plan.estimated_bytes <= budget
        assert plan.n_blocks * b >= n > (plan.n_blocks - 1) * b
        assert plan.max_pair_bytes // (b * BYTES_PER_PAIR) == q
    assert plan_blocks(1000, 8, 5, 2**30).n_blocks == 1
    tiny = plan_blocks(1000, 8, 5, 4000)  # forces the query chunk down
    assert tiny.query_chunk_rows < 1024 and tiny.estimated_bytes <= 4000
    with pytest.raises(ValueError, match=r"block_bytes_budget too small: expected >= \d+ bytes"):
        plan_blocks(1000, 64, 10, 100)
