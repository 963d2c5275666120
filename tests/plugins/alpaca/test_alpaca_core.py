"""Building blocks of the Alpaca plugin: ids, rate limiter, journal, client hardening, kill switch,
and the promise that credentials never reach logs or the journal."""

from __future__ import annotations

import importlib.metadata
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from alpaca.trading.client import TradingClient
from alpaca.trading.stream import TradingStream

from qf.testing.waiting import wait_for
from qf_plugins.alpaca.client import (
    REST_PRIVATE_ATTRS,
    STREAM_PRIVATE_ATTRS,
    AlpacaConfig,
    QfTradingStream,
    SecretFilter,
    TimeoutHTTPAdapter,
    build_data_client,
    build_trading_client,
    check_sdk_internals,
    redact,
)
from qf_plugins.alpaca.emulator import AlpacaEmulator
from qf_plugins.alpaca.ids import (
    MAX_CLIENT_ORDER_ID,
    ClientOrderId,
    make_client_order_id,
    new_run_id,
    parse_client_order_id,
)
from qf_plugins.alpaca.journal import Journal
from qf_plugins.alpaca.ratelimit import RateLimiter, reset_delay
from qf_plugins.alpaca.session import (
    AlpacaAuthError,
    AlpacaSession,
    BrokerEvent,
    EventKind,
    OrderIntent,
    SubmitStatus,
)

KEY = "PKCORE00000000000001"
SECRET = "core-secret-must-never-leak-0123456789abcd"


# ---------------------------------------------------------------------------------- ids


def test_client_order_ids_are_deterministic_parseable_and_short() -> None:
    run = new_run_id()
    assert len(run) == 12 and run.isalnum() and run != new_run_id()
    cid = make_client_order_id("qf", run, 17, 2)
    assert cid == f"qf-{run}-17-2" == make_client_order_id("qf", run, "17", 2)
    assert parse_client_order_id(cid) == ClientOrderId("qf", run, "17", 2)
    longest = make_client_order_id("a" * 12, "b" * 20, "c" * 9, 99)
    assert len(longest) <= MAX_CLIENT_ORDER_ID
    with pytest.raises(ValueError, match="longer than 48"):
        make_client_order_id("a" * 12, "b" * 20, "c" * 12, 99)
    for bad in (("q-f", run, 1, 1), ("qf", "r-un1", 1, 1), ("qf", run, "-ab", 1), ("qf", run, "ab-", 1),
                ("qf", run, "a b", 1), ("qf", run, "a" * 31, 1), ("qf", run, 1, 0)):
        with pytest.raises(ValueError):
            make_client_order_id(*bad)
    # the kill switch's and a flatten's refs hold inner dashes and still parse back
    kill = make_client_order_id("qf", run, "kill-20240105-BRK_B", 1)
    assert parse_client_order_id(kill) == ClientOrderId("qf", run, "kill-20240105-BRK_B", 1)
    assert parse_client_order_id("3f1c0d4e-uuid-from-a-bracket-leg") is None
    assert parse_client_order_id(None) is None


# ---------------------------------------------------------------------------------- rate limiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1e-6)


def test_token_bucket_never_exceeds_200_in_any_minute() -> None:
    clock = FakeTime()
    limiter = RateLimiter(monotonic=clock.monotonic, wall=clock.monotonic, sleep=clock.sleep)
    stamps = []
    for _ in range(1000):
        limiter.acquire()
        stamps.append(clock.now)
    lo = 0
    worst = 0
    for hi, t in enumerate(stamps):
        while t - stamps[lo] >= 60.0:
            lo += 1
        worst = max(worst, hi - lo + 1)
    assert worst <= 200
    assert stamps[-1] - stamps[0] == pytest.approx((1000 - 10) / (190 / 60), rel=0.01)  # ~3.2/s sustained


def test_token_bucket_honours_server_reset_and_remaining() -> None:
    clock = FakeTime()
    limiter = RateLimiter(limit=200, period=60, burst=10, margin=0.0, monotonic=clock.monotonic,
                          wall=clock.monotonic, sleep=clock.sleep)
    limiter.observe({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(int(clock.now) + 7)}, 200)
    start = clock.now
    limiter.acquire()
    assert clock.now - start == pytest.approx(7, abs=0.01)
    limiter.observe({"x-ratelimit-remaining": "2"}, 200)
    limiter.acquire()
    limiter.acquire()
    before = clock.now
    limiter.acquire()  # Remaining capped the bucket at 2 tokens
    assert clock.now > before
    limiter.observe({}, 429)  # no Reset header: default back-off
    assert limiter.blocked_for() == pytest.approx(1.0, abs=0.01)
    with pytest.raises(TimeoutError):
        _drain_and_timeout(clock)
    assert reset_delay({"X-Ratelimit-Reset": "1000000010"}, now=1_000_000_000) == 10
    assert reset_delay({"X-Ratelimit-Reset": "2.5"}) == 2.5  # a delta, not an epoch
    assert reset_delay({"X-Ratelimit-Reset": "soon"}, default=3) == 3


