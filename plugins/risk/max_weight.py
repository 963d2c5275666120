"""Cap the size of any single position."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import RiskRule


def cap_magnitudes(a: np.ndarray, limit: float, redistribute: bool) -> np.ndarray:
    """Cap each row's non-negative magnitudes ``a`` at ``limit``; optionally hand the excess on.

    Redistribution is water-filling: the excess goes pro rata to the names still below the cap; any that
    would then exceed it are capped in turn and their overflow passed on, until nothing is left or every
    holding is at the cap (the rest stays in cash). Names with zero weight are never added.
    """
    capped = np.minimum(a, limit)
    if not redistribute:
        return capped
    excess = (a - capped).sum(axis=1)
    a = capped
    for _ in range(a.shape[1]):
        room = (a > 0) & (a < limit * (1 - 1e-12))
        base = (a * room).sum(axis=1)
        active = (excess > 1e-15) & (base > 0)
        if not active.any():
            break
        factor = np.where(active, excess / np.where(base > 0, base, 1.0), 0.0)
        a = a + a * room * factor[:, None]
        excess = np.where(active, np.maximum(a - limit, 0.0).sum(axis=1), 0.0)
        a = np.minimum(a, limit)
    return a


class MaxWeight(RiskRule):
    """No position larger than ``limit`` of equity in absolute value (longs and shorts alike).

    By default the trimmed part goes to cash. With ``redistribute: true`` it is handed pro rata to the
    names held below the cap, never lifting any of them above it (when every holding is capped the rest
    stays in cash); signs are kept. NaN weights (hold) pass through untouched.

    YAML::

        risk:
          - type: max_weight
            params:
              limit: 0.25
              redistribute: true
    """

    name = "max_weight"

    class Params(BaseParams):
        limit: float = Field(0.25, gt=0, le=1, description="largest |weight| of any single symbol")
        redistribute: bool = Field(False, description="give the trimmed weight to the names below the cap")

    params: Params

    def apply(self, weights: pd.DataFrame, bars: Bars) -> pd.DataFrame:
        w = weights.to_numpy(dtype=float)
        hold = np.isnan(w)
        a = cap_magnitudes(np.abs(np.where(hold, 0.0, w)), self.params.limit, self.params.redistribute)
        out = np.where(hold, np.nan, np.sign(w) * a)
        return pd.DataFrame(out, index=weights.index, columns=weights.columns)
