"""The ``spread`` cost model: each order crosses half of the quoted bid-ask spread."""

from __future__ import annotations

from pydantic import Field

from qf.bars import Bars
from qf.components import CostModel, Params
from qf.engines.costs import CostArrays


class SpreadParams(Params):
    bps: float = Field(gt=0, lt=2000, description="the full quoted bid-ask spread, in basis points of the price")


class Spread(CostModel):
    """A market order pays half the bid-ask spread: the reference price is the mid, a buy fills at the ask
    ``mid * (1 + bps / 2 / 10_000)``, a sell at the bid. ``bps`` is the full quoted spread (an estimate,
    e.g. 2 bp for large caps), the same on every bar.

    Example::

        Spread({"bps": 10}).arrays(bars).slippage[0, 0]   # 0.0005: half of 10 bp
    """

    name = "spread"
    Params = SpreadParams

    def arrays(self, bars: Bars) -> CostArrays:
        return CostArrays.constant(bars.close.shape, self.params.bps / 2.0 / 10_000.0)
