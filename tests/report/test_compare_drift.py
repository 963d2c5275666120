"""``qf report compare`` of a paper run and its backtest: PSI / KS of returns and target weights against the
backtest's (reference = the backtest before the paper's first bar), and the paper's own drift.csv summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qf.paper.drift import psi
from qf.report.compare import drift_rows, load_run, render_compare


def _run(folder: Path, kind: str, equity: pd.Series, weights: pd.DataFrame) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"sharpe": 1.0}))
    (folder / "manifest.json").write_text(json.dumps({"kind": kind, "experiment": "x", "engine": "backtrader"}))
    equity.to_frame("equity").to_parquet(folder / "equity.parquet")
    weights.to_parquet(folder / "weights.parquet")
    return folder


def test_paper_vs_backtest_drift_by_hand(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    idx = pd.bdate_range("2020-01-01", periods=300)
    bt_eq = pd.Series(1e5 * np.cumprod(1 + rng.normal(0, 0.01, 300)), index=idx)
    paper_eq = pd.Series(1e5 * np.cumprod(1 + rng.normal(0, 0.02, 100)), index=idx[200:])  # twice as volatile
    w_bt = pd.DataFrame(rng.uniform(0, 0.5, (300, 2)), index=idx, columns=["A", "B"])
    w_paper = pd.DataFrame(rng.uniform(0, 0.5, (100, 2)), index=idx[200:], columns=["A", "B"])
    w_paper.iloc[::3] = 0.0  # zero weights are not part of the distribution
    back = load_run(_run(tmp_path / "x" / "bt", "backtest", bt_eq, w_bt), {"sharpe": 1.0})
    paper_dir = _run(tmp_path / "x" / "paper", "paper", paper_eq, w_paper)
    pd.DataFrame({"time": [idx[250], idx[251]], "variable": ["signal", "signal"], "kind": ["output", "output"],
                  "psi": [0.05, 0.3], "ks_stat": [0.1, 0.4], "ks_pvalue": [0.5, 0.001], "n_reference": [500, 500],
                  "n_current": [40, 40], "drift": [False, True]}).to_csv(paper_dir / "drift.csv", index=False)
    pd.DataFrame({"time": [idx[251]], "event": ["drift"], "symbol": ["signal"]}).to_csv(
        paper_dir / "risk_events.csv", index=False)
    paper = load_run(paper_dir, {"sharpe": 0.5})
    rows = {r["variable"]: r for r in drift_rows(paper, back)}
    ref = bt_eq.pct_change().dropna().loc[:idx[199]].to_numpy()
    cur = paper_eq.pct_change().dropna().to_numpy()
    assert rows["returns"]["reference"] == "backtest before 2020-10-07"
    assert rows["returns"]["psi"] == pytest.approx(psi(ref, cur), abs=1e-12)
    assert rows["returns"]["psi"] > 0.25  # the doubled volatility is a major shift
    assert rows["returns"]["ks_pvalue"] == pytest.approx(stats.ks_2samp(ref, cur).pvalue, rel=1e-9)
    w_ref = w_bt.iloc[:200].to_numpy().reshape(-1)
    w_cur = w_paper.to_numpy().reshape(-1)
    assert rows["target weights"]["n_paper"] == int((w_cur != 0).sum())
    assert rows["target weights"]["psi"] == pytest.approx(psi(w_ref, w_cur[w_cur != 0]), abs=1e-12)
    page = render_compare([back, paper], [("sharpe", ["1.000", "0.500"])], tmp_path)
    assert "Drift: paper vs backtest" in page
    assert "drift measured during the session (drift.csv, 1 drift event(s))" in page
    # two backtests: no drift section
    assert "Drift: paper vs backtest" not in render_compare([back, back], [("sharpe", ["1", "1"])], tmp_path)
