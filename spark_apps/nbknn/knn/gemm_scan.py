"""The hot loops of the exact kNN kernel (:mod:`nbknn.knn.gemm`), compiled by numba.

Each scan reads one float32 product tile S (S_ij approximates the distance, within the bound e_ij
of :mod:`nbknn.knn.gemm_bound`), keeps per query row a max-heap of the k smallest upper bounds
S + e (its k-th, or the row's seed when that is smaller, is the row's threshold U) and a buffer of candidates whose lower bound S - e does
not exceed U; ``rerank`` recomputes the survivors exactly in float64 and orders them by
(distance, id). A row whose buffer overflows (the bound is too wide for its distances) is marked
for the brute-force fallback.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64


@njit(cache=True, inline="always")
def _f32_up(x):
    # finite float32 value >= x (float64); +inf -> FLT_MAX (S is finite)
    if x >= 3.4028234663852886e38:
        return np.float32(3.4028234663852886e38)
    y = np.float32(x)
    if np.float64(y) < x:
        y = np.nextafter(y, np.float32(np.inf))
    return y

# The three helpers below are the hot loops.  They are written as OR of
# comparisons with unsigned indices: numba's signed indexing adds a
# wrap-around select and float min() reductions are not vectorised by
# LLVM here, while this form compiles to AVX-512/AVX2 compares.
@njit(cache=True, fastmath=True, inline="never")
def _any_le(row, a, b, T):
    c = False
    for t in range(uint64(a), uint64(b)):
        c |= row[t] <= T
    return c

@njit(cache=True, fastmath=True, inline="never")
def _any_le2(row, a, b, T, Tc):
    c1 = False
    c2 = False
    for t in range(uint64(a), uint64(b)):
        v = row[t]
        c1 |= v <= T
        c2 |= v <= Tc[t]
    return c1, c2

@njit(cache=True, inline="always")
def _push(i, j, lo, hi, k, heap, hcnt, thr, bidx, blo, bcnt, ovf):
    # heap of upper bounds (max-heap, k entries)
    hc = hcnt[i]
    if hc < k:
        p = hc
        heap[i, p] = hi
        while p > 0:
            par = (p - 1) >> 1
            if heap[i, par] < heap[i, p]:
                t = heap[i, par]
                heap[i, par] = heap[i, p]
                heap[i, p] = t
                p = par
            else:
                break
        hcnt[i] = hc + 1
        if hc + 1 == k:
            thr[i] = min(thr[i], heap[i, 0])
    elif hi < heap[i, 0]:
        heap[i, 0] = hi
        p = 0
        while True:
            l = 2 * p + 1
            if l >= k:
                break
            r = l + 1
            m = l
            if r < k and heap[i, r] > heap[i, l]:
                m = r
            if heap[i, m] > heap[i, p]:
                t = heap[i, m]
                heap[i, m] = heap[i, p]
                heap[i, p] = t
                p = m
            else:
                break
        thr[i] = min(thr[i], heap[i, 0])
    # candidate buffer
    cap = bidx.shape[1]
    bc = bcnt[i]
    if bc == cap:
        t = thr[i]
        w = 0
        for q in range(bc):
            if blo[i, q] <= t:
                bidx[i, w] = bidx[i, q]
                blo[i, w] = blo[i, q]
                w += 1
        bc = w
        if bc > cap // 2:
            ovf[i] = True
            thr[i] = -np.inf
            bcnt[i] = 0
            return
    bidx[i, bc] = j
    blo[i, bc] = lo
    bcnt[i] = bc + 1

@njit(cache=True, nogil=True)
def scan_rows(S, r0, c0, alpha, beta, kappa, qn, qb, rn, rb, qid, rid,
               excl, k, heap, hcnt, thr, bidx, blo, bcnt, ovf):
    """Rows of S are queries r0+., columns candidates c0+.
    S_ij approximates A_ij; |S_ij - A_ij| <= e_ij."""
    nr, nc = S.shape
    bmax = 0.0
    nmax = 0.0
    for t in range(nc):
        bmax = max(bmax, rb[c0 + t])
        nmax = max(nmax, rn[c0 + t])
    CH = 32
    for r in range(nr):
        i = r0 + r
        if ovf[i]:
            continue
        ai = alpha * qb[i]
        bni = beta * qn[i]
        Ei = ai * bmax + bni + beta * nmax + kappa   # >= e_ij on this tile
        T = _f32_up(thr[i] + Ei)
        row = S[r]
        jj = 0
        while jj < nc:
            je = min(jj + CH, nc)
            if _any_le(row, jj, je, T):
                for t in range(jj, je):
                    if S[r, t] <= T:
                        j = c0 + t
                        s = np.float64(S[r, t])
                        e = ai * rb[j] + bni + beta * rn[j] + kappa
                        lo = s - e
                        if lo <= thr[i]:
                            if excl and qid[i] == rid[j]:
                                continue
                            _push(i, j, lo, s + e, k, heap, hcnt, thr, bidx,
                                  blo, bcnt, ovf)
                            if ovf[i]:
                                break
                            T = _f32_up(thr[i] + Ei)
                if ovf[i]:
                    break
            jj = je

@njit(cache=True, nogil=True)
def scan_both(S, r0, c0, alpha, beta, kappa, xn, xb, ids, excl,
               k, heap, hcnt, thr, bidx, blo, bcnt, ovf):
    """Self-join tile: one pass over S updates the queries r0+. (rows,
    candidates c0+.) and the queries c0+. (columns, candidates r0+.)."""
    nr, nc = S.shape
    bmaxc = 0.0
    nmaxc = 0.0
    for t in range(nc):
        bmaxc = max(bmaxc, xb[c0 + t])
        nmaxc = max(nmaxc, xn[c0 + t])
    bmaxr = 0.0
    nmaxr = 0.0
    for t in range(nr):
        bmaxr = max(bmaxr, xb[r0 + t])
        nmaxr = max(nmaxr, xn[r0 + t])
    Ec = np.empty(nc)
    Tc = np.empty(nc, np.float32)
    for t in range(nc):
        q = c0 + t
        Ec[t] = alpha * xb[q] * bmaxr + beta * (xn[q] + nmaxr) + kappa
        Tc[t] = _f32_up(thr[q] + Ec[t])
    CH = 32
    for r in range(nr):
        i = r0 + r
        ai = alpha * xb[i]
        bni = beta * xn[i]
        Ei = ai * bmaxc + bni + beta * nmaxc + kappa
        T = _f32_up(thr[i] + Ei)   # -inf (overflowed row) -> never passes
        row = S[r]
        jj = 0
        while jj < nc:
            je = min(jj + CH, nc)
            h1, h2 = _any_le2(row, jj, je, T, Tc)
            if h1:
                for t in range(jj, je):
                    if row[t] <= T:
                        j = c0 + t
                        s = np.float64(row[t])
                        e = ai * xb[j] + bni + beta * xn[j] + kappa
                        lo = s - e
                        if lo <= thr[i]:
                            if excl and ids[i] == ids[j]:
                                continue
                            _push(i, j, lo, s + e, k, heap, hcnt, thr, bidx,
                                  blo, bcnt, ovf)
                            T = _f32_up(thr[i] + Ei)
            if h2:
                for t in range(jj, je):
                    if row[t] <= Tc[t]:
                        q = c0 + t
                        s = np.float64(row[t])
                        e = alpha * xb[q] * xb[i] + beta * (xn[q] + xn[i]) + kappa
                        lo = s - e
                        if lo <= thr[q]:
                            if excl and ids[q] == ids[i]:
                                continue
                            _push(q, i, lo, s + e, k, heap, hcnt, thr,
                                  bidx, blo, bcnt, ovf)
                            Tc[t] = _f32_up(thr[q] + Ec[t])
            jj = je

@njit(cache=True, nogil=True)
def rerank(Qo, Ro, qnorm, rnorm, cosine, sq, rid, k, thr, bidx, blo, bcnt,
            ovf, out_ids, out_d, nsurv, i_lo, i_hi):
    d = Qo.shape[1]
    for i in range(i_lo, i_hi):
        if ovf[i]:
            continue
        t = thr[i]
        cnt = 0
        for q in range(bcnt[i]):
            if blo[i, q] <= t:
                cnt += 1
        nsurv[i] = cnt
        cj = np.empty(cnt, np.int64)
        cd = np.empty(cnt)
        cid = np.empty(cnt, np.int64)
        w = 0
        for q in range(bcnt[i]):
            if blo[i, q] <= t:
                j = bidx[i, q]
                acc = 0.0
                if cosine:
                    for f in range(d):
                        acc += Qo[i, f] * Ro[j, f]
                    den = qnorm[i] * rnorm[j]
                    dist = 1.0 if den == 0.0 else 1.0 - acc / den
                else:
                    for f in range(d):
                        df = Qo[i, f] - Ro[j, f]
                        acc += df * df
                    dist = acc if sq else np.sqrt(acc)
                cj[w] = j
                cd[w] = dist
                cid[w] = rid[j]
                w += 1
        o1 = np.argsort(cid, kind="mergesort")
        cd2 = cd[o1]
        o2 = np.argsort(cd2, kind="mergesort")
        kk = min(k, cnt)
        for q in range(kk):
            p = o1[o2[q]]
            out_ids[i, q] = cid[p]
            out_d[i, q] = cd[p]
        for q in range(kk, k):
            out_ids[i, q] = -1
            out_d[i, q] = np.inf
