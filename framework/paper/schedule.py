"""Rebalance decisions bar by bar, knowing only the trading calendar (never future prices).

A backtest picks its decision dates from the whole index (:func:`qf.rebalance.rebalance_dates`). A live
session sees one bar at a time, so it asks the calendar instead: is this bar the last session of its
week, month or quarter? For a replayed history the calendar is the data's own index, and the answer is
exactly the backtest's (a test holds them together); for Alpaca it is the broker's trading calendar.

Example::

    decide = is_decision(pd.Timestamp("2024-01-05"), RebalanceSpec(freq="weekly"),
                         next_session=pd.Timestamp("2024-01-08"), ordinal=4)   # True: Friday ends the week
"""

from __future__ import annotations

import pandas as pd

from qf.config.schema import RebalanceSpec

_PERIODS = {"weekly": "W", "month_end": "M", "quarter_end": "Q"}


def is_decision(t: pd.Timestamp, spec: RebalanceSpec, next_session: pd.Timestamp | None, ordinal: int) -> bool:
    """Whether the bar at ``t`` is a rebalance decision.

    ``next_session`` is the calendar's next session after ``t`` (None when there is none, such as the
    last bar of a replayed history: :func:`qf.rebalance.rebalance_dates` treats it as a period end too);
    ``ordinal`` counts the sessions from the schedule's anchor (0 at the anchor) for ``every: n``.

    Example::

        is_decision(pd.Timestamp("2024-01-31"), RebalanceSpec(freq="month_end"), pd.Timestamp("2024-02-01"), 21)
        # True
    """
    if spec.every is not None:
        return ordinal >= 0 and ordinal % spec.every == 0
    if spec.freq == "daily":
        return True
    if next_session is None:
        return True
    code = _PERIODS[str(spec.freq)]
    return pd.Period(t, code) != pd.Period(next_session, code)


def index_calendar(index: pd.DatetimeIndex, t: pd.Timestamp, anchor: pd.Timestamp) -> tuple[pd.Timestamp | None, int]:
    """(next session, ordinal from ``anchor``) of ``t`` in a known index: the calendar of a replay.

    Example::

        idx = pd.bdate_range("2024-01-01", periods=5)
        index_calendar(idx, idx[2], idx[0])   # (Timestamp('2024-01-04'), 2)
    """
    pos = int(index.get_loc(t))
    nxt = index[pos + 1] if pos + 1 < len(index) else None
    return nxt, pos - int(index.get_loc(anchor))
