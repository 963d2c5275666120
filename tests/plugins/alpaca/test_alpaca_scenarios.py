"""The scenarios the Alpaca session must survive, against the loopback emulator (docs/alpaca.md, *Scenarios
the tests hold the session to*).

The session drives the real, unmodified alpaca-py ``TradingClient`` and ``TradingStream``; the
emulator scripts the failures. Scenario 13 (bars) lives in test_alpaca_data.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError

from qf.testing.waiting import wait_for
from qf_plugins.alpaca.client import AlpacaConfig, build_trading_client
from qf_plugins.alpaca.emulator import AlpacaEmulator, ManualClock
from qf_plugins.alpaca.ids import make_client_order_id
from qf_plugins.alpaca.journal import Journal
from qf_plugins.alpaca.session import (
    AlpacaAuthError,
    AlpacaSession,
    BrokerEvent,
    EventKind,
    OrderIntent,
    SubmitStatus,
    api_error_info,
)

KEY = "PKSCENARIO0000000001"
SECRET = "scenario-secret-do-not-log-0123456789abcdef"


class Events:
    """Accumulates a session's events across polls."""

    def __init__(self, session: AlpacaSession) -> None:
        self.session = session
        self.items: list[BrokerEvent] = []

    def until(self, predicate: Callable[[list[BrokerEvent]], bool], timeout: float = 3.0) -> list[BrokerEvent]:
        deadline = time.monotonic() + timeout
        while True:
            self.items += self.session.poll(0.02)
            if predicate(self.items):
                return self.items
            if time.monotonic() > deadline:
                seen = [(e.kind.value, e.client_order_id) for e in self.items]
                raise AssertionError(f"events never matched; got {seen}")

    def drain(self, seconds: float = 0.2) -> list[BrokerEvent]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.items += self.session.poll(0.02)
        return self.items

    def of(self, kind: EventKind, cid: str | None = None) -> list[BrokerEvent]:
        return [e for e in self.items if e.kind == kind and (cid is None or e.client_order_id == cid)]

    def has(self, kind: EventKind, cid: str | None = None) -> Callable[[list[BrokerEvent]], bool]:
        return lambda items: any(e.kind == kind and (cid is None or e.client_order_id == cid) for e in items)


@pytest.fixture
def emu() -> Iterator[AlpacaEmulator]:
    emulator = AlpacaEmulator(api_key=KEY, secret_key=SECRET, fill_mode="scripted", seed=5)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def make_session(emu: AlpacaEmulator, tmp_path: Path) -> Iterator[Callable[..., AlpacaSession]]:
    sessions: list[AlpacaSession] = []

    def make(*, emulator: AlpacaEmulator | None = None, journal_path: Path | None = None, stream: bool = True,
             start: bool = True, background: bool = True, secret: str = SECRET, timeout: float = 1.0,
             cfg_overrides: dict[str, Any] | None = None, **options: Any) -> AlpacaSession:
        e = emulator or emu
        cfg = AlpacaConfig(KEY, secret, trading_url=e.rest_url, stream_url=e.ws_url, timeout=timeout,
                           **(cfg_overrides or {}))
        journal = Journal(journal_path or tmp_path / "journal.sqlite")
        opts: dict[str, Any] = {"reconnect_min_backoff": 0.05, "lookup_backoff": 0.01,
                                "reconcile_interval": 60.0, "stream_silence_timeout": 60.0}
        opts.update(options)
        session = AlpacaSession.from_config(cfg, journal, stream=stream, **opts)
        sessions.append(session)
        if start:
            session.start(background=background)
            if stream and not e.stream.auth_unauthorized:
                wait_for(lambda: e.stream.connected)
        return session

    yield make
    for session in sessions:
        session.stop()
        session.journal.close()


def posts(emu: AlpacaEmulator) -> list[Any]:
    return [r for r in emu.requests if r.method == "POST" and r.path == "/v2/orders"]


def buy(ref: int | str, qty: float | None = 10, **kw: Any) -> OrderIntent:
    return OrderIntent(ref=ref, symbol=kw.pop("symbol", "AAPL"), side="buy", qty=qty, **kw)


