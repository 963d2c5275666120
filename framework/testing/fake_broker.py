"""An honest in-memory broker for tests: market orders fill at once, completely, at the price you set.

Use it to test code that places orders (a live adapter, a rebalancing helper, a lifecycle hook that
trades) without a network, a clock or backtrader. It is deliberately small but never lies:

- a buy is refused when cash cannot pay for it (quantity x price + fees), a sell is refused when it would
  open a short (unless ``allow_short``), a fractional quantity is refused unless ``fractional``, and an
  order for a symbol without a price is refused; a refused order is recorded with its reason and changes
  nothing;
- a fill moves cash by exactly ``quantity x price`` plus or minus the fee (``fee_rate x value +
  fixed_fee``), updates the position and its average entry price, and calls every ``on_fill`` listener;
- malformed requests (a side other than buy/sell, a quantity that is not a positive finite number) are
  programming errors and raise ``ValueError`` instead of being recorded.

Example::

    broker = FakeBroker(cash=10_000, fee_rate=0.001)
    broker.set_prices({"AAPL": 100.0, "MSFT": 50.0})
    broker.buy("AAPL", 10)                 # FakeOrder(status='filled', price=100.0, fee=1.0, ...)
    broker.sell("MSFT", 1).reason          # 'would open a short of 1 MSFT (short selling is off)'
    broker.cash, broker.positions          # (8999.0, {'AAPL': 10.0})
    broker.equity                          # 9999.0: cash plus positions at the current prices

The live broker (:class:`FakeLiveBroker`, :class:`FakeData`, :class:`LiveOrder`, ``STATE_FILE``) is a
backtrader broker and lives in :mod:`qf.engines.backtrader.fake_broker` (backtrader is imported only there);
its names are still importable from here and from :mod:`qf.testing`, loaded on first use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from pydantic import Field

from qf.components import Broker, Params

if TYPE_CHECKING:
    from qf.engines.backtrader.fake_broker import FakeLiveBroker

# the live broker's names, kept importable from this module (PEP 562): loading them loads backtrader
_LIVE = frozenset({"FakeData", "FakeLiveBroker", "LiveOrder", "STATE_FILE"})

Side = Literal["buy", "sell"]
Status = Literal["filled", "rejected"]

# quantities closer to zero than this (relative to the position) count as flat: floating-point dust
# from fractional fills must not leave phantom positions behind
_DUST = 1e-12


@dataclass(frozen=True)
class FakeOrder:
    """One submitted order and what became of it.

    ``price`` and ``fee`` are the fill's (``None`` and 0.0 for a rejected order); ``reason`` says why an
    order was rejected. ``time`` is the broker's clock when the order was submitted (see
    :meth:`FakeBroker.set_prices`).

    Example::

        FakeOrder(ref=1, symbol="AAPL", side="buy", quantity=10.0, status="filled", price=100.0, fee=0.0)
    """

    ref: int | str
    symbol: str
    side: Side
    quantity: float
    status: Status
    price: float | None = None
    fee: float = 0.0
    reason: str | None = None
    time: pd.Timestamp | None = None

    @property
    def filled(self) -> bool:
        return self.status == "filled"

    @property
    def value(self) -> float:
        """Traded value (quantity x fill price); 0.0 when rejected."""
        return self.quantity * self.price if self.price is not None else 0.0


class FakeBroker:
    """An in-memory broker that fills market orders immediately at the current (or a given) price.

    ``cash`` is the starting cash. ``prices`` (or later :meth:`set_prices`) is what orders fill at.
    ``fee_rate`` is a fraction of traded value and ``fixed_fee`` a cash amount per filled order, like
    qf's ``execution.fees`` and ``execution.fixed_fees``.

    Example::

        broker = FakeBroker(cash=1_000, prices={"X": 10.0})
        broker.order_target_weights({"X": 0.5})   # buys 50 X
        broker.positions                          # {'X': 50.0}
        [o.side for o in broker.orders]           # ['buy']
    """

    def __init__(
        self,
        cash: float = 100_000.0,
        *,
        prices: Mapping[str, float] | pd.Series | None = None,
        fee_rate: float = 0.0,
        fixed_fee: float = 0.0,
        allow_short: bool = False,
        fractional: bool = True,
    ) -> None:
        if not (math.isfinite(cash) and cash >= 0):
            raise ValueError(f"cash must be a finite amount >= 0, got {cash!r}")
        if not (fee_rate >= 0 and fixed_fee >= 0):
            raise ValueError("fee_rate and fixed_fee must be >= 0")
        self.initial_cash = float(cash)
        self.cash = float(cash)
        self.fee_rate = float(fee_rate)
        self.fixed_fee = float(fixed_fee)
        self.allow_short = allow_short
        self.fractional = fractional
        self.time: pd.Timestamp | None = None
        self.orders: list[FakeOrder] = []
        self.on_fill: list[Callable[[FakeOrder], Any]] = []
        self._prices: dict[str, float] = {}
        self._positions: dict[str, float] = {}
        self._avg_price: dict[str, float] = {}
        self._next_ref = 1
        if prices is not None:
            self.set_prices(prices)

    def __repr__(self) -> str:
        return f"FakeBroker(cash={self.cash:,.2f}, positions={self.positions}, orders={len(self.orders)})"

    # -- market state ---------------------------------------------------------------------------------

    def set_prices(self, prices: Mapping[str, float] | pd.Series, time: Any = None) -> None:
        """Set the prices orders fill at (a mapping or a row of ``bars.close``) and optionally the clock.

        A NaN price removes the symbol's price (it is not trading), so orders for it are refused.

        Example::

            broker.set_prices(bars.close.iloc[-1], time=bars.index[-1])
        """
        items: Iterable[tuple[Any, Any]] = prices.items()
        for symbol, price in items:
            p = float(price)
            if math.isnan(p):
                self._prices.pop(str(symbol), None)
                continue
            if not (math.isfinite(p) and p > 0):
                raise ValueError(f"price of {symbol} must be a positive finite number, got {price!r}")
            self._prices[str(symbol)] = p
        if time is not None:
            self.time = pd.Timestamp(time)

    def price(self, symbol: str) -> float | None:
        """The current price of ``symbol``, or ``None`` when it has none."""
        return self._prices.get(symbol)

    # -- account state --------------------------------------------------------------------------------

    @property
    def positions(self) -> dict[str, float]:
        """Open positions (signed quantities, shorts negative); a copy, so tests cannot corrupt it."""
        return dict(self._positions)

    def position(self, symbol: str) -> float:
        return self._positions.get(symbol, 0.0)

    def avg_price(self, symbol: str) -> float | None:
        """Average entry price of the open position in ``symbol`` (``None`` when flat)."""
        return self._avg_price.get(symbol)

    @property
    def fills(self) -> list[FakeOrder]:
        """The filled orders, in submission order."""
        return [o for o in self.orders if o.filled]

    @property
    def rejected(self) -> list[FakeOrder]:
        return [o for o in self.orders if not o.filled]

    @property
    def fees_paid(self) -> float:
        return sum(o.fee for o in self.orders)

    @property
    def equity(self) -> float:
        """Cash plus every position valued at its current price.

        Raises ``ValueError`` when a held symbol has no price: an equity figure that silently left a
        position out would be a lie.
        """
        total = self.cash
        for symbol, qty in self._positions.items():
            price = self._prices.get(symbol)
            if price is None:
                raise ValueError(f"cannot value the position in {symbol}: it has no price")
            total += qty * price
        return total

    # -- orders ---------------------------------------------------------------------------------------

    def buy(self, symbol: str, quantity: float, **kwargs: Any) -> FakeOrder:
        """Shorthand for ``submit(symbol, "buy", quantity, ...)``."""
        return self.submit(symbol, "buy", quantity, **kwargs)

    def sell(self, symbol: str, quantity: float, **kwargs: Any) -> FakeOrder:
        """Shorthand for ``submit(symbol, "sell", quantity, ...)``."""
        return self.submit(symbol, "sell", quantity, **kwargs)

    def submit(
        self,
        symbol: str,
        side: Side,
        quantity: float,
        *,
        price: float | None = None,
        ref: int | str | None = None,
    ) -> FakeOrder:
        """Submit a market order; it fills now at ``price`` (default: the symbol's current price) or is refused.

        Returns the recorded :class:`FakeOrder`. ``ref`` defaults to a running number.

        Example::

            order = broker.submit("AAPL", "buy", 5, price=101.5, ref="rebalance-2024-01-31-AAPL")
            assert order.filled and broker.position("AAPL") == 5
        """
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        qty = float(quantity)
        if not (math.isfinite(qty) and qty > 0):
            raise ValueError(f"quantity must be a positive finite number, got {quantity!r}")
        if ref is None:
            ref = self._next_ref
            self._next_ref += 1
        fill_price = self._prices.get(symbol) if price is None else float(price)
        reason = self._refusal(symbol, side, qty, fill_price)
        if reason is not None:
            order = FakeOrder(ref, symbol, side, qty, "rejected", reason=reason, time=self.time)
            self.orders.append(order)
            return order
        assert fill_price is not None
        value = qty * fill_price
        fee = value * self.fee_rate + self.fixed_fee
        signed = qty if side == "buy" else -qty
        self.cash += -value - fee if side == "buy" else value - fee
        self._book(symbol, signed, fill_price)
        order = FakeOrder(ref, symbol, side, qty, "filled", price=fill_price, fee=fee, time=self.time)
        self.orders.append(order)
        for listener in self.on_fill:
            listener(order)
        return order

    def _refusal(self, symbol: str, side: Side, qty: float, price: float | None) -> str | None:
        if price is None:
            return f"no price for {symbol}"
        if not (math.isfinite(price) and price > 0):
            return f"invalid price {price!r} for {symbol}"
        if not self.fractional and qty != int(qty):
            return f"fractional quantity {qty:g} of {symbol} (fractional shares are off)"
        held = self._positions.get(symbol, 0.0)
        if side == "buy":
            cost = qty * price * (1 + self.fee_rate) + self.fixed_fee
            # a relative tolerance, so "spend exactly all the cash" is not refused over a rounding error
            if cost > self.cash * (1 + 1e-12) + 1e-9:
                return f"insufficient cash for {qty:g} {symbol}: needs {cost:,.2f}, has {self.cash:,.2f}"
        elif not self.allow_short and qty > held * (1 + 1e-12) + 1e-12:
            short = qty - max(held, 0.0)
            return f"would open a short of {short:g} {symbol} (short selling is off)"
        return None

    def _book(self, symbol: str, signed: float, price: float) -> None:
        before = self._positions.get(symbol, 0.0)
        after = before + signed
        if abs(after) <= _DUST * max(1.0, abs(before)):
            self._positions.pop(symbol, None)
            self._avg_price.pop(symbol, None)
            return
        self._positions[symbol] = after
        if before == 0.0 or (before > 0) != (after > 0):
            self._avg_price[symbol] = price  # a new position, or a reversal: the fill opens it
        elif abs(after) > abs(before):
            self._avg_price[symbol] = (abs(before) * self._avg_price[symbol] + abs(signed) * price) / abs(after)
        # reducing a position keeps its average entry price

    def order_target_weights(self, weights: Mapping[str, float] | pd.Series) -> list[FakeOrder]:
        """Trade towards target weights of current equity, sells before buys (as qf's engines do).

        Symbols held but missing from ``weights`` are left alone; a NaN weight means hold. Quantities are
        whole numbers (rounded towards the smaller trade) unless the broker is ``fractional``.

        Example::

            broker.set_prices(bars.close.iloc[-1])
            broker.order_target_weights(targets.iloc[-1])
        """
        equity = self.equity
        plans: list[tuple[str, float]] = []
        for symbol, w in weights.items():
            symbol, w = str(symbol), float(w)
            if math.isnan(w):
                continue
            price = self._prices.get(symbol)
            if price is None:
                if w != 0.0:
                    # sizing needs a price; making one up would hide the caller's bug
                    raise ValueError(f"cannot size an order for {symbol}: it has no price")
                continue
            held = self.position(symbol)
            delta = w * equity / price - held
            if not self.fractional:
                delta = float(math.trunc(delta))
            if abs(delta) > _DUST * max(1.0, abs(held)):
                plans.append((symbol, delta))
        plans.sort(key=lambda p: (p[1] > 0, p[0]))  # sells first, then buys, each by symbol
        return [self.submit(symbol, "buy" if delta > 0 else "sell", abs(delta)) for symbol, delta in plans]


class FakeLiveBrokerComponent(Broker):
    """The ``fake_live`` broker component: ``create()`` returns a :class:`FakeLiveBroker`.

    Register it in a test (``qf_register`` fixture or :func:`qf.testing.registry_with`) to run ``qf paper``
    against an in-memory live account; ``cash`` defaults to the experiment's ``execution.initial_cash``.

    Example::

        broker = FakeLiveBrokerComponent({"partial": 0.5}).create(exp.spec.execution, state_dir=tmp_path)
        isinstance(broker, qf.components.LiveBroker)   # True
    """

    name = "fake_live"

    class Params(Params):
        cash: float | None = Field(None, ge=0)
        fill: Literal["auto", "manual"] = "auto"
        partial: float = Field(1.0, gt=0, le=1)
        rejections: dict[str, str] = Field(default_factory=dict)
        allow_short: bool = False
        cash_buffer: float = Field(0.0, ge=0, lt=0.5)

    params: Params

    def create(self, execution: Any, *, state_dir: str | Path | None = None) -> FakeLiveBroker:
        # backtrader loads when a live broker is made, not when the component is registered
        from qf.engines.backtrader.fake_broker import FakeLiveBroker  # lazy: backtrader

        p = self.params
        cash = p.cash if p.cash is not None else float(execution.initial_cash)
        return FakeLiveBroker(cash, state_dir=state_dir, fill=p.fill, partial=p.partial, rejections=p.rejections,
                              allow_short=p.allow_short, cash_buffer=p.cash_buffer)


def __getattr__(name: str) -> Any:
    if name not in _LIVE:
        raise AttributeError(f"module 'qf.testing.fake_broker' has no attribute {name!r}")
    from qf.engines.backtrader import fake_broker as live

    return getattr(live, name)
