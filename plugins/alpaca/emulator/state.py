"""In-memory broker: account, positions, order book, quotes and the matching rules of Alpaca paper.

Every public method takes the state lock, so the REST threads, the matcher thread and test code can
call into it concurrently. Prices and quantities are ``Decimal`` internally (4@100, 3@101, 3@102
must average to exactly 100.9) and leave as strings, like Alpaca's JSON.

Paper semantics modelled (docs/alpaca.md, "The emulator"): orders fill only when marketable against the quote;
in ``"random"`` mode a seeded 10% of fills are partial with a random size; brackets hold their legs
until the parent fills and one leg's fill cancels the other; ``accepted`` outside the session; OPG/CLS
rejection windows; fractional ``qty``/``notional`` only on fractionable assets; a generic reject rule
instead of the retired PDT check.

Example::

    state = BrokerState(clock=ManualClock("2024-01-02T15:00:00Z"), fill_mode="scripted")
    state.set_quote("AAPL", 100, 100.02)
    order = state.submit_order({"symbol": "AAPL", "qty": "10", "side": "buy", "type": "market",
                                "time_in_force": "day"})
    state.fill(order["id"], qty=4, price=100)
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any, Literal

from qf_plugins.alpaca.emulator.clock import NEW_YORK, Clock, MarketHours, SystemClock, rfc3339, utc
from qf_plugins.alpaca.emulator.errors import ApiError
from qf_plugins.alpaca.emulator.marketdata import BarStore

FillMode = Literal["random", "scripted"]
Listener = Callable[[dict[str, Any]], None]
RejectRule = Callable[[Mapping[str, Any]], "ApiError | None"]

CLOSED_STATUSES = frozenset({"filled", "canceled", "expired", "replaced", "rejected"})
WORKING_STATUSES = frozenset({"new", "partially_filled"})
ORDER_TYPES = frozenset({"market", "limit", "stop", "stop_limit"})
TIME_IN_FORCE = frozenset({"day", "gtc", "opg", "cls", "ioc", "fok"})
NANO = Decimal("0.000000001")
ZERO = Decimal(0)

# OPG orders are refused from 09:28 to 19:00 New York, CLS orders from 15:50 to 19:00
# (alpaca.trading.enums.TimeInForce docstrings and Alpaca's orders documentation).
OPG_WINDOW = (time(9, 28), time(19, 0))
CLS_WINDOW = (time(15, 50), time(19, 0))


def to_decimal(value: Any, name: str) -> Decimal:
    """Accept JSON numbers or numeric strings (the OAS says strings, alpaca-py sends numbers)."""
    if isinstance(value, bool):
        raise ApiError(422, 40010001, f"invalid {name}")
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ApiError(422, 40010001, f"invalid {name}: {value!r}") from exc
    if not result.is_finite():
        raise ApiError(422, 40010001, f"invalid {name}: {value!r}")
    return result


def fmt(value: Decimal | None) -> str | None:
    """``Decimal("10.000")`` -> ``"10"``; never scientific notation."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes")


@dataclass
class AssetInfo:
    """One tradable symbol. ``exchange`` must be a value of alpaca-py's ``AssetExchange``."""

    symbol: str
    fractionable: bool = True
    shortable: bool = True
    tradable: bool = True
    marginable: bool = True
    easy_to_borrow: bool = True
    exchange: str = "NASDAQ"
    name: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "class": "us_equity", "exchange": self.exchange, "symbol": self.symbol,
            "name": self.name or f"{self.symbol} Emulated Inc.", "status": "active",
            "tradable": self.tradable, "marginable": self.marginable, "shortable": self.shortable,
            "easy_to_borrow": self.easy_to_borrow, "fractionable": self.fractionable,
            "maintenance_margin_requirement": 30, "attributes": [],
        }


@dataclass
class Quote:
    bid: Decimal
    ask: Decimal

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


@dataclass
class PositionRec:
    symbol: str
    qty: Decimal
    avg_entry_price: Decimal


@dataclass
class OrderRec:
    """Server-side order. ``legs`` holds child ids; ``parent_id`` links a leg to its parent."""

    id: str
    client_order_id: str
    symbol: str
    asset_id: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal | None
    notional: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    extended_hours: bool
    order_class: str
    status: str
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime
    expires_at: datetime
    filled_qty: Decimal = ZERO
    filled_value: Decimal = ZERO
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    failed_at: datetime | None = None
    parent_id: str | None = None
    legs: list[str] = field(default_factory=list)
    leg_role: str | None = None
    triggered: bool = False
    # the order's own stream of random partial fills, drawn from the seed in creation order, so that
    # how concurrently filling orders interleave cannot change any order's fills
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    @property
    def closed(self) -> bool:
        return self.status in CLOSED_STATUSES

    @property
    def filled_avg_price(self) -> Decimal | None:
        if self.filled_qty == 0:
            return None
        return (self.filled_value / self.filled_qty).quantize(NANO).normalize()

    @property
    def remaining(self) -> Decimal | None:
        """Shares left to fill; None for an unfilled notional order (its size depends on price)."""
        if self.qty is None:
            return None
        return self.qty - self.filled_qty


