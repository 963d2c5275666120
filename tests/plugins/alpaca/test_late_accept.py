"""A broker that accepts an order after the client gave up on it: never two orders for one intent.

Issue 12, paper item 1. The client POSTs, times out, and the process dies; the broker only then accepts the
POST. A restarted session that believed the lookup's 404 used to abandon the intent and send the decision
again under a new client order id, doubling the position. These scenarios run the real alpaca-py client
against the loopback emulator's "accept after delay" fault, on an Alpaca-like broker (unique client order
ids) and on an independent server that accepts a reused id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from qf.testing.waiting import wait_for
from qf_plugins.alpaca.client import AlpacaConfig
from qf_plugins.alpaca.emulator import AlpacaEmulator
from qf_plugins.alpaca.ids import make_client_order_id
from qf_plugins.alpaca.journal import Journal
from qf_plugins.alpaca.session import AlpacaSession, EventKind, OrderIntent, SubmitStatus

KEY = "PKLATEACCEPT00000001"
SECRET = "late-accept-secret-0123456789abcdefghij"
REF = "20240105_AAPL"
INTENT = OrderIntent(ref=REF, symbol="AAPL", side="buy", qty=10)

# The process that dies: one submit with a 0.3 s HTTP timeout, report the outcome, then wait to be killed.
DOOMED = """
import json, sys, time
from qf_plugins.alpaca.client import AlpacaConfig
from qf_plugins.alpaca.ids import make_client_order_id
from qf_plugins.alpaca.journal import Journal
from qf_plugins.alpaca.session import AlpacaSession, OrderIntent
url, journal, window = sys.argv[1], sys.argv[2], float(sys.argv[3])
cfg = AlpacaConfig(sys.argv[4], sys.argv[5], trading_url=url, timeout=0.3)
session = AlpacaSession.from_config(cfg, Journal(journal), stream=False, lookup_backoff=0.01,
                                    acceptance_window=window)
session.start(background=False)
result = session.submit(OrderIntent(ref=sys.argv[6], symbol="AAPL", side="buy", qty=10))
print(json.dumps({"status": str(result.status), "cid": result.client_order_id}), flush=True)
time.sleep(120)
"""


def state_of(session: AlpacaSession, cid: str) -> str:
    """The journal state of ``cid`` after draining the session's events, as a broker adapter does."""
    session.poll()
    rec = session.order_state(cid)
    return rec.state if rec is not None else ""


def posts(emu: AlpacaEmulator) -> list[Any]:
    return [r for r in emu.requests if r.method == "POST" and r.path == "/v2/orders"]


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., AlpacaEmulator]]:
    running: list[AlpacaEmulator] = []

    def make(unique: bool = True) -> AlpacaEmulator:
        emu = AlpacaEmulator(api_key=KEY, secret_key=SECRET, fill_mode="scripted", unique_client_order_ids=unique)
        running.append(emu.start())
        return emu

    yield make
    for emu in running:
        emu.stop()


@pytest.fixture
def make_session(tmp_path: Path) -> Iterator[Callable[..., AlpacaSession]]:
    sessions: list[AlpacaSession] = []

    def make(emu: AlpacaEmulator, *, stream: bool = False, background: bool = False, window: float,
             start: bool = True) -> AlpacaSession:
        cfg = AlpacaConfig(KEY, SECRET, trading_url=emu.rest_url, stream_url=emu.ws_url, timeout=0.3)
        session = AlpacaSession.from_config(cfg, Journal(tmp_path / "journal.sqlite"), stream=stream,
                                            reconnect_min_backoff=0.05, lookup_backoff=0.01,
                                            acceptance_window=window, reconcile_interval=60.0)
        sessions.append(session)
        if start:
            session.start(background=background)
        return session

    yield make
    for session in sessions:
        session.stop()
        session.journal.close()


@pytest.mark.parametrize("unique", [True, False], ids=["alpaca", "independent-server"])
def test_killed_during_a_late_acceptance_then_restarted_gives_one_order(
        make_emulator, make_session, tmp_path: Path, unique: bool) -> None:
    emu = make_emulator(unique)
    delay, window = 3.0, 6.0
    emu.faults.accept_after("POST", "/v2/orders", delay)
    journal = tmp_path / "journal.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", DOOMED, emu.rest_url, str(journal), str(window), KEY, SECRET,
                             REF], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline() if proc.stdout else ""
    finally:
        proc.send_signal(signal.SIGKILL)  # the process dies without any cleanup
        _, stderr = proc.communicate(timeout=30)
    assert line, stderr
    first = json.loads(line)
    cid = first["cid"]
    assert first["status"] == "ambiguous" and cid.endswith(f"-{REF}-1")
    assert emu.orders() == []  # the broker has not accepted it yet: its 404 proves nothing

    session = make_session(emu, stream=True, background=True, window=window)
    report = session.last_report
    assert report is not None and report.unresolved == [cid] and report.abandoned == []
    assert session.order_state(cid).state == "ambiguous"
    # the restarted strategy asks to send its decision again: the earlier send's outcome is unknown
    again = session.submit(INTENT)
    assert again.status == SubmitStatus.AMBIGUOUS and again.client_order_id == cid and again.posts == 0

    # the late acceptance reaches the restarted session (stream), which adopts it
    assert wait_for(lambda: state_of(session, cid) == "submitted", timeout=delay + 10)
    order = emu.orders()[0]
    assert session.order_state(cid).order_id == order["id"]
    emu.fill(order["id"], 10, 100)
    assert wait_for(lambda: state_of(session, cid) == "done", timeout=10)
    assert [o["client_order_id"] for o in emu.orders()] == [cid]
    assert [p.body["client_order_id"] for p in posts(emu)] == [cid]
    # the journal says why the restart did not give up on it
    reasons = [json.loads(e["payload"]).get("reason", "") for e in session.journal.events(cid)
               if e["event"] == "unknown"]
    assert any("ReadTimeout" in r for r in reasons) and any("acceptance window" in r for r in reasons)


