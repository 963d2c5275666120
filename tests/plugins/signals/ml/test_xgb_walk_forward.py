"""The xgboost model through the walk-forward runner: model files, tables, reuse of the final model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from qf.bars import Bars, validate
from qf.config.loader import load_experiment
from qf.errors import QfError
from qf.pipeline import targets_at
from qf.research.folds import walk_forward_splits
from qf.research.walk_forward import run_walk_forward
from qf.runner import run_experiment
from qf.testing.contracts import sample_bars
from qf_plugins.signals.xgb import XGBoostSignal

SIGNAL = {"n_estimators": 20, "max_depth": 2, "learning_rate": 0.2, "top_n": 2, "seed": 1}
YAML = """
name: xgb_wf_test
data: {type: csv, params: {path: prices.csv}}
signal:
  type: xgboost
  params: {n_estimators: 20, max_depth: 2, learning_rate: 0.2, top_n: 2, seed: 1}
sizer: {type: equal}
risk: [{type: max_weight, params: {limit: 0.5}}]
rebalance: {freq: weekly}
execution: {fill: next_close, fees: 0.0005, slippage: 0.0005}
walk_forward: {train: 300, test: 100, purge: 5, embargo: 5}
report: {tearsheet: false}
"""
BARS = sample_bars(n_symbols=5, n_bars=600, seed=8)  # 3 adjacent 100-bar test windows after 300 train bars
FOLDS = walk_forward_splits(len(BARS.index), 300, 100, purge=5, embargo=5)


def _write_experiment(folder: Path, bars: Bars) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    long = pd.concat({f: getattr(bars, f).stack() for f in ("close", "volume")}, axis=1)
    long.index.names = ["date", "symbol"]
    long.reset_index().to_csv(folder / "prices.csv", index=False)
    (folder / "xgb_wf_test.yaml").write_text(YAML)
    return folder / "xgb_wf_test.yaml"


def _run(folder: Path, bars: Bars) -> Path:
    exp = load_experiment(_write_experiment(folder, bars))
    return run_walk_forward(exp, folder / "report", Console(file=io.StringIO()))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("wf") / "clean", BARS)


def test_report_has_model_metrics_per_fold(report: Path) -> None:
    folds = pd.read_csv(report / "folds.csv")
    assert len(folds) == len(FOLDS) == 3
    for col in ("accuracy", "majority_accuracy", "log_loss", "auc", "auc_up", "auc_down", "hit_rate", "ic"):
        assert np.isfinite(folds[col]).all(), col
    assert (folds["n_test"] == 5 * (100 - 5)).all()  # the last 5 test rows have no label inside the fold
    assert ((folds["accuracy"] >= 0) & (folds["accuracy"] <= 1)).all() and (folds["log_loss"] > 0).all()
    assert (folds["train_end"] == [str(BARS.index[f.train.stop - 1].date()) for f in FOLDS]).all()


def test_model_files_one_per_fold_and_the_final_one(report: Path) -> None:
    models = report / "models"
    assert sorted(p.name for p in models.iterdir()) == ["final", "fold_0", "fold_1", "fold_2"]
    for k, fold in enumerate(FOLDS):
        meta = json.loads((models / f"fold_{k}" / "meta.json").read_text())
        assert (models / f"fold_{k}" / "model.json").stat().st_size > 1000
        window = meta["train_window"]
        assert window["start"] == str(BARS.index[fold.train.start].date())
        assert window["end"] == str(BARS.index[fold.train.stop - 1].date())
        assert window["last_labelled"] == str(BARS.index[fold.train.stop - 1 - 5].date())
        assert meta["params"]["n_estimators"] == 20 and "volz_21" in meta["features"]
    final = json.loads((models / "final" / "meta.json").read_text())["train_window"]
    # the final model: the latest train-window length, ending on the last bar (what paper trading uses)
    assert final["end"] == str(BARS.index[-1].date()) and final["n_bars"] == FOLDS[-1].n_train


def test_fold_model_is_the_model_of_its_train_window(report: Path) -> None:
    """The saved fold model predicts exactly like one fitted here on the fold's purged train window."""
    fold = FOLDS[1]
    direct = XGBoostSignal(SIGNAL).fit(BARS.iloc(fold.train))
    saved = XGBoostSignal.load(report / "models" / "fold_1", top_n=2)
    with pytest.warns(UserWarning, match="in-sample"):  # BARS include the fold's train window
        pd.testing.assert_frame_equal(saved.compute(BARS), direct.compute(BARS), check_freq=False)


