"""Channel breakout (Donchian): long on a new N-bar high, flat on a new N-bar low."""

from __future__ import annotations

import pandas as pd
from pydantic import Field

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import SignalModel


class Breakout(SignalModel):
    """Goes long when the close rises above the highest high of the prior ``window`` bars and goes flat
    when it falls below the lowest low of the prior ``exit_window`` bars (default: ``window``); in between
    the position is held. "Prior" excludes bar t itself, so a close can break its own channel.

    Needs ``high`` and ``low``: close-only data is refused with a clear error. The first
    ``max(window, exit_window)`` bars of each symbol are NaN. ``history`` is ``None``: the position held
    at t depends on the last breakout, however long ago, so a paper session computes it on the whole
    available history.

    YAML::

        signal:
          type: breakout
          params:
            window: 55
            exit_window: 20
    """

    name = "breakout"
    fields = ("close", "high", "low")

    class Params(BaseParams):
        window: int = Field(20, ge=1, description="bars in the entry channel (prior highs)")
        exit_window: int | None = Field(None, ge=1, description="bars in the exit channel (prior lows); default window")

    params: Params

    @property
    def _exit_window(self) -> int:
        return self.params.exit_window or self.params.window

    @property
    def warmup(self) -> int:
        return max(self.params.window, self._exit_window)

    @property
    def history(self) -> int | None:
        return None  # a holding state: long since the last new high, until a new low

    def compute(self, bars: Bars) -> pd.DataFrame:
        from qf_plugins.signals._indicators import hold  # lazy: numba (loaded when a signal is computed)

        bars.require(("high", "low"), who=f"signal {self.name}")
        w, xw = self.params.window, self._exit_window
        prior_high = bars.high.rolling(w, min_periods=w).max().shift(1)
        prior_low = bars.low.rolling(xw, min_periods=xw).min().shift(1)
        valid = prior_high.notna() & prior_low.notna() & bars.close.notna()
        return hold(bars.close > prior_high, bars.close < prior_low, valid)
