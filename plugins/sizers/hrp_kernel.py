"""Hierarchical Risk Parity in numba + scipy, equal to riskfolio-lib's ``HCPortfolio`` HRP where it applies.

riskfolio spends ~36 ms per 20-asset solve, mostly in pandas indexing; this kernel does the same arithmetic
on arrays in well under a millisecond. It follows riskfolio 7.x's definition step by step (see
``riskfolio/src/HCPortfolio.py``, ``optimization(model="HRP")``):

1. codependence: ``DataFrame.corr`` (pearson or spearman) — reproduced bit for bit (pandas' Welford
   recurrence for Pearson; average ranks and centred rank sums for Spearman), because an exact tie in
   the distances must break the same way;
2. distance ``sqrt(clip((1 - rho) / 2, 0, 1))``, condensed like ``squareform(dist, checks=False)``;
3. ``scipy.cluster.hierarchy.linkage(method=linkage, optimal_ordering=True)``: the linkage itself is
   scipy's; the optimal leaf ordering is a port of scipy's ``_optimal_leaf_ordering.pyx`` (float32
   partial sums and its quicksort included, so ties resolve identically), since scipy's version spends
   ~1 ms in validation and Python loops;
4. leaf order ``leaves_list``; covariance ``np.cov(returns, rowvar=False)`` (ddof 1, riskfolio's "hist");
5. recursive bisection with the variance risk measure (``rm="MV"``): inverse-variance weights inside
   each half, the half's variance ``w' C w``, split ``alpha = 1 - v_left / (v_left + v_right)``.

No weight bounds (riskfolio's ``w_min``/``w_max`` default to none, so its step 4 never changes HRP
weights). Everything else (other codependences, linkages or risk measures) stays with riskfolio:
:func:`kernel_covers` says which. ``tests/plugins/sizers/test_hrp_kernel.py`` holds the kernel to riskfolio
(<= 1e-12) on real windows and ``benchmarks/hrp.py`` measures both.

Example::

    w = hrp_weights_kernel(returns_252x20, codependence="pearson", linkage="single")
    w.sum()  # -> 1.0, in the columns' order
"""

from __future__ import annotations

import numba as nb
import numpy as np
from scipy.cluster import hierarchy

KERNEL_CODEPENDENCE = frozenset({"pearson", "spearman"})
KERNEL_LINKAGE = frozenset({"single", "average", "complete", "ward"})
KERNEL_RISK_MEASURES = frozenset({"MV"})

# scipy's linkage loop ignores values above 2**30 as "infinity" in the leaf ordering; so does the port
_BIG = 1073741824.0


def kernel_covers(codependence: str, linkage: str, rm: str) -> bool:
    """Whether :func:`hrp_weights_kernel` reproduces riskfolio for this configuration.

    Example::

        kernel_covers("pearson", "single", "MV")   # -> True
        kernel_covers("kendall", "single", "MV")   # -> False: riskfolio computes it
    """
    return codependence in KERNEL_CODEPENDENCE and linkage in KERNEL_LINKAGE and rm in KERNEL_RISK_MEASURES


