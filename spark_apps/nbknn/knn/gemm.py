"""Exact k nearest neighbours at the speed of float32 matrix products (numba + BLAS).

Three entry points, all returning exact answers (equal to a direct float64 brute force, ties
broken by id):

* :func:`exact_topk`: a query set against a reference set;
* :func:`self_join_topk`: every row of a set against the others, one product per pair of blocks
  (the Gram matrix is symmetric: each product updates the rows of both blocks, half the flops of
  a query-against-reference search);
* :func:`cross_join_topk`: the rows of set A against set B *and* the rows of B against A, from
  one product per pair of blocks: what the Spark modes run on one pair of row groups of an
  all-points run (their partial results merge into the global top-k).

Candidates come from float32 products; the proven bound of :mod:`nbknn.knn.gemm_bound` decides
which can still be among the k nearest; those are recomputed exactly in float64 from the
differences and ordered by (distance, id). Rows whose bound is too wide are recomputed by brute
force and counted (``info["fallback_rows"]``). Ids are int64 (the Spark modes pass ranks); a row
with fewer than k admissible candidates is padded with id -1 and distance +inf.
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from nbknn.knn.gemm_bound import METRICS, bound_coefficients, pow2_scale, prepare, row_norms
from nbknn.knn.gemm_compiled import scan_module

#: Id of the padding entries of a row with fewer than k admissible candidates.
PAD = -1


def brute_force_rows(Qo, qids, Ro, rids, k, metric, exclude_self, chunk_bytes=1 << 25):
    """Top-k of each row of Qo among the rows of Ro by direct float64 brute force (chunked)."""
    m = Qo.shape[0]
    nR, d = Ro.shape
    out_ids = np.full((m, k), PAD, np.int64)
    out_d = np.full((m, k), np.inf)
    rn = row_norms(Ro) if metric == "cosine" else None
    step = max(1, chunk_bytes // max(1, 8 * d))
    for i in range(m):
        v = np.empty(nR)
        for c0 in range(0, nR, step):
            v[c0:c0 + step] = exact_distances(Qo[i], Ro[c0:c0 + step], metric, None if rn is None else rn[c0:c0 + step])
        admissible = rids != qids[i] if exclude_self else np.ones(nR, bool)
        kk = min(k, int(admissible.sum()))
        if kk == 0:
            continue
        sel = np.flatnonzero(admissible)
        kth = np.partition(v[sel], kk - 1)[kk - 1]
        sel = sel[v[sel] <= kth]
        order = np.lexsort((rids[sel], v[sel]))[:kk]
        out_ids[i, :kk] = rids[sel[order]]
        out_d[i, :kk] = v[sel[order]]
    return out_ids, out_d


def exact_distances(q, R, metric, r_norms=None):
    """Distances of q (d,) to the rows of R, in float64 from the differences (cosine: 1 - cos)."""
    if metric == "cosine":
        den = math.sqrt(float(q @ q)) * (row_norms(R) if r_norms is None else r_norms)
        with np.errstate(invalid="ignore", divide="ignore"):
            v = 1.0 - (R @ q) / den
        v[den == 0] = 1.0
        return v
    diff = R - q
    v = np.einsum("ij,ij->i", diff, diff)
    return np.sqrt(v) if metric == "euclidean" else v


def check_metric_and_k(metric, k):
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS} (got {metric!r})")
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")


def finite_matrix(X, name):
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} has a non-finite value")
    return X


def as_ids(ids, n):
    ids = np.asarray(ids)
    if ids.shape != (n,):
        raise ValueError("ids must have one entry per row")
    return ids.astype(np.int64, copy=False)


def default_cap(k):
    """Candidate buffer per row: room for k and their near-ties before a compaction."""
    return 4 * k + 64


def n_threads_of(n_threads):
    return max(1, int(n_threads or os.cpu_count() or 1))


def round_robin(nb):
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


class Candidates:
    """Per query row: the heap of the k smallest upper bounds and the buffer of candidates.

    ``seed`` (prepared space, see :func:`seed_thresholds`): an upper bound of each row's k-th
    smallest distance over the whole set, known beforehand; the row's threshold starts there
    instead of at +inf, so candidates beyond it are dropped at once (a row may then keep fewer
    than k: the others are elsewhere)."""

    def __init__(self, m, k, cap, seed=None):
        self.k = k
        self.heap = np.empty((m, k))
        self.hcnt = np.zeros(m, np.int64)
        self.thr = np.full(m, np.inf) if seed is None else np.array(seed, dtype=np.float64)
        self.bidx = np.empty((m, cap), np.int64)
        self.blo = np.empty((m, cap))
        self.bcnt = np.zeros(m, np.int64)
        self.ovf = np.zeros(m, np.bool_)

    def arrays(self):
        return self.k, self.heap, self.hcnt, self.thr, self.bidx, self.blo, self.bcnt, self.ovf


@dataclass
class StepTimes:
    """Seconds per step, summed over the worker threads."""

    gemm: float = 0.0
    filter: float = 0.0

    def __post_init__(self):
        self.lock = threading.Lock()

    def add(self, gemm, filter_):
        with self.lock:
            self.gemm += gemm
            self.filter += filter_


class TileBuffers:
    """One float32 product tile per worker thread, reused across tiles."""

    def __init__(self, rows, cols):
        self.shape = (rows, cols)
        self.local = threading.local()

    def get(self, rows, cols):
        buf = getattr(self.local, "buf", None)
        if buf is None:
            buf = self.local.buf = np.empty(self.shape, np.float32)
        return buf[:rows, :cols]


class QueryScan:
    """Query blocks against every reference block: the work of :func:`exact_topk`."""

    def __init__(self, QL, RR, qn, qb, rn, rb, qids, rids, bound, exclude_self, cand, block_q, block_r, times):
        self.QL, self.RR = QL, RR
        self.qn, self.qb, self.rn, self.rb = qn, qb, rn, rb
        self.qids, self.rids = qids, rids
        self.bound, self.excl, self.cand = bound, exclude_self, cand
        self.block_r, self.times = block_r, times
        self.tiles = TileBuffers(block_q, block_r)
        self.block_q = block_q

    def query_block(self, i0):
        scan = scan_module()
        Qb = self.QL[i0:i0 + self.block_q]
        gemm = filt = 0.0
        for j0 in range(0, self.RR.shape[0], self.block_r):
            t0 = time.perf_counter()
            Rb = self.RR[j0:j0 + self.block_r]
            S = self.tiles.get(Qb.shape[0], Rb.shape[0])
            np.matmul(Qb, Rb.T, out=S)
            t1 = time.perf_counter()
            scan.scan_rows(S, i0, j0, *self.bound, self.qn, self.qb, self.rn, self.rb, self.qids, self.rids,
                           self.excl, *self.cand.arrays())
            filt += time.perf_counter() - t1
            gemm += t1 - t0
        self.times.add(gemm, filt)


class PairScan:
    """Products of pairs of blocks of one prepared set, each updating the rows of both blocks."""

    def __init__(self, XL, XR, xn, xb, ids, bound, exclude_self, cand, starts, times):
        self.XL, self.XR, self.xn, self.xb, self.ids = XL, XR, xn, xb, ids
        self.bound, self.excl, self.cand = bound, exclude_self, cand
        self.starts, self.times = starts, times
        width = max(b - a for a, b in zip(starts[:-1], starts[1:]))
        self.tiles = TileBuffers(width, width)

    def pair(self, I, J):
        scan = scan_module()
        i0, i1 = self.starts[I], self.starts[I + 1]
        j0, j1 = self.starts[J], self.starts[J + 1]
        t0 = time.perf_counter()
        S = self.tiles.get(i1 - i0, j1 - j0)
        np.matmul(self.XL[i0:i1], self.XR[j0:j1].T, out=S)
        t1 = time.perf_counter()
        if I != J:
            scan.scan_both(S, i0, j0, *self.bound, self.xn, self.xb, self.ids, self.excl, *self.cand.arrays())
        else:
            scan.scan_rows(S, i0, j0, *self.bound, self.xn, self.xb, self.xn, self.xb, self.ids, self.ids,
                           self.excl, *self.cand.arrays())
        self.times.add(t1 - t0, time.perf_counter() - t1)


@dataclass(frozen=True)
class Frame:
    """The centring and power-of-two scaling shared by every row of one join (euclidean and
    sqeuclidean; cosine normalises each row on its own). Any centre is correct (the bound holds
    for the prepared rows); the mean keeps the bound tight on data far from the origin."""

    metric: str
    center: np.ndarray | None = None
    scale: float = 1.0


def frame_for(metric, *matrices):
    """The frame of the rows of ``matrices`` together: their mean and the scale of their spread."""
    if metric == "cosine":
        return Frame(metric)
    rows = sum(X.shape[0] for X in matrices)
    center = sum(X.sum(axis=0) for X in matrices) / rows
    return Frame(metric, center, pow2_scale(*(X - center for X in matrices)))


def frame_from_stats(metric, count, column_sums, column_min, column_max):
    """The frame of a set known only by its count and its per-column sums, minima and maxima
    (what a distributed aggregate returns): max|x - mean| per column is exact from them."""
    if metric == "cosine":
        return Frame(metric)
    center = np.asarray(column_sums, dtype=np.float64) / count
    spread = np.maximum(np.asarray(column_max) - center, center - np.asarray(column_min))
    return Frame(metric, center, pow2_scale(spread))


@dataclass
class PreparedRows:
    """Rows ready for the kernel: the float64 originals (for the exact re-rank), the two float32
    operands of the products, the prepared rows' squared norms and norms, and int64 ids."""

    X: np.ndarray
    L: np.ndarray
    R: np.ndarray
    sq: np.ndarray
    norm: np.ndarray
    ids: np.ndarray
    metric: str

    @property
    def size(self):
        return self.X.shape[0]

    def concat(self, other):
        if other.metric != self.metric:
            raise ValueError("rows prepared for different metrics")
        return PreparedRows(*(np.concatenate([a, b]) for a, b in zip(self.fields(), other.fields())), self.metric)

    def rows(self, lo, hi):
        """Rows lo..hi (views)."""
        return PreparedRows(*(a[lo:hi] for a in self.fields()), self.metric)

    def fields(self):
        return self.X, self.L, self.R, self.sq, self.norm, self.ids


