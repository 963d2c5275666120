"""Walk-forward trades ONE account: the stitched curve is a path that could have been traded.

The out-of-sample curve is rebuilt from orders.csv, the raw prices and the fee schedule alone; the test
windows leave no bar out; a position that two folds both want is held across the boundary; per-fold
figures add up to the account's; settings one account cannot change between folds are refused.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from qf.bars import Bars
from qf.cli.main import app
from qf.config.loader import load_experiment
from qf.errors import QfError
from qf.pipeline import compute_targets
from qf.research.folds import walk_forward_splits
from qf.research.walk_forward import run_walk_forward
from qf.runner import run_engine
from qf.testing.contracts import sample_bars
from qf.testing.projects import write_csv_experiment

BARS = sample_bars(n_symbols=3, n_bars=424, seed=3)
FEES, FIXED, SLIP, CASH = 0.001, 1.5, 0.0005, 100_000.0
# decisions every 7 bars: the fold boundaries (bars 184, 244, 304, 364) are not fill bars, so any order
# there would be a liquidation the strategy did not ask for
WF = {"train": 124, "test": 60, "purge": 2, "embargo": 3}
BASE = {
    "name": "wf_account",
    "data": {"type": "csv", "params": {"path": "prices.csv"}},
    "signal": {"type": "sma_cross", "params": {"fast": 10, "slow": 40}},
    "sizer": {"type": "equal"},
    "risk": [{"type": "max_weight", "params": {"limit": 0.5}},
             {"type": "drawdown_halt", "params": {"max_drawdown": 0.06, "cooldown_bars": 10}}],
    "rebalance": {"every": 7},
    "execution": {"fill": "next_open", "fees": FEES, "fixed_fees": FIXED, "slippage": SLIP, "initial_cash": CASH,
                  "min_order_value": 500},
    "walk_forward": WF,
    "report": {"tearsheet": False},
}
SWEEP = {"params": {"signal.params.fast": [5, 20], "signal.params.slow": [30, 60]}, "metric": "sharpe"}


def _write(folder: Path, doc: dict) -> Path:
    return write_csv_experiment(folder, BARS, doc, "wf.yaml")


def _run(folder: Path, doc: dict) -> tuple[Path, str]:
    buf = io.StringIO()
    out = run_walk_forward(load_experiment(_write(folder, doc)), folder / "report", Console(file=buf, width=200))
    return out, buf.getvalue()


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, str]:
    """Parameters chosen per fold by a sweep (they change at fold boundaries), daily decisions."""
    doc = {**BASE, "rebalance": {"freq": "daily"}, "sweep": SWEEP}
    return _run(tmp_path_factory.mktemp("swept"), doc)


@pytest.fixture(scope="module")
def fixed(tmp_path_factory) -> tuple[Path, str]:
    """No sweep: the same parameters in every fold."""
    return _run(tmp_path_factory.mktemp("fixed"), BASE)


def _loaded_bars(report: Path) -> Bars:
    return load_experiment(report.parent / "wf.yaml").data.load()


def _rebuild(report: Path) -> tuple[pd.Series, pd.DataFrame]:
    """Equity at every close, from orders.csv + raw prices + the fee schedule; checks every fill's terms."""
    bars = _loaded_bars(report)
    eq = pd.read_parquet(report / "equity.parquet")["equity"]
    orders = pd.read_csv(report / "orders.csv", parse_dates=["time"])
    cash, pos = CASH, pd.Series(0.0, index=bars.symbols)
    out = []
    by_time = dict(list(orders.groupby("time")))
    for t in eq.index:
        for _, o in by_time.get(t, pd.DataFrame()).iterrows():
            raw = bars.open.at[t, o.symbol]  # fill: next_open, at the raw open moved against the trade
            sign = 1.0 if o.side == "buy" else -1.0
            assert o.price == pytest.approx(raw * (1 + sign * SLIP), rel=1e-12)
            assert o.fee == pytest.approx(o.quantity * o.price * FEES + FIXED, rel=1e-12)
            cash -= sign * o.quantity * o.price + o.fee
            pos[o.symbol] += sign * o.quantity
        out.append(cash + float((pos * bars.close.loc[t]).sum()))
    return pd.Series(out, index=eq.index), orders


def test_oos_curve_rebuilds_from_orders_raw_prices_and_fees(swept) -> None:
    report, _ = swept
    eq = pd.read_parquet(report / "equity.parquet")["equity"]
    rebuilt, orders = _rebuild(report)
    # one account: cash and positions carried through every fold, no restart from initial cash
    np.testing.assert_allclose(rebuilt.to_numpy(), eq.to_numpy(), rtol=1e-9, atol=0)
    folds = pd.read_csv(report / "folds.csv")
    chosen = folds[["signal.params.fast", "signal.params.slow"]].drop_duplicates()
    assert len(chosen) > 1, "the sweep must change the parameters between folds for this test to bite"
    assert len(orders) > 100


