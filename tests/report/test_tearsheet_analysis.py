"""The tear sheet's "Trades and exposure" section and its layout fixes: the section's figures are
metrics.json's trade summary on backtest, sweep-best and walk-forward pages; a run without trades gets a
sentence; partial years and short periods are labelled for what they are; nothing loads from the network."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qf.cli.main import app
from qf.report.analysis import TradeData
from qf.report.tearsheet import write_tearsheet, year_labels
from qf.report.trades import TRADE_COLUMNS, trade_summary

from .conftest import BASE

runner = CliRunner()


def _resources(page: str) -> list[str]:
    return re.findall(r"<(?:link|script|img|iframe|source|image)\b[^>]*?(?:href|src)=\"(https?:[^\"]*)\"", page, re.I)


def _section(page: str) -> str:
    start = page.index('<div id="analysis">')
    return page[start:page.index("</body>")]


def _values(section: str) -> dict[str, float | None]:
    """The summary table's data-key -> data-value (the unrounded number the cell shows)."""
    return {k: None if v == "None" else float(v)
            for k, v in re.findall(r'data-key="(\w+)" data-value="([^"]*)"', section)}


@pytest.fixture(scope="module")
def runs(report_runs) -> dict[str, Path]:
    """A backtest, a sweep and a walk-forward on real data, run through the CLI (tests/report/conftest.py)."""
    return report_runs.runs


@pytest.mark.parametrize("kind", ["backtest", "sweep", "walk_forward"])
def test_the_section_shows_metrics_json_trade_summary(runs, kind):
    run = runs[kind]
    summary = json.loads((run / "metrics.json").read_text())["trades"]
    page = (run / "tearsheet.html").read_text()
    section = _section(page)
    assert "<h2>Trades and exposure</h2>" in section
    shown = _values(section)
    for key in ("win_rate", "profit_factor", "avg_win", "avg_loss", "expectancy", "holding_bars_mean",
                "holding_bars_median", "n_closed", "n_open", "total_pnl", "fees", "gross_exposure_avg"):
        assert key in shown, key
        assert shown[key] == summary[key], key  # the same number, not a second computation
    assert summary["n_closed"] > 0
    # the first best and worst rows are the summary's best and worst trades
    best = re.search(r'<tr class="best"><td>Best 1</td><td>([^<]+)</td>.*?data-value="([^"]+)"', section)
    worst = re.search(r'<tr class="worst"><td>Worst 1</td><td>([^<]+)</td>.*?data-value="([^"]+)"', section)
    assert (best.group(1), float(best.group(2))) == (summary["best_trade"]["symbol"], summary["best_trade"]["pnl"])
    assert (worst.group(1), float(worst.group(2))) == (summary["worst_trade"]["symbol"],
                                                     summary["worst_trade"]["pnl"])
    # four charts: holding periods, P&L by symbol, exposure, target weights (the caption says which)
    assert section.count("<svg") == 4
    for title in ("Holding period of closed round trips", "P&amp;L by symbol", "Exposure (fraction of equity",
                  "Target weights (set on rebalance dates)"):
        assert title in section, title
    assert "weights.parquet" in section
    trades = pd.read_csv(run / "trades.csv")
    assert f"{summary['n_closed']} closed round trips" in section and len(trades) == summary["n_trades"]


@pytest.mark.parametrize("kind", ["backtest", "sweep", "walk_forward"])
def test_pages_load_nothing_remote_and_charts_do_not_overlap(runs, kind):
    page = (runs[kind] / "tearsheet.html").read_text()
    assert _resources(page) == []
    assert "<script" not in page and "onload" not in page
    # negative margins stacked each chart over the previous one's date labels (the heatmap title was hidden)
    assert not re.search(r"margin:\s*-", page)


def test_walk_forward_partial_years_are_labelled(runs):
    run = runs["walk_forward"]
    metrics = json.loads((run / "metrics.json").read_text())
    eq = pd.read_parquet(run / "equity.parquet")["equity"]
    period = eq.loc[pd.Timestamp(metrics["eval_start"]):].index
    labels = year_labels(period)
    assert labels[period[0].year].startswith(f"{period[0].year} (")  # starts mid-year: days counted
    page = (run / "tearsheet.html").read_text()
    eoy = page[page.index('<div id="eoy">'):page.index('<div id="ddinfo">')]
    assert re.findall(r"<tr><td>([^<]+)</td>", eoy) == list(labels.values())


