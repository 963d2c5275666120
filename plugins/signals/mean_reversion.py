"""Mean reversion: long when a symbol is oversold by z-score or RSI."""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from pydantic import Field, model_validator

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import SignalModel

# per-mode defaults: a 20-bar z-score entering at -2 sigma; Wilder's 14-bar RSI entering at 30
_DEFAULTS: dict[str, dict[str, float]] = {"zscore": {"window": 20, "entry": -2.0}, "rsi": {"window": 14, "entry": 30.0}}


class MeanReversion(SignalModel):
    """+1 while the indicator is at or below ``entry`` (oversold), else 0.

    ``mode: zscore`` uses (close - SMA(window)) / std(window), ``entry`` in z units (default -2.0);
    ``mode: rsi`` uses Wilder's RSI(window), ``entry`` an RSI level (default 30). Thresholds are in the
    indicator's own units. Without ``exit`` the signal is on only while oversold; with ``exit`` (above
    ``entry``, e.g. 0.0 for the z-score, 50 for the RSI) a position entered when oversold is held until
    the indicator rises to ``exit``. Warm-up: ``window - 1`` bars (zscore) or ``window`` bars (rsi).

    History a paper session loads (``history``): ``warmup + 1`` bars for the z-score; for the RSI, whose
    Wilder averages are recursive, enough bars for the start to weigh under 1e-12
    (:func:`~qf_plugins.signals._indicators.rsi_history`: 375 bars for window 14); with ``exit`` the
    holding state depends on the last entry however long ago, so the whole available history (``None``).

    YAML::

        signal:
          type: mean_reversion
          params:
            mode: rsi
            window: 14
            entry: 30
            exit: 55
    """

    name = "mean_reversion"

    class Params(BaseParams):
        mode: Literal["zscore", "rsi"] = Field("zscore", description="indicator: z-score of close, or RSI")
        window: int = Field(20, ge=2, description="bars in the indicator (default 20 zscore, 14 rsi)")
        entry: float = Field(-2.0, description="oversold at or below this (default -2.0 zscore, 30 rsi)")
        exit: float | None = Field(None, description="if set, hold until the indicator reaches this level")

        @model_validator(mode="before")
        @classmethod
        def _mode_defaults(cls, data: Any) -> Any:
            # the right defaults depend on the mode, so fill them before field validation
            if isinstance(data, dict):
                mode = data.get("mode", "zscore")
                if mode in _DEFAULTS:
                    data = {**_DEFAULTS[mode], **data}
            return data

        @model_validator(mode="after")
        def _check_levels(self) -> MeanReversion.Params:
            if self.mode == "rsi" and not 0 < self.entry < 100:
                raise ValueError(f"entry ({self.entry}) is an RSI level and must be between 0 and 100")
            if self.mode == "rsi" and self.exit is not None and not 0 < self.exit < 100:
                raise ValueError(f"exit ({self.exit}) is an RSI level and must be between 0 and 100")
            if self.exit is not None and self.exit <= self.entry:
                raise ValueError(f"exit ({self.exit}) must be above entry ({self.entry}): long trades exit higher")
            return self

    params: Params

    @property
    def warmup(self) -> int:
        return self.params.window if self.params.mode == "rsi" else self.params.window - 1

    @property
    def history(self) -> int | None:
        from qf_plugins.signals._indicators import rsi_history  # lazy: numba

        p = self.params
        if p.exit is not None:
            return None  # held from an entry until the exit level, however long ago the entry was
        return rsi_history(p.window) if p.mode == "rsi" else self.warmup + 1

    def compute(self, bars: Bars) -> pd.DataFrame:
        from qf_plugins.signals._indicators import hold, rsi, zscore  # lazy: numba (loaded when a signal is computed)

        p = self.params
        ind = rsi(bars.close, p.window) if p.mode == "rsi" else zscore(bars.close, p.window)
        valid = ind.notna()
        oversold = ind <= p.entry
        if p.exit is None:
            return oversold.astype(float).where(valid)
        return hold(oversold, ind >= p.exit, valid)
