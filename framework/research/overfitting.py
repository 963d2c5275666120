"""Backtest-overfitting statistics: PBO by CSCV, and combinatorial purged cross-validation (CPCV).

References:
    * Bailey, D. H., Borwein, J. M., López de Prado, M. and Zhu, Q. J. (2017). "The Probability of
      Backtest Overfitting." Journal of Computational Finance 20(4). -- combinatorially symmetric
      cross-validation (CSCV), PBO, performance degradation, probability of loss.
    * López de Prado, M. (2018). "Advances in Financial Machine Learning", ch. 7 and 12. -- purging,
      embargo and combinatorial purged cross-validation (CPCV) with its backtest paths.

Both work on a **return matrix**: one column per trial (sweep combination), one row per bar of the
common evaluation period. Performance is the annualised Sharpe ratio (mean / std with ddof=1, times
sqrt(periods per year)); a column without variance (a trial that never trades) has Sharpe 0.

PBO (CSCV): the rows are cut into ``S`` (even) contiguous blocks of equal size (the oldest ``T mod S``
rows are dropped). For each of the C(S, S/2) ways to pick half the blocks as in-sample (IS), the
complement is out-of-sample (OOS); the trial with the best IS Sharpe is located in the OOS ranking,
``w = rank / (N + 1)`` (rank 1 = worst, ties averaged) and its logit ``ln(w / (1 - w))`` recorded.
PBO is the share of logits <= 0: how often the IS winner is at or below the OOS median.

CPCV: the rows are cut into ``n_groups`` contiguous groups; each of the C(N, k) splits tests ``k``
groups and trains on the rest, minus ``purge`` bars before and ``embargo`` bars after every test group.
A split's chosen trial is the best by train Sharpe; its returns on the test groups are out of sample.
Every group is tested by C(N-1, k-1) splits, so the OOS pieces assemble into C(N, k)·k/N complete
backtest paths, each a full out-of-sample history whose Sharpe is one draw of the OOS distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

__all__ = [
    "CpcvResult",
    "CpcvSplit",
    "PboResult",
    "annual_sharpe",
    "check_cpcv_sizes",
    "cpcv",
    "cpcv_paths",
    "cpcv_splits",
    "n_paths",
    "pbo",
]

PERIODS_PER_YEAR = 252  # the same annualisation as qf.report.metrics
MAX_SPLITS = 20_000  # C(N, k) grows fast: C(40, 20) would never finish


def annual_sharpe(returns: np.ndarray, periods_per_year: float = PERIODS_PER_YEAR) -> np.ndarray:
    """Annualised Sharpe of each column of ``returns`` (T × N); 0 where a column has no variance.

    Example:
        >>> annual_sharpe(np.array([[0.01, 0.0], [-0.01, 0.0], [0.02, 0.0]]), 1).round(3).tolist()
        [0.436, 0.0]
    """
    r = np.asarray(returns, dtype=float)
    if r.ndim == 1:
        r = r[:, None]
    mean = r.mean(axis=0)
    std = r.std(axis=0, ddof=1) if r.shape[0] > 1 else np.zeros(r.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        sr = np.where(std > 1e-15, mean / np.where(std > 1e-15, std, 1.0), 0.0)
    return sr * math.sqrt(periods_per_year)


def _block_sharpe(s1: np.ndarray, s2: np.ndarray, n: int, ppy: float) -> np.ndarray:
    """Sharpe from the sums of returns and squared returns over ``n`` rows (vectorised over trials)."""
    mean = s1 / n
    var = np.maximum(s2 - n * mean**2, 0.0) / max(n - 1, 1)
    std = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        sr = np.where(std > 1e-15, mean / np.where(std > 1e-15, std, 1.0), 0.0)
    return sr * math.sqrt(ppy)


@dataclass(frozen=True)
class PboResult:
    """Outcome of CSCV on a T × N return matrix."""

    pbo: float
    """Share of splits whose IS-best trial ranks at or below the OOS median (logit <= 0)."""
    logits: np.ndarray
    """The logit of the IS-best trial's relative OOS rank, one per split."""
    is_sharpe: np.ndarray
    """IS Sharpe of the IS-best trial, one per split."""
    oos_sharpe: np.ndarray
    """OOS Sharpe of the same trial, one per split."""
    degradation_slope: float
    """Slope of the least-squares line of OOS on IS Sharpe of the chosen trial (negative: overfit)."""
    degradation_intercept: float
    prob_loss: float
    """Share of splits where the IS-best trial loses money out of sample (OOS Sharpe < 0)."""
    n_partitions: int
    n_trials: int
    n_obs: int
    """Rows used (T minus the dropped remainder)."""

    def summary(self) -> dict[str, Any]:
        """The JSON-friendly figures (best.json)."""
        return {"pbo": self.pbo, "pbo_partitions": self.n_partitions, "pbo_splits": int(self.logits.size),
                "pbo_degradation_slope": self.degradation_slope, "pbo_prob_loss": self.prob_loss,
                "pbo_median_logit": float(np.median(self.logits))}