def filled_value(events: list[BrokerEvent]) -> tuple[float, float]:
    fills = [e for e in events if e.kind == EventKind.FILL]
    qty = sum(f.fill_qty for f in fills)
    value = sum(f.fill_qty * (f.fill_price or 0.0) for f in fills)
    return qty, value


# ---------------------------------------------------------------------------------- 1


def test_s01_market_order_round_trip(emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession]) -> None:
    emu.state.fill_mode = "random"
    emu.state.partial_fill_prob = 0.5  # seeded: exercises partial fills on the way
    emu.set_quote("AAPL", 100, 100.02)
    session = make_session()
    cash0 = session.fetch_account().cash
    result = session.submit(buy(1))
    assert result.status == SubmitStatus.ACCEPTED and result.posts == 1
    events = Events(session).until(Events(session).has(EventKind.COMPLETED, result.client_order_id))
    mine = [e for e in events if e.client_order_id == result.client_order_id]
    kinds = [e.kind for e in mine]
    assert kinds[:2] == [EventKind.SUBMITTED, EventKind.ACCEPTED] and kinds[-1] == EventKind.COMPLETED
    assert kinds.count(EventKind.COMPLETED) == 1
    qty, value = filled_value(mine)
    assert qty == pytest.approx(10)
    assert mine[-1].filled_qty == pytest.approx(10) and mine[-1].filled_avg_price == pytest.approx(value / qty)
    positions = session.fetch_positions()
    assert positions["AAPL"].qty == pytest.approx(qty)
    assert positions["AAPL"].avg_entry_price == pytest.approx(value / qty)
    assert session.fetch_account().cash == pytest.approx(cash0 - value)
    assert session.order_state(result.client_order_id).state == "done"


# ---------------------------------------------------------------------------------- 2


@pytest.mark.parametrize("fault", ["timeout", "504", "504-sdk-retry", "drop"])
def test_s02_duplicate_post_lands_response_lost_adopted_once(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession], fault: str) -> None:
    session = make_session(stream=False, timeout=0.3)
    if fault == "timeout":
        emu.faults.hang("POST", "/v2/orders", 1.5, apply=True)
    elif fault == "drop":
        emu.faults.drop("POST", "/v2/orders", apply=True)
    else:
        emu.faults.status("POST", "/v2/orders", 504, apply=True)
    if fault == "504-sdk-retry":
        # The stock SDK policy: retry 504, so the second POST meets "client_order_id must be unique".
        session.trading._retry, session.trading._retry_wait, session.trading._retry_codes = 1, 0.01, [429, 504]
    result = session.submit(buy(1))
    assert result.status == SubmitStatus.ACCEPTED and result.adopted
    assert [o["client_order_id"] for o in emu.orders()] == [result.client_order_id]
    assert len(posts(emu)) == (2 if fault == "504-sdk-retry" else 1)
    assert {p.body["client_order_id"] for p in posts(emu)} == {result.client_order_id}
    assert session.order_state(result.client_order_id).order_id == emu.orders()[0]["id"]


# ---------------------------------------------------------------------------------- 3


def test_s03_rejected_at_submit_and_after_acceptance(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession]) -> None:
    emu.set_quote("AAPL", 100, 100.02)
    session = make_session()
    before = (session.fetch_account().cash, session.fetch_positions())
    events = Events(session)
    too_big = session.submit(buy(1, qty=5000))  # $500k against $100k buying power -> 403
    assert too_big.status == SubmitStatus.REJECTED and "403" in (too_big.error or "")
    assert (too_big.http_status, too_big.error_code) == (403, 40310000)
    events.until(events.has(EventKind.REJECTED, too_big.client_order_id))
    rejected = events.of(EventKind.REJECTED, too_big.client_order_id)[0]
    assert rejected.error_code == 40310000 and "buying power" in (rejected.message or "")
    assert session.order_state(too_big.client_order_id).state == "rejected"

    later = session.submit(buy(2))
    assert later.status == SubmitStatus.ACCEPTED
    emu.reject(later.order_id, "emulated post-trade reject")
    events.until(events.has(EventKind.REJECTED, later.client_order_id))
    assert not events.of(EventKind.FILL)
    assert (session.fetch_account().cash, session.fetch_positions()) == before
    assert len(posts(emu)) == 2


