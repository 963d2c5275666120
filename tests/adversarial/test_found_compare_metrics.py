"""Found by adversarial testing: `qf report compare` on a run whose metrics.json is valid JSON but lacks
the period keys (hand-edited, or written by a tool that only knows eval_bars) ended in a KeyError traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from qf.cli.main import app

runner = CliRunner()


def _run(root: Path, name: str, metrics: dict) -> Path:
    d = root / "exp" / name
    d.mkdir(parents=True)
    idx = pd.date_range("2020-01-01", periods=4, freq="D")
    pd.DataFrame({"equity": [100.0, 101.0, 99.0, 102.0]}, index=idx).to_parquet(d / "equity.parquet")
    (d / "metrics.json").write_text(json.dumps(metrics))
    (d / "manifest.json").write_text(json.dumps({"experiment": "exp", "run_id": name, "kind": "backtest"}))
    return d


@pytest.mark.parametrize("metrics", [{"sharpe": 1.0, "eval_bars": 3}, {"eval_bars": 3, "eval_start": None}, {}])
def test_compare_tolerates_missing_period_keys(tmp_path: Path, metrics: dict) -> None:
    good = _run(tmp_path, "A", {"sharpe": 0.5, "eval_start": "2020-01-02", "eval_end": "2020-01-04",
                                "eval_bars": 3})
    odd = _run(tmp_path, "B", metrics)
    result = runner.invoke(app, ["report", "compare", str(good), str(odd), "--out", str(tmp_path / "c.html")])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 0, result.output
    assert "2020-01-02 to 2020-01-04, 3 bars" in result.stdout
    assert (tmp_path / "c.html").is_file()
