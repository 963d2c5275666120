"""``qf paper`` through the Alpaca plugin, against the loopback emulator and the unmodified alpaca-py.

Each test starts the emulator on a manual clock (see conftest.py): the session decides after each
close, its market orders fill at the next open, and a driver thread plays the trading days.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import typer
from alpaca.trading.client import TradingClient
from alpaca.trading.requests import LimitOrderRequest
from typer.testing import CliRunner

from qf.cli.paper import paper
from qf.config.loader import load_experiment
from qf.config.schema import RebalanceSpec
from qf.engines.backtrader.strategy import run_backtrader
from qf.errors import DataError, QfError
from qf.paper.session import PaperOptions, run_paper
from qf.paper.state import PLANNED, PaperState
from qf_plugins.alpaca.bt_broker import JOURNAL_FILE
from qf_plugins.alpaca.env import config_from_env
from qf_plugins.alpaca.ids import parse_client_order_id
from qf_plugins.alpaca.journal import Journal
from qf_plugins.alpaca.session import AlpacaSession
from qf_plugins.alpaca.source import AlpacaSource

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
SYMBOLS = ["AAPL", "MSFT", "SPY"]
FIRST = pd.Timestamp("2024-03-04")  # the session's first evening (conftest.FIRST_DAY)


class Crash(BaseException):
    """A process death: nothing in qf may catch it."""


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("paper")(paper)
    app.command("noop")(lambda: None)
    return app


def run(path: Path, state_dir: Path, **options) -> object:
    return run_paper(load_experiment(path), PaperOptions(state_dir=state_dir, write_report=False, **options))


def refs_at_broker(world) -> list[tuple[str, int]]:
    """(decision ref, attempt) of every order qf sent to the emulator."""
    out = []
    for o in world.ours():
        parsed = parse_client_order_id(o["client_order_id"])
        assert parsed is not None
        out.append((parsed.ref, parsed.attempt))
    return sorted(out)


def net_fills(orders: pd.DataFrame) -> dict[str, float]:
    signed = orders["quantity"].where(orders["side"] == "buy", -orders["quantity"])
    return {s: round(v, 6) for s, v in signed.groupby(orders["symbol"]).sum().items() if round(v, 6)}


def rounded(positions: dict[str, float]) -> dict[str, float]:
    return {s: round(q, 6) for s, q in positions.items()}


def test_end_to_end_through_the_cli_and_keys_never_leak(alpaca, tmp_path, caplog, keys):
    caplog.set_level(logging.DEBUG)
    state_dir = tmp_path / "state"
    reports = tmp_path / "reports"
    args = ["paper", str(ROOT / "experiments/hrp_swing_alpaca.yaml"), "--max-bars", "3", "--state-dir", str(state_dir),
            "--set", "data.params.poll_interval=0.1", "--set", "data.params.bar_delay=0",
            "--set", "rebalance.freq=daily", "--set", "signal.type=constant", "--set", "signal.params={}",
            "--set", f"report.dir={reports}"]
    with alpaca.driver(state_dir, days=2) as driver:
        result = runner.invoke(cli(), args)
    assert result.exit_code == 0, result.output
    assert "stopped after --max-bars; 3 new bar(s), 3 in the session" in result.output
    assert [d.date().isoformat() for d in driver.days] == ["2024-03-05", "2024-03-06"]

    # warm-up from 2021 on the market-data API, then three rebalances decided after each close
    state = PaperState(state_dir / "paper.sqlite")
    decisions = [state.decision(pd.Timestamp(d)) for d in ("2024-03-04", "2024-03-05", "2024-03-06")]
    assert all(d is not None and d.kind == "rebalance" for d in decisions)
    assert sum(decisions[0].targets) == pytest.approx(1.0)  # HRP over 20 symbols, capped at 25% each

    # one broker order per sent planned order, each sent once (attempt 1), under the deterministic ids
    sent = sorted((o.ref, 1) for o in state.planned() if o.status == "sent")
    assert sent == refs_at_broker(alpaca) and len(sent) >= 20
    # a cash account: the last decision's buys wait for its sells to fill at the next open
    waiting = [o for o in state.planned() if o.status == PLANNED]
    assert waiting and {(o.side, o.decision) for o in waiting} == {("buy", pd.Timestamp("2024-03-06"))}

    (run_dir,) = list((reports / "hrp_swing_alpaca").iterdir())
    assert {"tearsheet.html", "metrics.json", "orders.csv", "manifest.json", "config.yaml", "paper.json"} <= {
        p.name for p in run_dir.iterdir()}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["kind"] == "paper" and json.loads((run_dir / "paper.json").read_text())["broker"] == "alpaca"
    orders = pd.read_csv(run_dir / "orders.csv")
    # what filled (the first two decisions; the third waits for the next open) is what the account holds
    assert net_fills(orders) == rounded(alpaca.positions()) and len(orders) >= 20

    # restarted before the next open, the session resumes that decision; at the open the sells (sent by the
    # previous process) fill, and the buys go out
    alpaca.at(pd.Timestamp("2024-03-07"), "09:00")
    clocks = sum(1 for r in alpaca.emu.requests if r.path == "/v2/clock")

    seen: dict[str, int] = {}

    def close_when_done() -> None:
        deadline = time.monotonic() + 20
        # history (one clock request), then the resumed bar, then polls for the next one: open the market
        while sum(1 for r in alpaca.emu.requests if r.path == "/v2/clock") < clocks + 3 and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        seen["waiting_at_open"] = sum(o.status == PLANNED for o in PaperState(state_dir / "paper.sqlite").planned())
        alpaca.at(pd.Timestamp("2024-03-07"), "10:00")
        while time.monotonic() < deadline:
            done = all(o.status != PLANNED for o in PaperState(state_dir / "paper.sqlite").planned())
            if done and not alpaca.working():
                break
            time.sleep(0.05)
        alpaca.at(pd.Timestamp("2024-03-07"), "17:00")

    closer = threading.Thread(target=close_when_done, daemon=True)
    closer.start()
    again = runner.invoke(cli(), [*args, "--max-bars", "1", "--set", "report.tearsheet=false"])
    closer.join(25)
    assert again.exit_code == 0, again.output
    assert seen["waiting_at_open"] == len(waiting)  # the buys still waited when the market opened
    assert "resumed the decision of 2024-03-06" in again.output and "1 new bar(s), 4 in the session" in again.output
    sent = sorted((o.ref, 1) for o in state.planned() if o.status == "sent")
    assert [o for o in state.planned() if o.status == PLANNED] == []
    assert sent == refs_at_broker(alpaca)
    assert {ref for ref, _ in sent} >= {o.ref for o in waiting}

    key, secret = keys
    assert key not in caplog.text and secret not in caplog.text
    assert "authenticate" in caplog.text or "connected to" in caplog.text  # the stream logged, redacted
    assert key not in result.output and secret not in result.output
    for folder in (state_dir, reports):
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert key.encode() not in data and secret.encode() not in data, path


def test_crash_between_submit_and_journal_update_then_restart(alpaca, alpaca_experiment, tmp_path, monkeypatch):
    path = alpaca_experiment()
    state_dir = tmp_path / "state"
    real = AlpacaSession._accepted
    calls = {"n": 0}

    def dies_after_the_second_post(self, tracked, order, posts, adopted):
        calls["n"] += 1
        if calls["n"] == 2 and not adopted:
            raise Crash  # the POST landed; the journal never hears of it
        return real(self, tracked, order, posts, adopted)

    monkeypatch.setattr(AlpacaSession, "_accepted", dies_after_the_second_post)
    with pytest.raises(Crash):
        run(path, state_dir)
    monkeypatch.setattr(AlpacaSession, "_accepted", real)
    assert len(alpaca.ours()) == 2
    journal = Journal(state_dir / JOURNAL_FILE)
    assert sorted(r.state for r in journal.intents()) == ["pending", "submitted"]
    journal.close()

    with alpaca.driver(state_dir, days=1):
        out = run(path, state_dir, max_bars=2)
    assert out.status == "stopped" and out.bars_total == 2
    state = PaperState(state_dir / "paper.sqlite")
    # the adopted order was not sent again; the third order of the first decision went out once
    assert sorted((o.ref, 1) for o in state.planned()) == refs_at_broker(alpaca)
    first = [o for o in state.planned() if o.ref.startswith("20240304")]
    assert len(first) == 3 and all(o.status == "sent" for o in first)
    assert all(o["status"] == "filled" for o in alpaca.ours() if o["client_order_id"].split("-")[2].startswith(
        "20240304"))
    assert net_fills(out.orders) == rounded(alpaca.positions()) and set(alpaca.positions()) == set(SYMBOLS)


def test_late_acceptance_after_the_process_died_is_one_order(alpaca, alpaca_experiment, tmp_path, monkeypatch):
    # Issue 12: the broker accepts the first order only after the client timed out and the process died; the
    # restart's lookup says 404. It used to abandon the order and send the decision again as attempt 2.
    import qf_plugins.alpaca.bt_broker as bt_broker

    path = alpaca_experiment(broker={"type": "alpaca", "params": {"reconcile_interval": 30,
                                                                  "acceptance_window": 20}})
    state_dir = tmp_path / "state"
    real_env = bt_broker.config_from_env
    monkeypatch.setattr(bt_broker, "config_from_env", lambda **kw: dataclasses.replace(real_env(**kw), timeout=0.3))
    alpaca.emu.faults.accept_after("POST", "/v2/orders", 4.0)
    real_submit = AlpacaSession.submit

    def dies_after_a_timeout(self, intent):
        result = real_submit(self, intent)
        if result.status == "ambiguous":
            raise Crash  # killed while the broker still holds the POST
        return result

    monkeypatch.setattr(AlpacaSession, "submit", dies_after_a_timeout)
    with pytest.raises(Crash):
        run(path, state_dir)
    monkeypatch.setattr(AlpacaSession, "submit", real_submit)
    assert alpaca.ours() == []
    journal = Journal(state_dir / JOURNAL_FILE)
    (late,) = journal.intents()
    journal.close()
    assert late.state == "ambiguous"

    with alpaca.driver(state_dir, days=1):
        out = run(path, state_dir, max_bars=2)
    assert out.status == "stopped"
    refs = refs_at_broker(alpaca)
    assert all(attempt == 1 for _, attempt in refs) and len(refs) == len(set(refs))
    assert (parse_client_order_id(late.client_order_id).ref, 1) in refs
    assert [o["client_order_id"] for o in alpaca.ours()].count(late.client_order_id) == 1
    # it landed after the next decision had started: that decision canceled it as soon as it showed up
    (landed,) = [o for o in alpaca.ours() if o["client_order_id"] == late.client_order_id]
    assert landed["status"] == "canceled"
    assert net_fills(out.orders) == rounded(alpaca.positions())


def test_ctrl_c_mid_decision_then_restart(alpaca, alpaca_experiment, tmp_path, monkeypatch):
    path = alpaca_experiment()
    state_dir = tmp_path / "state"
    real = PaperState.mark_planned
    calls = {"n": 0}

    def interrupted(self, ref, status, sent_quantity=None):
        calls["n"] += 1
        if calls["n"] == 2:  # Ctrl-C after the second order reached the broker, before the plan says so
            raise KeyboardInterrupt
        return real(self, ref, status, sent_quantity)

    monkeypatch.setattr(PaperState, "mark_planned", interrupted)
    out = run(path, state_dir)
    monkeypatch.setattr(PaperState, "mark_planned", real)
    assert out.status == "interrupted" and len(alpaca.ours()) == 2
    assert [o.status for o in PaperState(state_dir / "paper.sqlite").planned()].count(PLANNED) == 2

    with alpaca.driver(state_dir, days=1):
        again = run(path, state_dir, max_bars=2)
    assert again.status == "stopped"
    state = PaperState(state_dir / "paper.sqlite")
    assert sorted((o.ref, 1) for o in state.planned()) == refs_at_broker(alpaca)
    assert net_fills(again.orders) == rounded(alpaca.positions()) and set(alpaca.positions()) == set(SYMBOLS)


def test_kill_switch_halts_cancels_and_stays_halted(alpaca, alpaca_experiment, tmp_path, keys):
    crash_day = pd.Timestamp("2024-03-06")
    alpaca.store_bars(SYMBOLS, lambda d: 70.0 if d >= crash_day else (100.0 if d < FIRST else 101.0))
    path = alpaca_experiment(risk=[{"type": "max_weight", "params": {"limit": 0.3}},
                                   {"type": "drawdown_halt", "params": {"max_drawdown": 0.1}},
                                   {"type": "daily_loss_limit", "params": {"limit": 0.08}}])
    state_dir = tmp_path / "state"
    # someone's resting order on the account: the kill switch cancels every open order
    client = TradingClient(*keys, url_override=alpaca.emu.rest_url)
    foreign = client.submit_order(LimitOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="gtc",
                                                    limit_price=1.0))
    with alpaca.driver(state_dir, days=2, skip_open=("2024-03-06",), quotes=lambda d: dict.fromkeys(SYMBOLS, 100.0)):
        out = run(path, state_dir, max_bars=3)
    assert out.status == "stopped" and out.halted
    state = PaperState(state_dir / "paper.sqlite")
    assert state.decision(crash_day).kind == "halt"
    assert list(out.events["event"]) == ["flatten"]
    journal = Journal(state_dir / JOURNAL_FILE)
    halted, reason = journal.halted()
    journal.close()
    assert halted and reason.startswith("qf risk: drawdown_halt / daily_loss_limit")
    by_id = {o["id"]: o for o in alpaca.emu.orders()}
    assert by_id[str(foreign.id)]["status"] == "canceled"
    # the rebalance of 03-05 never met an open market: still working at the halt, canceled by it
    stale = [o for o in alpaca.ours() if "-20240305_" in o["client_order_id"]]
    assert stale and all(o["status"] == "canceled" for o in stale)
    # the closing orders are qf's own, named for the decision that fired the kill switch, and journaled
    closing = [o for o in alpaca.emu.orders()
               if o["status"] == "accepted" and "-kill-20240306-" in o["client_order_id"]]
    held = alpaca.positions()
    assert {o["symbol"]: float(o["qty"]) for o in closing} == held and len(held) == 3
    assert all(o["side"] == "sell" for o in closing)
    journal = Journal(state_dir / JOURNAL_FILE)
    journaled = {r.client_order_id for r in journal.intents()}
    journal.close()
    assert {o["client_order_id"] for o in alpaca.emu.orders() if o["id"] != str(foreign.id)} <= journaled

    # the closing orders fill at the next open; a restart stays halted and sends nothing
    alpaca.trading_day(pd.Timestamp("2024-03-07"), quotes=dict.fromkeys(SYMBOLS, 70.0))
    assert alpaca.positions() == {}
    posts = sum(1 for r in alpaca.emu.requests if r.method == "POST")
    again = run(path, state_dir, max_bars=1)
    assert again.halted and again.bars_done == 1
    assert PaperState(state_dir / "paper.sqlite").decision(pd.Timestamp("2024-03-07")).kind == "halted"
    assert sum(1 for r in alpaca.emu.requests if r.method == "POST") == posts
    assert alpaca.positions() == {}


def test_flatten_closes_everything(alpaca, alpaca_experiment, tmp_path):
    path = alpaca_experiment()
    state_dir = tmp_path / "state"
    with alpaca.driver(state_dir, days=1):
        run(path, state_dir, max_bars=2)
    assert set(alpaca.positions()) == set(SYMBOLS) and alpaca.working()  # 03-05's rebalance waits for the open
    alpaca.at(pd.Timestamp("2024-03-06"), "10:00")
    result = runner.invoke(cli(), ["paper", str(path), "--flatten", "--state-dir", str(state_dir)])
    assert result.exit_code == 0, result.output
    assert "flattened" in result.output
    assert alpaca.positions() == {} and alpaca.working() == []
    # the closing orders are qf's own (named for the flatten) and in the journal like every order qf sent
    closing = [o for o in alpaca.emu.orders() if "-flatten-20240306-" in o["client_order_id"]]
    assert {o["symbol"] for o in closing} == set(SYMBOLS) and all(o["side"] == "sell" for o in closing)
    journal = Journal(state_dir / JOURNAL_FILE)
    journaled = {r.client_order_id for r in journal.intents()}
    journal.close()
    assert {o["client_order_id"] for o in alpaca.emu.orders()} <= journaled
    assert all(o.status != PLANNED for o in PaperState(state_dir / "paper.sqlite").planned())


def test_live_source_hands_out_only_completed_bars(alpaca):
    source = AlpacaSource({"symbols": ["AAPL", "MSFT"], "start": "2024-01-02", "poll_interval": 0.01,
                           "bar_delay": 600})
    live = source.live_source(min_history=20)
    alpaca.at(pd.Timestamp("2024-03-05"), "10:00")  # 03-05 is trading: its bar is not final
    history = live.history()
    assert history.index[-1] == pd.Timestamp("2024-03-01") and history.symbols == ["AAPL", "MSFT"]
    assert [b.time for b in live.poll(0.1)] == [pd.Timestamp("2024-03-04")]  # the latest completed bar
    assert live.poll(0.1) == []
    alpaca.at(pd.Timestamp("2024-03-05"), "16:05")  # closed, but within bar_delay
    assert live.poll(0.1) == []
    alpaca.at(pd.Timestamp("2024-03-07"), "16:11")  # two sessions later, both final
    got = live.poll(0.1)
    assert [b.time for b in got] == [pd.Timestamp("2024-03-05"), pd.Timestamp("2024-03-06"),
                                     pd.Timestamp("2024-03-07")]
    assert got[0].values["close"].shape == (2,)
    weekly = RebalanceSpec(freq="weekly")
    assert live.is_decision(pd.Timestamp("2024-03-08"), weekly, FIRST)       # Friday ends the week
    assert not live.is_decision(pd.Timestamp("2024-03-07"), weekly, FIRST)
    every = RebalanceSpec(every=2)
    assert [live.is_decision(d, every, FIRST) for d in pd.bdate_range("2024-03-04", periods=4)] == [
        True, False, True, False]
    live.close()
    assert live.poll(0.1) is None


def test_data_source_load(alpaca, monkeypatch):
    bars = AlpacaSource({"symbols": ["msft", "AAPL"], "start": "2024-01-02", "end": "2024-02-29"}).load()
    assert bars.symbols == ["MSFT", "AAPL"] and bars.source == "alpaca:iex"
    assert bars.fields == ("open", "high", "low", "close", "volume")
    assert bars.index[0] == pd.Timestamp("2024-01-02") and bars.index[-1] == pd.Timestamp("2024-02-29")
    assert len(bars.index) == len(pd.bdate_range("2024-01-02", "2024-02-29"))
    alpaca.emu.state.bars.synthetic = False
    with pytest.raises(DataError, match="alpaca: Alpaca returned no bars"):
        AlpacaSource({"symbols": ["ZZZZ"], "start": "2024-01-02", "end": "2024-01-31"}).load()
    monkeypatch.delenv("ALPACA_SECRET_KEY")
    with pytest.raises(QfError, match="needs ALPACA_API_KEY and ALPACA_SECRET_KEY"):
        AlpacaSource({"symbols": ["AAPL"]}).load()


def test_backtests_refuse_the_alpaca_broker(alpaca, alpaca_experiment):
    exp = load_experiment(alpaca_experiment())
    with pytest.raises(QfError, match="backtests need a simulated broker; AlpacaBtBroker"):
        run_backtrader(exp.data.load(), experiment=exp)


def test_live_money_needs_two_switches(keys):
    env = {"ALPACA_API_KEY": keys[0], "ALPACA_SECRET_KEY": keys[1]}
    with pytest.raises(QfError, match="ALPACA_PAPER is not 'false'"):
        config_from_env(paper=False, env=env)
    assert config_from_env(paper=False, env={**env, "ALPACA_PAPER": "false"}).paper is False
    assert config_from_env(paper=True, env={**env, "ALPACA_PAPER": "false"}).paper is True
    with pytest.raises(QfError, match="must not end with"):
        config_from_env(trading_url="http://127.0.0.1:1/v2", env=env)
