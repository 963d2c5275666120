"""Kelly-style sizing from a quantile model's forecast bands: the median move over the width of its band.

A quantile model (``xgboost`` with ``mode: quantile``) forecasts, for every symbol and bar, quantiles of the
return over its horizon. The median says which way and how far; the inter-quantile range (75 % minus 25 %
by default) says how unsure the model is. ``quantile_kelly`` bets on the ratio of the two, the way Kelly bets
on edge over variance, so a confident forecast gets more weight than the same median with a wide band.

The bands reach the sizer through the pipeline: the sizer is a :class:`qf.components.UsesForecastBands`, and
the pipeline hands it the experiment's signal model when that model is a :class:`qf.components.ForecastBands`
(anything else is refused with one ``error:`` line). ``size`` asks the model for the bands of the bars it is
given -- never more -- so the weight of date t uses bars up to t only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from qf.bars import Bars
from qf.components import ForecastBands, Sizer, history_of
from qf.components import Params as BaseParams
from qf.errors import QfError
from qf_plugins.sizers._common import aligned_signal


def band_weights(center: pd.DataFrame, low: pd.DataFrame, high: pd.DataFrame, selected: pd.DataFrame,
                 fraction: float, cap: float, zero_when_straddling: bool) -> pd.DataFrame:
    """``min(fraction * center / (high - low), cap)`` where selected, 0 elsewhere, rows scaled to sum <= 1.

    All frames are aligned (dates x symbols). A non-positive median, a missing forecast, a band of width
    <= 0 (a degenerate forecast) and -- with ``zero_when_straddling`` -- a band with ``low < 0``, give 0.

    Example::

        band_weights(q50, q25, q75, signal > 0, fraction=0.5, cap=0.25, zero_when_straddling=False)
    """
    c, lo, hi = (f.to_numpy(dtype=float) for f in (center, low, high))
    width = hi - lo
    ok = selected.to_numpy(dtype=bool) & np.isfinite(c) & np.isfinite(width) & (width > 0) & (c > 0)
    if zero_when_straddling:
        ok &= lo >= 0  # the whole band on the winning side: a bet the model is sure of the sign of
    raw = np.zeros_like(c)
    np.divide(c, width, out=raw, where=ok)
    w = np.clip(fraction * raw, 0.0, cap)
    w[~ok] = 0.0
    total = w.sum(axis=1, keepdims=True)
    w = w / np.where(total > 1.0, total, 1.0)  # no leverage: scale a row above 100 % down to 100 %
    return pd.DataFrame(w, index=center.index, columns=center.columns)


class QuantileKelly(Sizer):
    """Per symbol with a positive signal: ``weight = min(fraction * q_center / (q_upper - q_lower), cap)``.

    The quantiles come from the signal model's forecast bands (``xgboost`` with ``mode: quantile`` and the
    levels listed in its ``quantiles``, e.g. ``[0.1, 0.25, 0.5, 0.75, 0.9]``): ``center`` (the median by
    default) over the width of the ``lower``..``upper`` band (the inter-quartile range by default). This is
    Kelly's edge-over-uncertainty in spirit, not the exact Kelly fraction (``mu / sigma^2`` would put the
    width squared in the denominator and, on 5-day returns, bet many times the account); ``fraction``
    scales it and ``cap`` bounds every single weight. A non-positive median gives 0 (long only); with
    ``zero_when_straddling: true`` so does a band that reaches below 0 (``q_lower < 0``): the model must
    be sure of the sign. If the weights add up to more than 1 they are scaled down to a total of 1.

    Bands are forecasts of row t made with bars up to t; the sizer reads them on the rebalance dates only.
    Its ``warmup`` and ``history`` are the band model's (0 and 1 before the pipeline hands it over).

    YAML::

        sizer:
          type: quantile_kelly
          params:
            lower: 0.25             # the band: 25 % ...
            upper: 0.75             # ... to 75 % quantile of the forecast return
            center: 0.5             # the median
            fraction: 0.5
            cap: 0.25
            zero_when_straddling: false
    """

    name = "quantile_kelly"

    class Params(BaseParams):
        lower: float = Field(0.25, gt=0, lt=1, description="quantile level of the band's lower edge")
        center: float = Field(0.5, gt=0, lt=1, description="quantile level of the forecast (the median)")
        upper: float = Field(0.75, gt=0, lt=1, description="quantile level of the band's upper edge")
        fraction: float = Field(0.5, gt=0, le=10, description="scale of center / (upper - lower)")
        cap: float = Field(0.25, gt=0, le=1, description="largest weight of any single symbol")
        zero_when_straddling: bool = Field(False, description="weight 0 unless the band's lower edge is >= 0")

        @model_validator(mode="after")
        def _ordered(self) -> QuantileKelly.Params:
            if not self.lower < self.center < self.upper:
                raise ValueError(f"need lower < center < upper, got {self.lower}, {self.center}, {self.upper}")
            return self

    params: Params

    def __init__(self, params: Params | dict | None = None) -> None:
        super().__init__(params)
        self._model: ForecastBands | None = None

    @property
    def warmup(self) -> int:
        """The band model's warm-up once bound (its bands are what this sizer reads), else 0."""
        return int(getattr(self._model, "warmup", 0) or 0) if self._model is not None else 0

    @property
    def history(self) -> int | None:
        """Bars the weights of date t need: those the band model needs for its forecast of t."""
        return history_of(self._model) if self._model is not None else 1

    def use_forecast_bands(self, model: ForecastBands) -> None:
        """Keep the experiment's signal model (called by the pipeline before ``size``)."""
        self._model = model

    def _band(self, bands: dict[float, pd.DataFrame], level: float, bars: Bars) -> pd.DataFrame:
        for key, frame in bands.items():
            if abs(float(key) - level) < 1e-9:
                return frame.reindex(index=bars.index, columns=bars.close.columns)
        have = ", ".join(f"{float(k):g}" for k in sorted(bands))
        raise QfError(f"sizer 'quantile_kelly': the signal's forecast bands have the levels {have}, not {level:g}; "
                      f"add {level:g} to signal.params.quantiles or change sizer.params")

    def size(self, signal: pd.DataFrame, bars: Bars, dates: pd.DatetimeIndex) -> pd.DataFrame:
        if self._model is None:
            raise QfError("sizer 'quantile_kelly' sizes from forecast bands and was given no signal model that "
                          "forecasts them (use a ForecastBands signal, e.g. xgboost with mode: quantile)")
        p = self.params
        bands = self._model.forecast_bands(bars)
        low, center, high = (self._band(bands, a, bars).reindex(index=dates) for a in (p.lower, p.center, p.upper))
        selected = aligned_signal(signal, bars, dates) > 0
        return band_weights(center, low, high, selected, p.fraction, p.cap, p.zero_when_straddling)
