"""One truth: metrics.json, the CLI, the tear sheet, compare and sweep rows are one computation over one
evaluation period that excludes the warm-up."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from qf.cli.main import app
from qf.config.loader import load_experiment
from qf.engines.result import ORDER_COLUMNS, EngineResult
from qf.report.metrics import compute_metrics, eval_returns, evaluation_start
from qf.report.tearsheet import quantstats_headline
from qf.runner import RunOutcome, run_experiment, write_report

runner = CliRunner()

# hrp_swing with six names, four years and shorter windows, so it runs in seconds
HRP = """
name: hrp_small
data: {type: sample, params: {dataset: sp500_20, symbols: [AAPL, AMD, BAC, JPM, KO, PG],
                              start: "2018-01-01", end: "2020-06-30"}}
benchmark: {type: sample, params: {dataset: sp500_index}}
signal: {type: swing, params: {trend: 100, lookback: 63, rsi_window: 3, entry_rsi: 20, exit_rsi: 70, max_hold: 15}}
sizer: {type: hrp, params: {window: 126}}
risk:
  - {type: max_weight, params: {limit: 0.4}}
  - {type: drawdown_halt, params: {max_drawdown: 0.25, cooldown_bars: 20}}
rebalance: {freq: weekly}
execution: {engine: vectorbt, fill: next_close, fees: 0.0005, slippage: 0.0005, initial_cash: 100000,
            fractional: true, min_order_value: 100}
