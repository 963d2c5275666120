"""Time-series or cross-sectional momentum on the lookback return, skipping the most recent bars."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import SignalModel


class Momentum(SignalModel):
    """Score of the return from ``lookback + skip`` bars ago to ``skip`` bars ago.

    ``mode: sign`` gives the sign of that return (+1, 0, -1: time-series momentum). ``mode: rank`` ranks
    the returns across the symbols trading on each row and scales the rank linearly to [-1, 1] (best +1,
    worst -1; with a single symbol the score falls back to the sign). Skipping the last bars (``skip: 21``
    for the classic 12-1 momentum) avoids the short-term reversal. With ``top_n`` only the n best returns
    of each row keep their score and every other symbol gets 0 (ties broken by column order).
    The first ``lookback + skip`` bars of each symbol are NaN.

    YAML::

        signal:
          type: momentum
          params:
            lookback: 252
            skip: 21
            mode: rank
            top_n: 5
    """

    name = "momentum"

    class Params(BaseParams):
        lookback: int = Field(252, ge=1, description="bars over which the return is measured")
        skip: int = Field(21, ge=0, description="most recent bars left out of the return")
        mode: Literal["sign", "rank"] = Field("sign", description="sign of the return, or cross-sectional rank")
        top_n: int | None = Field(None, ge=1, description="keep only the n best symbols per row (others 0)")

    params: Params

    @property
    def warmup(self) -> int:
        return self.params.lookback + self.params.skip

    def compute(self, bars: Bars) -> pd.DataFrame:
        p = self.params
        close = bars.close
        ret = close.shift(p.skip) / close.shift(p.skip + p.lookback) - 1.0
        if p.mode == "sign":
            score = np.sign(ret)
        else:
            count = ret.notna().sum(axis=1)
            rank = ret.rank(axis=1, method="average")
            scaled = (rank - 1.0).div((count - 1).where(count > 1), axis=0) * 2.0 - 1.0
            # scaled is NaN only where ret is NaN or the row has a single symbol; that lone symbol has no
            # cross-section to rank against, so it gets the sign of its return
            score = scaled.fillna(np.sign(ret))
        if p.top_n is not None:
            best = ret.rank(axis=1, method="first", ascending=False) <= p.top_n
            score = score.where(best | ret.isna(), 0.0)
        return score
