"""A loopback Alpaca paper-trading emulator that the unmodified alpaca-py SDK can talk to.

What it serves and why follows alpaca-py 0.44's behaviour (docs/alpaca.md, "The emulator"): the trading REST API
(orders, positions, account, clock, calendar, assets), ``GET /v2/stocks/bars``, and the ``trade_updates``
WebSocket. Everything binds to 127.0.0.1 by default, ports default to 0 (free port).

Example::

    from alpaca.trading.client import TradingClient
    from qf_plugins.alpaca.emulator import AlpacaEmulator

    with AlpacaEmulator(api_key="KEY", secret_key="SECRET", fill_mode="scripted") as emu:
        emu.set_quote("AAPL", 189.99, 190.01)
        client = TradingClient("KEY", "SECRET", url_override=emu.rest_url)
        order = client.submit_order(...)
        emu.fill(str(order.id), qty=4, price=190)
        emu.faults.status("POST", "/v2/orders", 504, apply=True)   # next POST lands, reply lost
        emu.stream.drop()                                          # kill the WebSocket
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from decimal import Decimal
from types import TracebackType
from typing import Any

from qf_plugins.alpaca.emulator.clock import Clock, ManualClock, MarketHours, SystemClock
from qf_plugins.alpaca.emulator.errors import ApiError
from qf_plugins.alpaca.emulator.faults import Fault, FaultPlan
from qf_plugins.alpaca.emulator.server import RequestRecord, RestServer, WindowRateLimiter
from qf_plugins.alpaca.emulator.state import AssetInfo, BrokerState, FillMode
from qf_plugins.alpaca.emulator.stream import StreamServer

__all__ = [
    "AlpacaEmulator", "ApiError", "AssetInfo", "BrokerState", "Clock", "Fault", "FaultPlan", "ManualClock",
    "MarketHours", "RequestRecord", "RestServer", "StreamServer", "SystemClock", "WindowRateLimiter",
]


class AlpacaEmulator:
    """REST server + WebSocket server + matcher thread over one :class:`BrokerState`.

    Args:
        host: bind address (keep 127.0.0.1).
        port / ws_port: REST and WebSocket ports; 0 picks free ports.
        api_key / secret_key: the only accepted credentials; both None accepts any non-empty pair.
        seed: seeds partial fills and synthetic prices.
        clock: injectable time source (default: wall clock).
        market_open: True (default) keeps the market open; False closes it; None follows ``clock``.
        fill_mode: ``"random"`` (quote-driven, seeded partials) or ``"scripted"`` (only
            :meth:`fill` / :meth:`script_fills`).
        partial_fill_prob: share of random-mode fills that are partial (paper: 10%).
        rate_limit / rate_window: trading API budget (200 per 60 s like Alpaca).
        data_rate_limit: market-data budget per ``rate_window``.
        reset_decimals: fractional digits in ``X-Ratelimit-Reset`` (0 like Alpaca; >0 for sub-second
            test windows).
        binary_frames: send WebSocket frames as binary, like paper.
        match_interval: seconds between matcher passes (it also wakes on every order or quote).
        extra_order_fields: added to every order payload (clients must ignore unknown fields).
        bars_page_size: most bars per page of ``/v2/stocks/bars``.
        max_client_order_id / unique_client_order_ids: see :class:`BrokerState`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        ws_port: int = 0,
        *,
        api_key: str | None = "PKEMULATOR0000000000",
        secret_key: str | None = "emulator-secret-key-0000000000000000000000",
        seed: int = 0,
        clock: Clock | None = None,
        market_open: bool | None = True,
        hours: MarketHours | None = None,
        fill_mode: FillMode = "random",
        partial_fill_prob: float = 0.1,
        cash: float = 100_000,
        rate_limit: int = 200,
        rate_window: float = 60.0,
        data_rate_limit: int = 200,
        reset_decimals: int = 0,
        binary_frames: bool = True,
        match_interval: float = 0.02,
        extra_order_fields: Mapping[str, Any] | None = None,
        bars_page_size: int = 10_000,
        max_client_order_id: int = 128,
        unique_client_order_ids: bool = True,
    ) -> None:
        if (api_key is None) != (secret_key is None):
            raise ValueError("give both api_key and secret_key, or neither")
        credentials = {api_key: secret_key} if api_key is not None and secret_key is not None else None
        self.api_key = api_key
        self._secret_key = secret_key
        self.state = BrokerState(
            clock=clock or SystemClock(), hours=hours, seed=seed, cash=cash, market_open=market_open,
            fill_mode=fill_mode, partial_fill_prob=partial_fill_prob, extra_order_fields=extra_order_fields,
            bars_page_size=bars_page_size, max_client_order_id=max_client_order_id,
            unique_client_order_ids=unique_client_order_ids,
        )
        self.faults = FaultPlan()
        self.rest = RestServer(
            self.state, self.faults, host, port, credentials,
            limiter=WindowRateLimiter(rate_limit, rate_window, reset_decimals=reset_decimals),
            data_limiter=WindowRateLimiter(data_rate_limit, rate_window, reset_decimals=reset_decimals),
        )
        self.stream = StreamServer(host, ws_port, credentials, binary=binary_frames)
        self.state.add_listener(self.stream.publish)
        self.match_interval = match_interval
        self._matcher: threading.Thread | None = None
        self._running = threading.Event()

    def __repr__(self) -> str:
        # Never show the secret; the key id alone is harmless and helps debugging.
        return f"AlpacaEmulator(rest_url={self.rest_url!r}, ws_url={self.ws_url!r}, api_key={self.api_key!r})"

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def rest_url(self) -> str:
        """Base URL for ``TradingClient`` / ``StockHistoricalDataClient`` ``url_override``."""
        return self.rest.url

    @property
    def data_url(self) -> str:
        return self.rest.url

    @property
    def ws_url(self) -> str:
        """URL for ``TradingStream(url_override=...)``."""
        return self.stream.url

    @property
    def requests(self) -> list[RequestRecord]:
        """Every REST request received, oldest first (secret header redacted)."""
        return self.rest.requests

    def start(self) -> AlpacaEmulator:
        self.rest.start()
        self.stream.start()
        self._running.set()
        self._matcher = threading.Thread(target=self._match_loop, name="alpaca-emulator-matcher", daemon=True)
        self._matcher.start()
        return self

    def stop(self) -> None:
        self._running.clear()
        self.state.wake.set()
        if self._matcher is not None:
            self._matcher.join(5)
            self._matcher = None
        self.stream.stop()
        self.rest.stop()

    def __enter__(self) -> AlpacaEmulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _match_loop(self) -> None:
        while self._running.is_set():
            self.state.wake.wait(self.match_interval)
            self.state.wake.clear()
            if not self._running.is_set():
                return
            self.state.step()

    # -- control API -----------------------------------------------------------------------

    def set_quote(self, symbol: str, bid: float, ask: float | None = None) -> None:
        self.state.set_quote(symbol, bid, ask)

    def set_market_open(self, value: bool | None) -> None:
        self.state.set_market_open(value)

    def set_clock(self, when: str | Any) -> None:
        """Move a :class:`ManualClock` (raises if the emulator runs on another clock)."""
        clock = self.state.clock
        if not isinstance(clock, ManualClock):
            raise TypeError("set_clock needs the emulator to be built with clock=ManualClock(...)")
        clock.set(when)
        self.state.wake.set()

    def fill(self, order_ref: str, qty: float | None = None, price: float | None = None) -> dict[str, Any]:
        """Execute (part of) an order by id or client order id."""
        return self.state.fill(order_ref, qty, price)

    def reject(self, order_ref: str, reason: str = "rejected by emulator") -> dict[str, Any]:
        return self.state.reject(order_ref, reason)

    def script_fills(self, key: str, fills: Iterable[tuple[float | Decimal, float | Decimal]]) -> None:
        self.state.script_fills(key, fills)

    def set_bars(self, symbol: str, bars: Iterable[Mapping[str, Any]]) -> None:
        self.state.bars.set_bars(symbol, bars)

    def add_asset(self, symbol: str, **kwargs: Any) -> AssetInfo:
        return self.state.add_asset(symbol, **kwargs)

    def step(self) -> None:
        """Run one matcher pass now (the thread also runs them continuously)."""
        self.state.step()

    def orders(self) -> list[dict[str, Any]]:
        """All orders, flat, oldest first (bypasses HTTP and the rate limit)."""
        with self.state.lock:
            return [self.state._order_json(o, nested=False) for o in self.state.orders.values()]
