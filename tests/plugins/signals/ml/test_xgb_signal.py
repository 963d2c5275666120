"""xgboost signal: no look-ahead after fitting, finds a planted edge and not noise, save/load, errors."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from qf.bars import Bars, validate
from qf.errors import QfError
from qf.research.folds import walk_forward_splits
from qf.testing.contracts import assert_signal_no_lookahead, assert_signal_valid, sample_bars
from qf_plugins.signals.ml.metrics import pinball_loss
from qf_plugins.signals.xgb import XGBoostSignal, load

FAST = {"n_estimators": 40, "max_depth": 3, "learning_rate": 0.1, "seed": 3}
BARS = sample_bars(n_symbols=5, n_bars=520, seed=5, unlisted=1)
TRAIN = slice(0, 395)  # a fold's train window: 400 bars minus a purge of 5


def ar_bars(beta: float, seed: int, n_symbols: int = 8, n_bars: int = 900) -> Bars:
    """Closes whose daily return is ``beta`` times the return 5 bars earlier plus noise.

    The return over the next 5 bars then correlates with the return over the last 5 with coefficient
    ``beta``: a planted edge the model can learn from the ``ret_5`` feature when beta != 0, and pure
    noise when beta == 0. Daily noise of ~1% makes 5-bar moves beyond +/-2% common.
    """
    rng = np.random.default_rng(seed)
    r = rng.standard_normal((n_bars, n_symbols)) * 0.0107
    for t in range(5, n_bars):
        r[t] += beta * r[t - 5]
    idx = pd.bdate_range("2015-01-02", periods=n_bars)
    close = pd.DataFrame(100.0 * np.exp(np.cumsum(r, axis=0)), index=idx, columns=[f"S{i}" for i in range(n_symbols)])
    return validate(Bars(close=close, source=f"ar(beta={beta})"))


def _fit_eval(bars: Bars, **params) -> dict[str, float]:
    return _fit_eval_model(bars, **params)[1]


def _fit_eval_model(bars: Bars, **params) -> tuple[XGBoostSignal, dict[str, float]]:
    # train on [0, 595), purge 5, test [600, 900): the walk-forward shape of one fold
    model = XGBoostSignal({**FAST, "n_estimators": 60, **params}).fit(bars.iloc(slice(0, 595)))
    return model, model.evaluate(bars, slice(600, 900))


def _dump(model: XGBoostSignal) -> bytes:
    assert model.fitted is not None
    return bytes(model.fitted.booster.save_raw("json"))


@pytest.fixture(scope="module")
def fitted() -> XGBoostSignal:
    return XGBoostSignal(FAST).fit(BARS.iloc(TRAIN))


def test_compute_without_a_trained_or_saved_model_raises_a_clear_error() -> None:
    with pytest.raises(QfError, match=r"no trained model: train it in a walk_forward section .*model_path"):
        XGBoostSignal({}).compute(BARS)
    with pytest.raises(QfError, match="no trained model"):
        XGBoostSignal({}).evaluate(BARS, slice(400, 500))


def test_predictions_pass_the_generic_lookahead_and_validity_checks(fitted: XGBoostSignal) -> None:
    signal = assert_signal_valid(fitted, BARS)
    assert_signal_no_lookahead(fitted, BARS, points=6)
    assert signal.notna().to_numpy().any() and (signal.abs() > 0).to_numpy().any()
    # the cross-sectional options keep the contract too
    picky = fitted.with_runtime(min_confidence=0.05, top_n=2)
    top = assert_signal_valid(picky, BARS)
    assert_signal_no_lookahead(picky, BARS, points=4)
    kept = top.notna().to_numpy() & (top.to_numpy() != 0)
    assert (kept.sum(axis=1) <= 2).all() and kept.sum() > 100
    assert (np.abs(signal.to_numpy()[kept]) >= 0.05).all()
    np.testing.assert_array_equal(top.to_numpy()[kept], signal.to_numpy()[kept])


def test_a_folds_model_does_not_depend_on_data_after_its_train_end() -> None:
    fold = walk_forward_splits(len(BARS.index), train=400, test=100, purge=5, embargo=5)[0]
    end = fold.train.stop
    # shuffle the daily moves after the train end (and wreck the volume there): a different future
    rng = np.random.default_rng(0)
    log_ret = np.log(BARS.close).diff().to_numpy(copy=True)
    tail = log_ret[end:].copy()
    rng.shuffle(tail)
    log_ret[end:] = tail * 3.0
    close = BARS.close.copy()
    close.iloc[end:] = (close.iloc[end - 1].to_numpy() * np.exp(np.nancumsum(log_ret[end:], axis=0)))
    volume = BARS.volume.copy()
    volume.iloc[end:] = volume.iloc[end:].to_numpy()[::-1]
    corrupted = validate(Bars(close=close, volume=volume, source="corrupted"))

    clean_model = XGBoostSignal(FAST).fit(BARS.iloc(fold.train))
    corrupt_model = XGBoostSignal(FAST).fit(corrupted.iloc(fold.train))
    assert _dump(clean_model) == _dump(corrupt_model)
    test_rows = BARS.index[fold.test]
    a = clean_model.compute(BARS).loc[test_rows]
    b = corrupt_model.compute(corrupted).loc[test_rows]
    assert not np.allclose(a.to_numpy(), b.to_numpy(), equal_nan=True), "the corruption must matter somewhere"
    # the same model scores the unchanged history identically
    pre = BARS.index[: fold.train.stop]
    pd.testing.assert_frame_equal(clean_model.compute(BARS).loc[pre], corrupt_model.compute(corrupted).loc[pre])


def test_fit_drops_labels_that_reach_past_the_train_window() -> None:
    model = XGBoostSignal({**FAST, "horizon": 7})
    window = BARS.iloc(TRAIN)
    X, y = model.training_set(window)
    dates = X.index.get_level_values(0)
    assert dates.max() == window.index[-1 - 7]  # the last 7 rows' labels would need bars after the window
    # the labels it does use are the true ones (computed on any longer history they are the same)
    full_fwd = BARS.close.shift(-7) / BARS.close - 1
    truth = np.array([full_fwd.at[d, s] for d, s in X.index])
    expected = np.where(truth > 0.02, 2, np.where(truth < -0.02, 0, 1))
    np.testing.assert_array_equal(y.astype(int) + 1, expected)
    model.fit(window)
    assert model.fitted is not None and model.fitted.window["last_labelled"] == str(window.index[-8].date())


@pytest.mark.parametrize("seed", [1, 2])
def test_finds_a_planted_edge_out_of_sample(seed: int) -> None:
    m = _fit_eval(ar_bars(-0.6, seed))
    assert m["n_test"] == 8 * (300 - 5)
    assert m["auc"] > 0.72 and m["ic"] > 0.4 and m["hit_rate"] > 0.65
    assert m["accuracy"] > m["majority_accuracy"] + 0.04
    assert m["log_loss"] < np.log(3) - 0.1


@pytest.mark.parametrize("seed", [1, 2])
def test_finds_nothing_in_noise(seed: int) -> None:
    m = _fit_eval(ar_bars(0.0, seed))
    assert abs(m["auc"] - 0.5) < 0.06 and abs(m["ic"]) < 0.1 and abs(m["hit_rate"] - 0.5) < 0.06
    assert m["accuracy"] < m["majority_accuracy"] + 0.03


def _constant_median_loss(model: XGBoostSignal, bars: Bars) -> float:
    """Out-of-sample pinball loss of the naive forecast: the train window's median forward return."""
    _, y_train = model.training_set(bars.iloc(slice(0, 595)))
    oos = model.oos_predictions
    assert oos is not None
    return pinball_loss(oos["fwd_return"].to_numpy(), np.full(len(oos), np.median(y_train)), 0.5)