def prepare_rows(X, ids, frame):
    """:class:`PreparedRows` of X (validated: 2-D, finite) in ``frame``."""
    Xo = finite_matrix(X, "X")
    L, R, sq, norm = prepare(Xo, frame.metric, frame.center, frame.scale)
    return PreparedRows(Xo, L, R, sq, norm, as_ids(ids, Xo.shape[0]), frame.metric)


def finish(Qo, qids, Ro, rids, k, metric, exclude_self, cand, fallback_ranges, times, pool, nt):
    """Re-rank the survivors exactly; rows whose buffer overflowed go to the brute force.

    ``fallback_ranges``: (row_lo, row_hi, cand_lo, cand_hi) tuples, the candidate rows of Ro that
    a query row of each range is searched among."""
    m = Qo.shape[0]
    t = time.perf_counter()
    out_ids = np.empty((m, k), np.int64)
    out_d = np.empty((m, k))
    cos = metric == "cosine"
    qn = row_norms(Qo) if cos else np.zeros(m)
    rn = row_norms(Ro) if cos else np.zeros(Ro.shape[0])
    nsurv = np.zeros(m, np.int64)
    step = -(-m // (4 * nt)) if m else 1
    rerank = scan_module().rerank
    futures = [pool.submit(rerank, Qo, Ro, qn, rn, cos, metric == "sqeuclidean", rids, k, cand.thr, cand.bidx,
                           cand.blo, cand.bcnt, cand.ovf, out_ids, out_d, nsurv, a, min(a + step, m))
               for a in range(0, m, step)]
    for f in futures:
        f.result()
    timings = {"gemm": times.gemm / nt, "filter": times.filter / nt, "rerank": time.perf_counter() - t}
    t = time.perf_counter()
    bad = np.flatnonzero(cand.ovf)
    for row_lo, row_hi, c_lo, c_hi in fallback_ranges:
        rows = bad[(bad >= row_lo) & (bad < row_hi)]
        if rows.size:
            out_ids[rows], out_d[rows] = brute_force_rows(
                Qo[rows], qids[rows], Ro[c_lo:c_hi], rids[c_lo:c_hi], k, metric, exclude_self
            )
    timings["fallback"] = time.perf_counter() - t
    kept = ~cand.ovf
    info = dict(fallback_rows=int(bad.size), timings=timings,
                mean_survivors=float(nsurv[kept].mean()) if kept.any() else 0.0,
                max_survivors=int(nsurv.max()) if m else 0)
    return out_ids, out_d, info


def exact_topk(Q, q_ids, R, r_ids, k, metric="euclidean", exclude_self=False,
               block_q=1024, block_r=2048, cap=None, bound_scale=1.0, n_threads=None):
    """Exact top-k of each row of Q among the rows of R (see the module docstring).

    ``bound_scale`` multiplies the error bound (1.0 = proven bound; tests use 0.0 to show that an
    unsafe bound breaks exactness). ``n_threads`` workers each run a single-threaded sgemm on
    their own tile followed by its filter (BLAS is limited to 1 thread during the call)."""
    check_metric_and_k(metric, k)
    nt = n_threads_of(n_threads)
    started = time.perf_counter()
    Qo, Ro = finite_matrix(Q, "Q"), finite_matrix(R, "R")
    if Qo.shape[1] != Ro.shape[1]:
        raise ValueError("Q and R must have the same number of columns")
    m, nR = Qo.shape[0], Ro.shape[0]
    qids, rids = as_ids(q_ids, m), as_ids(r_ids, nR)
    frame = frame_for(metric, Qo, Ro)
    Pq, Pr = prepare_rows(Qo, qids, frame), prepare_rows(Ro, rids, frame)
    cand = Candidates(m, k, cap or default_cap(k))
    times = StepTimes()
    work = QueryScan(Pq.L, Pr.R, Pq.sq, Pq.norm, Pr.sq, Pr.norm, qids, rids, bound_coefficients(metric, Qo.shape[1], bound_scale),
                     bool(exclude_self), cand, block_q, block_r, times)
    prep = time.perf_counter() - started
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(nt) as pool:
        t = time.perf_counter()
        for f in [pool.submit(work.query_block, i0) for i0 in range(0, m, block_q)]:
            f.result()
        wall = time.perf_counter() - t
        out = finish(Qo, qids, Ro, rids, k, metric, bool(exclude_self), cand, [(0, m, 0, nR)], times, pool, nt)
    out[2]["timings"].update(prep=prep, wall_gemm_filter=wall)
    return out


def run_pairs(work, rounds, nt):
    """The block pairs of ``rounds`` on ``nt`` threads; a round never holds a block twice, so no
    two threads update the same row."""
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(nt) as pool:
        for pairs in rounds:
            for f in [pool.submit(work.pair, I, J) for I, J in pairs]:
                f.result()


def join_blocks(P, k, exclude_self, starts, rounds, fallback_ranges, cap, bound_scale, nt, prep=0.0, seed=None):
    """The pairs of blocks of ``rounds`` over the prepared rows P, cut at ``starts``."""
    metric = check_prepared(P)
    cand = Candidates(P.size, k, cap or default_cap(k), seed)
    times = StepTimes()
    work = PairScan(P.L, P.R, P.sq, P.norm, P.ids, bound_coefficients(metric, P.X.shape[1], bound_scale),
                    bool(exclude_self), cand, starts, times)
    t = time.perf_counter()
    run_pairs(work, rounds, nt)
    wall = time.perf_counter() - t
    with ThreadPoolExecutor(nt) as pool:
        out = finish(P.X, P.ids, P.X, P.ids, k, metric, bool(exclude_self), cand, fallback_ranges, times, pool, nt)
    out[2]["timings"].update(prep=prep, wall_gemm_filter=wall)
    return out


#: Relative margin of a seed over the k-th distance it comes from: far above the float64 rounding
#: of a distance computed from the differences ((d + 2) 2^-53 relative, for any d < 2^20), so the
#: true k-th distance lies below the seed and a dropped candidate cannot tie with a kept one.
SEED_MARGIN = 2.0 ** -30


def seed_thresholds(kth_distances, metric, scale=1.0):
    """Seeds in the kernel's prepared space from exact k-th neighbour distances (of the metric,
    computed in float64 from the differences) among any subset of the candidates: an upper bound
    of each row's k-th distance over the whole set. +inf where a row had fewer than k."""
    d = np.asarray(kth_distances, dtype=np.float64)
    if metric == "euclidean":
        value = (d * scale) ** 2
    elif metric == "sqeuclidean":
        value = d * (scale * scale)
    else:
        value = d + SEED_MARGIN  # 1 - cos: absolute rounding near 0
    return value * (1.0 + SEED_MARGIN)


def check_prepared(P):
    metric = P.metric
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS} (got {metric!r})")
    return metric