"""

HEADLINE = ("cagr", "sharpe", "sortino", "volatility", "max_drawdown")


@pytest.fixture(scope="module")
def hrp(tmp_path_factory):
    root = tmp_path_factory.mktemp("hrp")
    path = root / "hrp_small.yaml"
    path.write_text(HRP)
    exp = load_experiment(path, [f"report.dir={root / 'reports'}"])
    outcome = run_experiment(exp, out=root / "reports" / "hrp_small" / "backtest")
    return exp, outcome


def _cell(page: str, label: str) -> str:
    m = re.search(rf"<tr><td>{re.escape(label)}</td><td>([^<]*)</td><td>([^<]*)</td></tr>", page)
    assert m, f"no {label!r} row in the tear sheet"
    return m.group(2)  # the strategy's column (the benchmark comes first)


def test_period_starts_after_the_warmup_at_the_first_fill(hrp):
    exp, outcome = hrp
    m = outcome.metrics
    idx = outcome.bars.index
    warm = max(exp.signal.warmup, exp.sizer.warmup)
    decisions = outcome.targets.targets.index
    first_decision = decisions[idx.get_indexer(decisions) >= warm][0]
    expected = idx[idx.get_loc(first_decision) + 1]  # next_close: the decision fills on the next bar
    assert pd.Timestamp(m["eval_start"]) == expected
    assert m["eval_bars"] == len(idx) - idx.get_loc(expected) == m["n_bars"] - m["excluded_bars"]
    assert m["eval_end"] == str(idx[-1].date())
    assert (m["periods_per_year"], m["risk_free"]) == (252, 0.0) and "cagr_convention" in m
    # nothing traded before the period, so leaving it out loses no order
    orders = outcome.result.orders
    assert pd.DatetimeIndex(orders["time"]).min() >= expected and m["n_orders"] == len(orders)


def test_metrics_json_equals_the_tear_sheet(hrp):
    exp, outcome = hrp
    folder = outcome.report_dir
    m = json.loads((folder / "metrics.json").read_text())
    equity = pd.read_parquet(folder / "equity.parquet")["equity"]
    rets = eval_returns(equity, m["initial_cash"], pd.Timestamp(m["eval_start"]))
    assert len(rets) == m["eval_bars"]
    qs = quantstats_headline(rets)
    for k in HEADLINE:
        assert m[k] == pytest.approx(qs[k], abs=1e-9, rel=0), k
    page = (folder / "tearsheet.html").read_text()
    assert float(_cell(page, "CAGR").rstrip("%")) == pytest.approx(round(m["cagr"] * 100, 2), abs=1e-9)
    assert float(_cell(page, "Sharpe")) == pytest.approx(round(m["sharpe"], 2), abs=1e-9)
    assert float(_cell(page, "Sortino")) == pytest.approx(round(m["sortino"], 2), abs=1e-9)
    assert float(_cell(page, "Max Drawdown").rstrip("%")) == pytest.approx(round(m["max_drawdown"] * 100, 2),
                                                                           abs=1e-9)
    # the page states the same period
    start = pd.Timestamp(m["eval_start"])
    assert re.search(rf"<h1>hrp_small <small>\s*{start.day} {start:%b}, {start.year} - ", page)


def test_compare_of_identical_equity_shows_identical_numbers(hrp, tmp_path):
    """A run whose equity starts at the warm-up bar (like a paper replay) but is otherwise identical."""
    exp, outcome = hrp
    idx = outcome.bars.index
    warm = max(exp.signal.warmup, exp.sizer.warmup)
    res = outcome.result
    late = EngineResult("backtrader", res.equity.iloc[warm:], res.orders, res.events)
    start = evaluation_start(exp, idx, outcome.targets.targets)
    metrics = compute_metrics(late, exp.spec.execution.initial_cash, eval_start=start)
    spec = exp.spec.model_copy(update={"report": exp.spec.report.model_copy(update={"tearsheet": False})})
    exp = dataclasses.replace(exp, spec=spec)
    other = write_report(exp, RunOutcome(exp, outcome.bars, outcome.targets, late, metrics, None),
                         tmp_path / "late", "late", "backtrader", kind="paper")
    result = runner.invoke(app, ["report", "compare", str(outcome.report_dir), str(other)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.count("│") == 4]
    assert len(rows) >= 10
    for line in rows[1:]:  # the first is the header (run names)
        _, label, a, b, _ = line.split("│")
        assert a.strip() == b.strip(), f"{label.strip()}: {a.strip()} != {b.strip()}"
    assert any("period" in line and outcome.metrics["eval_start"] in line for line in rows)
    summary = runner.invoke(app, ["report", "list", "--root", str(outcome.report_dir.parents[1])])
    assert summary.exit_code == 0


def test_cli_summary_states_the_period(tmp_path):
    root = Path(__file__).resolve().parents[2]
    result = runner.invoke(app, ["run", str(root / "experiments/buy_and_hold.yaml"), "--set",
                                 "data.params.start=2019-01-01", "--set", "data.params.end=2020-12-31", "--set",
                                 "report.tearsheet=false", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["excluded_bars"] > 0  # monthly rebalancing: January 2019 is flat
    assert f"{m['eval_start']} to {m['eval_end']}, {m['eval_bars']} bars" in result.stdout
    assert f"{m['excluded_bars']} warm-up bars before the period are excluded" in result.stdout


def _result(values: np.ndarray, idx: pd.DatetimeIndex, orders: pd.DataFrame | None = None) -> EngineResult:
    return EngineResult("vectorbt", pd.Series(values, index=idx),
                        orders if orders is not None else pd.DataFrame(columns=ORDER_COLUMNS))


def test_warmup_bars_are_excluded_from_every_statistic():
    idx = pd.bdate_range("2020-01-01", periods=700)
    rng = np.random.default_rng(7)
    r = rng.normal(0.0, 0.011, 500)
    live = 100_000 * np.cumprod(1 + r - r.mean() + 0.0008)  # a positive drift whatever the draw
    values = np.r_[np.full(200, 100_000.0), live]
    orders = pd.DataFrame({"time": [idx[200], idx[450]], "symbol": ["X", "X"], "side": ["buy", "sell"],
                           "quantity": [900.0, 300.0], "price": [110.0, 120.0], "fee": [5.0, 2.0]})
    full = compute_metrics(_result(values, idx, orders), 100_000)
    evald = compute_metrics(_result(values, idx, orders), 100_000, eval_start=idx[200])
    # the same curve without its flat warm-up, measured from the same starting cash
    alone = compute_metrics(_result(live, idx[200:], orders), 100_000)
    for k in ("cagr", "sharpe", "sortino", "volatility", "max_drawdown", "turnover", "total_return", "fees_paid",
              "n_orders"):
        assert evald[k] == pytest.approx(alone[k], rel=1e-12, abs=1e-15), k
    assert (evald["eval_bars"], evald["excluded_bars"], evald["eval_start"]) == (500, 200, str(idx[200].date()))
    # the flat bars would have diluted Sharpe by about sqrt(500/700) and stretched CAGR over 700 bars
    assert full["sharpe"] < evald["sharpe"] * 0.9 and full["cagr"] < evald["cagr"] * 0.8
    assert full["eval_bars"] == 700
    # CAGR convention: (end/start) ** (252 / eval_bars) - 1
    assert evald["cagr"] == pytest.approx((live[-1] / 100_000) ** (252 / 500) - 1, rel=1e-12)


def test_empty_or_one_bar_periods_do_not_fail():
    idx = pd.bdate_range("2020-01-01", periods=3)
    m = compute_metrics(_result(np.full(3, 100.0), idx), 100.0, eval_start=idx[-1] + pd.Timedelta(days=1))
    assert m["eval_bars"] == 0 and m["sharpe"] == 0.0 and m["cagr"] == 0.0 and m["eval_end"] is None
    one = compute_metrics(_result(np.array([101.0]), idx[:1]), 100.0)
    assert one["eval_bars"] == 1 and one["total_return"] == pytest.approx(0.01) and one["sharpe"] == 0.0


def test_a_period_read_back_from_metrics_json_works_on_live_time_zoned_bars():
    idx = pd.date_range("2024-03-01 21:00", periods=30, freq="B", tz="UTC")
    values = 100.0 * np.cumprod(1 + np.linspace(-0.01, 0.012, 30))
    orders = pd.DataFrame({"time": [idx[3].tz_convert(None), idx[20].tz_convert(None)], "symbol": ["X", "X"],
                           "side": ["buy", "sell"], "quantity": [1.0, 1.0], "price": [100.0, 101.0],
                           "fee": [0.1, 0.1]})
    m = compute_metrics(_result(values, idx, orders), 100.0, eval_start=idx[10])
    again = compute_metrics(_result(values, idx, orders), 100.0, eval_start=m["eval_start"])
    assert again == m and m["eval_bars"] == 20 and m["n_orders"] == 1
    assert len(eval_returns(pd.Series(values, index=idx), 100.0, m["eval_start"])) == 20


def _exp(signal: int, sizer: int, fill: str) -> SimpleNamespace:
    return SimpleNamespace(signal=SimpleNamespace(warmup=signal), sizer=SimpleNamespace(warmup=sizer),
                           spec=SimpleNamespace(execution=SimpleNamespace(fill=fill)))


def test_evaluation_start_rules():
    idx = pd.bdate_range("2024-01-01", periods=60)
    weekly = idx[idx.dayofweek == 4]  # Fridays
    targets = pd.DataFrame(0.0, index=weekly, columns=["A", "B"])
    targets.iloc[5:] = 0.5
    # longest warm-up 12 bars: the first Friday at or after bar 12 decides, the next bar fills
    friday = weekly[idx.get_indexer(weekly) >= 12][0]
    nxt = idx[idx.get_loc(friday) + 1]
    assert evaluation_start(_exp(12, 3, "next_close"), idx, targets) == nxt
    assert evaluation_start(_exp(3, 12, "next_open"), idx, targets) == nxt
    assert evaluation_start(_exp(12, 0, "close"), idx, targets) == friday  # fills at the decision's close
    # a pipeline that already holds weights before its declared warm-up is evaluated from then
    early = targets.copy()
    early.iloc[1] = 0.2
    assert evaluation_start(_exp(40, 0, "close"), idx, early) == weekly[1]
    # trade_from: nothing fills before it
    after = weekly[idx.get_indexer(weekly) >= 30][0]
    assert evaluation_start(_exp(0, 0, "close"), idx, targets, trade_from=30) == after
    # nothing can be traded: the period starts after the data
    assert evaluation_start(_exp(100, 0, "close"), idx, targets.iloc[:0]) > idx[-1]


SWEEP = """
name: sweep_bt
data: {type: sample, params: {dataset: arch_sp500, start: "2016-01-01", end: "2017-12-31"}}
benchmark: {symbol: SP500}
signal: {type: sma_cross, params: {fast: 10, slow: 40}}
sizer: {type: equal}
rebalance: {freq: daily}
execution: {engine: backtrader, fill: next_open, fees: 0.0005, slippage: 0.0002}
sweep:
  params:
    signal.params.fast: [5, 10]
    signal.params.slow: [30, 60]
  metric: sharpe
