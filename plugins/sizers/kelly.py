"""Fractional Kelly sizing from each asset's trailing win rate and payoff ratio."""

from __future__ import annotations

import pandas as pd
from pydantic import Field

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import Sizer
from qf_plugins.sizers._common import aligned_signal, daily_returns


class Kelly(Sizer):
    """Per selected asset (signal > 0): ``weight = min(fraction * f, cap)``, with the Kelly fraction
    ``f = p - (1 - p) / b`` from its last ``window`` daily returns: ``p`` the share of up days among the
    days that moved, ``b`` the average gain of an up day over the average loss of a down day. A window with
    no down day gives f = 1 (then ``cap`` binds); a negative f means no edge and weight 0. If the weights
    add up to more than 1 they are scaled down to a total of 1 (no leverage). An asset without ``window``
    returns of history gets 0.

    Full Kelly is notoriously aggressive and the estimates are noisy, hence the ``fraction`` (half Kelly by
    default) and the per-asset ``cap``.

    YAML::

        sizer:
          type: kelly
          params:
            window: 252
            fraction: 0.5
            cap: 0.2
    """

    name = "kelly"

    class Params(BaseParams):
        window: int = Field(252, ge=5, description="daily returns used to estimate win rate and payoff")
        fraction: float = Field(0.5, gt=0, le=1, description="share of the full Kelly bet to take")
        cap: float = Field(0.2, gt=0, le=1, description="largest weight of any single asset")

    params: Params

    @property
    def warmup(self) -> int:
        return self.params.window

    def kelly_fraction(self, bars: Bars) -> pd.DataFrame:
        """Full-Kelly fraction f per bar and symbol from the trailing window (NaN without a full window)."""
        w = self.params.window
        r = daily_returns(bars)
        full = r.notna().astype(float).rolling(w).sum() >= w

        def roll(x: pd.DataFrame) -> pd.DataFrame:
            return x.astype(float).rolling(w, min_periods=1).sum()

        n_win, n_loss = roll(r > 0), roll(r < 0)
        avg_win = roll(r.clip(lower=0).fillna(0.0)) / n_win.where(n_win > 0)
        avg_loss = roll((-r).clip(lower=0).fillna(0.0)) / n_loss.where(n_loss > 0)
        p = n_win / (n_win + n_loss).where(n_win + n_loss > 0)
        f = p - (1.0 - p) * avg_loss / avg_win
        f = f.mask(n_loss == 0, 1.0).mask(n_win == 0, 0.0)  # no losses: bet all (cap binds); no wins: no edge
        return f.where(full)

    def size(self, signal: pd.DataFrame, bars: Bars, dates: pd.DatetimeIndex) -> pd.DataFrame:
        p = self.params
        selected = aligned_signal(signal, bars, dates) > 0
        f = self.kelly_fraction(bars).reindex(index=dates)
        w = (p.fraction * f).clip(lower=0.0, upper=p.cap).where(selected, 0.0).fillna(0.0)
        total = w.sum(axis=1)
        return w.div(total.where(total > 1.0, 1.0), axis=0)
