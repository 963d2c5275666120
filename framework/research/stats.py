"""Sharpe-ratio inference: probabilistic and deflated Sharpe ratios, expected maximum Sharpe.

References:
    * Bailey, D. H. and López de Prado, M. (2012). "The Sharpe Ratio Efficient Frontier."
      Journal of Risk 15(2). -- probabilistic Sharpe ratio (PSR) and minimum track record length.
    * Bailey, D. H. and López de Prado, M. (2014). "The Deflated Sharpe Ratio: Correcting for
      Selection Bias, Backtest Overfitting and Non-Normality." Journal of Portfolio Management 40(5).
      -- deflated Sharpe ratio (DSR) and the expected maximum Sharpe of N trials.

Conventions (the formulas are only right with these):
    * Sharpe ratios are **per period** (per bar: daily returns -> daily SR), never annualised, unless
      a function is given ``periods_per_year``: then the Sharpe inputs (and the variance of trial
      Sharpes) are taken as annualised and converted with ``SR / sqrt(ppy)`` and ``V / ppy``.
      Sweep tables (:mod:`qf.research.sweep`) hold Sharpe ratios annualised with ``sqrt(252)``.
    * ``skew`` is the sample skewness and ``kurtosis`` the **non-excess** (Pearson) kurtosis of the
      per-period returns: 3 for a normal distribution. Both are the population (biased) moment ratios,
      as in the papers.
    * ``n_obs`` (the papers' T) is the number of return observations behind the Sharpe estimate.

The DSR paper's worked example (SR 2.5 annualised over T=1250 days, skew -3, kurtosis 10, N=100
trials with an annualised variance of trial SRs of 0.5, 250 trading days a year) gives an expected
maximum SR of 0.1132 per day and DSR = 0.9004; ``tests/research/test_stats.py`` reproduces it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "EULER_GAMMA",
    "SharpeStats",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "min_track_record_length",
    "probabilistic_sharpe_ratio",
    "sharpe_stats",
]

EULER_GAMMA = 0.5772156649015329
"""Euler-Mascheroni constant, used by the expected-maximum approximation."""

_STD_NORMAL = NormalDist()


def _norm_cdf(z: float) -> float:
    return _STD_NORMAL.cdf(z)


def _norm_ppf(p: float) -> float:
    return _STD_NORMAL.inv_cdf(p)


@dataclass(frozen=True)
class SharpeStats:
    """Per-period Sharpe ratio and the return moments the PSR/DSR need."""

    sharpe: float
    """mean / std (ddof=1) of the per-period returns."""
    skew: float
    """Sample skewness m3 / m2**1.5."""
    kurtosis: float
    """Non-excess sample kurtosis m4 / m2**2 (3 for a normal distribution)."""
    n_obs: int
    """Number of (finite) return observations."""


def sharpe_stats(returns: Sequence[float] | np.ndarray) -> SharpeStats:
    """Per-period Sharpe, skewness, non-excess kurtosis and count of a return series (NaNs dropped).

    Example:
        >>> s = sharpe_stats([0.01, -0.02, 0.015, 0.003, -0.004])
        >>> s.n_obs, round(s.sharpe, 4)
        (5, 0.0585)
    """
    r = np.asarray(returns, dtype=np.float64).ravel()
    r = r[np.isfinite(r)]
    n = r.size
    if n < 2:
        raise ValueError(f"need at least 2 finite returns, got {n}")
    mean = r.mean()
    d = r - mean
    m2 = float(np.mean(d**2))
    if m2 == 0.0:
        raise ValueError("returns have zero variance; Sharpe ratio and moments are undefined")
    m3 = float(np.mean(d**3))
    m4 = float(np.mean(d**4))
    return SharpeStats(
        sharpe=float(mean / r.std(ddof=1)),
        skew=m3 / m2**1.5,
        kurtosis=m4 / m2**2,
        n_obs=int(n),
    )


def _sr_std_factor(sr: float, skew: float, kurtosis: float) -> float:
    # sqrt(1 - skew*SR + (kurtosis - 1)/4 * SR^2): the non-normal standard error of SR times sqrt(T-1)
    v = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if v <= 0:
        raise ValueError(
            f"1 - skew*SR + (kurtosis-1)/4*SR^2 = {v:.4g} <= 0 (SR={sr}, skew={skew}, kurtosis={kurtosis}); "
            "check that SR is per period and kurtosis is non-excess"
        )
    return math.sqrt(v)


def _per_period(value: float, periods_per_year: float | None, power: float = 0.5) -> float:
    if periods_per_year is None:
        return float(value)
    if periods_per_year <= 0:
        raise ValueError(f"periods_per_year must be > 0, got {periods_per_year}")
    return float(value) / periods_per_year**power


def probabilistic_sharpe_ratio(
    sr: float,
    n_obs: int,
    sr_benchmark: float = 0.0,
    skew: float = 0.0,
    kurtosis: float = 3.0,
    *,
    periods_per_year: float | None = None,
) -> float:
    """PSR: probability that the true Sharpe exceeds ``sr_benchmark`` given the observed ``sr``.

    ``PSR = Phi((SR - SR*) * sqrt(T - 1) / sqrt(1 - skew*SR + (kurtosis - 1)/4 * SR^2))``
    (Bailey & López de Prado 2012, eq. 11), with SR and SR* per period.

    Example:
        >>> round(probabilistic_sharpe_ratio(0.1, n_obs=252), 4)
        0.943
    """
    if n_obs < 2:
        raise ValueError(f"n_obs must be >= 2, got {n_obs}")
    sr_p = _per_period(sr, periods_per_year)
    bench_p = _per_period(sr_benchmark, periods_per_year)
    z = (sr_p - bench_p) * math.sqrt(n_obs - 1) / _sr_std_factor(sr_p, skew, kurtosis)
    return _norm_cdf(z)


def min_track_record_length(
    sr: float,
    sr_benchmark: float = 0.0,
    skew: float = 0.0,
    kurtosis: float = 3.0,
    prob: float = 0.95,
    *,
    periods_per_year: float | None = None,
) -> float:
    """MinTRL: observations needed for ``PSR(sr_benchmark) >= prob`` (Bailey & López de Prado 2012).

    ``MinTRL = 1 + (1 - skew*SR + (kurtosis - 1)/4 * SR^2) * (Z_prob / (SR - SR*))^2``; it is the
    ``n_obs`` at which :func:`probabilistic_sharpe_ratio` equals ``prob`` exactly.

    Example:
        >>> round(min_track_record_length(0.1, prob=0.95), 1)
        272.9
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    sr_p = _per_period(sr, periods_per_year)
    bench_p = _per_period(sr_benchmark, periods_per_year)
    if sr_p <= bench_p:
        raise ValueError(f"MinTRL needs sr > sr_benchmark, got {sr} <= {sr_benchmark}")
    factor = _sr_std_factor(sr_p, skew, kurtosis) ** 2
    return 1.0 + factor * (_norm_ppf(prob) / (sr_p - bench_p)) ** 2


