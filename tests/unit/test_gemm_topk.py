"""The exact GEMM kNN kernel (nbknn.knn.gemm) equals an independent direct float64 brute force
(distances from the differences, ties broken by id) on the cases that break a careless kernel:
near-ties below float32's resolution, duplicates, large offsets, near-duplicate clusters, zero
vectors with cosine, d = 1 and 2048, k close to n. Without its error bound it goes wrong."""

from __future__ import annotations

import numpy as np
import pytest

from knn_oracles import direct_distances as ref_dist_row
from knn_oracles import direct_topk as ref_topk
from nbknn.knn.gemm import cross_join_topk, exact_topk, self_join_topk
from nbknn.knn.gemm_bound import bound_coefficients, pow2_scale, prepare

METRICS = ("euclidean", "sqeuclidean", "cosine")


def check(got, want, noise=0.0):
    """ids identical and distances equal (1e-9 rel / 1e-12 abs).

    noise > 0 (cosine only): 1 - x.y/(|x||y|) in float64 has an absolute
    rounding error of ~d*2**-53 of its own, so two implementations of the same
    formula may order candidates whose reference distances differ by less than
    that differently.  Then a differing id is accepted only if its reference
    distance is within noise of the reference distance at that position."""
    gi, gd = got[0], got[1]
    wi, wd = want
    fin = np.isfinite(wd)
    assert np.array_equal(fin, np.isfinite(gd))
    np.testing.assert_allclose(gd[fin], wd[fin], rtol=1e-9, atol=1e-12)
    bad = np.flatnonzero((gi != wi).any(axis=1))
    if noise > 0 and bad.size:
        still = []
        for i in bad:
            j = np.flatnonzero(gi[i] != wi[i])
            # same multiset of ids outside the ambiguous band, distances close
            ok = np.all(np.abs(gd[i, j] - wd[i, j]) <= noise)
            inside = wd[i] < wd[i, -1] - noise
            ok &= set(wi[i][inside]) <= set(gi[i])
            if not ok:
                still.append(i)
        bad = np.array(still, dtype=np.int64)
    assert bad.size == 0, f"{bad.size} rows differ, first {bad[:5]}: {gi[bad[0]]} vs {wi[bad[0]]}"


def noise_for(metric, d):
    return 16 * (d + 4) * 2.0 ** -53 if metric == "cosine" else 0.0


def run_self(X, ids, k, metric, exclude_self=True, **kw):
    nz = noise_for(metric, X.shape[1])
    got = self_join_topk(X, ids, k, metric, exclude_self=exclude_self, **kw)
    check(got, ref_topk(X, ids, X, ids, k, metric, exclude_self), nz)
    # the non-symmetric driver on the same problem
    got2 = exact_topk(X, ids, X, ids, k, metric, exclude_self=exclude_self,
                        block_q=kw.get("block", 64), block_r=kw.get("block", 64) * 2)
    check(got2, ref_topk(X, ids, X, ids, k, metric, exclude_self), nz)
    return got


def rand_ids(rng, n):
    return rng.choice(10 ** 9, size=n, replace=False).astype(np.int64)


# ---------------------------------------------------------------------- tests
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [1, 5, 17])
def test_random(metric, k):
    rng = np.random.default_rng(k)
    X = rng.standard_normal((700, 24))
    run_self(X, rand_ids(rng, 700), k, metric, block=128)


@pytest.mark.parametrize("metric", METRICS)
def test_threads(metric):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((1500, 16))
    ids = rand_ids(rng, 1500)
    want = ref_topk(X, ids, X, ids, 8, metric, True)
    for nt in (1, 2, 3):
        check(self_join_topk(X, ids, 8, metric, block=200, n_threads=nt), want)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("sizes", [(400, 300), (7, 500), (300, 3)])
def test_cross_join_both_sides(metric, sizes):
    """Rows of A among B and rows of B among A; a side smaller than k pads its rows."""
    rng = np.random.default_rng(sum(sizes))
    ma, mb = sizes
    X = rng.standard_normal((ma + mb, 12)) + 5
    X[ma:ma + 3] = X[:3]                         # twins across the sides, other ids
    ids = rand_ids(rng, ma + mb)
    A, B, ia, ib = X[:ma], X[ma:], ids[:ma], ids[ma:]
    k = 6
    got_a_ids, got_a_d, got_b_ids, got_b_d, info = cross_join_topk(A, ia, B, ib, k, metric, block=64, n_threads=2)
    nz = noise_for(metric, 12)
    check((got_a_ids, got_a_d), ref_topk(A, ia, B, ib, k, metric, True), nz)
    check((got_b_ids, got_b_d), ref_topk(B, ib, A, ia, k, metric, True), nz)
    assert info["fallback_rows"] == 0