def test_year_labels():
    labels = year_labels(pd.bdate_range("2016-12-30", "2018-06-29"))
    assert labels == {2016: "2016 (1 day)", 2017: "2017", 2018: "2018 (130 days)"}
    assert year_labels(pd.bdate_range("2011-01-03", "2012-12-31")) == {2011: "2011", 2012: "2012"}
    # holidays at the year's edges still count as a whole year; a tz-aware live index works
    idx = pd.bdate_range("2019-01-02", "2019-12-27", tz="America/New_York")
    assert year_labels(idx) == {2019: "2019"}
    assert year_labels(pd.DatetimeIndex([])) == {}


def _no_trades() -> TradeData:
    trades = pd.DataFrame(columns=TRADE_COLUMNS)
    return TradeData(trades, trade_summary(trades))


def test_a_short_period_without_trades_gets_sentences_not_empty_charts(tmp_path):
    idx = pd.bdate_range("2024-01-02", "2024-05-31")  # a 5-month paper session
    rng = np.random.default_rng(1)
    rets = pd.Series(rng.normal(0.0005, 0.01, len(idx)), index=idx)
    bench = pd.Series(rng.normal(0.0003, 0.01, len(idx)), index=idx, name="SP500")
    path = tmp_path / "t.html"
    write_tearsheet(rets, bench, path, "short", trades=_no_trades())
    page = path.read_text()
    assert "No rolling volatility, Sharpe or beta charts" in page and f"this period has {len(idx)}" in page
    for slot in ("rolling_vol", "rolling_sharpe", "rolling_beta"):
        assert not re.search(rf'<div id="{slot}">\s*<svg', page), slot
    assert f"<tr><td>2024 ({len(idx)} days)</td>" in page  # the EOY row of a part of a year
    section = _section(page)
    assert "No trades in this run" in section and "<svg" not in section
    assert _resources(page) == []


def test_a_run_with_no_trades_says_so(tmp_path):
    path = tmp_path / "none.yaml"
    # a constant score of 0 never asks for a position: no order, a full evaluation period
    text = BASE.format(name="none", root=tmp_path / "reports")
    path.write_text(text.replace("{type: sma_cross, params: {fast: 10, slow: 40}}",
                                 "{type: constant, params: {value: 0}}"))
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["trades"]["n_trades"] == 0
    section = _section((tmp_path / "r" / "tearsheet.html").read_text())
    assert "No trades in this run" in section and "<svg" not in section


def test_a_failing_section_does_not_fail_the_page(tmp_path, monkeypatch):
    import qf.report.analysis as analysis

    def broken(*a, **k):
        raise ValueError("no font")

    monkeypatch.setattr(analysis, "_holding_chart", broken)
    idx = pd.bdate_range("2024-01-02", periods=5)
    trades = pd.DataFrame([{"symbol": "A", "direction": "long", "status": "closed", "entry_time": idx[0],
                            "exit_time": idx[2], "quantity": 1.0, "entry_price": 10.0, "exit_price": 11.0,
                            "entry_fees": 0.0, "exit_fees": 0.0, "fees": 0.0, "pnl": 1.0, "return": 0.1,
                            "holding_bars": 2, "position_id": 0}])
    path = tmp_path / "t.html"
    write_tearsheet(pd.Series(0.0, index=idx), None, path, "exp", metrics={"sharpe": 0.0},
                    trades=TradeData(trades, trade_summary(trades)))
    page = path.read_text()
    assert "No charts" in page and "Not drawn: ValueError: no font" in page


def test_positions_never_closed_get_a_sentence_not_an_empty_histogram():
    from qf.report.analysis import analysis_section
    from qf.report.trades import exposure, round_trips

    idx = pd.bdate_range("2024-01-02", periods=30, tz="America/New_York")  # live bars are time-zoned
    close = pd.DataFrame({"A": np.linspace(100.0, 129.0, 30), "B": 50.0}, index=idx)
    orders = pd.DataFrame({"time": idx[[3, 5]], "symbol": ["A", "B"], "side": ["buy", "sell"], "quantity": 10.0,
                           "price": [103.0, 50.0], "fee": 0.1})
    equity = pd.Series(10_000.0, index=idx)
    trades = round_trips(orders, close)
    summary = trade_summary(trades, exposure(orders, close, equity), str(idx[3]))
    weights = pd.DataFrame({"A": 0.1, "B": -0.05}, index=idx[::5])
    section = analysis_section(TradeData(trades, summary, orders, close, equity, weights, str(idx[3])))
    assert summary["n_closed"] == 0 and summary["n_open"] == 2
    assert "No closed round trip yet" in section and "Holding period" not in section
    assert section.count("<svg") == 3  # P&L by symbol, exposure, weights (a short stacks below zero)
    assert _values(section)["open_pnl"] == summary["open_pnl"] and _values(section)["win_rate"] is None
