"""PSR / DSR / expected maximum Sharpe against the papers and against themselves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qf.research.stats import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    min_track_record_length,
    probabilistic_sharpe_ratio,
    sharpe_stats,
)


def test_dsr_paper_worked_example() -> None:
    # Bailey & López de Prado (2014), numerical example: SR 2.5 annualised, 1250 daily observations,
    # skew -3, kurtosis 10, N=100 trials, annualised variance of trial SRs 0.5, 250 days a year.
    sr0_daily = expected_max_sharpe(100, 0.5 / 250)
    assert sr0_daily == pytest.approx(0.1132, abs=5e-5)
    assert expected_max_sharpe(100, 0.5, periods_per_year=250) == pytest.approx(0.1132 * math.sqrt(250), abs=1e-3)
    dsr = deflated_sharpe_ratio(2.5, 1250, 100, 0.5, skew=-3, kurtosis=10, periods_per_year=250)
    assert dsr == pytest.approx(0.9004, abs=5e-5)
    # the same computation in per-period units, spelled out from the paper's equation
    sr = 2.5 / math.sqrt(250)
    z = (sr - sr0_daily) * math.sqrt(1249) / math.sqrt(1 + 3 * sr + 9 / 4 * sr**2)
    assert deflated_sharpe_ratio(sr, 1250, 100, 0.002, skew=-3, kurtosis=10) == pytest.approx(
        0.5 * math.erfc(-z / math.sqrt(2)), rel=1e-12
    )
    # DSR is the PSR against the expected maximum
    assert dsr == pytest.approx(
        probabilistic_sharpe_ratio(sr, 1250, sr_benchmark=sr0_daily, skew=-3, kurtosis=10), rel=1e-12
    )


def test_dsr_matches_vectorbt_implementation() -> None:
    from vectorbt.returns.metrics import deflated_sharpe_ratio as vbt_dsr

    for sr, var, n, t, sk, ku in [(0.15, 0.002, 100, 1250, -3.0, 10.0), (0.08, 0.001, 20, 500, 0.3, 4.0)]:
        expected = vbt_dsr(
            est_sharpe=np.array([sr]), var_sharpe=var, nb_trials=n, backtest_horizon=t,
            skew=np.array([sk]), kurtosis=np.array([ku]),
        )[0]
        assert deflated_sharpe_ratio(sr, t, n, var, skew=sk, kurtosis=ku) == pytest.approx(expected, rel=1e-12)


def test_psr_normal_case_closed_form_and_symmetry() -> None:
    sr, t = 0.1, 252
    expected = 0.5 * math.erfc(-(sr * math.sqrt(t - 1) / math.sqrt(1 + sr**2 / 2)) / math.sqrt(2))
    assert probabilistic_sharpe_ratio(sr, t) == pytest.approx(expected, rel=1e-12)
    assert probabilistic_sharpe_ratio(0.05, 100, sr_benchmark=0.05) == pytest.approx(0.5)
    # negative skew and fat tails make the same Sharpe less convincing
    assert probabilistic_sharpe_ratio(sr, t, skew=-2, kurtosis=9) < probabilistic_sharpe_ratio(sr, t)


def test_psr_is_calibrated_under_the_null() -> None:
    # Under a true Sharpe of 0 the PSR(0) of iid normal returns is ~uniform: 5% of samples exceed 0.95.
    rng = np.random.default_rng(7)
    t, n_sims = 250, 4000
    r = rng.normal(0.0, 0.01, size=(n_sims, t))
    sr = r.mean(axis=1) / r.std(axis=1, ddof=1)
    psr = np.array([probabilistic_sharpe_ratio(x, t) for x in sr])
    assert abs((psr > 0.95).mean() - 0.05) < 0.012
    assert abs((psr > 0.5).mean() - 0.5) < 0.03


def test_min_track_record_length_is_where_psr_hits_the_target() -> None:
    for sr, bench, sk, ku, p in [(0.1, 0.0, 0.0, 3.0, 0.95), (0.2, 0.05, -1.0, 6.0, 0.99), (0.05, 0.0, 0.5, 3.5, 0.9)]:
        n = min_track_record_length(sr, bench, sk, ku, prob=p)
        assert probabilistic_sharpe_ratio(sr, n, bench, sk, ku) == pytest.approx(p, abs=1e-12)
    with pytest.raises(ValueError, match="sr > sr_benchmark"):
        min_track_record_length(0.1, 0.2)


def test_expected_max_sharpe_approximation_vs_exact() -> None:
    # exact E[max] of N standard normals: N=2 is 1/sqrt(pi); tabulated values for 10, 100, 1000
    assert expected_max_sharpe(2, 1.0, exact=True) == pytest.approx(1 / math.sqrt(math.pi), abs=1e-9)
    for n, exact in [(10, 1.538753), (100, 2.507594), (1000, 3.241436)]:
        assert expected_max_sharpe(n, 1.0, exact=True) == pytest.approx(exact, abs=1e-5)
        approx = expected_max_sharpe(n, 1.0)
        assert approx == pytest.approx(exact, rel=0.025)
    # scaling: mean + sqrt(V) * z
    assert expected_max_sharpe(100, 4.0, sr_mean=1.0) == pytest.approx(1.0 + 2.0 * expected_max_sharpe(100, 1.0))
    assert expected_max_sharpe(1, 1.0) == 0.0
    # a Monte Carlo check of the exact integral
    rng = np.random.default_rng(3)
    sims = rng.standard_normal((20_000, 50)).max(axis=1).mean()
    assert expected_max_sharpe(50, 1.0, exact=True) == pytest.approx(sims, abs=0.01)


def test_dsr_from_trial_sharpes_and_annualisation() -> None:
    rng = np.random.default_rng(1)
    trials = rng.normal(0.0, 0.05, size=200)
    trials_with_junk = np.concatenate([trials, [np.inf, np.nan]])  # never-trading combos
    by_trials = deflated_sharpe_ratio(0.12, 1000, 200, trial_sharpes=trials_with_junk, skew=-0.5, kurtosis=5)
    by_var = deflated_sharpe_ratio(0.12, 1000, 200, float(np.var(trials, ddof=1)), skew=-0.5, kurtosis=5)
    assert by_trials == pytest.approx(by_var, rel=1e-12)
    ppy = 252
    annual = deflated_sharpe_ratio(
        0.12 * math.sqrt(ppy), 1000, 200, float(np.var(trials, ddof=1)) * ppy, skew=-0.5, kurtosis=5,
        periods_per_year=ppy,
    )
    assert annual == pytest.approx(by_var, rel=1e-12)
    with pytest.raises(ValueError, match="exactly one"):
        deflated_sharpe_ratio(0.1, 100, 10)


def test_sharpe_stats_moments() -> None:
    from scipy import stats as sps

    r = np.random.default_rng(5).standard_t(5, size=3000) * 0.01 + 0.0004
    s = sharpe_stats(np.concatenate([r, [np.nan]]))
    assert s.n_obs == 3000
    assert s.sharpe == pytest.approx(r.mean() / r.std(ddof=1), rel=1e-12)
    assert s.skew == pytest.approx(sps.skew(r, bias=True), rel=1e-10)
    assert s.kurtosis == pytest.approx(sps.kurtosis(r, fisher=False, bias=True), rel=1e-10)
    with pytest.raises(ValueError, match="zero variance"):
        sharpe_stats([0.01, 0.01, 0.01])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: probabilistic_sharpe_ratio(0.1, 1), "n_obs"),
        (lambda: probabilistic_sharpe_ratio(3.0, 100, skew=3.0, kurtosis=1.0), "per period"),
        (lambda: expected_max_sharpe(0, 1.0), "n_trials"),
        (lambda: expected_max_sharpe(10, -1.0), "sr_variance"),
        (lambda: min_track_record_length(0.1, prob=1.0), "prob"),
        (lambda: probabilistic_sharpe_ratio(0.1, 100, periods_per_year=0), "periods_per_year"),
    ],
)
def test_invalid_inputs(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