def test_quantile_mode_learns_the_edge_and_its_intervals_are_calibrated() -> None:
    edge_bars, noise_bars = ar_bars(-0.6, 1), ar_bars(0.0, 1)
    edge_model, edge = _fit_eval_model(edge_bars, mode="quantile")
    noise_model, noise = _fit_eval_model(noise_bars, mode="quantile")
    assert edge["ic"] > 0.4 and edge["auc"] > 0.72 and abs(noise["ic"]) < 0.1 and abs(noise["auc"] - 0.5) < 0.06
    # the median forecast beats the constant one clearly with an edge, and cannot without one
    assert edge["pinball_q50"] < 0.9 * _constant_median_loss(edge_model, edge_bars)
    assert noise["pinball_q50"] > 0.97 * _constant_median_loss(noise_model, noise_bars)
    for m in (edge, noise):  # nominal 80% interval from the 0.1 and 0.9 quantiles
        assert 0.65 < m["coverage"] < 0.92
    assert {"pinball_q10", "pinball_q50", "pinball_q90"} <= set(edge)


def test_quantile_scores_come_from_median_and_spread() -> None:
    model = XGBoostSignal({**FAST, "mode": "quantile", "quantiles": [0.2, 0.5, 0.8]}).fit(BARS.iloc(TRAIN))
    model.compute(BARS)
    assert model._cache is not None
    pred = model._cache[2]
    q = pred[["q_0.2", "q_0.5", "q_0.8"]].to_numpy()
    assert (np.diff(q, axis=1) >= 0).all()  # sorted: quantiles never cross
    expected = np.clip(q[:, 1] / ((q[:, 2] - q[:, 0]) / 2), -1, 1)
    np.testing.assert_allclose(pred["score"], expected)


