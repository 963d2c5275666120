"""The walk-forward fold table flags a classifier fold below its majority-class baseline."""

from __future__ import annotations

import io

import pandas as pd
from rich.console import Console

from qf.research.walk_forward import _print_folds


def _folds(**extra) -> pd.DataFrame:
    base = {"fold": [0, 1], "train_end": ["2020-01-31", "2020-06-30"], "test_start": ["2020-02-03", "2020-07-01"],
            "test_end": ["2020-06-30", "2020-12-31"], "chosen": ["xgboost fitted on 740 train bars"] * 2,
            "test_return": [0.05, -0.02], "test_sharpe": [1.1, -0.4], "test_fees": [10.0, 12.0]}
    return pd.DataFrame({**base, **extra})


def _screen(folds: pd.DataFrame) -> str:
    buf = io.StringIO()
    _print_folds(Console(file=buf, width=250, color_system=None), folds, None)
    return buf.getvalue()


def test_a_fold_below_its_baseline_is_flagged() -> None:
    screen = _screen(_folds(accuracy=[0.55, 0.48], majority_accuracy=[0.51, 0.52]))
    assert "0.550 vs 0.510" in screen and "0.480 vs 0.520 below" in screen
    assert screen.count("below") == 2  # the flagged row and the closing count line
    assert "1 of 2 folds below their majority-class baseline" in screen


def test_no_baseline_column_without_classifier_metrics() -> None:
    screen = _screen(_folds())
    assert "baseline" not in screen and "nan" not in screen
