"""Per-position stop-loss and take-profit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field, model_validator

from qf.components import Params as BaseParams
from qf.components import StatefulRiskRule
from qf_plugins.sizers._common import trailing_vol_array

if TYPE_CHECKING:
    from qf.bars import Bars


class StopLoss(StatefulRiskRule):
    """Closes a position whose close moved against its average entry price by ``pct`` (a fraction), or
    by ``vol_mult`` trailing daily volatilities (standard deviation of the last ``vol_window`` returns);
    with both, the tighter stop wins. With ``take_profit`` a position that far in profit is closed too.
    Shorts mirror longs. The symbol stays out until the next rebalance re-enters it. A
    :class:`qf.components.StatefulRiskRule` (its trailing volatility is the rule's per-bar input), so it
    acts the same in every engine and in paper trading.

    YAML::

        risk:
          - type: stop_loss
            params:
              pct: 0.08
              vol_mult: 3.0
              vol_window: 20
              take_profit: 0.25
    """

    name = "stop_loss"

    class Params(BaseParams):
        pct: float | None = Field(None, gt=0, lt=1, description="stop distance as a fraction of entry, e.g. 0.08")
        vol_mult: float | None = Field(None, gt=0, le=50, description="stop distance in trailing daily vols")
        vol_window: int = Field(20, ge=2, description="daily returns in the volatility of vol_mult")
        take_profit: float | None = Field(None, gt=0, description="close a position this far in profit")

        @model_validator(mode="after")
        def _needs_a_stop(self) -> StopLoss.Params:
            if self.pct is None and self.vol_mult is None:
                raise ValueError("stop_loss needs pct (e.g. 0.08) or vol_mult (e.g. 3.0), or both")
            return self

    params: Params

    @property
    def n_inputs(self) -> int:  # type: ignore[override]
        return 0 if self.params.vol_mult is None else 1  # the trailing volatility, only for vol_mult

    @property
    def history(self) -> int:
        """Bars the trailing volatility of the last bar needs (``vol_window`` returns)."""
        return self.params.vol_window + 1

    def parameters(self) -> Sequence[float]:
        p = self.params
        return [math.nan if v is None else float(v) for v in (p.pct, p.vol_mult, p.take_profit)]

    def inputs(self, bars: Bars) -> np.ndarray | None:
        if self.params.vol_mult is None:
            return None
        # the valuation close (carried through gaps), as the stop compares it
        close = bars.close.ffill().to_numpy(dtype=float)
        return trailing_vol_array(close, self.params.vol_window)[None]

    @staticmethod
    def step(equity, close, position, avg_price, inputs, params, state, symbol_state, exits):  # pragma: no cover
        # params: [pct, vol_mult, take_profit], NaN = off; inputs[0] the trailing volatility (with vol_mult)
        stop_pct, vol_mult, tp_pct = params[0], params[1], params[2]
        for n in range(position.shape[0]):
            pos = position[n]
            if pos == 0.0 or np.isnan(close[n]) or np.isnan(avg_price[n]):
                continue
            dist = stop_pct
            if not np.isnan(vol_mult) and inputs.shape[0] > 0 and not np.isnan(inputs[0, n]):
                vdist = vol_mult * inputs[0, n]
                dist = vdist if np.isnan(dist) else min(dist, vdist)
            move = close[n] / avg_price[n] - 1.0
            if pos < 0:
                move = -move
            if not np.isnan(dist) and move <= -dist:
                exits[n] = True
            elif not np.isnan(tp_pct) and move >= tp_pct:
                exits[n] = True
        return 0
