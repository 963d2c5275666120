"""Fixtures of the paper-trading tests: experiments on the bundled sample data, and an Alpaca world.

The Alpaca world is the loopback emulator (REST + trade_updates on 127.0.0.1, real unmodified alpaca-py)
on a manual clock that follows US market hours, with the keys and URLs in the environment the way a
user sets them. A :class:`MarketDriver` thread moves the clock through trading days as the session
under test finishes each bar: it opens the market the next morning (orders sent after the close fill
then), and closes it again in the evening (the day's bar becomes final).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from qf_plugins.alpaca.emulator import AlpacaEmulator, ManualClock
from qf_plugins.alpaca.ratelimit import RateLimiter

KEY = "PKPAPERSESSION000001"
SECRET = "paper-session-secret-never-log-0123456789"
FIRST_DAY = pd.Timestamp("2024-03-04")  # a Monday; the session starts that evening
NY = "America/New_York"


def ny(day: pd.Timestamp, hhmm: str) -> Any:
    """``day`` at ``hh:mm`` New York time, as the aware datetime the manual clock takes."""
    return pd.Timestamp(f"{day:%Y-%m-%d} {hhmm}", tz=NY).tz_convert("UTC").to_pydatetime()


def write_experiment(folder: Path, name: str, doc: dict[str, Any]) -> Path:
    """Write an experiment YAML (reports and tear sheets inside ``folder``) and return its path."""
    base = {"name": name, "report": {"dir": str(folder / "reports"), "tearsheet": False}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**base, **doc}, sort_keys=False))
    return path


@pytest.fixture
def sample_experiment(tmp_path: Path) -> Callable[..., Path]:
    """An experiment on four of the bundled large caps (close only), with every stateful rule.

    ``sample_experiment(**changes)`` overrides top-level sections.
    """

    def make(name: str = "paper_sample", **changes: Any) -> Path:
        doc: dict[str, Any] = {
            "data": {"type": "sample", "params": {"dataset": "sp500_20", "symbols": ["AAPL", "JPM", "XOM", "KO"],
                                                  "start": "2016-01-01", "end": "2016-12-31"}},
            "signal": {"type": "sma_cross", "params": {"fast": 10, "slow": 40}},
            "sizer": {"type": "inverse_vol", "params": {"window": 20}},
            "risk": [{"type": "max_weight", "params": {"limit": 0.4}},
                     {"type": "drawdown_halt", "params": {"max_drawdown": 0.08, "cooldown_bars": 10}},
                     {"type": "stop_loss", "params": {"pct": 0.05}}],
            "rebalance": {"every": 3},
            "execution": {"engine": "backtrader", "fill": "next_close", "fees": 0.0005, "slippage": 0.0005,
                          "min_order_value": 50},
        }
        doc.update(changes)
        return write_experiment(tmp_path, name, doc)

    return make


def _query(state_dir: Path, sql: str) -> Any:
    """One value from the session's state, read-only (the session keeps writing meanwhile)."""
    path = state_dir / "paper.sqlite"
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            row = db.execute(sql).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _read_last_bar(state_dir: Path) -> pd.Timestamp | None:
    value = _query(state_dir, "SELECT MAX(time) FROM bars")
    return pd.Timestamp(value) if value else None


def _planned_waiting(state_dir: Path) -> int:
    """Planned orders the session has not sent yet (buys waiting for their sells' cash)."""
    return int(_query(state_dir, "SELECT COUNT(*) FROM planned WHERE status = 'planned'") or 0)


class AlpacaWorld:
    """The emulator, its manual clock and helpers to run a market around a session."""

    def __init__(self, emu: AlpacaEmulator, clock: ManualClock, folder: Path) -> None:
        self.emu = emu
        self.clock = clock
        self.folder = folder

    def at(self, day: pd.Timestamp, hhmm: str) -> None:
        self.clock.set(ny(day, hhmm))
        self.emu.state.wake.set()

    def working(self) -> list[dict[str, Any]]:
        """Orders that can still fill (not final, not a held bracket leg)."""
        final = ("filled", "canceled", "expired", "rejected", "replaced")
        return [o for o in self.emu.orders() if o["status"] not in final and o["status"] != "held"]

    def trading_day(self, day: pd.Timestamp, quotes: dict[str, float] | None = None, wait: float = 5.0,
                    state_dir: Path | None = None) -> None:
        """Open the market on ``day`` (orders sent overnight fill at the quotes), then close it.

        The close waits until the market orders have filled and, with ``state_dir``, until the session
        has sent the buys that waited for its sells (a loaded machine must not change the story).
        """
        for symbol, price in (quotes or {}).items():
            self.emu.set_quote(symbol, price - 0.01, price + 0.01)
        self.at(day, "10:00")
        deadline = time.monotonic() + wait

        def busy() -> bool:
            # market orders fill at the open (and buys go out once sells have filled); resting limits do not
            working = [o for o in self.working() if o["type"] == "market"]
            return bool(working) or (state_dir is not None and _planned_waiting(state_dir) > 0)

        while busy() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)  # let the session's stream see the last fills before the close
        self.at(day, "17:00")

    def positions(self) -> dict[str, float]:
        return {p["symbol"]: float(p["qty"]) for p in self.emu.state.list_positions()}

    def ours(self) -> list[dict[str, Any]]:
        """Orders carrying qf's client order id prefix."""
        return [o for o in self.emu.orders() if str(o["client_order_id"]).startswith("qf-")]

    def store_bars(self, symbols: list[str], prices: Callable[[pd.Timestamp], float],
                   start: str = "2024-01-02", end: str = "2024-03-29") -> None:
        """Replace the synthetic bars of ``symbols`` by flat OHLC bars at ``prices(day)``."""
        for s in symbols:
            rows = [{"t": ny(d, "00:00"), "o": prices(d), "h": prices(d), "l": prices(d), "c": prices(d), "v": 1000,
                     "n": 10, "vw": prices(d)} for d in pd.bdate_range(start, end)]
            self.emu.set_bars(s, rows)

    @contextlib.contextmanager
    def driver(self, state_dir: Path, first: pd.Timestamp = FIRST_DAY, skip_open: tuple[str, ...] = (),
               quotes: Callable[[pd.Timestamp], dict[str, float]] | None = None,
               days: int | None = None) -> Iterator[MarketDriver]:
        """Run trading days after each bar the session processes (at most ``days`` of them)."""
        d = MarketDriver(self, state_dir, first, skip_open, quotes, days)
        d.start()
        try:
            yield d
        finally:
            d.stop.set()
            d.join(10)


