"""Limit crowding: at most ``max_positions`` holdings that move together (pairwise correlation above ``rho``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import RiskRule


def cap_correlated(weights: np.ndarray, corr: np.ndarray, k: int, rho: float) -> np.ndarray:
    """One row of weights with every position beyond the limit set to 0.

    Positions are considered largest |weight| first (ties: column order); one is kept unless it would
    have, or would give an already kept position, more than ``k - 1`` kept neighbours correlated above
    ``rho``. So no kept position moves with more than ``k - 1`` others, and no group of more than ``k``
    mutually correlated positions survives. A pair with an unknown correlation (NaN) is not correlated.

    Example:
        >>> c = np.array([[1, .9, .9], [.9, 1, .9], [.9, .9, 1]])
        >>> cap_correlated(np.array([.2, .5, .3]), c, 2, 0.8).tolist()
        [0.0, 0.5, 0.3]
    """
    out = weights.copy()
    close = np.nan_to_num(corr, nan=0.0) > rho
    np.fill_diagonal(close, False)
    kept: list[int] = []
    neighbours = np.zeros(len(weights), dtype=int)
    for j in np.argsort(-np.abs(weights), kind="stable"):
        if weights[j] == 0 or np.isnan(weights[j]):
            continue
        linked = [i for i in kept if close[j, i]]
        if len(linked) >= k or any(neighbours[i] >= k - 1 for i in linked):
            out[j] = 0.0
            continue
        kept.append(j)
        neighbours[j] = len(linked)
        for i in linked:
            neighbours[i] += 1
    return out


class CorrelationCap(RiskRule):
    """No more than ``max_positions`` positions whose pairwise correlation exceeds ``rho``.

    On each rebalance date the correlation of daily close-to-close returns over the trailing ``window``
    bars (up to that date only) links the positions; keeping the largest positions first, a position
    is dropped to cash when it would join ``max_positions`` (or more) kept positions that move together
    (see :func:`cap_correlated`). Positions with fewer than ``window`` returns have no correlation yet and
    are never dropped; NaN weights (hold) pass through and are not counted.

    YAML::

        risk:
          - type: correlation_cap
            params: {max_positions: 3, rho: 0.8, window: 63}
    """

    name = "correlation_cap"

    class Params(BaseParams):
        max_positions: int = Field(3, ge=1, description="most positions allowed in a group moving together")
        rho: float = Field(0.8, ge=-1, lt=1, description="pairwise correlation above which two positions move "
                                                         "together")
        window: int = Field(63, ge=3, description="daily returns in each correlation estimate")

    params: Params

    @property
    def warmup(self) -> int:
        return self.params.window

    def apply(self, weights: pd.DataFrame, bars: Bars) -> pd.DataFrame:
        p = self.params
        ret = bars.close.pct_change(fill_method=None).reindex(columns=weights.columns)
        pos = ret.index.get_indexer(weights.index)
        w = weights.to_numpy(dtype=float)
        out = w.copy()
        values = ret.to_numpy(dtype=float)
        for r, i in enumerate(pos):
            held = np.flatnonzero(np.nan_to_num(w[r]) != 0)
            if i < p.window or held.size <= p.max_positions:
                continue
            window = values[i - p.window + 1 : i + 1][:, held]
            full = ~np.isnan(window).any(axis=0)
            corr = np.full((held.size, held.size), np.nan)
            if full.sum() > 1:
                with np.errstate(invalid="ignore", divide="ignore"):
                    corr[np.ix_(full, full)] = np.corrcoef(window[:, full], rowvar=False)
            out[r, held] = cap_correlated(w[r, held], corr, p.max_positions, p.rho)
        return pd.DataFrame(out, index=weights.index, columns=weights.columns)
