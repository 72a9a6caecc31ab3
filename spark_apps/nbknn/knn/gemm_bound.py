"""Exact k nearest neighbours from float32 matrix products: the preparation and the proven error bound.

The kernel is :mod:`nbknn.knn.gemm`; its hot loops are in :mod:`nbknn.knn.gemm_scan`.

API
---
exact_topk(Q, q_ids, R, r_ids, k, metric="euclidean", exclude_self=False, ...)
self_join_topk(X, ids, k, metric="euclidean", exclude_self=True, ...)
    -> (nbr_ids  int64  (m, k),  distances float64 (m, k),  info dict)

``info["fallback_rows"]`` is the number of query rows whose candidate set was too
large (bound too wide) and which were recomputed by direct float64 brute force;
``info["timings"]`` holds seconds per step (gemm, filter, rerank, fallback, prep).
If fewer than k admissible neighbours exist for a row (only possible when several
reference rows share the query's id) the tail is padded with id -1 / +inf.

"Exact" means: identical ids and distances (to ~1e-12 relative) to a float64 brute
force that computes euclidean as sqrt(sum((x-y)**2)), sqeuclidean as sum((x-y)**2),
cosine as 1 - x.y/(|x||y|) (1 when either vector is zero), ordered by
(distance, id) ascending, with entries whose id equals the query id removed when
exclude_self.

Method
------
1. Preparation (float64).  euclidean/sqeuclidean: subtract the float64 mean of the
   reference set (of X for the self-join) and multiply by a power of two 2**-p so
   that max|entry| lies in [0.5, 1) (exact scaling; keeps float32 far from
   overflow).  cosine: divide each row by its float64 norm (zero rows stay 0).
   x denotes such a prepared float64 row, n_x = sum(x*x) (float64), |x| = sqrt(n_x).
2. One sgemm per tile on augmented float32 operands (D = d + 2 columns)
       euclid:  L_i = [x~_i, n~_i, 1],  R_j = [-2 x~_j, 1, n~_j]
       cosine:  L_i = [x~_i, 1, 0],     R_j = [-x~_j, 1, 0]
   (x~ = fl32(x), n~ = fl32(n); -2 x~ is exact), so that
       S_ij = fl32(L_i . R_j) ~ A_ij = n_i + n_j - 2 x_i.x_j   resp.  1 - x_i.x_j
   directly: the filter is then a bare float32 comparison of S with a per-row
   (and, for the symmetric pass, per-column) threshold.
3. Error bound (the proof).  u = 2**-24, gamma_D = D u / (1 - D u).
   (a) input rounding: x~_t = x_t (1 + a_t), |a_t| <= u, so
       |x~_i.x~_j - x_i.x_j| <= (2u + u^2) sum_t |x_it x_jt| <= (2u + u^2)|x_i||x_j|
       (Cauchy-Schwarz), and |n~ - n| <= u n.
   (b) the float32 dot product of length D, in ANY summation order / blocking /
       FMA use of the BLAS kernel (each order is a summation tree of depth <= D;
       Higham, Accuracy and Stability, eq. 3.5 / Lemma 3.1):
       |S_ij - L_i.R_j| <= gamma_D sum_t |L_it R_jt|
                        <= gamma_D (2 (1+u)^2 |x_i||x_j| + (1+u)(n_i + n_j)).
   => euclid: |S_ij - A_ij| <= 2 g1 |x_i||x_j| + g2 (n_i + n_j),
             g1 = gamma_D (1+u)^2 + 2u + u^2,  g2 = gamma_D (1+u) + u;
      cosine: |S_ij - A_ij| <= g1 |x_i||x_j| + gamma_D.
      (g1 is multiplied by 1 + 2**-20 because |x| is itself a rounded sqrt.)
   (c) underflow, also if the BLAS flushes subnormals to zero (FTZ/DAZ): each
       flushed input, product or partial sum errs by < 2**-126 absolutely; with
       |entries| <= 1 after scaling this adds < 8 (D) 2**-126; we add
       kappa_abs = 16 (d + 2) 2**-126.
   (d) everything in float64: norms n_i (gamma_d^64 relative), the centering
       fl(x - mu) (<= 6 u64 (n_i + n_j) on |x_i - x_j|^2), the reference's own
       rounding of sum((x-y)**2) (<= (d+2) u64 |x-y|^2 <= 2(d+2) u64 (n_i+n_j))
       resp. of 1 - x.y/(|x||y|) (<= (2d+10) u64 absolute), the evaluation of
       S -/+ e and of the thresholds, and a margin of 4 u64 of the squared
       distance so that the final float64 sqrt cannot merge a dropped value
       with a kept one into a tie: all together < (3d + 40) u64 (n_i + n_j)
       resp. (3d + 40) u64, u64 = 2**-53.  We use h = (4d + 64) u64.
   Hence, with D_ij the reference value (squared and scaled for euclid),
       |S_ij - D_ij| <= e_ij = alpha |x_i||x_j| + beta (n_i + n_j) + kappa,
       euclid: alpha = 2 g1, beta = g2 + h, kappa = kappa_abs
       cosine: alpha = g1,   beta = 0,      kappa = gamma_D + h + kappa_abs.
   Per row we keep U_i = k-th smallest upper bound S_ij + e_ij over the
   admissible candidates seen so far (a max-heap of k values).  Those k
   candidates have D <= U_i, so the k-th smallest D, and every candidate tied
   with it, is <= U_i.  A candidate is dropped only when
   lower_ij = S_ij - e_ij > U_i  (U_i only decreases, so dropping against the
   running value is safe): then D_ij > U_i >= k other D's strictly (with the
   sqrt margin of (d)), so it cannot be in the answer, not even via a tie
   broken by id.  The vectorised pre-test uses a per-row bound E_i >= e_ij for
   the whole tile (max |x_j|, max n_j of the tile) and a threshold rounded up
   to float32, so it only lets more through; the exact test above is then
   applied in float64 to the few that pass.
4. Survivors (lower <= final U_i) are re-ranked from the ORIGINAL float64 rows:
   sum((x-y)**2) from the differences (sqrt for euclidean), or
   1 - x.y/(|x||y|) for cosine, and sorted by (distance, id).  Rows whose
   candidate buffer (capacity cap = 4k + 64) is still more than half full after
   compaction (bound too wide compared with the spread of the distances:
   near-duplicate clusters) stop collecting, are recomputed by chunked direct
   float64 brute force and counted (info["fallback_rows"]).
5. Self-join: for block pairs I <= J one product S_IJ updates rows of I (scan of
   the rows of S) and rows of J (scan of the columns of S) in ONE pass over S
   (gemm_scan.scan_both).  Pairs are scheduled in round-robin rounds (every block at most
   once per round), so the worker threads never touch the same query row.
6. Threads: each worker runs a single-threaded sgemm on its own tile (BLAS
   limited to 1 thread through threadpoolctl) and then filters that tile while
   it is still in cache; no numba parallel region, no alternation between the
   BLAS and the numba/OpenMP thread pools (that alternation made the first
   version 5-10x slower on this 2-core machine through spin-waiting).
"""

