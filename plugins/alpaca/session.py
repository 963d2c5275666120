"""The broker-independent Alpaca session: crash-safe submit, event stream, reconciliation, kill switch.

A live broker adapter (backtrader or anything else) drives this class and never touches alpaca-py:

* :meth:`AlpacaSession.submit` journals the intent, POSTs it under a deterministic
  ``client_order_id`` and classifies the outcome (docs/alpaca.md, "Ambiguous submits"): accepted; rejected (403 or a
  422 validation error); ambiguous (422 duplicate, 5xx, timeout, connection error) -> look the order
  up by client id -> adopt it; a final 429 -> requeue with the same id after ``X-Ratelimit-Reset``.
* An order whose submit outcome is unknown is never sent again under a new id. A broker may accept a
  POST after the client gave up on it, so a 404 from the lookup proves nothing until the broker's
  ``acceptance_window`` has passed since that POST: until then the intent stays ``ambiguous`` and is
  looked up again (a restart keeps waiting too); after it, it is re-sent under the *same* id (a
  broker that enforces unique ids then refuses a late duplicate). A 422 "client_order_id must be
  unique" means the broker has it: it is looked up, never re-sent. Each step is journaled with why.
* The ``trade_updates`` stream runs in its own thread (``raw_data=True``) and only enqueues raw
  dicts; :meth:`poll` parses them defensively and turns them into :class:`BrokerEvent` objects.
* Fills are derived from cumulative ``filled_qty``/``filled_avg_price`` and deduplicated in the
  journal, so replayed, duplicated or out-of-order events never double count.
* A background thread reconciles over REST on a timer, after every stream (re)connect, and when the
  stream has been silent too long with orders open (the SDK reconnects silently and never replays).
* :meth:`start` performs restart reconciliation; :meth:`kill_switch` persists a halt, cancels
  everything and flattens.

Example::

    cfg = AlpacaConfig.from_env()
    session = AlpacaSession.from_config(cfg, Journal("state/alpaca.sqlite"))
    report = session.start()                       # REST pre-check + restart reconciliation
    result = session.submit(OrderIntent(ref=1, symbol="AAPL", side="buy", qty=10))
    for event in session.poll(timeout=1.0):
        print(event.kind, event.fill_qty, event.fill_price)
    session.stop()
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

import requests
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    OrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)
from pydantic import BaseModel, ValidationError

from qf_plugins.alpaca.client import (
    AlpacaConfig,
    QfTradingStream,
    build_rate_limiter,
    build_trading_client,
    build_trading_stream,
)
from qf_plugins.alpaca.ids import make_client_order_id, parse_client_order_id
from qf_plugins.alpaca.journal import IntentRecord, Journal
from qf_plugins.alpaca.ratelimit import RateLimiter, reset_delay

log = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"filled", "canceled", "expired", "rejected", "replaced"})
_SYMBOL_CHARS = re.compile(r"[^A-Za-z0-9]")


class EventKind(StrEnum):
    """What happened to an order, in the vocabulary of a backtest broker."""

    SUBMITTED = "submitted"  # intent journaled, POST about to leave
    ACCEPTED = "accepted"  # the broker has the order (any non-terminal status)
    FILL = "fill"  # one execution: fill_qty @ fill_price
    COMPLETED = "completed"  # fully filled (always after its last FILL)
    CANCELED = "canceled"  # terminal; filled_qty tells how much executed before
    EXPIRED = "expired"
    REJECTED = "rejected"
    STATUS = "status"  # any other broker status change (pending_cancel, held -> new, ...)
    ERROR = "error"  # informational: unresolved submit, stream auth failure, ...
    HALTED = "halted"  # the kill switch fired


class SubmitStatus(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    AMBIGUOUS = "ambiguous"  # unknown whether the broker has it; reconciliation will resolve it
    REQUEUED = "requeued"  # rate limited; will be resent with the same id after the reset


@dataclass(frozen=True)
class OrderIntent:
    """A broker-neutral order request. Sizes are floats (fractional shares allowed).

    Exactly one of ``qty`` / ``notional``. ``take_profit`` + ``stop_loss`` make a bracket.

    Example::

        OrderIntent(ref=7, symbol="AAPL", side="buy", qty=10, type="limit", limit_price=190.0,
                    take_profit=200.0, stop_loss=180.0)
    """

    ref: int | str
    symbol: str
    side: Literal["buy", "sell"]
    qty: float | None = None
    notional: float | None = None
    type: Literal["market", "limit", "stop", "stop_limit"] = "market"
    time_in_force: Literal["day", "gtc", "opg", "cls", "ioc", "fok"] = "day"
    limit_price: float | None = None
    stop_price: float | None = None
    extended_hours: bool = False
    take_profit: float | None = None
    stop_loss: float | None = None
    stop_loss_limit: float | None = None

    def to_request(self, client_order_id: str) -> OrderRequest:
        """The alpaca-py request; raises ``ValueError``/``ValidationError`` for invalid combinations."""
        common: dict[str, Any] = {
            "symbol": self.symbol, "side": OrderSide(self.side), "time_in_force": TimeInForce(self.time_in_force),
            "client_order_id": client_order_id, "qty": self.qty, "notional": self.notional,
        }
        if self.extended_hours:
            common["extended_hours"] = True
        if self.take_profit is not None or self.stop_loss is not None:
            if self.take_profit is None or self.stop_loss is None:
                raise ValueError("a bracket needs both take_profit and stop_loss")
            common["order_class"] = OrderClass.BRACKET
            common["take_profit"] = TakeProfitRequest(limit_price=self.take_profit)
            common["stop_loss"] = StopLossRequest(stop_price=self.stop_loss, limit_price=self.stop_loss_limit)
        if self.type == "market":
            return MarketOrderRequest(**common)
        if self.type == "limit":
            return LimitOrderRequest(limit_price=self.limit_price, **common)
        if self.type == "stop":
            return StopOrderRequest(stop_price=self.stop_price, **common)
        if self.type == "stop_limit":
            return StopLimitOrderRequest(stop_price=self.stop_price, limit_price=self.limit_price, **common)
        raise ValueError(f"unsupported order type {self.type!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OrderIntent:
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class BrokerEvent:
    """One order event for the adapter. ``raw`` is the broker payload it came from (if any)."""

    kind: EventKind
    client_order_id: str | None
    ref: str | None
    order_id: str | None = None
    status: str | None = None
    fill_qty: float = 0.0
    fill_price: float | None = None
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    remaining_qty: float | None = None
    execution_id: str | None = None
    parent_client_order_id: str | None = None
    leg_role: str | None = None
    source: str = ""
    message: str | None = None
    http_status: int | None = None  # for submit rejections: 403 = buying power/qty/rule, 422 = validation
    error_code: int | None = None  # Alpaca's code, e.g. 40310000 (buying power, quantity, wash trade)
    raw: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class SubmitResult:
    status: SubmitStatus
    client_order_id: str | None
    ref: str
    order_id: str | None = None
    broker_status: str | None = None
    error: str | None = None
    retry_at: float | None = None
    adopted: bool = False
    posts: int = 0
    http_status: int | None = None
    error_code: int | None = None


@dataclass(frozen=True)
class CancelResult:
    """``requested`` (broker accepted the cancel), ``not_cancelable`` (422: already final -- the
    order's real outcome has been applied), ``unknown`` (404), ``withdrawn`` (never reached the
    broker), or ``error`` (transport trouble; reconciliation will tell)."""

    outcome: Literal["requested", "not_cancelable", "unknown", "withdrawn", "error"]
    client_order_id: str
    message: str | None = None


@dataclass(frozen=True)
class PositionSnapshot:
    symbol: str
    qty: float
    avg_entry_price: float
    market_value: float | None
    side: str


@dataclass(frozen=True)
class AccountSnapshot:
    cash: float
    equity: float | None
    buying_power: float | None
    portfolio_value: float | None
    status: str | None


@dataclass
class ReconcileReport:
    """What a reconciliation pass found and did."""

    positions: dict[str, PositionSnapshot] = field(default_factory=dict)
    account: AccountSnapshot | None = None
    adopted: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    resubmitted: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)  # submit outcome unknown: waiting for the broker
    orphans_canceled: list[str] = field(default_factory=list)
    orders_seen: int = 0
    pages: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class KillReport:
    reason: str
    canceled: int
    close_results: list[dict[str, Any]]
    errors: list[str]


class AlpacaAuthError(RuntimeError):
    """The REST pre-check was refused: bad or missing keys (the message never contains them)."""


@dataclass
class _Tracked:
    client_order_id: str
    ref: str
    symbol: str
    order_id: str | None = None
    status: str | None = None
    acked: bool = False
    terminal: bool = False
    updated_at: datetime | None = None
    parent_client_order_id: str | None = None
    leg_role: str | None = None
    request: OrderRequest | None = None
    intent: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False  # canceled while its submit outcome was unknown: cancel it once it shows up
    signature: tuple[str, str, str] | None = None


# -- helpers ------------------------------------------------------------------------------------


def api_error_info(err: BaseException) -> tuple[int | None, int | None, str]:
    """(HTTP status, Alpaca code, message) from an ``APIError`` without trusting its body.

    ``APIError.code`` re-parses the body and raises on HTML pages or ``{"message": "forbidden."}``,
    so the body is parsed here defensively instead.
    """
    status: int | None = None
    with contextlib.suppress(Exception):
        status = err.status_code  # type: ignore[attr-defined]
    text = str(err)
    code: int | None = None
    message = text.strip()[:300]
    with contextlib.suppress(ValueError, TypeError):
        body = json.loads(text)
        if isinstance(body, dict):
            raw_code = body.get("code")
            with contextlib.suppress(ValueError, TypeError):
                code = int(raw_code) if raw_code is not None else None
            message = str(body.get("message", message))
    return status, code, message


_DUPLICATE = "duplicate client_order_id"


def _is_duplicate(status: int | None, message: str) -> bool:
    # 40010001 also covers generic validation errors, so match on the message (docs/alpaca.md, "alpaca-py behaviour").
    text = message.lower()
    return status == 422 and "client_order_id" in text and "unique" in text


def _is_closing(ref: str) -> bool:
    """Whether ``ref`` names a closing order of the kill switch or a flatten (sent even while halted)."""
    return ref.startswith(("kill-", "flatten-"))


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"unexpected broker payload {type(obj).__name__}")


def _num(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _ts(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _leg_role(order: Mapping[str, Any]) -> str:
    return "take_profit" if str(order.get("type") or order.get("order_type")) == "limit" else "stop_loss"


# -- the session --------------------------------------------------------------------------------


class AlpacaSession:
    """Submit/cancel/reconcile against Alpaca, publishing :class:`BrokerEvent` on :attr:`events`.

    Example::

        session = AlpacaSession.from_config(AlpacaConfig.from_env(), Journal("alpaca.sqlite"))
        session.start()
        result = session.submit(OrderIntent(ref=1, symbol="AAPL", side="buy", qty=1))
        events = session.poll(timeout=0.5)      # SUBMITTED, ACCEPTED, FILL..., COMPLETED
        session.cancel(result.client_order_id)
        session.stop()

    Args:
        trading: a ``TradingClient`` (use :func:`build_trading_client`: timeout on, SDK retry off).
        journal: the run's :class:`Journal`.
        stream_factory: ``f(on_connect=..., on_auth_failure=...) -> TradingStream`` or None to
            run without a stream (REST reconciliation only).
        prefix: client order id prefix; orders with it and another run id are "orphans".
        limiter: the rate limiter mounted on the trading client (used to wait out a 429 inline).
        reconcile_interval: seconds between periodic REST reconciliations.
        stream_silence_timeout: reconcile when the stream said nothing this long with orders open.
        lookup_attempts / lookup_backoff: ``by_client_order_id`` lookups before deciding "missing".
        acceptance_window: seconds after a POST left during which the broker may still make the order
            visible (it accepted the POST after the client timed out). A lookup 404 counts as "never
            reached the broker" only after it; keep it above the HTTP timeout.
        max_resubmits: same-id resubmissions after a certain "missing" within one submit call.
        inline_429_retries / max_inline_wait: a 429 is retried in place this many times when the
            reset is at most this far away; otherwise the order is requeued.
        orphan_policy: what to do with open orders that carry our prefix but are not in the
            journal: ``"adopt"`` (track them) or ``"cancel"``.
        lookback: how far before the journal's creation restart reconciliation pages orders.
    """

    def __init__(
        self,
        trading: TradingClient,
        journal: Journal,
        *,
        stream_factory: Callable[..., QfTradingStream] | None = None,
        prefix: str = "qf",
        limiter: RateLimiter | None = None,
        reconcile_interval: float = 30.0,
        stream_silence_timeout: float = 60.0,
        lookup_attempts: int = 3,
        lookup_backoff: float = 0.2,
        acceptance_window: float = 30.0,
        max_resubmits: int = 2,
        inline_429_retries: int = 1,
        max_inline_wait: float = 5.0,
        orphan_policy: Literal["adopt", "cancel"] = "adopt",
        lookback: timedelta = timedelta(days=1),
        page_limit: int = 500,
    ) -> None:
        self.trading = trading
        self.journal = journal
        self.prefix = prefix
        self.limiter = limiter
        self.reconcile_interval = reconcile_interval
        self.stream_silence_timeout = stream_silence_timeout
        self.lookup_attempts = lookup_attempts
        self.lookup_backoff = lookup_backoff
        self.acceptance_window = acceptance_window
        self.max_resubmits = max_resubmits
        self.inline_429_retries = inline_429_retries
        self.max_inline_wait = max_inline_wait
        self.orphan_policy = orphan_policy
        self.lookback = lookback
        self.page_limit = page_limit
        self.events: queue.Queue[BrokerEvent] = queue.Queue()
        self._inbox: queue.Queue[Mapping[str, Any]] = queue.Queue()
        self._inbox_ready = threading.Event()
        self._stream_factory = stream_factory
        self._stream: QfTradingStream | None = None
        self._stream_thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._reconcile_lock = threading.Lock()
        self._orders: dict[str, _Tracked] = {}
        self._by_order_id: dict[str, str] = {}
        self._unmatched: dict[str, list[tuple[Mapping[str, Any], str, str | None, str | None]]] = {}
        self._inflight: set[str] = set()
        # Intents this process may re-send under their own id once their acceptance window has passed: the
        # ones it POSTed, and the ones a restart found still inside their window (a decision that young is
        # still current). Anything older is abandoned instead and its caller decides whether to send again.
        self._resendable: set[str] = set()
        self._cancel_queue: list[str] = []  # broker order ids to cancel (cancel_requested orders that appeared)
        self._stop = threading.Event()
        self._reconcile_now = threading.Event()
        self._background: threading.Thread | None = None
        self.last_stream_activity = time.monotonic()
        self.stream_connections = 0
        self.stream_auth_failed = False
        self.last_report: ReconcileReport | None = None
        self.reconciles = 0
        self.health_reconciles = 0
        self._unknown_next = 0.0  # monotonic: earliest next background pass for unknown-outcome intents
        self._load_journal()

    def __repr__(self) -> str:
        return f"AlpacaSession(prefix={self.prefix!r}, run_id={self.run_id!r}, orders={len(self._orders)})"

    @classmethod
    def from_config(cls, cfg: AlpacaConfig, journal: Journal, *, stream: bool = True,
                    reconnect_min_backoff: float | None = None, **kwargs: Any) -> AlpacaSession:
        """Build clients from ``cfg`` (rate limiter shared with the trading client) and a session."""
        limiter = kwargs.pop("limiter", None) or build_rate_limiter(cfg)
        trading = build_trading_client(cfg, limiter)
        factory: Callable[..., QfTradingStream] | None = None
        if stream:
            def factory(**callbacks: Any) -> QfTradingStream:
                return build_trading_stream(cfg, reconnect_min_backoff=reconnect_min_backoff, **callbacks)
        return cls(trading, journal, stream_factory=factory, limiter=limiter, **kwargs)

    @property
    def run_id(self) -> str:
        return self.journal.run_id

    # ================================================================== lifecycle

    def start(self, *, background: bool = True) -> ReconcileReport:
        """REST pre-check, start the stream (buffering), restart reconciliation, background timer.

        Raises :class:`AlpacaAuthError` if the keys are refused, before any WebSocket is opened
        (alpaca-py would otherwise retry a refused stream login forever).
        """
        self._precheck()
        self._start_stream()
        report = self.recover()
        if background:
            self._stop.clear()
            self._background = threading.Thread(target=self._background_loop, name="alpaca-session",
                                                daemon=True)
            self._background.start()
        return report

    def stop(self) -> None:
        self._stop.set()
        self._reconcile_now.set()
        if self._background is not None:
            self._background.join(10)
            self._background = None
        self._stop_stream()

    def __enter__(self) -> AlpacaSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _precheck(self) -> None:
        try:
            self.trading.get_account()
        except APIError as err:
            status, code, message = api_error_info(err)
            if status in (401, 403):
                raise AlpacaAuthError(f"Alpaca refused the API keys (HTTP {status}: {message})") from None
            raise

    # ================================================================== stream

    def _start_stream(self) -> None:
        if self._stream_factory is None or self._stream is not None:
            return
        stream = self._stream_factory(on_connect=self._on_stream_connect, on_auth_failure=self._on_auth_failure)

        async def on_update(message: Any) -> None:
            # Runs on the stream's event loop: do nothing that can raise or block.
            self.last_stream_activity = time.monotonic()
            self._inbox.put(message)
            self._inbox_ready.set()

        stream.subscribe_trade_updates(on_update)
        self._stream = stream
        self._stream_thread = threading.Thread(target=stream.run, name="alpaca-trade-updates", daemon=True)
        self._stream_thread.start()

    def _stop_stream(self) -> None:
        stream, thread = self._stream, self._stream_thread
        if stream is None:
            return
        deadline = time.monotonic() + 2.0
        # stop() needs the stream's loop; give a just-started thread a moment to create it.
        while getattr(stream, "_loop", None) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        with contextlib.suppress(Exception):
            stream.stop()
        if thread is not None:
            thread.join(10)
        self._stream = None
        self._stream_thread = None

    def _on_stream_connect(self) -> None:
        self.stream_connections += 1
        self.stream_auth_failed = False
        self.last_stream_activity = time.monotonic()
        # Events during the outage are gone for good: fill the gap over REST.
        self._reconcile_now.set()

    def _on_auth_failure(self) -> None:
        if not self.stream_auth_failed:
            log.error("trade_updates stream refused the credentials; relying on REST reconciliation")
            self.events.put(BrokerEvent(EventKind.ERROR, None, None, source="stream",
                                        message="stream authentication failed"))
        self.stream_auth_failed = True

    @property
    def stream_connected(self) -> bool:
        stream = self._stream
        return bool(stream is not None and getattr(stream, "_running", False))

    # ================================================================== events

    def poll(self, timeout: float = 0.0) -> list[BrokerEvent]:
        """Process buffered stream messages and return all pending events (waits up to ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            self._pump()
            self._send_queued_cancels()
            out: list[BrokerEvent] = []
            with contextlib.suppress(queue.Empty):
                while True:
                    out.append(self.events.get_nowait())
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            # Wake on stream traffic, or every 50 ms for events published by the reconcile thread.
            self._inbox_ready.wait(min(0.05, remaining))
            self._inbox_ready.clear()

    def _send_queued_cancels(self) -> None:
        """Cancel orders that were canceled while their submit outcome was unknown and have now appeared."""
        with self._lock:
            due, self._cancel_queue = self._cancel_queue, []
        for order_id in due:
            log.info("canceling %s: it was canceled before the broker showed it", order_id)
            with contextlib.suppress(APIError, requests.RequestException):
                self.trading.cancel_order_by_id(order_id)

    def _emit(self, event: BrokerEvent) -> None:
        self.events.put(event)

    def _pump(self) -> None:
        # Drain under the state lock so that the poll thread and the reconcile thread can never
        # apply two stream messages out of their arrival order.
        with self._lock:
            while True:
                try:
                    message = self._inbox.get_nowait()
                except queue.Empty:
                    return
                self._handle_stream_message(message)

    def _handle_stream_message(self, message: Any) -> None:
        """Defensive parsing: anything malformed is logged and journaled, never raised."""
        try:
            data = message.get("data") if isinstance(message, Mapping) else None
            if not isinstance(data, Mapping):
                log.warning("ignoring trade update without data: %.200r", message)
                return
            order = data.get("order")
            event = data.get("event")
            execution_id = data.get("execution_id")
            if not isinstance(order, Mapping) or not order.get("id"):
                log.warning("ignoring trade update %r without an order", event)
                self.journal.record_event(source="stream", payload=data, event=str(event))
                return
            self._apply(order, source="stream", event=str(event) if event else None,
                        execution_id=str(execution_id) if execution_id else None, payload=data)
        except Exception:
            log.exception("failed to process a trade update; reconciliation will catch up")

    # ================================================================== state machine

    def _load_journal(self) -> None:
        for rec in self.journal.intents():
            tracked = _Tracked(rec.client_order_id, rec.ref, rec.symbol, order_id=rec.order_id, status=rec.status,
                               acked=rec.order_id is not None, terminal=not rec.is_open,
                               parent_client_order_id=rec.parent_client_order_id, leg_role=rec.leg_role,
                               intent=rec.request)
            self._orders[rec.client_order_id] = tracked
            if rec.order_id:
                self._by_order_id[rec.order_id] = rec.client_order_id

    def _track(self, tracked: _Tracked) -> None:
        self._orders[tracked.client_order_id] = tracked
        if tracked.order_id:
            self._by_order_id[tracked.order_id] = tracked.client_order_id

    def _apply(self, order: Mapping[str, Any], *, source: str, event: str | None = None,
               execution_id: str | None = None, payload: Mapping[str, Any] | None = None) -> None:
        """Apply one broker order snapshot: journal it, derive fills, publish state changes."""
        with self._lock:
            order_id = str(order.get("id") or "")
            cid = str(order.get("client_order_id") or "")
            key = self._by_order_id.get(order_id) or (cid if cid in self._orders else None)
            tracked = self._orders.get(key) if key is not None else None
            if tracked is not None and tracked.order_id and order_id and tracked.order_id != order_id \
                    and tracked.parent_client_order_id is None:
                # a second order under one of our ids: a server that does not enforce unique client order
                # ids accepted a re-send as well as a late first send; book it apart, never mixed in
                tracked = self._track_twin(tracked, order, source)
                key = tracked.client_order_id
            signature = (str(order.get("status")), str(order.get("filled_qty")), str(order.get("updated_at")))
            # Every stream event is journaled; a REST snapshot only when it says something new, or a
            # 30 s reconcile of many open orders would grow the journal without bound.
            if source == "stream" or tracked is None or tracked.signature != signature:
                self.journal.record_event(source=source, payload=payload or order, client_order_id=cid or None,
                                          order_id=order_id or None, event=event, execution_id=execution_id)
            if tracked is None:
                # A leg or orphan we have not linked yet: keep its latest words until we do.
                if order_id not in self._unmatched and len(self._unmatched) >= 1000:
                    self._unmatched.pop(next(iter(self._unmatched)))  # forget the oldest stranger
                self._unmatched.setdefault(order_id, []).append((dict(order), source, event, execution_id))
                del self._unmatched[order_id][:-5]
                return
            tracked.signature = signature
            if tracked.terminal and tracked.order_id is None and order_id:
                self._revive(tracked, order_id, source)
            if tracked.order_id is None and order_id:
                tracked.order_id = order_id
                self._by_order_id[order_id] = key
                self.journal.update_intent(key, order_id=order_id, state="submitted")
                if tracked.cancel_requested and str(order.get("status")) not in TERMINAL_STATUSES:
                    self._cancel_queue.append(order_id)  # sent by the next poll, outside this lock
            for leg in order.get("legs") or []:
                if isinstance(leg, Mapping) and leg.get("id"):
                    self._link_leg(tracked, leg, source)
            self._apply_tracked(tracked, order, source, execution_id)

    def _track_twin(self, original: _Tracked, order: Mapping[str, Any], source: str) -> _Tracked:
        """Journal and track a second broker order carrying ``original``'s client order id."""
        order_id = str(order.get("id"))
        key = f"{original.client_order_id}~{order_id[:8]}"
        if key not in self._orders:
            reason = (f"the broker holds a second order {order_id} under client_order_id "
                      f"{original.client_order_id} (first: {original.order_id}); it does not enforce unique ids")
            log.error("%s", reason)
            self.journal.record_intent(key, ref=original.ref, attempt=0, symbol=original.symbol,
                                       request={"twin_of": original.client_order_id}, state="submitted",
                                       order_id=order_id, durable=False)
            self.journal.record_event(source=source, client_order_id=key, order_id=order_id, event="duplicate",
                                      payload={"reason": reason})
            self._track(_Tracked(key, original.ref, original.symbol, order_id=order_id))
            self._emit(BrokerEvent(EventKind.ERROR, key, original.ref, order_id=order_id, source=source,
                                   message=reason))
        return self._orders[key]

    def _revive(self, tracked: _Tracked, order_id: str, source: str) -> None:
        """The broker shows an order for an intent we abandoned: it landed after all; follow it from here."""
        rec = self.journal.intent(tracked.client_order_id)
        if rec is None or rec.state != "abandoned":
            return
        reason = f"the broker accepted it after it was abandoned ({rec.error or 'no reason recorded'})"
        log.warning("order %s: %s; following it again", tracked.client_order_id, reason)
        self.journal.record_event(source=source, client_order_id=tracked.client_order_id, order_id=order_id,
                                  event="revived", payload={"reason": reason})
        tracked.terminal = False
        tracked.acked = False
        tracked.status = None

    def _link_leg(self, parent: _Tracked, leg: Mapping[str, Any], source: str) -> None:
        leg_cid = str(leg.get("client_order_id") or leg["id"])
        if leg_cid not in self._orders:
            role = _leg_role(leg)
            self.journal.record_intent(leg_cid, ref=parent.ref, attempt=0, symbol=parent.symbol,
                                       request={"leg_of": parent.client_order_id, "role": role},
                                       state="submitted", order_id=str(leg["id"]),
                                       parent_client_order_id=parent.client_order_id, leg_role=role,
                                       durable=False)
            self._track(_Tracked(leg_cid, parent.ref, parent.symbol, order_id=str(leg["id"]),
                                 parent_client_order_id=parent.client_order_id, leg_role=role))
        self._apply_tracked(self._orders[leg_cid], leg, source, None)
        # Stream events that raced ahead of the parent's snapshot; stale ones are ignored by timestamp.
        for snapshot, src, _event, execution_id in self._unmatched.pop(str(leg["id"]), []):
            self._apply_tracked(self._orders[leg_cid], snapshot, src, execution_id)

    def _apply_tracked(self, tracked: _Tracked, order: Mapping[str, Any], source: str,
                       execution_id: str | None) -> None:
        status = str(order.get("status") or "")
        updated = _ts(order.get("updated_at"))
        base = {"client_order_id": tracked.client_order_id, "ref": tracked.ref, "order_id": tracked.order_id,
                "parent_client_order_id": tracked.parent_client_order_id, "leg_role": tracked.leg_role,
                "source": source, "raw": order}
        qty = _num(order.get("qty"))
        fill = self.journal.apply_fill(tracked.client_order_id, tracked.order_id, execution_id,
                                       order.get("filled_qty"), order.get("filled_avg_price"))
        if fill is not None:
            if not tracked.acked:
                tracked.acked = True
                self._emit(BrokerEvent(EventKind.ACCEPTED, status="accepted", **base))
            self._emit(BrokerEvent(
                EventKind.FILL, status=status, fill_qty=fill.qty, fill_price=fill.price, filled_qty=fill.cum_qty,
                filled_avg_price=fill.cum_avg_price, execution_id=execution_id,
                remaining_qty=None if qty is None else max(0.0, qty - fill.cum_qty), **base))
        if tracked.terminal:
            return
        stale = updated is not None and tracked.updated_at is not None and updated < tracked.updated_at
        if stale and status not in TERMINAL_STATUSES:
            return  # an older snapshot delivered late must not roll the status back
        if updated is not None:
            tracked.updated_at = updated
        rec = self.journal.intent(tracked.client_order_id)
        filled = rec.filled_qty if rec else 0.0
        avg = rec.filled_avg_price if rec else None
        common = {**base, "status": status, "filled_qty": filled, "filled_avg_price": avg}
        if status in TERMINAL_STATUSES:
            tracked.terminal = True
            tracked.status = status
            kind = {"filled": EventKind.COMPLETED, "expired": EventKind.EXPIRED,
                    "rejected": EventKind.REJECTED}.get(status, EventKind.CANCELED)
            message = f"replaced by {order.get('replaced_by')}" if status == "replaced" else None
            if status == "rejected":
                message = str(order.get("reason") or "rejected by broker")
            self.journal.update_intent(tracked.client_order_id, status=status,
                                       state="rejected" if status == "rejected" else "done")
            self._emit(BrokerEvent(kind, remaining_qty=None if qty is None else max(0.0, qty - filled),
                                   message=message, **common))
            return
        if not status or status == tracked.status:
            return
        first = not tracked.acked
        tracked.acked = True
        tracked.status = status
        self.journal.update_intent(tracked.client_order_id, status=status, state="submitted")
        self._emit(BrokerEvent(EventKind.ACCEPTED if first else EventKind.STATUS, **common))

    # ================================================================== submit

    def submit(self, intent: OrderIntent) -> SubmitResult:
        """Journal, POST and classify; every outcome is also published as events."""
        return self._submit(intent, closing=False)

    def _submit(self, intent: OrderIntent, closing: bool) -> SubmitResult:
        """:meth:`submit`; ``closing`` orders (the kill switch's, a flatten's) go out while halted."""
        ref = str(intent.ref)
        halted, reason = self.journal.halted()
        if halted and not closing:
            message = f"trading halted: {reason}"
            self._emit(BrokerEvent(EventKind.REJECTED, None, ref, source="submit", message=message))
            return SubmitResult(SubmitStatus.REJECTED, None, ref, error=message)
        with self._lock:
            prev = self.journal.latest_attempt(ref)
            if prev is not None and prev.state in ("pending", "ambiguous"):
                # The broker may still accept the earlier POST: another id could double the order.
                message = (f"the earlier order for {ref} ({prev.client_order_id}) has an unknown outcome; "
                           "not sending another until the broker's answer is certain")
                log.warning("%s", message)
                self._emit(BrokerEvent(EventKind.ERROR, prev.client_order_id, ref, source="submit", message=message))
                return SubmitResult(SubmitStatus.AMBIGUOUS, prev.client_order_id, ref, error=message)
            # An abandoned attempt may still be accepted late (a broker slower than its window): its own id
            # goes out again, which a broker that enforces unique ids refuses once the first one lands.
            reuse = prev is not None and prev.state == "abandoned"
            attempt = prev.attempt if reuse and prev is not None else self.journal.next_attempt(ref)
            cid = prev.client_order_id if reuse and prev is not None else \
                make_client_order_id(self.prefix, self.run_id, ref, attempt)
            payload = {k: v for k, v in asdict(intent).items() if v is not None}
            try:
                request = intent.to_request(cid)
            except (ValueError, ValidationError) as exc:
                message = f"invalid order: {exc}".splitlines()[0]
                if reuse:
                    self.journal.update_intent(cid, state="rejected", error=message)
                else:
                    self.journal.record_intent(cid, ref=ref, attempt=attempt, symbol=intent.symbol,
                                               request=payload, state="rejected", durable=False)
                    self.journal.update_intent(cid, error=message)
                self._track(_Tracked(cid, ref, intent.symbol, terminal=True, intent=payload))
                self._emit(BrokerEvent(EventKind.REJECTED, cid, ref, source="submit", message=message))
                return SubmitResult(SubmitStatus.REJECTED, cid, ref, error=message)
            # The intent is durable before the POST leaves: a crash after this line is recoverable.
            if reuse:
                self.journal.reopen_intent(cid, symbol=intent.symbol, request=payload)
                self.journal.record_event(source="submit", client_order_id=cid, event="resend_same_id", payload={
                    "reason": "an earlier send of this ref was abandoned; its id is reused so that a late "
                              "acceptance of that send cannot double the order"})
            else:
                self.journal.record_intent(cid, ref=ref, attempt=attempt, symbol=intent.symbol, request=payload)
            self._track(_Tracked(cid, ref, intent.symbol, request=request, intent=payload))
            self._inflight.add(cid)
            self._resendable.add(cid)
        self._emit(BrokerEvent(EventKind.SUBMITTED, cid, ref, source="submit"))
        try:
            return self._send(cid, request)
        finally:
            with self._lock:
                self._inflight.discard(cid)

    def _send(self, cid: str, request: OrderRequest, resend: bool = False) -> SubmitResult:
        """POST (the intent is journaled as pending); re-POST the same id only once "missing" is certain.

        ``resend``: the intent was POSTed before (by reconciliation), so its ``posted_at`` moves first.
        """
        tracked = self._orders[cid]
        posts = 0
        for _ in range(self.max_resubmits + 1):
            if posts or resend:  # a re-send: the broker's acceptance window starts again from this POST
                self.journal.update_intent(cid, posted_at=time.time(), durable=True)
            posts += 1
            kind, value = self._post(request)
            if kind == "ok":
                return self._accepted(tracked, _as_dict(value), posts, adopted=False)
            if kind == "rejected":
                message, status, code = value
                return self._rejected(tracked, message, posts, status, code)
            if kind == "rate_limited":
                retry_at = time.time() + float(value)
                self.journal.update_intent(cid, state="requeued", retry_at=retry_at)
                log.warning("order %s rate limited; requeued until the limit resets", cid)
                return SubmitResult(SubmitStatus.REQUEUED, cid, tracked.ref, retry_at=retry_at, posts=posts)
            # Ambiguous: the broker may or may not have it. Ask by client order id.
            duplicate = value == _DUPLICATE
            why = f"{_DUPLICATE}: the broker already holds this id" if duplicate else \
                f"submit outcome unknown ({value})"
            self.journal.update_intent(cid, state="ambiguous", error=why)
            self.journal.record_event(source="submit", client_order_id=cid, event="unknown",
                                      payload={"reason": why, "posts": posts})
            log.warning("order %s: %s; looking it up by client_order_id", cid, why)
            checked = time.time()
            found, order = self._lookup(cid)
            if found == "found" and order is not None:
                return self._accepted(tracked, order, posts, adopted=True)
            if found == "unknown" or duplicate or not self._certainly_missing(cid, checked):
                break  # the broker may still show it: reconciliation looks again, and re-sends only after
            log.warning("order %s not found at the broker %.1f s after its POST; resubmitting with the same id",
                        cid, checked - (self._posted_at(cid) or checked))
        message = "submit outcome unknown; will resolve by reconciliation"
        self._emit(BrokerEvent(EventKind.ERROR, cid, tracked.ref, source="submit", message=message))
        return SubmitResult(SubmitStatus.AMBIGUOUS, cid, tracked.ref, error=message, posts=posts)

    def _posted_at(self, cid: str) -> float | None:
        rec = self.journal.intent(cid)
        if rec is None:
            return None
        return rec.posted_at if rec.posted_at is not None else rec.created_at

    def _certainly_missing(self, cid: str, checked: float) -> bool:
        """Whether a lookup started at ``checked`` (epoch s) that found nothing proves the POST never landed."""
        posted = self._posted_at(cid)
        return posted is None or checked >= posted + self.acceptance_window

    def _post(self, request: OrderRequest) -> tuple[str, Any]:
        """One logical POST: ("ok", order) | ("rejected", msg) | ("ambiguous", why) | ("rate_limited", s)."""
        retries = 0
        while True:
            try:
                return "ok", self.trading.submit_order(request)
            except APIError as err:
                status, code, message = api_error_info(err)
                if status == 429:
                    headers = err.response.headers if err.response is not None else {}
                    delay = reset_delay(headers, default=1.0)
                    if retries < self.inline_429_retries and delay <= self.max_inline_wait:
                        retries += 1
                        if self.limiter is None:  # the limiter blocks inside the adapter otherwise
                            time.sleep(delay)
                        continue
                    return "rate_limited", delay
                if _is_duplicate(status, message):
                    return "ambiguous", _DUPLICATE
                if status is None or status >= 500 or status == 408:
                    return "ambiguous", f"HTTP {status}"
                text = f"HTTP {status} {code if code is not None else ''}: {message}".replace(" :", ":")
                return "rejected", (text, status, code)
            except (requests.RequestException, ValueError) as exc:
                # Timeouts, dropped connections, a 2xx with an unreadable body: it may have landed.
                return "ambiguous", type(exc).__name__

    def _lookup(self, cid: str, attempts: int | None = None
                ) -> tuple[Literal["found", "missing", "unknown"], dict[str, Any] | None]:
        attempts = self.lookup_attempts if attempts is None else attempts
        misses = 0
        for attempt in range(attempts):
            try:
                return "found", _as_dict(self.trading.get_order_by_client_id(cid))
            except APIError as err:
                status, _, _ = api_error_info(err)
                if status == 404:
                    misses += 1
            except (requests.RequestException, ValueError):
                pass
            if attempt + 1 < attempts:
                # The lookup may briefly 404 right after a POST (unverified on paper): back off a bit.
                time.sleep(self.lookup_backoff * (attempt + 1))
        return ("missing", None) if misses == attempts else ("unknown", None)

    def _accepted(self, tracked: _Tracked, order: dict[str, Any], posts: int, adopted: bool) -> SubmitResult:
        cid = tracked.client_order_id
        with self._lock:
            # The stream may already have moved this order on (even to a terminal state) while the
            # POST reply was in flight; the status itself is left to _apply, which knows staleness.
            if not tracked.terminal:
                self.journal.update_intent(cid, state="submitted", order_id=str(order.get("id")), error=None,
                                           retry_at=None)
            self._apply(order, source="rest-adopt" if adopted else "submit")
        if adopted:
            log.info("order %s adopted after an ambiguous submit", cid)
        status = str(order.get("status") or "")
        if status == "rejected":
            return SubmitResult(SubmitStatus.REJECTED, cid, tracked.ref, order_id=str(order.get("id")),
                                broker_status=status, error="rejected by broker", adopted=adopted, posts=posts)
        return SubmitResult(SubmitStatus.ACCEPTED, cid, tracked.ref, order_id=str(order.get("id")),
                            broker_status=status, adopted=adopted, posts=posts)

    def _rejected(self, tracked: _Tracked, message: str, posts: int, status: int | None = None,
                  code: int | None = None) -> SubmitResult:
        cid = tracked.client_order_id
        with self._lock:
            tracked.terminal = True
            tracked.status = "rejected"
            self.journal.update_intent(cid, state="rejected", error=message)
        log.info("order %s rejected: %s", cid, message)
        self._emit(BrokerEvent(EventKind.REJECTED, cid, tracked.ref, status="rejected", source="submit",
                               message=message, http_status=status, error_code=code))
        return SubmitResult(SubmitStatus.REJECTED, cid, tracked.ref, error=message, posts=posts, http_status=status,
                            error_code=code)

    def process_requeued(self, now: float | None = None) -> list[SubmitResult]:
        """Resend rate-limited orders (same client id) whose reset time has passed."""
        now = time.time() if now is None else now
        results = []
        for rec in self.journal.intents(("requeued",)):
            if rec.retry_at is not None and rec.retry_at > now:
                continue
            result = self._resend(rec)
            if result is not None:
                results.append(result)
        return results

    def _resend(self, rec: IntentRecord) -> SubmitResult | None:
        """POST a journaled intent again under its own id (never while trading is halted)."""
        if self.halted and not _is_closing(rec.ref):
            self._abandon(rec, "trading halted before it could be re-sent", "rest")
            return None
        with self._lock:
            if rec.client_order_id in self._inflight:
                return None
            self._inflight.add(rec.client_order_id)
            self._resendable.add(rec.client_order_id)
            tracked = self._orders.get(rec.client_order_id)
            if tracked is None:
                tracked = _Tracked(rec.client_order_id, rec.ref, rec.symbol, intent=rec.request)
                self._track(tracked)
        try:
            request = tracked.request or OrderIntent.from_dict(rec.request).to_request(rec.client_order_id)
            return self._send(rec.client_order_id, request, resend=True)
        finally:
            with self._lock:
                self._inflight.discard(rec.client_order_id)

    # ================================================================== cancel / kill switch

    def client_order_ids(self, ref: int | str) -> list[str]:
        """Every client order id issued for ``ref`` (attempts and bracket legs), oldest first."""
        with self._lock:
            return [t.client_order_id for t in self._orders.values() if t.ref == str(ref)]

    def cancel(self, client_order_id: str) -> CancelResult:
        """Ask the broker to cancel; the outcome arrives as events (CANCELED, or COMPLETED if a fill won)."""
        with self._lock:
            tracked = self._orders.get(client_order_id)
        if tracked is None:
            return CancelResult("unknown", client_order_id, "not our order")
        rec = self.journal.intent(client_order_id)
        if rec is not None and rec.state == "requeued":
            with self._lock:
                tracked.terminal = True
                self.journal.update_intent(client_order_id, state="abandoned", status="canceled")
            self._emit(BrokerEvent(EventKind.CANCELED, client_order_id, tracked.ref, status="canceled",
                                   source="cancel", message="withdrawn before reaching the broker"))
            return CancelResult("withdrawn", client_order_id)
        if tracked.order_id is None:
            found, order = self._lookup(client_order_id)
            if found != "found" or order is None:
                if rec is not None and rec.state in ("pending", "ambiguous"):
                    # its submit outcome is unknown: if the broker shows it later, it is canceled then, and it
                    # is never re-sent (reconciliation abandons it once the acceptance window has passed)
                    with self._lock:
                        tracked.cancel_requested = True
                    log.info("order %s: cancel requested while its submit outcome is unknown", client_order_id)
                    return CancelResult("requested", client_order_id, "canceled as soon as the broker shows it")
                return CancelResult("error", client_order_id, "order id unknown; reconcile first")
            self._apply(order, source="rest")
        if tracked.terminal:
            return CancelResult("not_cancelable", client_order_id, f"already {tracked.status}")
        try:
            self.trading.cancel_order_by_id(tracked.order_id)
            return CancelResult("requested", client_order_id)
        except APIError as err:
            status, _, message = api_error_info(err)
            if status == 422:
                # Lost the race against a fill (or it is already final): learn the real outcome now.
                with contextlib.suppress(APIError, requests.RequestException):
                    self._refresh(tracked)
                return CancelResult("not_cancelable", client_order_id, message)
            if status == 404:
                return CancelResult("unknown", client_order_id, message)
            return CancelResult("error", client_order_id, message)
        except (requests.Timeout, requests.ConnectionError) as exc:
            return CancelResult("error", client_order_id, type(exc).__name__)

    def cancel_all(self) -> int:
        """``DELETE /v2/orders``; returns how many cancels the broker accepted."""
        results = self.trading.cancel_orders()
        accepted = 0
        for item in results or []:
            entry = _as_dict(item)
            if int(entry.get("status") or 0) in (200, 204):
                accepted += 1
            body = entry.get("body")
            if isinstance(body, Mapping) and body.get("id"):
                self._apply(body, source="rest")
        return accepted

    def kill_switch(self, reason: str, decision: datetime | None = None, cancel_timeout: float = 10.0) -> KillReport:
        """Halt (persisted first), cancel all open orders and close every position with our own orders.

        The closing orders carry ``kill-<decision date>-<SYMBOL>`` as their ref (``decision``: when the
        rule fired; default now), so the journal accounts for them like any order qf sends.
        """
        self.journal.set_halted(reason)
        log.error("kill switch: %s", reason)
        self._emit(BrokerEvent(EventKind.HALTED, None, None, source="kill", message=reason))
        return self.close_everything("kill", decision, cancel_timeout, reason=reason)

    def close_everything(self, kind: Literal["kill", "flatten"], decision: datetime | None = None,
                         cancel_timeout: float = 10.0, reason: str | None = None) -> KillReport:
        """Cancel every open order, wait until none works, then close each position with a market order.

        Unlike ``DELETE /v2/positions`` (whose orders get the broker's ids), each closing order is journaled
        under ``<prefix>-<run>-<kind>-<YYYYMMDD>-<SYMBOL>-<attempt>`` before it is sent, so every order qf
        ever sent is in the journal, tied to the decision (``kind``: ``kill`` or ``flatten``).

        Example::

            report = session.close_everything("flatten")
            [r["client_order_id"] for r in report.close_results]   # ['qf-<run>-flatten-20240105-AAPL-1']
        """
        stamp = (decision or datetime.now(UTC)).strftime("%Y%m%d")
        errors: list[str] = []
        for rec in self.journal.intents(("requeued",)):
            self.cancel(rec.client_order_id)
        canceled = 0
        try:
            canceled = self.cancel_all()
        except (APIError, requests.RequestException) as exc:
            errors.append(f"cancel_orders: {api_error_info(exc)[2]}")
        # a sell while an open order still holds the shares is refused ("insufficient qty available")
        deadline = time.monotonic() + cancel_timeout
        while True:
            try:
                still = self.trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500)) or []
            except (APIError, requests.RequestException) as exc:
                errors.append(f"open orders: {api_error_info(exc)[2]}")
                break
            working = [o for o in (_as_dict(x) for x in still) if str(o.get("status")) != "held"]
            if not working:
                break
            if time.monotonic() > deadline:
                errors.append(f"{len(working)} order(s) still open {cancel_timeout:g} s after the cancel")
                break
            time.sleep(0.1)
        self._pump()
        close_results: list[dict[str, Any]] = []
        try:
            positions = self.fetch_positions()
        except (APIError, requests.RequestException) as exc:
            errors.append(f"positions: {api_error_info(exc)[2]}")
            positions = {}
        for symbol, pos in sorted(positions.items()):
            if not pos.qty:
                continue
            ref = f"{kind}-{stamp}-{_SYMBOL_CHARS.sub('_', symbol)[:13]}"
            side: Literal["buy", "sell"] = "sell" if pos.qty > 0 else "buy"
            result = self._submit(OrderIntent(ref=ref, symbol=symbol, side=side, qty=abs(pos.qty)), closing=True)
            close_results.append({"symbol": symbol, "side": side, "qty": abs(pos.qty),
                                  "client_order_id": result.client_order_id, "status": str(result.status),
                                  "order_id": result.order_id, "error": result.error})
            if result.status == SubmitStatus.REJECTED:
                errors.append(f"close {symbol}: {result.error}")
        if reason is not None or kind == "flatten":
            self.journal.record_event(source=kind, payload={"reason": reason or "flatten", "canceled": canceled,
                                                            "closing": close_results, "errors": errors})
        return KillReport(reason or kind, canceled, close_results, errors)

    def resume(self) -> None:
        """Clear a persisted halt (an explicit operator decision)."""
        self.journal.clear_halted()

    @property
    def halted(self) -> bool:
        return self.journal.halted()[0]

    # ================================================================== reconciliation

    def _refresh(self, tracked: _Tracked) -> None:
        if tracked.order_id is None:
            return
        order = self.trading.get_order_by_id(tracked.order_id, GetOrderByIdRequest(nested=True))
        self._apply(_as_dict(order), source="rest")

    def _adopt_foreign(self, order: Mapping[str, Any]) -> None:
        """Track an order we did not submit through :meth:`submit` (flatten orders, orphans)."""
        cid = str(order.get("client_order_id") or order.get("id"))
        with self._lock:
            if cid not in self._orders:
                parsed = parse_client_order_id(cid)
                ref = parsed.ref if parsed is not None else f"ext_{str(order.get('id'))[:8]}"
                self.journal.record_intent(cid, ref=ref, attempt=parsed.attempt if parsed else 0,
                                           symbol=str(order.get("symbol") or ""), request={"adopted": True},
                                           state="submitted", order_id=str(order.get("id")), durable=False)
                self._track(_Tracked(cid, ref, str(order.get("symbol") or ""), order_id=str(order.get("id"))))
                for snapshot, src, _event, execution_id in self._unmatched.pop(str(order.get("id")), []):
                    self._apply_tracked(self._orders[cid], snapshot, src, execution_id)
        self._apply(order, source="rest")

    def reconcile(self) -> ReconcileReport:
        """Periodic pass: resolve ambiguous/requeued submits, refresh open orders, positions, cash."""
        report = ReconcileReport()
        with self._reconcile_lock:
            self._pump()
            self.reconciles += 1
            self._resolve_unsettled(report, restart=False)
            try:
                self._recheck_abandoned()
                report.resubmitted.extend(r.client_order_id or "" for r in self.process_requeued())
                after = datetime.fromtimestamp(self.journal.created_at, UTC) - self.lookback
                open_orders, _ = self.page_orders(after, status=QueryOrderStatus.OPEN)
                seen = set()
                for order in open_orders:
                    seen.add(str(order.get("id")))
                    report.orders_seen += 1
                    self._apply(order, source="rest")
                with self._lock:
                    stale = [t for t in self._orders.values()
                             if not t.terminal and t.order_id and t.order_id not in seen
                             and t.parent_client_order_id is None]
                for tracked in stale:
                    # Not open any more: it closed while we were not listening.
                    self._refresh(tracked)
                self._snapshot_portfolio(report)
            except (APIError, requests.RequestException) as exc:
                report.errors.append(f"{type(exc).__name__}: {api_error_info(exc)[2]}")
                log.warning("reconciliation incomplete: %s", report.errors[-1])
            self._pump()
            self._send_queued_cancels()
        self.last_report = report
        return report

    def recover(self) -> ReconcileReport:
        """Restart reconciliation (docs/alpaca.md, "Restart reconciliation"): journal lookups, paged order history with
        ``until``, orphan handling, broker positions and cash, then the buffered stream events."""
        report = ReconcileReport()
        with self._reconcile_lock:
            self._resolve_unsettled(report, restart=True)
            after = datetime.fromtimestamp(self.journal.created_at, UTC) - self.lookback
            orders, report.pages = self.page_orders(after)
            report.orders_seen = len(orders)
            for order in orders:
                cid = str(order.get("client_order_id") or "")
                parsed = parse_client_order_id(cid)
                with self._lock:
                    known = cid in self._orders or str(order.get("id")) in self._by_order_id
                if known:
                    self._apply(order, source="restart")
                    continue
                if parsed is None or parsed.prefix != self.prefix:
                    continue  # not ours: someone else's order on the same account
                is_open = str(order.get("status")) not in TERMINAL_STATUSES
                if parsed.run_id == self.run_id or not is_open or self.orphan_policy == "adopt":
                    self._adopt_foreign(order)
                    report.adopted.append(cid)
                else:
                    with contextlib.suppress(APIError, requests.RequestException):
                        self.trading.cancel_order_by_id(str(order.get("id")))
                        report.orphans_canceled.append(cid)
            self._snapshot_portfolio(report)
            self._pump()
        self.last_report = report
        return report

    def _resolve_unsettled(self, report: ReconcileReport, restart: bool) -> None:
        """Look up journaled orders whose fate is unknown; adopt them, wait, re-send (same id) or abandon.

        A "missing" answer is only believed once the acceptance window since the intent's last POST has
        passed (see the module docstring); before that the intent stays ``ambiguous`` and is looked up
        again by the next pass, so a restart never turns a late acceptance into a second order.
        """
        for rec in self.journal.open_intents():
            if rec.parent_client_order_id is not None:
                continue  # legs are refreshed through their parent
            with self._lock:
                if rec.client_order_id in self._inflight:
                    continue
            if rec.state == "requeued" and not restart:
                continue  # process_requeued handles it once the reset passes
            if rec.state == "submitted" and not restart:
                continue  # the open-orders refresh covers it
            source = "restart" if restart else "rest"
            checked = time.time()
            found, order = self._lookup(rec.client_order_id)
            if found == "found" and order is not None:
                self._accepted(self._orders[rec.client_order_id], order, 0, adopted=True)
                report.adopted.append(rec.client_order_id)
                if self.halted and not _is_closing(rec.ref) and str(order.get("status")) not in TERMINAL_STATUSES \
                        and order.get("id"):
                    # accepted after the kill switch fired: it must not trade
                    with contextlib.suppress(APIError, requests.RequestException):
                        self.trading.cancel_order_by_id(str(order["id"]))
                continue
            if found != "missing":
                report.errors.append(f"lookup failed for {rec.client_order_id}")
                continue
            if rec.state in ("pending", "ambiguous"):
                if (rec.error or "").startswith(_DUPLICATE):
                    # the broker said it holds this id: it will show up; re-sending could only be refused
                    report.unresolved.append(rec.client_order_id)
                    report.errors.append(f"{rec.client_order_id}: the broker refused it as a duplicate but "
                                         "does not show it yet")
                    continue
                if not self._certainly_missing(rec.client_order_id, checked):
                    self._wait_for_late_acceptance(rec, checked, source)
                    report.unresolved.append(rec.client_order_id)
                    with self._lock:
                        self._resendable.add(rec.client_order_id)
                    continue
                tracked = self._orders.get(rec.client_order_id)
                if restart or rec.client_order_id not in self._resendable or \
                        (tracked is not None and tracked.cancel_requested):
                    # certain, but the decision behind an earlier process's order may be stale: the caller
                    # decides whether to send it again (a new send of the same ref reuses this id)
                    posted = self._posted_at(rec.client_order_id) or checked
                    self._abandon(rec, f"not at the broker {checked - posted:.1f} s after its last POST "
                                       f"(acceptance window {self.acceptance_window:g} s)", source)
                    report.abandoned.append(rec.client_order_id)
                    continue
                if self._resend(rec) is not None:
                    report.resubmitted.append(rec.client_order_id)
                continue
            # "submitted" (the broker had given it an id) or "requeued" (refused with 429): not there
            self._abandon(rec, "not found at the broker", source)
            report.abandoned.append(rec.client_order_id)

    def _wait_for_late_acceptance(self, rec: IntentRecord, checked: float, source: str) -> None:
        """Keep an unknown-outcome intent open (and say why in the journal) until its window has passed."""
        posted = self._posted_at(rec.client_order_id) or checked
        why = (f"submit outcome unknown: not at the broker yet {checked - posted:.1f} s after its POST; looking "
               f"again until the {self.acceptance_window:g} s acceptance window has passed")
        if rec.state == "pending" or source == "restart":
            # a restart (or a process that stopped during its POST) journals why it keeps waiting; the
            # periodic passes after it only look again
            log.warning("order %s: %s", rec.client_order_id, why)
            self.journal.update_intent(rec.client_order_id, state="ambiguous", error=why)
            self.journal.record_event(source=source, client_order_id=rec.client_order_id, event="unknown",
                                      payload={"reason": why})

    def _abandon(self, rec: IntentRecord, reason: str, source: str) -> None:
        """Mark an intent that certainly never reached the broker (journaled with ``reason``)."""
        with self._lock:
            tracked = self._orders.get(rec.client_order_id)
            if tracked is not None:
                tracked.terminal = True
            self.journal.update_intent(rec.client_order_id, state="abandoned", error=reason)
            self.journal.record_event(source=source, client_order_id=rec.client_order_id, event="abandoned",
                                      payload={"reason": reason})
        log.warning("order %s abandoned: %s", rec.client_order_id, reason)
        self._emit(BrokerEvent(EventKind.CANCELED, rec.client_order_id, rec.ref, status="canceled", source=source,
                               message=f"never reached the broker: {reason}"))

    def _recheck_abandoned(self) -> None:
        """Look up recently abandoned intents once more: a broker slower than its window revives them."""
        horizon = time.time() - self.lookback.total_seconds()
        for rec in self.journal.intents(("abandoned",)):
            if rec.parent_client_order_id is not None or rec.order_id or rec.updated_at < horizon:
                continue
            found, order = self._lookup(rec.client_order_id, attempts=1)
            if found == "found" and order is not None:
                self._apply(order, source="rest")

    def _unknown_intents(self) -> list[IntentRecord]:
        """Top-level intents whose submit outcome is unknown and that no submit call is working on."""
        with self._lock:
            inflight = set(self._inflight)
        return [r for r in self.journal.intents(("ambiguous",))
                if r.client_order_id not in inflight and r.parent_client_order_id is None]

    def _poll_unknown(self, unknown: list[IntentRecord]) -> bool:
        """Look each unknown-outcome intent up once (adopting what appeared); True if a window has passed."""
        now = time.time()
        due = False
        for rec in unknown:
            found, order = self._lookup(rec.client_order_id, attempts=1)
            if found == "found" and order is not None:
                with self._reconcile_lock:
                    self._accepted(self._orders[rec.client_order_id], order, 0, adopted=True)
                self._send_queued_cancels()
                continue
            posted = rec.posted_at if rec.posted_at is not None else rec.created_at
            # a duplicate is never re-sent: the periodic pass keeps looking it up
            due = due or (now >= posted + self.acceptance_window and not (rec.error or "").startswith(_DUPLICATE))
        return due

    def page_orders(self, after: datetime, until: datetime | None = None,
                    status: QueryOrderStatus = QueryOrderStatus.ALL) -> tuple[list[dict[str, Any]], int]:
        """Orders submitted in ``(after, until)``, newest first, paging 500 at a time with ``until``.

        The next page's ``until`` is the oldest ``submitted_at`` seen plus one microsecond, so orders
        sharing that timestamp are fetched again rather than skipped; duplicates are dropped by id.
        """
        seen: dict[str, dict[str, Any]] = {}
        pages = 0
        cursor = until
        while True:
            page = [_as_dict(o) for o in self.trading.get_orders(GetOrdersRequest(
                status=status, limit=self.page_limit, after=after, until=cursor,
                direction=Sort.DESC, nested=True)) or []]
            pages += 1
            fresh = [o for o in page if str(o.get("id")) not in seen]
            for order in fresh:
                seen[str(order.get("id"))] = order
            stamps = [t for t in (_ts(o.get("submitted_at")) for o in page) if t is not None]
            if len(page) < self.page_limit or not fresh or not stamps:
                return list(seen.values()), pages
            cursor = min(stamps) + timedelta(microseconds=1)

    def _snapshot_portfolio(self, report: ReconcileReport) -> None:
        report.positions = self.fetch_positions()
        report.account = self.fetch_account()

    def fetch_positions(self) -> dict[str, PositionSnapshot]:
        out = {}
        for item in self.trading.get_all_positions() or []:
            pos = _as_dict(item)
            symbol = str(pos.get("symbol"))
            out[symbol] = PositionSnapshot(symbol, _num(pos.get("qty")) or 0.0,
                                           _num(pos.get("avg_entry_price")) or 0.0,
                                           _num(pos.get("market_value")), str(pos.get("side")))
        return out

    def fetch_account(self) -> AccountSnapshot:
        acct = _as_dict(self.trading.get_account())
        return AccountSnapshot(_num(acct.get("cash")) or 0.0, _num(acct.get("equity")),
                               _num(acct.get("buying_power")), _num(acct.get("portfolio_value")),
                               str(acct.get("status")) if acct.get("status") is not None else None)

    def order_state(self, client_order_id: str) -> IntentRecord | None:
        """The journal's view of one order (state, status, cumulative fill)."""
        return self.journal.intent(client_order_id)

    def open_orders(self) -> list[str]:
        with self._lock:
            return [t.client_order_id for t in self._orders.values() if not t.terminal]

    # ================================================================== background

    def _background_loop(self) -> None:
        next_periodic = time.monotonic() + self.reconcile_interval
        # Short ticks keep requeue and health checks timely; each tick costs one SQLite query.
        tick = max(0.01, min(self.reconcile_interval, self.stream_silence_timeout, 1.0) / 4)
        while not self._stop.is_set():
            self._reconcile_now.wait(tick)
            if self._stop.is_set():
                return
            now = time.monotonic()
            reason = None
            if self._reconcile_now.is_set():
                self._reconcile_now.clear()
                reason = "stream connect"
            elif now >= next_periodic:
                reason = "timer"
            elif self._stream_factory is not None and self.open_orders() and \
                    now - self.last_stream_activity > self.stream_silence_timeout:
                reason = "stream silent"
                self.health_reconciles += 1
                self.last_stream_activity = now  # at most one health pass per silence period
            elif any((r.retry_at or 0) <= time.time() for r in self.journal.intents(("requeued",))):
                reason = "requeue due"
            elif now >= self._unknown_next:
                unknown = self._unknown_intents()
                # one by-client-id lookup per unknown intent and second at most (a market that is closed
                # sends no stream event for a late acceptance), and a full pass once a window has passed
                self._unknown_next = now + max(1.0, float(len(unknown)))
                if unknown and self._poll_unknown(unknown):
                    reason = "unknown outcome due"
            if reason is None:
                continue
            try:
                log.debug("reconciling (%s)", reason)
                self.reconcile()
            except Exception:
                log.exception("background reconciliation failed")
            next_periodic = time.monotonic() + self.reconcile_interval


def iter_events(session: AlpacaSession, kinds: Iterable[EventKind] | None = None) -> list[BrokerEvent]:
    """Drain the session's events now, optionally keeping only some kinds (handy in adapters/tests)."""
    wanted = set(kinds) if kinds is not None else None
    return [e for e in session.poll() if wanted is None or e.kind in wanted]