def test_oos_bars_are_contiguous_and_tiled_by_the_test_windows(swept) -> None:
    report, _ = swept
    bars = _loaded_bars(report)
    eq = pd.read_parquet(report / "equity.parquet")["equity"]
    folds = pd.read_csv(report / "folds.csv", parse_dates=["train_end", "test_start", "test_end"])
    first, last = bars.index.get_loc(eq.index[0]), bars.index.get_loc(eq.index[-1])
    # every bar between the first and last test bar is out of sample, in order, none missing
    assert eq.index.equals(bars.index[first:last + 1])
    assert eq.index[0] == folds["test_start"].iloc[0] and eq.index[-1] == folds["test_end"].iloc[-1]
    assert eq.index[-1] == bars.index[-1]  # the last (shorter) test window reaches the end of the data
    for a, b in zip(folds.itertuples(), folds.iloc[1:].itertuples(), strict=False):
        assert bars.index.get_loc(b.test_start) == bars.index.get_loc(a.test_end) + 1
    assert folds["test_bars"].sum() == len(eq)
    # purge and embargo came out of the training windows: 2 + 3 bars between train end and test start
    gaps = [bars.index.get_loc(s) - bars.index.get_loc(e) - 1 for s, e in zip(folds.test_start, folds.train_end,
                                                                             strict=True)]
    assert gaps == [WF["purge"] + WF["embargo"]] * len(folds)


def test_fold_rows_are_the_accounts_figures(swept) -> None:
    report, _ = swept
    folds = pd.read_csv(report / "folds.csv")
    metrics = json.loads((report / "metrics.json").read_text())
    _, orders = _rebuild(report)
    assert np.prod(1 + folds["test_return"]) == pytest.approx(metrics["final_equity"] / CASH, rel=1e-12)
    assert folds["test_fees"].sum() == pytest.approx(metrics["fees_paid"], rel=1e-12)
    assert folds["test_orders"].sum() == metrics["n_orders"] == len(orders)
    # fees and turnover in the units of the one account that paid them
    assert metrics["fees_paid"] == pytest.approx(orders["fee"].sum(), rel=1e-12)
    eq = pd.read_parquet(report / "equity.parquet")["equity"]
    period = eq.loc[metrics["eval_start"]:]
    assert eq.loc[:metrics["eval_start"]].iloc[:-1].eq(CASH).all()  # flat until the first fill
    traded = float((orders["quantity"] * orders["price"]).sum())
    assert metrics["turnover"] == pytest.approx(traded / period.mean() / (len(period) / 252), rel=1e-9)
    assert metrics["n_folds"] == len(folds) == 5


def test_fixed_params_equal_one_uninterrupted_run_over_the_oos_span(fixed) -> None:
    """Without a sweep every fold wants the same thing: the walk-forward is one plain backtest of the span.

    drawdown_halt sees one account too: its peak and halts run across fold boundaries.
    """
    report, _ = fixed
    exp = load_experiment(report.parent / "wf.yaml", ["walk_forward=null"])
    bars = exp.data.load()
    start = walk_forward_splits(len(bars.index), **WF)[0].test.start
    targets = compute_targets(exp, bars)
    targets.targets = targets.targets.loc[targets.targets.index >= bars.index[start]]
    plain = run_engine(exp, bars.iloc(slice(start, None)), targets, "vectorbt")
    eq = pd.read_parquet(report / "equity.parquet")["equity"]
    np.testing.assert_allclose(eq.to_numpy(), plain.equity.to_numpy(), rtol=1e-12)
    orders = pd.read_csv(report / "orders.csv", parse_dates=["time"])
    pd.testing.assert_frame_equal(orders, plain.orders, check_dtype=False, rtol=1e-12)
    events = pd.read_csv(report / "risk_events.csv", parse_dates=["time"])
    assert len(events) > 0 and len(events) == len(plain.events)


def test_a_position_held_across_a_fold_boundary_is_not_closed_and_reopened(fixed) -> None:
    report, _ = fixed
    bars = _loaded_bars(report)
    folds = walk_forward_splits(len(bars.index), **WF, allow_partial=True)
    orders = pd.read_csv(report / "orders.csv", parse_dates=["time"])
    weights = pd.read_parquet(report / "weights.parquet")
    eq = pd.read_parquet(report / "equity.parquet")["equity"]
    signed = orders["quantity"].where(orders["side"] == "buy", -orders["quantity"])
    held = signed.groupby([orders["time"], orders["symbol"]]).sum().unstack(fill_value=0.0)
    held = held.reindex(bars.index, fill_value=0.0).cumsum()
    carried = 0
    for f in folds[1:]:
        before, at = bars.index[f.test.start - 1], bars.index[f.test.start]
        # no decision fills on a boundary bar here, so nothing may trade there at all
        assert not (orders["time"] == at).any()
        first_decision = weights.index[weights.index >= at][0]
        last_decision = weights.index[weights.index < at][-1]
        for sym in bars.symbols:
            w = weights.at[first_decision, sym]
            if held.at[before, sym] <= 1e-9 or w <= 0 or w != weights.at[last_decision, sym]:
                continue
            carried += 1
            # the new fold wants the same weight: its first order only trims the drift, it neither sells
            # the position nor buys it again from scratch
            full = w * eq.at[before] / bars.close.at[before, sym]
            nxt = orders[(orders["symbol"] == sym) & (orders["time"] >= at)].head(1)
            assert nxt.empty or float(nxt["quantity"].iloc[0]) < 0.25 * full
            assert held.at[at, sym] == pytest.approx(held.at[before, sym], rel=1e-12)
    assert carried > 0, "some position must straddle a fold boundary for this test to bite"