@nb.njit(cache=True)
def _pearson_nb(x: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    # pandas' nancorr on complete data, i.e. DataFrame.corr's exact bits. Its Welford recurrence per pair
    #   dx = vx - mean_x; mean_x += 1/nobs * dx; ssq_x += (vx - mean_x) * dx; cov += (vx - mean_x) * dy
    # evolves mean_x and ssq_x the same way whatever the partner column is, so those terms are computed
    # once per column; each pair keeps its own accumulator summed in row order, as pandas does
    n, k = x.shape
    after = np.empty((n, k))  # vx - mean_x after the update
    before = np.empty((n, k))  # vx - mean_x before it (dx)
    ssq = np.zeros(k)
    for c in range(k):
        mean = 0.0
        for i in range(n):
            d = x[i, c] - mean
            mean += 1.0 / (i + 1) * d
            before[i, c] = d
            after[i, c] = x[i, c] - mean
            ssq[c] += after[i, c] * d
    cov = np.zeros((k, k))
    for i in range(n):  # rows outermost: independent accumulators, each still summed in row order
        for a in range(k):
            ea = after[i, a]
            for b in range(a + 1):
                cov[a, b] += ea * before[i, b]
    out = np.empty((k, k))
    for a in range(k):
        for b in range(a + 1):
            div = np.sqrt(ssq[a] * ssq[b])
            out[a, b] = out[b, a] = cov[a, b] / div if div != 0 else np.nan
    return out


@nb.njit(cache=True)
def _average_ranks_nb(col: np.ndarray, order: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    # ``order`` sorts ``col``; ties share the mean of their positions (pandas' "average"). The values are
    # exact halves, so any correct algorithm gives the same bits
    n = col.shape[0]
    ranks = np.empty(n)
    i = 0
    while i < n:
        j = i
        while j + 1 < n and col[order[j + 1]] == col[order[i]]:
            j += 1
        r = (i + j + 2) / 2.0
        for t in range(i, j + 1):
            ranks[order[t]] = r
        i = j + 1
    return ranks


@nb.njit(cache=True)
def _spearman_nb(x: np.ndarray, order: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    # pandas' nancorr_spearman fast path (no NaN): centred average ranks and plain sums of their products.
    # Every term is a multiple of 1/4 far below 2**53, so the sums are exact in any order. ``order`` is
    # np.argsort(x, axis=0), which numpy does several times faster than numba's argsort
    n, k = x.shape
    mean = (n + 1) / 2.0
    centred = np.empty((n, k))
    for c in range(k):
        centred[:, c] = _average_ranks_nb(x[:, c], order[:, c]) - mean
    cross = np.zeros((k, k))
    for i in range(n):
        for a in range(k):
            va = centred[i, a]
            for b in range(a + 1):
                cross[a, b] += va * centred[i, b]
    out = np.empty((k, k))
    for a in range(k):
        for b in range(a + 1):
            div = np.sqrt(cross[a, a] * cross[b, b])
            out[a, b] = out[b, a] = cross[a, b] / div if div != 0 else np.nan
    return out


@nb.njit(cache=True)
def _condensed_distance_nb(corr: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    # sqrt(clip((1 - rho) / 2, 0, 1)), upper triangle row by row like squareform(checks=False)
    k = corr.shape[0]
    out = np.empty(k * (k - 1) // 2)
    t = 0
    for a in range(k):
        for b in range(a + 1, k):
            v = (1.0 - corr[a, b]) / 2.0
            if v < 0.0:
                v = 0.0
            elif v > 1.0:
                v = 1.0
            out[t] = np.sqrt(v)  # NaN stays NaN, as with np.clip
            t += 1
    return out


@nb.njit(cache=True)
def _leaves_nb(z: np.ndarray, n: int) -> np.ndarray:  # pragma: no cover - compiled
    # scipy's leaves_list: pre-order, left child first
    out = np.empty(n, np.int64)
    stack = np.empty(2 * n, np.int64)
    stack[0] = 2 * n - 2
    top = 0
    pos = 0
    while top >= 0:
        v = stack[top]
        top -= 1
        if v < n:
            out[pos] = v
            pos += 1
        else:
            stack[top + 1] = np.int64(z[v - n, 1])
            stack[top + 2] = np.int64(z[v - n, 0])
            top += 2
    return out


@nb.njit(cache=True)
def _dual_sort_nb(vals: np.ndarray, idx: np.ndarray, size: int) -> None:  # pragma: no cover - compiled
    # scipy's _simultaneous_sort (median-of-three quicksort, not stable), with an explicit stack instead
    # of recursion; the two halves are disjoint, so the order they are sorted in does not matter
    stack = np.empty((2 * size + 4, 2), np.int64)
    stack[0, 0] = 0
    stack[0, 1] = size
    top = 1
    while top > 0:
        top -= 1
        s = stack[top, 0]
        sz = stack[top, 1]
        if sz <= 1:
            continue
        if sz == 2:
            if vals[s] > vals[s + 1]:
                _swap(vals, idx, s, s + 1)
            continue
        if sz == 3:
            if vals[s] > vals[s + 1]:
                _swap(vals, idx, s, s + 1)
            if vals[s + 1] > vals[s + 2]:
                _swap(vals, idx, s + 1, s + 2)
                if vals[s] > vals[s + 1]:
                    _swap(vals, idx, s, s + 1)
            continue
        p = sz // 2
        last = s + sz - 1
        if vals[s] > vals[last]:
            _swap(vals, idx, s, last)
        if vals[last] > vals[s + p]:
            _swap(vals, idx, last, s + p)
            if vals[s] > vals[last]:
                _swap(vals, idx, s, last)
        pivot = vals[last]
        store = 0
        for i in range(sz - 1):
            if vals[s + i] < pivot:
                _swap(vals, idx, s + i, s + store)
                store += 1
        _swap(vals, idx, s + store, last)
        if store > 1:
            stack[top, 0] = s
            stack[top, 1] = store
            top += 1
        if store + 2 < sz:
            stack[top, 0] = s + store + 1
            stack[top, 1] = sz - store - 1
            top += 1


@nb.njit(cache=True)
def _swap(vals: np.ndarray, idx: np.ndarray, i: int, j: int) -> None:  # pragma: no cover - compiled
    v = vals[i]
    vals[i] = vals[j]
    vals[j] = v
    t = idx[i]
    idx[i] = idx[j]
    idx[j] = t


@nb.njit(cache=True)
def _optimal_leaf_order_nb(z: np.ndarray, dist: np.ndarray, n: int) -> np.ndarray:  # pragma: no cover
    """``leaves_list(optimal_leaf_ordering(z, dist))``: scipy's algorithm (Bar-Joseph et al. 2001)."""
    leaves = _leaves_nb(z, n)
    rank = np.empty(n, np.int64)
    for i in range(n):
        rank[leaves[i]] = i
    # the tree relabelled by leaf position, and the distances in that order
    sz = np.empty((n - 1, 2), np.int64)
    for i in range(n - 1):
        for c in range(2):
            v = np.int64(z[i, c])
            sz[i, c] = rank[v] if v < n else v
    full = np.zeros((n, n))
    t = 0
    for a in range(n):
        for b in range(a + 1, n):
            full[a, b] = full[b, a] = dist[t]
            t += 1
    sd = np.empty((n, n))
    for a in range(n):
        for b in range(n):
            sd[a, b] = full[leaves[a], leaves[b]]
    ranges = np.empty((2 * n - 1, 2), np.int64)
    for v in range(n):
        ranges[v, 0] = v
        ranges[v, 1] = v + 1
    for i in range(n - 1):
        ranges[i + n, 0] = ranges[sz[i, 0], 0]
        ranges[i + n, 1] = ranges[sz[i, 1], 1]

    # identify_swaps: M holds float32 sums as in scipy, so comparisons (and ties) behave the same
    big = np.float32(_BIG)
    m_tab = np.zeros((n, n), np.float32)
    status = np.zeros((n, n, 2), np.int64)
    must_swap = np.zeros(n - 1, np.int64)
    u_cl = np.empty(2, np.int64)
    m_cl = np.empty(2, np.int64)
    w_cl = np.empty(2, np.int64)
    k_cl = np.empty(2, np.int64)
    m_vals = np.empty(n, np.float32)
    m_idx = np.empty(n, np.int64)
    k_vals = np.empty(n, np.float32)
    k_idx = np.empty(n, np.int64)
    for i in range(n - 1):
        vl = sz[i, 0]
        vr = sz[i, 1]
        if vl < n:
            n_u = 1
            u_cl[0] = vl
            m_cl[0] = vl
        else:
            n_u = 2
            u_cl[0] = sz[vl - n, 0]
            m_cl[0] = sz[vl - n, 1]
            u_cl[1] = sz[vl - n, 1]
            m_cl[1] = sz[vl - n, 0]
        if vr < n:
            n_w = 1
            w_cl[0] = vr
            k_cl[0] = vr
        else:
            n_w = 2
            w_cl[0] = sz[vr - n, 1]
            w_cl[1] = sz[vr - n, 0]
            k_cl[0] = sz[vr - n, 0]
            k_cl[1] = sz[vr - n, 1]
        for swap_l in range(n_u):
            for swap_r in range(n_w):
                u_min, u_max = ranges[u_cl[swap_l], 0], ranges[u_cl[swap_l], 1]
                m_min, m_max = ranges[m_cl[swap_l], 0], ranges[m_cl[swap_l], 1]
                w_min, w_max = ranges[w_cl[swap_r], 0], ranges[w_cl[swap_r], 1]
                k_min, k_max = ranges[k_cl[swap_r], 0], ranges[k_cl[swap_r], 1]
                min_km = big
                for m in range(m_min, m_max):
                    for k in range(k_min, k_max):
                        # C compares the double with the float promoted, then stores it rounded
                        if sd[m, k] < np.float64(min_km):
                            min_km = np.float32(sd[m, k])
                for u in range(u_min, u_max):
                    for j in range(m_max - m_min):
                        m_vals[j] = m_tab[m_min + j, u]
                        m_idx[j] = m_min + j
                    _dual_sort_nb(m_vals, m_idx, m_max - m_min)
                    for w in range(w_min, w_max):
                        for j in range(k_max - k_min):
                            k_vals[j] = m_tab[k_min + j, w]
                            k_idx[j] = k_min + j
                        _dual_sort_nb(k_vals, k_idx, k_max - k_min)
                        cur = big
                        for mi in range(m_max - m_min):
                            m = m_idx[mi]
                            if m_tab[u, m] + m_tab[w, k_idx[0]] + min_km >= cur:
                                break
                            for ki in range(k_max - k_min):
                                k = k_idx[ki]
                                if m_tab[u, m] + m_tab[w, k] + min_km >= cur:
                                    break
                                # float + float, then + double, stored as float: scipy's C expression
                                value = np.float32((m_tab[u, m] + m_tab[w, k]) + sd[m, k])
                                if value < cur:
                                    cur = value
                        m_tab[u, w] = cur
                        m_tab[w, u] = cur
                        status[u, w, 0] = swap_l
                        status[w, u, 0] = swap_l
                        status[u, w, 1] = swap_r
                        status[w, u, 1] = swap_r
        cur = big
        best_u = 0
        best_w = 0
        for u in range(ranges[vl, 0], ranges[vl, 1]):
            for w in range(ranges[vr, 0], ranges[vr, 1]):
                if m_tab[u, w] < cur:
                    cur = m_tab[u, w]
                    best_u = u
                    best_w = w
        if vl >= n:
            must_swap[vl - n] = status[best_u, best_w, 0]
        if vr >= n:
            must_swap[vr - n] = status[best_u, best_w, 1]

    # a node is flipped if an odd number of itself and its ancestors must swap; parents come after
    # their children in a linkage, so walking down from the root sees every parent first
    parent = np.full(n - 1, -1, np.int64)
    for i in range(n - 1):
        for c in range(2):
            v = np.int64(z[i, c])
            if v >= n:
                parent[v - n] = i
    flip = np.zeros(n - 1, np.int64)
    for i in range(n - 2, -1, -1):
        up = flip[parent[i]] if parent[i] >= 0 else 0
        flip[i] = (must_swap[i] + up) % 2
    swapped = z.copy()
    for i in range(n - 1):
        if flip[i]:
            swapped[i, 0] = z[i, 1]
            swapped[i, 1] = z[i, 0]
    return _leaves_nb(swapped, n)


@nb.njit(cache=True)
def _cluster_variance_nb(cov: np.ndarray, order: np.ndarray, a: int, b: int) -> float:  # pragma: no cover
    # riskfolio's _naive_risk (inverse variance, each variance as sqrt(.)**2) then Sharpe_Risk(MV)**2
    size = b - a
    inv = np.empty(size)
    total = 0.0
    for t in range(size):
        k = order[a + t]
        r = np.sqrt(cov[k, k])
        inv[t] = 1.0 / (r * r)
        total += inv[t]
    scale = 1.0 / total
    for t in range(size):
        inv[t] *= scale
    var = 0.0
    for s in range(size):
        row = 0.0
        for t in range(size):
            row += cov[order[a + s], order[a + t]] * inv[t]
        var += inv[s] * row
    r = np.sqrt(var)
    return r * r


@nb.njit(cache=True)
def _bisection_nb(cov: np.ndarray, order: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    # riskfolio's _recursive_bisection: split each run of the leaf order in halves (left gets len // 2);
    # a parent is always split before its halves, so every weight sees its factors in riskfolio's order
    n = order.shape[0]
    w = np.ones(n)
    stack = np.empty((2 * n, 2), np.int64)
    stack[0, 0] = 0
    stack[0, 1] = n
    top = 1
    while top > 0:
        top -= 1
        a = stack[top, 0]
        b = stack[top, 1]
        if b - a < 2:
            continue
        mid = a + (b - a) // 2
        v_left = _cluster_variance_nb(cov, order, a, mid)
        v_right = _cluster_variance_nb(cov, order, mid, b)
        alpha = 1.0 - v_left / (v_left + v_right)
        for t in range(a, mid):
            w[order[t]] *= alpha
        for t in range(mid, b):
            w[order[t]] *= 1.0 - alpha
        stack[top, 0] = a
        stack[top, 1] = mid
        stack[top + 1, 0] = mid
        stack[top + 1, 1] = b
        top += 2
    return w


def hrp_weights_kernel(returns: np.ndarray, codependence: str = "pearson", linkage: str = "single") -> np.ndarray:
    """HRP weights (variance risk measure) of the columns of ``returns`` (rows are dates), summing to 1.

    Equal to ``rp.HCPortfolio(returns=df).optimization(model="HRP", codependence=codependence,
    linkage=linkage, rm="MV", leaf_order=True)`` to ~1e-16 for the configurations :func:`kernel_covers`
    accepts. ``returns`` must be finite, with at least 2 rows and 2 columns; a column without variance makes
    the distances undefined and raises ``ValueError`` (as riskfolio's scipy call does).

    Example::

        rng = np.random.default_rng(0)
        hrp_weights_kernel(rng.normal(0, 0.01, (252, 5)), "spearman", "ward")  # -> 5 weights, sum 1
    """
    if codependence not in KERNEL_CODEPENDENCE:
        raise ValueError(f"codependence {codependence!r} is not covered by the kernel; use riskfolio")
    if linkage not in KERNEL_LINKAGE:
        raise ValueError(f"linkage {linkage!r} is not covered by the kernel; use riskfolio")
    x = np.ascontiguousarray(returns, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"returns must be 2-D with at least 2 rows and 2 columns, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("returns must be finite (drop incomplete columns first)")
    n = x.shape[1]
    corr = _pearson_nb(x) if codependence == "pearson" else _spearman_nb(x, np.argsort(x, axis=0))
    dist = _condensed_distance_nb(corr)
    if not np.isfinite(dist).all():
        raise ValueError("a column of returns has no variance: its correlations, and HRP, are undefined")
    z = hierarchy.linkage(dist, method=linkage)
    order = _optimal_leaf_order_nb(z, dist, n)
    cov = np.cov(x, rowvar=False)
    return _bisection_nb(cov, order)
