"""The CLI end to end: run writes a complete report, failures leave nothing, listing, plugins, data show."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from qf import hookimpl
from qf.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
SHORT = ["--set", "data.params.start=2019-01-01", "--set", "data.params.end=2021-12-31"]


@pytest.fixture(scope="module")
def report_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reports")
    result = runner.invoke(app, ["run", str(ROOT / "experiments/buy_and_hold.yaml"), *SHORT,
                                 "--set", f"report.dir={root}"])
    assert result.exit_code == 0, result.output
    return root


def test_run_writes_every_report_file(report_root):
    (run,) = list((report_root / "buy_and_hold").iterdir())
    names = {p.name for p in run.iterdir()}
    assert {"tearsheet.html", "metrics.json", "equity.parquet", "orders.csv", "weights.parquet", "config.yaml",
            "manifest.json"} <= names
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("final_equity", "total_return", "cagr", "sharpe", "sortino", "max_drawdown", "volatility",
                "n_orders", "fees_paid", "turnover"):
        assert key in metrics
    orders = pd.read_csv(run / "orders.csv")
    assert list(orders.columns) == ["time", "symbol", "side", "quantity", "price", "fee"]
    assert metrics["n_orders"] == len(orders) > 20
    manifest = json.loads((run / "manifest.json").read_text())
    assert {"versions", "config_hash", "data_hash", "git_commit", "engine"} <= set(manifest)
    assert manifest["versions"]["vectorbt"]
    html = (run / "tearsheet.html").read_text()
    assert "buy_and_hold" in html and "SP500" in html  # titled after the experiment, with the benchmark
    eq = pd.read_parquet(run / "equity.parquet")
    assert eq["equity"].iloc[-1] == pytest.approx(metrics["final_equity"])


def test_index_and_report_list(report_root):
    index = (report_root / "index.html").read_text()
    assert "buy_and_hold" in index and "tearsheet.html" in index
    result = runner.invoke(app, ["report", "list", "--root", str(report_root)])
    assert result.exit_code == 0 and "buy_and_hold" in result.stdout


def test_report_compare(report_root):
    (run,) = list((report_root / "buy_and_hold").iterdir())
    result = runner.invoke(app, ["report", "compare", str(run), str(run)])
    assert result.exit_code == 0 and "sharpe" in result.stdout
    bad = runner.invoke(app, ["report", "compare", str(run), str(report_root)])
    assert bad.exit_code == 2 and "not a run folder" in bad.stderr


def test_failed_run_leaves_nothing(tmp_path):
    result = runner.invoke(app, ["run", str(ROOT / "experiments/buy_and_hold.yaml"), *SHORT,
                                 "--set", f"report.dir={tmp_path}", "--set", "execution.fill=next_open"])
    assert result.exit_code == 2
    assert "'next_open' needs open prices" in result.stderr
    assert "Traceback" not in result.output
    assert list(tmp_path.rglob("*")) == []


def test_failure_while_writing_removes_the_temporary_folder(tmp_path, monkeypatch):
    import qf.report.tearsheet as ts

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ts, "write_tearsheet", boom)
    with pytest.raises(RuntimeError):
        runner.invoke(app, ["run", str(ROOT / "experiments/buy_and_hold.yaml"), *SHORT, "--out",
                            str(tmp_path / "out")], catch_exceptions=False)
    assert list(tmp_path.iterdir()) == []


def test_lifecycle_hooks_are_called(tmp_path):
    from qf.config.loader import load_experiment
    from qf.registry import Registry, new_plugin_manager, register_builtins
    from qf.runner import run_experiment

    calls = []

    class Watcher:
        @hookimpl
        def qf_before_run(self, experiment):
            calls.append(("before", experiment.name))

        @hookimpl
        def qf_after_run(self, experiment, result, report_dir):
            calls.append(("after", result.metrics["n_orders"] > 0, report_dir))

    pm = new_plugin_manager()
    register_builtins(pm)
    pm.register(Watcher())
    reg = Registry(pm)
    exp = load_experiment(ROOT / "experiments/buy_and_hold.yaml", ["data.params.start=2021-01-01"], registry=reg)
    run_experiment(exp, write=False, registry=reg)
    assert calls == [("before", "buy_and_hold"), ("after", True, None)]


def test_plugins_command_lists_every_kind():
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0
    for word in ("data source", "signal model", "sizer", "risk rule", "broker", "hrp", "swing", "sample"):
        assert word in result.stdout


def test_data_show():
    result = runner.invoke(app, ["data", "show", "--source", "sample", "--dataset", "sp500_20"])
    assert result.exit_code == 0, result.output
    assert "AAPL" in result.stdout and "8313 bars" in result.stdout
    bad = runner.invoke(app, ["data", "show", "--source", "sample", "--dataset", "sp500_21"])
    assert bad.exit_code == 2 and "dataset=sp500_21: params.dataset" in bad.stderr
    unknown = runner.invoke(app, ["data", "show", "--source", "sampel"])
    assert unknown.exit_code == 2 and "did you mean 'sample'" in unknown.stderr


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    for cmd in ("run", "validate", "plugins", "schema", "report", "data", "parity", "new-plugin", "alpaca-emulator"):
        assert cmd in result.stdout


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_experiment_validates(path, monkeypatch):
    monkeypatch.delenv("ALPACA_API_KEY", raising=False)
    monkeypatch.delenv("ALPACA_SECRET_KEY", raising=False)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ok"


def test_readme_experiment_examples_validate(tmp_path):
    import re

    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    experiment, sweep = blocks[0], blocks[1]
    for i, text in enumerate((experiment, experiment + sweep)):
        path = tmp_path / f"readme_{i}.yaml"
        path.write_text(text)
        result = runner.invoke(app, ["validate", str(path)])
        assert result.exit_code == 0, result.output
