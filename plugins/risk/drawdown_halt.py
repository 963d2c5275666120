"""Stop trading when the portfolio's drawdown gets too deep."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field

from qf.components import Params as BaseParams
from qf.components import RuleStatus, StatefulRiskRule

# state: the running peak of equity, halted (1.0) or not, bars of cool-down left
PEAK, HALTED, LEFT = 0, 1, 2


class DrawdownHalt(StatefulRiskRule):
    """When equity falls ``max_drawdown`` below its running peak, flatten everything.

    Without ``cooldown_bars`` the portfolio stays flat for the rest of the run (a hard kill switch). With
    it, trading resumes at the first rebalance after that many bars and the peak restarts from the equity
    at that point. A :class:`qf.components.StatefulRiskRule` like any third party's, so it acts the same in
    every engine and in paper trading.

    YAML::

        risk:
          - type: drawdown_halt
            params:
              max_drawdown: 0.20
              cooldown_bars: 21
    """

    name = "drawdown_halt"
    state_size = 3

    class Params(BaseParams):
        max_drawdown: float = Field(..., gt=0, lt=1, description="drawdown from the peak that halts, e.g. 0.2")
        cooldown_bars: int | None = Field(None, ge=1, description="bars flat before resuming (null: stay flat)")

    params: Params

    def parameters(self) -> Sequence[float]:
        cool = self.params.cooldown_bars
        return [self.params.max_drawdown, -1.0 if cool is None else float(cool)]

    def initial_state(self) -> Sequence[float]:
        return [np.nan, 0.0, 0.0]  # no peak yet, trading

    @staticmethod
    def step(equity, close, position, avg_price, inputs, params, state, symbol_state, exits):  # pragma: no cover
        # params: [max_drawdown, cooldown bars (-1: stay flat)]
        if state[HALTED] == 1.0:
            if params[1] < 0:
                return 1
            state[LEFT] -= 1.0
            if state[LEFT] > 0.0:
                return 1
            state[HALTED] = 0.0  # the cool-down is over: the peak restarts from here
            state[PEAK] = equity
        if np.isnan(state[PEAK]) or equity > state[PEAK]:
            state[PEAK] = equity
        if equity <= state[PEAK] * (1.0 - params[0]):
            state[HALTED] = 1.0
            state[LEFT] = params[1]
            return 1
        return 0

    def describe(self, params: np.ndarray, state: np.ndarray, symbol_state: np.ndarray) -> RuleStatus:
        if state[HALTED] != 1.0:
            return RuleStatus()
        if params[1] < 0:
            return RuleStatus(True, "until an operator resets it")
        return RuleStatus(True, f"{int(max(state[LEFT] - 1.0, 0.0))} bar(s) of cool-down left")
