"""vol_target: scale the base portfolio so its trailing volatility hits the target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars
from qf.testing.contracts import sample_bars
from qf_plugins.sizers.equal import EqualWeight
from qf_plugins.sizers.inverse_vol import InverseVol
from qf_plugins.sizers.vol_target import VolTarget


def _ones(bars: Bars) -> pd.DataFrame:
    return pd.DataFrame(1.0, index=bars.index, columns=bars.close.columns)


def test_trailing_vol_of_the_scaled_book_equals_the_target() -> None:
    bars = sample_bars(n_symbols=4, n_bars=300, seed=2)
    sizer = VolTarget({"target": 0.12, "window": 40, "max_leverage": 10.0})
    dates = bars.index[50::25]
    w = sizer.size(_ones(bars), bars, dates)
    ret = bars.close.pct_change(fill_method=None).to_numpy()
    for t, row in w.iterrows():
        i = bars.index.get_loc(t)
        trailing = ret[i - 39 : i + 1] @ row.to_numpy()
        assert trailing.std(ddof=1) * np.sqrt(252) == pytest.approx(0.12, rel=1e-9)


def test_out_of_sample_realized_vol_hits_the_target() -> None:
    # constant-volatility GBM: the trailing estimate is a fair forecast, so the next-day returns of the
    # scaled book must come out near the target over a long run
    bars = sample_bars(n_symbols=4, n_bars=1500, seed=7)
    w = VolTarget({"target": 0.10, "window": 63, "max_leverage": 5.0}).size(_ones(bars), bars, bars.index)
    ret = bars.close.pct_change(fill_method=None)
    realized = (w.shift(1) * ret).sum(axis=1).iloc[64:]
    assert realized.std() * np.sqrt(252) == pytest.approx(0.10, rel=0.08)
    assert w.iloc[:63].eq(0).all().all()  # no full window yet: flat


def test_max_leverage_caps_a_calm_book() -> None:
    n = 30
    close = pd.DataFrame(
        {"CALM": 100 * np.cumprod([1.0] + [1.001, 0.999] * (n // 2))},  # ~1.6% a year
        index=pd.bdate_range("2024-01-01", periods=n + 1),
    )
    bars = Bars(close=close)
    w = VolTarget({"target": 0.10, "window": 20, "max_leverage": 2.0}).size(_ones(bars), bars, close.index[-1:])
    assert w.iloc[0, 0] == pytest.approx(2.0)


def test_base_portfolio_proportions_are_kept() -> None:
    bars = sample_bars(n_symbols=3, n_bars=200, seed=4)
    dates = bars.index[-3:]
    for base, sizer in (("equal", EqualWeight({})), ("inverse_vol", InverseVol({"window": 63}))):
        w = VolTarget({"base": base, "window": 63}).size(_ones(bars), bars, dates)
        ref = sizer.size(_ones(bars), bars, dates)
        np.testing.assert_allclose(w.div(w.sum(axis=1), axis=0), ref, rtol=1e-12)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"target": 0}, "target"), ({"window": 2}, "window"), ({"max_leverage": -1}, "max_leverage"),
     ({"base": "hrp"}, "base")],
)
def test_params_validation(params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        VolTarget(params)
