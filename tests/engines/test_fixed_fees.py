"""Fixed per-order fees on a fully invested account: no order is sent that trades less than its fee.

A daily equal-weight rebalance keeps the account fully invested, so every day brings tiny rebalancing
sells. vectorbt refuses a sell whose fixed fee exceeds its proceeds ("Not enough cash to cover fees"),
which used to abort such runs (walk-forward train sweeps hit it). The order planner now skips them, in
both engines alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars, validate
from qf.config.schema import ExecutionSpec
from qf.engines.backtrader.strategy import run_backtrader
from qf.engines.kernels.orders import plan_orders_nb
from qf.engines.vectorbt import run_vectorbt


def _bars(n: int = 160, k: int = 6, seed: int = 3) -> Bars:
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2021-01-04", periods=n)
    close = pd.DataFrame(20 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, k)), axis=0)), index=idx,
                         columns=[f"S{i}" for i in range(k)])
    return validate(Bars(close=close, source="synthetic"))


@pytest.mark.parametrize("fill", ["next_close", "close"])
def test_daily_equal_weight_with_fixed_fees_runs_in_both_engines(fill: str) -> None:
    bars = _bars()
    targets = pd.DataFrame(1.0 / len(bars.symbols), index=bars.index, columns=bars.symbols)
    ex = ExecutionSpec(fill=fill, fees=0.0005, fixed_fees=1.0, slippage=0.0002, initial_cash=10_000)
    vb = run_vectorbt(bars, targets, None, ex)
    bt = run_backtrader(bars, targets, None, ex)
    assert len(vb.orders) > len(bars.symbols)  # it does rebalance, not only buy once
    traded = vb.orders["quantity"] * vb.orders["price"]
    assert (traded > ex.fixed_fees).all()
    assert abs(vb.equity.iloc[-1] / bt.equity.iloc[-1] - 1) < 1e-9
    assert len(vb.orders) == len(bt.orders)


def test_planner_skips_orders_below_their_fixed_fee() -> None:
    out = np.zeros(3)
    position = np.array([100.0, 100.0, 0.0])
    price = np.array([10.0, 10.0, 10.0])
    # symbol 0: sell 0.05 shares (50 cents) < 1.0 fee -> skipped; symbol 1: sell 10 shares -> sent;
    # symbol 2: buy 0.04 shares (40 cents) -> skipped
    target = np.array([99.95 * 10 / 2000, 90 * 10 / 2000, 0.4 / 2000])
    plan_orders_nb(target, 2000.0, 0.0, position, price, 0.0, 1.0, 0.0, False, 0.0, out)
    assert out[0] == 0.0 and out[2] == 0.0
    assert out[1] == pytest.approx(-10.0)
    # a closing sell worth less than its fee cannot be sent either (vectorbt refuses it): dust stays
    plan_orders_nb(np.array([0.0, np.nan, np.nan]), 1000.5, 1000.0, np.array([0.05, 0.0, 0.0]), price,
                   0.0, 1.0, 0.0, False, 0.0, out)
    assert out[0] == 0.0
    plan_orders_nb(np.array([0.0, np.nan, np.nan]), 1000.5, 1000.0, np.array([5.0, 0.0, 0.0]), price,
                   0.0, 1.0, 0.0, False, 0.0, out)
    assert out[0] == pytest.approx(-5.0)
