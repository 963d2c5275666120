"""What a paper session needs from a live broker, beyond backtrader's ``BrokerBase``.

Backtrader's broker interface (``buy``/``sell``/``cancel``, ``getcash``, ``getposition``, notifications
from ``next``) is enough to *trade*. Trading a real account restart-safely needs more: reconcile before
anything, tell whether a decision's order already reached the broker, cancel what is still working,
the kill switch, a buying-power figure, and the broker's own fill log for the report. A broker plugin
whose ``create()`` returns a ``bt.BrokerBase`` that also implements :class:`LiveBroker` can run
``qf paper`` live (the Alpaca plugin does); backtrader's ``BackBroker`` runs the simulated session.

Example::

    broker = exp.broker.create(exp.spec.execution, state_dir=Path("state"))
    if implements(broker, LiveBroker):
        broker.connect()                  # credentials from the environment, restart reconciliation
        broker.sync()
        broker.ref_status("20240105_AAPL")   # "none" | "open" | "done" | "lost" | "rejected"
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

# the protocol itself is a public contract of qf.components; re-exported here where the session uses it
from qf.components import LiveBroker, RefStatus  # noqa: F401, implements


@dataclass(frozen=True)
class PositionView:
    """One position as the live view shows it, e.g. ``PositionView("AAPL", 10.0, 185.5, 1_860.0)``."""

    symbol: str
    quantity: float
    avg_price: float
    market_value: float | None = None


@dataclass(frozen=True)
class OrderView:
    """One working order as the live view shows it (``ref`` is the decision reference).

    Example: ``OrderView("20240105_MSFT", "MSFT", "buy", 3.0, 1.0, "partially_filled")``.
    """

    ref: str
    symbol: str
    side: str
    quantity: float
    filled: float
    status: str


@dataclass(frozen=True)
class FillView:
    """One fill as the live view shows it.

    Example: ``FillView(pd.Timestamp("2024-01-08 09:30"), "AAPL", "buy", 10.0, 185.5)``.
    """

    time: pd.Timestamp
    symbol: str
    side: str
    quantity: float
    price: float


@dataclass
class BrokerView:
    """A snapshot of the account for the live view.

    Example::

        BrokerView("alpaca", cash=20_000.0, equity=101_000.0, buying_power=20_000.0)
    """

    name: str
    cash: float
    equity: float
    buying_power: float | None = None
    positions: list[PositionView] = field(default_factory=list)
    open_orders: list[OrderView] = field(default_factory=list)
    fills: list[FillView] = field(default_factory=list)
    halted: bool = False
    halt_reason: str | None = None
    note: str = ""
