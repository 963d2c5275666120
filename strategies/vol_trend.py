# strategies/vol_trend.py
import numpy as np
import pandas as pd
from pydantic import Field

from qf.components import Params, SignalModel


class VolTrend(SignalModel):
    """Sign of the `lookback`-bar return, scaled down when recent volatility is high."""

    name = "vol_trend"

    class Params(Params):
        lookback: int = Field(60, ge=2)
        target_vol: float = Field(0.01, gt=0)

    @property
    def warmup(self) -> int:
        return self.params.lookback

    def compute(self, bars) -> pd.DataFrame:
        p = self.params
        ret = bars.close.pct_change(fill_method=None)
        trend = np.sign(bars.close / bars.close.shift(p.lookback) - 1)
        vol = ret.rolling(p.lookback, min_periods=p.lookback).std()
        return (trend * (p.target_vol / vol).clip(upper=1.0)).where(vol.notna())
