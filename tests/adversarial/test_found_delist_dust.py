"""Found by adversarial testing: with ``execution.on_delist: hold_cash_value`` and a halted symbol holding
part of a fully invested account, backtrader placed ~1e-10-share "dust" buys that vectorbt did not (equity
agreed to 1e-12, but ``qf parity`` reported the engines as different).

Root cause: the planner scales buys down to the cash available, and a fully invested account keeps a few
1e-9 of cash (the planner's own 1e-12 safety margin). A buy scaled to that cash is ~1e-11 shares: both
engines were asked for it, vectorbt's cash check silently dropped it and backtrader filled it. The planner
now applies its "below a billionth of the portfolio is dust" rule to scaled buys too, so neither engine is
asked for such an order.
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
from qf.parity import compare

IDX = pd.bdate_range("2021-01-04", periods=12)
# A trades every bar; D halts for two bars (3, 4) and its data ends after bar 8 (delisted, held at value)
A = np.arange(100.0, 112.0)
D = np.array([50.0, 51.0, 52.0, np.nan, np.nan, 55.0, 56.0, 57.0, 58.0, np.nan, np.nan, np.nan])


def hand_bars() -> Bars:
    close = pd.DataFrame({"A": A, "D": D}, index=IDX)
    return validate(Bars(open=close - 0.5, high=close + 1.0, low=close - 1.5, close=close, source="hand"))


@pytest.mark.parametrize("fill", ["next_close", "next_open", "close"])
@pytest.mark.parametrize("seed", [0, 2, 3])
def test_halt_and_hold_cash_value_place_the_same_orders_in_both_engines(fill: str, seed: int) -> None:
    # daily fully invested rebalances whose weights move every bar: while D is halted its order waits, so
    # the account has no cash for A's buy but a few 1e-9 of float residue
    weights = np.random.default_rng(seed).dirichlet([1.0, 1.0], len(IDX))
    targets = pd.DataFrame(weights, index=IDX, columns=["A", "D"])
    ex = ExecutionSpec(fill=fill, fees=0.001, slippage=0.002, on_delist="hold_cash_value", fractional=True,
                       initial_cash=100_000.0)
    bars = hand_bars()
    a = run_vectorbt(bars, targets, None, ex)
    b = run_backtrader(bars, targets, None, ex)
    report = compare(a, b, 1e-9)
    assert report.ok, report
    assert len(a.orders) == len(b.orders) == report.matched, (a.orders, b.orders)
    for res in (a, b):
        traded = (res.orders["quantity"] * res.orders["price"]).abs()
        assert (traded > 1e-6).all(), res.orders[traded <= 1e-6]
    # the same orders, one for one
    cols = ["time", "symbol", "side"]
    pd.testing.assert_frame_equal(a.orders[cols].reset_index(drop=True), b.orders[cols].reset_index(drop=True),
                                  check_dtype=False)
    np.testing.assert_allclose(a.orders["quantity"], b.orders["quantity"], rtol=1e-9)


def test_a_buy_scaled_to_float_residue_cash_is_no_order() -> None:
    out = np.zeros(2)
    # fully invested in D (no price: halted), 5e-9 of cash left, A's target asks for a real buy
    plan_orders_nb(np.array([0.5, np.nan]), 100_000.0, 5e-9, np.array([0.0, 1000.0]), np.array([100.0, np.nan]),
                   0.001, 0.0, 0.002, False, 0.0, out)
    assert out[0] == 0.0
    # with real cash the same buy is scaled to what it can pay, not dropped
    plan_orders_nb(np.array([0.5, np.nan]), 100_000.0, 1_000.0, np.array([0.0, 1000.0]), np.array([100.0, np.nan]),
                   0.001, 0.0, 0.002, False, 0.0, out)
    assert 9.9 < out[0] < 10.0
