"""The backtrader half of qf's fake brokers: :class:`FakeLiveBroker`, an in-memory, restart-safe
:class:`qf.components.LiveBroker` that is a backtrader broker, and :class:`FakeData`, the smallest data feed
its ``buy``/``sell`` accept.

They live here because backtrader may be imported only under qf.engines.backtrader; test code imports them
from :mod:`qf.testing` (``from qf.testing import FakeLiveBroker, FakeData``), which loads this module on first
use, and registers :class:`qf.testing.FakeLiveBrokerComponent` (the ``fake_live`` broker) to get one.

Example::

    from qf.testing import FakeData, FakeLiveBroker

    broker = FakeLiveBroker(10_000, partial=0.5)
    broker.connect()
    broker.buy(None, FakeData("AAPL", 100.0), 10, qf_ref="20240105_AAPL")
    broker.next(); broker.next()                 # two fills of 5 at 100
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import backtrader as bt
import pandas as pd

from qf.components import RefStatus
from qf.engines.result import ORDER_COLUMNS
from qf.errors import QfError
from qf.paper.broker import BrokerView, FillView, OrderView, PositionView

Side = Literal["buy", "sell"]

# quantities closer to zero than this (relative to the position) count as flat, as in qf.testing.FakeBroker
_DUST = 1e-12


# -- the live broker's records ---------------------------------------------------------------------------------

STATE_FILE = "fake-live-broker.json"
_DECISION_REF = re.compile(r"\d{8}_[A-Za-z0-9_.]+")  # the paper strategy's order refs, as qf.paper.strategy makes them
_WORKING = ("accepted", "partially_filled")


@dataclass
class LiveOrder:
    """One order as :class:`FakeLiveBroker` (the "broker side") records it.

    ``client_order_id`` is ``<prefix>-<ref>-<attempt>``; ``status`` is ``accepted``, ``partially_filled``,
    ``filled``, ``canceled`` or ``rejected`` (``reason`` says why).

    Example: ``LiveOrder("fake-20240105_AAPL-1", "20240105_AAPL", "AAPL", "buy", 10.0, status="accepted")``.
    """

    client_order_id: str
    ref: str
    symbol: str
    side: Side
    quantity: float
    filled: float = 0.0
    avg_price: float = 0.0
    status: str = "accepted"
    reason: str | None = None
    sent: float | None = None  # backtrader's date number of the bar the order was sent on

    @property
    def working(self) -> bool:
        return self.status in _WORKING

    @property
    def remaining(self) -> float:
        return self.quantity - self.filled


class _DateLine(list):
    """A one-value datetime line: ``[0]`` is backtrader's float date, ``datetime(0)`` the ``datetime``."""

    def __init__(self, num: float) -> None:
        super().__init__([num])

    def datetime(self, ago: int = 0) -> dt.datetime:
        return bt.num2date(self[ago])

    def date(self, ago: int = 0) -> dt.date:
        return self.datetime(ago).date()


class FakeData:
    """The smallest stand-in for a backtrader data feed that a broker's ``buy``/``sell`` accept.

    Backtrader orders read ``close[0]`` and ``datetime[0]`` of their data and brokers key positions by
    ``_name``; a test that drives a broker without cerebro passes one of these.

    Example::

        data = FakeData("AAPL", 185.5, "2024-01-05")
        broker.buy(None, data, 10, qf_ref="20240105_AAPL")
    """

    def __init__(self, symbol: str, close: float, time: Any = "2024-01-02") -> None:
        self._name = symbol
        self.close = [float(close)]
        self.datetime = _DateLine(bt.date2num(pd.Timestamp(time).to_pydatetime()))
        # an order's provisional end of session comes from the feed's params
        self.p = SimpleNamespace(sessionend=dt.time(23, 59, 59, 999990))

    def __len__(self) -> int:
        return 1  # bars seen: an order records it when submitted

    @staticmethod
    def date2num(value: dt.datetime) -> float:
        return float(bt.date2num(value))

    def __repr__(self) -> str:
        return f"FakeData({self._name!r}, {self.close[0]!r})"


