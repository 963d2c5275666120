"""meta_label: a secondary xgboost classifier gating a primary signal's entries, trained walk-forward."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from qf.bars import Bars
from qf.cli.main import app
from qf.components import TrainableSignal, history_of
from qf.config.loader import load_experiment
from qf.errors import QfError
from qf.research.folds import walk_forward_splits
from qf.research.walk_forward import run_walk_forward
from qf.testing.contracts import sample_bars
from qf_plugins.signals.meta_label import MetaLabel, entries_and_sides

ROOT = Path(__file__).resolve().parents[3]
EXPERIMENT = ROOT / "experiments" / "meta_label.yaml"
PARAMS = {"n_estimators": 10, "max_depth": 2, "learning_rate": 0.3, "seed": 3,
          "features": ["returns", "volatility", "rsi", "rank"]}
BARS = sample_bars(n_symbols=5, n_bars=640, seed=21)
FOLDS = walk_forward_splits(len(BARS.index), 320, 100, purge=5, embargo=5, allow_partial=True)
YAML = """
name: meta_test
data: {type: csv, params: {path: prices.csv}}
signal:
  type: meta_label
  params: {n_estimators: 10, max_depth: 2, learning_rate: 0.3, seed: 3, features: [returns, volatility, rsi, rank]}
sizer: {type: equal}
rebalance: {freq: weekly}
execution: {fill: next_close, fees: 0.0005}
walk_forward: {train: 320, test: 100, purge: 5, embargo: 5}
report: {tearsheet: false}
"""


def _changed_from(bars: Bars, start: int, seed: int = 1) -> Bars:
    """``bars`` with every close from position ``start`` on replaced by another random walk."""
    close = bars.close.copy()
    rng = np.random.default_rng(seed)
    n = len(close.index) - start
    close.iloc[start:] = close.iloc[start - 1].to_numpy() * np.exp(np.cumsum(rng.normal(0, 0.03, (n, close.shape[1])),
                                                                             axis=0))
    return Bars(close=close, volume=bars.volume, source="changed")


def _write(folder: Path, bars: Bars) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    long = pd.concat({f: getattr(bars, f).stack() for f in ("close", "volume")}, axis=1)
    long.index.names = ["date", "symbol"]
    long.reset_index().to_csv(folder / "prices.csv", index=False)
    (folder / "meta_test.yaml").write_text(YAML)
    return folder / "meta_test.yaml"


def test_entries_by_hand() -> None:
    primary = pd.DataFrame({"A": [np.nan, 0.3, 0.5, -0.2, 0.0, 0.1, 0.2], "B": [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0]})
    entry, side = entries_and_sides(primary)
    assert entry[:, 0].tolist() == [False, True, False, True, False, True, False]
    assert entry[:, 1].tolist() == [True, False, False, False, True, False, False]
    assert side[:, 0].tolist() == [0, 1, 1, -1, 0, 1, 1]


def test_labels_are_the_primary_trades_outcome_inside_the_window() -> None:
    model = MetaLabel(PARAMS)
    train = BARS.iloc(FOLDS[0].train)
    ev = model.events(train)
    close = train.close
    for (date, sym), row in ev.head(25).iterrows():
        t = close.index.get_loc(date)
        want = close[sym].iloc[t + 5] / close[sym].iloc[t] - 1 if t + 5 < len(close.index) else np.nan
        np.testing.assert_equal(row["fwd_return"], want)
        assert row["primary_side"] == np.sign(row["primary_score"]) != 0
    model.fit(train)
    # the last 5 bars' entries have no outcome inside the window: never trained on
    assert pd.Timestamp(model.fitted.window["last_labelled"]) <= close.index[-6]
    assert model.fitted.window["n_events"] == int((ev.index.get_level_values(0) <= close.index[-6]).sum())


@pytest.fixture(scope="module")
def fitted() -> MetaLabel:
    return MetaLabel(PARAMS).fit(BARS.iloc(FOLDS[0].train))


def test_gate_passes_or_zeroes_whole_trades(fitted: MetaLabel) -> None:
    primary = fitted.primary.compute(BARS)
    take_all = MetaLabel({**PARAMS, "threshold": 1e-9})
    take_all._fitted = fitted.fitted
    out = take_all.compute(BARS)
    warm = primary.notna().to_numpy() & (out.notna().to_numpy())
    # every entry with features is taken (P > 0): the primary's score passes through after the warm-up
    later = BARS.index >= BARS.index[fitted.warmup + 30]
    np.testing.assert_array_equal(out.to_numpy()[later], primary.to_numpy()[later])
    none = MetaLabel({**PARAMS, "threshold": 1 - 1e-12})
    none._fitted = fitted.fitted
    assert (none.compute(BARS).fillna(0.0).to_numpy() == 0).all()
    # a real threshold: on every trade (a run of the same side) the output is all primary or all 0
    out = fitted.compute(BARS)
    entry, side = entries_and_sides(primary)
    runs = np.cumsum(entry, axis=0)
    for j in range(out.shape[1]):
        for r in np.unique(runs[:, j][side[:, j] != 0]):
            rows = (runs[:, j] == r) & (side[:, j] != 0) & warm[:, j]
            taken = out.to_numpy()[rows, j] != 0
            assert taken.all() or not taken.any()
    assert 0 < (out.to_numpy()[warm] != 0).mean() < 1
    sized = MetaLabel({**PARAMS, "size_by_probability": True})
    sized._fitted = fitted.fitted
    s = sized.compute(BARS).to_numpy()
    assert np.nanmax(np.abs(s)) <= 1 and ((s[warm] > 0) & (s[warm] < primary.to_numpy()[warm])).any()


def test_no_lookahead_in_scores(fitted: MetaLabel) -> None:
    full = fitted.compute(BARS)
    for t in (fitted.warmup + 40, 450, 520, len(BARS.index) - 1):
        part = fitted.compute(BARS.iloc(slice(0, t + 1)))
        pd.testing.assert_series_equal(part.iloc[-1], full.iloc[t], check_exact=True)


def test_untrained_and_trainable_primary_refused(tmp_path: Path) -> None:
    with pytest.raises(QfError, match="has no trained model"):
        MetaLabel(PARAMS).compute(BARS)
    with pytest.raises(ValueError, match="primary: 'xgboost' is trainable"):
        MetaLabel({"primary": {"type": "xgboost"}})
    with pytest.raises(QfError, match="labelled entries in the train window"):
        MetaLabel({**PARAMS, "min_events": 5000}).fit(BARS.iloc(FOLDS[0].train))
    model = MetaLabel(PARAMS)
    # the features' warm-up counts every window, used or not (126: the drawdown window); path-dependent history
    assert isinstance(model, TrainableSignal) and history_of(model) is None and model.warmup == 126


def test_fit_uses_the_train_window_only(fitted: MetaLabel, tmp_path: Path) -> None:
    """Everything after the train window's last bar (purge gap, test window, later) changes nothing."""
    fold = FOLDS[0]
    changed = _changed_from(BARS, fold.train.stop)
    again = MetaLabel(PARAMS).fit(changed.iloc(fold.train))
    a, b = fitted.save(tmp_path / "a"), again.save(tmp_path / "b")
    assert (a / "model.json").read_bytes() == (b / "model.json").read_bytes()


