"""Found by adversarial testing: a sweep combination whose warm-up is longer than the data won the sweep.

Such a combination never trades and has no bar to evaluate, so its figures are 0.0 by convention; a Sharpe of
0 beat every losing combination and ``best.json`` named a combination with 0 evaluation bars.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import qf
from qf.research.sweep import rank


def test_rank_puts_combinations_without_an_evaluation_period_last() -> None:
    table = pd.DataFrame({"slow": [20, 400, 30], "sharpe": [-0.9, 0.0, -0.5], "volatility": [0.1, 0.0, 0.2],
                          "eval_bars": [280, 0, 270]})
    assert rank(table, "sharpe")["slow"].tolist() == [30, 20, 400]
    assert rank(table, "volatility")["slow"].tolist() == [20, 30, 400]


def test_a_sweep_does_not_pick_a_slow_average_longer_than_the_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2020-01-01", periods=120)
    close = 100 * np.exp(np.cumsum(rng.normal(-0.002, 0.01, len(dates))))  # a falling market: Sharpe < 0
    pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "symbol": "AAA", "close": close}).to_csv(
        tmp_path / "p.csv", index=False)
    (tmp_path / "e.yaml").write_text(
        "name: w\ndata: {type: csv, params: {path: p.csv}}\n"
        "signal: {type: sma_cross, params: {fast: 2, slow: 5}}\nsizer: {type: equal}\n"
        "execution: {fill: next_close, fees: 0.001}\n"
        "sweep: {params: {signal.params.slow: [5, 500]}, metric: sharpe}\n")
    table = qf.sweep(tmp_path / "e.yaml")
    assert table["signal.params.slow"].tolist() == [5, 500]
    assert table["eval_bars"].iloc[0] > 0 and table["eval_bars"].iloc[1] == 0
