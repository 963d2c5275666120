"""The ``spread`` cost model: each order crosses half of the bid-ask spread, quoted or estimated.

With ``bps`` the full quoted spread is a fixed estimate (e.g. 2 bp for large caps). With
``estimate: corwin_schultz`` it is estimated per symbol and bar from daily highs and lows, by Corwin &
Schultz, "A Simple Way to Estimate Bid-Ask Spreads from Daily High and Low Prices", Journal of Finance
67(2), 2012: for two consecutive bars ``t, t+1``::

    beta  = ln(H_t / L_t) ** 2 + ln(H_t+1 / L_t+1) ** 2
    gamma = ln(max(H_t, H_t+1) / min(L_t, L_t+1)) ** 2
    alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt 2) - sqrt(gamma / (3 - 2 sqrt 2))
    S     = 2 (exp(alpha) - 1) / (1 + exp(alpha))       (negative estimates set to 0, as the paper does)

averaged over the last ``window`` pairs that end before the fill bar (nothing of the fill bar is used).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from qf.bars import Bars
from qf.components import CostModel, Params
from qf.engines.costs import CostArrays

_K = 3.0 - 2.0 * np.sqrt(2.0)


class SpreadParams(Params):
    bps: float | None = Field(default=None, gt=0, lt=2000,
                              description="the full quoted bid-ask spread, in basis points of the price")
    estimate: Literal["corwin_schultz"] | None = Field(
        default=None, description="estimate the spread from daily highs and lows (Corwin & Schultz 2012)")
    window: int = Field(default=20, ge=1, le=1000, description="bar pairs the estimate is averaged over")

    @model_validator(mode="after")
    def _one_of(self) -> SpreadParams:
        if (self.bps is None) == (self.estimate is None):
            raise ValueError("give exactly one of 'bps' (a quoted spread) or 'estimate: corwin_schultz'")
        return self


def corwin_schultz(high: pd.DataFrame, low: pd.DataFrame) -> pd.DataFrame:
    """The Corwin-Schultz spread (a fraction of the price) of each pair of bars, on the pair's second bar.

    Example::

        corwin_schultz(bars.high, bars.low).iloc[1]   # the spread estimated from bars 0 and 1
    """
    hl = np.log(high / low) ** 2
    beta = hl + hl.shift(1)
    gamma = np.log(np.maximum(high, high.shift(1)) / np.minimum(low, low.shift(1))) ** 2
    alpha = (np.sqrt(2.0 * beta) - np.sqrt(beta)) / _K - np.sqrt(gamma / _K)
    s = 2.0 * (np.exp(alpha) - 1.0) / (1.0 + np.exp(alpha))
    return s.clip(lower=0.0)


class Spread(CostModel):
    """A market order pays half the bid-ask spread: the reference price is the mid, a buy fills at the ask
    ``mid * (1 + spread / 2)``, a sell at the bid. The spread is ``bps`` (quoted, the same on every bar) or
    the Corwin-Schultz high-low estimate (see the module docstring); before the first estimate, none is
    charged.

    Example::

        Spread({"bps": 10}).arrays(bars).slippage[0, 0]   # 0.0005: half of 10 bp
    """

    name = "spread"
    Params = SpreadParams

    @property
    def needs(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("high", "low") if self.params.estimate else ()

    def arrays(self, bars: Bars) -> CostArrays:
        shape = bars.close.shape
        if self.params.bps is not None:
            return CostArrays.constant(shape, self.params.bps / 2.0 / 10_000.0)
        assert bars.high is not None and bars.low is not None
        traded = pd.DataFrame(bars.traded(), index=bars.index, columns=bars.close.columns)
        s = corwin_schultz(bars.high.where(traded), bars.low.where(traded))
        # the pairs that end before the fill bar
        mean = s.rolling(self.params.window, min_periods=1).mean().shift(1)
        half = mean.fillna(0.0).to_numpy(dtype=float) / 2.0
        return CostArrays(half, np.zeros(shape), 1.0, np.full(shape, np.inf))
