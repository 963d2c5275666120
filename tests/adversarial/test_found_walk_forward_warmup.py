"""Found by adversarial testing: a walk-forward sweep whose train windows are shorter than every
combination's warm-up "chose" the first grid row on every fold (train Sharpe 0.0) and reported it as a
walk-forward result; it is now refused (exit 2) naming the fold and what to change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from qf.cli.main import app

runner = CliRunner()


def _experiment(tmp_path: Path, train: int) -> Path:
    rng = np.random.default_rng(1)
    dates = pd.bdate_range("2020-01-01", periods=160)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(dates))))
    pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "symbol": "AAA", "close": close}).to_csv(
        tmp_path / "p.csv", index=False)
    path = tmp_path / "e.yaml"
    path.write_text(
        "name: wfw\ndata: {type: csv, params: {path: p.csv}}\n"
        "signal: {type: sma_cross, params: {fast: 2, slow: 20}}\nsizer: {type: equal}\n"
        "execution: {fill: next_close}\n"
        f"walk_forward: {{train: {train}, test: 40}}\n"
        "sweep: {params: {signal.params.fast: [2, 3]}, metric: sharpe}\n")
    return path


def test_train_windows_shorter_than_the_warm_up_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(_experiment(tmp_path, train=10)), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert ("walk_forward: fold 0: no combination trades inside its 10 train bars (each one's warm-up is at "
            "least that long); make walk_forward.train longer") in " ".join(result.output.split())
    assert not out.exists()


def test_train_windows_longer_than_the_warm_up_still_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(_experiment(tmp_path, train=60)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "folds.csv").is_file()