# ---------------------------------------------------------------------------------- 4


def test_s04_partial_fills_replayed_and_out_of_order(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession]) -> None:
    session = make_session()
    events = Events(session)
    result = session.submit(buy(1))
    events.until(lambda items: any(e.status == "new" for e in items))  # the stream is live
    emu.stream.hold()
    for qty, price in ((4, 100), (3, 101), (3, 102)):
        emu.fill(result.order_id, qty, price)
    # final fill first, then replays of every execution_id and the stale middle one
    emu.stream.release(order=[2, 0, 2, 1, 0, 1])
    events.until(events.has(EventKind.COMPLETED, result.client_order_id))
    events.drain(0.2)
    qty, value = filled_value(events.items)
    assert qty == pytest.approx(10) and value / qty == pytest.approx(100.9)
    assert len(events.of(EventKind.COMPLETED)) == 1
    assert events.of(EventKind.COMPLETED)[0].filled_avg_price == pytest.approx(100.9)
    assert sum(f.qty for f in session.journal.fills(result.client_order_id)) == pytest.approx(10)


def test_s04_partial_then_cancel_reports_executed_quantity(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession]) -> None:
    session = make_session()
    events = Events(session)
    result = session.submit(buy(1))
    emu.fill(result.order_id, 4, 100)
    emu.fill(result.order_id, 3, 101)
    events.until(lambda items: filled_value(items)[0] == pytest.approx(7))
    assert session.cancel(result.client_order_id).outcome == "requested"
    events.until(events.has(EventKind.CANCELED, result.client_order_id))
    canceled = events.of(EventKind.CANCELED, result.client_order_id)[0]
    assert canceled.filled_qty == pytest.approx(7)
    assert canceled.filled_avg_price == pytest.approx((400 + 303) / 7)
    assert canceled.remaining_qty == pytest.approx(3)
    assert not events.of(EventKind.COMPLETED)


# ---------------------------------------------------------------------------------- 5


def test_s05_cancel_races_a_fill_ends_completed(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession]) -> None:
    session = make_session()
    events = Events(session)
    result = session.submit(buy(1))
    events.until(lambda items: any(e.status == "new" for e in items))
    emu.stream.hold()  # the fill's stream event is still in flight when we cancel
    emu.fill(result.order_id, 10, 100)
    outcome = session.cancel(result.client_order_id)
    assert outcome.outcome == "not_cancelable"
    assert [r.status for r in emu.requests if r.method == "DELETE"] == [422]
    events.until(events.has(EventKind.COMPLETED, result.client_order_id))
    emu.stream.release()
    events.drain(0.3)
    assert filled_value(events.items)[0] == pytest.approx(10)
    assert len(events.of(EventKind.COMPLETED)) == 1 and not events.of(EventKind.CANCELED)


# ---------------------------------------------------------------------------------- 6


def test_s06_disconnect_mid_fill_reported_once_after_reconcile(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession]) -> None:
    session = make_session()
    events = Events(session)
    result = session.submit(buy(1))
    emu.fill(result.order_id, 4, 100)
    events.until(lambda items: filled_value(items)[0] == pytest.approx(4))
    assert emu.stream.drop()
    emu.fill(result.order_id, 6, 101)  # published into the gap: lost, no replay
    assert emu.stream.dropped
    events.until(events.has(EventKind.COMPLETED, result.client_order_id))
    events.drain(0.2)
    assert wait_for(lambda: session.stream_connections >= 2)
    assert filled_value(events.items) == (pytest.approx(10), pytest.approx(400 + 606))
    assert len(events.of(EventKind.FILL)) == 2 and len(events.of(EventKind.COMPLETED)) == 1


