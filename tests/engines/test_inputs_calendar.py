"""SimInputs.adjust_all (the full-array calendar a backtest and a sweep apply) equals adjust on every row."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars
from qf.config.schema import ExecutionSpec
from qf.engines.inputs import build_inputs


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("on_delist", ["close", "hold_cash_value"])
def test_adjust_all_equals_adjust_per_row(seed: int, on_delist: str) -> None:
    rng = np.random.default_rng(seed)
    T, N = 60, 7
    close = rng.uniform(10, 20, (T, N))
    close[: rng.integers(1, 30), 1] = np.nan  # listed late
    close[rng.integers(30, 59):, 2] = np.nan  # delisted
    close[:, 3] = np.nan  # never listed
    close[rng.integers(5, 20): rng.integers(25, 40), 4] = np.nan  # a gap: neither
    bars = Bars(close=pd.DataFrame(close, index=pd.bdate_range("2021-01-01", periods=T),
                                   columns=[f"S{k}" for k in range(N)]))
    inp = build_inputs(bars, pd.DataFrame(index=bars.index[:0], columns=bars.symbols, dtype=float), None,
                       ExecutionSpec(fill="next_close", on_delist=on_delist))
    rows = rng.choice([np.nan, 0.0, 0.2, -0.1], (T, N))
    per_row, full = rows.copy(), rows.copy()
    inp.adjust(per_row, np.arange(T))
    inp.adjust_all(full)
    assert np.array_equal(per_row, full, equal_nan=True)
    assert not np.array_equal(rows, full, equal_nan=True)  # the calendar did change something
    inp2 = replace(inp, close_on_delist=not inp.close_on_delist)
    a, b = rows.copy(), rows.copy()
    inp2.adjust(a, np.arange(T))
    inp2.adjust_all(b)
    assert np.array_equal(a, b, equal_nan=True)