def _drain_and_timeout(clock: FakeTime) -> None:
    limiter = RateLimiter(limit=2, period=60, burst=1, monotonic=clock.monotonic, sleep=clock.sleep)
    limiter.acquire()
    limiter.acquire(timeout=0)  # the second token is 60 s away


# ---------------------------------------------------------------------------------- journal


def test_journal_persists_run_id_intents_fills_and_halt(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    run = journal.run_id
    assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    journal.record_intent("qf-x-1-1", ref="1", attempt=1, symbol="AAPL", request={"qty": 10})
    assert journal.next_attempt("1") == 2 and journal.next_attempt("2") == 1
    with pytest.raises(sqlite3.IntegrityError):
        journal.record_intent("qf-x-1-1", ref="1", attempt=1, symbol="AAPL", request={})
    journal.update_intent("qf-x-1-1", state="submitted", order_id="oid", status="new")
    assert journal.apply_fill("qf-x-1-1", "oid", "e1", "4", "100").qty == 4
    assert journal.apply_fill("qf-x-1-1", "oid", "e1", "4", "100") is None  # replayed execution id
    late = journal.apply_fill("qf-x-1-1", "oid", "e3", "10", "100.9")  # e2 not seen yet
    assert (late.qty, late.price) == (6, pytest.approx(101.5))
    assert journal.apply_fill("qf-x-1-1", "oid", "e2", "7", "100.428571429") is None  # stale, out of order
    assert journal.apply_fill("qf-x-1-1", "oid", None, "10", "100.9") is None  # REST snapshot, same cum
    journal.record_event(source="stream", payload={"event": "fill"}, client_order_id="qf-x-1-1")
    journal.set_halted("drawdown")
    with pytest.raises(ValueError):
        journal.update_intent("qf-x-1-1", filled_qty=1)
    journal.close()

    again = Journal(path)
    assert again.run_id == run
    assert again.halted() == (True, "drawdown")
    rec = again.intent("qf-x-1-1")
    assert (rec.state, rec.order_id, rec.filled_qty, rec.filled_avg_price) == ("submitted", "oid", 10, 100.9)
    assert [f.qty for f in again.fills()] == [4, 6]
    assert len(again.events("qf-x-1-1")) == 1
    again.clear_halted()
    assert again.halted()[0] is False
    again.close()
    with pytest.raises(ValueError, match="belongs to run"):
        Journal(path, run_id="someotherrun")


# ---------------------------------------------------------------------------------- client


def test_sdk_version_and_private_attributes_are_pinned() -> None:
    assert importlib.metadata.version("alpaca-py") == "0.44.0"
    client = TradingClient(KEY, SECRET)
    check_sdk_internals(client, REST_PRIVATE_ATTRS)
    assert (client._retry, client._retry_wait, client._retry_codes) == (3, 3, [429, 504])
    check_sdk_internals(TradingStream(KEY, SECRET), STREAM_PRIVATE_ATTRS)
    with pytest.raises(RuntimeError, match="pinned SDK"):
        check_sdk_internals(object(), REST_PRIVATE_ATTRS)


def test_config_from_env_redacts_and_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"ALPACA_API_KEY": KEY, "ALPACA_SECRET_KEY": SECRET, "ALPACA_TRADING_URL": "http://127.0.0.1:1",
           "ALPACA_PAPER": "false"}
    cfg = AlpacaConfig.from_env(env, timeout=3.0)
    assert (cfg.trading_url, cfg.paper, cfg.timeout) == ("http://127.0.0.1:1", False, 3.0)
    for text in (repr(cfg), str(cfg), f"{cfg}"):
        assert KEY not in text and SECRET not in text
    with pytest.raises(ValueError, match="ALPACA_API_KEY") as missing:
        AlpacaConfig.from_env({"ALPACA_API_KEY": KEY})
    assert KEY not in str(missing.value)
    with pytest.raises(ValueError, match="/v2"):
        AlpacaConfig(KEY, SECRET, trading_url="http://127.0.0.1:1/v2")
    monkeypatch.setenv("ALPACA_API_KEY", KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET)
    assert AlpacaConfig.from_env().api_key == KEY