def test_s06_stream_unauthorized_falls_back_to_rest_timer(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession]) -> None:
    emu.stream.auth_unauthorized = True
    session = make_session(reconcile_interval=0.3)
    events = Events(session)
    events.until(lambda items: any(e.kind == EventKind.ERROR and "authentication" in (e.message or "")
                                   for e in items))
    assert session.stream_auth_failed and not emu.stream.connected
    result = session.submit(buy(1))
    emu.fill(result.order_id, 10, 100)
    events.until(events.has(EventKind.COMPLETED, result.client_order_id), timeout=4)
    assert filled_value(events.items)[0] == pytest.approx(10)


def test_s06_bad_keys_caught_by_rest_precheck(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession]) -> None:
    with pytest.raises(AlpacaAuthError) as err:
        make_session(secret="not-the-secret")
    assert emu.stream.stats["handshakes"] == 0  # never reached the WebSocket
    assert SECRET not in str(err.value) and "not-the-secret" not in str(err.value)


def test_s06_silent_stream_caught_by_health_timer(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession]) -> None:
    session = make_session(stream_silence_timeout=0.3)
    wait_for(lambda: session.reconciles >= 1)  # the on-connect pass is done; only the health timer is left
    events = Events(session)
    connections = session.stream_connections
    emu.stream.silent = True  # connected, authorized, and saying nothing
    result = session.submit(buy(1))
    emu.fill(result.order_id, 10, 100)
    events.until(events.has(EventKind.COMPLETED, result.client_order_id), timeout=4)
    # the periodic timer (60 s) cannot have reported it within 4 s: the health timer did, or, on a loaded
    # machine, the reconnect pass (the silent socket dropped and re-opened) or the lookup of the freshly
    # submitted order did -- whichever came first; the silent stream lost nothing, and reported it once
    assert len(events.of(EventKind.FILL)) == 1
    assert session.stream_connections >= connections


# ---------------------------------------------------------------------------------- 7


def test_s07_single_429_is_retried_transparently(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession]) -> None:
    session = make_session(stream=False)
    emu.faults.rate_limited("POST", "/v2/orders", reset_in=0.2)
    started = time.monotonic()
    result = session.submit(buy(1))
    assert result.status == SubmitStatus.ACCEPTED and not result.adopted
    assert time.monotonic() - started >= 0.15  # waited for the reset before retrying
    assert [p.status for p in posts(emu)] == [429, 200]
    assert len(emu.orders()) == 1


def test_s07_persistent_429_requeues_with_the_same_id(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession]) -> None:
    session = make_session(stream=False)
    emu.faults.rate_limited("POST", "/v2/orders", reset_in=0.3, times=2)
    events = Events(session)
    result = session.submit(buy(1))
    assert result.status == SubmitStatus.REQUEUED and result.retry_at is not None
    assert emu.orders() == [] and session.order_state(result.client_order_id).state == "requeued"
    # the background loop resends once the reset has passed
    events.until(events.has(EventKind.ACCEPTED, result.client_order_id), timeout=4)
    assert [o["client_order_id"] for o in emu.orders()] == [result.client_order_id]
    assert {p.body["client_order_id"] for p in posts(emu)} == {result.client_order_id}
    assert [p.status for p in posts(emu)] == [429, 429, 200]


def test_s07_burst_of_300_orders_stays_under_the_limit(tmp_path: Path) -> None:
    # 100 per 0.5 s stands in for 200 per 60 s so the burst takes seconds, not minutes.
    with AlpacaEmulator(api_key=KEY, secret_key=SECRET, fill_mode="scripted", rate_limit=100, rate_window=0.5,
                        reset_decimals=3) as emu:
        cfg = AlpacaConfig(KEY, SECRET, trading_url=emu.rest_url, timeout=2.0, rate_limit=100, rate_period=0.5,
                           rate_burst=10)
        session = AlpacaSession.from_config(cfg, Journal(tmp_path / "burst.sqlite"), stream=False)
        session.start(background=False)
        try:
            results = [session.submit(buy(i, qty=1)) for i in range(300)]
        finally:
            session.stop()
            session.journal.close()
        assert all(r.status == SubmitStatus.ACCEPTED for r in results)
        assert len(emu.orders()) == 300
        assert emu.rest.limiter.rejected == 0
        assert emu.rest.limiter.max_in_any_window() <= 100


