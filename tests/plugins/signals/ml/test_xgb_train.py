"""qf_plugins.signals.xgb_train.train fits xgboost.train's model byte for byte, with or without its native loop."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from qf_plugins.signals import xgb_train

xgb = pytest.importorskip("xgboost")

RNG = np.random.default_rng(5)
X = RNG.normal(size=(600, 6)).astype(np.float32)
X[RNG.random(X.shape) < 0.05] = np.nan  # missing values take the default branch
NAMES = [f"f{i}" for i in range(X.shape[1])]
CLASS = (X[:, 0] + RNG.normal(scale=0.5, size=len(X)) > 0).astype(int) + (X[:, 1] > 0.7)
RET = 0.01 * np.nan_to_num(X[:, 2]) + RNG.normal(scale=0.02, size=len(X))
COMMON = {"tree_method": "hist", "max_depth": 3, "eta": 0.1, "subsample": 0.8, "colsample_bytree": 0.7,
          "min_child_weight": 2.0, "seed": 9, "nthread": 1, "verbosity": 0, "validate_parameters": True}
CASES = {
    "classify": ({**COMMON, "objective": "multi:softprob", "num_class": 3, "eval_metric": "mlogloss"}, CLASS),
    "quantile": ({**COMMON, "objective": "reg:quantileerror", "quantile_alpha": np.array([0.1, 0.5, 0.9])}, RET),
}


def _dmatrix(label: np.ndarray) -> xgb.DMatrix:
    return xgb.DMatrix(X, label=label, feature_names=NAMES, nthread=1)


def _raw(booster: xgb.Booster) -> bytes:
    return bytes(booster.save_raw("json"))


@pytest.mark.parametrize("mode", sorted(CASES))
def test_same_model_as_xgboost_train(mode: str) -> None:
    params, label = CASES[mode]
    reference = xgb.train(params, _dmatrix(label), num_boost_round=25)
    fitted = xgb_train.train(params, _dmatrix(label), 25)
    assert _raw(fitted) == _raw(reference)
    assert fitted.num_boosted_rounds() == 25
    assert fitted.feature_names == NAMES
    np.testing.assert_array_equal(fitted.inplace_predict(X[:50]), reference.inplace_predict(X[:50]))


def test_native_loop_is_built_and_the_python_loop_gives_the_same_model(monkeypatch: pytest.MonkeyPatch) -> None:
    params, label = CASES["classify"]
    native = _raw(xgb_train.train(params, _dmatrix(label), 20))
    assert xgb_train._rounds_function() is not None  # llvmlite comes with numba, a qf dependency
    monkeypatch.setattr(xgb_train, "_native", [None])  # as on a platform without the JIT
    assert _raw(xgb_train.train(params, _dmatrix(label), 20)) == native


def test_an_xgboost_error_inside_the_loop_is_raised_with_its_message() -> None:
    params, _ = CASES["classify"]
    bad = np.full(len(X), 7.0)  # a class id outside num_class: xgboost fails in the first round
    with pytest.raises(xgb.core.XGBoostError, match="label"):
        xgb_train.train(params, _dmatrix(bad), 5)


def test_fits_on_threads_are_the_sequential_ones() -> None:
    params, label = CASES["classify"]
    seeds = [1, 2, 3, 4]
    alone = [_raw(xgb_train.train({**params, "seed": s}, _dmatrix(label), 15)) for s in seeds]
    out: dict[int, bytes] = {}

    def fit(s: int) -> None:
        out[s] = _raw(xgb_train.train({**params, "seed": s}, _dmatrix(label), 15))

    threads = [threading.Thread(target=fit, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [out[s] for s in seeds] == alone
