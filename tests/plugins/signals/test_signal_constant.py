"""constant: the buy-and-hold baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars
from qf_plugins.signals.constant import Constant


def test_value_everywhere_a_close_exists() -> None:
    idx = pd.bdate_range("2024-01-01", periods=4)
    bars = Bars(close=pd.DataFrame({"A": [1.0, 2, 3, 4], "B": [np.nan, np.nan, 5, 6]}, index=idx))
    out = Constant({"value": 0.5}).compute(bars)
    assert out["A"].tolist() == [0.5] * 4
    assert out["B"].isna().tolist() == [True, True, False, False]
    assert Constant({}).compute(bars)["A"].eq(1.0).all()
    assert Constant({}).warmup == 0


@pytest.mark.parametrize("value", [1.5, -2.0])
def test_value_outside_unit_range_is_rejected(value: float) -> None:
    with pytest.raises(ValueError, match="value"):
        Constant({"value": value})
