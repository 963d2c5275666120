"""Equal weight among the symbols with a positive signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import Sizer
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
        rows = close.index.get_indexer(dates)
        if (rows < 0).any() or not signal.index.equals(close.index) or not signal.columns.equals(close.columns):
            s = aligned_signal(signal, bars, dates, p.allow_short)
            n = (s != 0).sum(axis=1)
            share = s if p.by_signal else np.sign(s)
            return share.div(n.where(n > 0), axis=0).fillna(0.0) * p.gross
        # the same steps on arrays (a sweep sizes thousands of signals on the same bars): the signal on the
        # rebalance dates, unusable scores (missing, not listed) 0, shorts clipped unless allowed, then an
        # equal (or signal-scaled) share of ``gross`` among the non-zero names
        s = signal.to_numpy(dtype=float)[rows]
        s = np.where(np.isnan(s) | np.isnan(close.to_numpy(dtype=float)[rows]), 0.0, s)
        if not p.allow_short:
            s = np.where(s < 0.0, 0.0, s)
        n = (s != 0).sum(axis=1)
        share = s if p.by_signal else np.sign(s)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where((n > 0)[:, None], share / n[:, None], 0.0) * p.gross
        return pd.DataFrame(w, index=dates, columns=close.columns)
