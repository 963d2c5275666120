"""correlation_cap: hand-built correlated groups, largest positions kept first, holds untouched,
trailing window only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars
from qf_plugins.risk.correlation_cap import CorrelationCap, cap_correlated


def _bars(n: int = 80, seed: int = 0) -> Bars:
    rng = np.random.default_rng(seed)
    common = rng.normal(0, 0.01, n)
    own = rng.normal(0, 0.01, (n, 4))
    rets = np.column_stack([common + 0.1 * own[:, 0], common + 0.1 * own[:, 1], common + 0.1 * own[:, 2],
                            own[:, 3]])  # A, B, C move together (rho ~ 0.99); D is on its own
    close = 100 * np.cumprod(1 + rets, axis=0)
    return Bars(close=pd.DataFrame(close, index=pd.bdate_range("2024-01-01", periods=n), columns=list("ABCD")))


def _weights(bars: Bars, rows: list[list[float]], at: list[int]) -> pd.DataFrame:
    return pd.DataFrame(rows, index=bars.index[at], columns=list("ABCD"))


@pytest.mark.parametrize(("k", "expected"), [
    (1, [0.4, 0.0, 0.0, 0.1]),
    (2, [0.4, 0.3, 0.0, 0.1]),
    (3, [0.4, 0.3, 0.2, 0.1]),
])
def test_keeps_the_largest_k_of_a_correlated_group(k, expected):
    bars = _bars()
    w = _weights(bars, [[0.4, 0.3, 0.2, 0.1]], [70])
    out = CorrelationCap({"max_positions": k, "rho": 0.8, "window": 30}).apply(w, bars)
    assert out.iloc[0].tolist() == expected


def test_order_is_by_size_not_column():
    bars = _bars()
    w = _weights(bars, [[0.1, 0.2, -0.5, 0.2]], [70])  # a short counts by its size
    out = CorrelationCap({"max_positions": 1, "rho": 0.8, "window": 30}).apply(w, bars)
    assert out.iloc[0].tolist() == [0.0, 0.0, -0.5, 0.2]


def test_before_a_full_window_and_holds_pass_through():
    bars = _bars()
    w = _weights(bars, [[0.4, 0.3, 0.2, 0.1], [0.4, np.nan, 0.2, 0.1]], [20, 70])
    out = CorrelationCap({"max_positions": 1, "rho": 0.8, "window": 30}).apply(w, bars)
    assert out.iloc[0].tolist() == [0.4, 0.3, 0.2, 0.1]  # bar 20 < window: no estimate yet
    row = out.iloc[1]
    assert np.isnan(row["B"]) and row[["A", "C", "D"]].tolist() == [0.4, 0.0, 0.1]


def test_chain_a_position_may_not_collect_more_than_k_minus_one_neighbours():
    corr = np.array([[1, 0.9, 0.1], [0.9, 1, 0.9], [0.1, 0.9, 1]])  # A~B, B~C, A and C unrelated
    assert cap_correlated(np.array([0.5, 0.3, 0.2]), corr, 2, 0.8).tolist() == [0.5, 0.3, 0.0]
    assert cap_correlated(np.array([0.5, 0.3, 0.2]), corr, 3, 0.8).tolist() == [0.5, 0.3, 0.2]


def test_uses_only_the_trailing_window():
    bars = _bars()
    w = _weights(bars, [[0.4, 0.3, 0.2, 0.1]], [50])
    rule = CorrelationCap({"max_positions": 1, "rho": 0.8, "window": 30})
    before = rule.apply(w, bars)
    later = bars.close.copy()
    later.iloc[51:] = later.iloc[51:].to_numpy()[::-1]  # scramble everything after the date
    after = rule.apply(w, Bars(close=later))
    pd.testing.assert_frame_equal(before, after)
