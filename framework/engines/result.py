"""What an engine returns, whichever engine it is."""

from __future__ import annotations

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


def events_frame(events: np.ndarray, inputs: SimInputs, capped: np.ndarray | None = None) -> pd.DataFrame:
    """The run's events as rows ``time, event, symbol``: ``flatten`` (one row per bar, no symbol) and ``stop``
    from the risk kernel's ``events`` array, ``participation_cap`` where the cost model's cap clipped an
    order (``capped``, ``[T, N]``; the rest was carried to the next bar), and ``delisted`` on the last bar of
    each symbol whose data ends before the others'. Every engine builds its events here.

    Example::

        events_frame(strategy.events, inputs).query("event == 'delisted'")
    """
    # imported here: reading results (reports, paper state) must not load the numba kernels
    from qf.engines.inputs import delisting_events
    from qf.engines.kernels.step import EVENT_FLATTEN, EVENT_STOP

    index, symbols = inputs.index, inputs.symbols
    rows = [(index[i], "flatten", "") for i in np.flatnonzero((events == EVENT_FLATTEN).any(axis=1))]
    rows += [(index[i], "stop", symbols[k]) for i, k in zip(*np.nonzero(events == EVENT_STOP), strict=True)]
    rows += delisting_events(inputs)
    df = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    if capped is not None and capped.any():
        # built column-wise: a participation cap can clip thousands of orders in a run
        i, k = np.nonzero(capped)
        cap = pd.DataFrame({"time": index[i], "event": "participation_cap", "symbol": np.asarray(symbols)[k]})
        df = pd.concat([df, cap], ignore_index=True) if len(df) else cap
    return df.sort_values(EVENT_COLUMNS, ignore_index=True)
