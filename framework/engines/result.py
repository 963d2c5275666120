"""What an engine returns, whichever engine it is."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

ORDER_COLUMNS = ["time", "symbol", "side", "quantity", "price", "fee"]


@dataclass
class EngineResult:
    """Equity at each bar's close, every fill, and what the stateful risk rules did.

    ``orders`` has the columns ``time, symbol, side, quantity, price, fee`` (quantity > 0, side is
    ``buy``/``sell``, price includes slippage); ``events`` has ``time, event, symbol``.
    """

    engine: str
    equity: pd.Series
    orders: pd.DataFrame
    events: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["time", "event", "symbol"]))
    extra: dict = field(default_factory=dict)

    @property
    def fees_paid(self) -> float:
        return float(self.orders["fee"].sum()) if len(self.orders) else 0.0

    @property
    def traded_value(self) -> float:
        return float((self.orders["quantity"] * self.orders["price"]).sum()) if len(self.orders) else 0.0
