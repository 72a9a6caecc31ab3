"""Exact k nearest neighbours at the speed of float32 matrix products (numba + BLAS).

``exact_topk`` answers a query set against a reference set, ``self_join_topk`` every row of a set
against the others with one product per pair of blocks (the Gram matrix is symmetric: each
product updates the rows of both blocks, half the flops of a query-against-reference search).
Candidates come from float32 products; the proven bound of :mod:`nbknn.knn.gemm_bound` decides
which can still be among the k nearest; those are recomputed exactly in float64 from the
differences and ordered by (distance, id). Rows whose bound is too wide are recomputed by brute
force and counted (``info["fallback_rows"]``). The answer equals a direct float64 brute force.

Not yet called by the Spark modes (broadcast, blocked), which use scikit-learn's kernels.
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
from threadpoolctl import threadpool_limits

from nbknn.knn.gemm_bound import METRICS, bound_coefficients, pow2_scale, prepare, row_norms
from nbknn.knn.gemm_scan import rerank, scan_both, scan_cols, scan_rows


@contextmanager
def _blas_limit(n):
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def brute_force_rows(Qo, qids, Ro, rids, k, metric, exclude_self, chunk_bytes=1 << 25):
    """Top-k of each row of Qo by direct float64 brute force (chunked): the fallback rows."""
    m = Qo.shape[0]
    nR, d = Ro.shape
    out_ids = np.full((m, k), -1, np.int64)
    out_d = np.full((m, k), np.inf)
    if metric == "cosine":
        rn = row_norms(Ro)
    rows_per = max(1, chunk_bytes // max(1, nR * 8 * max(1, d // 8)))
    cstep = max(1, chunk_bytes // max(1, 8 * d))
    for a in range(0, m, rows_per):
        q = Qo[a:a + rows_per]
        D = np.empty((q.shape[0], nR))
        for ii in range(q.shape[0]):
            for c0 in range(0, nR, cstep):
                Rc = Ro[c0:c0 + cstep]
                if metric == "cosine":
                    qn = math.sqrt(float(q[ii] @ q[ii]))
                    den = qn * rn[c0:c0 + cstep]
                    dot = Rc @ q[ii]
                    with np.errstate(invalid="ignore", divide="ignore"):
                        v = 1.0 - dot / den
                    v[den == 0] = 1.0
                else:
                    diff = Rc - q[ii]
                    v = np.einsum("ij,ij->i", diff, diff)
                    if metric == "euclidean":
                        v = np.sqrt(v)
                D[ii, c0:c0 + cstep] = v
        for ii in range(q.shape[0]):
            v = D[ii]
            if exclude_self:
                v = v.copy()
                v[rids == qids[a + ii]] = np.inf
                valid = np.count_nonzero(rids != qids[a + ii])
            else:
                valid = nR
            kk = min(k, valid)
            if kk == 0:
                continue
            kth = np.partition(v, kk - 1)[kk - 1]
            sel = np.flatnonzero(v <= kth)
            if exclude_self:
                sel = sel[rids[sel] != qids[a + ii]]
            o = np.lexsort((rids[sel], v[sel]))[:kk]
            out_ids[a + ii, :kk] = rids[sel[o]]
            out_d[a + ii, :kk] = v[sel[o]]
    return out_ids, out_d


def _check(metric, k):
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}")
    if k < 1:
        raise ValueError("k must be >= 1")


def _state(m, k, cap):
    return dict(
        heap=np.empty((m, k)),
        hcnt=np.zeros(m, np.int64),
        thr=np.full(m, np.inf),
        bidx=np.empty((m, cap), np.int64),
        blo=np.empty((m, cap)),
        bcnt=np.zeros(m, np.int64),
        ovf=np.zeros(m, np.bool_),
    )


def _default_cap(k):
    """Candidate buffer per row: room for k and their near-ties before a compaction."""
    return 4 * k + 64


def _finish(Qo, qids, Ro, rids, k, metric, exclude_self, st, tim, pool, nt):
    m = Qo.shape[0]
    t = time.perf_counter()
    out_ids = np.empty((m, k), np.int64)
    out_d = np.empty((m, k))
    cos = metric == "cosine"
    qn = row_norms(Qo) if cos else np.zeros(m)
    rn = row_norms(Ro) if cos else np.zeros(Ro.shape[0])
    nsurv = np.zeros(m, np.int64)
    step = -(-m // (4 * nt)) if m else 1
    futs = [pool.submit(rerank, Qo, Ro, qn, rn, cos, metric == "sqeuclidean",
                        rids, k, st["thr"], st["bidx"], st["blo"], st["bcnt"],
                        st["ovf"], out_ids, out_d, nsurv, a, min(a + step, m))
            for a in range(0, m, step)]
    for f in futs:
        f.result()
    tim["rerank"] = time.perf_counter() - t
    t = time.perf_counter()
    bad = np.flatnonzero(st["ovf"])
    if bad.size:
        bi, bd = brute_force_rows(Qo[bad], qids[bad], Ro, rids, k, metric, exclude_self)
        out_ids[bad] = bi
        out_d[bad] = bd
    tim["fallback"] = time.perf_counter() - t
    info = dict(fallback_rows=int(bad.size), timings=tim,
                mean_survivors=float(nsurv[~st["ovf"]].mean()) if m > bad.size else 0.0,
                max_survivors=int(nsurv.max()) if m else 0)
    return out_ids, out_d, info


def _as_ids(ids, n):
    ids = np.asarray(ids)
    if ids.shape != (n,):
        raise ValueError("ids must have one entry per row")
    return ids.astype(np.int64, copy=False)


def _round_robin(nb):
    """Rounds of block pairs (I, J), I < J, each block at most once per round
    (circle method), followed by one round of the diagonal pairs (I, I)."""
    ids = list(range(nb)) + ([None] if nb % 2 else [])
    m = len(ids)
    rounds = []
    for _ in range(m - 1):
        pairs = []
        for a in range(m // 2):
            x, y = ids[a], ids[m - 1 - a]
            if x is not None and y is not None:
                pairs.append((min(x, y), max(x, y)))
        rounds.append(pairs)
        ids = [ids[0]] + [ids[-1]] + ids[1:-1]
    rounds.append([(i, i) for i in range(nb)])
    return rounds


class _Timer:
    def __init__(self):
        self.lock = threading.Lock()
        self.gemm = 0.0
        self.filter = 0.0

    def add(self, g, f):
        with self.lock:
            self.gemm += g
            self.filter += f


def _n_threads(n_threads):
    return max(1, int(n_threads or os.cpu_count() or 1))


def exact_topk(Q, q_ids, R, r_ids, k, metric="euclidean", exclude_self=False,
               block_q=1024, block_r=2048, cap=None, bound_scale=1.0,
               n_threads=None):
    """Exact top-k of each row of Q among the rows of R (see module docstring).

    bound_scale multiplies the error bound (1.0 = proven bound; tests use 0.0 to
    show that an unsafe bound breaks exactness).  n_threads workers each run a
    single-threaded sgemm on their own tile followed by the filter (BLAS is
    limited to 1 thread for the duration of the call)."""
    _check(metric, k)
    nt = _n_threads(n_threads)
    tim = {}
    t = time.perf_counter()
    Qo = np.ascontiguousarray(Q, dtype=np.float64)
    Ro = np.ascontiguousarray(R, dtype=np.float64)
    if Qo.ndim != 2 or Ro.ndim != 2 or Qo.shape[1] != Ro.shape[1]:
        raise ValueError("Q and R must be 2-D with the same number of columns")
    if not (np.isfinite(Qo).all() and np.isfinite(Ro).all()):
        raise ValueError("non-finite input")
    m, d = Qo.shape
    nR = Ro.shape[0]
    qids = _as_ids(q_ids, m)
    rids = _as_ids(r_ids, nR)
    if k > nR:
        raise ValueError("k larger than the reference set")
    if metric == "cosine":
        QL, _, qn, qb = prepare(Qo, metric)
        _, RR, rn, rb = prepare(Ro, metric)
    else:
        mu = Ro.mean(axis=0)
        sc = pow2_scale(Qo - mu, Ro - mu)
        QL, _, qn, qb = prepare(Qo, metric, mu, sc)
        _, RR, rn, rb = prepare(Ro, metric, mu, sc)
    alpha, beta, kappa = bound_coefficients(metric, d, bound_scale)
    cap = cap or _default_cap(k)
    st = _state(m, k, cap)
    excl = bool(exclude_self)
    tim["prep"] = time.perf_counter() - t
    timer = _Timer()
    local = threading.local()

    def work(i0):
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.empty((block_q, block_r), np.float32)
        Qb = QL[i0:i0 + block_q]
        tg = tf = 0.0
        for j0 in range(0, nR, block_r):
            t0 = time.perf_counter()
            Rb = RR[j0:j0 + block_r]
            S = buf[:Qb.shape[0], :Rb.shape[0]]
            np.matmul(Qb, Rb.T, out=S)
            t1 = time.perf_counter()
            scan_rows(S, i0, j0, alpha, beta, kappa, qn, qb, rn, rb, qids, rids,
                       excl, k, st["heap"], st["hcnt"], st["thr"],
                       st["bidx"], st["blo"], st["bcnt"], st["ovf"])
            tf += time.perf_counter() - t1
            tg += t1 - t0
        timer.add(tg, tf)

    t = time.perf_counter()
    with _blas_limit(1), ThreadPoolExecutor(nt) as pool:
        for f in [pool.submit(work, i0) for i0 in range(0, m, block_q)]:
            f.result()
        tim["wall_gemm_filter"] = time.perf_counter() - t
        tim["gemm"] = timer.gemm / nt
        tim["filter"] = timer.filter / nt
        return _finish(Qo, qids, Ro, rids, k, metric, excl, st, tim, pool, nt)


def self_join_topk(X, ids, k, metric="euclidean", exclude_self=True, block=1024,
                   cap=None, bound_scale=1.0, symmetric=True, n_threads=None,
                   fused=True):
    """Exact top-k of every row of X among the rows of X.

    symmetric=True: one GEMM per block pair I <= J; the tile updates the rows
    of I (scan of its rows) and the rows of J (scan of its columns).  Block
    pairs are processed in round-robin rounds in which every block occurs at
    most once, so the n_threads workers never update the same query row.
    symmetric=False computes all ordered pairs (for comparison)."""
    _check(metric, k)
    nt = _n_threads(n_threads)
    tim = {}
    t = time.perf_counter()
    Xo = np.ascontiguousarray(X, dtype=np.float64)
    if Xo.ndim != 2:
        raise ValueError("X must be 2-D")
    if not np.isfinite(Xo).all():
        raise ValueError("non-finite input")
    n, d = Xo.shape
    ids = _as_ids(ids, n)
    if np.unique(ids).size != n:
        raise ValueError("self_join_topk needs unique ids")
    if k > n - (1 if exclude_self else 0):
        raise ValueError("k larger than the number of admissible neighbours")
    if metric == "cosine":
        XL, XR, xn, xb = prepare(Xo, metric)
    else:
        mu = Xo.mean(axis=0)
        sc = pow2_scale(Xo - mu)
        XL, XR, xn, xb = prepare(Xo, metric, mu, sc)
    alpha, beta, kappa = bound_coefficients(metric, d, bound_scale)
    cap = cap or _default_cap(k)
    st = _state(n, k, cap)
    excl = bool(exclude_self)
    tim["prep"] = time.perf_counter() - t
    B = min(block, n)
    nb = -(-n // B)
    timer = _Timer()
    local = threading.local()

    def work(I, J, both):
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.empty((B, B), np.float32)
        i0, j0 = I * B, J * B
        t0 = time.perf_counter()
        Xi = XL[i0:i0 + B]
        Xj = XR[j0:j0 + B]
        S = buf[:Xi.shape[0], :Xj.shape[0]]
        np.matmul(Xi, Xj.T, out=S)
        t1 = time.perf_counter()
        if both and fused:
            scan_both(S, i0, j0, alpha, beta, kappa, xn, xb, ids, excl,
                       k, st["heap"], st["hcnt"], st["thr"], st["bidx"],
                       st["blo"], st["bcnt"], st["ovf"])
        else:
            scan_rows(S, i0, j0, alpha, beta, kappa, xn, xb, xn, xb, ids, ids,
                       excl, k, st["heap"], st["hcnt"], st["thr"], st["bidx"],
                       st["blo"], st["bcnt"], st["ovf"])
            if both:
                scan_cols(S, i0, j0, alpha, beta, kappa, xn, xb, ids, excl,
                           k, st["heap"], st["hcnt"], st["thr"], st["bidx"],
                           st["blo"], st["bcnt"], st["ovf"])
        timer.add(t1 - t0, time.perf_counter() - t1)

    t = time.perf_counter()
    with _blas_limit(1), ThreadPoolExecutor(nt) as pool:
        if symmetric:
            for pairs in _round_robin(nb):
                futs = [pool.submit(work, I, J, I != J) for I, J in pairs]
                for f in futs:
                    f.result()
        else:
            # rows of block I are only touched by the task of I
            def row_task(I):
                for J in range(nb):
                    work(I, J, False)
            for f in [pool.submit(row_task, I) for I in range(nb)]:
                f.result()
        tim["wall_gemm_filter"] = time.perf_counter() - t
        tim["gemm"] = timer.gemm / nt
        tim["filter"] = timer.filter / nt
        return _finish(Xo, ids, Xo, ids, k, metric, excl, st, tim, pool, nt)