# ---------------------------------------------------------------------------------- 8


def test_s08_server_hang_times_out(emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession]) -> None:
    session = make_session(stream=False, timeout=0.3)
    emu.faults.hang("GET", "/v2/account", 3.0, apply=False)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        session.fetch_account()
    assert time.monotonic() - started < 1.5
    emu.faults.hang("GET", "/v2/orders", 3.0, apply=False)
    report = session.reconcile()  # a hung reconcile is reported, not raised
    assert report.errors and "ReadTimeout" in report.errors[0]


def test_s08_non_json_502_no_crash_on_code_then_resubmit_same_id(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession]) -> None:
    session = make_session(stream=False, acceptance_window=0.5)
    emu.faults.non_json("GET", "/v2/clock", 502)
    with pytest.raises(APIError) as err:
        session.trading.get_clock()
    with pytest.raises(ValueError):
        _ = err.value.code  # what a naive handler would trip over
    assert api_error_info(err.value)[:2] == (502, None)
    emu.faults.non_json("POST", "/v2/orders", 502)  # not applied: the broker never saw it
    result = session.submit(buy(1))
    # a 404 right after the 502 proves nothing yet: the broker may still accept the POST late
    assert result.status == SubmitStatus.AMBIGUOUS and result.posts == 1
    cid = result.client_order_id
    assert cid is not None and session.order_state(cid).state == "ambiguous"
    # once the acceptance window has passed, the background pass re-sends it under the same id
    assert wait_for(lambda: session.order_state(cid).state == "submitted", timeout=10)
    lookups = [r for r in emu.requests if r.path == "/v2/orders:by_client_order_id"]
    assert [r.status for r in lookups[:3]] == [404, 404, 404] and all(r.status == 404 for r in lookups)
    sent = posts(emu)
    assert [p.body["client_order_id"] for p in sent] == [cid] * 2
    assert sent[1].ts - sent[0].ts >= 0.5
    assert len(emu.orders()) == 1


# ---------------------------------------------------------------------------------- 9


def test_s09_crash_between_post_and_journal_update(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession], tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite"
    # the crashed process ran a minute ago: the broker's acceptance window (30 s) has passed since its POSTs
    journal = Journal(path, clock=lambda: time.time() - 60)
    run = journal.run_id
    cfg = AlpacaConfig(KEY, SECRET, trading_url=emu.rest_url, timeout=1.0)
    client = build_trading_client(cfg)
    # The crashed process: intent journaled, POST sent, then it died before recording the answer.
    landed = make_client_order_id("qf", run, 1, 1)
    journal.record_intent(landed, ref="1", attempt=1, symbol="AAPL", request={"symbol": "AAPL", "qty": 10})
    order = client.submit_order(buy(1).to_request(landed))
    emu.fill(order["id"], 10, 100)
    never_sent = make_client_order_id("qf", run, 2, 1)
    journal.record_intent(never_sent, ref="2", attempt=1, symbol="AAPL", request={"symbol": "AAPL", "qty": 1})
    unjournaled = make_client_order_id("qf", run, 3, 1)  # crashed even before the journal write landed
    client.submit_order(buy(3, qty=1).to_request(unjournaled))
    foreign = make_client_order_id("qf", "otherrun0001", 9, 1)  # an older run's leftover, still open
    foreign_order = client.submit_order(buy(9, qty=1).to_request(foreign))
    journal.close()

    session = make_session(journal_path=path, orphan_policy="cancel")
    report = session.last_report
    assert report is not None
    assert landed in report.adopted and unjournaled in report.adopted
    assert report.abandoned == [never_sent] and report.orphans_canceled == [foreign]
    assert report.positions["AAPL"].qty == pytest.approx(10)
    broker = session.fetch_positions()["AAPL"]
    assert (report.positions["AAPL"].qty, report.positions["AAPL"].avg_entry_price) == (broker.qty, 100.0)
    assert report.account is not None and report.account.cash == pytest.approx(100_000 - 1000)
    state = session.order_state(landed)
    assert state.order_id == order["id"] and state.state == "done" and state.filled_qty == pytest.approx(10)
    assert emu.state.get_order(foreign_order["id"])["status"] == "canceled"
    events = Events(session).drain(0.2)
    assert [e.kind for e in events if e.client_order_id == landed][-1] == EventKind.COMPLETED
    assert any(e.kind == EventKind.CANCELED and e.client_order_id == never_sent for e in events)


