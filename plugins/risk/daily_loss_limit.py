"""Stop trading for a while after a bad day."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from qf.components import Params as BaseParams
from qf.components import StatefulRiskRule

if TYPE_CHECKING:
    # annotation only: qf.engines.kernels.risk imports numba (and numba scipy), which listing commands should not load
    from qf.engines.kernels.risk import RiskConfig


class DailyLossLimit(StatefulRiskRule):
    """When equity falls ``limit`` or more from the previous bar's close, flatten and stay flat for
    ``cooldown_bars`` bars, then resume at the next rebalance. Evaluated by the shared risk kernel.

    YAML::

        risk:
          - type: daily_loss_limit
            params:
              limit: 0.03
              cooldown_bars: 1
    """

    name = "daily_loss_limit"

    class Params(BaseParams):
        limit: float = Field(..., gt=0, lt=1, description="one-bar loss that halts trading, e.g. 0.03")
        cooldown_bars: int = Field(1, ge=1, description="bars to stay flat after a halt")

    params: Params

    def configure(self, config: RiskConfig) -> None:
        config.daily_limit = self.params.limit
        config.daily_cooldown = self.params.cooldown_bars
