"""Sweeps and walk-forward driven by YAML: the table equals single runs, choices use train data only."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from qf.config.loader import load_experiment
from qf.research.folds import walk_forward_splits
from qf.research.sweep import combo_experiment, evaluate_grid, grid_of, run_sweep
from qf.runner import run_experiment

YAML = """
name: sweep_test
data: {type: sample, params: {dataset: arch_sp500, start: "2014-01-01", end: "2018-12-31"}}
benchmark: {symbol: SP500}
signal: {type: sma_cross, params: {fast: 20, slow: 100}}
sizer: {type: equal}
rebalance: {freq: daily}
execution: {fill: next_open, fees: 0.0005, slippage: 0.0002}
sweep:
  params:
    signal.params.fast: {range: [10, 30, 10]}
    signal.params.slow: [30, 60, 120]
  constraints: ["fast < slow"]
  metric: sharpe
"""


@pytest.fixture(scope="module")
def exp_path(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("exp") / "sweep_test.yaml"
    p.write_text(YAML)
    return p


def test_grid_respects_constraints(exp_path):
    grid = grid_of(load_experiment(exp_path))
    assert len(grid) == 8  # 3 x 3 minus (30, 30)
    assert (grid["signal.params.fast"] < grid["signal.params.slow"]).all()
    assert grid["signal.params.fast"].dtype.kind == "i"


def test_sweep_rows_equal_single_runs(exp_path):
    exp = load_experiment(exp_path)
    bars = exp.data.load()
    grid = grid_of(exp)
    table = evaluate_grid(exp, bars, grid)
    for i in (0, 5):
        fast, slow = int(grid.iloc[i, 0]), int(grid.iloc[i, 1])
        single = load_experiment(exp_path, [f"signal.params.fast={fast}", f"signal.params.slow={slow}", "sweep=null"])
        m = run_experiment(single, write=False).metrics
        row = table.iloc[i]
        assert (row["signal.params.fast"], row["signal.params.slow"]) == (fast, slow)
        for k in ("final_equity", "sharpe", "max_drawdown", "n_orders"):
            assert row[k] == pytest.approx(m[k], rel=1e-12, abs=1e-12)


def test_sweep_writes_table_heatmap_best_and_report(exp_path, tmp_path):
    out = run_sweep(load_experiment(exp_path), tmp_path / "run", Console(file=io.StringIO()))
    table = pd.read_parquet(out / "sweep.parquet")
    assert len(table) == 8 and {"signal.params.fast", "sharpe", "max_drawdown"} <= set(table.columns)
    best = json.loads((out / "best.json").read_text())
    top = table.sort_values("sharpe", ascending=False).iloc[0]
    assert best["params"] == {"signal.params.fast": int(top["signal.params.fast"]),
                              "signal.params.slow": int(top["signal.params.slow"])}
    assert 0.0 <= best["dsr"] <= best["psr"] <= 1.0  # deflating for 8 trials can only lower it
    html = (out / "sweep.html").read_text()
    assert "heatmap" in html and "Top 8 by sharpe" in html
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sharpe"] == pytest.approx(top["sharpe"], rel=1e-12)
    assert (out / "tearsheet.html").exists()


WF_YAML = YAML + """
walk_forward: {train: 400, test: 150, purge: 5, embargo: 5}
"""


def test_walk_forward_choices_depend_only_on_train_data(tmp_path):
    p = tmp_path / "wf.yaml"
    p.write_text(WF_YAML)
    exp = load_experiment(p)
    bars = exp.data.load()
    fold = walk_forward_splits(len(bars.index), 400, 150, purge=5, embargo=5)[0]
    assert fold.train.stop + 5 <= fold.test.start
    grid = grid_of(exp)

    def choose(b):
        t = evaluate_grid(exp, b.iloc(fold.train), grid)
        return t.sort_values("sharpe", ascending=False, kind="mergesort").iloc[0][list(grid.columns)].tolist()

    # scramble every bar after the train window: the chosen parameters must not move
    rng = np.random.default_rng(0)
    frames = {}
    for name, df in bars.frames().items():
        df = df.copy()
        tail = df.iloc[fold.train.stop:]
        df.iloc[fold.train.stop:] = tail.to_numpy() * rng.uniform(0.5, 1.5, tail.shape) if name != "volume" \
            else tail.to_numpy()
        frames[name] = df
    hi = np.maximum.reduce([frames[f].to_numpy() for f in ("open", "high", "low", "close")])
    lo = np.minimum.reduce([frames[f].to_numpy() for f in ("open", "high", "low", "close")])
    frames["high"].iloc[:, :] = hi
    frames["low"].iloc[:, :] = lo
    scrambled = replace(bars, **frames)
    assert choose(bars) == choose(scrambled)


def test_walk_forward_run_stitches_out_of_sample(tmp_path):
    from qf.research.walk_forward import run_walk_forward

    p = tmp_path / "wf.yaml"
    p.write_text(WF_YAML)
    exp = load_experiment(p)
    out = run_walk_forward(exp, tmp_path / "run", Console(file=io.StringIO()))
    folds = pd.read_csv(out / "folds.csv")
    assert len(folds) >= 3
    assert (pd.to_datetime(folds["train_end"]) < pd.to_datetime(folds["test_start"])).all()
    eq = pd.read_parquet(out / "equity.parquet")["equity"]
    assert eq.index[0] == pd.Timestamp(folds["test_start"].iloc[0])
    assert combo_experiment(exp.raw, exp.path, {}).name == "sweep_test"
