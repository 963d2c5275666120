"""Stop trading for a while after a bad day."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field

from qf.components import Params as BaseParams
from qf.components import RuleStatus, StatefulRiskRule

# state: the previous bar's equity, halted (1.0) or not, bars of cool-down left
PREV, HALTED, LEFT = 0, 1, 2


class DailyLossLimit(StatefulRiskRule):
    """When equity falls ``limit`` or more from the previous bar's close, flatten and stay flat for
    ``cooldown_bars`` bars, then resume at the next rebalance. A :class:`qf.components.StatefulRiskRule`,
    so it acts the same in every engine and in paper trading.

    YAML::

        risk:
          - type: daily_loss_limit
            params:
              limit: 0.03
              cooldown_bars: 1
    """

    name = "daily_loss_limit"
    state_size = 3

    class Params(BaseParams):
        limit: float = Field(..., gt=0, lt=1, description="one-bar loss that halts trading, e.g. 0.03")
        cooldown_bars: int = Field(1, ge=1, description="bars to stay flat after a halt")

    params: Params

    def parameters(self) -> Sequence[float]:
        return [self.params.limit, float(self.params.cooldown_bars)]

    def initial_state(self) -> Sequence[float]:
        return [np.nan, 0.0, 0.0]  # no previous bar yet, trading

    @staticmethod
    def step(equity, close, position, avg_price, inputs, params, state, symbol_state, exits):  # pragma: no cover
        # params: [limit, cooldown bars]
        prev = state[PREV]
        state[PREV] = equity
        if state[HALTED] == 1.0:
            state[LEFT] -= 1.0
            if state[LEFT] > 0.0:
                return 1
            state[HALTED] = 0.0
        if not np.isnan(prev) and prev > 0 and equity / prev - 1.0 <= -params[0]:
            state[HALTED] = 1.0
            state[LEFT] = max(params[1], 1.0)
            return 1
        return 0

    def describe(self, params: np.ndarray, state: np.ndarray, symbol_state: np.ndarray) -> RuleStatus:
        if state[HALTED] != 1.0:
            return RuleStatus()
        return RuleStatus(True, f"{int(max(state[LEFT] - 1.0, 0.0))} bar(s) of cool-down left")
