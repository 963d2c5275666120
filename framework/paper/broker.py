"""What a paper session needs from a live broker, beyond backtrader's ``BrokerBase``.

Backtrader's broker interface (``buy``/``sell``/``cancel``, ``getcash``, ``getposition``, notifications
from ``next``) is enough to *trade*. Trading a real account restart-safely needs more: reconcile before
anything, tell whether a decision's order already reached the broker, cancel what is still working,
the kill switch, a buying-power figure, and the broker's own fill log for the report. A broker plugin
whose ``create()`` returns a ``bt.BrokerBase`` that also implements :class:`LiveBroker` can run
``qf paper`` live (the Alpaca plugin does); backtrader's ``BackBroker`` runs the simulated session.

Example::

    broker = exp.broker.create(exp.spec.execution, state_dir=Path("state"))
    if isinstance(broker, LiveBroker):
        broker.connect()                  # credentials from the environment, restart reconciliation
        broker.sync()
        broker.ref_status("20240105_AAPL")   # "none" | "open" | "done" | "lost" | "rejected"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import pandas as pd

RefStatus = Literal["none", "open", "done", "lost", "rejected"]


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


@runtime_checkable
class LiveBroker(Protocol):
    """The extra interface of a backtrader broker that trades a real (paper) account.

    ``ref`` is a decision reference ``<YYYYMMDD>_<SYMBOL>``, passed to ``buy``/``sell`` as ``qf_ref=``;
    the broker builds its deterministic client order id from it.

    Example::

        isinstance(AlpacaBroker({}).create(execution, state_dir=folder), LiveBroker)   # True
    """

    name: str
    listeners: list[Callable[[], None]]  # called from ``next()`` after fills or cancels of any order

    def connect(self) -> None:
        """Credentials from the environment, REST pre-check, restart reconciliation (before anything else)."""
        ...

    def disconnect(self, reconcile: bool = True) -> None:
        """A last reconciliation (unless after a crash), then stop streams and threads."""
        ...

    def sync(self) -> None:
        """Refresh cash, positions and buying power from the broker (the truth for a decision)."""
        ...

    def position_of(self, symbol: str) -> tuple[float, float]:
        """(quantity, average entry price) of ``symbol`` after the last :meth:`sync`."""
        ...

    def cash_reserve(self, equity: float) -> float:
        """Cash kept out of sizing so an order sized at the last close stays affordable at the open."""
        ...

    def buying_power(self) -> float:
        """What new buys may spend now (after the last :meth:`sync`)."""
        ...

    def open_refs(self) -> list[str]:
        """References of this session's orders still working at the broker."""
        ...

    def cancel_open(self, timeout: float) -> None:
        """Cancel this session's working orders and wait (up to ``timeout``) until they are final."""
        ...

    def ref_status(self, ref: str) -> RefStatus:
        """What became of the order(s) sent for ``ref`` (``lost``: journaled but never reached the broker)."""
        ...

    def kill_switch(self, reason: str, decision: pd.Timestamp | None = None) -> None:
        """Persist a halt, cancel every open order and close every position.

        ``decision`` is the bar whose decision fired it: the closing orders' ids name it, so the broker's
        journal ties every order to a decision.
        """
        ...

    def resume(self) -> None:
        """Clear a persisted halt (the risk rule's cool-down is over)."""
        ...

    def halted(self) -> tuple[bool, str | None]:
        """(halted?, reason) as persisted by the kill switch."""
        ...

    def flatten(self, timeout: float) -> int:
        """Cancel everything and close every position with orders the broker's journal records (ids naming
        the flatten); returns the number of closing orders."""
        ...

    def fills_frame(self) -> pd.DataFrame:
        """Every fill of this session from the broker's journal, as ``orders.csv`` columns."""
        ...

    def view(self) -> BrokerView:
        """A snapshot for the live view."""
        ...
