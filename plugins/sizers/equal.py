"""Equal weight among the symbols with a positive signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import Sizer
from qf.rebalance import bar_positions
from qf_plugins.sizers._common import aligned_signal


class EqualWeight(Sizer):
    """Splits ``gross`` equally among the symbols whose signal is > 0 on the rebalance date.

    With ``by_signal: true`` each share is scaled by the signal's strength (a 0.5 score gets half an equal
    share; the rest stays in cash). With ``allow_short: true`` negative signals get negative weights and
    count among the n names. A date with no selected symbol is all zeros (flat).

    YAML::

        sizer:
          type: equal
          params:
            gross: 1.0
            by_signal: false
    """

    name = "equal"

    class Params(BaseParams):
        gross: float = Field(1.0, gt=0, le=10, description="sum of |weights| when fully invested")
        by_signal: bool = Field(False, description="scale each equal share by |signal|")
        allow_short: bool = Field(False, description="negative signals become short positions")

    params: Params

    def size(self, signal: pd.DataFrame, bars: Bars, dates: pd.DatetimeIndex) -> pd.DataFrame:
        p = self.params
        close = bars.close
        rows = bar_positions(close.index, dates)
        if (rows < 0).any() or not signal.index.equals(close.index) or not signal.columns.equals(close.columns):
            s = aligned_signal(signal, bars, dates, p.allow_short)
            n = (s != 0).sum(axis=1)
            share = s if p.by_signal else np.sign(s)
            return share.div(n.where(n > 0), axis=0).fillna(0.0) * p.gross
        # the same steps in one pass over arrays (a sweep sizes thousands of signals on the same bars)
        from qf_plugins.sizers.equal_kernel import equal_weights_nb  # lazy: numba

        w_t = equal_weights_nb(signal.to_numpy(dtype=float).T, close.to_numpy(dtype=float).T, rows, float(p.gross),
                               p.by_signal, p.allow_short)
        return pd.DataFrame(w_t.T, index=dates, columns=close.columns, copy=False)  # a fresh array: no copy