def test_fold_table_says_what_is_chosen_instead_of_nan(fixed, swept) -> None:
    _, screen = fixed
    assert "nan" not in screen and "fixed params (no sweep)" in screen
    assert "train_sharpe" not in screen and "traded by one account" in screen
    assert "train_sharpe" not in pd.read_csv(fixed[0] / "folds.csv").columns
    _, screen = swept
    folds = pd.read_csv(swept[0] / "folds.csv")
    assert "train_sharpe" in screen and np.isfinite(folds["train_sharpe"]).all()
    row = folds.iloc[0]
    assert row["chosen"] == f"fast={row['signal.params.fast']}, slow={row['signal.params.slow']}"
    assert "one vectorbt account over" in screen


def test_backtrader_engine_runs_the_same_account(fixed, tmp_path) -> None:
    report, _ = fixed
    doc = {**BASE, "execution": {**BASE["execution"], "engine": "backtrader"}}
    bt_report, _ = _run(tmp_path, doc)
    assert json.loads((bt_report / "manifest.json").read_text())["engine"] == "backtrader"
    a = pd.read_parquet(report / "equity.parquet")["equity"]
    b = pd.read_parquet(bt_report / "equity.parquet")["equity"]
    assert a.index.equals(b.index)
    np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-9)


def test_one_account_settings_cannot_be_swept(tmp_path) -> None:
    doc = {**BASE, "sweep": {"params": {"risk.1.params.max_drawdown": [0.05, 0.1]}}}
    path = _write(tmp_path, doc)
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t.startswith("sweep:"))
    with pytest.raises(QfError, match=rf"^{path}:{line}: sweep: risk.1.params.max_drawdown changes the "
                                      r"settings of a stateful risk rule.*one account"):
        run_walk_forward(load_experiment(path), tmp_path / "r", Console(file=io.StringIO()))
    doc = {**BASE, "sweep": {"params": {"execution.fees": [0.0, 0.001]}}}
    with pytest.raises(QfError, match=r"sweep: execution.fees changes the execution or broker settings"):
        run_walk_forward(load_experiment(_write(tmp_path, doc)), tmp_path / "r", Console(file=io.StringIO()))
    # a stateless rule may change between folds: its weights are part of each fold's targets
    doc = {**BASE, "sweep": {"params": {"risk.0.params.limit": [0.4, 0.5]}}}
    run_walk_forward(load_experiment(_write(tmp_path, doc)), tmp_path / "ok", Console(file=io.StringIO()))


@pytest.mark.parametrize(("step", "says"), [(80, "leave 20 bars after every test window that no fold trades"),
                                            (30, "trade 30 bars of every test window twice")])
def test_a_step_other_than_test_is_refused_in_one_line(tmp_path, step: int, says: str) -> None:
    path = _write(tmp_path, {**BASE, "walk_forward": {**WF, "step": step}})
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t.strip().startswith("step:"))
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    msg = " ".join(res.output.split())
    assert msg.startswith(f"error: {path}:{line}: walk_forward") and f"step ({step}) must equal test (60)" in msg
    assert says in msg and len(res.output.strip().splitlines()) == 1
    assert "Traceback" not in res.output
    res = CliRunner().invoke(app, ["run", str(_write(tmp_path, BASE)), "--set", f"walk_forward.step={step}",
                                   "--out", str(tmp_path / "r")])
    msg = " ".join(res.output.split())
    assert res.exit_code == 2 and msg.startswith(f"error: --set walk_forward.step={step}: walk_forward") and says in msg
    # called directly (no CLI), the runner refuses the same way
    path = _write(tmp_path, {**BASE, "walk_forward": {**WF, "step": step}})
    with pytest.raises(QfError, match=rf"^{path}:{line}: walk_forward.*: step \({step}\) must equal test"):
        run_walk_forward(load_experiment(path), tmp_path / "r", Console(file=io.StringIO()))


def test_fold_rows_are_measured_on_the_accounts_equity_over_each_window(swept) -> None:
    """A fold's return and Sharpe come from the account's closes, the first from the close before the window."""
    report, _ = swept
    bars = _loaded_bars(report)
    eq = pd.read_parquet(report / "equity.parquet")["equity"]
    folds = pd.read_csv(report / "folds.csv", parse_dates=["test_start", "test_end"])
    for row in folds.iloc[1:].itertuples():
        prev = bars.index[bars.index.get_loc(row.test_start) - 1]
        window = eq.loc[prev:row.test_end]
        r = window.pct_change().iloc[1:]
        assert len(r) == row.test_bars
        assert row.test_return == pytest.approx(window.iloc[-1] / window.iloc[0] - 1, rel=1e-12)
        assert row.test_sharpe == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(252), rel=1e-9)
