"""The ``volume_share`` cost model: slippage growing with the order's share of the bar's volume, and a cap."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from qf.bars import Bars
from qf.components import CostModel, Params
from qf.engines.costs import CostArrays


class VolumeShareParams(Params):
    price_impact: float = Field(default=0.1, ge=0, le=10, description="slippage at 100 % of the bar's volume")
    max_participation: float = Field(default=0.025, gt=0, le=1,
                                     description="the largest share of the bar's volume one order may trade")


class VolumeShare(CostModel):
    """Slippage ``price_impact * (q / V) ** 2`` for an order of ``q`` units on a bar that traded ``V``, and no
    order above ``max_participation * V``: a larger one is clipped, the rest carried to the next bar (a
    ``participation_cap`` event in ``risk_events.csv``). A bar with no volume trades nothing. The quadratic
    form and its defaults (0.1, 2.5 %) are zipline's ``VolumeShareSlippage``. ``V`` is the fill bar's own
    volume, so the cap knows the bar's volume at its open: a simulation convention, as in zipline.

    Example::

        m = VolumeShare({"price_impact": 0.1, "max_participation": 0.025})
        m.arrays(bars).max_qty[i, k]   # 0.025 * bars.volume.iloc[i, k]
    """

    name = "volume_share"
    Params = VolumeShareParams
    needs = ("volume",)

    def arrays(self, bars: Bars) -> CostArrays:
        assert bars.volume is not None
        v = bars.volume.to_numpy(dtype=float)
        traded = np.isfinite(v) & (v > 0)
        safe = np.where(traded, v, 1.0)
        impact = np.where(traded, self.params.price_impact / safe**2, 0.0)
        max_qty = np.where(traded, self.params.max_participation * safe, 0.0)
        return CostArrays(np.zeros(v.shape), impact, 2.0, max_qty)
