"""Swing trading: buy short-term pullbacks inside a medium-term uptrend, hold for days, not months."""

from __future__ import annotations

import pandas as pd
from pydantic import Field, model_validator

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import SignalModel


class Swing(SignalModel):
    """The swing signal of the flagship ``hrp_swing`` experiment (long/flat, 1 or 0).

    Trend filter (medium term): close > SMA(``trend``) and the return over the last ``lookback`` bars is
    positive. Entry (short term), only while the trend filter holds: RSI(``rsi_window``) <= ``entry_rsi``
    (a sharp pullback), or, with ``pullback_pct`` set, a close at least that far below SMA(``pullback_sma``).
    Exit: RSI(``rsi_window``) >= ``exit_rsi`` (the bounce came), or the close drops below SMA(``trend``)
    (the trend broke), or the position has been held ``max_hold`` bars (time stop; ``null`` = none).
    A symbol cannot re-enter on the bar it exits. Defaults suit daily bars: a 200-day trend, 6-month
    momentum, a 3-day RSI entering under 20 and exiting over 70, at most 10 days in a trade.

    The holding state is path-dependent, so it is a loop over time (numba); row t still uses bars up
    to t only. Warm-up: the longest indicator (``trend - 1`` bars with the defaults). ``history`` is
    ``None``: whether a symbol is held at t depends on every entry and exit since its data starts (and
    the RSI is a recursive average), so a paper session computes it on the whole available history.

    YAML::

        signal:
          type: swing
          params:
            trend: 200
            lookback: 126
            rsi_window: 3
            entry_rsi: 20
            exit_rsi: 70
            pullback_sma: 5
            pullback_pct: 0.03
            max_hold: 10
    """

    name = "swing"

    class Params(BaseParams):
        trend: int = Field(200, ge=2, description="bars in the trend SMA; close must be above it")
        lookback: int = Field(126, ge=1, description="bars of the momentum return that must be positive")
        rsi_window: int = Field(3, ge=2, description="bars in the short RSI driving entry and exit")
        entry_rsi: float = Field(20.0, gt=0, lt=100, description="enter when the short RSI is at or below this")
        exit_rsi: float = Field(70.0, gt=0, lt=100, description="exit when the short RSI is at or above this")
        pullback_sma: int = Field(5, ge=2, description="bars in the short SMA of the pullback_pct entry")
        pullback_pct: float | None = Field(
            None, gt=0, lt=0.5, description="also enter on a close this fraction below the short SMA"
        )
        max_hold: int | None = Field(10, ge=1, description="exit after this many bars in the trade (null: never)")

        @model_validator(mode="after")
        def _consistent(self) -> Swing.Params:
            if self.exit_rsi <= self.entry_rsi:
                raise ValueError(f"exit_rsi ({self.exit_rsi}) must be above entry_rsi ({self.entry_rsi})")
            if self.rsi_window >= self.trend:
                raise ValueError(f"rsi_window ({self.rsi_window}) must be shorter than trend ({self.trend})")
            if self.pullback_sma >= self.trend:
                raise ValueError(f"pullback_sma ({self.pullback_sma}) must be shorter than trend ({self.trend})")
            return self

    params: Params

    @property
    def warmup(self) -> int:
        p = self.params
        short = p.pullback_sma - 1 if p.pullback_pct is not None else 0
        return max(p.trend - 1, p.lookback, p.rsi_window, short)

    @property
    def history(self) -> int | None:
        # path-dependent: with a time stop, two starts can stay out of phase forever (enter, hold
        # max_hold bars, exit, re-enter), so no trailing window is provably enough
        return None

    def compute(self, bars: Bars) -> pd.DataFrame:
        from qf_plugins.signals._indicators import hold, rsi, sma  # lazy: numba (loaded when a signal is computed)

        p = self.params
        close = bars.close
        trend_sma = sma(close, p.trend)
        momentum = close / close.shift(p.lookback) - 1.0
        short_rsi = rsi(close, p.rsi_window)
        valid = trend_sma.notna() & momentum.notna() & short_rsi.notna()
        in_trend = (close > trend_sma) & (momentum > 0)
        pullback = short_rsi <= p.entry_rsi
        if p.pullback_pct is not None:
            short_sma = sma(close, p.pullback_sma)
            valid &= short_sma.notna()
            pullback |= close <= short_sma * (1.0 - p.pullback_pct)
        enter = in_trend & pullback
        exit_ = (short_rsi >= p.exit_rsi) | (close < trend_sma)
        return hold(enter, exit_, valid, p.max_hold or 0)
