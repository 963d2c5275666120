"""breakout: enter above the prior channel high, exit below the prior channel low, hold in between."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars
from qf.errors import DataError
from qf.testing.contracts import sample_bars
from qf_plugins.signals.breakout import Breakout

IDX = pd.bdate_range("2024-01-01", periods=10)
HIGH = [10, 11, 10, 10, 13, 12, 12, 11, 10, 9]
LOW = [9, 10, 9, 9, 11, 11, 11, 10, 8, 7]
CLOSE = [9.5, 10.5, 9.5, 9.5, 12.5, 11.5, 11.5, 10.5, 9, 7.5]
# window 3, prior high: -, -, -, 11, 11, 13, 13, 13, 12, 12; prior low: -, -, -, 9, 9, 9, 9, 11, 10, 8


def _bars() -> Bars:
    def frame(values: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"A": values}, index=IDX, dtype=float)

    return Bars(close=frame(CLOSE), high=frame(HIGH), low=frame(LOW))


def test_enters_on_breakout_holds_and_exits_below_the_prior_low() -> None:
    model = Breakout({"window": 3})
    out = model.compute(_bars())["A"]
    # row 4 closes above 11 -> long; held while above the prior low; row 7 closes 10.5 < 11 -> flat
    np.testing.assert_array_equal(out, [np.nan] * 3 + [0, 1, 1, 1, 0, 0, 0])
    assert model.warmup == 3


def test_exit_window_sets_its_own_channel_and_warmup() -> None:
    model = Breakout({"window": 2, "exit_window": 4})
    assert model.warmup == 4
    out = model.compute(_bars())["A"]
    assert out.iloc[:4].isna().all() and out.iloc[4:].notna().all()
    # exit channel of 4 bars: prior lows on rows 7-9 are 9, 9, 10 -> the 10.5 close no longer exits
    np.testing.assert_array_equal(out.iloc[4:], [1, 1, 1, 1, 0, 0])


def test_close_only_bars_are_refused_clearly() -> None:
    with pytest.raises(DataError, match="signal breakout needs high, low but sample provides only close"):
        Breakout({}).compute(sample_bars(n_symbols=2, n_bars=50, ohlc=False))


def test_params_validation() -> None:
    with pytest.raises(ValueError, match="window"):
        Breakout({"window": 0})
    with pytest.raises(ValueError, match="exit_window"):
        Breakout({"exit_window": -3})
