"""inverse_vol: weights proportional to 1 / trailing volatility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars
from qf_plugins.sizers.inverse_vol import InverseVol


def _prices(returns: list[float]) -> list[float]:
    return list(100 * np.cumprod([1.0, *(1 + np.array(returns))]))


def test_weights_are_inverse_to_volatility() -> None:
    n = 8
    close = pd.DataFrame(
        {
            "CALM": _prices([0.01, -0.01] * (n // 2)),  # daily vol x
            "WILD": _prices([0.02, -0.02] * (n // 2)),  # daily vol ~2x (exactly 2x in returns)
            "NEW": [np.nan] * 6 + _prices([0.01, -0.01]),  # only 2 returns: not enough history
        },
        index=pd.bdate_range("2024-01-01", periods=n + 1),
    )
    bars = Bars(close=close)
    signal = pd.DataFrame(1.0, index=close.index, columns=close.columns)
    sizer = InverseVol({"window": 4})
    dates = close.index[-2:]
    w = sizer.size(signal, bars, dates)
    np.testing.assert_allclose(w[["CALM", "WILD"]], [[2 / 3, 1 / 3]] * 2, rtol=1e-12)
    assert (w["NEW"] == 0).all()
    assert sizer.warmup == 4
    # not enough history for anyone: flat
    assert (sizer.size(signal, bars, close.index[:3]) == 0).all().all()


def test_gross_scales_the_row() -> None:
    close = pd.DataFrame(
        {"A": _prices([0.01, -0.02, 0.015, 0.0, 0.01]), "B": _prices([0.02, 0.01, -0.01, 0.005, -0.02])},
        index=pd.bdate_range("2024-01-01", periods=6),
    )
    signal = pd.DataFrame(1.0, index=close.index, columns=close.columns)
    w = InverseVol({"window": 3, "gross": 0.5}).size(signal, Bars(close=close), close.index[-1:])
    assert w.sum(axis=1).iloc[0] == pytest.approx(0.5)


def test_params_validation() -> None:
    with pytest.raises(ValueError, match="window"):
        InverseVol({"window": 1})