def pbo(returns: np.ndarray | pd.DataFrame, n_partitions: int = 16,
        periods_per_year: float = PERIODS_PER_YEAR) -> PboResult:
    """Probability of backtest overfitting of choosing the best-Sharpe column of ``returns`` (T × N).

    Raises ``ValueError`` when ``n_partitions`` is odd or < 2, there are fewer than 2 trials, or fewer
    than 2 rows per partition.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> noise = rng.normal(0, 0.01, (800, 20))
        >>> 0.2 < pbo(noise, 8).pbo < 0.8          # no skill anywhere: the IS winner is a coin flip OOS
        True
        >>> noise[:, 3] += 0.004                   # one trial that is genuinely better
        >>> pbo(noise, 8).pbo
        0.0
    """
    r = np.asarray(returns, dtype=float)
    if r.ndim != 2:
        raise ValueError("returns must be a 2-d matrix (bars × trials)")
    s = n_partitions
    if isinstance(s, bool) or int(s) != s or s < 2 or s % 2:
        raise ValueError(f"n_partitions must be an even integer >= 2, got {n_partitions!r}")
    t, n = r.shape
    if n < 2:
        raise ValueError(f"PBO needs at least 2 trials, got {n}")
    size = t // s
    if size < 2:
        raise ValueError(f"PBO needs at least 2 rows per partition: {t} rows for {s} partitions")
    if not np.all(np.isfinite(r)):
        raise ValueError("returns must be finite (align the trials on a common period first)")
    r = r[t - size * s:]  # drop the oldest remainder so that every block has the same length
    blocks = r.reshape(s, size, n)
    s1, s2 = blocks.sum(axis=1), (blocks**2).sum(axis=1)  # (S, N) sums per block
    tot1, tot2 = s1.sum(axis=0), s2.sum(axis=0)
    half = size * s // 2
    logits, is_best, oos_best = [], [], []
    for chosen in combinations(range(s), s // 2):
        idx = list(chosen)
        i1, i2 = s1[idx].sum(axis=0), s2[idx].sum(axis=0)
        is_sr = _block_sharpe(i1, i2, half, periods_per_year)
        oos_sr = _block_sharpe(tot1 - i1, tot2 - i2, half, periods_per_year)
        best = int(np.argmax(is_sr))  # first of equal bests: deterministic
        w = rankdata(oos_sr)[best] / (n + 1)
        logits.append(math.log(w / (1 - w)))
        is_best.append(is_sr[best])
        oos_best.append(oos_sr[best])
    lg, isb, oob = np.array(logits), np.array(is_best), np.array(oos_best)
    if np.ptp(isb) > 0:
        slope, intercept = np.polyfit(isb, oob, 1)
    else:
        slope, intercept = float("nan"), float(oob.mean())
    return PboResult(float(np.mean(lg <= 0)), lg, isb, oob, float(slope), float(intercept),
                     float(np.mean(oob < 0)), s, n, size * s)


# ---------------------------------------------------------------------------------------------- CPCV


def n_paths(n_groups: int, n_test_groups: int) -> int:
    """Number of complete backtest paths of CPCV: C(N, k)·k/N (= C(N-1, k-1)).

    Example:
        >>> n_paths(6, 2), n_paths(10, 2), n_paths(6, 1)
        (5, 9, 1)
    """
    return math.comb(n_groups, n_test_groups) * n_test_groups // n_groups


@dataclass(frozen=True)
class CpcvSplit:
    """One CPCV split: its test groups, and the row positions it trains and tests on."""

    index: int
    test_groups: tuple[int, ...]
    train: np.ndarray
    test: np.ndarray


def _group_bounds(n_rows: int, n_groups: int) -> list[tuple[int, int]]:
    """Contiguous groups of near-equal size (the first ``n_rows mod n_groups`` one row longer)."""
    edges = np.linspace(0, n_rows, n_groups + 1).round().astype(int)
    return [(int(edges[g]), int(edges[g + 1])) for g in range(n_groups)]


def check_cpcv_sizes(n_groups: int, n_test_groups: int, purge: int = 0, embargo: int = 0) -> None:
    """Raise ``ValueError`` for sizes no data length can make valid (or C(N, k) beyond ``MAX_SPLITS``).

    Example:
        >>> check_cpcv_sizes(6, 2, 5, 5)
    """
    for name, value, minimum in (("n_groups", n_groups, 2), ("n_test_groups", n_test_groups, 1),
                                 ("purge", purge, 0), ("embargo", embargo, 0)):
        if isinstance(value, bool) or int(value) != value or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if n_test_groups >= n_groups:
        raise ValueError(f"n_test_groups ({n_test_groups}) must be smaller than n_groups ({n_groups})")
    if math.comb(n_groups, n_test_groups) > MAX_SPLITS:
        raise ValueError(f"C({n_groups}, {n_test_groups}) = {math.comb(n_groups, n_test_groups):,} splits is more than "
                         f"{MAX_SPLITS:,}; use fewer groups or fewer test groups")


def cpcv_splits(n_rows: int, n_groups: int, n_test_groups: int, purge: int = 0, embargo: int = 0) -> list[CpcvSplit]:
    """The C(n_groups, n_test_groups) splits of ``n_rows`` rows, train parts purged and embargoed.

    ``purge`` train rows are dropped before each test group (labels or look-backs reaching into it),
    ``embargo`` train rows after it (serial correlation leaking back into training).

    Example:
        >>> s = cpcv_splits(12, 4, 2, purge=1, embargo=1)
        >>> len(s), s[0].test_groups, s[0].test.tolist(), s[0].train.tolist()
        (6, (0, 1), [0, 1, 2, 3, 4, 5], [7, 8, 9, 10, 11])
    """
    check_cpcv_sizes(n_groups, n_test_groups, purge, embargo)
    bounds = _group_bounds(n_rows, n_groups)
    if min(b - a for a, b in bounds) < 2:
        raise ValueError(f"{n_rows} bars are too few for {n_groups} groups (each needs at least 2 bars)")
    splits = []
    for i, groups in enumerate(combinations(range(n_groups), n_test_groups)):
        test_mask = np.zeros(n_rows, bool)
        train_mask = np.ones(n_rows, bool)
        for g in groups:
            a, b = bounds[g]
            test_mask[a:b] = True
            train_mask[max(0, a - purge):min(n_rows, b + embargo)] = False
        if not train_mask.any():
            raise ValueError(f"purge + embargo ({purge} + {embargo}) leave no training bars in split {groups}")
        splits.append(CpcvSplit(i, groups, np.flatnonzero(train_mask), np.flatnonzero(test_mask)))
    return splits


def cpcv_paths(splits: list[CpcvSplit], n_groups: int) -> list[list[int]]:
    """For each backtest path, the split that supplies each group's out-of-sample piece.

    Path ``j`` takes group ``g`` from the ``j``-th split (in split order) that tests ``g``.

    Example:
        >>> cpcv_paths(cpcv_splits(12, 3, 2), 3)
        [[0, 0, 1], [1, 2, 2]]
    """
    by_group: list[list[int]] = [[s.index for s in splits if g in s.test_groups] for g in range(n_groups)]
    counts = {len(v) for v in by_group}
    assert len(counts) == 1, "every group is tested by the same number of splits"
    return [[by_group[g][j] for g in range(n_groups)] for j in range(counts.pop())]


@dataclass(frozen=True)
class CpcvResult:
    """CPCV outcome: one row per split (choice, train and test Sharpe) and one per backtest path."""

    splits: pd.DataFrame
    paths: pd.DataFrame
    path_returns: pd.DataFrame
    """Out-of-sample returns of each path (columns), indexed like the input rows."""

    def summary(self) -> dict[str, Any]:
        """Distribution of the paths' OOS Sharpe ratios."""
        sr = self.paths["sharpe"].to_numpy(dtype=float)
        return {"n_splits": len(self.splits), "n_paths": len(self.paths), "oos_sharpe_mean": float(sr.mean()),
                "oos_sharpe_std": float(sr.std(ddof=1)) if sr.size > 1 else 0.0,
                "oos_sharpe_min": float(sr.min()), "oos_sharpe_median": float(np.median(sr)),
                "oos_sharpe_max": float(sr.max()), "share_paths_sharpe_positive": float(np.mean(sr > 0))}


def cpcv(returns: pd.DataFrame, n_groups: int, n_test_groups: int, purge: int = 0, embargo: int = 0,
         labels: list[str] | None = None, periods_per_year: float = PERIODS_PER_YEAR) -> CpcvResult:
    """CPCV of choosing, on each split's train rows, the best-Sharpe column of ``returns`` (T × N).

    ``labels`` name the columns in the output (default: the column names).

    Example:
        >>> idx = pd.bdate_range("2020-01-01", periods=120)
        >>> r = pd.DataFrame(np.random.default_rng(1).normal(0, 0.01, (120, 3)), index=idx)
        >>> res = cpcv(r, 6, 2, purge=2, embargo=1)
        >>> len(res.splits), len(res.paths)
        (15, 5)
    """
    values = returns.to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError("returns must be finite (align the trials on a common period first)")
    names = labels if labels is not None else [str(c) for c in returns.columns]
    splits = cpcv_splits(len(values), n_groups, n_test_groups, purge, embargo)
    bounds = _group_bounds(len(values), n_groups)
    chosen: list[int] = []
    rows = []
    for sp in splits:
        train_sr = annual_sharpe(values[sp.train], periods_per_year)
        best = int(np.argmax(train_sr))
        chosen.append(best)
        test_sr = float(annual_sharpe(values[sp.test, best], periods_per_year)[0])
        rows.append({"split": sp.index, "test_groups": " ".join(str(g) for g in sp.test_groups),
                     "train_bars": sp.train.size, "test_bars": sp.test.size, "chosen": names[best],
                     "train_sharpe": float(train_sr[best]), "test_sharpe": test_sr})
    path_cols = {}
    path_rows = []
    for j, supply in enumerate(cpcv_paths(splits, n_groups)):
        piece = np.empty(len(values))
        for g, split_i in enumerate(supply):
            a, b = bounds[g]
            piece[a:b] = values[a:b, chosen[split_i]]
        path_cols[j] = piece
        sr = float(annual_sharpe(piece, periods_per_year)[0])
        path_rows.append({"path": j, "sharpe": sr, "total_return": float(np.prod(1 + piece) - 1),
                          "choices": "; ".join(names[chosen[s]] for s in supply)})
    return CpcvResult(pd.DataFrame(rows), pd.DataFrame(path_rows), pd.DataFrame(path_cols, index=returns.index))
