"""Forbid short positions."""

from __future__ import annotations

import pandas as pd

from qf.bars import Bars
from qf.components import RiskRule


class LongOnly(RiskRule):
    """Sets every negative weight to 0 (the short goes to cash; longs are not rescaled). NaN (hold) stays.

    YAML::

        risk:
          - type: long_only
    """

    name = "long_only"

    def apply(self, weights: pd.DataFrame, bars: Bars) -> pd.DataFrame:
        return weights.clip(lower=0.0)