from __future__ import annotations

import math

import numpy as np

METRICS = ("euclidean", "sqeuclidean", "cosine")
U32 = 2.0 ** -24



def pow2_scale(*arrays):
    """A power of two 2**-p with max|entry| * 2**-p in [0.5, 1): an exact scaling."""
    m = 0.0
    for a in arrays:
        if a.size:
            m = max(m, float(np.max(np.abs(a))))
    if m == 0.0 or not np.isfinite(m):
        return 1.0
    _, e = math.frexp(m)  # m = f * 2**e, f in [0.5,1)
    return math.ldexp(1.0, -e)


def row_norms(X):
    """Euclidean norm of every row (float64)."""
    return np.sqrt(np.einsum("ij,ij->i", X, X))


def prepare(X, metric, mu=None, scale=1.0):
    """Prepared float64 rows x, their squared norms n, and the two augmented
    float32 operands L = [x, n, 1] / Rt = [-2x, 1, n] (euclid) or
    L = [x, 1, 0] / Rt = [-x, 1, 0] (cosine) so that L_i . Rt_j approximates
    A_ij = n_i + n_j - 2 x_i.x_j  resp.  1 - x_i.x_j  directly."""
    m, d = X.shape
    if metric == "cosine":
        nrm = row_norms(X)
        Xs = X / np.where(nrm > 0, nrm, 1.0)[:, None]
    else:
        Xs = (X - mu) * scale
    n = np.einsum("ij,ij->i", Xs, Xs)
    L = np.empty((m, d + 2), np.float32)
    Rt = np.empty((m, d + 2), np.float32)
    L[:, :d] = Xs
    if metric == "cosine":
        Rt[:, :d] = -L[:, :d]
        L[:, d] = 1.0
        Rt[:, d] = 1.0
        L[:, d + 1] = 0.0
        Rt[:, d + 1] = 0.0
    else:
        Rt[:, :d] = -2.0 * L[:, :d]      # exact (power of two)
        L[:, d] = n
        Rt[:, d] = 1.0
        L[:, d + 1] = 1.0
        Rt[:, d + 1] = n
    return L, Rt, n, np.sqrt(n)


def bound_coefficients(metric, d, bound_scale=1.0):
    """(alpha, beta, kappa) of e_ij = alpha |x_i||x_j| + beta (n_i + n_j) + kappa (module docstring).

    ``bound_scale`` multiplies the bound: 1.0 is the proven one; the tests pass 0.0 to show that
    without it the answers go wrong."""
    u = U32
    D = d + 2
    gam = D * u / (1.0 - D * u)
    g1 = (gam * (1 + u) ** 2 + 2 * u + u * u) * (1 + 2.0 ** -20)
    g2 = gam * (1 + u) + u
    h = (4 * d + 64) * 2.0 ** -53
    abs_term = 16 * (d + 2) * 2.0 ** -126
    if metric == "cosine":
        alpha, beta, kappa = g1, 0.0, gam + h + abs_term
    else:
        alpha, beta, kappa = 2 * g1, g2 + h, abs_term
    return alpha * bound_scale, beta * bound_scale, kappa * bound_scale
