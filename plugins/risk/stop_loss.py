"""Per-position stop-loss and take-profit."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from qf.components import Params as BaseParams
from qf.components import StatefulRiskRule

if TYPE_CHECKING:
    # annotation only: qf.engines.kernels.risk imports numba (and numba scipy), which listing commands should not load
    from qf.engines.kernels.risk import RiskConfig


class StopLoss(StatefulRiskRule):
    """Closes a position whose close moved against its average entry price by ``pct`` (a fraction), or
    by ``vol_mult`` trailing daily volatilities (standard deviation of the last ``vol_window`` returns);
    with both, the tighter stop wins. With ``take_profit`` a position that far in profit is closed too.
    Shorts mirror longs. The symbol stays out until the next rebalance re-enters it. Evaluated by the
    shared risk kernel, so it acts the same in every engine.

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

    def configure(self, config: RiskConfig) -> None:
        p = self.params
        config.stop_pct = math.nan if p.pct is None else p.pct
        config.stop_vol_mult = math.nan if p.vol_mult is None else p.vol_mult
        config.stop_vol_window = p.vol_window
        config.take_profit_pct = math.nan if p.take_profit is None else p.take_profit
