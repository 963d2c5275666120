"""Moving-average crossover: long while the fast SMA is above the slow one."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import SignalModel


class SmaCross(SignalModel):
    """+1 while SMA(fast) > SMA(slow), else 0 (or -1 with ``short: true``).

    Row t uses the closes up to t. The first ``slow - 1`` bars of each symbol are NaN (warm-up).

    YAML::

        signal:
          type: sma_cross
          params:
            fast: 20
            slow: 100
            short: false
    """

    name = "sma_cross"

    class Params(BaseParams):
        fast: int = Field(20, ge=1, description="bars in the fast moving average")
        slow: int = Field(100, ge=2, description="bars in the slow moving average (must exceed fast)")
        short: bool = Field(False, description="give -1 instead of 0 when the fast SMA is at or below the slow")

        @model_validator(mode="after")
        def _fast_below_slow(self) -> SmaCross.Params:
            if self.fast >= self.slow:
                raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
            return self

    params: Params

    @property
    def warmup(self) -> int:
        return self.params.slow - 1

    def compute(self, bars: Bars) -> pd.DataFrame:
        from qf_plugins.signals._indicators import sma  # lazy: numba (loaded when a signal is computed)

        # the moving averages are shared across combinations of a sweep (see _indicators); the rest is one
        # pass over arrays: 1 where fast > slow, else ``below``, NaN while the slow average warms up
        fast = sma(bars.close, self.params.fast).to_numpy()
        slow = sma(bars.close, self.params.slow).to_numpy()
        below = -1.0 if self.params.short else 0.0
        signal = np.where(fast > slow, 1.0, below)
        signal[np.isnan(slow)] = np.nan
        return pd.DataFrame(signal, index=bars.close.index, columns=bars.close.columns, copy=False)  # ours: no copy
