"""Labels from forward returns, and the out-of-sample metrics built on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf_plugins.signals.ml.labels import class_ids, class_labels, forward_returns, labelled_rows
from qf_plugins.signals.ml.metrics import (
    calibration_table,
    classification_metrics,
    coverage_table,
    importance_table,
    mean_rank_ic,
    multiclass_log_loss,
    pinball_loss,
    quantile_metrics,
    roc_auc,
)

IDX = pd.bdate_range("2024-01-01", periods=8)
CLOSE = pd.DataFrame({"A": [100, 103, 101, 99, 100, 104, 104, 102]}, index=IDX, dtype=float)


def test_forward_returns_and_three_classes() -> None:
    fwd = forward_returns(CLOSE, 2)
    expected = [0.01, 99 / 103 - 1, 100 / 101 - 1, 104 / 99 - 1, 0.04, 102 / 104 - 1]
    np.testing.assert_allclose(fwd["A"].iloc[:6], expected)
    assert fwd["A"].iloc[-2:].isna().all()  # the last `horizon` rows have no future yet
    labels = class_labels(fwd, up=0.02, down=0.02)["A"]
    np.testing.assert_array_equal(labels.iloc[:6], [0, -1, 0, 1, 1, 0])
    assert labels.iloc[-2:].isna().all()
    # the thresholds themselves are flat, and the two sides can differ
    edge = pd.DataFrame({"A": [0.02, -0.02, 0.0201, -0.0101]})
    np.testing.assert_array_equal(class_labels(edge, up=0.02, down=0.01)["A"], [0, -1, 1, -1])
    np.testing.assert_array_equal(class_ids(np.array([-1.0, 0.0, 1.0])), [0, 1, 2])
    with pytest.raises(ValueError, match="horizon"):
        forward_returns(CLOSE, 0)


def test_labelled_rows_drop_the_last_horizon_dates_of_the_window() -> None:
    """Even when labels were computed on a longer history, rows whose label needs bars after the window
    (the purge gap, the test window) are not labelled rows of that window."""
    long = pd.MultiIndex.from_product([IDX, ["A", "B"]], names=["date", "symbol"])
    window = IDX[:6]
    mask = labelled_rows(long, window, horizon=2)
    kept = long[mask].get_level_values(0).unique()
    assert list(kept) == list(IDX[:4])  # IDX[4] and IDX[5] would look at IDX[6], IDX[7]
    assert not labelled_rows(long, IDX[:2], horizon=2).any()


def test_metrics_against_scikit_learn_and_by_hand() -> None:
    from sklearn.metrics import log_loss, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    proba = rng.dirichlet([1, 1, 1], 400)
    proba[np.arange(200), y[:200]] += 1.0  # some skill on half the rows
    proba /= proba.sum(axis=1, keepdims=True)
    assert multiclass_log_loss(y, proba) == pytest.approx(log_loss(y, proba, labels=[0, 1, 2]), rel=1e-12)
    score = np.round(proba[:, 2], 1)  # ties on purpose
    assert roc_auc(y == 2, score) == pytest.approx(roc_auc_score(y == 2, score), rel=1e-12)
    assert np.isnan(roc_auc(np.ones(5, bool), np.arange(5.0)))
    m = classification_metrics(y, proba, train_majority=1)
    assert m["accuracy"] == pytest.approx(np.mean(proba.argmax(1) == y))
    assert m["majority_accuracy"] == pytest.approx(np.mean(y == 1))
    assert m["auc"] == pytest.approx((m["auc_up"] + m["auc_down"]) / 2) and m["auc"] > 0.6
    # pinball loss: under-prediction costs alpha per unit, over-prediction 1 - alpha
    assert pinball_loss(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.9) == pytest.approx((0.9 + 0.1) / 2)
    q = quantile_metrics(np.array([-1.0, 0.5, 2.0]), np.array([[-2, 0, 1], [-1, 1, 2], [0, 1, 3]]), [0.1, 0.5, 0.9])
    assert q["coverage"] == pytest.approx(1.0) and q["accuracy"] == pytest.approx(2 / 3)
    assert {"pinball_q10", "pinball_q50", "pinball_q90", "pinball"} <= set(q)


def test_rank_ic_is_a_mean_of_daily_rank_correlations() -> None:
    dates = np.repeat([1, 2], 4)
    score = np.array([1, 2, 3, 4, 1, 2, 3, 4], dtype=float)
    realised = np.array([10, 20, 30, 40, 40, 30, 20, 10], dtype=float)  # day 1: +1, day 2: -1
    assert mean_rank_ic(dates, score, realised) == pytest.approx(0.0)
    assert mean_rank_ic(dates[:4], score[:4], realised[:4]) == pytest.approx(1.0)


def test_calibration_and_coverage_tables() -> None:
    oos = pd.DataFrame({"p_up": [0.05, 0.15, 0.15, 0.95], "p_down": [0.9, 0.1, 0.1, 0.01], "label": [-1, 1, 0, 1]})
    cal = calibration_table(oos, bins=10)
    up = cal[cal["class"] == "up"].set_index("bin_low")
    assert up.loc[0.1, "n"] == 2 and up.loc[0.1, "realised"] == 0.5 and up.loc[0.1, "predicted"] == pytest.approx(0.15)
    assert up.loc[0.9, "realised"] == 1.0 and up["n"].sum() == 4
    assert 0.3 in set(cal["bin_low"])  # edges are round numbers in the csv
    down = cal[cal["class"] == "down"].set_index("bin_low")
    assert down.loc[0.9, "realised"] == 1.0 and down.loc[0.1, "realised"] == 0.0
    cov = coverage_table(pd.DataFrame({"fwd_return": [0.0, 1.0, 2.0, 3.0], "q_0.1": [1.0] * 4, "q_0.5": [1.5] * 4,
                                       "q_0.9": [5.0] * 4}), [0.1, 0.5, 0.9])
    assert list(cov["realised"]) == [0.5, 0.5, 1.0]


def test_importance_table_normalises_each_model() -> None:
    t = importance_table([{"a": 3.0, "b": 1.0, "c": 0.0}, {"a": 1.0, "b": 1.0, "c": 0.0}], ["fold_0", "fold_1"])
    assert list(t.index) == ["a", "b", "c"] and list(t["rank"]) == [1, 2, 3]
    assert t["fold_0"].sum() == pytest.approx(1.0) and t.loc["a", "mean"] == pytest.approx((0.75 + 0.5) / 2)
