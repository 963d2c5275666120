"""kelly: fractional Kelly from trailing win rate and payoff, per-asset cap, total at most 1."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars
from qf_plugins.sizers.kelly import Kelly

RETURNS = {
    "EDGE": [0.02] * 6 + [-0.01] * 4,  # p 0.6, b 2 -> f = 0.6 - 0.4 / 2 = 0.4
    "COIN": [0.01, -0.01] * 5,  # p 0.5, b 1 -> f = 0
    "SURE": [0.01] * 10,  # no losing day -> f = 1
    "LOSER": [0.01] * 3 + [-0.01] * 7,  # f < 0 -> no bet
    "IDLE": [0.0] * 4 + [0.02] * 4 + [-0.01] * 2,  # flat days do not count: p 2/3, b 2 -> f = 0.5
}


def _bars(returns: dict[str, list[float]]) -> Bars:
    close = pd.DataFrame({k: 100 * np.cumprod([1.0, *(1 + np.array(v))]) for k, v in returns.items()})
    close.index = pd.bdate_range("2024-01-01", periods=len(close))
    return Bars(close=close)


def test_kelly_fraction_from_win_rate_and_payoff() -> None:
    f = Kelly({"window": 10}).kelly_fraction(_bars(RETURNS)).iloc[-1]
    np.testing.assert_allclose(f[["EDGE", "COIN", "SURE", "IDLE"]], [0.4, 0.0, 1.0, 0.5], atol=1e-12)
    assert f["LOSER"] < 0


def test_fraction_and_cap_per_asset() -> None:
    bars = _bars(RETURNS)
    signal = pd.DataFrame(1.0, index=bars.index, columns=bars.close.columns)
    w = Kelly({"window": 10, "fraction": 0.5, "cap": 0.22}).size(signal, bars, bars.index[-1:]).iloc[0]
    # EDGE 0.5 * 0.4 = 0.2; SURE 0.5 -> capped at 0.22; IDLE 0.25 -> capped; no edge -> 0
    np.testing.assert_allclose(w, [0.2, 0.0, 0.22, 0.0, 0.22], atol=1e-12)
    # an unselected asset gets nothing, whatever its edge
    signal["EDGE"] = 0.0
    assert Kelly({"window": 10}).size(signal, bars, bars.index[-1:])["EDGE"].iloc[0] == 0


def test_total_is_scaled_down_to_one() -> None:
    bars = _bars({f"S{i}": [0.01] * 10 for i in range(8)})
    signal = pd.DataFrame(1.0, index=bars.index, columns=bars.close.columns)
    w = Kelly({"window": 10, "cap": 0.2}).size(signal, bars, bars.index[-1:]).iloc[0]
    np.testing.assert_allclose(w, [0.125] * 8)  # 8 x 0.2 = 1.6 -> scaled to a total of 1


def test_no_full_window_no_bet() -> None:
    bars = _bars(RETURNS)
    signal = pd.DataFrame(1.0, index=bars.index, columns=bars.close.columns)
    w = Kelly({"window": 10}).size(signal, bars, bars.index[:10])
    assert (w == 0).all().all()


@pytest.mark.parametrize(
    ("params", "field"), [({"fraction": 0}, "fraction"), ({"fraction": 1.5}, "fraction"), ({"cap": 0}, "cap"),
                          ({"window": 2}, "window")]
)
def test_params_validation(params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Kelly(params)