def test_same_seed_same_trees_other_seed_other_trees() -> None:
    a = XGBoostSignal(FAST).fit(BARS.iloc(TRAIN))
    b = XGBoostSignal(FAST).fit(BARS.iloc(TRAIN))
    c = XGBoostSignal({**FAST, "seed": 4}).fit(BARS.iloc(TRAIN))
    assert _dump(a) == _dump(b) and _dump(a) != _dump(c)


@pytest.mark.parametrize("mode", ["classify", "quantile"])
def test_saved_models_load_and_reproduce_predictions(tmp_path: Path, mode: str) -> None:
    model = XGBoostSignal({**FAST, "mode": mode, "horizon": 3}).fit(BARS.iloc(TRAIN))
    expected = model.compute(BARS)
    folder = model.save(tmp_path / "fold_0")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["features"] == model.fitted.features and "volz_21" in meta["features"]
    assert meta["params"]["horizon"] == 3 and meta["params"]["mode"] == mode
    assert meta["train_window"]["start"] == "2015-01-02" and meta["train_window"]["n_bars"] == 395
    assert meta["train_window"]["end"] == str(BARS.index[394].date())
    loaded = load(folder)
    with pytest.warns(UserWarning, match=r"trained on 2015-01-02\.\.2016-07-07; its scores on the 395 bars"):
        pd.testing.assert_frame_equal(loaded.compute(BARS), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per model, and never for data after the training window
        loaded.compute(BARS)
        load(folder).compute(BARS.iloc(slice(395, None)))
    assert loaded.params.horizon == 3 and loaded.warmup == model.warmup
    # the same through params, as YAML gives them: only the path, the rest comes from the file
    lazy = XGBoostSignal({"model_path": str(folder)})
    with pytest.warns(UserWarning, match="in-sample"):
        pd.testing.assert_frame_equal(lazy.compute(BARS), expected)
    assert lazy.params.horizon == 5 and lazy.fitted is not None and lazy.fitted.params.horizon == 3


def test_model_path_resolution_and_mismatch_errors(tmp_path: Path, fitted: XGBoostSignal) -> None:
    run = tmp_path / "reports" / "xgb" / "run1"
    fitted.save(run / "models" / "final")
    expected = fitted.compute(BARS)
    # a run folder means its final model; a relative path may be relative to the experiment's folder
    by_run = XGBoostSignal({"model_path": str(run)})
    relative = XGBoostSignal({"model_path": "reports/xgb/run1"}).resolve_paths(tmp_path)
    for model in (by_run, relative):
        with pytest.warns(UserWarning):
            pd.testing.assert_frame_equal(model.compute(BARS), expected)
    # params set in YAML must agree with the saved model; score-shaping ones may differ
    with pytest.raises(QfError, match=re.escape("horizon: 10 here, 5 in the saved model")):
        XGBoostSignal({"model_path": str(run), "horizon": 10}).compute(BARS)
    ok = XGBoostSignal({"model_path": str(run), "horizon": 5, "top_n": 1, "n_jobs": 2})
    with pytest.warns(UserWarning):
        assert ((ok.compute(BARS) > 0).sum(axis=1) <= 1).all()
    with pytest.raises(QfError, match="no saved model there"):
        XGBoostSignal({"model_path": str(tmp_path / "nowhere")}).compute(BARS)
    broken = tmp_path / "broken"
    shutil.copytree(run / "models" / "final", broken)
    (broken / "model.json").write_text("{not json")
    with pytest.raises(QfError, match="cannot load the xgboost model"):
        XGBoostSignal({"model_path": str(broken)}).compute(BARS)
    with pytest.raises(QfError, match="define the model"):
        XGBoostSignal.load(run, horizon=3)


def test_close_only_data_cannot_feed_a_model_trained_with_volume(fitted: XGBoostSignal) -> None:
    with pytest.raises(QfError, match=r"features this data cannot provide \(volz_21\)"):
        fitted.compute(Bars(close=BARS.close, source="close-only"))


def test_too_short_or_one_sided_train_windows_are_clear_errors() -> None:
    with pytest.raises(QfError, match="use a longer walk_forward.train"):
        XGBoostSignal(FAST).fit(BARS.iloc(slice(0, 130)))
    with pytest.raises(QfError, match=r"every label in the train window .* is 0"):
        XGBoostSignal({**FAST, "threshold": 0.9}).fit(BARS.iloc(TRAIN))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"quantiles": [0.1, 0.9]}, "must include 0.5"),
        ({"quantiles": [0.5, 0.1, 0.9]}, "strictly increasing"),
        ({"features": ["returns", "astrology"]}, "features"),
        ({"vol_windows": [1, 5]}, "at least 2 bars"),
        ({"mode": "regress"}, "mode"),
        ({"n_jobs": 0}, "n_jobs"),
    ],
)
def test_params_validation(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        XGBoostSignal(params)
