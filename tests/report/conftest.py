"""Runs shared by the report tests: a backtest, a sweep and a walk-forward on real data, through the CLI.

The tear sheet tests (test_tearsheet_analysis.py) and the browser tests (test_pages_browser.py) read the same
three runs, computed once per test session (one xdist worker runs both modules: tests/conftest.py): each
costs seconds of simulation and quantstats drawing.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from qf.cli.main import app

BASE = """
name: {name}
data: {{type: sample, params: {{dataset: arch_sp500, start: "2016-01-01", end: "2018-12-31"}}}}
benchmark: {{symbol: SP500}}
signal: {{type: sma_cross, params: {{fast: 10, slow: 40}}}}
sizer: {{type: equal}}
rebalance: {{freq: daily}}
execution: {{fill: next_open, fees: 0.0005, initial_cash: 100000}}
report: {{dir: {root}}}
"""
SWEEP = """sweep:
  params: {signal.params.fast: [5, 10], signal.params.slow: [30, 40]}
  metric: sharpe
"""
WF = "walk_forward: {train: 250, test: 120}\n" + SWEEP
KINDS = {"backtest": "", "sweep": SWEEP, "walk_forward": WF}


def qf(*args: str) -> str:
    """``qf ARGS`` in process; a non-zero exit fails the test with qf's output."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def run_dir(root: Path, name: str) -> Path:
    """The one run folder qf wrote under ``root/name``."""
    (run,) = [p for p in (root / name).iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="session")
def report_runs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """``root`` (the report folder), ``experiments`` and ``runs`` (run folders) by kind: backtest, sweep,
    walk_forward; each run as a user types it, with a ``--set`` that the index page shows."""
    tmp = tmp_path_factory.mktemp("report_runs")
    root = tmp / "reports"
    experiments, runs = {}, {}
    for name, extra in KINDS.items():
        experiments[name] = tmp / f"{name}.yaml"
        experiments[name].write_text(BASE.format(name=name, root=root) + extra)
        qf("run", str(experiments[name]), "--set", "execution.slippage=0.0001")
        runs[name] = run_dir(root, name)
    return SimpleNamespace(root=root, tmp=tmp, experiments=experiments, runs=runs)
