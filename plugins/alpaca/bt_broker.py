"""A backtrader broker over :class:`~qf_plugins.alpaca.session.AlpacaSession`.

The strategy calls ``buy``/``sell`` as with any backtrader broker; each order becomes an
:class:`~qf_plugins.alpaca.session.OrderIntent` whose ``ref`` is the strategy's decision reference
(``qf_ref=20240105_AAPL``), so its ``client_order_id`` is ``<prefix>-<run_id>-<ref>-<attempt>``: the same
decision after a restart maps to the same id, and the session's journal knows whether it was sent.

Notifications come from the session's event queue, drained in :meth:`AlpacaBtBroker.next` (cerebro calls it
on every loop, with or without a new bar): ``ACCEPTED`` -> ``Accepted``, each ``FILL`` (derived by the
session from the order's cumulative ``filled_qty``/``filled_avg_price``, deduplicated) -> ``Partial``
with that execution, ``COMPLETED`` -> ``Completed``, ``CANCELED``/``EXPIRED``/``REJECTED`` likewise.
Cash and positions are the account's, refreshed over REST (:meth:`AlpacaBtBroker.sync`) before every
decision and shortly after fills, never accumulated from events (a replayed event would drift them).

Example::

    broker = AlpacaBtBroker(AlpacaBroker.Params(), ExecutionSpec(fill="next_open"), Path("state"))
    broker.connect()                         # keys from the environment, reconciliation
    cerebro.setbroker(broker)
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import backtrader as bt
import pandas as pd
import requests
from alpaca.common.exceptions import APIError

from qf.engines.result import ORDER_COLUMNS
from qf.errors import QfError
from qf.paper.broker import BrokerView, FillView, OrderView, PositionView, RefStatus
from qf_plugins.alpaca.env import config_from_env
from qf_plugins.alpaca.journal import OPEN_STATES, Journal
from qf_plugins.alpaca.session import (
    AccountSnapshot,
    AlpacaAuthError,
    AlpacaSession,
    BrokerEvent,
    EventKind,
    OrderIntent,
    PositionSnapshot,
    SubmitStatus,
    api_error_info,
)

log = logging.getLogger(__name__)

JOURNAL_FILE = "alpaca-journal.sqlite"
_DECISION_REF = re.compile(r"\d{8}_[A-Za-z0-9_]+")
_NANO = Decimal("0.000000001")
_TRANSPORT = (APIError, requests.RequestException)


def _qty(size: float) -> float:
    """Alpaca takes at most 9 decimals; round toward zero so a sell never exceeds the position."""
    return float(Decimal(repr(abs(float(size)))).quantize(_NANO, ROUND_DOWN))


class AlpacaBtBroker(bt.BrokerBase):
    """Backtrader's broker interface plus :class:`qf.paper.broker.LiveBroker` over an Alpaca account.

    Args:
        options: the ``alpaca`` component's params (prefix, URLs, reconcile interval, cash buffer).
        execution: the experiment's execution section.
        state_dir: where the session journal (``alpaca-journal.sqlite``) lives.

    Example::

        broker = AlpacaBroker({"prefix": "qf"}).create(exp.spec.execution, state_dir=Path(".qf/paper/x"))
        broker.connect()
        broker.sync()
        broker.getcash(), broker.position_of("AAPL")
    """

    name = "alpaca"

    def __init__(self, options: Any, execution: Any, state_dir: Path) -> None:
        super().__init__()
        self.options = options
        self.execution = execution
        self.state_dir = Path(state_dir)
        self.session: AlpacaSession | None = None
        self.journal: Journal | None = None
        self.notifs: deque[bt.Order] = deque()
        self._orders: dict[str, bt.Order] = {}
        self._account: AccountSnapshot | None = None
        self._positions: dict[str, PositionSnapshot] = {}
        self._shadow: dict[str, bt.Position] = {}
        self._recent: deque[FillView] = deque(maxlen=16)
        self._dirty = False
        self._last_sync = 0.0
        self._stopped = False
        self._changed = False
        self.startingcash = 0.0  # backtrader's writer info reads it when cerebro stops
        self.listeners: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"AlpacaBtBroker(state_dir={str(self.state_dir)!r}, prefix={self.options.prefix!r})"

    # -- lifecycle -------------------------------------------------------------------------------

    def connect(self) -> None:
        """Keys from the environment, REST pre-check, stream, restart reconciliation, first snapshot."""
        if self.session is not None:
            return
        o = self.options
        cfg = config_from_env(paper=o.paper, trading_url=o.trading_url, data_url=o.data_url,
                              stream_url=o.stream_url)
        self.journal = Journal(self.state_dir / JOURNAL_FILE)
        session = AlpacaSession.from_config(cfg, self.journal, stream=o.stream, prefix=o.prefix,
                                            reconcile_interval=o.reconcile_interval,
                                            acceptance_window=o.acceptance_window)
        where = cfg.trading_url or ("paper-api.alpaca.markets" if cfg.paper else "api.alpaca.markets")
        try:
            report = session.start()
        except AlpacaAuthError as exc:
            session.stop()
            raise QfError(str(exc)) from None
        except _TRANSPORT as exc:
            session.stop()
            raise QfError(f"cannot reach Alpaca at {where}: {type(exc).__name__}: "
                          f"{api_error_info(exc)[2][:200]}") from None
        self.session = session
        log.info("Alpaca reconciled: %d order(s) seen, %d adopted, %d never reached the broker, %d resubmitted",
                 report.orders_seen, len(report.adopted), len(report.abandoned), len(report.resubmitted))
        self.sync()
        self.startingcash = self.getcash()

    def disconnect(self, reconcile: bool = True) -> None:
        """A last reconciliation (fills the stream has not delivered yet), then stop the session's threads.

        After a crash the caller passes ``reconcile=False``: the journal stays exactly as the crash left it
        and the next start's restart reconciliation does the work.
        """
        if self.session is None or self._stopped:
            return
        self._stopped = True
        if reconcile:
            with contextlib.suppress(Exception):  # best effort: a restart reconciles anyway
                self.session.reconcile()
        self.session.stop()
        if reconcile:
            self._drain()

    def close(self) -> None:
        """Disconnect and close the journal."""
        self.disconnect()
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    def _live(self) -> AlpacaSession:
        if self.session is None:
            raise QfError("the Alpaca broker is not connected")
        return self.session

    # -- backtrader's broker interface -----------------------------------------------------------

    def stop(self) -> None:
        """Called by cerebro when it stops; the session lives on until :meth:`disconnect`."""
        return None  # the paper session disconnects after its report, not when cerebro stops

    def getcash(self) -> float:
        """The account's cash at the last sync."""
        return float(self._account.cash) if self._account is not None else 0.0

    def getvalue(self, datas: Any = None) -> float:
        """The account's equity (or the market value of ``datas``' positions) at the last sync."""
        if datas:
            names = {d._name for d in datas}
            return float(sum(p.market_value or 0.0 for s, p in self._positions.items() if s in names))
        a = self._account
        if a is None:
            return 0.0
        if a.equity is not None:
            return float(a.equity)
        return float(a.cash + sum(p.market_value or 0.0 for p in self._positions.values()))

    def getposition(self, data: Any) -> bt.Position:
        """The account's position in ``data``'s symbol (size, average entry price)."""
        qty, price = self.position_of(data._name)
        return bt.Position(qty, price)

    def get_notification(self) -> bt.Order | None:
        """The next order notification for cerebro, or None."""
        return self.notifs.popleft() if self.notifs else None

    def next(self) -> None:
        """Called by cerebro on every loop: turn session events into notifications, refresh after fills."""
        self._drain()
        if self._dirty and time.monotonic() - self._last_sync > 1.0:
            try:
                self.sync()
            except QfError as exc:
                log.warning("account refresh failed (%s); retrying", exc)
                self._last_sync = time.monotonic()
        if self._changed:
            # fills of orders this process has no backtrader order for (sent before a restart) move cash too
            self._changed = False
            for listener in list(self.listeners):
                listener()

    def buy(self, owner: Any, data: Any, size: float, price: float | None = None, plimit: float | None = None,
            exectype: Any = None, valid: Any = None, tradeid: int = 0, oco: Any = None, trailamount: Any = None,
            trailpercent: Any = None, parent: Any = None, transmit: bool = True, **kwargs: Any) -> bt.Order:
        """A market buy of ``size`` (``qf_ref=`` gives its deterministic id); other order types are refused."""
        return self._submit(bt.BuyOrder, "buy", owner, data, size, exectype, kwargs)

    def sell(self, owner: Any, data: Any, size: float, price: float | None = None, plimit: float | None = None,
             exectype: Any = None, valid: Any = None, tradeid: int = 0, oco: Any = None, trailamount: Any = None,
             trailpercent: Any = None, parent: Any = None, transmit: bool = True, **kwargs: Any) -> bt.Order:
        """A market sell of ``size`` (see :meth:`buy`)."""
        return self._submit(bt.SellOrder, "sell", owner, data, size, exectype, kwargs)

    def cancel(self, order: bt.Order) -> Any:
        """Ask Alpaca to cancel; the outcome arrives as a notification."""
        cid = order.info.get("qf_cid")
        if not cid:
            return None
        return self._live().cancel(cid)

    def _submit(self, cls: type[bt.Order], side: str, owner: Any, data: Any, size: float, exectype: Any,
                info: dict[str, Any]) -> bt.Order:
        if exectype not in (None, bt.Order.Market):
            raise QfError("the Alpaca broker of qf paper sends market orders only")
        session = self._live()
        order = cls(owner=owner, data=data, size=abs(size), exectype=bt.Order.Market)
        order.addcomminfo(self.getcommissioninfo(data))
        order.addinfo(**info)
        order.submit(self)
        self._notify(order)
        qty = _qty(size)
        if qty <= 0:
            order.reject(self)
            self._notify(order)
            return order
        ref = str(info.get("qf_ref") or f"bt{order.ref}")
        result = session.submit(OrderIntent(ref=ref, symbol=data._name, side=side, qty=qty, type="market",
                                            time_in_force="day"))
        if result.client_order_id:
            order.addinfo(qf_cid=result.client_order_id)
            self._orders[result.client_order_id] = order
        if result.status == SubmitStatus.ACCEPTED and order.status == order.Submitted:
            order.accept(self)
            self._notify(order)
        elif result.status == SubmitStatus.REJECTED:
            log.warning("order %s %s %g %s rejected: %s", ref, side, qty, data._name, result.error)
            order.reject(self)
            self._notify(order)
        # AMBIGUOUS / REQUEUED: the order stays submitted; the session's reconciliation settles it
        return order

    def _notify(self, order: bt.Order) -> None:
        self.notifs.append(order.clone())

    def _drain(self) -> None:
        if self.session is None:
            return
        for ev in self.session.poll(0.0):
            self._on_event(ev)

    def _on_event(self, ev: BrokerEvent) -> None:
        if ev.kind in (EventKind.FILL, EventKind.COMPLETED, EventKind.CANCELED, EventKind.EXPIRED,
                       EventKind.REJECTED, EventKind.HALTED):
            self._dirty = True
            self._changed = True
        raw = ev.raw or {}
        if ev.kind == EventKind.FILL and ev.fill_price is not None:
            when = pd.Timestamp(raw.get("updated_at") or pd.Timestamp.now("UTC"))
            self._recent.appendleft(FillView(when, str(raw.get("symbol") or ""), str(raw.get("side") or ""),
                                             ev.fill_qty, ev.fill_price))
        order = self._orders.get(ev.client_order_id or "")
        if order is None:
            return  # an order of an earlier process, a kill-switch close, a bracket leg: positions come from REST
        if ev.kind == EventKind.ACCEPTED and order.status == order.Submitted:
            order.accept(self)
        elif ev.kind == EventKind.FILL and ev.fill_price is not None and order.alive():
            self._execute(order, ev.fill_qty, ev.fill_price)
            order.partial()
        elif ev.kind == EventKind.COMPLETED and order.alive():
            order.completed()
        elif ev.kind == EventKind.CANCELED and order.alive():
            order.cancel()
        elif ev.kind == EventKind.EXPIRED and order.alive():
            order.expire()
        elif ev.kind == EventKind.REJECTED and order.alive():
            order.reject(self)
        else:
            return
        self._notify(order)

    def _execute(self, order: bt.Order, qty: float, price: float) -> None:
        """Book one execution on the backtrader order (its executed size, price, position legs)."""
        symbol = order.data._name
        pos = self._shadow.setdefault(symbol, bt.Position(*self.position_of(symbol)))
        signed = qty if order.isbuy() else -qty
        before = pos.price
        psize, pprice, opened, closed = pos.update(signed, price)
        pnl = -closed * (price - before) if closed else 0.0
        order.execute(order.data.datetime[0], signed, price, closed, closed * before, 0.0, opened, opened * price,
                      0.0, 0.0, pnl, psize, pprice)

    # -- LiveBroker ------------------------------------------------------------------------------

    def sync(self) -> None:
        """Refresh cash, positions and buying power (after applying every pending event)."""
        session = self._live()
        self._drain()
        last: Exception | None = None
        for attempt in range(3):
            try:
                positions = session.fetch_positions()
                account = session.fetch_account()
            except _TRANSPORT as exc:
                last = exc
                time.sleep(0.5 * (attempt + 1))
                continue
            self._positions, self._account = positions, account
            self._shadow = {}
            self._last_sync = time.monotonic()
            self._dirty = False
            return
        assert last is not None
        raise QfError(f"cannot refresh the Alpaca account: {type(last).__name__}: {api_error_info(last)[2][:200]}")

    def position_of(self, symbol: str) -> tuple[float, float]:
        """(quantity, average entry price) at the last sync; (0, 0) when flat."""
        p = self._positions.get(symbol)
        return (float(p.qty), float(p.avg_entry_price)) if p is not None and p.qty else (0.0, 0.0)

    def cash_reserve(self, equity: float) -> float:
        """``cash_buffer`` x equity: kept in cash so orders sized at the close stay affordable at the open."""
        return float(self.options.cash_buffer) * max(float(equity), 0.0)

    def buying_power(self) -> float:
        """Alpaca's buying power at the last sync (cash in a cash account)."""
        a = self._account
        if a is None:
            return 0.0
        return float(a.buying_power if a.buying_power is not None else a.cash)

    def _decision_cids(self) -> list[str]:
        """Working orders of this session that belong to a decision (not kill-switch closes or legs)."""
        session = self._live()
        assert self.journal is not None
        out = []
        for cid in session.open_orders():
            rec = self.journal.intent(cid)
            if rec is not None and rec.parent_client_order_id is None and _DECISION_REF.fullmatch(rec.ref):
                out.append(cid)
        return out

    def open_refs(self) -> list[str]:
        """Decision references of this session's working orders."""
        assert self.journal is not None
        self._drain()
        return sorted({rec.ref for rec in (self.journal.intent(c) for c in self._decision_cids()) if rec})

    def cancel_open(self, timeout: float) -> None:
        """Cancel this session's working decision orders; QfError if any still works after ``timeout``."""
        session = self._live()
        cids = self._decision_cids()
        for cid in cids:
            outcome = session.cancel(cid)
            log.info("cancel %s: %s", cid, outcome.outcome)
        deadline = time.monotonic() + timeout
        while True:
            self._drain()
            still = set(session.open_orders()) & set(cids)
            if not still:
                return
            if time.monotonic() > deadline:
                raise QfError(f"{len(still)} order(s) still working {timeout:g} s after their cancel "
                              f"({', '.join(sorted(still))}); deciding now could double them")
            time.sleep(0.05)
            if time.monotonic() + 0.05 > deadline - timeout / 2:
                with contextlib.suppress(*_TRANSPORT):
                    session.reconcile()

    def ref_status(self, ref: str) -> RefStatus:
        """What the journal knows of the order(s) sent for ``ref`` (see :class:`qf.paper.broker.LiveBroker`)."""
        session = self._live()
        assert self.journal is not None
        self._drain()
        recs = [r for r in (self.journal.intent(c) for c in session.client_order_ids(ref))
                if r is not None and r.parent_client_order_id is None]
        if not recs:
            return "none"
        if any(r.state in OPEN_STATES for r in recs):
            return "open"
        if any(r.state == "done" for r in recs):
            return "done"
        if all(r.state == "abandoned" for r in recs):
            return "lost"
        return "rejected"

    def kill_switch(self, reason: str, decision: pd.Timestamp | None = None) -> None:
        """The session's kill switch: persist the halt, cancel every order, close every position.

        The closing orders are ``<prefix>-<run>-kill-<decision date>-<SYMBOL>-<attempt>`` in the journal.
        """
        when = None if decision is None else pd.Timestamp(decision).to_pydatetime()
        report = self._live().kill_switch(reason, when, cancel_timeout=10.0)
        for err in report.errors:
            log.error("kill switch: %s", err)
        self._dirty = True
        with contextlib.suppress(QfError):
            self.sync()

    def resume(self) -> None:
        """Clear the persisted halt."""
        self._live().resume()

    def halted(self) -> tuple[bool, str | None]:
        """(halted?, reason) from the journal."""
        return self._live().journal.halted()

    def flatten(self, timeout: float) -> int:
        """Cancel every open order and close every position with journaled ``flatten-<date>-<SYMBOL>`` orders."""
        session = self._live()
        try:
            clock = session.trading.get_clock()
            info = clock if isinstance(clock, Mapping) else clock.model_dump()
            # the broker's clock dates the flatten (its market day), not this machine's
            now = pd.Timestamp(info.get("timestamp") or pd.Timestamp.now("UTC")).to_pydatetime()
            report = session.close_everything("flatten", now, cancel_timeout=timeout)
        except _TRANSPORT as exc:
            raise QfError(f"flatten failed: {type(exc).__name__}: {api_error_info(exc)[2][:200]}") from None
        for err in report.errors:
            log.error("flatten: %s", err)
        closing = sum(1 for r in report.close_results if r["status"] != SubmitStatus.REJECTED)
        is_open = bool(info.get("is_open"))
        if closing and not is_open:
            log.warning("the market is closed: the %d closing order(s) fill at the next open", closing)
            return closing
        deadline = time.monotonic() + timeout
        while closing and time.monotonic() < deadline:
            self.sync()
            if not any(p.qty for p in self._positions.values()):
                break
            time.sleep(0.1)
        return closing

    def fills_frame(self) -> pd.DataFrame:
        """Every execution in the journal (ours, adopted, kill-switch closes) as ``orders.csv`` rows.

        Times are the broker's (the order's ``updated_at`` when that execution was reported), in New York
        time, naive like the bars.
        """
        if self.journal is None:
            return pd.DataFrame(columns=ORDER_COLUMNS)
        rows = []
        for f in self.journal.fills():
            rec = self.journal.intent(f.client_order_id)
            side, when, symbol = None, None, rec.symbol if rec else ""
            for e in reversed(self.journal.events(f.client_order_id)):
                with contextlib.suppress(ValueError, TypeError):
                    payload = json.loads(e["payload"])
                    order = payload.get("order", payload) if isinstance(payload, Mapping) else {}
                    side = side or order.get("side")
                    symbol = symbol or order.get("symbol") or ""
                    if when is None and f.execution_id and e["execution_id"] == f.execution_id:
                        when = payload.get("timestamp") or order.get("updated_at")
                    if when is None and order.get("filled_qty") is not None and \
                            abs(float(order["filled_qty"]) - f.cum_qty) < 1e-9:
                        when = order.get("updated_at")
            side = side or (rec.request.get("side") if rec else None) or "buy"
            stamp = pd.Timestamp(when) if when else pd.Timestamp(f.ts, unit="s", tz="UTC")
            if stamp.tzinfo is None:
                stamp = stamp.tz_localize("UTC")
            rows.append((stamp.tz_convert("America/New_York").tz_localize(None), symbol, str(side), f.qty, f.price,
                         0.0))
        df = pd.DataFrame(rows, columns=ORDER_COLUMNS)
        df["quantity"] = df["quantity"].astype(float)
        df["price"] = df["price"].astype(float)
        df["fee"] = df["fee"].astype(float)
        return df.sort_values("time", kind="mergesort", ignore_index=True)

    def view(self) -> BrokerView:
        """Account, positions, working orders and recent fills for the live view."""
        a = self._account
        session = self.session
        orders = []
        if session is not None and self.journal is not None:
            for cid in session.open_orders():
                rec = self.journal.intent(cid)
                if rec is None:
                    continue
                orders.append(OrderView(rec.ref, rec.symbol, str(rec.request.get("side", "")),
                                        float(rec.request.get("qty") or 0.0), rec.filled_qty, rec.status or rec.state))
        halted, reason = self.journal.halted() if self.journal is not None else (False, None)
        positions = [PositionView(s, p.qty, p.avg_entry_price, p.market_value)
                     for s, p in sorted(self._positions.items()) if p.qty]
        note = "" if session is None or session.stream_connected else "trade_updates stream not connected"
        return BrokerView("alpaca", cash=a.cash if a else 0.0, equity=self.getvalue(),
                          buying_power=self.buying_power(), positions=positions, open_orders=orders,
                          fills=list(self._recent), halted=halted, halt_reason=reason, note=note)