def test_clients_get_timeouts_and_no_blind_post_retry() -> None:
    with AlpacaEmulator(api_key=KEY, secret_key=SECRET, fill_mode="scripted") as emu:
        cfg = AlpacaConfig(KEY, SECRET, trading_url=emu.rest_url, data_url=emu.rest_url, timeout=0.3,
                           data_retry_wait=0.01)
        trading = build_trading_client(cfg)
        adapter = trading._session.get_adapter(emu.rest_url)
        assert isinstance(adapter, TimeoutHTTPAdapter) and adapter.timeout == 0.3
        assert trading._retry == 0 and trading._use_raw_data
        data = build_data_client(cfg)
        assert (data._retry, data._retry_wait) == (3, 0.01)
        emu.faults.hang("GET", "/v2/account", 2.0, apply=False)
        started = time.monotonic()
        with pytest.raises(requests.ReadTimeout):
            trading.get_account()
        assert time.monotonic() - started < 1.0
        emu.faults.status("POST", "/v2/orders", 504, apply=True)
        with pytest.raises(Exception, match="504"):
            trading.submit_order(OrderIntent(ref=1, symbol="AAPL", side="buy", qty=1).to_request("qf-abcd-1-1"))
        assert len([r for r in emu.requests if r.method == "POST"]) == 1  # not retried by the SDK


def test_qf_trading_stream_callbacks_and_prompt_stop() -> None:
    import threading

    with AlpacaEmulator(api_key=KEY, secret_key=SECRET) as emu:
        connects: list[int] = []
        failures: list[int] = []

        def run(stream: QfTradingStream) -> threading.Thread:
            async def handler(message: Any) -> None:
                pass

            stream.subscribe_trade_updates(handler)
            thread = threading.Thread(target=stream.run, daemon=True)
            thread.start()
            return thread

        stream = QfTradingStream(KEY, SECRET, url_override=emu.ws_url, on_connect=lambda: connects.append(1),
                                 reconnect_min_backoff=0.05)
        assert SECRET not in repr(stream) and stream._raw_data
        thread = run(stream)
        wait_for(lambda: connects)
        started = time.monotonic()
        stream.stop()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - started < 2.0  # the SDK alone needs up to 5 s
        emu.stream.auth_unauthorized = True
        refused = QfTradingStream(KEY, SECRET, url_override=emu.ws_url, on_auth_failure=lambda: failures.append(1),
                                  reconnect_min_backoff=0.05)
        thread = run(refused)
        wait_for(lambda: failures)
        wait_for(lambda: refused._loop is not None)
        refused.stop()
        thread.join(5)
        assert not thread.is_alive() and refused.auth_failures >= 1 and refused.connections == 0


def test_order_intent_requests() -> None:
    bracket = OrderIntent(ref=1, symbol="AAPL", side="buy", qty=2, type="limit", limit_price=10, take_profit=12,
                          stop_loss=9, stop_loss_limit=8.9).to_request("cid").to_request_fields()
    assert bracket["order_class"] == "bracket" and bracket["stop_loss"] == {"stop_price": 9.0, "limit_price": 8.9}
    stop = OrderIntent(ref=1, symbol="AAPL", side="sell", qty=1, type="stop_limit", stop_price=9, limit_price=8.5,
                       time_in_force="gtc", extended_hours=False).to_request("cid").to_request_fields()
    assert (stop["type"], stop["time_in_force"], stop["client_order_id"]) == ("stop_limit", "gtc", "cid")
    with pytest.raises(ValueError):
        OrderIntent(ref=1, symbol="AAPL", side="buy", qty=1, take_profit=12).to_request("cid")
    with pytest.raises(ValueError):
        OrderIntent(ref=1, symbol="AAPL", side="buy", qty=1, notional=5).to_request("cid")


def test_redaction_helpers() -> None:
    assert redact(f"x {SECRET} y", [SECRET]) == "x *** y"
    assert redact('{"key_id": "PKABC", "secret_key": "...tail"}') == '{"key_id": "***", "secret_key": "***"}'
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "auth %s", (SECRET,), None)
    SecretFilter([SECRET]).filter(record)
    assert record.getMessage() == "auth ***"


# ---------------------------------------------------------------------------------- session


