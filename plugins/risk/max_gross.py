"""Cap the gross (and optionally the net) exposure of the book."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import RiskRule


def _room(limit: float, exposure: np.ndarray) -> np.ndarray:
    """limit / exposure, and no constraint (inf) where there is no exposure."""
    return np.where(exposure > 0, limit / np.where(exposure > 0, exposure, 1.0), np.inf)


class MaxGross(RiskRule):
    """Scales a row down, keeping its proportions, so that sum |w| <= ``limit`` and, with ``max_net`` set,
    |sum w| <= ``max_net``. Rows already inside the limits are left alone (the rule never levers up).
    NaN weights (hold) are not counted and pass through untouched.

    YAML::

        risk:
          - type: max_gross
            params:
              limit: 1.5
              max_net: 1.0
    """

    name = "max_gross"

    class Params(BaseParams):
        limit: float = Field(1.0, gt=0, le=20, description="largest sum of |weights| (1.0 = no leverage)")
        # gt=0: scaling keeps proportions, so a net cap of 0 could only be met by going flat
        max_net: float | None = Field(None, gt=0, le=20, description="largest |sum of weights|, if set")

    params: Params

    def apply(self, weights: pd.DataFrame, bars: Bars) -> pd.DataFrame:
        w = weights.to_numpy(dtype=float)
        known = np.nan_to_num(w)
        factor = np.minimum(1.0, _room(self.params.limit, np.abs(known).sum(axis=1)))
        if self.params.max_net is not None:
            factor = np.minimum(factor, _room(self.params.max_net, np.abs(known.sum(axis=1))))
        return pd.DataFrame(w * factor[:, None], index=weights.index, columns=weights.columns)