def _expected_max_std_normal_exact(n_trials: int) -> float:
    # E[max of N iid N(0,1)] = integral of x * N * phi(x) * Phi(x)^(N-1) dx, integrated on a fine
    # grid in log space so Phi(x)^(N-1) does not underflow for large N.
    x = np.linspace(-12.0, 12.0, 48_001)
    # log Phi(x) without cancellation: from the lower tail for x < 0, log1p(-upper tail) for x >= 0
    log_cdf = np.array(
        [
            math.log(0.5 * math.erfc(-v / math.sqrt(2.0)))
            if v < 0
            else math.log1p(-0.5 * math.erfc(v / math.sqrt(2.0)))
            for v in x
        ]
    )
    log_phi = -0.5 * x * x - 0.5 * math.log(2.0 * math.pi)
    log_density = math.log(n_trials) + log_phi + (n_trials - 1) * log_cdf
    density = np.exp(log_density)
    return float(np.trapezoid(x * density, x) / np.trapezoid(density, x))


def expected_max_sharpe(
    n_trials: int,
    sr_variance: float,
    sr_mean: float = 0.0,
    *,
    exact: bool = False,
    periods_per_year: float | None = None,
) -> float:
    """Expected maximum Sharpe of ``n_trials`` independent trials whose SRs have the given variance.

    The DSR paper's approximation (False Strategy theorem) is the default:
    ``E[max SR] ~ mean + sqrt(V) * ((1 - g) * Phi^-1(1 - 1/N) + g * Phi^-1(1 - 1/(N e)))``
    with ``g`` the Euler-Mascheroni constant. ``exact=True`` integrates the expected maximum of N iid
    normals numerically instead (the approximation is within ~2.5% of it for N >= 10).
    With ``periods_per_year`` the inputs and the result are annualised SRs.

    Example:
        >>> round(expected_max_sharpe(100, 0.5 / 250), 4)
        0.1132
    """
    if int(n_trials) != n_trials or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials}")
    if sr_variance < 0:
        raise ValueError(f"sr_variance must be >= 0, got {sr_variance}")
    n = int(n_trials)
    if n == 1:
        z = 0.0  # the maximum of a single trial is the trial itself
    elif exact:
        z = _expected_max_std_normal_exact(n)
    else:
        z = (1.0 - EULER_GAMMA) * _norm_ppf(1.0 - 1.0 / n) + EULER_GAMMA * _norm_ppf(1.0 - 1.0 / (n * math.e))
    mean_p = _per_period(sr_mean, periods_per_year)
    var_p = _per_period(sr_variance, periods_per_year, power=1.0)
    result = mean_p + math.sqrt(var_p) * z
    return result if periods_per_year is None else result * math.sqrt(periods_per_year)


