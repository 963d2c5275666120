"""Equal risk contribution ("risk parity") weights from a trailing covariance matrix.

Inverse-volatility weighting (qf's built-in ``inverse_vol``) equalises risk only when assets are
uncorrelated. Equal risk contribution (ERC) takes the correlations into account: each selected asset
contributes the same share of portfolio variance, ``w_i * (Sigma w)_i = sigma_p^2 / n``. Two highly
correlated stocks then share one stock's risk budget instead of getting two.

The weights come from cyclical coordinate descent (Griveau-Billion, Richard and Roncalli, 2013,
"A fast algorithm for computing high-dimensional risk parity portfolios"), which converges for any
covariance matrix with a positive diagonal and needs nothing beyond numpy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field
from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import Sizer


def erc_weights(cov: np.ndarray, tol: float = 1e-12, max_iter: int = 10_000) -> np.ndarray:
    """Long-only weights summing to 1 whose risk contributions ``w_i * (cov @ w)_i`` are all equal.

    Example::

        erc_weights(np.diag([0.04, 0.01]))   # -> [1/3, 2/3]: inverse volatility when uncorrelated

    Raises ``ValueError`` for a non-square matrix or a variance that is not positive.
    """
    cov = np.atleast_2d(np.asarray(cov, dtype=float))
    n = cov.shape[0]
    if cov.shape != (n, n) or n == 0:
        raise ValueError(f"covariance must be a non-empty square matrix, got shape {cov.shape}")
    var = np.diag(cov)
    if not (np.isfinite(cov).all() and (var > 0).all()):
        raise ValueError("every variance must be positive and every covariance finite")
    budget = 1.0 / n
    x = 1.0 / np.sqrt(var)  # inverse volatility: already the answer when uncorrelated, a good start otherwise
    x /= x.sum()
    for _ in range(max_iter):
        previous = x.copy()
        for i in range(n):
            # solve w_i (Sigma w)_i = b_i sigma(w) for w_i with the others fixed: a quadratic in w_i
            sigma = float(np.sqrt(x @ cov @ x))
            others = float(cov[i] @ x - cov[i, i] * x[i])
            x[i] = (-others + np.sqrt(others**2 + 4.0 * cov[i, i] * budget * sigma)) / (2.0 * cov[i, i])
        if np.max(np.abs(x - previous)) <= tol * np.max(np.abs(x)):
            break
    return x / x.sum()


class RiskParityLite(Sizer):
    """Equal risk contributions among the symbols with a positive signal, from a trailing covariance.

    On each rebalance date the covariance of the last ``window`` daily returns (up to and including the
    date) of the selected symbols is estimated and the weights that make every symbol contribute the same
    risk are held, scaled to ``gross``. A symbol without ``window`` returns of history yet, or with a flat
    price over the window, cannot be risk-sized and gets 0. A date with nothing selected goes to cash.
    Everything is computed from data up to the rebalance date: no look-ahead.

    YAML::

        sizer:
          type: risk_parity_lite
          params:
            window: 126
            gross: 1.0

    """

    name = "risk_parity_lite"

    class Params(BaseParams):
        window: int = Field(126, ge=5, description="daily returns in the covariance estimate")
        gross: float = Field(1.0, gt=0, le=3, description="sum of the weights when anything is selected")

    params: Params

    @property
    def warmup(self) -> int:
        return self.params.window

    def size(self, signal: pd.DataFrame, bars: Bars, dates: pd.DatetimeIndex) -> pd.DataFrame:
        p = self.params
        close = bars.close
        positions = close.index.get_indexer(dates)
        if (positions < 0).any():
            raise ValueError(f"rebalance date {dates[positions < 0][0]:%Y-%m-%d} is not a bar of {bars.source}")
        returns = close.pct_change(fill_method=None).to_numpy()
        selected = (signal.reindex(index=dates, columns=close.columns).fillna(0.0) > 0).to_numpy()
        out = np.zeros((len(dates), close.shape[1]))
        for row, pos in enumerate(positions):
            start = pos - p.window + 1
            if start < 0:
                continue
            window = returns[start : pos + 1]
            usable = selected[row] & np.isfinite(window).all(axis=0)
            usable[usable] = window[:, usable].std(axis=0, ddof=1) > 0
            cols = np.flatnonzero(usable)
            if len(cols):
                cov = np.cov(window[:, cols], rowvar=False, ddof=1)
                out[row, cols] = p.gross * erc_weights(cov)
        return pd.DataFrame(out, index=dates, columns=close.columns)
