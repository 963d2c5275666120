"""``qf paper --broker sim``: the replayed session trades exactly like the backtest, and survives restarts.

The reference is ``run_backtrader(bars, experiment=exp)``, the backtest's incremental mode (targets
recomputed on the trailing window at each rebalance), on the same bars.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import qf.engines.backtrader.paper as strategy
import qf.paper.feed as feed
from qf.cli.main import app as main_app
from qf.cli.paper import paper
from qf.config.loader import load_experiment
from qf.config.schema import RebalanceSpec
from qf.engines.backtrader.strategy import run_backtrader
from qf.errors import QfError
from qf.paper.feed import ReplaySource
from qf.paper.schedule import index_calendar, is_decision
from qf.paper.session import PaperOptions, run_paper, warmup_bars
from qf.paper.state import BarRecord, PaperState
from qf.rebalance import rebalance_dates

runner = CliRunner()


def cli() -> typer.Typer:
    """A typer app with the command as the lead wires it into ``qf`` (``app.command("paper")(paper)``)."""
    app = typer.Typer()
    app.command("paper")(paper)
    app.command("noop")(lambda: None)  # two commands, so "paper" is a sub-command as in qf
    return app


def assert_same_orders(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert len(got) == len(want) > 0
    assert list(got["time"]) == list(want["time"])
    assert list(got["symbol"]) == list(want["symbol"]) and list(got["side"]) == list(want["side"])
    for col in ("quantity", "price", "fee"):
        np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy())


def backtest(exp_path: Path, end: pd.Timestamp | None = None, overrides: list[str] | None = None):
    exp = load_experiment(exp_path, overrides or [])
    bars = exp.data.load()
    if end is not None:
        bars = bars.truncate(end)
    return exp, bars, run_backtrader(bars, experiment=exp)


@pytest.mark.parametrize("fill", ["next_close", "close", "next_open"])
def test_replay_places_the_backtest_orders(fill, sample_experiment, tmp_path):
    if fill == "next_open":  # open prices: the arch S&P 500 index OHLCV
        path = sample_experiment(
            data={"type": "sample", "params": {"dataset": "arch_sp500", "start": "2008-01-01", "end": "2009-06-30"}},
            signal={"type": "sma_cross", "params": {"fast": 5, "slow": 20}}, sizer={"type": "equal"},
            risk=[{"type": "drawdown_halt", "params": {"max_drawdown": 0.06, "cooldown_bars": 5}},
                  {"type": "daily_loss_limit", "params": {"limit": 0.04}},
                  {"type": "stop_loss", "params": {"vol_mult": 2.0, "vol_window": 10}}],
            rebalance={"freq": "weekly"},
            execution={"engine": "backtrader", "fill": "next_open", "fees": 0.001, "fixed_fees": 1.0,
                       "slippage": 0.001, "fractional": False})
    else:
        path = sample_experiment(execution={"engine": "backtrader", "fill": fill, "fees": 0.0005,
                                            "slippage": 0.0005, "min_order_value": 50})
    exp, bars, want = backtest(path)
    # the paper session starts after the warm-up: the backtest trades nothing before it either
    first = bars.index[warmup_bars(exp)]
    assert want.orders["time"].min() >= first
    out = run_paper(exp, PaperOptions(broker="sim", state_dir=tmp_path / "state", write_report=False))
    assert out.status == "done" and out.bars_total == len(bars.index) - warmup_bars(exp)
    assert_same_orders(out.orders, want.orders)
    pd.testing.assert_series_equal(out.equity, want.equity.loc[first:], check_freq=False, check_names=False)
    assert len(want.events) > 0  # the stateful rules fired, and fired identically
    pd.testing.assert_frame_equal(out.events.reset_index(drop=True), want.events.reset_index(drop=True))


class Crash(BaseException):
    """A process death: nothing in qf may catch it."""


def test_stop_crash_and_ctrl_c_resume_to_the_same_orders(sample_experiment, tmp_path, monkeypatch):
    path = sample_experiment()
    exp, bars, want = backtest(path)
    state_dir = tmp_path / "state"
    opts = PaperOptions(state_dir=state_dir, write_report=False)

    first = run_paper(exp, PaperOptions(state_dir=state_dir, write_report=False, max_bars=60))
    assert (first.status, first.bars_done, first.bars_total) == ("stopped", 60, 60)

    # a crash inside a bar whose orders have filled, before the bar is committed
    real_close = strategy.SimPaperStrategy._at_close
    calls = {"n": 0, "crashed_at": -1}

    def dying(self):
        calls["n"] += 1
        if calls["n"] >= 20 and self.bar_fills:
            calls["crashed_at"] = calls["n"]
            raise Crash
        return real_close(self)

    monkeypatch.setattr(strategy.SimPaperStrategy, "_at_close", dying)
    with pytest.raises(Crash):
        run_paper(exp, opts)
    monkeypatch.setattr(strategy.SimPaperStrategy, "_at_close", real_close)
    # the bar that crashed was rolled back, fills and all
    assert PaperState(state_dir / "paper.sqlite").bar_count() == 60 + calls["crashed_at"] - 1

    # Ctrl-C while the replay waits for its next bar
    real_poll = feed.ReplaySource.poll
    polls = {"n": 0}

    def interrupted(self, timeout):
        polls["n"] += 1
        if polls["n"] == 31:
            raise KeyboardInterrupt
        return real_poll(self, timeout)

    monkeypatch.setattr(feed.ReplaySource, "poll", interrupted)
    third = run_paper(exp, opts)
    monkeypatch.setattr(feed.ReplaySource, "poll", real_poll)
    assert (third.status, third.bars_done) == ("interrupted", 30)

    last = run_paper(exp, opts)
    assert last.status == "done" and last.bars_total == len(bars.index) - warmup_bars(exp)
    assert_same_orders(last.orders, want.orders)
    pd.testing.assert_series_equal(last.equity, want.equity.loc[last.equity.index[0]:], check_freq=False,
                                   check_names=False)


def test_a_halt_stays_halted_after_a_restart(sample_experiment, tmp_path):
    path = sample_experiment(risk=[{"type": "drawdown_halt", "params": {"max_drawdown": 0.03}}])
    exp, bars, want = backtest(path)
    assert list(want.events["event"]) and (want.events["event"] == "flatten").all()
    halt = want.events["time"].iloc[0]
    after = bars.index.get_loc(halt) - warmup_bars(exp)
    state_dir = tmp_path / "state"
    first = run_paper(exp, PaperOptions(state_dir=state_dir, max_bars=after + 2, write_report=False))
    assert first.halted
    second = run_paper(exp, PaperOptions(state_dir=state_dir, write_report=False))
    assert second.halted and second.status == "done"
    assert_same_orders(second.orders, want.orders)
    assert (second.orders["time"] <= halt).all()  # nothing traded after the flatten
    pd.testing.assert_frame_equal(second.events.reset_index(drop=True), want.events.reset_index(drop=True))


def test_flatten_closes_every_position_then_the_session_goes_on(sample_experiment, tmp_path):
    path = sample_experiment(risk=[])
    exp = load_experiment(path)
    state_dir = tmp_path / "state"
    run_paper(exp, PaperOptions(state_dir=state_dir, max_bars=40, write_report=False))
    held = PaperState(state_dir / "paper.sqlite").last_bar()
    assert held is not None and (held.positions != 0).sum() >= 2
    out = run_paper(exp, PaperOptions(state_dir=state_dir, flatten=True, write_report=False))
    assert out.status == "flattened" and out.bars_done == 1
    flat = PaperState(state_dir / "paper.sqlite").last_bar()
    assert flat is not None and (flat.positions == 0).all() and math.isclose(flat.equity, flat.cash)
    closing = out.orders[out.orders["time"] == flat.time]
    assert set(closing["side"]) == {"sell"} and len(closing) == (held.positions != 0).sum()
    nxt = run_paper(exp, PaperOptions(state_dir=state_dir, max_bars=30, write_report=False))
    assert nxt.status == "stopped" and nxt.bars_total == 41 + 30


def test_cli_writes_a_paper_report_that_compares_with_the_backtest(sample_experiment, tmp_path):
    path = sample_experiment(report={"dir": str(tmp_path / "reports"), "tearsheet": True})
    state_dir = tmp_path / "state"
    result = runner.invoke(cli(), ["paper", str(path), "--broker", "sim", "--speed", "0", "--max-bars", "80",
                                   "--state-dir", str(state_dir)])
    assert result.exit_code == 0, result.output
    assert "stopped after --max-bars; 80 new bar(s)" in result.output and "report:" in result.output
    (run,) = list((tmp_path / "reports" / "paper_sample").iterdir())
    assert {"tearsheet.html", "metrics.json", "orders.csv", "equity.parquet", "manifest.json", "config.yaml",
            "paper.json", "weights.parquet"} <= {p.name for p in run.iterdir()}
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["kind"] == "paper" and manifest["engine"] == "backtrader" and manifest["data"]["bars"] == 80
    info = json.loads((run / "paper.json").read_text())
    assert info["broker"] == "sim" and info["bars"] == 80 and info["status"] == "stopped"
    orders = pd.read_csv(run / "orders.csv", parse_dates=["time"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_orders"] == len(orders) > 0 and metrics["n_bars"] == 80

    # the backtest of the same bars, side by side with the paper run
    back = runner.invoke(main_app, ["run", str(path), "--engine", "backtrader", "--set", "report.tearsheet=false",
                                    "--set", f"data.params.end={orders['time'].max():%Y-%m-%d}",
                                    "--out", str(tmp_path / "backtest")])
    assert back.exit_code == 0, back.output
    compare = runner.invoke(main_app, ["report", "compare", str(tmp_path / "backtest"), str(run)])
    assert compare.exit_code == 0 and "n_orders" in compare.stdout and run.name in compare.stdout


def test_cli_user_errors_are_one_line_exit_2(sample_experiment, tmp_path, monkeypatch):
    path = sample_experiment()
    state_dir = tmp_path / "state"
    assert runner.invoke(cli(), ["paper", str(path), "--max-bars", "5", "--state-dir", str(state_dir)]).exit_code == 0
    other = sample_experiment(name="another")
    cases = [
        (["paper", str(other), "--state-dir", str(state_dir)], "belongs to a session with another experiment"),
        (["paper", str(path), "--state-dir", str(state_dir), "--set", "signal.params.fast=12"],
         "another configuration"),
        (["paper", str(path), "--broker", "simm"], "'simm' is not an installed broker; did you mean 'sim'?"),
        (["paper", str(path), "--max-bars", "0"], "--max-bars must be at least 1"),
        (["paper", str(path), "--broker", "alpaca", "--state-dir", str(tmp_path / "s2")],
         "set fill: next_open (got 'next_close')"),
        (["paper", str(path), "--broker", "alpaca", "--state-dir", str(tmp_path / "s2"), "--set",
          "execution.fill=next_open"], "data source 'sample' has no live feed"),
    ]
    for args, message in cases:
        result = runner.invoke(cli(), args)
        assert result.exit_code == 2, (args, result.output)
        lines = [x for x in result.output.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    for var in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY"):
        monkeypatch.delenv(var, raising=False)
    alp = sample_experiment(name="alp", data={"type": "alpaca", "params": {"symbols": ["AAPL"]}},
                            execution={"fill": "next_open"}, broker={"type": "alpaca"})
    result = runner.invoke(cli(), ["paper", str(alp), "--state-dir", str(tmp_path / "s3")])
    assert result.exit_code == 2 and "needs ALPACA_API_KEY and ALPACA_SECRET_KEY" in result.output


def test_replay_pace_and_end():
    idx = pd.bdate_range("2024-01-01", periods=5)
    from qf.bars import Bars

    bars = Bars(close=pd.DataFrame({"A": np.arange(1.0, 6.0)}, index=idx), source="t")
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    src = ReplaySource(bars, start=2, speed=4.0, clock=lambda: now[0], sleep=sleep)
    assert list(src.history().index) == list(idx[:2])
    assert src.poll(1.0)[0].time == idx[2]          # the first bar is due at once
    assert src.poll(0.1) == []                      # the next one 0.25 s later: not within 0.1 s
    assert src.poll(1.0)[0].time == idx[3]          # waited the remaining 0.15 s
    assert sum(slept) == pytest.approx(0.25)
    assert src.poll(1.0)[0].values["close"][0] == 5.0
    assert src.poll(1.0) is None                    # the replay has ended
    with pytest.raises(ValueError):
        ReplaySource(bars, start=6)


@pytest.mark.parametrize("spec", [{"freq": "daily"}, {"freq": "weekly"}, {"freq": "month_end"},
                                  {"freq": "quarter_end"}, {"every": 1}, {"every": 7}])
def test_calendar_schedule_is_the_backtest_schedule(spec):
    idx = pd.bdate_range("2023-11-20", "2024-04-10").drop(pd.DatetimeIndex(["2023-12-25", "2024-01-01",
                                                                            "2024-03-29"]))
    rs = RebalanceSpec(**spec)
    want = set(rebalance_dates(idx, rs))
    got = {t for t in idx if is_decision(t, rs, *index_calendar(idx, t, idx[0]))}
    assert got == want and len(got) > 0


def test_state_refuses_nonsense(tmp_path):
    state = PaperState(tmp_path / "paper.sqlite")
    assert state.bind(experiment="x", config_hash="h", broker="sim", symbols=["A"])
    assert not state.bind(experiment="x", config_hash="h", broker="sim", symbols=["A"])
    # nothing processed yet (a session refused at start-up): a corrected configuration claims the state
    assert state.bind(experiment="x", config_hash="h2", broker="sim", symbols=["A"])
    assert state.bind(experiment="x", config_hash="h", broker="sim", symbols=["A"])
    state.commit_bar(BarRecord(0, pd.Timestamp("2024-01-05"), 1e5, 1e5, np.array([0.0]), np.array([0.0]), {}))
    with pytest.raises(QfError, match="another configuration"):
        state.bind(experiment="x", config_hash="h2", broker="sim", symbols=["A"])
    with pytest.raises(QfError, match="another broker .*'sim', not 'alpaca'"):
        state.bind(experiment="x", config_hash="h", broker="alpaca", symbols=["A"])
    with pytest.raises(QfError, match="another symbols"):
        state.bind(experiment="x", config_hash="h", broker="sim", symbols=["A", "B"])
