"""``qf paper`` stops and reports cleanly whatever happens: no bar yet, a flat account, SIGTERM, a finished replay.

Issue 12, paper items 2 and 3: a session stopped before the account moved must still leave its report (a
quantstats failure costs the tear sheet only), SIGTERM stops it like Ctrl-C (report, exit 143), and a
replay that already reached its end says so instead of reporting again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

import qf.paper.feed as feed
import qf.report.tearsheet as tearsheet
from qf.cli.paper import paper
from qf.config.loader import load_experiment
from qf.paper.session import PaperOptions, run_paper
from qf.testing.waiting import signal_when

SHORT = ["--set", "data.params.end=2016-04-29"]  # ~40 replayed bars after the warm-up: fast to finish


def cli() -> typer.Typer:
    """``qf`` with its paper command, in process (the SIGTERM test runs the real ``qf`` in a subprocess)."""
    app = typer.Typer()
    app.command("paper")(paper)
    app.command("noop")(lambda: None)  # two commands, so "paper" is a sub-command as in qf
    return app


def _reports(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*/*") if p.is_dir())


def _files(run: Path) -> set[str]:
    return {p.name for p in run.iterdir()}


REPORT_FILES = {"metrics.json", "equity.parquet", "orders.csv", "paper.json", "manifest.json", "config.yaml"}


def test_a_session_stopped_before_its_first_bar_writes_a_report(sample_experiment, tmp_path, monkeypatch):
    path = sample_experiment(report={"dir": str(tmp_path / "reports"), "tearsheet": True})
    exp = load_experiment(path)

    def interrupted(self, timeout):
        raise KeyboardInterrupt  # Ctrl-C (or SIGTERM) before the replay handed out a bar

    monkeypatch.setattr(feed.ReplaySource, "poll", interrupted)
    out = run_paper(exp, PaperOptions(state_dir=tmp_path / "state"))
    assert out.status == "interrupted" and out.bars_total == 0
    assert out.report_dir is not None and _files(out.report_dir) >= REPORT_FILES
    info = json.loads((out.report_dir / "paper.json").read_text())
    assert info["bars"] == 0 and info["status"] == "interrupted"
    metrics = json.loads((out.report_dir / "metrics.json").read_text())
    assert metrics["final_equity"] == exp.spec.execution.initial_cash and metrics["n_orders"] == 0


def test_a_tear_sheet_failure_never_loses_the_report(sample_experiment, tmp_path, monkeypatch):
    path = sample_experiment(report={"dir": str(tmp_path / "reports"), "tearsheet": True})

    def broken(*args, **kwargs):
        raise ValueError("Cannot calculate a linear regression if all x values are identical")

    monkeypatch.setattr(tearsheet, "write_tearsheet", broken)
    out = run_paper(load_experiment(path), PaperOptions(state_dir=tmp_path / "state", max_bars=5))
    assert out.status == "stopped" and out.report_dir is not None
    assert _files(out.report_dir) >= REPORT_FILES and "tearsheet.html" not in _files(out.report_dir)
    info = json.loads((out.report_dir / "paper.json").read_text())
    assert "linear regression" in info["tearsheet_error"] and info["bars"] == 5


def test_cli_flat_account_exits_0_with_a_report(sample_experiment, tmp_path):
    # min_order_value above the account: nothing ever trades, the equity is flat (quantstats' r_squared);
    # two bars are the fewest quantstats is asked to draw
    bars = 2
    path = sample_experiment(report={"dir": str(tmp_path / "reports"), "tearsheet": True},
                             execution={"engine": "backtrader", "fill": "next_close", "min_order_value": 1e9})
    result = CliRunner().invoke(cli(), ["paper", str(path), "--broker", "sim", "--max-bars", str(bars),
                                        "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 0 and result.exception is None, result.output
    (run,) = _reports(tmp_path / "reports")
    assert _files(run) >= REPORT_FILES
    assert json.loads((run / "paper.json").read_text())["bars"] == bars
    assert json.loads((run / "metrics.json").read_text())["n_orders"] == 0


def _bars_done(state_dir: Path) -> int:
    path = state_dir / "paper.sqlite"
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            return int(db.execute("SELECT COUNT(*) FROM bars").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_sigterm_stops_like_ctrl_c_and_a_finished_replay_is_not_reported_twice(sample_experiment, tmp_path):
    path = sample_experiment()
    state_dir = tmp_path / "state"
    args = ["paper", str(path), "--broker", "sim", "--state-dir", str(state_dir), *SHORT]
    # one bar every 4 s: SIGTERM lands while the replay waits for its second bar
    proc = subprocess.Popen([sys.executable, "-m", "qf.cli.main", *args, "--speed", "0.25"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    stdout, stderr = signal_when(proc, lambda: _bars_done(state_dir) >= 1, signal.SIGTERM, timeout=90,
                                 what="the session never processed a bar")
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert "stopped by SIGTERM" in stdout and "run the same command to resume" in stdout
    (first,) = _reports(tmp_path / "reports")
    info = json.loads((first / "paper.json").read_text())
    assert info["status"] == "interrupted" and info["bars"] >= 1

    runner = CliRunner()
    done = runner.invoke(cli(), [*args, "--speed", "0"])
    assert done.exit_code == 0, done.output
    assert "replay finished" in done.stdout and "(the replay is finished)" in done.stdout
    assert "resume" not in done.stdout
    final = [r for r in _reports(tmp_path / "reports") if r != first]
    assert len(final) == 1

    again = runner.invoke(cli(), [*args, "--speed", "0"])
    assert again.exit_code == 0, again.output
    assert "already finished" in again.stdout and str(final[0].resolve()) in again.stdout.replace("\n", "")
    assert "resume" not in again.stdout
    assert len(_reports(tmp_path / "reports")) == 2  # no duplicate report


def test_a_finished_replay_whose_report_is_missing_writes_it(sample_experiment, tmp_path):
    path = sample_experiment(report={"dir": str(tmp_path / "reports"), "tearsheet": False})
    exp = load_experiment(path, SHORT[1:])
    opts = PaperOptions(state_dir=tmp_path / "state")
    first = run_paper(exp, opts)
    assert first.status == "done" and first.report_dir is not None
    second = run_paper(exp, opts)
    assert second.status == "finished" and second.report_dir == first.report_dir.resolve()
    assert len(_reports(tmp_path / "reports")) == 1
    for f in first.report_dir.iterdir():  # the report was lost (a crash while writing it, a cleanup)
        f.unlink()
    first.report_dir.rmdir()
    third = run_paper(exp, opts)
    assert third.status == "done" and third.report_dir is not None and third.report_dir.is_dir()


def test_sigterm_while_the_report_is_written_lets_it_finish(sample_experiment, tmp_path, monkeypatch):
    import qf.paper.session as session

    path = sample_experiment()
    real = session.write_paper_report

    def terminated_meanwhile(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # systemd stops the service while the report is being written
        return real(*args, **kwargs)

    monkeypatch.setattr(session, "write_paper_report", terminated_meanwhile)
    result = CliRunner().invoke(cli(), ["paper", str(path), "--broker", "sim", "--max-bars", "3", "--state-dir",
                                        str(tmp_path / "state")])
    assert result.exit_code == 143, result.output
    (run,) = _reports(tmp_path / "reports")
    assert _files(run) >= REPORT_FILES and f"report: {run}" in result.stdout.replace("\n", "")
