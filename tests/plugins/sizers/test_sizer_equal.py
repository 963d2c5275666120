"""equal: equal shares among the selected symbols."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars
from qf_plugins.sizers.equal import EqualWeight

IDX = pd.bdate_range("2024-01-01", periods=3)
COLS = ["A", "B", "C", "D"]
CLOSE = pd.DataFrame([[1, 1, 1, np.nan], [1, 1, 1, 1], [1, 1, 1, 1]], index=IDX, columns=COLS, dtype=float)
SIGNAL = pd.DataFrame(
    [[1, 1, 0, 1], [0.5, -1, 1, 1], [0, np.nan, 0, -1]], index=IDX, columns=COLS, dtype=float
)
BARS = Bars(close=CLOSE)


def test_equal_shares_among_positive_signals_with_a_close() -> None:
    w = EqualWeight({}).size(SIGNAL, BARS, IDX)
    third = 1 / 3
    # row 0: D has no close yet; row 2: nothing selected -> flat
    np.testing.assert_allclose(w, [[0.5, 0.5, 0, 0], [third, 0, third, third], [0, 0, 0, 0]])


def test_gross_by_signal_and_shorts() -> None:
    w = EqualWeight({"gross": 2.0}).size(SIGNAL, BARS, IDX)
    assert w.iloc[0].tolist() == [1.0, 1.0, 0.0, 0.0]
    w = EqualWeight({"by_signal": True}).size(SIGNAL, BARS, IDX)
    np.testing.assert_allclose(w.iloc[1], [0.5 / 3, 0, 1 / 3, 1 / 3])
    w = EqualWeight({"allow_short": True}).size(SIGNAL, BARS, IDX)
    np.testing.assert_allclose(w.iloc[1], [0.25, -0.25, 0.25, 0.25])
    np.testing.assert_allclose(w.iloc[2], [0, 0, 0, -1.0])


def test_only_the_requested_dates() -> None:
    w = EqualWeight({}).size(SIGNAL, BARS, IDX[1:])
    assert w.index.equals(IDX[1:]) and list(w.columns) == COLS


@pytest.mark.parametrize("params", [{"gross": 0}, {"gross": -1}, {"gross": 11}])
def test_params_validation(params: dict) -> None:
    with pytest.raises(ValueError, match="gross"):
        EqualWeight(params)


@pytest.mark.parametrize("params", [{}, {"gross": 1.7}, {"by_signal": True}, {"allow_short": True},
                                    {"by_signal": True, "allow_short": True, "gross": 0.3}])
def test_array_path_equals_frame_path_bit_for_bit(params: dict) -> None:
    # the one-pass kernel (aligned signal) against the frame path (forced by a signal on other columns)
    rng = np.random.default_rng(3)
    idx = pd.bdate_range("2020-01-01", periods=300)
    cols = [f"S{k}" for k in range(9)]
    close = pd.DataFrame(rng.uniform(10, 20, (300, 9)), index=idx, columns=cols)
    close.iloc[:40, 2] = np.nan  # listed late
    sig = pd.DataFrame(rng.choice([-1.0, -0.5, -0.0, 0.0, 0.3, 1.0, np.nan], (300, 9)), index=idx, columns=cols)
    sig.iloc[17] = 0.0  # a row with nothing selected
    bars = Bars(close=close)
    dates = idx[5::3]
    sizer = EqualWeight(params)
    fast = sizer.size(sig, bars, dates)
    slow = sizer.size(sig[cols[::-1]], bars, dates)  # columns in another order: the frame path
    assert fast.index.equals(dates) and list(fast.columns) == cols
    assert np.array_equal(fast.to_numpy(), slow[cols].to_numpy())
    assert (fast.to_numpy() != 0).any() and (fast.to_numpy() == 0).all(axis=1).any()
