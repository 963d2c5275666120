"""swing: pullback entries inside an uptrend, exits on the bounce, a trend break or the time stop."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from qf.bars import Bars
from qf_plugins.signals.swing import Swing

# 20 bars rising 1% a day, then two -1.5% days (RSI(2) falls to 18 on row 21) ...
_UP = [100 * 1.01**k for k in range(20)]
_PULLBACK = [*_UP, _UP[-1] * 0.985, _UP[-1] * 0.985**2]
_P = _PULLBACK[-1]
PRICES = {
    # ... then a bounce: RSI(2) 74 on row 22, 82 on row 23 (exit)
    "BOUNCE": [*_PULLBACK, _P * 1.03, _P * 1.03 * 1.01, _P * 1.03 * 1.01**2],
    # ... then a crash through the 10-bar SMA on row 22 (exit on the trend break while RSI is still low)
    "CRASH": [*_PULLBACK, _P * 0.97, _P * 0.97**2, _P * 0.97**2 * 1.03],
    # the same pullback shape inside a downtrend: never a trade
    "DOWN": [100 * 0.99**k for k in range(20)] + [82.6 * 0.985, 82.6 * 0.985**2, 80.2, 81, 82],
}
PARAMS = {"trend": 10, "lookback": 10, "rsi_window": 2, "entry_rsi": 20, "exit_rsi": 80, "max_hold": None}


def _bars() -> Bars:
    idx = pd.bdate_range("2024-01-01", periods=25)
    return Bars(close=pd.DataFrame(PRICES, index=idx, dtype=float))


def test_enters_on_the_pullback_and_exits_on_bounce_or_trend_break() -> None:
    model = Swing(PARAMS)
    assert model.warmup == 10
    out = model.compute(_bars())
    assert out.iloc[:10].isna().all().all() and out.iloc[10:].notna().all().all()
    np.testing.assert_array_equal(out["BOUNCE"].iloc[18:], [0, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(out["CRASH"].iloc[18:], [0, 0, 0, 1, 0, 0, 0])
    assert (out["DOWN"].iloc[10:] == 0).all()


def test_max_hold_is_a_time_stop() -> None:
    out = Swing({**PARAMS, "max_hold": 1}).compute(_bars())
    np.testing.assert_array_equal(out["BOUNCE"].iloc[18:], [0, 0, 0, 1, 0, 0, 0])


def test_pullback_below_short_sma_is_an_alternative_entry() -> None:
    # RSI entry switched off (RSI(2) never gets to 1); row 21 closes 1.5% under its 5-bar SMA
    no_rsi = {**PARAMS, "entry_rsi": 1.0}
    assert (Swing(no_rsi).compute(_bars())["BOUNCE"].iloc[10:] == 0).all()
    assert Swing({**no_rsi, "pullback_pct": 0.01}).compute(_bars())["BOUNCE"].iloc[21] == 1
    assert Swing({**no_rsi, "pullback_pct": 0.02}).compute(_bars())["BOUNCE"].iloc[21] == 0


def test_defaults_suit_daily_data() -> None:
    p = Swing({}).params
    assert (p.trend, p.lookback, p.rsi_window, p.entry_rsi, p.exit_rsi, p.max_hold) == (200, 126, 3, 20, 70, 10)
    assert Swing({}).warmup == 199


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"entry_rsi": 70, "exit_rsi": 60}, "exit_rsi (60.0) must be above entry_rsi (70.0)"),
        ({"trend": 3, "rsi_window": 3}, "rsi_window (3) must be shorter than trend (3)"),
        ({"trend": 5, "rsi_window": 2, "pullback_sma": 8}, "pullback_sma (8) must be shorter than trend (5)"),
        ({"pullback_pct": 0.7}, "pullback_pct"),
        ({"max_hold": 0}, "max_hold"),
    ],
)
def test_params_validation(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Swing(params)