class BrokerState:
    """The emulated account. See the module docstring for the modelled semantics.

    Args:
        clock: time source for timestamps and market hours.
        hours: session calendar.
        seed: seeds the partial-fill RNG and synthetic prices, so runs repeat exactly.
        cash: starting cash (paper starts at $100k).
        market_open: True/False forces the session state; None follows ``hours`` and ``clock``.
        fill_mode: ``"random"`` fills marketable orders against quotes with seeded partials;
            ``"scripted"`` fills only through :meth:`fill` and :meth:`script_fills`.
        partial_fill_prob: share of random-mode fills that are partial.
        fractional_order_types: order types allowed for fractional or notional orders.
        max_client_order_id: longest accepted ``client_order_id`` (128 today; 48 in the 2022 spec).
        unique_client_order_ids: refuse a reused ``client_order_id`` with 422 like Alpaca; False models an
            independent Alpaca-compatible server that accepts it (a lookup then returns the first order).
        auto_assets: create unknown symbols on first use instead of answering "asset not found".
        auto_quotes: quote symbols without a set quote around their synthetic price.
        extra_order_fields: added to every order JSON (to test that clients ignore unknown fields).
    """

    def __init__(
        self,
        clock: Clock | None = None,
        hours: MarketHours | None = None,
        *,
        seed: int = 0,
        cash: float | Decimal = 100_000,
        market_open: bool | None = True,
        fill_mode: FillMode = "random",
        partial_fill_prob: float = 0.1,
        fractional_order_types: Iterable[str] = ("market", "limit", "stop", "stop_limit"),
        max_client_order_id: int = 128,
        unique_client_order_ids: bool = True,
        auto_assets: bool = True,
        auto_quotes: bool = True,
        extra_order_fields: Mapping[str, Any] | None = None,
        bars_page_size: int = 10_000,
    ) -> None:
        self.lock = threading.RLock()
        self.clock: Clock = clock or SystemClock()
        self.hours = hours or MarketHours()
        self.rng = random.Random(seed)
        self.seed = seed
        self.cash = Decimal(str(cash))
        self.market_open_override = market_open
        self.fill_mode: FillMode = fill_mode
        self.partial_fill_prob = partial_fill_prob
        self.fractional_order_types = frozenset(fractional_order_types)
        self.max_client_order_id = max_client_order_id
        self.unique_client_order_ids = unique_client_order_ids
        self.auto_assets = auto_assets
        self.auto_quotes = auto_quotes
        self.extra_order_fields: dict[str, Any] = dict(extra_order_fields or {})
        self.reject_rule: RejectRule | None = None
        self.bars = BarStore(self.clock, self.hours, seed=seed, page_size=bars_page_size)
        self.account_id = str(uuid.UUID(int=random.Random(f"acct{seed}").getrandbits(128), version=4))
        self.account_number = f"PA{random.Random(f'num{seed}').randrange(10**9, 10**10)}"
        self.created_at = self.clock.now()
        self.assets: dict[str, AssetInfo] = {}
        self.quotes: dict[str, Quote] = {}
        self.positions: dict[str, PositionRec] = {}
        self.orders: dict[str, OrderRec] = {}
        # Open orders only: matching and buying-power checks scan these, not the whole history.
        self.open_orders: dict[str, OrderRec] = {}
        self.by_client_id: dict[str, str] = {}
        self.events: list[dict[str, Any]] = []
        self._listeners: list[Listener] = []
        self._scripts: dict[str, deque[tuple[Decimal, Decimal]]] = {}
        self._last_stamp = datetime.min.replace(tzinfo=UTC)
        self._was_open: bool | None = None
        self.wake = threading.Event()
        for asset in (
            AssetInfo("AAPL"), AssetInfo("MSFT"), AssetInfo("SPY", exchange="ARCA"),
            AssetInfo("QQQ"), AssetInfo("TSLA"),
            AssetInfo("BRK.A", fractionable=False, shortable=False, exchange="NYSE"),
        ):
            self.assets[asset.symbol] = asset
        self._was_open = self.is_open()

    # ================================================================== control API (tests, CLI)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(message)`` for every trade_updates message, under the state lock."""
        with self.lock:
            self._listeners.append(listener)

    def add_asset(self, symbol: str, **kwargs: Any) -> AssetInfo:
        """Create or replace an asset, e.g. ``add_asset("XYZ", fractionable=False)``."""
        with self.lock:
            asset = AssetInfo(symbol.upper(), **kwargs)
            self.assets[asset.symbol] = asset
            return asset

    def set_quote(self, symbol: str, bid: float | Decimal, ask: float | Decimal | None = None) -> None:
        """Set the NBBO for ``symbol``; marketable orders fill on the next matcher step."""
        with self.lock:
            b = Decimal(str(bid))
            a = Decimal(str(ask)) if ask is not None else b
            self.quotes[symbol.upper()] = Quote(b, a)
        self.wake.set()

    def set_market_open(self, value: bool | None) -> None:
        """Force the session open/closed (None = follow the clock); runs the open/close transition."""
        with self.lock:
            self.market_open_override = value
            self._check_session()
        self.wake.set()

    def set_cash(self, amount: float | Decimal) -> None:
        with self.lock:
            self.cash = Decimal(str(amount))

    def set_position(self, symbol: str, qty: float | Decimal, avg_entry_price: float | Decimal) -> None:
        """Seed a position directly (as if filled earlier); qty 0 removes it."""
        with self.lock:
            q = Decimal(str(qty))
            if q == 0:
                self.positions.pop(symbol.upper(), None)
            else:
                self._asset(symbol)
                self.positions[symbol.upper()] = PositionRec(symbol.upper(), q, Decimal(str(avg_entry_price)))

    def script_fills(self, key: str, fills: Iterable[tuple[float | Decimal, float | Decimal]]) -> None:
        """Queue fills ``[(qty, price), ...]`` for an order id, client order id or symbol.

        The matcher applies one scripted fill per step, in every fill mode.
        """
        with self.lock:
            queue = self._scripts.setdefault(key, deque())
            for qty, price in fills:
                queue.append((Decimal(str(qty)), Decimal(str(price))))
        self.wake.set()

    def fill(self, order_ref: str, qty: float | Decimal | None = None, price: float | Decimal | None = None
             ) -> dict[str, Any]:
        """Execute ``qty`` (default: all remaining) of an order at ``price`` (default: the quote)."""
        with self.lock:
            order = self._find(order_ref)
            if order.closed:
                raise ApiError(422, 42210000, f"order {order.id} is {order.status}")
            if order.status in ("pending_new", "accepted", "held"):
                self._set_status(order, "new", event="new")
            if price is None:
                quote = self._quote(order.symbol)
                if quote is None:
                    raise ApiError(422, 42210000, f"no quote for {order.symbol}; pass price=")
                px = quote.ask if order.side == "buy" else quote.bid
            else:
                px = Decimal(str(price))
            remaining = order.remaining
            if remaining is None:
                assert order.notional is not None
                remaining = ((order.notional - order.filled_value) / px).quantize(NANO, ROUND_DOWN)
                order.qty = remaining
            amount = Decimal(str(qty)) if qty is not None else remaining
            if amount <= 0 or amount > remaining:
                raise ApiError(422, 42210000, f"fill qty {amount} outside (0, {remaining}]")
            self._execute(order, amount, px)
            return self._order_json(order, nested=True)

    def reject(self, order_ref: str, reason: str = "rejected by emulator") -> dict[str, Any]:
        """Reject an accepted order after the fact (a stream ``rejected`` following a 200)."""
        with self.lock:
            order = self._find(order_ref)
            if order.closed:
                raise ApiError(422, 42210000, f"order {order.id} is {order.status}")
            now = self._stamp()
            order.failed_at = now
            self._set_status(order, "rejected", event="rejected", extra={"reason": reason})
            for leg_id in order.legs:
                leg = self.orders[leg_id]
                if not leg.closed:
                    self._set_status(leg, "canceled", event="canceled")
            return self._order_json(order, nested=True)

    def step(self) -> None:
        """One matcher pass: session transitions, pending_new -> new, scripted and quote fills."""
        with self.lock:
            self._check_session()
            is_open = self.is_open()
            for order in list(self.open_orders.values()):
                if order.closed:
                    continue
                if order.status == "pending_new" and is_open:
                    self._set_status(order, "new", event="new")
                if order.status not in WORKING_STATUSES:
                    continue
                script = self._script_for(order)
                if script:
                    qty, price = script.popleft()
                    remaining = order.remaining
                    if remaining is not None:
                        qty = min(qty, remaining)
                    if qty > 0:
                        self._execute_scripted(order, qty, price)
                    continue
                if self.fill_mode != "random" or not is_open or order.time_in_force in ("opg", "cls"):
                    continue
                self._match(order)

    # ================================================================== read side

    def is_open(self) -> bool:
        with self.lock:
            if self.market_open_override is not None:
                return self.market_open_override
            return self.hours.is_open(self.clock.now())

    def get_account(self) -> dict[str, Any]:
        with self.lock:
            long_value = sum((p.qty * self._mark(p.symbol) for p in self.positions.values() if p.qty > 0), ZERO)
            short_value = sum((p.qty * self._mark(p.symbol) for p in self.positions.values() if p.qty < 0), ZERO)
            equity = self.cash + long_value + short_value
            buying_power = max(ZERO, self.cash - self._reserved_cash())
            money = {k: fmt(v.quantize(Decimal("0.01"))) for k, v in {
                "cash": self.cash, "buying_power": buying_power, "regt_buying_power": buying_power,
                "daytrading_buying_power": ZERO, "non_marginable_buying_power": buying_power,
                "options_buying_power": buying_power, "portfolio_value": equity, "equity": equity,
                "last_equity": equity, "long_market_value": long_value, "short_market_value": short_value,
                "initial_margin": ZERO, "maintenance_margin": ZERO, "last_maintenance_margin": ZERO,
                "sma": ZERO, "accrued_fees": ZERO, "pending_transfer_in": ZERO, "pending_transfer_out": ZERO,
                "intraday_adjustments": ZERO, "pending_reg_taf_fees": ZERO,
            }.items()}
            return {
                "id": self.account_id, "account_number": self.account_number, "status": "ACTIVE",
                "crypto_status": "ACTIVE", "currency": "USD", **money,
                "trading_blocked": False, "transfers_blocked": False, "account_blocked": False,
                "created_at": rfc3339(self.created_at), "trade_suspended_by_user": False,
                # A cash-like account keeps the buying-power arithmetic obvious in tests.
                "multiplier": "1", "shorting_enabled": True, "daytrade_count": 0,
                "balance_asof": self.clock.now().astimezone(NEW_YORK).date().isoformat(),
                "options_approved_level": 0, "options_trading_level": 0,
            }

    def get_clock(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock.now()
            return {
                "timestamp": now.astimezone(NEW_YORK).isoformat(),
                "is_open": self.is_open(),
                "next_open": self.hours.next_open(now).astimezone(NEW_YORK).isoformat(),
                "next_close": self.hours.next_close(now).astimezone(NEW_YORK).isoformat(),
            }

    def get_calendar(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        today = self.clock.now().astimezone(NEW_YORK).date()
        try:
            start = date.fromisoformat(params["start"][:10]) if params.get("start") else today
            end = date.fromisoformat(params["end"][:10]) if params.get("end") else start + timedelta(days=30)
        except ValueError as exc:
            raise ApiError(422, 42210000, "invalid date") from exc
        out = []
        for day, open_, close in self.hours.sessions(start, end):
            out.append({
                "date": day.isoformat(),
                "open": open_.astimezone(NEW_YORK).strftime("%H:%M"),
                "close": close.astimezone(NEW_YORK).strftime("%H:%M"),
                "session_open": "0400", "session_close": "2000",
                "settlement_date": self._settlement(day).isoformat(),
            })
        return out

    def get_asset(self, symbol_or_id: str) -> dict[str, Any]:
        with self.lock:
            for asset in self.assets.values():
                if asset.id == symbol_or_id:
                    return asset.to_json()
            return self._asset(symbol_or_id, for_lookup=True).to_json()

    def list_assets(self) -> list[dict[str, Any]]:
        with self.lock:
            return [a.to_json() for a in sorted(self.assets.values(), key=lambda a: a.symbol)]

    def list_positions(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self._position_json(p) for p in sorted(self.positions.values(), key=lambda p: p.symbol)]

    def get_position(self, symbol: str) -> dict[str, Any]:
        with self.lock:
            pos = self.positions.get(symbol.upper())
            if pos is None:
                raise ApiError(404, 40410000, "position does not exist")
            return self._position_json(pos)

    def get_order(self, order_id: str, nested: bool = False) -> dict[str, Any]:
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                raise ApiError(404, 40410000, f"order not found for {order_id}")
            return self._order_json(order, nested=nested)

    def get_order_by_client_id(self, client_order_id: str) -> dict[str, Any]:
        with self.lock:
            order_id = self.by_client_id.get(client_order_id)
            if order_id is None:
                raise ApiError(404, 40410000, "order not found")
            return self._order_json(self.orders[order_id], nested=True)

    def list_orders(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """``GET /v2/orders`` with status, limit (max 500), after, until, direction, nested, side, symbols."""
        status = (params.get("status") or "open").lower()
        if status not in ("open", "closed", "all"):
            raise ApiError(422, 40010001, f"invalid status: {status}")
        try:
            limit = int(params.get("limit") or 50)
        except ValueError as exc:
            raise ApiError(422, 40010001, "invalid limit") from exc
        if not 1 <= limit <= 500:
            raise ApiError(422, 40010001, "limit must be between 1 and 500")
        direction = (params.get("direction") or "desc").lower()
        if direction not in ("asc", "desc"):
            raise ApiError(422, 40010001, f"invalid direction: {direction}")
        try:
            after = utc(params["after"]) if params.get("after") else None
            until = utc(params["until"]) if params.get("until") else None
        except ValueError as exc:
            raise ApiError(422, 40010001, "invalid timestamp") from exc
        nested = _truthy(params.get("nested", "false"))
        side = (params.get("side") or "").lower() or None
        symbols = {s.strip().upper() for s in (params.get("symbols") or "").split(",") if s.strip()}
        with self.lock:
            picked = []
            for order in self.orders.values():
                if nested and order.parent_id is not None:
                    continue  # rolled up under its parent's "legs"
                if status == "open" and order.closed or status == "closed" and not order.closed:
                    continue
                if after is not None and order.submitted_at <= after:
                    continue
                if until is not None and order.submitted_at >= until:
                    continue
                if side and order.side != side or symbols and order.symbol not in symbols:
                    continue
                picked.append(order)
            picked.sort(key=lambda o: o.submitted_at, reverse=direction == "desc")
            return [self._order_json(o, nested=nested) for o in picked[:limit]]

    # ================================================================== write side

    def submit_order(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v2/orders``: validate like Alpaca, create the order (and bracket legs)."""
        if not isinstance(payload, Mapping):
            raise ApiError(400, 40010000, "request body format is invalid")
        with self.lock:
            spec = self._validate(payload)
            order = self._create(spec)
            body = self._order_json(order, nested=True)
        self.wake.set()
        return body

    def cancel_order(self, order_id: str) -> None:
        """``DELETE /v2/orders/{id}``: 404 unknown, 422 not cancelable, else cancels (the group)."""
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                raise ApiError(404, 40410000, f"order not found for {order_id}")
            if order.closed or order.status == "pending_cancel":
                raise ApiError(422, 42210000, "order is not cancelable")
            self._cancel_group(order)

    def cancel_all(self) -> list[dict[str, Any]]:
        """``DELETE /v2/orders``: the 207 body ``[{id, status, body}]``."""
        with self.lock:
            out = []
            for order in list(self.open_orders.values()):
                if order.closed or order.parent_id is not None and not self.orders[order.parent_id].closed:
                    continue
                touched = self._cancel_group(order)
                for o in touched:
                    out.append({"id": o.id, "status": 200, "body": self._order_json(o, nested=False)})
            return out

    def close_position(self, symbol: str, qty: str | None = None, percentage: str | None = None
                       ) -> dict[str, Any]:
        """``DELETE /v2/positions/{symbol}``: a market order against the position."""
        with self.lock:
            pos = self.positions.get(symbol.upper())
            if pos is None:
                raise ApiError(404, 40410000, "position does not exist")
            size = abs(pos.qty)
            if qty is not None and percentage is not None:
                raise ApiError(422, 40010001, "only one of qty or percentage may be given")
            if qty is not None:
                size = to_decimal(qty, "qty")
            elif percentage is not None:
                pct = to_decimal(percentage, "percentage")
                if not 0 < pct <= 100:
                    raise ApiError(422, 40010001, "percentage must be in (0, 100]")
                size = (abs(pos.qty) * pct / 100).quantize(NANO, ROUND_DOWN)
            side = "sell" if pos.qty > 0 else "buy"
            payload = {"symbol": pos.symbol, "qty": str(size), "side": side, "type": "market",
                       "time_in_force": "day"}
            spec = self._validate(payload, closing=True)
            order = self._create(spec)
            body = self._order_json(order, nested=False)
        self.wake.set()
        return body

    def close_all_positions(self, cancel_orders: bool) -> list[dict[str, Any]]:
        """``DELETE /v2/positions``: the 207 body ``[{symbol, status, body}]`` (body always present)."""
        with self.lock:
            if cancel_orders:
                self.cancel_all()
            out = []
            for symbol in sorted(self.positions):
                try:
                    body = self.close_position(symbol)
                    out.append({"symbol": symbol, "status": 200, "body": body})
                except ApiError as err:
                    failed = err.body()
                    failed.setdefault("code", err.status * 100000)
                    failed["symbol"] = symbol
                    out.append({"symbol": symbol, "status": err.status, "body": failed})
            return out

    # ================================================================== internals: validation

    def _validate(self, p: Mapping[str, Any], closing: bool = False) -> dict[str, Any]:
        symbol = str(p.get("symbol") or "").upper()
        if not symbol:
            raise ApiError(422, 40010001, "symbol is required")
        side = str(p.get("side") or "").lower()
        if side not in ("buy", "sell"):
            raise ApiError(422, 40010001, "side must be buy or sell")
        otype = str(p.get("type") or p.get("order_type") or "").lower()
        if otype == "trailing_stop":
            raise ApiError(422, 40010001, "trailing_stop orders are not supported by the emulator")
        if otype not in ORDER_TYPES:
            raise ApiError(422, 40010001, f"invalid order type: {otype!r}")
        tif = str(p.get("time_in_force") or "").lower()
        if tif not in TIME_IN_FORCE:
            raise ApiError(422, 40010001, f"invalid time_in_force: {tif!r}")
        has_qty, has_notional = p.get("qty") is not None, p.get("notional") is not None
        if has_qty == has_notional:
            raise ApiError(422, 40010001, "qty or notional is required, but not both")
        qty = to_decimal(p["qty"], "qty") if has_qty else None
        notional = to_decimal(p["notional"], "notional") if has_notional else None
        size = qty if qty is not None else notional
        assert size is not None
        if size <= 0:
            raise ApiError(422, 40010001, "qty must be > 0" if has_qty else "notional must be > 0")
        if _decimals(size) > 9:
            raise ApiError(422, 40010001, "qty and notional accept at most 9 decimal places")

        cid = p.get("client_order_id")
        cid = str(cid) if cid not in (None, "") else str(uuid.uuid4())
        if len(cid) > self.max_client_order_id:
            raise ApiError(422, 40010001, f"client_order_id must be at most {self.max_client_order_id} characters")
        if cid in self.by_client_id and self.unique_client_order_ids:
            raise ApiError(422, 40010001, "client_order_id must be unique")

        asset = self._asset(symbol)
        if not asset.tradable:
            raise ApiError(422, 40010001, f"asset {symbol} is not tradable")

        limit_price = to_decimal(p["limit_price"], "limit_price") if p.get("limit_price") is not None else None
        stop_price = to_decimal(p["stop_price"], "stop_price") if p.get("stop_price") is not None else None
        if otype in ("limit", "stop_limit") and limit_price is None:
            raise ApiError(422, 40010001, "limit_price is required for limit orders")
        if otype in ("stop", "stop_limit") and stop_price is None:
            raise ApiError(422, 40010001, "stop_price is required for stop orders")
        if otype in ("market", "stop") and limit_price is not None:
            raise ApiError(422, 40010001, f"limit_price is not allowed for {otype} orders")

        fractional = notional is not None or (qty is not None and qty != qty.to_integral_value())
        if fractional:
            if not asset.fractionable:
                raise ApiError(403, 40310000, f"asset {symbol} is not fractionable")
            if otype not in self.fractional_order_types:
                raise ApiError(422, 40010001, f"fractional orders do not support type {otype}")
            if tif != "day":
                raise ApiError(422, 40010001, "fractional orders must be day orders")

        extended = _truthy(p.get("extended_hours", False))
        if extended and (otype != "limit" or tif not in ("day", "gtc")):
            raise ApiError(422, 40010001, "extended hours order must be DAY/GTC limit orders")

        if tif in ("opg", "cls"):
            if otype not in ("market", "limit"):
                raise ApiError(422, 40010001, f"{tif} orders must be market or limit orders")
            now = self.clock.now()
            window = OPG_WINDOW if tif == "opg" else CLS_WINDOW
            ny = MarketHours.new_york_time(now)
            if self.hours.is_trading_day(now.astimezone(NEW_YORK).date()) and window[0] <= ny < window[1]:
                raise ApiError(422, 40010001, f"{tif} orders are not accepted at this time")

        order_class = str(p.get("order_class") or "simple").lower()
        take_profit = stop_loss = None
        if order_class == "bracket":
            tp, sl = p.get("take_profit") or {}, p.get("stop_loss") or {}
            if not isinstance(tp, Mapping) or tp.get("limit_price") is None:
                raise ApiError(422, 40010001, "bracket orders require take_profit.limit_price")
            if not isinstance(sl, Mapping) or sl.get("stop_price") is None:
                raise ApiError(422, 40010001, "bracket orders require stop_loss.stop_price")
            if otype not in ("market", "limit") or tif not in ("day", "gtc") or notional is not None:
                raise ApiError(422, 40010001, "bracket orders must be market/limit day/gtc orders with qty")
            take_profit = to_decimal(tp["limit_price"], "take_profit.limit_price")
            stop_loss = (to_decimal(sl["stop_price"], "stop_loss.stop_price"),
                         to_decimal(sl["limit_price"], "stop_loss.limit_price")
                         if sl.get("limit_price") is not None else None)
            up, down = (take_profit, stop_loss[0]) if side == "buy" else (stop_loss[0], take_profit)
            if up <= down:
                raise ApiError(422, 40010001, "take_profit.limit_price must be beyond stop_loss.stop_price")
        elif order_class not in ("simple", ""):
            raise ApiError(422, 40010001, f"order_class {order_class} is not supported by the emulator")

        spec = {"symbol": symbol, "side": side, "type": otype, "time_in_force": tif, "qty": qty,
                "notional": notional, "limit_price": limit_price, "stop_price": stop_price,
                "extended_hours": extended, "client_order_id": cid, "asset": asset,
                "order_class": "bracket" if order_class == "bracket" else "simple",
                "take_profit": take_profit, "stop_loss": stop_loss, "fractional": fractional}

        if self.reject_rule is not None:
            err = self.reject_rule(dict(p))
            if err is not None:
                raise err
        self._check_funds(spec, closing)
        return spec

    def _check_funds(self, spec: Mapping[str, Any], closing: bool) -> None:
        symbol, side = spec["symbol"], spec["side"]
        if side == "buy":
            held = self.positions.get(symbol)
            covering = held is not None and held.qty < 0
            if spec["notional"] is not None:
                cost = spec["notional"]
            else:
                ref = spec["limit_price"]
                if ref is None:
                    quote = self._quote(symbol)
                    ref = (quote.ask if quote else None) or spec["stop_price"] or ZERO
                cost = spec["qty"] * ref
            if not covering and cost > self.cash - self._reserved_cash():
                raise ApiError(403, 40310000, "insufficient buying power")
            return
        pos = self.positions.get(symbol)
        have = pos.qty if pos is not None else ZERO
        available = have - self._held_for_sells(symbol)
        if spec["notional"] is not None:
            quote = self._quote(symbol)
            want = spec["notional"] / (quote.bid if quote and quote.bid > 0 else Decimal(1))
        else:
            want = spec["qty"]
        if want <= available:
            return
        asset: AssetInfo = spec["asset"]
        if closing or not asset.shortable or spec["fractional"] or available > 0:
            raise ApiError(403, 40310000,
                           f"insufficient qty available for order (requested: {fmt(want)}, "
                           f"available: {fmt(max(available, ZERO))})")

    # ================================================================== internals: lifecycle

    def _create(self, spec: Mapping[str, Any]) -> OrderRec:
        now = self._stamp()
        is_open = self.is_open()
        tif = spec["time_in_force"]
        held_for_session = tif in ("opg", "cls") or not is_open
        status = "accepted" if held_for_session else "pending_new"
        expires = self._expiry(now, tif)
        parent = OrderRec(
            id=str(uuid.uuid4()), client_order_id=spec["client_order_id"], symbol=spec["symbol"],
            asset_id=spec["asset"].id, side=spec["side"], type=spec["type"], time_in_force=tif,
            qty=spec["qty"], notional=spec["notional"], limit_price=spec["limit_price"],
            stop_price=spec["stop_price"], extended_hours=spec["extended_hours"],
            order_class=spec["order_class"], status=status, created_at=now, updated_at=now,
            submitted_at=now, expires_at=expires,
        )
        self._register(parent)
        if spec["order_class"] == "bracket":
            exit_side = "sell" if spec["side"] == "buy" else "buy"
            stop_price, stop_limit = spec["stop_loss"]
            for role, otype, limit, stop in (
                ("take_profit", "limit", spec["take_profit"], None),
                ("stop_loss", "stop_limit" if stop_limit is not None else "stop", stop_limit, stop_price),
            ):
                leg = OrderRec(
                    id=str(uuid.uuid4()), client_order_id=str(uuid.uuid4()), symbol=parent.symbol,
                    asset_id=parent.asset_id, side=exit_side, type=otype, time_in_force=tif, qty=parent.qty,
                    notional=None, limit_price=limit, stop_price=stop, extended_hours=False,
                    order_class="bracket", status="held", created_at=now, updated_at=now, submitted_at=now,
                    expires_at=expires, parent_id=parent.id, leg_role=role,
                )
                self._register(leg)
                parent.legs.append(leg.id)
        return parent

    def _register(self, order: OrderRec) -> None:
        order.rng = random.Random(self.rng.getrandbits(64))
        self.orders[order.id] = order
        self.open_orders[order.id] = order
        self.by_client_id.setdefault(order.client_order_id, order.id)  # the first, if ids may repeat

    def _expiry(self, now: datetime, tif: str) -> datetime:
        if tif == "gtc":
            return now + timedelta(days=90)
        return self.hours.next_close(now)

    def _cancel_group(self, order: OrderRec) -> list[OrderRec]:
        """Cancel an order and its bracket relatives; returns the orders actually canceled."""
        parent = self.orders[order.parent_id] if order.parent_id else order
        touched: list[OrderRec] = []
        if not parent.closed:
            self._set_status(parent, "canceled", event="canceled")
            touched.append(parent)
            legs = [self.orders[i] for i in parent.legs]
            if parent.filled_qty > 0 and legs:
                # The parent's filled part is a live position: protect it with resized legs.
                for leg in legs:
                    leg.qty = parent.filled_qty
                    self._set_status(leg, "new", event="new")
                return touched
        for leg_id in parent.legs:
            leg = self.orders[leg_id]
            if not leg.closed:
                self._set_status(leg, "canceled", event="canceled")
                touched.append(leg)
        return touched

    def _check_session(self) -> None:
        is_open = self.is_open()
        was = self._was_open
        self._was_open = is_open
        if was is None or was == is_open:
            return
        if is_open:
            self._on_open()
        else:
            self._on_close()

    def _on_open(self) -> None:
        for order in list(self.open_orders.values()):
            if order.status != "accepted" or order.time_in_force == "cls":
                continue
            self._set_status(order, "new", event="new")
            # The opening auction: fill at the quote if marketable, else the order dies.
            if order.time_in_force == "opg" and not self._match(order, full_only=True):
                self._set_status(order, "canceled", event="canceled")

    def _on_close(self) -> None:
        for order in list(self.open_orders.values()):
            if order.closed:
                continue
            if order.time_in_force == "cls" and order.status == "accepted":
                self._set_status(order, "new", event="new")
                if not self._match(order, full_only=True):
                    self._set_status(order, "canceled", event="canceled")
            elif order.time_in_force == "day" and order.status in ("new", "partially_filled", "pending_new",
                                                                    "held"):
                order.expired_at = self._stamp()
                self._set_status(order, "expired", event="expired")

    def _set_status(self, order: OrderRec, status: str, event: str | None = None,
                    extra: Mapping[str, Any] | None = None) -> None:
        now = self._stamp()
        order.status = status
        order.updated_at = now
        if order.closed:
            self.open_orders.pop(order.id, None)
        if status == "canceled":
            order.canceled_at = now
        if event is not None:
            self._emit(event, order, extra=extra)

    # ================================================================== internals: fills

    def _script_for(self, order: OrderRec) -> deque[tuple[Decimal, Decimal]] | None:
        for key in (order.id, order.client_order_id, order.symbol):
            queue = self._scripts.get(key)
            if queue:
                return queue
        return None

    def _execute_scripted(self, order: OrderRec, qty: Decimal, price: Decimal) -> None:
        if order.remaining is None:
            assert order.notional is not None
            order.qty = ((order.notional - order.filled_value) / price).quantize(NANO, ROUND_DOWN)
            qty = order.qty
        self._execute(order, qty, price)

    def _marketable_price(self, order: OrderRec, quote: Quote) -> Decimal | None:
        buy = order.side == "buy"
        touch = quote.ask if buy else quote.bid
        if touch <= 0:
            return None
        if order.type in ("stop", "stop_limit") and not order.triggered:
            assert order.stop_price is not None
            hit = touch >= order.stop_price if buy else touch <= order.stop_price
            if not hit:
                return None
            order.triggered = True
        if order.type in ("limit", "stop_limit"):
            assert order.limit_price is not None
            ok = touch <= order.limit_price if buy else touch >= order.limit_price
            return touch if ok else None
        return touch

    def _match(self, order: OrderRec, full_only: bool = False) -> bool:
        """Fill ``order`` against its quote if marketable; True if anything executed."""
        quote = self._quote(order.symbol)
        if quote is None:
            return False
        price = self._marketable_price(order, quote)
        if price is None:
            return False
        remaining = order.remaining
        if remaining is None:
            assert order.notional is not None
            order.qty = ((order.notional - order.filled_value) / price).quantize(NANO, ROUND_DOWN)
            remaining = order.qty
        qty = remaining
        rng = order.rng
        if not full_only and self.partial_fill_prob > 0 and rng.random() < self.partial_fill_prob:
            if remaining == remaining.to_integral_value() and remaining >= 2:
                qty = Decimal(rng.randint(1, int(remaining) - 1))
            elif remaining != remaining.to_integral_value():
                qty = (remaining * Decimal(str(round(rng.uniform(0.1, 0.9), 4)))).quantize(NANO, ROUND_DOWN)
                qty = qty if qty > 0 else remaining
        self._execute(order, qty, price)
        return True

    def _execute(self, order: OrderRec, qty: Decimal, price: Decimal) -> None:
        now = self._stamp()
        order.filled_qty += qty
        order.filled_value += qty * price
        done = order.remaining is not None and order.remaining <= 0
        order.status = "filled" if done else "partially_filled"
        order.updated_at = now
        if done:
            order.filled_at = now
            self.open_orders.pop(order.id, None)
        signed = qty if order.side == "buy" else -qty
        self.cash -= signed * price
        position_qty = self._apply_position(order.symbol, signed, price)
        self._emit("fill" if done else "partial_fill", order, execution_id=str(uuid.uuid4()),
                   price=price, qty=qty, position_qty=position_qty)
        self._after_fill(order, done)

    def _after_fill(self, order: OrderRec, done: bool) -> None:
        if order.legs and done:
            for leg_id in order.legs:
                leg = self.orders[leg_id]
                if leg.status == "held":
                    self._set_status(leg, "new", event="new")
        if order.parent_id is None:
            return
        parent = self.orders[order.parent_id]
        for sibling_id in parent.legs:
            sibling = self.orders[sibling_id]
            if sibling.id == order.id or sibling.closed:
                continue
            if done:
                self._set_status(sibling, "canceled", event="canceled")
            else:
                # A partial exit on one leg shrinks the protective other leg to what is left.
                sibling.qty = sibling.filled_qty + (order.remaining or ZERO)
                sibling.updated_at = self._stamp()

    def _apply_position(self, symbol: str, signed: Decimal, price: Decimal) -> Decimal:
        pos = self.positions.get(symbol)
        old = pos.qty if pos else ZERO
        new = old + signed
        if new == 0:
            self.positions.pop(symbol, None)
            return ZERO
        if pos is None or old == 0 or (old > 0) == (signed > 0):
            avg = price if pos is None or old == 0 else (old * pos.avg_entry_price + signed * price) / new
        elif (old > 0) == (new > 0):
            avg = pos.avg_entry_price  # reducing keeps the entry price
        else:
            avg = price  # flipped through zero: the remainder was opened at this price
        self.positions[symbol] = PositionRec(symbol, new, avg.quantize(NANO).normalize())
        return new

    # ================================================================== internals: helpers

    def _emit(self, event: str, order: OrderRec, *, execution_id: str | None = None,
              price: Decimal | None = None, qty: Decimal | None = None, position_qty: Decimal | None = None,
              extra: Mapping[str, Any] | None = None) -> None:
        data: dict[str, Any] = {
            "event": event,
            "timestamp": rfc3339(order.updated_at),
            "order": self._order_json(order, nested=False),
        }
        if execution_id is not None:
            data.update({"execution_id": execution_id, "price": fmt(price), "qty": fmt(qty),
                         "position_qty": fmt(position_qty)})
        if extra:
            data.update(extra)
        message = {"stream": "trade_updates", "data": data}
        self.events.append(message)
        for listener in list(self._listeners):
            listener(message)

    def _order_json(self, order: OrderRec, nested: bool) -> dict[str, Any]:
        def ts(value: datetime | None) -> str | None:
            return rfc3339(value) if value is not None else None

        body: dict[str, Any] = {
            "id": order.id, "client_order_id": order.client_order_id,
            "created_at": ts(order.created_at), "updated_at": ts(order.updated_at),
            "submitted_at": ts(order.submitted_at), "filled_at": ts(order.filled_at),
            "expired_at": ts(order.expired_at), "canceled_at": ts(order.canceled_at),
            "failed_at": ts(order.failed_at), "replaced_at": None, "replaced_by": None, "replaces": None,
            "asset_id": order.asset_id, "symbol": order.symbol, "asset_class": "us_equity",
            "notional": fmt(order.notional), "qty": fmt(order.qty), "filled_qty": fmt(order.filled_qty),
            "filled_avg_price": fmt(order.filled_avg_price), "order_class": order.order_class,
            "order_type": order.type, "type": order.type, "side": order.side,
            "time_in_force": order.time_in_force, "limit_price": fmt(order.limit_price),
            "stop_price": fmt(order.stop_price), "status": order.status,
            "extended_hours": order.extended_hours, "legs": None, "trail_percent": None,
            "trail_price": None, "hwm": None, "expires_at": ts(order.expires_at),
        }
        if nested and order.legs:
            body["legs"] = [self._order_json(self.orders[i], nested=False) for i in order.legs]
        body.update(self.extra_order_fields)
        return body

    def _position_json(self, pos: PositionRec) -> dict[str, Any]:
        asset = self._asset(pos.symbol)
        mark = self._mark(pos.symbol)
        cost = pos.qty * pos.avg_entry_price
        value = pos.qty * mark
        pl = value - cost
        plpc = (pl / abs(cost)) if cost else ZERO
        held = self._held_for_sells(pos.symbol) if pos.qty > 0 else ZERO

        def money(v: Decimal) -> str:
            return fmt(v.quantize(Decimal("0.01"))) or "0"

        return {
            "asset_id": asset.id, "symbol": pos.symbol, "exchange": asset.exchange, "asset_class": "us_equity",
            "asset_marginable": asset.marginable, "avg_entry_price": fmt(pos.avg_entry_price),
            "qty": fmt(pos.qty), "qty_available": fmt(pos.qty - held),
            "side": "long" if pos.qty > 0 else "short", "market_value": money(value),
            "cost_basis": money(cost), "unrealized_pl": money(pl),
            "unrealized_plpc": fmt(plpc.quantize(Decimal("0.0001"))), "unrealized_intraday_pl": money(pl),
            "unrealized_intraday_plpc": fmt(plpc.quantize(Decimal("0.0001"))), "current_price": fmt(mark),
            "lastday_price": fmt(mark), "change_today": "0",
        }

    def _asset(self, symbol: str, for_lookup: bool = False) -> AssetInfo:
        key = symbol.upper()
        asset = self.assets.get(key)
        if asset is None:
            if not self.auto_assets:
                if for_lookup:
                    raise ApiError(404, 40410000, "asset not found")
                raise ApiError(422, 40010001, f'asset "{key}" not found')
            asset = AssetInfo(key)
            self.assets[key] = asset
        return asset

    def _quote(self, symbol: str) -> Quote | None:
        quote = self.quotes.get(symbol.upper())
        if quote is None and self.auto_quotes:
            price = Decimal(str(self.bars.latest_price(symbol)))
            quote = Quote(price - Decimal("0.01"), price + Decimal("0.01"))
        return quote

    def _mark(self, symbol: str) -> Decimal:
        quote = self.quotes.get(symbol)
        if quote is not None:
            return quote.mid
        pos = self.positions.get(symbol)
        if not self.auto_quotes and pos is not None:
            return pos.avg_entry_price
        auto = self._quote(symbol)
        return auto.mid if auto is not None else ZERO

    def _reserved_cash(self) -> Decimal:
        reserved = ZERO
        for order in self.open_orders.values():
            if order.closed or order.side != "buy" or order.status == "held":
                continue
            if order.remaining is None:
                assert order.notional is not None
                reserved += order.notional - order.filled_value
                continue
            held = self.positions.get(order.symbol)
            if held is not None and held.qty < 0:
                continue
            ref = order.limit_price
            if ref is None:
                quote = self._quote(order.symbol)
                ref = (quote.ask if quote else None) or order.stop_price or ZERO
            reserved += order.remaining * ref
        return reserved

    def _held_for_sells(self, symbol: str) -> Decimal:
        held = ZERO
        for order in self.open_orders.values():
            if order.closed or order.side != "sell" or order.symbol != symbol or order.status == "held":
                continue
            # Working bracket legs share one position: count the group's exposure once.
            if order.parent_id is not None and order.leg_role == "stop_loss":
                continue
            held += order.remaining if order.remaining is not None else ZERO
        return held

    def _find(self, ref: str) -> OrderRec:
        order = self.orders.get(ref)
        if order is None and ref in self.by_client_id:
            order = self.orders[self.by_client_id[ref]]
        if order is None:
            raise ApiError(404, 40410000, f"order not found for {ref}")
        return order

    def _stamp(self) -> datetime:
        # Strictly increasing timestamps keep "until"-paging deterministic even on a frozen clock.
        now = self.clock.now()
        if now <= self._last_stamp:
            now = self._last_stamp + timedelta(microseconds=1)
        self._last_stamp = now
        return now

    def _settlement(self, day: date) -> date:
        settled, count = day, 0
        while count < 1:
            settled += timedelta(days=1)
            if self.hours.is_trading_day(settled):
                count += 1
        return settled
