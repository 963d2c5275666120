"""Volatility targeting: lever a base portfolio up or down so its trailing volatility hits a target."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import Sizer
from qf_plugins.sizers._common import daily_returns, positions
from qf_plugins.sizers.equal import EqualWeight
from qf_plugins.sizers.inverse_vol import InverseVol


class VolTarget(Sizer):
    """Scales a fully invested base portfolio (``equal`` or ``inverse_vol``, long only) by
    ``min(target / realized, max_leverage)``.

    ``realized`` is the annualised standard deviation of the base portfolio's returns over the last
    ``window`` bars, computed with the weights of the rebalance date itself (the risk of the book about to
    be held, not of whatever was held before). A symbol not trading on a day of that window contributes
    nothing that day. Before ``window`` returns exist at all, the sizer stays flat. ``max_leverage`` caps
    the gross exposure when the base portfolio is very calm.

    YAML::

        sizer:
          type: vol_target
          params:
            target: 0.10
            window: 63
            max_leverage: 1.5
            base: inverse_vol
    """

    name = "vol_target"

    class Params(BaseParams):
        target: float = Field(0.10, gt=0, le=2, description="annualised volatility to aim for, e.g. 0.10")
        window: int = Field(63, ge=5, description="daily returns in the realized-volatility estimate")
        max_leverage: float = Field(1.0, gt=0, le=10, description="cap on the gross exposure after scaling")
        base: Literal["equal", "inverse_vol"] = Field("equal", description="the portfolio that gets scaled")
        periods_per_year: int = Field(252, ge=1, description="bars per year, to annualise daily volatility")

    params: Params

    @property
    def warmup(self) -> int:
        return self.params.window

    def size(self, signal: pd.DataFrame, bars: Bars, dates: pd.DatetimeIndex) -> pd.DataFrame:
        p = self.params
        base_sizer: Sizer = InverseVol({"window": p.window}) if p.base == "inverse_vol" else EqualWeight()
        base = base_sizer.size(signal, bars, dates)
        ret = daily_returns(bars).fillna(0.0).to_numpy()
        w = base.to_numpy()
        scale = np.zeros(len(dates))
        for k, i in enumerate(positions(bars, dates)):
            if i < p.window or not w[k].any():
                continue  # no full window of returns yet, or nothing to hold
            port = ret[i - p.window + 1 : i + 1] @ w[k]
            vol = port.std(ddof=1) * np.sqrt(p.periods_per_year)
            scale[k] = p.max_leverage if vol <= 0 else min(p.target / vol, p.max_leverage)
        return base.mul(scale, axis=0)
