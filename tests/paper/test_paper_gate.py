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