def deflated_sharpe_ratio(
    sr: float,
    n_obs: int,
    n_trials: int,
    sr_variance: float | None = None,
    skew: float = 0.0,
    kurtosis: float = 3.0,
    *,
    trial_sharpes: Sequence[float] | np.ndarray | None = None,
    sr_mean: float = 0.0,
    periods_per_year: float | None = None,
) -> float:
    """DSR: the PSR of the selected strategy against the expected maximum SR of ``n_trials`` trials.

    Give the variance of the trials' SRs either directly (``sr_variance``) or as the trials'
    SRs themselves (``trial_sharpes``; non-finite values, e.g. never-trading combos, are dropped and
    the variance uses ddof=1). ``sr_mean`` is the mean trial SR under the null (0 in the paper).
    With ``periods_per_year`` every Sharpe input, and the variance, are annualised.

    Example (the DSR paper's worked example):
        >>> round(deflated_sharpe_ratio(2.5, 1250, 100, 0.5, skew=-3, kurtosis=10, periods_per_year=250), 4)
        0.9004
    """
    if (sr_variance is None) == (trial_sharpes is None):
        raise ValueError("pass exactly one of sr_variance or trial_sharpes")
    if trial_sharpes is not None:
        trials = np.asarray(trial_sharpes, dtype=np.float64).ravel()
        trials = trials[np.isfinite(trials)]
        if trials.size < 2:
            raise ValueError("trial_sharpes needs at least 2 finite values to estimate a variance")
        sr_variance = float(np.var(trials, ddof=1))
    assert sr_variance is not None
    sr0 = expected_max_sharpe(n_trials, sr_variance, sr_mean, periods_per_year=periods_per_year)
    return probabilistic_sharpe_ratio(
        sr, n_obs, sr_benchmark=sr0, skew=skew, kurtosis=kurtosis, periods_per_year=periods_per_year
    )
