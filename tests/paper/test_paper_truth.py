"""A paper session tells the backtest's story: same evaluation period and figures, same calendar.

- a ``--broker sim`` replay whose equity equals the backtest's reports the same metrics (the same
  evaluation period, warm-up excluded) and feeds its tear sheet the same returns, so ``qf report compare``
  shows identical rows;
- a session that did not run to its end says so (tear sheet, metrics.json, manifest.json);
- on data with gaps and delistings the replay never fills on a bar a symbol did not trade and places the
  backtest's orders (the engines' own trading calendar, :func:`qf.engines.inputs.build_inputs`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import qf.paper.feed as feed
import qf.report.tearsheet as tearsheet
from qf.bars import Bars, validate
from qf.cli.main import SUMMARY
from qf.cli.main import app as main_app
from qf.components import DataSource
from qf.config.loader import Source, build, load_experiment
from qf.engines.backtrader.strategy import run_backtrader
from qf.paper.session import PaperOptions, run_paper, warmup_bars
from qf.pipeline import compute_targets

runner = CliRunner()
PERIOD = ("eval_start", "eval_end", "eval_bars", "excluded_bars")


def _capture_tearsheets(monkeypatch: pytest.MonkeyPatch) -> list[tuple[pd.Series, dict[str, Any]]]:
    """Record the returns and page arguments of every tear sheet instead of drawing it (quantstats is slow)."""
    seen: list[tuple[pd.Series, dict[str, Any]]] = []

    def spy(returns: pd.Series, *args: Any, **kwargs: Any) -> None:
        seen.append((returns.copy(), kwargs))

    monkeypatch.setattr(tearsheet, "write_tearsheet", spy)
    return seen


def _compare_rows(a: Path, b: Path) -> list[list[str]]:
    """The body rows of ``qf report compare A B`` as [metric, A, B] (the header names the runs)."""
    result = runner.invoke(main_app, ["report", "compare", str(a), str(b)], terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in result.stdout.splitlines()
            if line.startswith("│")]
    return [r for r in rows if r[0] and r[0] != "metric"]


def test_sim_replay_reports_the_backtests_figures_and_tear_sheet(sample_experiment, tmp_path, monkeypatch):
    path = sample_experiment(report={"dir": str(tmp_path / "reports"), "tearsheet": True},
                             rebalance={"every": 5})
    seen = _capture_tearsheets(monkeypatch)
    back = runner.invoke(main_app, ["run", str(path), "--engine", "backtrader", "--out", str(tmp_path / "bt")])
    assert back.exit_code == 0, back.output
    exp = load_experiment(path)
    out = run_paper(exp, PaperOptions(broker="sim", speed=0, state_dir=tmp_path / "state"))
    assert out.status == "done" and out.report_dir is not None
    bt_m = json.loads((tmp_path / "bt" / "metrics.json").read_text())
    paper_m = json.loads((out.report_dir / "metrics.json").read_text())
    # the same account: the replay starts after the warm-up, where the backtest has not traded yet
    bt_eq = pd.read_parquet(tmp_path / "bt" / "equity.parquet")["equity"]
    np.testing.assert_allclose(out.equity.to_numpy(), bt_eq.iloc[warmup_bars(exp):].to_numpy(), rtol=1e-12)
    # the replay's curve is shorter (no warm-up bars), yet the period and every figure are the backtest's
    assert paper_m["n_bars"] < bt_m["n_bars"] and paper_m["eval_bars"] > 100
    assert {k: paper_m[k] for k in PERIOD if k != "excluded_bars"} == \
        {k: bt_m[k] for k in PERIOD if k != "excluded_bars"}
    for k in SUMMARY:
        assert paper_m[k] == pytest.approx(bt_m[k], rel=1e-9, abs=1e-12), k
    # the figures of `qf report compare` (its other rows say which run is which: kind, broker, ...)
    rows = {r[0]: r[1:] for r in _compare_rows(tmp_path / "bt", out.report_dir) if r[0] in ("period", *SUMMARY)}
    assert len(rows) == len(SUMMARY) + 1
    assert all(a == b for a, b in rows.values()), rows
    # both tear sheets are drawn from the same returns, the paper one without a warning (it ran to its end)
    assert len(seen) == 2
    pd.testing.assert_series_equal(seen[0][0], seen[1][0], rtol=1e-12, check_names=False)
    assert len(seen[1][0]) == paper_m["eval_bars"] and seen[1][1]["warning"] is None
    assert seen[1][1]["subtitle"] == "paper, backtrader" and paper_m["session_status"] == "done"


def test_an_interrupted_session_says_so_everywhere(sample_experiment, tmp_path, monkeypatch):
    path = sample_experiment(report={"dir": str(tmp_path / "reports"), "tearsheet": True})
    seen = _capture_tearsheets(monkeypatch)
    real = feed.ReplaySource.poll
    handed = []

    def poll(self, timeout):
        if len(handed) == 70:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the replay
        got = real(self, timeout)
        handed.extend(got or [])
        return got

    monkeypatch.setattr(feed.ReplaySource, "poll", poll)
    out = run_paper(load_experiment(path), PaperOptions(broker="sim", state_dir=tmp_path / "state"))
    assert out.status == "interrupted" and out.report_dir is not None
    metrics = json.loads((out.report_dir / "metrics.json").read_text())
    manifest = json.loads((out.report_dir / "manifest.json").read_text())
    info = json.loads((out.report_dir / "paper.json").read_text())
    assert metrics["session_status"] == manifest["paper_status"] == info["status"] == "interrupted"
    last = f"{out.equity.index[-1]:%Y-%m-%d}"
    assert info["note"].startswith("interrupted paper session") and info["note"].endswith(last)
    (_, page), = seen  # the tear sheet shows the note under its title
    assert page["warning"] == info["note"]


# -- a hand-made universe with a late listing, halts and delistings -----------------------------------------


def gappy_frames(n: int = 150, seed: int = 5) -> dict[str, pd.DataFrame]:
    """OHLCV random walks for 5 names; LATE lists on bar 30, GONE's data ends after bar 90, HALT misses bars
    50-52 and 100, BOTH lists on bar 20, misses 70-71 and ends after bar 120. NaN where a name did not trade."""
    rng = np.random.default_rng(seed)
    names = ["AAA", "LATE", "GONE", "HALT", "BOTH"]
    idx = pd.bdate_range("2020-01-02", periods=n)
    close = 30.0 * np.exp(np.cumsum(rng.normal(0.0005, 0.018, (n, len(names))), axis=0))
    opn = np.r_[close[:1], close[:-1]] * np.exp(rng.normal(0, 0.006, close.shape))
    absent = np.zeros(close.shape, dtype=bool)
    absent[:30, 1] = True
    absent[91:, 2] = True
    absent[[50, 51, 52, 100], 3] = True
    absent[:20, 4] = True
    absent[[70, 71], 4] = True
    absent[121:, 4] = True
    frames = {"open": opn, "high": np.maximum(opn, close) * 1.004, "low": np.minimum(opn, close) * 0.996,
              "close": close}
    return {f: pd.DataFrame(np.where(absent, np.nan, a), index=idx, columns=names) for f, a in frames.items()}


class Gappy(DataSource):
    """The universe above as a data source."""

    name: ClassVar[str] = "paper_gappy"

    def load(self) -> Bars:
        return validate(Bars(**gappy_frames(), source="gappy"))


@pytest.mark.parametrize(("fill", "on_delist"), [("next_open", "close"), ("next_close", "hold_cash_value"),
                                                 ("close", "close")])
def test_sim_replay_on_gaps_and_delistings_places_the_backtests_orders(fill, on_delist, tmp_path):
    exp = build({
        "name": "paper_gappy", "data": {"type": f"{__name__}:Gappy"},
        "signal": {"type": "momentum", "params": {"lookback": 8, "skip": 0}}, "sizer": {"type": "equal"},
        "rebalance": {"every": 2}, "risk": [{"type": "stop_loss", "params": {"pct": 0.06}}],
        "execution": {"engine": "backtrader", "fill": fill, "fees": 0.0005, "slippage": 0.0005,
                      "on_delist": on_delist},
        "report": {"dir": str(tmp_path / "reports"), "tearsheet": False},
    }, Source("test.yaml"), None)
    bars = exp.data.load()
    tg = compute_targets(exp, bars)
    want = run_backtrader(bars, tg.targets, tg.risk, exp.spec.execution, broker=exp.broker)
    # stopped after HALT's missing bar 52 (a decision whose order for it waits) and resumed: the same as one run
    first = run_paper(exp, PaperOptions(broker="sim", state_dir=tmp_path / "state", write_report=False,
                                        max_bars=52 - warmup_bars(exp) + 1))
    assert first.status == "stopped" and first.equity.index[-1] == bars.index[52]
    out = run_paper(exp, PaperOptions(broker="sim", state_dir=tmp_path / "state", write_report=False))
    assert out.status == "done"
    got = out.orders.reset_index(drop=True)
    start = bars.index[warmup_bars(exp)]
    expected = want.orders[want.orders["time"] >= start].reset_index(drop=True)
    assert len(got) == len(expected) > 40
    pd.testing.assert_frame_equal(got[["time", "symbol", "side"]], expected[["time", "symbol", "side"]])
    for col in ("quantity", "price", "fee"):
        np.testing.assert_allclose(got[col].to_numpy(), expected[col].to_numpy(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(out.equity.to_numpy(), want.equity.loc[start:].to_numpy(), rtol=1e-12)
    # no fill on a bar the symbol did not trade, and the names whose data ends are delisted like the backtest's
    raw = gappy_frames()["open" if fill == "next_open" else "close"]
    at = raw.stack(future_stack=True).reindex(pd.MultiIndex.from_frame(got[["time", "symbol"]]))
    assert at.notna().all(), got[at.isna().to_numpy()]
    assert {"GONE", "BOTH", "HALT", "LATE"} <= set(got["symbol"])
    delisted = out.events[out.events["event"] == "delisted"]
    assert delisted[["time", "symbol"]].values.tolist() == [[bars.index[90], "GONE"], [bars.index[120], "BOTH"]]
    pd.testing.assert_frame_equal(out.events.sort_values(["time", "event", "symbol"], ignore_index=True),
                                  want.events[want.events["time"] >= start].reset_index(drop=True))


def test_live_arrays_treat_a_missing_bar_as_a_gap_never_traded():
    from qf.config.schema import ExecutionSpec
    from qf.engines.kernels.risk import compose
    from qf.paper.strategy import SessionArrays

    idx = pd.bdate_range("2024-01-01", periods=3)
    close = pd.DataFrame({"A": [10.0, 11.0, 12.0], "B": [np.nan] * 3}, index=idx)
    a = SessionArrays(Bars(close=close, open=close, source="live"), ExecutionSpec(fill="next_open"), compose([]))
    i = a.append(pd.Timestamp("2024-01-04"), {"close": np.array([np.nan, 5.0]), "open": np.array([np.nan, 4.9])})
    # A has no bar: never traded there, valued and shown to the pipeline at its last close; B lists here
    assert np.isnan(a.exec_price[i, 0]) and a.close[i, 0] == 12.0 and a.exec_price[i, 1] == 4.9
    window = a.bars()
    assert window.close["A"].iloc[-1] == 12.0 and window.gaps is not None and bool(window.gaps["A"].iloc[-1])
    assert list(a.first_bar) == [0, i] and (a.delisted_at == -1).all()
    a.targets[i - 1] = [0.5, 0.5]
    a.adjust(i - 1)  # before B's listing its target is held at 0; A keeps its target (it waits for a bar)
    assert list(a.targets[i - 1]) == [0.5, 0.0]


# -- the history a live session loads -------------------------------------------------------------------------


class _Recorder:
    """A data source stand-in that records what a live session asks its live feed for."""

    name = "recorder"

    def __init__(self) -> None:
        self.asked: list[int | None] = []

    def live_source(self, min_history: int | None = 1) -> str:
        self.asked.append(min_history)
        return "source"


@pytest.mark.parametrize(("signal", "expected"), [
    ({"type": "sma_cross", "params": {"fast": 10, "slow": 40}}, 40),   # sma_cross: warmup 39 + 1 (> the sizer's 21)
    ({"type": "mean_reversion", "params": {"mode": "rsi", "window": 14}}, 375),   # the recursive RSI's bound
    ({"type": "swing", "params": {"trend": 50, "lookback": 20}}, None),   # path-dependent: the whole history
])
def test_a_live_session_asks_for_the_declared_history(signal, expected, sample_experiment):
    import dataclasses

    from qf.paper.session import _live_source, history_bars

    exp = load_experiment(sample_experiment(signal=signal))
    assert history_bars(exp) == expected
    data = _Recorder()
    assert _live_source(dataclasses.replace(exp, data=data)) == "source" and data.asked == [expected]


def test_alpaca_loads_the_whole_history_for_a_path_dependent_pipeline(alpaca, caplog):
    from qf_plugins.alpaca.source import AlpacaSource

    alpaca.store_bars(["AAPL", "MSFT"], lambda d: 100.0 + 0.1 * d.dayofyear, start="2023-06-01")
    asked = pd.Timestamp("2020-01-02")  # long before the broker's first bar
    live = AlpacaSource({"symbols": ["AAPL", "MSFT"], "start": f"{asked:%Y-%m-%d}", "poll_interval": 0.01,
                         "bar_delay": 600}).live_source(min_history=None)
    with caplog.at_level("WARNING"):
        history = live.history()
    bounded = AlpacaSource({"symbols": ["AAPL", "MSFT"], "poll_interval": 0.01, "bar_delay": 600})
    short = bounded.live_source(min_history=5).history()
    live.close()
    assert history.index[0] == pd.Timestamp("2023-06-01") and len(history.index) > len(short.index) >= 5
    lines = [r.getMessage() for r in caplog.records if "history starts on" in r.getMessage()]
    assert len(lines) == 1 and f"{history.index[0]:%Y-%m-%d}" in lines[0] and "2020-01-02" in lines[0]


# -- the dashboard and the replay's pace ----------------------------------------------------------------------


def test_the_dashboard_fits_a_24_line_terminal():
    from rich.console import Console

    from qf.paper.broker import BrokerView, FillView, OrderView, PositionView
    from qf.paper.strategy import SessionView
    from qf.paper.view import Pace, render

    busy = BrokerView("alpaca", cash=20_000.0, equity=101_234.5, buying_power=19_000.0,
                      positions=[PositionView(f"SYM{k}", 10.0 + k, 185.5, 1_860.0) for k in range(30)],
                      open_orders=[OrderView(f"20240105_S{k}", f"S{k}", "buy", 3.0, 1.0, "partially_filled")
                                   for k in range(9)],
                      fills=[FillView(pd.Timestamp("2024-01-08 09:30"), f"S{k}", "buy", 10.0, 185.5) for k in range(8)],
                      note="reconnected to the trade stream after a timeout " * 3)
    view = SessionView("hrp_swing_with_a_rather_long_experiment_name", "sim", pd.Timestamp("2024-01-05"), 2, 40,
                       busy, peak=110_000.0, drawdown=-0.0797, halted=True, halt_detail="until an operator resets it",
                       stops=["XOM", "KO"], last_decision="halt at 2024-01-05", message="resumed")
    pace = Pace(asked=50.0)
    for k in range(10):
        pace.bar(0.06 * k)
    quiet = SessionView("x", "sim", None, 0, 0, BrokerView("sim", 1e5, 1e5), peak=1e5, drawdown=0.0, halted=False)
    for v, p in ((view, pace), (quiet, None)):
        console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
        console.print(render(v, p))
        lines = console.export_text().splitlines()
        assert len(lines) == 24, "\n".join(lines)
        assert all(len(line) <= 80 for line in lines)
    text = "\n".join(lines)
    assert "positions: none" in text and "waiting for the first bar" in text
    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(render(view, pace))
    text = console.export_text()
    for piece in ("HALTED", "101,234.50", "-7.97%", "positions (30,", "not shown)", "open orders (9", "last fills (8",
                  "16.7 bars/s (asked 50: cannot keep up)", "SYM0", "20240105_S0"):
        assert piece in text, piece


def test_pace_and_a_steady_replay_grid():
    from qf.paper.view import Pace

    pace = Pace(asked=10.0)
    assert pace.text() == "" and pace.summary() == ""
    for k in range(11):
        pace.bar(100.0 + 0.1 * k)
    assert pace.rate == pytest.approx(10.0) and not pace.behind and pace.text() == "10.0 bars/s (asked 10)"
    slow = Pace(asked=50.0)
    for k in range(6):
        slow.bar(0.05 * k)
    assert slow.behind and slow.summary() == "pace: 6 bars in 0.2 s, 20.0 bars/s; asked 50: could not keep up " \
        "(about 50 ms a bar)"
    # bars are handed out on a 1/speed grid: 0.1 s of work per bar at 5 bars/s does not slow the replay down
    idx = pd.bdate_range("2024-01-01", periods=8)
    bars = Bars(close=pd.DataFrame({"A": np.arange(1.0, 9.0)}, index=idx), source="t")
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    src = feed.ReplaySource(bars, start=0, speed=5.0, clock=lambda: now[0], sleep=sleep)
    handed = []
    while (got := src.poll(1.0)) is not None:
        if got:
            handed.append(round(now[0], 9))
            now[0] += 0.1  # the session works on the bar
    assert handed == pytest.approx([0.2 * k for k in range(8)])
    # a bar that takes longer than the interval is followed by the next one at once, not by a burst
    now[0] = 0.0
    src = feed.ReplaySource(bars, start=0, speed=5.0, clock=lambda: now[0], sleep=sleep)
    handed = []
    for work in (0.5, 0.0, 0.0):
        src.poll(1.0)
        handed.append(round(now[0], 9))
        now[0] += work
    assert handed == pytest.approx([0.0, 0.5, 0.7])


def test_cli_reports_the_achieved_replay_speed(sample_experiment, tmp_path):
    from qf.cli.paper import paper

    app = typer.Typer()
    app.command("paper")(paper)
    app.command("noop")(lambda: None)
    result = runner.invoke(app, ["paper", str(sample_experiment()), "--broker", "sim", "--speed", "5000",
                                 "--max-bars", "15", "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 0, result.output
    m = re.search(r"pace: 15 bars in [\d.]+ s, ([\d.]+) bars/s; asked 5000: could not keep up \(about \d+ ms a bar\)",
                  result.stdout)
    assert m and float(m.group(1)) < 4500, result.stdout
    # on the per-bar status lines as it happens
    assert "bars/s (asked 5000: cannot keep up)" in " ".join(result.stderr.split())


def test_a_paper_tear_sheet_has_the_trades_section(sample_experiment, tmp_path):
    exp = load_experiment(sample_experiment(report={"dir": str(tmp_path / "reports"), "tearsheet": True}))
    out = run_paper(exp, PaperOptions(broker="sim", speed=0, state_dir=tmp_path / "state"))
    page = (out.report_dir / "tearsheet.html").read_text()
    summary = json.loads((out.report_dir / "metrics.json").read_text())["trades"]
    assert "<h2>Trades and exposure</h2>" in page and summary["n_trades"] > 0