# ---------------------------------------------------------------------------------- 10


def test_s10_market_closed_and_opg_cls_no_false_failures(tmp_path: Path,
                                                          make_session: Callable[..., AlpacaSession]) -> None:
    clock = ManualClock("2024-01-09T13:00:00Z")  # Tuesday 08:00 New York
    with AlpacaEmulator(api_key=KEY, secret_key=SECRET, clock=clock, market_open=None,
                        partial_fill_prob=0.0) as emu:
        emu.set_quote("AAPL", 100, 100.02)
        session = make_session(emulator=emu)
        events = Events(session)
        day = session.submit(buy(1, qty=1))
        opg = session.submit(buy(2, qty=1, time_in_force="opg"))
        assert (day.status, day.broker_status) == (SubmitStatus.ACCEPTED, "accepted")
        assert opg.broker_status == "accepted"
        events.drain(0.2)
        assert not events.of(EventKind.REJECTED) and not events.of(EventKind.ERROR)
        assert not events.of(EventKind.FILL)
        clock.set("2024-01-09T14:31:00Z")  # the open
        events.until(lambda items: len(events.of(EventKind.COMPLETED)) == 2)
        cls = session.submit(buy(3, qty=1, time_in_force="cls"))
        assert cls.status == SubmitStatus.ACCEPTED
        clock.set("2024-01-09T20:52:00Z")  # 15:52: inside the CLS cut-off, a genuine rejection
        late = session.submit(buy(4, qty=1, time_in_force="cls"))
        assert late.status == SubmitStatus.REJECTED
        clock.set("2024-01-09T21:00:01Z")  # the close
        events.until(events.has(EventKind.COMPLETED, cls.client_order_id))


# ---------------------------------------------------------------------------------- 11


def test_s11_fractional_notional_and_non_fractionable(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession]) -> None:
    emu.state.fill_mode = "random"
    emu.state.partial_fill_prob = 0.0
    emu.set_quote("AAPL", 100, 100.02)
    emu.set_quote("BRK.A", 600_00, 600_10)
    emu.state.set_cash(10_000_000)
    session = make_session()
    events = Events(session)
    frac = session.submit(buy(1, qty=1.5))
    notional = session.submit(buy(2, qty=None, notional=150.0))
    assert frac.status == notional.status == SubmitStatus.ACCEPTED
    events.until(lambda items: len(events.of(EventKind.COMPLETED)) == 2)
    fills = {e.client_order_id: e for e in events.of(EventKind.FILL)}
    assert isinstance(fills[frac.client_order_id].fill_qty, float)
    assert fills[frac.client_order_id].fill_qty == pytest.approx(1.5)
    assert fills[notional.client_order_id].fill_qty == pytest.approx(150 / 100.02, abs=1e-8)
    for intent in (buy(3, qty=0.5, symbol="BRK.A"), buy(4, qty=None, notional=100.0, symbol="BRK.A")):
        result = session.submit(intent)
        assert result.status == SubmitStatus.REJECTED and "fractionable" in (result.error or "")
    assert session.submit(buy(5, qty=1, symbol="BRK.A")).status == SubmitStatus.ACCEPTED
    assert session.fetch_positions()["AAPL"].qty == pytest.approx(1.5 + 150 / 100.02, abs=1e-8)


# ---------------------------------------------------------------------------------- 12