def block_starts(lo, hi, block):
    return list(range(lo, hi, block))


def self_join_topk(X, ids, k, metric="euclidean", exclude_self=True, block=1024,
                   cap=None, bound_scale=1.0, n_threads=None):
    """Exact top-k of every row of X among the rows of X: one product per block pair I <= J, which
    updates the rows of I (scan of its rows) and of J (scan of its columns)."""
    check_metric_and_k(metric, k)
    started = time.perf_counter()
    Xo = finite_matrix(X, "X")
    n = Xo.shape[0]
    ids = as_ids(ids, n)
    if np.unique(ids).size != n:
        raise ValueError("self_join_topk needs unique ids")
    if k > n - (1 if exclude_self else 0):
        raise ValueError("k larger than the number of admissible neighbours")
    P = prepare_rows(Xo, ids, frame_for(metric, Xo))
    return group_topk(P, k, exclude_self, block, cap, bound_scale, n_threads, time.perf_counter() - started)


def group_topk(P, k, exclude_self=True, block=1024, cap=None, bound_scale=1.0, n_threads=None, prep=0.0):
    """Exact top-k of every prepared row among the others (the rows of one group of an all-points
    run); a row with fewer than k admissible candidates is padded with (-1, +inf)."""
    n = P.size
    block = max(1, min(block, n))
    starts = block_starts(0, n, block) + [n]
    rounds = round_robin(len(starts) - 1)
    return join_blocks(P, k, exclude_self, starts, rounds, [(0, n, 0, n)], cap, bound_scale,
                       n_threads_of(n_threads), prep)