class MarketDriver(threading.Thread):
    """Once the session has processed the bar of ``day``, run the next trading day and close it."""

    def __init__(self, world: AlpacaWorld, state_dir: Path, first: pd.Timestamp, skip_open: tuple[str, ...],
                 quotes: Callable[[pd.Timestamp], dict[str, float]] | None, days: int | None) -> None:
        super().__init__(daemon=True, name="market-driver")
        self.world = world
        self.state_dir = state_dir
        self.day = first
        self.skip_open = {pd.Timestamp(d) for d in skip_open}
        self.quotes = quotes
        self.stop = threading.Event()
        self.limit = days
        self.days: list[pd.Timestamp] = []

    def run(self) -> None:
        while not self.stop.is_set():
            if self.limit is not None and len(self.days) >= self.limit:
                return
            last = _read_last_bar(self.state_dir)
            if last is not None and last >= self.day:
                nxt = self.day + pd.offsets.BDay(1)
                if nxt in self.skip_open:
                    self.world.at(nxt, "17:00")  # the market never opens: overnight orders keep waiting
                else:
                    self.world.trading_day(nxt, self.quotes(nxt) if self.quotes else None,
                                           state_dir=self.state_dir)
                self.days.append(nxt)
                self.day = nxt
            self.stop.wait(0.02)


@pytest.fixture
def fast_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Client-side rate limits far above Alpaca's 200/min: a test runs days of trading in seconds."""
    import qf_plugins.alpaca.client as client
    import qf_plugins.alpaca.session as session

    def fast(cfg: Any) -> RateLimiter:
        return RateLimiter(100_000, 60.0, 1_000)

    monkeypatch.setattr(client, "build_rate_limiter", fast)
    monkeypatch.setattr(session, "build_rate_limiter", fast)


@pytest.fixture
def alpaca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_limits: None) -> Iterator[AlpacaWorld]:
    """The emulator on a manual clock at 17:00 New York on :data:`FIRST_DAY`, keys and URLs in the env."""
    clock = ManualClock(ny(FIRST_DAY, "17:00"))
    emu = AlpacaEmulator(api_key=KEY, secret_key=SECRET, clock=clock, market_open=None, seed=11,
                         partial_fill_prob=0.3, rate_limit=100_000, data_rate_limit=100_000)
    emu.start()
    for var, value in (("ALPACA_API_KEY", KEY), ("ALPACA_SECRET_KEY", SECRET), ("ALPACA_TRADING_URL", emu.rest_url),
                       ("ALPACA_DATA_URL", emu.data_url), ("ALPACA_STREAM_URL", emu.ws_url)):
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("ALPACA_PAPER", raising=False)
    try:
        yield AlpacaWorld(emu, clock, tmp_path)
    finally:
        emu.stop()


@pytest.fixture
def alpaca_experiment(tmp_path: Path) -> Callable[..., Path]:
    """A small daily experiment on Alpaca data: three symbols, equal weights, fill at the next open."""

    def make(name: str = "paper_alpaca", **changes: Any) -> Path:
        doc: dict[str, Any] = {
            "data": {"type": "alpaca", "params": {"symbols": ["AAPL", "MSFT", "SPY"], "start": "2024-01-02",
                                                  "poll_interval": 0.1, "bar_delay": 0}},
            "benchmark": {"symbol": "SPY"},
            "signal": {"type": "constant"},
            "sizer": {"type": "equal"},
            "risk": [{"type": "max_weight", "params": {"limit": 0.3}}],
            "rebalance": {"freq": "daily"},
            "execution": {"engine": "backtrader", "fill": "next_open", "fees": 0.0, "slippage": 0.0005},
            "broker": {"type": "alpaca", "params": {"reconcile_interval": 30}},
        }
        doc.update(changes)
        return write_experiment(tmp_path, name, doc)

    return make


@pytest.fixture
def keys() -> tuple[str, str]:
    return KEY, SECRET
