"""The Python API (qf.run, qf.sweep, Result): the README's example executed, errors, import cost, --version."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import qf
from qf.api import Result, overrides_of
from qf.cli.main import app
from qf.errors import ConfigError, QfError

ROOT = Path(__file__).resolve().parents[2]
SMA = str(ROOT / "experiments/sma_cross.yaml")
runner = CliRunner()


def readme_example() -> str:
    """The ```python block of the README's "Python API" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section has one python example"
    return blocks[0]


def test_readme_example_runs_and_its_objects_agree(tmp_path, monkeypatch):
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    monkeypatch.chdir(tmp_path)  # the example's relative paths: experiments/ in, reports/ out
    # quantstats' tear sheet takes seconds and has its own tests; here the report folder around it counts
    import qf.report.tearsheet

    sheets: list[Path] = []
    monkeypatch.setattr(qf.report.tearsheet, "write_tearsheet", lambda rets, bench, path, *a, **k: sheets.append(path))
    scope: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), scope)
    res, table, fig, pf = scope["res"], scope["table"], scope["fig"], scope["pf"]

    assert isinstance(res, Result) and res.engine == "vectorbt"
    m = res.metrics
    assert m["n_orders"] == len(res.orders) > 0 and res.equity.index[0] >= pd.Timestamp("2012-01-01")
    # round trips: open positions at the last close, so their P&L is the account's whole change
    assert res.trades["pnl"].sum() == pytest.approx(m["final_equity"] - m["initial_cash"], abs=1e-6)
    assert m["trades"]["n_trades"] == len(res.trades)
    # the vectorbt Portfolio of the run, whose own trade records are the round trips
    assert len(pf.trades.records) == len(res.trades)
    np.testing.assert_allclose(pf.trades.records["pnl"], res.trades["pnl"], atol=1e-9)
    stats = res.stats()
    assert list(stats.columns) == ["sma_cross"] and stats.loc["sharpe", "sma_cross"] == m["sharpe"]
    assert stats.loc["trades.win_rate", "sma_cross"] == m["trades"]["win_rate"]
    assert [t.name for t in fig.data] == ["equity", "drawdown"]
    assert fig.data[1].y.min() == pytest.approx(res.equity.div(res.equity.cummax()).min() - 1)
    assert res.weights.columns.tolist() == ["SP500"]

    # the report folder: what qf run writes, with trades.csv and the trade summary
    report = tmp_path / "reports" / "sma20"
    written = json.loads((report / "metrics.json").read_text())
    assert written["sharpe"] == m["sharpe"] and written["trades"] == json.loads(json.dumps(m["trades"]))
    trades_csv = pd.read_csv(report / "trades.csv", parse_dates=["entry_time", "exit_time"])
    assert trades_csv["pnl"].to_numpy() == pytest.approx(res.trades["pnl"].to_numpy())
    assert (tmp_path / "reports" / "index.html").is_file()
    assert [p.name for p in sheets] == ["tearsheet.html"]

    # the sweep table: one row per combination, best first, nothing written
    assert sorted(table["signal.params.fast"]) == [10, 20, 50]
    assert table["sharpe"].is_monotonic_decreasing
    assert table.loc[table["signal.params.fast"] == 20, "sharpe"].item() == pytest.approx(m["sharpe"])
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["index.html", "sma20"]


def test_report_refuses_a_folder_that_is_not_empty(tmp_path):
    res = qf.run(SMA, set={"data.params.start": "2016-01-01", "report.tearsheet": False})
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    with pytest.raises(QfError):
        res.report(tmp_path / "taken")
    out = res.report(tmp_path / "new")
    assert {"metrics.json", "trades.csv", "orders.csv"} <= {p.name for p in out.iterdir()}


def test_errors_raise_the_cli_messages(tmp_path):
    for bad in (["signal.params.fast=x"], ["sizer.type=hrpp"], ["nonsense"]):
        with pytest.raises(ConfigError) as exc:
            qf.run(SMA, set=bad)
        cli = runner.invoke(app, ["run", SMA, "--set", bad[0], "--out", str(tmp_path / "never")])
        assert cli.exit_code == 2
        assert cli.stderr.strip() == f"error: {exc.value.problems[0]}"
    with pytest.raises(ConfigError, match=r"--set sizer.type=hrpp: sizer.type: 'hrpp' is not an installed sizer"):
        qf.run(SMA, set={"sizer.type": "hrpp"})
    with pytest.raises(ConfigError, match="no such file"):
        qf.run(tmp_path / "missing.yaml")
    with pytest.raises(QfError, match="has no sweep: section"):
        qf.sweep(SMA)
    with pytest.raises(QfError, match=r"has a sweep: section; use qf.sweep"):
        qf.run(SMA, set={"sweep": {"params": {"signal.params.fast": [10, 20]}}})


def test_set_values_are_written_as_the_cli_would_type_them():
    assert overrides_of({"a.b": 20, "c": True, "d": [5, 10], "e": "2020-01-01", "f": None, "g": np.int64(3),
                         "h": dt.date(2020, 1, 2), "i": float("nan")}, "backtrader") == [
        "a.b=20", "c=true", "d=[5, 10]", "e=2020-01-01", "f=null", "g=3", "h=2020-01-02", "i=.nan",
        "execution.engine=backtrader"]
    assert overrides_of(["x.y=1"]) == ["x.y=1"] and overrides_of(None) == []


def test_backtrader_run_has_no_portfolio():
    res = qf.run(SMA, set={"data.params.start": "2017-01-01"}, engine="backtrader")
    assert res.engine == "backtrader" and res.portfolio is None
    assert res.metrics["trades"]["n_trades"] == len(res.trades) > 0


def test_import_qf_is_light_and_qf_run_is_the_api_function():
    code = (
        "import sys, qf\n"
        "heavy = [m for m in ('pandas', 'vectorbt', 'plotly', 'numba', 'qf.runner', 'qf.api') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import qf.runner\n"  # the engine-driving module does not shadow the notebook function
        "from qf import run\n"
        "import qf.api\n"
        "assert qf.run is run is qf.api.run and callable(qf.sweep) and qf.Result.__name__ == 'Result'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_version_option():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"qf {importlib.metadata.version('qf')}" == f"qf {qf.__version__}"


def test_cli_summary_shows_one_trade_line(capsys):
    from qf.cli.main import print_summary

    print_summary("x", {"sharpe": 1.0, "trades": {"n_closed": 12, "n_open": 1, "win_rate": 0.5,
                                                  "profit_factor": 1.25, "expectancy": 3.5,
                                                  "holding_bars_mean": 4.0}})
    out = capsys.readouterr().out
    assert ("trades: 12 closed, 1 open; win rate 50.0%, profit factor 1.25, expectancy 3.50, held 4.0 bars on "
            "average") in out


def test_sweep_writes_its_report_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default report folder would land here
    s = {"data.params.start": "2016-01-01", "report.tearsheet": False,
         "sweep": {"params": {"signal.params.fast": [10, 20]}, "metric": "sharpe"}}
    quiet = qf.sweep(SMA, set=s)
    assert list(tmp_path.iterdir()) == []
    table = qf.sweep(SMA, set=s, out=tmp_path / "sw")
    names = {p.name for p in (tmp_path / "sw").iterdir()}
    assert {"sweep.parquet", "best.json", "trades.csv", "metrics.json"} <= names
    pd.testing.assert_frame_equal(table, quiet)
    best = json.loads((tmp_path / "sw" / "best.json").read_text())
    assert best["params"]["signal.params.fast"] == table["signal.params.fast"].iloc[0]
    with pytest.raises(QfError, match="not empty"):
        qf.sweep(SMA, set=s, out=tmp_path / "sw")