class FakeLiveBroker(bt.BrokerBase):
    """A backtrader broker that implements :class:`qf.components.LiveBroker` in memory, restart-safely.

    It trades a pretend account for tests of paper trading and of third-party live brokers, without the
    Alpaca emulator, a network or a clock:

    - orders are market orders keyed by a deterministic client order id ``<prefix>-<ref>-<attempt>``, where
      ``ref`` is the strategy's ``qf_ref=`` (a decision reference); a second ``buy``/``sell`` for a ``ref``
      whose order is working does not send another order (the restart-safety contract) but returns a
      backtrader order tied to the existing one, and one for a ``ref`` whose order filled is rejected
      (``order.info.qf_duplicate``);
    - ``fill="auto"``: every ``next()`` (cerebro calls it on every loop) fills a ``partial`` share of each
      working order's quantity, so ``partial=0.5`` gives two fills per order; ``fill="manual"``: orders work
      until :meth:`fill` is called. The price is :meth:`set_prices`' for the symbol, else the open of the
      data's first bar after the order (a :class:`FakeData`, which has no opens: its close);
    - refusals are recorded as rejected orders: a symbol in ``rejections`` (with its reason), a buy above
      the buying power, a sell that would open a short (unless ``allow_short``);
    - with a ``state_dir`` every change is written to ``fake-live-broker.json`` there, and :meth:`connect`
      of a new instance on the same folder continues the account, its orders by client id and a kill-switch
      halt: a restarted session sees ``ref_status(ref) == "done"`` and sends nothing twice.

    Example::

        broker = FakeLiveBroker(10_000, state_dir=tmp_path, partial=0.5)
        broker.connect()
        order = broker.buy(None, FakeData("AAPL", 100.0), 10, qf_ref="20240105_AAPL")
        broker.next(); broker.next()                 # two fills of 5 at 100
        broker.sync(); broker.position_of("AAPL")    # (10.0, 100.0)
        broker.ref_status("20240105_AAPL")           # 'done'
    """

    name = "fake_live"

    def __init__(
        self,
        cash: float = 100_000.0,
        *,
        state_dir: str | Path | None = None,
        prices: Mapping[str, float] | None = None,
        fill: Literal["auto", "manual"] = "auto",
        partial: float = 1.0,
        rejections: Mapping[str, str] | None = None,
        allow_short: bool = False,
        cash_buffer: float = 0.0,
        prefix: str = "fake",
    ) -> None:
        super().__init__()
        if not (math.isfinite(cash) and cash >= 0):
            raise ValueError(f"cash must be a finite amount >= 0, got {cash!r}")
        if not 0 < partial <= 1:
            raise ValueError(f"partial must be in (0, 1], got {partial!r}")
        if fill not in ("auto", "manual"):
            raise ValueError(f"fill must be 'auto' or 'manual', got {fill!r}")
        self.state_file = Path(state_dir) / STATE_FILE if state_dir is not None else None
        self.fill_mode = fill
        self.partial = float(partial)
        self.rejections: dict[str, str] = dict(rejections or {})
        self.allow_short = allow_short
        self.cash_buffer = float(cash_buffer)
        self.prefix = prefix
        self.prices: dict[str, float] = {k: float(v) for k, v in (prices or {}).items()}
        self.time: pd.Timestamp | None = None
        self.listeners: list[Callable[[], None]] = []
        self.notifs: list[Any] = []
        self.connected = False
        # the broker side (what a real broker would hold), persisted in state_file
        self.cash = float(cash)
        self.startingcash = float(cash)
        self.positions: dict[str, tuple[float, float]] = {}  # symbol -> (quantity, average entry price)
        self.orders: dict[str, LiveOrder] = {}
        self.fills: list[tuple[str, str, str, float, float]] = []  # (time iso, client id, side, qty, price)
        self.halt: tuple[bool, str | None] = (False, None)
        # this process's view: the last sync, and the backtrader orders it placed
        self._synced_cash = self.cash
        self._synced_positions: dict[str, tuple[float, float]] = {}
        self._bt: dict[str, Any] = {}
        self._seen: dict[str, float] = {}  # the last price seen per symbol (of its data), for closing orders
        self._changed = False

    def __repr__(self) -> str:
        return f"FakeLiveBroker(cash={self.cash:,.2f}, positions={self.positions}, orders={len(self.orders)})"

    # -- persistence ----------------------------------------------------------------------------------

    def _save(self) -> None:
        if self.state_file is None:
            return
        payload = {
            "cash": self.cash, "startingcash": self.startingcash, "positions": self.positions,
            "orders": [vars(o) for o in self.orders.values()], "fills": self.fills, "halt": list(self.halt),
            "last_prices": self._seen,
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, self.state_file)  # a crash mid-write leaves the previous state, never half a file

    def _load(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError) as exc:
            raise QfError(f"{self.state_file}: not a fake live broker state ({exc})") from None
        self.cash = float(data["cash"])
        self.startingcash = float(data["startingcash"])
        self.positions = {s: (float(q), float(p)) for s, (q, p) in data["positions"].items()}
        self.orders = {o["client_order_id"]: LiveOrder(**o) for o in data["orders"]}
        self.fills = [tuple(f) for f in data["fills"]]  # type: ignore[misc]
        self.halt = (bool(data["halt"][0]), data["halt"][1])
        self._seen = {**data["last_prices"], **self._seen}

    # -- test controls --------------------------------------------------------------------------------

    def set_prices(self, prices: Mapping[str, float] | pd.Series, time: Any = None) -> None:
        """Set the prices orders fill at (and optionally the clock fills are stamped with).

        Example: ``broker.set_prices({"AAPL": 101.0}, time="2024-01-08 09:30")``.
        """
        for symbol, price in prices.items():
            p = float(price)
            if not (math.isfinite(p) and p > 0):
                raise ValueError(f"price of {symbol} must be a positive finite number, got {price!r}")
            self.prices[str(symbol)] = p
        if time is not None:
            self.time = pd.Timestamp(time)

    def fill(self, ref_or_id: str, quantity: float | None = None, price: float | None = None) -> LiveOrder:
        """Fill (part of) the working order with that client id, or the working order of that decision ref.

        Example: ``broker.fill("20240105_AAPL", 4)`` fills 4 of the order at the current price.
        """
        order = self.orders.get(ref_or_id) or next(
            (o for o in self.orders.values() if o.ref == ref_or_id and o.working), None)
        if order is None or not order.working:
            raise ValueError(f"no working order {ref_or_id!r}")
        qty = order.remaining if quantity is None else float(quantity)
        if not 0 < qty <= order.remaining * (1 + 1e-12):
            raise ValueError(f"cannot fill {qty:g} of {order.client_order_id} ({order.remaining:g} remaining)")
        self._execute(order, min(qty, order.remaining), self._price(order.symbol) if price is None else float(price))
        return order

    # -- backtrader's broker interface ----------------------------------------------------------------

    def getcash(self) -> float:
        """Cash at the last :meth:`sync`."""
        return self._synced_cash

    def getvalue(self, datas: Any = None) -> float:
        """Cash plus positions at their last known price (at the last :meth:`sync`)."""
        names = None if not datas else {d._name for d in datas}
        value = sum(q * (self._price(s, required=False) or p) for s, (q, p) in self._synced_positions.items()
                    if names is None or s in names)
        return value if names is not None else self._synced_cash + value

    def getposition(self, data: Any) -> Any:
        return bt.Position(*self.position_of(data._name))

    def get_notification(self) -> Any:
        return self.notifs.pop(0) if self.notifs else None

    def stop(self) -> None:
        return None  # the session disconnects after its report, as with a real broker

    def buy(self, owner: Any, data: Any, size: float, price: float | None = None, plimit: float | None = None,
            exectype: Any = None, valid: Any = None, tradeid: int = 0, oco: Any = None, trailamount: Any = None,
            trailpercent: Any = None, parent: Any = None, transmit: bool = True, **kwargs: Any) -> Any:
        """A market buy of ``size``; ``qf_ref=`` names the decision (see the class docstring)."""
        return self._submit(bt.BuyOrder, "buy", owner, data, size, exectype, kwargs)

    def sell(self, owner: Any, data: Any, size: float, price: float | None = None, plimit: float | None = None,
             exectype: Any = None, valid: Any = None, tradeid: int = 0, oco: Any = None, trailamount: Any = None,
             trailpercent: Any = None, parent: Any = None, transmit: bool = True, **kwargs: Any) -> Any:
        """A market sell of ``size`` (see :meth:`buy`)."""
        return self._submit(bt.SellOrder, "sell", owner, data, size, exectype, kwargs)

    def cancel(self, order: Any) -> bool:
        """Cancel the broker order behind a backtrader order; False when it is no longer working."""
        rec = self.orders.get(order.info.get("qf_cid") or "")
        if rec is None or not rec.working:
            return False
        self._cancel(rec)
        return True

    def next(self) -> None:
        """Cerebro's loop: fill working orders (``fill="auto"``), then tell the listeners of any change."""
        if self.connected and self.fill_mode == "auto":
            for rec in [o for o in self.orders.values() if o.working]:
                price = self._fill_price(rec)
                if price is not None:
                    self._execute(rec, min(rec.remaining, rec.quantity * self.partial), price)
        if self._changed:
            self._changed = False
            for listener in list(self.listeners):
                listener()

    # -- LiveBroker -----------------------------------------------------------------------------------

    def connect(self) -> None:
        """Load the account a previous process left in ``state_dir`` (the restart), then sync."""
        if self.connected:
            return
        self._load()
        self.connected = True
        self.sync()

    def disconnect(self, reconcile: bool = True) -> None:
        if self.connected and reconcile:
            self._save()
        self.connected = False

    def close(self) -> None:
        """Disconnect (the state file is already up to date: every change was written)."""
        self.disconnect()

    def sync(self) -> None:
        self._live()
        self._synced_cash = self.cash
        self._synced_positions = dict(self.positions)

    def position_of(self, symbol: str) -> tuple[float, float]:
        return self._synced_positions.get(symbol, (0.0, 0.0))

    def cash_reserve(self, equity: float) -> float:
        return self.cash_buffer * max(float(equity), 0.0)

    def buying_power(self) -> float:
        """Cash at the last sync less what working buys will spend (as a cash account's buying power)."""
        committed = sum(o.remaining * (self._price(o.symbol, required=False) or 0.0) for o in self.orders.values()
                        if o.working and o.side == "buy")
        return self._synced_cash - committed

    def open_refs(self) -> list[str]:
        self._live()
        return sorted({o.ref for o in self.orders.values() if o.working and _DECISION_REF.fullmatch(o.ref)})

    def cancel_open(self, timeout: float) -> None:
        self._live()
        for rec in [o for o in self.orders.values() if o.working]:
            self._cancel(rec)

    def ref_status(self, ref: str) -> RefStatus:
        self._live()
        recs = [o for o in self.orders.values() if o.ref == ref]
        if not recs:
            return "none"
        if any(o.working for o in recs):
            return "open"
        if any(o.filled > 0 or o.status == "filled" for o in recs):
            return "done"
        if all(o.status == "canceled" for o in recs):
            return "done"
        return "rejected"

    def kill_switch(self, reason: str, decision: pd.Timestamp | None = None) -> None:
        self.halt = (True, reason)
        stamp = "now" if decision is None else f"{pd.Timestamp(decision):%Y%m%d}"
        self._close_everything(f"kill-{stamp}")

    def resume(self) -> None:
        self.halt = (False, None)
        self._save()

    def halted(self) -> tuple[bool, str | None]:
        return self.halt

    def flatten(self, timeout: float) -> int:
        stamp = f"{self.time:%Y%m%d}" if self.time is not None else "now"
        return self._close_everything(f"flatten-{stamp}")

    def fills_frame(self) -> pd.DataFrame:
        """Every fill, as ``orders.csv`` rows (no fees: the fake charges none)."""
        rows = [(pd.Timestamp(t), self.orders[cid].symbol, side, qty, price, 0.0)
                for t, cid, side, qty, price in self.fills]
        return pd.DataFrame(rows, columns=ORDER_COLUMNS).astype({"quantity": float, "price": float, "fee": float})

    def view(self) -> Any:
        positions = [PositionView(s, q, p, q * (self._price(s, required=False) or p))
                     for s, (q, p) in sorted(self.positions.items())]
        orders = [OrderView(o.ref, o.symbol, o.side, o.quantity, o.filled, o.status)
                  for o in self.orders.values() if o.working]
        fills = [FillView(pd.Timestamp(t), self.orders[cid].symbol, side, qty, price)
                 for t, cid, side, qty, price in reversed(self.fills[-16:])]
        return BrokerView(self.name, cash=self.cash, equity=self.getvalue(), buying_power=self.buying_power(),
                          positions=positions, open_orders=orders, fills=fills, halted=self.halt[0],
                          halt_reason=self.halt[1])

    # -- internals ------------------------------------------------------------------------------------

    def _live(self) -> None:
        if not self.connected:
            raise QfError("the fake live broker is not connected (call connect() first)")

    def _price(self, symbol: str, required: bool = True) -> float | None:
        """The current price: :meth:`set_prices`' price, else the symbol's data close now, else the last one seen."""
        price = self.prices.get(symbol)
        if price is None:
            data = self._data(symbol)
            if data is not None and len(data) > 0 and math.isfinite(float(data.close[0])):
                price = self._seen[symbol] = float(data.close[0])
            else:
                price = self._seen.get(symbol)
        if price is None and required:
            raise ValueError(f"no price for {symbol}: call set_prices()")
        return price

    def _fill_price(self, rec: LiveOrder) -> float | None:
        """Where an automatic fill happens now, or None to wait.

        A market order sent after a bar's close fills at the open of the data's next bar, as at a real broker;
        a data without open prices (:class:`FakeData`) fills at its close at once.
        """
        if rec.symbol in self.prices:
            return self.prices[rec.symbol]
        data = self._data(rec.symbol)
        if data is None:
            return self._seen.get(rec.symbol)  # an order of an earlier process, no data for it here
        if not hasattr(data, "open"):
            return float(data.close[0])
        if len(data) == 0 or (rec.sent is not None and data.datetime[0] <= rec.sent):
            return None  # no new bar since the order was sent
        for price in (float(data.open[0]), float(data.close[0])):
            if math.isfinite(price) and price > 0:
                return price
        return None

    def _data(self, symbol: str) -> Any:
        """The data feed of ``symbol``: cerebro's (it sets ``broker.cerebro``), else one an order was sent with."""
        cerebro = getattr(self, "cerebro", None)
        for data in getattr(cerebro, "datas", None) or []:
            if data._name == symbol:
                return data
        return next((o.data for o in self._bt.values() if o.data._name == symbol), None)

    def _submit(self, cls: type, side: Side, owner: Any, data: Any, size: float, exectype: Any,
                info: dict[str, Any]) -> Any:
        self._live()
        if exectype not in (None, bt.Order.Market):
            raise QfError("the fake live broker takes market orders only")
        order = cls(owner=owner, data=data, size=abs(size), exectype=bt.Order.Market)
        order.addcomminfo(self.getcommissioninfo(data))
        order.addinfo(**info)
        order.submit(self)
        self.notifs.append(order.clone())
        ref = str(info.get("qf_ref") or f"bt{order.ref}")
        symbol = data._name
        self._seen[symbol] = float(data.close[0])
        earlier = [o for o in self.orders.values() if o.ref == ref]
        live = next((o for o in earlier if o.working or o.filled > 0), None)
        if live is not None and not live.working:
            # the decision's order already filled (a restart that did not ask ref_status): refuse the copy
            order.addinfo(qf_cid=live.client_order_id, qf_duplicate=True)
            order.reject(self)
            self.notifs.append(order.clone())
            return order
        if live is not None:
            # the same decision again while its order works: the broker already has it, nothing new is sent
            rec = live
        else:
            rec = LiveOrder(f"{self.prefix}-{ref}-{len(earlier) + 1}", ref, symbol, side, abs(float(size)),
                            sent=float(data.datetime[0]))
            rec.reason = self._refusal(rec)
            if rec.reason is not None:
                rec.status = "rejected"
            self.orders[rec.client_order_id] = rec
            self._save()
        order.addinfo(qf_cid=rec.client_order_id)
        self._bt[rec.client_order_id] = order
        if rec.status == "rejected":
            order.reject(self)
        else:
            order.accept(self)
        self.notifs.append(order.clone())
        return order

    def _refusal(self, rec: LiveOrder) -> str | None:
        if rec.symbol in self.rejections:
            return self.rejections[rec.symbol]
        if not (math.isfinite(rec.quantity) and rec.quantity > 0):
            return f"invalid quantity {rec.quantity!r}"
        if self.halt[0] and not rec.ref.startswith(("kill-", "flatten-")):
            return f"trading is halted: {self.halt[1]}"
        price = self._price(rec.symbol)
        assert price is not None
        if rec.side == "buy":
            cost = rec.quantity * price
            if cost > self.buying_power() + 1e-9:
                return f"insufficient buying power for {rec.quantity:g} {rec.symbol}: needs {cost:,.2f}"
        elif not self.allow_short:
            held = self.positions.get(rec.symbol, (0.0, 0.0))[0]
            selling = rec.quantity + sum(o.remaining for o in self.orders.values()
                                         if o.working and o.side == "sell" and o.symbol == rec.symbol)
            if selling > held * (1 + 1e-12) + 1e-12:
                return f"would open a short of {selling - max(held, 0.0):g} {rec.symbol} (short selling is off)"
        return None

    def _execute(self, rec: LiveOrder, qty: float, price: float) -> None:
        signed = qty if rec.side == "buy" else -qty
        before, avg = self.positions.get(rec.symbol, (0.0, 0.0))
        pos = bt.Position(before, avg)
        psize, pprice, opened, closed = pos.update(signed, price)
        self.cash -= signed * price
        if abs(psize) <= _DUST * max(1.0, abs(before)):
            self.positions.pop(rec.symbol, None)
        else:
            self.positions[rec.symbol] = (float(psize), float(pprice))
        rec.avg_price = (rec.avg_price * rec.filled + qty * price) / (rec.filled + qty)
        rec.filled += qty
        rec.status = "filled" if rec.remaining <= _DUST * rec.quantity else "partially_filled"
        order = self._bt.get(rec.client_order_id)
        when = self.time
        if when is None:
            data = self._data(rec.symbol)  # stamped with the bar it fills on, like the engines' orders
            when = pd.Timestamp(bt.num2date(data.datetime[0])) if data is not None and len(data) else pd.Timestamp.now()
        self.fills.append((when.isoformat(), rec.client_order_id, rec.side, qty, price))
        self._save()
        self._changed = True
        if order is not None and order.alive():
            pnl = -closed * (price - avg) if closed else 0.0
            order.execute(order.data.datetime[0], signed, price, closed, closed * avg, 0.0, opened, opened * price,
                          0.0, 0.0, pnl, psize, pprice)
            if rec.status == "filled":
                order.completed()
            else:
                order.partial()
            self.notifs.append(order.clone())

    def _cancel(self, rec: LiveOrder) -> None:
        rec.status = "canceled"
        self._save()
        self._changed = True
        order = self._bt.get(rec.client_order_id)
        if order is not None and order.alive():
            order.cancel()
            self.notifs.append(order.clone())

    def _close_everything(self, tag: str) -> int:
        """Cancel every working order, then close every position at its price; returns the closing orders."""
        self._live()
        for rec in [o for o in self.orders.values() if o.working]:
            self._cancel(rec)
        closing = 0
        for symbol, (qty, _) in sorted(self.positions.items()):
            ref = f"{tag}-{symbol}"
            rec = LiveOrder(f"{self.prefix}-{ref}-1", ref, symbol, "sell" if qty > 0 else "buy", abs(qty))
            self.orders[rec.client_order_id] = rec
            self._execute(rec, rec.quantity, self._price(symbol))
            closing += 1
        self._save()
        self.sync()
        return closing
