"""The trailing stop: close a position once its close falls ``pct`` below the best close since entry."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field
from qf.components import Params, StatefulRiskRule

# per-symbol state rows
BEST, SIDE = 0, 1


class TrailingStop(StatefulRiskRule):
    """Closes a long position whose close falls ``pct`` below the highest close since it was entered, and a
    short whose close rises ``pct`` above the lowest close since entry. The symbol stays out until the next
    rebalance re-enters it; a new position (or a reversal) starts a new trail.

    The trail starts at the close of the first decision bar that sees the position (the entry's fill bar
    under ``next_close``), and follows the closes from there.

    YAML::

        risk:
          - type: trailing_stop
            params:
              pct: 0.08
    """

    name = "trailing_stop"
    symbol_state_size = 2  # [best close since entry, side of the position it belongs to (+1, -1, 0)]

    class Params(Params):
        pct: float = Field(..., gt=0, lt=1, description="distance from the best close since entry, e.g. 0.08")

    params: Params

    def parameters(self) -> Sequence[float]:
        return [self.params.pct]

    def initial_symbol_state(self) -> Sequence[float]:
        return [np.nan, 0.0]  # no trail, no position

    @staticmethod
    def step(equity, close, position, avg_price, inputs, params, state, symbol_state, exits):  # pragma: no cover
        pct = params[0]
        for n in range(position.shape[0]):
            pos = position[n]
            if pos == 0.0:
                symbol_state[BEST, n] = np.nan  # flat: the next position starts a new trail
                symbol_state[SIDE, n] = 0.0
                continue
            c = close[n]
            if np.isnan(c):
                continue
            side = 1.0 if pos > 0 else -1.0
            best = symbol_state[BEST, n]
            if symbol_state[SIDE, n] != side or np.isnan(best):
                best = c  # a new position (or a reversal): its trail starts here
            elif side > 0:
                best = max(best, c)
            else:
                best = min(best, c)
            symbol_state[BEST, n] = best
            symbol_state[SIDE, n] = side
            if (side > 0 and c <= best * (1.0 - pct)) or (side < 0 and c >= best * (1.0 + pct)):
                exits[n] = True
        return 0