@pytest.fixture
def emu() -> Iterator[AlpacaEmulator]:
    with AlpacaEmulator(api_key=KEY, secret_key=SECRET, partial_fill_prob=0.0, seed=1) as emulator:
        emulator.set_quote("AAPL", 100, 100.02)
        emulator.set_quote("MSFT", 50, 50.02)
        yield emulator


def held(emu: AlpacaEmulator) -> dict[str, float]:
    """The emulated account's positions, read directly (polling over REST would spend the rate limit)."""
    return {p["symbol"]: float(p["qty"]) for p in emu.state.list_positions()}


def session_for(emu: AlpacaEmulator, journal: Journal, **kw: Any) -> AlpacaSession:
    cfg = AlpacaConfig(KEY, SECRET, trading_url=emu.rest_url, stream_url=emu.ws_url, timeout=1.0)
    return AlpacaSession.from_config(cfg, journal, reconnect_min_backoff=0.05, lookup_backoff=0.01, **kw)


def collect(session: AlpacaSession, predicate: Callable[[list[BrokerEvent]], bool],
            seen: list[BrokerEvent], timeout: float = 3.0) -> list[BrokerEvent]:
    deadline = time.monotonic() + timeout
    while not predicate(seen):
        if time.monotonic() > deadline:
            raise AssertionError(f"events: {[(e.kind.value, e.client_order_id) for e in seen]}")
        seen += session.poll(0.02)
    return seen


def test_kill_switch_cancels_flattens_and_stays_halted(emu: AlpacaEmulator, tmp_path: Path) -> None:
    path = tmp_path / "kill.sqlite"
    session = session_for(emu, Journal(path))
    session.start()
    seen: list[BrokerEvent] = []
    try:
        for ref, symbol, qty in ((1, "AAPL", 10), (2, "MSFT", 5)):
            assert session.submit(OrderIntent(ref=ref, symbol=symbol, side="buy", qty=qty)).status == "accepted"
        resting = session.submit(OrderIntent(ref=3, symbol="AAPL", side="buy", qty=1, type="limit", limit_price=1))
        collect(session, lambda ev: len([e for e in ev if e.kind == EventKind.COMPLETED]) == 2, seen)
        report = session.kill_switch("max drawdown")
        assert report.errors == [] and report.canceled == 1
        assert sorted(r["symbol"] for r in report.close_results) == ["AAPL", "MSFT"]
        wait_for(lambda: session.fetch_positions() == {})
        collect(session, lambda ev: any(e.kind == EventKind.CANCELED and e.client_order_id ==
                                        resting.client_order_id for e in ev), seen)
        collect(session, lambda ev: len([e for e in ev if e.kind == EventKind.COMPLETED]) == 4, seen)
        assert any(e.kind == EventKind.HALTED and e.message == "max drawdown" for e in seen)
        blocked = session.submit(OrderIntent(ref=4, symbol="AAPL", side="buy", qty=1))
        assert blocked.status == SubmitStatus.REJECTED and "halted" in (blocked.error or "")
    finally:
        session.stop()
        session.journal.close()
    restarted = session_for(emu, Journal(path))
    restarted.start(background=False)
    try:
        assert restarted.halted
        assert restarted.submit(OrderIntent(ref=5, symbol="AAPL", side="buy", qty=1)).status == "rejected"
        restarted.resume()
        assert restarted.submit(OrderIntent(ref=5, symbol="AAPL", side="buy", qty=1)).status == "accepted"
    finally:
        restarted.stop()
        restarted.journal.close()


