"""Stop trading when the portfolio's drawdown gets too deep."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from qf.components import Params as BaseParams
from qf.components import StatefulRiskRule

if TYPE_CHECKING:
    # annotation only: qf.engines.kernels.risk imports numba (and numba scipy), which listing commands should not load
    from qf.engines.kernels.risk import RiskConfig


class DrawdownHalt(StatefulRiskRule):
    """When equity falls ``max_drawdown`` below its running peak, flatten everything.

    Without ``cooldown_bars`` the portfolio stays flat for the rest of the run (a hard kill switch). With
    it, trading resumes at the first rebalance after that many bars and the peak restarts from the equity
    at that point. Evaluated by the shared risk kernel, so it acts the same in every engine.

    YAML::

        risk:
          - type: drawdown_halt
            params:
              max_drawdown: 0.20
              cooldown_bars: 21
    """

    name = "drawdown_halt"

    class Params(BaseParams):
        max_drawdown: float = Field(..., gt=0, lt=1, description="drawdown from the peak that halts, e.g. 0.2")
        cooldown_bars: int | None = Field(None, ge=1, description="bars flat before resuming (null: stay flat)")

    params: Params

    def configure(self, config: RiskConfig) -> None:
        config.dd_limit = self.params.max_drawdown
        config.dd_cooldown = -1 if self.params.cooldown_bars is None else self.params.cooldown_bars