def test_importances_calibration_and_oos_predictions(report: Path) -> None:
    imp = pd.read_csv(report / "importances.csv", index_col="feature")
    meta = json.loads((report / "models" / "fold_0" / "meta.json").read_text())
    assert set(imp.index) == set(meta["features"])
    assert list(imp.columns) == ["fold_0", "fold_1", "fold_2", "mean", "std", "rank"]
    assert np.allclose(imp[["fold_0", "fold_1", "fold_2"]].sum(), 1.0)
    assert imp["mean"].is_monotonic_decreasing
    cal = pd.read_csv(report / "calibration.csv")
    assert set(cal["class"]) == {"up", "down"} and cal.groupby("class")["n"].sum().eq(3 * 475).all()
    oos = pd.read_parquet(report / "oos_predictions.parquet")
    assert len(oos) == 3 * 475 and set(oos["fold"]) == {0, 1, 2}
    for k, fold in enumerate(FOLDS):  # out of sample: every prediction lies in its fold's test window
        dates = pd.DatetimeIndex(oos.loc[oos["fold"] == k, "date"])
        assert dates.min() >= BARS.index[fold.test.start] and dates.max() <= BARS.index[fold.test.stop - 1]


def test_a_plain_run_can_use_the_saved_final_model(report: Path) -> None:
    path = report.parent / "xgb_wf_test.yaml"
    exp = load_experiment(path, ["walk_forward=null", f"signal.params.model_path={report}"])
    with pytest.warns(UserWarning, match="in-sample"):
        outcome = run_experiment(exp, write=False)
    targets = outcome.targets.targets
    assert (targets.to_numpy() > 0).any()
    # the live path paper trading takes: targets from a trailing window just long enough for the warm-up
    for date in targets.index[-3:]:
        pos = BARS.index.get_loc(date)
        window = outcome.bars.iloc(slice(pos - max(exp.signal.warmup, exp.sizer.warmup), pos + 1))
        np.testing.assert_allclose(targets_at(exp, window, date).to_numpy(), targets.loc[date].to_numpy(),
                                   atol=1e-9)
    # without walk_forward and without model_path the run refuses to fit in-sample
    bare = load_experiment(path, ["walk_forward=null"])
    with pytest.raises(QfError, match="no trained model"):
        run_experiment(bare, write=False)


def test_the_shipped_experiment_validates_and_purges_at_least_the_horizon() -> None:
    exp = load_experiment(Path(__file__).parents[4] / "experiments" / "xgb_swing.yaml")
    wf, signal = exp.spec.walk_forward, exp.signal
    assert isinstance(signal, XGBoostSignal) and wf is not None
    assert wf.purge >= signal.params.horizon and wf.embargo >= signal.params.horizon
    assert exp.spec.execution.fill == "next_close" and exp.spec.rebalance.freq == "weekly"


def test_corrupting_data_after_a_folds_train_end_leaves_that_folds_model_unchanged(report: Path,
                                                                                 tmp_path: Path) -> None:
    end = FOLDS[0].train.stop
    close, volume = BARS.close.copy(), BARS.volume.copy()
    rng = np.random.default_rng(1)
    close.iloc[end:] = close.iloc[end:].to_numpy() * np.exp(rng.normal(0, 0.05, close.iloc[end:].shape))
    volume.iloc[end:] = volume.iloc[end:].to_numpy()[rng.permutation(len(volume) - end)]
    corrupted = _run(tmp_path / "corrupt", validate(Bars(close=close, volume=volume, source="corrupt")))
    same = (report / "models" / "fold_0" / "model.json").read_bytes()
    assert (corrupted / "models" / "fold_0" / "model.json").read_bytes() == same
    # later folds train on the corrupted bars, so they must change (the comparison can fail)
    assert ((corrupted / "models" / "fold_1" / "model.json").read_bytes()
            != (report / "models" / "fold_1" / "model.json").read_bytes())