def test_cross_join_fallback_searches_the_other_side_only():
    rng = np.random.default_rng(21)
    c = 10 * rng.standard_normal(8)
    # a near-duplicate cluster far from the mean: its distances are below the bound's resolution
    X = np.vstack([c + 1e-7 * rng.standard_normal((300, 8)), rng.standard_normal((200, 8))])
    ids = rand_ids(rng, 500)
    A, B, ia, ib = X[:250], X[250:], ids[:250], ids[250:]
    got = cross_join_topk(A, ia, B, ib, 4, "euclidean", block=64, cap=24)
    assert got[4]["fallback_rows"] > 0
    check(got[:2], ref_topk(A, ia, B, ib, 4, "euclidean", True))
    check(got[2:4], ref_topk(B, ib, A, ia, 4, "euclidean", True))


@pytest.mark.parametrize("metric", METRICS)
def test_near_ties_below_float32_eps(metric):
    # points on rays from a centre, radii differing by 1e-10 relative:
    # float32 cannot order them, float64 can
    rng = np.random.default_rng(2)
    d = 8
    c = rng.standard_normal(d)
    dirs = rng.standard_normal((60, d))
    dirs /= np.linalg.norm(dirs, axis=1)[:, None]
    if metric == "cosine":
        # 1 - cos = 0.3 + j*1e-11 to the first point: float64 resolves, float32 not
        e1 = np.zeros(d)
        e1[0] = 1.0
        dirs[:, 0] = 0.0
        dirs /= np.linalg.norm(dirs, axis=1)[:, None]
        cth = 0.7 - 1e-11 * rng.permutation(60)
        pts = cth[:, None] * e1 + np.sqrt(1 - cth ** 2)[:, None] * dirs
        pts *= rng.uniform(0.5, 2.0, 60)[:, None]
        X = np.vstack([e1, pts, rng.standard_normal((100, d))])
    else:
        r = 1.0 + 1e-10 * rng.permutation(60)
        X = np.vstack([c, c + r[:, None] * dirs, c + 3 * rng.standard_normal((100, d))])
    ids = rand_ids(rng, X.shape[0])
    for k in (5, 30):
        run_self(X, ids, k, metric, block=32)


@pytest.mark.parametrize("metric", METRICS)
def test_duplicates_ties_by_id(metric):
    rng = np.random.default_rng(3)
    base = rng.standard_normal((50, 6))
    X = np.vstack([base] * 4)                # every vector 4 times
    ids = rand_ids(rng, X.shape[0])          # random order: ties by id, not by position
    for excl in (True, False):
        run_self(X, ids, 7, metric, exclude_self=excl, block=64)


@pytest.mark.parametrize("metric", METRICS)
def test_all_identical(metric):
    rng = np.random.default_rng(4)
    X = np.tile(rng.standard_normal(5), (90, 1))
    ids = rng.permutation(1000)[:90]
    got = run_self(X, ids, 20, metric, block=32)
    assert (np.diff(got[0], axis=1) > 0).all()


@pytest.mark.parametrize("metric", METRICS)
def test_large_offset(metric):
    rng = np.random.default_rng(5)
    X = 1e6 + rng.standard_normal((600, 12))
    run_self(X, rand_ids(rng, 600), 6, metric, block=128)
    Q = 1e6 + rng.standard_normal((50, 12))
    qid = rand_ids(rng, 50)
    rid = rand_ids(rng, 600)
    check(exact_topk(Q, qid, X, rid, 6, metric), ref_topk(Q, qid, X, rid, 6, metric, False),
          noise_for(metric, 12))


@pytest.mark.parametrize("metric", METRICS)
def test_near_duplicate_clusters(metric):
    # clusters whose spread is 1e-8 of their norm: the float32 bound is far
    # wider than the distances, every cluster member survives the filter
    rng = np.random.default_rng(6)
    d = 16
    centres = 10 * rng.standard_normal((20, d))
    X = np.vstack([c + 1e-8 * np.linalg.norm(c) * rng.standard_normal((15, d)) for c in centres])
    ids = rand_ids(rng, X.shape[0])
    got = run_self(X, ids, 5, metric, block=64)
    assert got[2]["fallback_rows"] == 0


@pytest.mark.parametrize("metric", METRICS)
def test_fallback_rows_are_exact_and_counted(metric):
    rng = np.random.default_rng(7)
    d = 16
    c = 10 * rng.standard_normal(d)
    X = np.vstack([c + 1e-8 * 10 * rng.standard_normal((300, d)),
                   rng.standard_normal((200, d))])
    ids = rand_ids(rng, X.shape[0])
    got = self_join_topk(X, ids, 4, metric, block=128, cap=24)
    check(got, ref_topk(X, ids, X, ids, 4, metric, True), noise_for(metric, d))
    assert got[2]["fallback_rows"] >= 250
    got = exact_topk(X[:50], ids[:50], X, ids, 4, metric, exclude_self=True, cap=24)
    check(got, ref_topk(X[:50], ids[:50], X, ids, 4, metric, True), noise_for(metric, d))
    assert got[2]["fallback_rows"] == 50