def cross_join_topk(XA, ids_a, XB, ids_b, k, metric="euclidean", exclude_self=True, block=1024,
                    cap=None, bound_scale=1.0, n_threads=None):
    """Exact top-k of every row of A among the rows of B and of every row of B among the rows of A,
    one product per pair (block of A, block of B).

    Returns (ids_A (mA, k), distances_A, ids_B (mB, k), distances_B, info); a row with fewer
    than k admissible candidates on the other side is padded with (-1, +inf)."""
    check_metric_and_k(metric, k)
    started = time.perf_counter()
    XA, XB = finite_matrix(XA, "XA"), finite_matrix(XB, "XB")
    if XA.shape[1] != XB.shape[1]:
        raise ValueError("XA and XB must have the same number of columns")
    frame = frame_for(metric, XA, XB)
    PA = prepare_rows(XA, as_ids(ids_a, XA.shape[0]), frame)
    PB = prepare_rows(XB, as_ids(ids_b, XB.shape[0]), frame)
    return cross_topk(PA, PB, k, exclude_self, block, cap, bound_scale, n_threads, time.perf_counter() - started)


def cross_topk(PA, PB, k, exclude_self=True, block=1024, cap=None, bound_scale=1.0, n_threads=None, prep=0.0,
               seed_a=None, seed_b=None):
    """:func:`cross_join_topk` on rows prepared in one frame; ``seed_a`` / ``seed_b``: optional
    thresholds of the rows of A and B (:class:`Candidates`)."""
    ma, mb = PA.size, PB.size
    P = PA.concat(PB)
    block = max(1, min(block, max(ma, mb)))
    starts = block_starts(0, ma, block) + block_starts(ma, ma + mb, block) + [ma + mb]
    first_b = len(block_starts(0, ma, block))
    # Every round of the circle method holds a block at most once; keep its A x B pairs.
    rounds = [[(I, J) for I, J in pairs if I < first_b <= J] for pairs in round_robin(len(starts) - 1)]
    fallback = [(0, ma, ma, ma + mb), (ma, ma + mb, 0, ma)]
    seed = None
    if seed_a is not None or seed_b is not None:
        seed = np.concatenate([np.full(ma, np.inf) if seed_a is None else seed_a,
                               np.full(mb, np.inf) if seed_b is None else seed_b])
    out_ids, out_d, info = join_blocks(P, k, exclude_self, starts, [r for r in rounds if r], fallback, cap,
                                       bound_scale, n_threads_of(n_threads), prep, seed)
    return out_ids[:ma], out_d[:ma], out_ids[ma:], out_d[ma:], info


def warm_up():
    """Load the machine code of every compiled loop now (numba's cache), by one tiny all-points
    join in blocks: a process that forks workers afterwards hands it to all of them."""
    X = (np.arange(48.0).reshape(16, 3) * 7.0) % 11.0
    self_join_topk(X, np.arange(16), 2, block=4, n_threads=1)
