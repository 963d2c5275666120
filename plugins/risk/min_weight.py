"""Drop positions too small to be worth their trading costs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import RiskRule


class MinWeight(RiskRule):
    """Sets weights with |w| < ``threshold`` to 0. With ``renormalise: true`` the remaining weights of the
    row are scaled up so the row keeps its gross exposure (sum |w|) from before the drop; a row where
    everything was dropped goes flat. NaN weights (hold) pass through untouched and are not counted.

    YAML::

        risk:
          - type: min_weight
            params:
              threshold: 0.02
              renormalise: true
    """

    name = "min_weight"

    class Params(BaseParams):
        threshold: float = Field(0.01, gt=0, lt=1, description="smallest |weight| worth holding")
        renormalise: bool = Field(False, description="scale survivors back up to the row's original gross")

    params: Params

    def apply(self, weights: pd.DataFrame, bars: Bars) -> pd.DataFrame:
        w = weights.to_numpy(dtype=float)
        small = np.abs(w) < self.params.threshold  # False for NaN, so holds survive
        out = np.where(small, 0.0, w)
        if self.params.renormalise:
            before = np.abs(np.nan_to_num(w)).sum(axis=1)
            after = np.abs(np.nan_to_num(out)).sum(axis=1)
            out = out * np.where(after > 0, before / np.where(after > 0, after, 1.0), 1.0)[:, None]
        return pd.DataFrame(out, index=weights.index, columns=weights.columns)
