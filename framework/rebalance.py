"""Rebalance schedules: which bars are decision bars.

Calendar rules take the last bar of each period present in the data (``weekly`` = last bar of each
calendar week, ``month_end`` = last bar of each month). Knowing that a bar ends its period uses only
the trading calendar, which is known in advance, not prices.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qf.config.schema import RebalanceSpec

_PERIODS = {"weekly": "W", "month_end": "M", "quarter_end": "Q"}


def rebalance_dates(index: pd.DatetimeIndex, spec: RebalanceSpec, start: int = 0) -> pd.DatetimeIndex:
    """Decision dates in ``index`` from bar ``start`` on.

    Example::

        rebalance_dates(pd.bdate_range("2024-01-01", "2024-03-31"), RebalanceSpec(freq="month_end"))
        # -> 2024-01-31, 2024-02-29, 2024-03-29
    """
    idx = index[start:]
    if len(idx) == 0:
        return idx
    if spec.every is not None:
        return idx[:: spec.every]
    if spec.freq == "daily":
        return idx
    periods = idx.to_period(_PERIODS[spec.freq])
    last = np.r_[periods[1:] != periods[:-1], True]
    return idx[last]


def bar_positions(index: pd.DatetimeIndex, dates: pd.Index) -> np.ndarray:
    """Positions of ``dates`` in ``index`` (-1 where a date is not a bar): ``index.get_indexer(dates)``.

    A daily schedule's dates are the bars themselves; that case costs one comparison instead of a hash
    lookup per date (a sweep asks this several times per combination).

    Example::

        bar_positions(bars.index, rebalance_dates(bars.index, RebalanceSpec(freq="daily")))   # 0, 1, 2, ...
    """
    if len(dates) == len(index) and dates.equals(index):
        return np.arange(len(index))
    return index.get_indexer(dates)
