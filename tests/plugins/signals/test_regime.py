"""regime (volatility terciles fitted on the past, trend) and regime_switch: hand-computed labels,
truncation (no look-ahead), composition through the registry, and config errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from qf.bars import Bars
from qf_plugins.signals.regime import Regime, RegimeSwitch


def _bars(close: dict[str, list[float]]) -> Bars:
    n = len(next(iter(close.values())))
    return Bars(close=pd.DataFrame(close, index=pd.bdate_range("2024-01-01", periods=n), dtype=float))


# log returns (in 0.01) chosen so that realised vol over 2 returns, |r_t - r_{t-1}| / sqrt(2), is
# 2, 4, 6, 1, 5, 3, 0.5 (same units) on bars 2..8
LOG_RETURNS = np.array([0, 0, 2, -2, 4, 3, -2, 1, 0.5]) * 0.01


def test_volatility_terciles_hand_computed():
    close = 100 * np.exp(np.cumsum(LOG_RETURNS))
    model = Regime({"kind": "volatility", "vol_window": 2, "min_history": 3})
    out = model.compute(_bars({"A": list(close)}))["A"]
    assert model.warmup == 4
    assert out.iloc[:4].isna().all()
    # bar 4: past rv {2,4,6}: terciles 3.33 / 4.67, rv 6 -> high (-1)
    # bar 5: {1,2,4,6}: 2 / 4, rv 1 -> low (+1)
    # bar 6: {1,2,4,5,6}: 2.67 / 4.67, rv 5 -> high
    # bar 7: {1,...,6}: 2.67 / 4.33, rv 3 -> mid (0)
    # bar 8: {0.5,1,...,6}: 2 / 4, rv 0.5 -> low
    assert out.iloc[4:].tolist() == [-1.0, 1.0, -1.0, 0.0, 1.0]


def test_trend_hand_computed():
    model = Regime({"kind": "trend", "trend_window": 3})
    out = model.compute(_bars({"A": [1, 2, 3, 2, 1], "B": [5, 5, 5, 5, 6]}))
    assert model.warmup == 2
    assert out["A"].iloc[2:].tolist() == [1.0, -1.0, -1.0]  # SMA 2, 2.33, 2
    assert out["B"].iloc[2:].tolist() == [-1.0, -1.0, 1.0]  # equal to the SMA is not up


def test_labels_use_past_data_only():
    rng = np.random.default_rng(7)
    vol = np.where(np.arange(400) % 120 < 60, 0.005, 0.02)  # alternating calm and wild stretches
    close = 100 * np.exp(np.cumsum(rng.normal(0, vol, (3, 400)).T, axis=0))
    bars = _bars({s: list(close[:, i]) for i, s in enumerate("ABC")})
    for params in ({"kind": "volatility", "vol_window": 10, "min_history": 50}, {"kind": "trend", "trend_window": 30}):
        full = Regime(params).compute(bars)
        assert set(np.unique(full.to_numpy()[~np.isnan(full.to_numpy())])) >= {-1.0, 1.0}
        for k in (80, 150, 251, 399):
            part = Regime(params).compute(bars.iloc(slice(0, k)))
            pd.testing.assert_frame_equal(part, full.iloc[:k])


def test_regime_switch_picks_each_regimes_signal_and_scale():
    bars = _bars({"A": [1, 2, 3, 2, 1]})
    model = RegimeSwitch({"regime": {"kind": "trend", "trend_window": 3},
                          "regimes": {"up": {"type": "constant", "params": {"value": 1.0}, "scale": 0.5},
                                      "down": {"type": "constant", "params": {"value": -1.0}}}})
    out = model.compute(bars)["A"]
    assert out.iloc[:2].isna().all()
    assert out.iloc[2:].tolist() == [0.5, -1.0, -1.0]
    # a regime without a branch is flat
    only_up = RegimeSwitch({"regime": {"kind": "trend", "trend_window": 3},
                            "regimes": {"up": {"type": "constant"}}}).compute(bars)["A"]
    assert only_up.iloc[2:].tolist() == [1.0, 0.0, 0.0]


def test_regime_switch_composes_registered_signals_and_their_warmup():
    model = RegimeSwitch({"regime": {"kind": "trend", "trend_window": 5},
                          "regimes": {"up": {"type": "sma_cross", "params": {"fast": 3, "slow": 10}}}})
    assert model.warmup == 9  # the branch's slow SMA outlasts the regime's
    assert type(model.branches["up"]).__name__ == "SmaCross"
    rng = np.random.default_rng(1)
    bars = _bars({"A": list(100 + np.cumsum(rng.normal(0, 1, 60)))})
    out = model.compute(bars)["A"]
    sma = model.branches["up"].compute(bars)["A"]
    up = Regime({"kind": "trend", "trend_window": 5}).compute(bars)["A"] == 1
    rows = out.index[9:]
    assert (out[rows][up[rows]] == sma[rows][up[rows]]).all() and (out[rows][~up[rows]] == 0).all()


@pytest.mark.parametrize(("params", "message"), [
    ({"regimes": {"hi": {"type": "constant"}}}, "'hi' is not a volatility regime; use low, mid, high"),
    ({"regimes": {"low": {"type": "sma_crss"}}}, "did you mean 'sma_cross'"),
    ({"regimes": {"low": {"type": "sma_cross", "params": {"fast": -1}}}}, "regimes.low.params.fast"),
    ({"regimes": {"low": {"type": "xgboost"}}}, "is trainable"),
    ({"regimes": {}}, "at least one regime"),
])
def test_bad_config_is_one_clear_message(params, message):
    with pytest.raises(ValidationError, match=message):
        RegimeSwitch(params)


def test_live_history_declared_truthfully():
    from qf.components import history_of
    from qf.testing.contracts import assert_signal_warmup, sample_bars

    bars = sample_bars(n_symbols=3, n_bars=500, seed=3)
    trend = Regime({"kind": "trend", "trend_window": 50})
    assert history_of(trend) == 50
    assert_signal_warmup(trend, bars)
    # expanding terciles never forget: a live session must load the whole history
    assert history_of(Regime({})) is None and history_of(RegimeSwitch({})) is None
    switch = RegimeSwitch({"regime": {"kind": "trend", "trend_window": 30},
                           "regimes": {"up": {"type": "momentum", "params": {"lookback": 60, "skip": 5}}}})
    assert history_of(switch) == 66
    assert_signal_warmup(switch, bars)