def test_zero_vectors_cosine():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((200, 5))
    X[::7] = 0.0
    X[1::9] = X[2]                              # duplicates too
    ids = rand_ids(rng, 200)
    run_self(X, ids, 9, "cosine", block=64)
    run_self(X, ids, 9, "euclidean", block=64)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("d", [1, 2, 2048])
def test_dims(metric, d):
    rng = np.random.default_rng(d)
    n = 300 if d > 2 else 500
    X = rng.standard_normal((n, d))
    if d == 1:
        X = np.round(X, 2)                      # many exact ties in 1-D
    run_self(X, rand_ids(rng, n), 6, metric, block=128)


@pytest.mark.parametrize("metric", METRICS)
def test_k_close_to_n(metric):
    rng = np.random.default_rng(9)
    X = rng.standard_normal((60, 4))
    ids = rand_ids(rng, 60)
    for k in (57, 59):
        run_self(X, ids, k, metric, block=16)
    got = self_join_topk(X, ids, 60, metric, exclude_self=False, block=16)
    check(got, ref_topk(X, ids, X, ids, 60, metric, False))
    with pytest.raises(ValueError):
        self_join_topk(X, ids, 60, metric)


@pytest.mark.parametrize("metric", METRICS)
def test_separate_query_set(metric):
    rng = np.random.default_rng(10)
    R = rng.standard_normal((900, 20)) + 3
    Q = rng.standard_normal((230, 20)) + 3
    Q[:20] = R[100:120]                          # some queries coincide with refs
    rid = rand_ids(rng, 900)
    qid = rand_ids(rng, 230)
    for excl in (False, True):
        if excl:
            qid = qid.copy()
            qid[:20] = rid[100:120]              # ...and share their ids
        got = exact_topk(Q, qid, R, rid, 11, metric, exclude_self=excl,
                           block_q=64, block_r=256)
        check(got, ref_topk(Q, qid, R, rid, 11, metric, excl))


def test_duplicate_ids_in_reference_padding():
    rng = np.random.default_rng(11)
    R = rng.standard_normal((5, 3))
    rid = np.array([1, 1, 1, 2, 3])
    got = exact_topk(R[:1], np.array([1]), R, rid, 3, "euclidean", exclude_self=True)
    assert list(got[0][0, :2]) == list(ref_topk(R[:1], np.array([1]), R, rid, 2, "euclidean", True)[0][0])
    assert got[0][0, 2] == -1 and np.isinf(got[1][0, 2])


def test_error_bound_holds_on_random_pairs():
    """Direct check of |approx - exact| <= e on adversarial data."""
    rng = np.random.default_rng(12)
    for X in (1e6 + rng.standard_normal((300, 64)),
              rng.standard_normal((300, 256)) * np.exp(rng.uniform(-20, 20, 256))):
        for metric in METRICS:
            if metric == "cosine":
                XL, XR, xn, xb = prepare(X, metric)
                ex = np.array([ref_dist_row(x, X, metric) for x in X])
            else:
                mu = X.mean(0)
                sc = pow2_scale(X - mu)
                XL, XR, xn, xb = prepare(X, metric, mu, sc)
                ex = np.array([ref_dist_row(x, X, "sqeuclidean") for x in X]) * sc * sc
            S = (XL @ XR.T).astype(np.float64)
            a, b, c = bound_coefficients(metric, X.shape[1])
            e = a * np.outer(xb, xb) + b * (xn[:, None] + xn[None, :]) + c
            assert (np.abs(S - ex) <= e).all()
            # and the bound is not absurdly loose
            assert np.median(np.abs(S - ex) / e) < 0.5


def test_zero_bound_is_detected():
    """With e = 0 the kernel must go wrong on near ties (sanity of the tests)."""
    rng = np.random.default_rng(13)
    d = 8
    c = rng.standard_normal(d)
    dirs = rng.standard_normal((60, d))
    dirs /= np.linalg.norm(dirs, axis=1)[:, None]
    r = 1.0 + 1e-10 * rng.permutation(60)
    X = np.vstack([c, c + r[:, None] * dirs])
    ids = rand_ids(rng, X.shape[0])
    want = ref_topk(X, ids, X, ids, 5, "euclidean", True)
    got = self_join_topk(X, ids, 5, "euclidean", block=32, bound_scale=0.0)
    assert not np.array_equal(got[0], want[0])
