"""ensemble: hand-computed weighted mean and vote, the pairwise-correlation diversity score and its warning,
members built through the registry, no look-ahead, config errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from qf.bars import Bars
from qf_plugins.signals.ensemble import DiversityWarning, Ensemble

CLOSE = [1, 2, 1, 2, 3, 2]  # momentum(lookback 1) signs: NaN, +1, -1, +1, +1, -1
MOM = {"type": "momentum", "params": {"lookback": 1, "skip": 0}}
HALF = {"type": "constant", "params": {"value": 0.5}}


def _bars(close: list[float]) -> Bars:
    return Bars(close=pd.DataFrame({"A": close}, index=pd.bdate_range("2024-01-01", periods=len(close)),
                                   dtype=float))


def test_weighted_mean_hand_computed():
    out = Ensemble({"members": [{**MOM, "weight": 3}, HALF]}).compute(_bars(CLOSE))["A"]
    assert np.isnan(out.iloc[0])
    # (3 * s + 0.5) / 4
    assert out.iloc[1:].tolist() == pytest.approx([0.875, -0.625, 0.875, 0.875, -0.625])


def test_weighted_vote_hand_computed():
    even = Ensemble({"method": "vote", "members": [MOM, HALF]}).compute(_bars(CLOSE))["A"]
    assert even.iloc[1:].tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]  # a tie is 0
    heavy = Ensemble({"method": "vote", "members": [{**MOM, "weight": 2}, HALF]}).compute(_bars(CLOSE))["A"]
    assert heavy.iloc[1:].tolist() == [1.0, -1.0, 1.0, 1.0, -1.0]


def test_identical_predictions_warn_and_score_one():
    # close above its 2-bar SMA <=> close above the previous close: the trend regime repeats momentum(1)
    trend = {"type": "regime", "params": {"kind": "trend", "trend_window": 2}}
    model = Ensemble({"members": [MOM, trend, HALF]})
    with pytest.warns(DiversityWarning, match=r"momentum ~ regime 1.00"):
        model.compute(_bars(CLOSE))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DiversityWarning)
        model.compute(_bars(CLOSE))  # once per model, not on every bar of a paper session
    div = model.diversity(_bars(CLOSE))
    assert div["pairs"]["momentum ~ regime"] == pytest.approx(1.0)
    assert np.isnan(div["pairs"]["momentum ~ constant"])  # a constant has no variance to correlate
    assert div["above_max"] == ["momentum ~ regime"] and div["mean_correlation"] == pytest.approx(1.0)


def test_diversity_matches_numpy_and_no_warning_below_threshold():
    rng = np.random.default_rng(4)
    bars = Bars(close=pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (300, 3)), axis=0)),
                                   index=pd.bdate_range("2020-01-01", periods=300), columns=list("XYZ")))
    model = Ensemble({"members": [{"type": "sma_cross", "params": {"fast": 5, "slow": 20}},
                                  {"type": "mean_reversion"}], "max_correlation": 0.99})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DiversityWarning)
        model.compute(bars)
    a = model.members[0].compute(bars).to_numpy().ravel()
    b = model.members[1].compute(bars).to_numpy().ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    assert model.last_diversity["pairs"]["sma_cross ~ mean_reversion"] == pytest.approx(np.corrcoef(a[ok], b[ok])[0, 1])


def test_no_lookahead_on_truncation():
    rng = np.random.default_rng(2)
    bars = Bars(close=pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (200, 2)), axis=0)),
                                   index=pd.bdate_range("2020-01-01", periods=200), columns=["A", "B"]))
    model = Ensemble({"members": [{"type": "sma_cross", "params": {"fast": 5, "slow": 20}}, MOM]})
    assert model.warmup == 19
    full = model.compute(bars)
    for k in (25, 90, 150):
        pd.testing.assert_frame_equal(model.compute(bars.iloc(slice(0, k))), full.iloc[:k])


@pytest.mark.parametrize(("params", "message"), [
    ({"members": [MOM]}, "at least 2 members"),
    ({"members": [MOM, {"type": "momentun"}]}, "members.1: 'momentun' is not an installed signal"),
    ({"members": [MOM, {**HALF, "weight": 0}]}, "greater than 0"),
    ({"members": [MOM, {"type": "constant", "params": {"value": 2}}]}, "members.1.params.value"),
])
def test_bad_config_is_one_clear_message(params, message):
    with pytest.raises(ValidationError, match=message):
        Ensemble(params)


def test_live_history_is_the_longest_members():
    from qf.components import history_of
    from qf.testing.contracts import assert_signal_warmup, sample_bars

    model = Ensemble({"members": [{"type": "sma_cross", "params": {"fast": 5, "slow": 40}}, MOM],
                      "max_correlation": 1.0})
    assert history_of(model) == 40
    assert_signal_warmup(model, sample_bars(n_symbols=3, n_bars=300, seed=1))
    assert history_of(Ensemble({"members": [MOM, {"type": "regime"}]})) is None  # a member needs everything
