"""mean_reversion: z-score and RSI oversold entries, with and without a holding exit."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from qf.bars import Bars
from qf_plugins.signals.mean_reversion import MeanReversion

# window 3: z on row 4 = (7 - 9) / sqrt(3) = -1.15; row 5 = -0.58; row 6 = +1.15; row 7 = +1.0
CLOSE = [10, 10, 10, 10, 7, 7, 10, 13]


def _bars(**cols: list[float]) -> Bars:
    n = len(next(iter(cols.values())))
    return Bars(close=pd.DataFrame(cols, index=pd.bdate_range("2024-01-01", periods=n), dtype=float))


def test_zscore_long_only_while_oversold() -> None:
    model = MeanReversion({"mode": "zscore", "window": 3, "entry": -1.0})
    assert model.warmup == 2
    out = model.compute(_bars(A=CLOSE))["A"]
    np.testing.assert_array_equal(out, [np.nan, np.nan, 0, 0, 1, 0, 0, 0])


def test_zscore_with_exit_holds_until_the_exit_level() -> None:
    out = MeanReversion({"mode": "zscore", "window": 3, "entry": -1.0, "exit": 0.5}).compute(_bars(A=CLOSE))["A"]
    np.testing.assert_array_equal(out, [np.nan, np.nan, 0, 0, 1, 1, 0, 0])


def test_rsi_oversold_on_a_falling_series_only() -> None:
    n = 12
    bars = _bars(
        FALL=[100 - k for k in range(n)],
        RISE=[100 + k for k in range(n)],
        FLAT=[100.0] * n,
    )
    model = MeanReversion({"mode": "rsi", "window": 5})
    out = model.compute(bars)
    assert model.warmup == 5
    assert out.iloc[:5].isna().all().all()
    assert (out.iloc[5:]["FALL"] == 1).all()  # RSI 0
    assert (out.iloc[5:]["RISE"] == 0).all()  # RSI 100
    assert (out.iloc[5:]["FLAT"] == 0).all()  # RSI 50, a flat price is not NaN


def test_mode_picks_its_own_defaults_and_explicit_values_win() -> None:
    assert MeanReversion({}).params.model_dump() == {"mode": "zscore", "window": 20, "entry": -2.0, "exit": None}
    p = MeanReversion({"mode": "rsi"}).params
    assert (p.window, p.entry) == (14, 30.0)
    p = MeanReversion({"mode": "rsi", "window": 2, "entry": 10}).params
    assert (p.window, p.entry) == (2, 10.0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mode": "rsi", "entry": -2}, "entry (-2.0) is an RSI level and must be between 0 and 100"),
        ({"mode": "rsi", "exit": 120}, "exit (120.0) is an RSI level"),
        ({"entry": -1.0, "exit": -1.5}, "exit (-1.5) must be above entry (-1.0)"),
        ({"mode": "macd"}, "'zscore' or 'rsi'"),
        ({"window": 1}, "greater than or equal to 2"),
    ],
)
def test_params_validation(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        MeanReversion(params)