def test_walk_forward_leakage_data_after_a_fold_changes_nothing_in_it(tmp_path: Path) -> None:
    """Two walk-forward runs whose data differ only after fold 1's test window: folds 0 and 1 are identical
    (models byte for byte, out-of-sample entries, folds.csv rows); a later fold is not."""
    assert len(FOLDS) >= 3
    cut = FOLDS[1].test.stop
    runs = {}
    for name, bars in (("a", BARS), ("b", _changed_from(BARS, cut))):
        path = _write(tmp_path / name, bars)
        runs[name] = run_walk_forward(load_experiment(path), tmp_path / f"r_{name}", Console(file=io.StringIO()))
    a, b = runs["a"], runs["b"]
    def model(run: Path, k: int) -> bytes:
        return (run / f"models/fold_{k}/model.json").read_bytes()

    # a model whose train window ends before the change is the same (fold 2's too: its window ends in
    # fold 1's test window); the first one trained past the change is not
    trained_before = [f.index for f in FOLDS if f.train.stop <= cut]
    assert trained_before[:2] == [0, 1]
    for k in trained_before:
        assert model(a, k) == model(b, k), k
    assert model(a, trained_before[-1] + 1) != model(b, trained_before[-1] + 1)
    oa, ob = pd.read_parquet(a / "meta_oos.parquet"), pd.read_parquet(b / "meta_oos.parquet")
    early_a, early_b = (o[o["fold"] <= 1].reset_index(drop=True) for o in (oa, ob))
    assert len(early_a) > 10
    pd.testing.assert_frame_equal(early_a, early_b, check_exact=True)
    fa, fb = pd.read_csv(a / "folds.csv"), pd.read_csv(b / "folds.csv")
    pd.testing.assert_frame_equal(fa.iloc[:2], fb.iloc[:2], check_exact=True)
    assert {"entries", "base_rate", "accepted", "precision", "auc"} <= set(fa.columns)


def test_the_example_experiment_validates_and_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(EXPERIMENT)])
    assert result.exit_code == 0, result.output
    exp = load_experiment(EXPERIMENT, ["signal.params.n_estimators=8", "data.params.start=2018-01-01",
                                       "walk_forward.train=400", "walk_forward.test=300", "report.tearsheet=false"])
    out = run_walk_forward(exp, tmp_path / "r", Console(file=io.StringIO()))
    folds = pd.read_csv(out / "folds.csv")
    assert len(folds) >= 2 and folds["entries"].sum() > 0
    assert len(pd.read_parquet(out / "meta_oos.parquet")) == int(folds["entries"].sum())
    assert len(pd.read_csv(out / "orders.csv")) > 0
