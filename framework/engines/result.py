"""What an engine returns, whichever engine it is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from qf.engines.inputs import SimInputs

ORDER_COLUMNS = ["time", "symbol", "side", "quantity", "price", "fee"]
EVENT_COLUMNS = ["time", "event", "symbol"]


@dataclass
class EngineResult:
    """Equity at each bar's close, every fill, and what the stateful risk rules did.

    ``orders`` has the columns ``time, symbol, side, quantity, price, fee`` (quantity > 0, side is
    ``buy``/``sell``, price includes the cost model's slippage); ``events`` has ``time, event, symbol`` (see
    :func:`events_frame`).
    """

    engine: str
    equity: pd.Series
    orders: pd.DataFrame
    events: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=EVENT_COLUMNS))
    extra: dict = field(default_factory=dict)

    @property
    def fees_paid(self) -> float:
        return float(self.orders["fee"].sum()) if len(self.orders) else 0.0

    @property
    def traded_value(self) -> float:
        return float((self.orders["quantity"] * self.orders["price"]).sum()) if len(self.orders) else 0.0


def orders_frame(bar: np.ndarray, col: np.ndarray, side: np.ndarray, quantity: np.ndarray, price: np.ndarray,
                 fee: np.ndarray, index: pd.DatetimeIndex, symbols: Sequence[str], *,
                 categorical: bool = False) -> pd.DataFrame:
    """Fills as :data:`ORDER_COLUMNS` rows, sorted by time, then buy before sell, then symbol: every engine's
    ``orders`` (and ``orders.csv``) is built here.

    ``bar``/``col`` are each fill's row of ``index`` and column of ``symbols``, ``side`` is 0 for a buy and 1 for
    a sell (vectorbt's order records); ``quantity`` > 0. ``categorical`` makes ``symbol`` and ``side``
    categorical columns (a sweep builds thousands of frames: tens of thousands of strings cost more to build
    than the simulation).

    Example::

        orders_frame(np.array([0]), np.array([1]), np.array([0]), np.array([10.0]), np.array([100.0]),
                     np.array([0.1]), pd.DatetimeIndex(["2024-01-02"]), ["A", "B"])
        #         time symbol side  quantity  price  fee
        # 0 2024-01-02      B  buy      10.0  100.0  0.1
    """
    bar = np.asarray(bar, dtype=np.int64)
    col = np.asarray(col, dtype=np.int64)
    side = np.asarray(side, dtype=np.int64)
    names = np.asarray(symbols, dtype=object)
    # the rank of each symbol's name, so that sorting by it sorts by the name ("buy" < "sell" is side 0 < 1)
    name_rank = np.empty(len(names), dtype=np.int64)
    name_rank[np.argsort(names.astype(str), kind="mergesort")] = np.arange(len(names))
    # one integer key (bar, side, name) sorts faster than a lexsort of three; fills are unique per key
    key = (bar * 2 + side) * len(names) + name_rank[col]
    order = np.argsort(key, kind="stable")
    if categorical:
        # the codes are the engine's own column and side numbers: nothing to validate
        symbol = pd.Categorical.from_codes(col[order], categories=pd.Index(names), validate=False)
        sides = pd.Categorical.from_codes(side[order], categories=["buy", "sell"], validate=False)
    else:
        symbol = names[col[order]]
        sides = np.array(["buy", "sell"], dtype=object)[side[order]]
    return pd.DataFrame({
        "time": index[bar[order]],
        "symbol": symbol,
        "side": sides,
        "quantity": np.asarray(quantity, dtype=float)[order],
        "price": np.asarray(price, dtype=float)[order],
        "fee": np.asarray(fee, dtype=float)[order],
    }, columns=ORDER_COLUMNS)


def event_rows(events: np.ndarray, delisted_at: np.ndarray | None = None,
               capped: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the risk kernel, the calendar and the cost model did, as ``(row, event, column)`` arrays (column
    -1: no symbol), unsorted. The one definition of each event; :func:`risk_events_frame` and the paper
    session's per-bar rows are both built from it.

    - ``flatten``: one per row where the kernel's ``events`` holds :data:`EVENT_FLATTEN` (a halt);
    - ``stop``: each cell holding :data:`EVENT_STOP`;
    - ``delisted``: each symbol's ``delisted_at`` row (``-1``: not delisted, or beyond ``events``' rows);
    - ``participation_cap``: each order the cost model's cap clipped (``capped``, ``[rows, N]``; the rest was
      carried to the next bar).

    Example::

        row, event, col = event_rows(np.array([[0, 2]], dtype=np.int8))   # ([0], ['stop'], [1])
    """
    # imported here: reading results (reports, paper state) must not load the numba kernels
    from qf.engines.kernels.step import EVENT_FLATTEN, EVENT_STOP  # lazy: numba

    flat = np.flatnonzero((events == EVENT_FLATTEN).any(axis=1))
    stop_row, stop_col = np.nonzero(events == EVENT_STOP)
    parts = [(flat, "flatten", np.full(len(flat), -1)), (stop_row, "stop", stop_col)]
    if delisted_at is not None:
        delisted_at = np.asarray(delisted_at)
        gone = np.flatnonzero((delisted_at >= 0) & (delisted_at < events.shape[0]))
        parts.append((delisted_at[gone], "delisted", gone))
    if capped is not None:
        cap_row, cap_col = np.nonzero(capped)
        parts.append((cap_row, "participation_cap", cap_col))
    row = np.concatenate([p[0] for p in parts]).astype(np.int64)
    event = np.concatenate([np.full(len(p[0]), p[1], dtype=object) for p in parts])
    col = np.concatenate([p[2] for p in parts]).astype(np.int64)
    return row, event, col


def risk_events_frame(events: np.ndarray, index: pd.DatetimeIndex, symbols: Sequence[str],
                      delisted_at: np.ndarray | None = None, capped: np.ndarray | None = None) -> pd.DataFrame:
    """:func:`event_rows` as rows ``time, event, symbol`` (``symbol`` empty for ``flatten``), sorted by those
    columns. Row ``r`` of ``events``/``capped`` is bar ``index[r]``. Every engine builds its events here (the
    backtest strategies through :class:`qf.engines.decision.DecisionStep`).

    Example::

        risk_events_frame(events, inputs.index, inputs.symbols, inputs.delisted_at).query("event == 'stop'")
    """
    row, event, col = event_rows(events, delisted_at, capped)
    if not len(row):
        return pd.DataFrame(columns=EVENT_COLUMNS)
    names = np.append(np.asarray(symbols, dtype=object), "")  # column -1: no symbol
    df = pd.DataFrame({"time": pd.DatetimeIndex(index)[row], "event": event, "symbol": names[col]})
    return df.sort_values(EVENT_COLUMNS, ignore_index=True)


def events_frame(events: np.ndarray, inputs: SimInputs, capped: np.ndarray | None = None) -> pd.DataFrame:
    """The run's events (:func:`risk_events_frame`) on the bars, symbols and delistings of ``inputs``.

    Example::

        events_frame(strategy.events, inputs).query("event == 'delisted'")
    """
    return risk_events_frame(events, inputs.index, inputs.symbols, inputs.delisted_at, capped)
