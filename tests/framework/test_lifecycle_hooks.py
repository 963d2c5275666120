"""Lifecycle hooks fire once per run for every runner, through the one place that fires them
(:func:`qf.runner.lifecycle`): ``qf run`` (single, sweep, walk-forward, CPCV), ``qf parity``, ``qf paper``
(a sim replay) and the Python API (``qf.run``, ``qf.sweep``). ``result`` is a :class:`qf.runner.RunRecord`
whose ``kind`` names the runner.

A plugin implementing both hooks is registered in the process-wide registry the CLI uses, exactly where an
installed entry-point plugin lands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import qf
from qf import hookimpl
from qf.cli.main import app
from qf.errors import QfError
from qf.parity import ParityReport
from qf.registry import get_registry
from qf.runner import RUN_KINDS, RunOutcome, RunRecord, lifecycle

runner = CliRunner()

BASE: dict[str, Any] = {
    "data": {"type": "sample", "params": {"dataset": "arch_sp500", "start": "2016-01-01", "end": "2018-12-31"}},
    "signal": {"type": "sma_cross", "params": {"fast": 10, "slow": 40}},
    "sizer": {"type": "equal"},
    "rebalance": {"freq": "daily"},
    "execution": {"fill": "next_open", "fees": 0.0005},
}
SWEEP = {"params": {"signal.params.fast": [5, 10], "signal.params.slow": [30, 40]}, "metric": "sharpe"}


class Watcher:
    """The plugin under test: records every lifecycle call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.veto: str | None = None

    @hookimpl
    def qf_before_run(self, experiment: Any) -> None:
        self.calls.append(("before", experiment.name))
        if self.veto == experiment.name:
            raise QfError(f"{experiment.name}: vetoed by the watcher")

    @hookimpl
    def qf_after_run(self, experiment: Any, result: Any, report_dir: Any) -> None:
        self.calls.append(("after", experiment.name, result, report_dir))

    def kinds(self) -> list[tuple[str, str]]:
        return [(c[0], c[2].kind if c[0] == "after" else c[1]) for c in self.calls]

    def after(self) -> RunRecord:
        (record,) = [c[2] for c in self.calls if c[0] == "after"]
        assert isinstance(record, RunRecord)
        return record


@pytest.fixture
def watcher():
    pm = get_registry().pm
    w = Watcher()
    pm.register(w, name="lifecycle_watcher")
    try:
        yield w
    finally:
        pm.unregister(w)


def experiment(tmp_path: Path, name: str, **changes: Any) -> Path:
    doc = {"name": name, **BASE, "report": {"dir": str(tmp_path / "reports"), "tearsheet": False}, **changes}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def metrics_json(folder: Path) -> dict:
    return json.loads((Path(folder) / "metrics.json").read_text())


def test_qf_run_single(watcher, tmp_path):
    result = runner.invoke(app, ["run", str(experiment(tmp_path, "single")), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert watcher.kinds() == [("before", "single"), ("after", "backtest")]
    record = watcher.after()
    assert record.report_dir == watcher.calls[1][3] == tmp_path / "out"
    assert isinstance(record.outcome, RunOutcome) and record.metrics is record.outcome.metrics
    assert record.metrics["n_orders"] > 0
    assert metrics_json(record.report_dir)["sharpe"] == pytest.approx(record.metrics["sharpe"], rel=1e-12)


def test_qf_run_sweep_fires_once_for_the_whole_sweep(watcher, tmp_path):
    result = runner.invoke(app, ["run", str(experiment(tmp_path, "swept", sweep=SWEEP)), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert watcher.kinds() == [("before", "swept"), ("after", "sweep")]  # not once per combination
    record = watcher.after()
    assert record.report_dir == tmp_path / "o" and (record.report_dir / "sweep.parquet").is_file()
    assert record.metrics == metrics_json(tmp_path / "o") and "sharpe" in record.metrics


def test_qf_run_walk_forward(watcher, tmp_path):
    path = experiment(tmp_path, "wf", sweep=SWEEP, walk_forward={"train": 300, "test": 120})
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert watcher.kinds() == [("before", "wf"), ("after", "walk_forward")]
    assert watcher.after().metrics == metrics_json(tmp_path / "o")


def test_qf_run_cpcv(watcher, tmp_path):
    path = experiment(tmp_path, "cv", sweep=SWEEP,
                      validation={"method": "cpcv", "n_groups": 4, "n_test_groups": 1, "purge": 2, "embargo": 2})
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert watcher.kinds() == [("before", "cv"), ("after", "cpcv")]
    record = watcher.after()
    assert (record.report_dir / "cpcv.json").is_file() and record.metrics == metrics_json(record.report_dir)


def test_qf_parity_fires_once_for_both_engines(watcher, tmp_path):
    result = runner.invoke(app, ["parity", str(experiment(tmp_path, "par"))])
    assert result.exit_code == 0, result.output
    # the two engine runs inside it are not runs of their own for the hooks
    assert watcher.kinds() == [("before", "par"), ("after", "parity")]
    record = watcher.after()
    assert isinstance(record.outcome, ParityReport) and record.report_dir is None
    assert record.metrics["ok"] is True and record.metrics["matched"] == record.outcome.orders_a > 0


def test_qf_paper_sim_replay(watcher, tmp_path):
    path = experiment(tmp_path, "pap", execution={**BASE["execution"], "engine": "backtrader"})
    args = ["paper", str(path), "--broker", "sim", "--max-bars", "60", "--state-dir", str(tmp_path / "state")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert watcher.kinds() == [("before", "pap"), ("after", "paper")]
    record = watcher.after()
    assert record.outcome.status == "stopped" and record.outcome.bars_done == 60
    assert record.report_dir is not None and record.metrics == metrics_json(record.report_dir)


def test_python_api_run_and_sweep(watcher, tmp_path):
    res = qf.run(experiment(tmp_path, "api"))
    assert watcher.kinds() == [("before", "api"), ("after", "backtest")]
    assert watcher.after().outcome is res.outcome and watcher.after().report_dir is None
    watcher.calls.clear()
    table = qf.sweep(experiment(tmp_path, "api_sweep", sweep=SWEEP))
    assert watcher.kinds() == [("before", "api_sweep"), ("after", "sweep")]
    record = watcher.after()
    assert record.outcome is table and record.report_dir is None
    assert record.metrics["sharpe"] == pytest.approx(float(table["sharpe"].iloc[0]), rel=1e-12)
    assert isinstance(record.metrics["sharpe"], float)  # plain Python numbers, not numpy scalars


def test_before_run_aborts_a_sweep_before_anything_is_written(watcher, tmp_path):
    watcher.veto = "vetoed"
    result = runner.invoke(app, ["run", str(experiment(tmp_path, "vetoed", sweep=SWEEP)), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "vetoed by the watcher" in result.stderr
    assert watcher.kinds() == [("before", "vetoed")] and not (tmp_path / "o").exists()


def test_a_failed_run_gets_no_after_run(watcher, tmp_path):
    from qf.config.loader import load_experiment

    exp = load_experiment(experiment(tmp_path, "failing"))
    with pytest.raises(RuntimeError, match="boom"), lifecycle(exp, "backtest"):
        raise RuntimeError("boom")
    assert watcher.kinds() == [("before", "failing")]
    with pytest.raises(ValueError, match="unknown run kind 'bogus'"), lifecycle(exp, "bogus"):  # type: ignore[arg-type]
        pass
    assert set(RUN_KINDS) == {"backtest", "sweep", "walk_forward", "cpcv", "parity", "paper"}
