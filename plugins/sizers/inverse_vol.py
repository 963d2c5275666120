"""Inverse-volatility weights among the selected symbols."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import Sizer
from qf_plugins.sizers._common import aligned_signal, normalise_rows, trailing_vol


class InverseVol(Sizer):
    """Weights proportional to 1 / (trailing daily volatility) among symbols with signal > 0, scaled to
    ``gross``; so each name contributes roughly the same risk when correlations are similar.

    Volatility is the standard deviation of the last ``window`` daily returns up to the rebalance date. A
    selected symbol without ``window`` returns of history yet (or with a flat price) cannot be risk-sized
    and gets 0 until it has. ``allow_short`` turns negative signals into short weights.

    YAML::

        sizer:
          type: inverse_vol
          params:
            window: 63
            gross: 1.0
    """

    name = "inverse_vol"

    class Params(BaseParams):
        window: int = Field(63, ge=2, description="daily returns in the volatility estimate")
        gross: float = Field(1.0, gt=0, le=10, description="sum of |weights| when invested")
        allow_short: bool = Field(False, description="negative signals become short positions")

    params: Params

    @property
    def warmup(self) -> int:
        return self.params.window

    def size(self, signal: pd.DataFrame, bars: Bars, dates: pd.DatetimeIndex) -> pd.DataFrame:
        p = self.params
        s = aligned_signal(signal, bars, dates, p.allow_short)
        vol = trailing_vol(bars, p.window).reindex(index=dates)
        inv = (1.0 / vol.where(vol > 0)).fillna(0.0)
        return normalise_rows(np.sign(s) * inv, p.gross)