def test_kill_switch_and_flatten_orders_carry_our_ids_and_are_journaled(emu: AlpacaEmulator, tmp_path: Path) -> None:
    # Issue 12: DELETE /v2/positions gave the closing orders the broker's ids, invisible to the journal
    # a fast client-side limit: the test sends in seconds what the 200/min budget spreads over a minute
    session = session_for(emu, Journal(tmp_path / "j.sqlite"), stream=False, limiter=RateLimiter(100_000, 60.0, 1_000))
    session.start(background=False)
    run = session.run_id
    decision = datetime(2024, 1, 5, 21, 0, tzinfo=UTC)

    def buy_and_fill(ref: str) -> None:
        for symbol, qty in (("AAPL", 10), ("BRK.A", 1)):
            result = session.submit(OrderIntent(ref=f"{ref}_{symbol[:3]}", symbol=symbol, side="buy", qty=qty))
            assert result.status == SubmitStatus.ACCEPTED
        assert wait_for(lambda: held(emu) == {"AAPL": 10, "BRK.A": 1})

    try:
        emu.set_quote("BRK.A", 600_00, 600_01)
        emu.state.set_cash(1_000_000)
        buy_and_fill("20240104")
        report = session.kill_switch("max drawdown", decision)
        assert report.errors == []
        kill = sorted(r["client_order_id"] for r in report.close_results)
        assert kill == [f"qf-{run}-kill-20240105-AAPL-1", f"qf-{run}-kill-20240105-BRK_A-1"]
        assert parse_client_order_id(kill[0]) == ClientOrderId("qf", run, "kill-20240105-AAPL", 1)
        assert wait_for(lambda: held(emu) == {})
        session.reconcile()
        for cid in kill:
            rec = session.order_state(cid)
            assert rec is not None and (rec.state, rec.request["side"]) == ("done", "sell") and rec.filled_qty > 0
            assert session.journal.fills(cid)

        session.resume()
        buy_and_fill("20240108")
        for attempt in (1, 2):  # a second flatten the same day is a new attempt, not a reused id
            flat = session.close_everything("flatten", decision)
            assert sorted(r["client_order_id"] for r in flat.close_results) == \
                [f"qf-{run}-flatten-20240105-AAPL-{attempt}", f"qf-{run}-flatten-20240105-BRK_A-{attempt}"]
            assert wait_for(lambda: held(emu) == {})
            if attempt == 1:
                buy_and_fill("20240109")
        # the journal accounts for every order qf ever sent on this account
        journaled = {r.client_order_id for r in session.journal.intents()}
        assert {o["client_order_id"] for o in emu.orders()} == journaled
        assert len(emu.orders()) == 6 + 6
    finally:
        session.stop()
        session.journal.close()


def test_invalid_intent_is_rejected_without_a_request(emu: AlpacaEmulator, tmp_path: Path) -> None:
    session = session_for(emu, Journal(tmp_path / "j.sqlite"), stream=False)
    session.start(background=False)
    try:
        before = len(emu.requests)
        result = session.submit(OrderIntent(ref=1, symbol="AAPL", side="buy", qty=None))
        assert result.status == SubmitStatus.REJECTED and "invalid order" in (result.error or "")
        assert len(emu.requests) == before
        assert [e.kind for e in session.poll()] == [EventKind.REJECTED]
        again = session.submit(OrderIntent(ref=1, symbol="AAPL", side="buy", qty=1))
        assert again.client_order_id.endswith("-1-2")  # a new attempt never reuses an id
    finally:
        session.stop()
        session.journal.close()


def test_credentials_never_reach_logs_or_journal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, including websockets frame dumps and urllib3
    with AlpacaEmulator(api_key=KEY, secret_key=SECRET, partial_fill_prob=0.0) as emu:
        emu.set_quote("AAPL", 100, 100.02)
        journal_dir = tmp_path / "journal"
        session = session_for(emu, Journal(journal_dir / "run.sqlite"), reconcile_interval=0.2)
        session.start()
        try:
            wait_for(lambda: emu.stream.connected)
            emu.faults.status("POST", "/v2/orders", 504, apply=True)
            assert session.submit(OrderIntent(ref=1, symbol="AAPL", side="buy", qty=2)).adopted
            emu.faults.rate_limited("POST", "/v2/orders", reset_in=0.05)
            session.submit(OrderIntent(ref=2, symbol="AAPL", side="buy", qty=1))
            emu.stream.drop()
            wait_for(lambda: session.stream_connections >= 2)
            session.kill_switch("test")
            time.sleep(0.3)
            session.poll()
            logging.getLogger("qf_plugins.alpaca.session").info("session=%r config=%s", session,
                                                                         AlpacaConfig(KEY, SECRET))
        finally:
            session.stop()
            session.journal.close()
        bad = session_for(emu, Journal(tmp_path / "bad.sqlite"))
        bad.trading._session.headers.clear()
        bad.trading._secret_key = "wrong-" + SECRET[::-1]
        with pytest.raises(AlpacaAuthError):
            bad.start()
        bad.journal.close()
    text = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "authenticate" in text  # the websockets frame log was captured ...
    assert KEY not in text and SECRET not in text and SECRET[-12:] not in text  # ... and scrubbed
    for file in journal_dir.iterdir():
        blob = file.read_bytes()
        assert KEY.encode() not in blob and SECRET.encode() not in blob, file.name
    assert any(journal_dir.glob("*.sqlite"))
