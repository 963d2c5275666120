"""A sweep checkpoints finished rows as chunks finish and resumes from them: after Ctrl-C, a SIGKILL of the
driver or a cluster that went away, the same command computes only what is missing and writes the same
sweep.parquet as an uninterrupted run. Walk-forward folds share one executor.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

import qf.research.sweep as sweep_mod
from qf.cli.main import app
from qf.config.loader import load_experiment
from qf.research import walk_forward
from qf.research.checkpoint import SweepCheckpoint, checkpoint_root, fingerprint
from qf.research.executors import LocalExecutor
from qf.research.ray_cluster import ClusterError
from qf.research.sweep import evaluate_grid, grid_of, run_sweep
from qf.testing.contracts import sample_bars
from qf.testing.projects import write_csv_experiment

BARS = sample_bars(n_symbols=3, n_bars=300, seed=11)
BASE = {
    "name": "resume",
    "data": {"type": "csv", "params": {"path": "prices.csv"}},
    "signal": {"type": "sma_cross", "params": {"fast": 10, "slow": 40}},
    "sizer": {"type": "equal"},
    "execution": {"fill": "next_open", "fees": 0.001, "executor": {"n_jobs": 1}},
    "sweep": {"params": {"signal.params.fast": [5, 10, 15], "signal.params.slow": [30, 50]}},
    "report": {"tearsheet": False, "dir": "reports"},
}

# a signal that takes a while, so that a driver can be killed with some chunks finished and others not
SLOW_SIGNAL = '''
import time

from qf_plugins.signals.sma_cross import SmaCross


class SlowSma(SmaCross):
    """An SMA cross that takes 0.4 s per computation."""

    name = "slow_sma"

    def compute(self, bars):
        time.sleep(0.4)
        return super().compute(bars)
'''


def _write(folder: Path, doc: dict) -> Path:
    return write_csv_experiment(folder, BARS, doc, "sweep.yaml")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("resume"), BASE)


@pytest.fixture(scope="module")
def baseline(project: Path) -> pd.DataFrame:
    exp = load_experiment(project)
    return evaluate_grid(exp, exp.data.load(), grid_of(exp), keep_returns=True)


def _ckpt(exp, bars, grid, root: Path) -> SweepCheckpoint:
    return SweepCheckpoint.for_sweep(exp, bars, grid, root=root, keep_returns=True)


def _same(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert table.equals(expected)
    got, want = table.attrs["returns"], expected.attrs["returns"]
    assert len(got) == len(want) and all(a.equals(b) for a, b in zip(got, want, strict=True))


class _Stop(Exception):
    pass


def test_interrupted_sweep_resumes_without_recomputing(project: Path, baseline: pd.DataFrame, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    exp = load_experiment(project)
    bars, grid = exp.data.load(), grid_of(exp)
    ckpt = _ckpt(exp, bars, grid, tmp_path)

    def stop_after_two(done: int, total: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt  # Ctrl-C while the sweep runs

    with pytest.raises(KeyboardInterrupt):
        evaluate_grid(exp, bars, grid, progress=stop_after_two, keep_returns=True, checkpoint=ckpt)
    done = _ckpt(exp, bars, grid, tmp_path).load()
    assert len(done) == 2 and ckpt.saved == 2

    computed: list[dict] = []
    real = sweep_mod.evaluate_chunk

    def counting(task, bars=None):
        computed.extend(task.combos)
        return real(task, bars)

    monkeypatch.setattr(sweep_mod, "evaluate_chunk", counting)
    table = evaluate_grid(exp, bars, grid, keep_returns=True, checkpoint=ckpt, done=done)
    _same(table, baseline)
    finished = [grid.iloc[p].to_dict() for p in done]
    assert len(computed) == len(grid) - 2 and not any(c in computed for c in finished)
    # everything finished is on disk now: a third run would compute nothing
    computed.clear()
    _same(evaluate_grid(exp, bars, grid, keep_returns=True, done=ckpt.load()), baseline)
    assert computed == []


def test_fingerprint_follows_what_the_rows_depend_on(project: Path, tmp_path: Path) -> None:
    exp = load_experiment(project)
    bars, grid = exp.data.load(), grid_of(exp)
    base = fingerprint(exp, bars, grid)

    def fp(*overrides: str, b=bars, g=grid) -> str:
        return fingerprint(load_experiment(project, overrides=list(overrides)), b, g)

    # where it runs, how it is ranked and where reports go do not change a row
    assert fp("execution.executor.kind=ray", "execution.executor.n_jobs=8") == base
    assert fp("sweep.metric=cagr", "report.dir=elsewhere") == base
    # the experiment, the data and the grid do
    assert fp("execution.fees=0.002") != base
    assert fp("sizer.type=inverse_vol") != base
    changed = type(bars)(**{**{f: getattr(bars, f) for f in bars.fields}, "close": bars.close * 1.0000001})
    assert fp(b=changed) != base
    assert fp(g=grid.iloc[:4]) != base
    # so does the code of a local-file component
    folder = project.parent
    (folder / "strategies").mkdir(exist_ok=True)
    (folder / "strategies" / "slow.py").write_text(SLOW_SIGNAL)
    local = fp("signal.type=strategies/slow.py:SlowSma")
    (folder / "strategies" / "slow.py").write_text(SLOW_SIGNAL.replace("0.4", "0.5"))
    assert fp("signal.type=strategies/slow.py:SlowSma") != local
    # the default place: under the report root, whatever run id the next report gets
    assert checkpoint_root(exp, None) == Path("reports") / ".qf" / "sweeps"
    assert checkpoint_root(exp, tmp_path / "runs" / "a") == tmp_path / "runs" / ".qf" / "sweeps"


def test_unreadable_checkpoint_files_are_recomputed_not_used(project: Path, tmp_path: Path) -> None:
    exp = load_experiment(project)
    bars, grid = exp.data.load(), grid_of(exp)
    ckpt = SweepCheckpoint.for_sweep(exp, bars, grid, root=tmp_path)
    ckpt.save([0, 1], [{"sharpe": 1.0, "eval_start": None}, {"sharpe": float("nan"), "eval_start": "2020-01-02"}])
    (ckpt.folder / "rows-broken.json").write_text('{"layout": 1, "positions": [2], "rows": [')  # truncated
    (ckpt.folder / "rows-range.json").write_text(json.dumps({"layout": 1, "positions": [99], "rows": [{}]}))
    loaded = ckpt.load()
    assert sorted(loaded) == [0, 1] and loaded[0] == {"sharpe": 1.0, "eval_start": None}
    assert pd.isna(loaded[1]["sharpe"])
    ckpt.remove()
    assert not ckpt.folder.exists() and ckpt.load() == {}


class _DyingCluster:
    """An executor whose cluster goes away after two chunks (what a Ray executor raises then)."""

    n_workers = 1

    def __init__(self) -> None:
        self.closed = False

    def imap(self, func, chunks, shared=None):
        for i, chunk in enumerate(list(chunks)[:2]):
            yield i, func(chunk, **(shared or {}))
        raise ClusterError("the Ray cluster failed under the sweep: RaySystemError: GCS is unreachable")

    def close(self) -> None:
        self.closed = True


def test_cluster_gone_mid_sweep_is_one_line_and_keeps_finished_rows(project: Path, baseline: pd.DataFrame,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    exp = load_experiment(project)
    bars, grid = exp.data.load(), grid_of(exp)
    ckpt = _ckpt(exp, bars, grid, tmp_path)
    dying = _DyingCluster()
    monkeypatch.setattr(sweep_mod, "_executor", lambda exp, n: dying)
    with pytest.raises(ClusterError) as info:
        evaluate_grid(exp, bars, grid, keep_returns=True, checkpoint=ckpt)
    msg = str(info.value)
    assert "\n" not in msg and info.value.exit_code == 1 and dying.closed
    assert msg.endswith(f"GCS is unreachable; 2 of {len(grid)} combinations are kept in {ckpt.folder}: run the "
                        "same command again to resume")
    monkeypatch.undo()
    done = ckpt.load()
    assert len(done) == 2
    _same(evaluate_grid(exp, bars, grid, keep_returns=True, checkpoint=ckpt, done=done), baseline)


def _qf(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "qf.cli.main", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_sigkill_of_the_driver_then_the_same_command_resumes(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "slow.py").write_text(SLOW_SIGNAL)
    doc = {**BASE, "signal": {"type": "strategies/slow.py:SlowSma", "params": {"fast": 10, "slow": 40}},
           "sweep": {"params": {"signal.params.fast": [5, 10, 15], "signal.params.slow": [30, 50]}}}
    exp_path = _write(tmp_path, doc)
    sweeps = tmp_path / "reports" / ".qf" / "sweeps"

    first = _qf("run", str(exp_path), cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not list(sweeps.glob("*/rows-*.json")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)  # mid-sweep: no clean-up code of the driver runs
    first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    kept = len(json.loads(next(sweeps.glob("*/rows-*.json")).read_text())["positions"])
    assert not list((tmp_path / "reports" / "resume").glob("*/sweep.parquet"))  # no report yet

    # the same command again (in this process: a second interpreter start costs more than the sweep)
    monkeypatch.chdir(tmp_path)
    second = CliRunner().invoke(app, ["run", str(exp_path)])
    out = second.output
    assert second.exit_code == 0, out
    resumed = [line for line in out.splitlines() if line.startswith("resumed ")]
    assert resumed and resumed[0].startswith("resumed ") and " of 6 combinations from " in resumed[0], out
    n_resumed = int(resumed[0].split()[1])
    assert 1 <= kept <= n_resumed < 6
    assert not sweeps.exists()  # removed once the report holds every row

    # an uninterrupted run of the same sweep
    fresh_out = io.StringIO()
    run_sweep(load_experiment(exp_path, overrides=["execution.executor.resume=false"]), tmp_path / "fresh",
              Console(file=fresh_out, width=200))
    assert "resumed" not in fresh_out.getvalue()
    (resumed_report,) = (tmp_path / "reports" / "resume").glob("*/sweep.parquet")
    assert resumed_report.read_bytes() == (tmp_path / "fresh" / "sweep.parquet").read_bytes()
    assert json.loads((resumed_report.parent / "best.json").read_text()) == \
        json.loads((tmp_path / "fresh" / "best.json").read_text())


def test_walk_forward_runs_every_folds_sweep_on_one_executor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = {**BASE, "walk_forward": {"train": 120, "test": 60}, "sweep": {
        "params": {"signal.params.fast": [5, 10], "signal.params.slow": [30, 50]}}}
    exp = load_experiment(_write(tmp_path, doc))
    made: list[LocalExecutor] = []
    sent: list[pd.Timestamp] = []

    class Recording(LocalExecutor):
        def imap(self, func, chunks, shared=None):
            sent.append(shared["bars"].index[0])  # each fold's train window starts elsewhere
            return super().imap(func, chunks, shared)

    def one(exp, n_tasks):
        made.append(Recording(n_jobs=1))
        return made[-1]

    monkeypatch.setattr(walk_forward, "_executor", one)
    monkeypatch.setattr(sweep_mod, "_executor", lambda *a: pytest.fail("a fold made its own executor"))
    walk_forward.run_walk_forward(exp, tmp_path / "wf", Console(quiet=True))
    n_folds = len(pd.read_csv(tmp_path / "wf" / "folds.csv"))
    assert len(made) == 1 and n_folds >= 2
    assert len(sent) == len(set(sent)) == n_folds  # each fold's train window went to the one executor
