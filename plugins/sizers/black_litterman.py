"""Black-Litterman weights (riskfolio-lib) with the views taken from the signal model's scores.

At each rebalance date the candidates are the symbols whose signal is positive (a long-only sizer) and
that have a full ``window`` of returns with some variance. Their prior is riskfolio's equilibrium
(``Pi = delta * Sigma * w``, equal prior weights: qf has no market capitalisations), and every candidate
gets an absolute view: its score times ``view_return`` (annualised, converted per bar). ``confidence``
blends each view with the prior before it reaches riskfolio -- ``Q = c * view + (1 - c) * Pi`` -- so 0
leaves the equilibrium untouched and 1 states the views in full (riskfolio's He-Litterman Omega,
``diag(P tau Sigma P')`` with ``tau = 1/T``, then weighs them against the prior). The posterior goes to
riskfolio's mean-variance optimiser (``model="BL"``), long only, fully invested.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import Sizer
from qf_plugins.sizers._common import aligned_signal, daily_returns, positions

PERIODS_PER_YEAR = 252


def bl_weights(returns: pd.DataFrame, scores: pd.Series, view_return: float, confidence: float,
               delta: float, objective: str) -> pd.Series:
    """riskfolio Black-Litterman weights of ``returns``' columns with views ``scores * view_return``.

    Returns long-only weights summing to 1, indexed like the columns (equal weights if riskfolio finds
    no solution, e.g. a max-Sharpe problem whose posterior means are all negative).

    Example::

        bl_weights(daily_returns_frame, pd.Series({"A": 1.0, "B": 0.5}), 0.10, 0.5, 2.5, "Sharpe")
    """
    n = returns.shape[1]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(
        io.StringIO()
    ):
        warnings.simplefilter("ignore")
        port = bl_portfolio(returns, scores, view_return, confidence, delta)
        w = port.optimization(model="BL", rm="MV", obj=objective, rf=0, l=delta, hist=False)
    if w is None or not np.isfinite(w.to_numpy(dtype=float)).all():
        return pd.Series(1.0 / n, index=returns.columns)
    out = w["weights"].reindex(returns.columns).astype(float).clip(lower=0.0)
    total = out.sum()
    return out / total if total > 0 else pd.Series(1.0 / n, index=returns.columns)


def bl_portfolio(returns: pd.DataFrame, scores: pd.Series, view_return: float, confidence: float,
                 delta: float):
    """A riskfolio ``Portfolio`` holding the Black-Litterman posterior (``mu_bl``, ``cov_bl``) of the views.

    Example::

        bl_portfolio(daily_returns_frame, pd.Series({"A": 1.0, "B": 0.5}), 0.10, 1.0, 2.5).mu_bl
    """
    import riskfolio as rp

    n = returns.shape[1]
    prior = pd.DataFrame(np.full((n, 1), 1.0 / n), index=returns.columns)
    sigma = returns.cov().to_numpy()
    pi = delta * sigma @ prior.to_numpy()[:, 0]  # riskfolio's equilibrium returns (eq=True)
    views = scores.reindex(returns.columns).to_numpy(dtype=float) * view_return / PERIODS_PER_YEAR
    q = confidence * views + (1.0 - confidence) * pi
    p = pd.DataFrame(np.eye(n), columns=returns.columns)
    port = rp.Portfolio(returns=returns.copy())
    port.blacklitterman_stats(p, pd.DataFrame(q[:, None]), rf=0, w=prior, delta=delta, eq=True)
    return port


class BlackLitterman(Sizer):
    """Black-Litterman (riskfolio-lib) weights of the symbols with a positive signal, whose scores are the
    views (see the module docstring for the exact construction).

    A single candidate gets weight 1; none: flat. Re-estimated on every rebalance date from the last
    ``window`` daily returns up to that date only.

    YAML::

        sizer:
          type: black_litterman
          params:
            window: 252
            view_return: 0.10
            confidence: 0.5
            delta: 2.5
            objective: Sharpe
    """

    name = "black_litterman"

    class Params(BaseParams):
        window: int = Field(252, ge=20, description="daily returns in each estimate")
        view_return: float = Field(0.10, gt=0, le=2, description="annualised expected return of a score of 1")
        confidence: float = Field(0.5, ge=0, le=1, description="0: equilibrium only, 1: the views in full")
        delta: float = Field(2.5, gt=0, description="risk aversion of the equilibrium (and of Utility)")
        objective: Literal["Sharpe", "MinRisk", "Utility", "MaxRet"] = Field(
            "Sharpe", description="riskfolio objective of the posterior mean-variance optimisation")

    params: Params

    @property
    def warmup(self) -> int:
        return self.params.window

    def size(self, signal: pd.DataFrame, bars: Bars, dates: pd.DatetimeIndex) -> pd.DataFrame:
        p = self.params
        scores = aligned_signal(signal, bars, dates)
        ret = daily_returns(bars)
        values = ret.to_numpy()
        out = np.zeros(scores.shape)
        for k, i in enumerate(positions(bars, dates)):
            s = scores.iloc[k].to_numpy()
            if i < p.window or not (s > 0).any():
                continue
            window = values[i - p.window + 1 : i + 1]
            cols = np.flatnonzero((s > 0) & ~np.isnan(window).any(axis=0))
            cols = cols[window[:, cols].std(axis=0) > 0]
            if cols.size == 1:
                out[k, cols[0]] = 1.0
            elif cols.size > 1:
                frame = pd.DataFrame(window[:, cols], columns=[str(c) for c in cols])
                w = bl_weights(frame, pd.Series(s[cols], index=frame.columns), p.view_return, p.confidence,
                               p.delta, p.objective)
                out[k, cols] = w.to_numpy()
        return pd.DataFrame(out, index=dates, columns=bars.close.columns)