def restarted_after_the_window(make_session: Callable[..., AlpacaSession], emu: AlpacaEmulator,
                               window: float = 0.8) -> tuple[AlpacaSession, str]:
    """Submit into a late-accepting broker, let the process "die" (no stop, no reconciliation) and restart
    once the acceptance window has passed: a broker slower than its window. Returns (restarted session, id)."""
    dying = make_session(emu, window=window)
    first = dying.submit(INTENT)
    assert first.status == SubmitStatus.AMBIGUOUS and first.client_order_id is not None
    time.sleep(max(0.0, dying.journal.intent(first.client_order_id).posted_at + window + 0.1 - time.time()))
    return make_session(emu, window=window), first.client_order_id


def test_broker_slower_than_its_window_the_resend_reuses_the_id(make_emulator, make_session) -> None:
    emu = make_emulator(unique=True)
    emu.faults.accept_after("POST", "/v2/orders", 2.5)
    session, cid = restarted_after_the_window(make_session, emu)
    assert session.last_report is not None and session.last_report.abandoned == [cid]
    assert "acceptance window" in (session.order_state(cid).error or "")

    # the strategy sends its decision again: under the abandoned id, not a new one
    again = session.submit(INTENT)
    assert again.status == SubmitStatus.ACCEPTED and again.client_order_id == cid
    # the first POST lands late and is refused as a duplicate: one order
    assert wait_for(lambda: posts(emu)[0].status is not None, timeout=10)
    assert posts(emu)[0].status == 422 and len(posts(emu)) == 2
    assert [o["client_order_id"] for o in emu.orders()] == [cid]


def test_an_abandoned_intent_that_lands_and_fills_is_followed_to_done(make_emulator, make_session) -> None:
    emu = make_emulator(unique=True)
    emu.faults.accept_after("POST", "/v2/orders", 2.0)
    session, cid = restarted_after_the_window(make_session, emu)  # REST only: no stream delivers the late order
    assert session.order_state(cid).state == "abandoned"
    order = wait_for(lambda: emu.orders() and emu.orders()[0], timeout=10)
    emu.fill(order["id"], 10, 100)
    session.reconcile()
    rec = session.order_state(cid)
    assert (rec.state, rec.status, rec.order_id, rec.filled_qty) == ("done", "filled", order["id"], 10)
    kinds = [e.kind for e in session.poll(0.2) if e.client_order_id == cid]
    assert EventKind.FILL in kinds and kinds[-1] == EventKind.COMPLETED
    assert "revived" in [e["event"] for e in session.journal.events(cid)]


def test_server_without_unique_ids_slower_than_the_window_books_the_twin_apart(make_emulator, make_session) -> None:
    # The limit of any client: a server that neither enforces unique ids nor accepts within the window
    # ends with two orders. qf says so loudly and books the second one apart, never mixed into the first.
    emu = make_emulator(unique=False)
    emu.faults.accept_after("POST", "/v2/orders", 2.0)
    session, cid = restarted_after_the_window(make_session, emu)
    assert session.submit(INTENT).client_order_id == cid  # the same id again: all a client can do
    assert wait_for(lambda: len(emu.orders()) == 2, timeout=10)
    first, twin = emu.orders()
    session.reconcile()
    assert session.order_state(cid).order_id == first["id"]
    twins = [r for r in session.journal.intents() if r.request.get("twin_of") == cid]
    assert [r.order_id for r in twins] == [twin["id"]]
    emu.fill(twin["id"], 10, 100)
    emu.fill(first["id"], 10, 101)
    session.reconcile()
    assert [f.price for f in session.journal.fills(cid)] == [101]
    assert [f.price for f in session.journal.fills(twins[0].client_order_id)] == [100]
    errors = [e for e in session.poll(0.2) if e.kind == EventKind.ERROR]
    assert any("does not enforce unique ids" in (e.message or "") for e in errors)


def test_died_before_its_post_then_restarted_within_the_window_sends_it_once_under_its_id(
        make_emulator, make_session, tmp_path: Path) -> None:
    emu = make_emulator(unique=False)  # even a server without unique ids ends with one order
    journal = Journal(tmp_path / "journal.sqlite")
    cid = make_client_order_id("qf", journal.run_id, REF, 1)
    # the process journaled the intent and died before (or while) its POST left: nobody knows which
    journal.record_intent(cid, ref=REF, attempt=1, symbol="AAPL", request=asdict(INTENT))
    journal.close()
    session = make_session(emu, background=True, window=0.8)
    assert session.last_report is not None and session.last_report.unresolved == [cid]
    # nothing arrives within the window: the restarted session sends it, once, under the same id
    assert wait_for(lambda: state_of(session, cid) == "submitted", timeout=10)
    assert [p.body["client_order_id"] for p in posts(emu)] == [cid]
    time.sleep(0.5)
    assert [o["client_order_id"] for o in emu.orders()] == [cid]