def test_s12_bracket_legs_held_then_one_fills_other_canceled(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession]) -> None:
    emu.state.fill_mode = "random"
    emu.state.partial_fill_prob = 0.0
    emu.set_quote("AAPL", 100, 100.02)
    session = make_session()
    events = Events(session)
    parent = session.submit(buy(7, take_profit=105.0, stop_loss=95.0))
    assert parent.status == SubmitStatus.ACCEPTED
    events.until(events.has(EventKind.COMPLETED, parent.client_order_id))
    legs = {e.leg_role: e for e in events.items if e.leg_role is not None}
    assert set(legs) == {"take_profit", "stop_loss"}
    assert all(e.ref == "7" and e.parent_client_order_id == parent.client_order_id for e in legs.values())
    first_status = {role: next(e.status for e in events.items if e.leg_role == role) for role in legs}
    assert first_status == {"take_profit": "held", "stop_loss": "held"}
    events.until(lambda items: {e.leg_role for e in items if e.status == "new" and e.leg_role} ==
                 {"take_profit", "stop_loss"})
    emu.set_quote("AAPL", 105.5, 105.52)
    events.until(lambda items: any(e.kind == EventKind.COMPLETED and e.leg_role == "take_profit" for e in items))
    events.until(lambda items: any(e.kind == EventKind.CANCELED and e.leg_role == "stop_loss" for e in items))
    assert session.fetch_positions() == {}


# ---------------------------------------------------------------------------------- 14


def test_s14_more_than_500_orders_reconciled_by_paging_with_until(
        emu: AlpacaEmulator, make_session: Callable[..., AlpacaSession], tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    run = Journal(path).run_id
    for i in range(1100):
        order = emu.state.submit_order({"symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit",
                                        "limit_price": "1", "time_in_force": "day",
                                        "client_order_id": make_client_order_id("qf", run, i, 1)})
        if i % 2:
            emu.state.cancel_order(order["id"])
    session = make_session(journal_path=path, stream=False)
    report = session.last_report
    assert report is not None and report.orders_seen == 1100 and len(report.adopted) == 1100
    assert report.pages == 3
    listing = [r for r in emu.requests if r.path == "/v2/orders" and r.method == "GET"]
    assert "until" not in listing[0].query and all("until" in r.query for r in listing[1:3])
    assert all(r.query["limit"] == "500" and r.query["nested"] == "True" for r in listing[:3])
    assert len(session.open_orders()) == 550
    periodic = session.reconcile()  # the periodic pass pages open orders the same way
    assert periodic.errors == [] and periodic.orders_seen == 550


# ---------------------------------------------------------------------------------- 15


def test_s15_extra_fields_unknown_events_and_garbage_tolerated(
        make_session: Callable[..., AlpacaSession], caplog: pytest.LogCaptureFixture) -> None:
    with AlpacaEmulator(api_key=KEY, secret_key=SECRET, fill_mode="scripted",
                        extra_order_fields={"source": "x", "subtag": None, "brand_new": {"nested": [1, 2]}}) as emu:
        session = make_session(emulator=emu)
        events = Events(session)
        result = session.submit(buy(1))
        assert result.status == SubmitStatus.ACCEPTED
        snapshot = emu.state.get_order(result.order_id)
        for message in (
            {"stream": "trade_updates", "data": {"event": "order_cancel_rejected", "order": snapshot,
                                                 "timestamp": snapshot["updated_at"], "unexpected": True}},
            {"stream": "trade_updates", "data": {"event": "fill"}},
            {"stream": "trade_updates", "data": "garbage"},
            {"stream": "trade_updates", "data": {"event": "new", "order": {"id": "not-ours", "status": "new"}}},
            {"stream": "trade_updates", "data": {"event": "fill", "order": {**snapshot, "filled_qty": "x"}}},
            {"stream": "account_updates", "data": {"whatever": 1}},
        ):
            emu.stream.inject(message)
        emu.fill(result.order_id, 10, 100)
        events.until(events.has(EventKind.COMPLETED, result.client_order_id))
        assert filled_value(events.items)[0] == pytest.approx(10)
        assert not [r for r in caplog.records if r.levelname == "ERROR" and "qf_plugins" in r.name]
