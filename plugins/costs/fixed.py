"""The ``fixed`` cost model: a constant slippage fraction, what ``execution.slippage`` has always meant."""

from __future__ import annotations

from pydantic import Field

from qf.bars import Bars
from qf.components import CostModel, Params
from qf.engines.costs import CostArrays


class FixedParams(Params):
    slippage: float = Field(default=0.0, ge=0, lt=0.1, description="fraction of the price, against the trade")


class Fixed(CostModel):
    """Every order fills ``slippage`` (a fraction) against it: buys at ``price * (1 + s)``, sells at
    ``price * (1 - s)``. ``execution: {slippage: 0.0005}`` is shorthand for this model.

    Example::

        Fixed({"slippage": 0.0005}).arrays(bars).slippage[0, 0]   # 0.0005
    """

    name = "fixed"
    Params = FixedParams

    def arrays(self, bars: Bars) -> CostArrays:
        return CostArrays.constant(bars.close.shape, self.params.slippage)
