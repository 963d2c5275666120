"""sma_cross: flips exactly where the moving averages cross."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from qf.bars import Bars
from qf_plugins.signals.sma_cross import SmaCross

IDX = pd.bdate_range("2024-01-01", periods=10)
# SMA2:  -, 10, 10, 10, 10.5, 11.5, 12.5, 12.5, 11, 9
# SMA4:  -,  -,  -, 10, 10.25, 10.75, 11.5, 12, 11.75, 10.5
CLOSE = [10, 10, 10, 10, 11, 12, 13, 12, 10, 8]


def _bars(**cols: list[float]) -> Bars:
    return Bars(close=pd.DataFrame(cols, index=IDX, dtype=float))


def test_flips_where_fast_crosses_slow() -> None:
    out = SmaCross({"fast": 2, "slow": 4}).compute(_bars(A=CLOSE))
    np.testing.assert_array_equal(out["A"].to_numpy(), [np.nan] * 3 + [0, 1, 1, 1, 1, 0, 0])


def test_short_gives_minus_one_below() -> None:
    out = SmaCross({"fast": 2, "slow": 4, "short": True}).compute(_bars(A=CLOSE))
    np.testing.assert_array_equal(out["A"].to_numpy(), [np.nan] * 3 + [-1, 1, 1, 1, 1, -1, -1])


def test_warmup_is_exact_and_counts_from_listing() -> None:
    model = SmaCross({"fast": 2, "slow": 4})
    assert model.warmup == 3
    late = [np.nan, np.nan] + CLOSE[:8]
    out = model.compute(_bars(A=CLOSE, B=late))
    # B lists on row 2, so its first value is on row 2 + warmup
    assert out["B"].iloc[:5].isna().all()
    assert out["B"].iloc[5:].notna().all()
    assert out["A"].iloc[3:].notna().all()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fast": 30, "slow": 20}, "fast (30) must be smaller than slow (20)"),
        ({"fast": 20, "slow": 20}, "fast (20) must be smaller than slow (20)"),
        ({"fast": 0}, "greater than or equal to 1"),
        ({"slow": "long"}, "valid integer"),
        ({"fats": 5}, "fats"),
    ],
)
def test_params_validation(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        SmaCross(params)