"""


def test_sweep_honours_the_engine_and_its_best_combination_passes_parity(tmp_path, monkeypatch):
    import qf.engines.backtrader.strategy as bt
    from qf.research.sweep import run_sweep

    calls = []
    real = bt.run_backtrader

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(bt, "run_backtrader", counting)
    path = tmp_path / "sweep_bt.yaml"
    path.write_text(SWEEP)
    exp = load_experiment(path, [f"report.dir={tmp_path / 'reports'}", "report.tearsheet=false"])
    out = io.StringIO()
    report = run_sweep(exp, tmp_path / "reports" / "sweep_bt" / "sweep", Console(file=out, width=200))
    table = pd.read_parquet(report / "sweep.parquet")
    assert len(calls) == len(table) + 1 == 5  # every combination and the best's report went through backtrader
    n_bars = json.loads((report / "manifest.json").read_text())["data"]["bars"]
    for i in (0, 3):
        fast, slow = int(table["signal.params.fast"].iloc[i]), int(table["signal.params.slow"].iloc[i])
        single = load_experiment(path, [f"signal.params.fast={fast}", f"signal.params.slow={slow}", "sweep=null"])
        m = run_experiment(single, write=False).metrics
        assert single.spec.execution.engine == "backtrader"
        row = table.iloc[i]
        for k in ("final_equity", "sharpe", "cagr", "max_drawdown", "n_orders", "eval_start", "eval_bars"):
            assert row[k] == pytest.approx(m[k], rel=1e-12, abs=1e-12) if isinstance(m[k], float) else row[k] == m[k]
        # sma_cross decides first at bar slow - 1 and fills at the next open
        assert row["eval_bars"] == n_bars - slow
    best = json.loads((report / "best.json").read_text())
    metrics = json.loads((report / "metrics.json").read_text())
    assert best["n_obs"] == metrics["eval_bars"]  # PSR/DSR use the post-warm-up returns
    assert json.loads((report / "manifest.json").read_text())["engine"] == "backtrader"
    page = (report / "sweep.html").read_text()
    assert f"PSR {best['psr']:.3f}" in page and f"DSR {best['dsr']:.3f}" in page
    assert "probabilistic Sharpe ratio" in page and "deflated Sharpe ratio" in page
    assert f"qf parity {report}" in out.getvalue()
    monkeypatch.undo()
    checked = runner.invoke(app, ["parity", str(report)])
    assert checked.exit_code == 0, checked.output
    assert "the engines agree" in checked.stdout
    from qf.cli.parity import load_run_config

    loaded = load_run_config(report, [])
    assert loaded.signal.params.fast == best["params"]["signal.params.fast"]
    assert loaded.signal.params.slow == best["params"]["signal.params.slow"]


def test_parity_refuses_a_folder_that_is_not_a_run(tmp_path):
    result = runner.invoke(app, ["parity", str(tmp_path)])
    assert result.exit_code == 2 and "not a run folder" in result.stderr and "Traceback" not in result.output


def test_parity_of_a_run_folder_resolves_local_components_from_the_experiment(tmp_path):
    """config.yaml sits in the report folder; a local strategy file is found next to the experiment."""
    exp_dir = tmp_path / "proj"
    (exp_dir / "strategies").mkdir(parents=True)
    (exp_dir / "strategies" / "always.py").write_text(
        "from qf.components import SignalModel\n\n\n"
        "class Always(SignalModel):\n    name = 'always'\n\n"
        "    def compute(self, bars):\n        return bars.close * 0 + 1.0\n")
    exp_file = exp_dir / "local.yaml"
    exp_file.write_text(
        "name: local\ndata: {type: sample, params: {dataset: arch_sp500, start: '2017-01-01', end: '2017-06-30'}}\n"
        "signal: {type: 'strategies/always.py:Always'}\nsizer: {type: equal}\nrebalance: {freq: month_end}\n"
        "execution: {fill: next_open}\n")
    exp = load_experiment(exp_file, [f"report.dir={tmp_path / 'reports'}", "report.tearsheet=false"])
    folder = run_experiment(exp, out=tmp_path / "reports" / "local" / "r1").report_dir
    result = runner.invoke(app, ["parity", str(folder)])
    assert result.exit_code == 0, result.output
    redacted = folder.parent / "r2"
    redacted.mkdir()
    (redacted / "config.yaml").write_text((folder / "config.yaml").read_text().replace("dataset: arch_sp500",
                                                                                      "dataset: '***'"))
    bad = runner.invoke(app, ["parity", str(redacted)])
    assert bad.exit_code == 2 and "redacted" in bad.stderr


def test_readme_states_the_conventions():
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "CAGR = (end / start) ^ (252 / eval_bars) - 1" in text and "`eval_start`, `eval_end`, `eval_bars`" in text
