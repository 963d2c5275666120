"""``qf paper --gate``: a replayed session gated against the backtest of the same period (exit 0 / 3 / 2)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from qf.cli.main import app

runner = CliRunner()


def test_paper_session_gate_against_its_backtest(sample_experiment, tmp_path: Path) -> None:
    path = sample_experiment("gated", risk=[], data={"type": "sample", "params": {
        "dataset": "sp500_20", "symbols": ["AAPL", "JPM", "XOM", "KO"], "start": "2016-01-01", "end": "2016-09-30"}})
    (tmp_path / "gate.yaml").write_text("min_trades: 1\nmax_tracking_error: 1.0e-6\nmax_drawdown: 0.5\n")
    (tmp_path / "bad.yaml").write_text("max_drawdown: 2\n")
    bad = runner.invoke(app, ["paper", str(path), "--broker", "sim", "--state-dir", str(tmp_path / "s0"),
                              "--gate", str(tmp_path / "bad.yaml")])
    assert bad.exit_code == 2 and "bad.yaml:1: max_drawdown" in bad.output
    assert not (tmp_path / "s0").exists()  # refused before the session started
    res = runner.invoke(app, ["paper", str(path), "--broker", "sim", "--state-dir", str(tmp_path / "s1"),
                              "--gate", str(tmp_path / "gate.yaml")])
    assert res.exit_code == 0, res.output
    assert "GO" in res.output and "tracking error to the backtest replay: 0.00%" in res.output
    report = next((tmp_path / "reports" / "gated").iterdir())
    verdict = json.loads((report / "gate.json").read_text())
    te = [c for c in verdict["criteria"] if c["name"].startswith("tracking")][0]["value"]
    assert te < 1e-9  # the replay trades exactly like the backtest
    metrics = json.loads((report / "metrics.json").read_text())
    assert [c["value"] for c in verdict["criteria"] if c["name"] == "closed trades"] == [metrics["trades"]["n_closed"]]
    (tmp_path / "strict.yaml").write_text(f"min_trades: {metrics['trades']['n_closed'] + 1}\n")
    again = runner.invoke(app, ["report", "gate", str(report), "--gate", str(tmp_path / "strict.yaml")])
    assert again.exit_code == 3 and "NO-GO" in again.output


def test_the_drift_and_gate_example_runs_offline(tmp_path: Path) -> None:
    """experiments/paper_drift_gate.yaml, cut to 4 names and early 2020 for time: the crash raises drift events
    and the gate prints its verdict with the exit code that goes with it."""
    root = Path(__file__).resolve().parents[2]
    res = runner.invoke(app, [
        "paper", str(root / "experiments" / "paper_drift_gate.yaml"), "--broker", "sim",
        "--state-dir", str(tmp_path / "state"), "--set", f"report.dir={tmp_path / 'reports'}",
        "--set", "report.tearsheet=false", "--set", "data.params.symbols=[AAPL, JPM, XOM, KO]",
        "--set", "data.params.end=2020-04-30", "--set", "paper.drift.ks_pvalue=null"])
    assert res.exit_code in (0, 3), res.output
    verdict = "NO-GO" if res.exit_code == 3 else "GO"
    assert f"\n{verdict}\n" in res.output
    report = next((tmp_path / "reports" / "paper_drift_gate").iterdir())
    events = [line.split(",") for line in (report / "risk_events.csv").read_text().splitlines()[1:]]
    crash = [t for t, e, _ in events if e == "drift" and t.startswith("2020-0")]
    assert crash, events  # the share of names above their 50-day average collapsed in February-March 2020
    assert json.loads((report / "gate.json").read_text())["verdict"] == verdict
