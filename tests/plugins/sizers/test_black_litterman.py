"""black_litterman: the posterior riskfolio computes from qf's views, hand-computed on two uncorrelated
assets of equal variance, the confidence blend, and the sizer's weights on a rebalance date."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars
from qf_plugins.sizers.black_litterman import BlackLitterman, bl_portfolio

X = 0.01
# zero-mean, uncorrelated (orthogonal over every 4 bars), equal variance X^2 * 20/19
A = X * np.array([1, -1] * 10)
B = X * np.array([1, 1, -1, -1] * 5)
VAR = X**2 * 20 / 19
DELTA = 2.5
PI = DELTA * VAR / 2  # equilibrium return of each asset: delta * Sigma * (1/2, 1/2)
VIEWS = np.array([1.0, 0.5]) * 0.10 / 252


def _returns() -> pd.DataFrame:
    return pd.DataFrame({"A": A, "B": B})


def test_confidence_zero_leaves_the_equilibrium():
    port = bl_portfolio(_returns(), pd.Series({"A": 1.0, "B": 0.5}), 0.10, 0.0, DELTA)
    assert port.mu_bl.to_numpy().ravel() == pytest.approx([PI, PI], rel=1e-9)


def test_full_confidence_halves_the_way_to_the_views():
    # with P = I and Omega = diag(tau Sigma) = tau Sigma here, the posterior is the average of prior and view
    port = bl_portfolio(_returns(), pd.Series({"A": 1.0, "B": 0.5}), 0.10, 1.0, DELTA)
    assert port.mu_bl.to_numpy().ravel() == pytest.approx((PI + VIEWS) / 2, rel=1e-9)
    half = bl_portfolio(_returns(), pd.Series({"A": 1.0, "B": 0.5}), 0.10, 0.5, DELTA)
    assert half.mu_bl.to_numpy().ravel() == pytest.approx((PI + (0.5 * VIEWS + 0.5 * PI)) / 2, rel=1e-9)


def test_sizer_weights_follow_the_posterior_and_skip_unselected():
    n = 21
    rets = pd.DataFrame({"A": np.r_[0, A], "B": np.r_[0, B], "C": np.r_[0, B[::-1]]})
    close = 100 * (1 + rets).cumprod()
    idx = pd.bdate_range("2024-01-01", periods=n)
    bars = Bars(close=pd.DataFrame(close.to_numpy(), index=idx, columns=["A", "B", "C"]))
    signal = pd.DataFrame({"A": 1.0, "B": 0.5, "C": 0.0}, index=idx)
    dates = idx[[10, 20]]
    w = BlackLitterman({"window": 20, "confidence": 1.0, "delta": DELTA}).size(signal, bars, dates)
    assert (w.iloc[0] == 0).all()  # not enough history on the first date
    # uncorrelated equal-variance posterior (Sigma + M is still a multiple of I): max-Sharpe weights are
    # proportional to the posterior means
    mu = (PI + VIEWS) / 2
    assert w.iloc[1][["A", "B"]].to_numpy() == pytest.approx(mu / mu.sum(), abs=1e-5)
    assert w.iloc[1]["C"] == 0.0


def test_a_lone_candidate_gets_everything():
    idx = pd.bdate_range("2024-01-01", periods=30)
    close = pd.DataFrame({"A": 100 * np.cumprod(1 + np.r_[0, np.tile([0.01, -0.005], 15)[:29]]),
                          "B": 50.0 + np.arange(30)}, index=idx)
    signal = pd.DataFrame({"A": 1.0, "B": -1.0}, index=idx)
    w = BlackLitterman({"window": 20}).size(signal, Bars(close=close), idx[[25]])
    assert w.iloc[0].tolist() == [1.0, 0.0]
