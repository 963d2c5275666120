"""The buy-and-hold baseline: the same score for every symbol on every bar."""

from __future__ import annotations

import pandas as pd
from pydantic import Field

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import SignalModel


class Constant(SignalModel):
    """``value`` for every symbol with a close, NaN before a symbol lists; no warm-up.

    With the default 1.0 and an equal-weight sizer this is the buy-and-hold benchmark a strategy must beat.

    YAML::

        signal:
          type: constant
          params:
            value: 1.0
    """

    name = "constant"

    class Params(BaseParams):
        value: float = Field(1.0, ge=-1.0, le=1.0, description="the score, in [-1, 1]")

    params: Params

    def compute(self, bars: Bars) -> pd.DataFrame:
        return pd.DataFrame(self.params.value, index=bars.close.index, columns=bars.close.columns).where(
            bars.close.notna()
        )
