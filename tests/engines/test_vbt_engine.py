"""The vectorbt engine against independent computations, and stateful risk rules acting on its path."""

from __future__ import annotations

import numba as nb
import numpy as np
import pandas as pd
import pytest
from vectorbt.portfolio.nb import order_nb, order_nothing_nb

from qf.bars import Bars, validate
from qf.config.schema import ExecutionSpec, RebalanceSpec
from qf.engines.kernels.orders import update_avg_price_nb
from qf.engines.kernels.step import decide_nb
from qf.engines.vectorbt import run_vectorbt
from qf.errors import QfError
from qf.rebalance import rebalance_dates
from qf_plugins.risk.daily_loss_limit import DailyLossLimit
from qf_plugins.risk.drawdown_halt import DrawdownHalt
from qf_plugins.risk.stop_loss import StopLoss


def _bars(n: int = 400, k: int = 3, seed: int = 7, ohlc: bool = True) -> Bars:
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2020-01-01", periods=n)
    close = 50 * np.exp(np.cumsum(rng.normal(0.0003, 0.015, (n, k)), axis=0))
    cols = [f"S{i}" for i in range(k)]
    frames = {"close": pd.DataFrame(close, idx, cols)}
    if ohlc:
        op = close * np.exp(rng.normal(0, 0.004, (n, k)))
        frames["open"] = pd.DataFrame(op, idx, cols)
        frames["high"] = pd.DataFrame(np.maximum(op, close) * 1.01, idx, cols)
        frames["low"] = pd.DataFrame(np.minimum(op, close) * 0.99, idx, cols)
    return validate(Bars(**frames, source="synthetic"))


def _reference(bars: Bars, weights: np.ndarray, dates: pd.DatetimeIndex, fees: float, slip: float, cash: float,
               fill_field: str, lag: int) -> np.ndarray:
    """Plain-python equity path: rebalance to fixed weights at each date, fills at the next bar's price."""
    close = bars.close.to_numpy()
    px = getattr(bars, fill_field).to_numpy()
    fill_rows = {bars.index.get_loc(d) + lag for d in dates}
    pos = np.zeros(close.shape[1])
    equity = []
    for t in range(len(close)):
        if t in fill_rows:
            value = cash + pos @ px[t]
            delta = weights * value / px[t] - pos
            for i in np.argsort(delta, kind="mergesort"):  # sells first
                if delta[i] < 0:
                    cash += -delta[i] * px[t, i] * (1 - slip) * (1 - fees)
                elif delta[i] > 0:
                    cash -= delta[i] * px[t, i] * (1 + slip) * (1 + fees)
            pos = pos + delta
        equity.append(cash + pos @ close[t])
    return np.array(equity)


@pytest.mark.parametrize("fill,field,lag", [("next_open", "open", 1), ("next_close", "close", 1),
                                            ("close", "close", 0)])
def test_fixed_weight_monthly_rebalance_matches_hand_computation(fill, field, lag):
    bars = _bars()
    w = np.array([0.5, 0.3, 0.1])  # 10% cash so fees never make a buy unaffordable
    dates = rebalance_dates(bars.index, RebalanceSpec(freq="month_end"))
    targets = pd.DataFrame(np.tile(w, (len(dates), 1)), index=dates, columns=bars.symbols)
    ex = ExecutionSpec(fill=fill, fees=0.001, slippage=0.0005, initial_cash=100_000)
    res = run_vectorbt(bars, targets, None, ex)
    ref = _reference(bars, w, dates, 0.001, 0.0005, 100_000.0, field, lag)
    np.testing.assert_allclose(res.equity.to_numpy(), ref, rtol=1e-9)
    # one buy per symbol at the first fill, fees = fees * traded value
    assert (res.orders["fee"] - 0.001 * res.orders["quantity"] * res.orders["price"]).abs().max() < 1e-9
    assert res.orders["time"].min() == bars.index[bars.index.get_loc(dates[0]) + lag]


def test_next_open_refused_on_close_only_data():
    bars = _bars(ohlc=False)
    targets = pd.DataFrame(0.5, index=bars.index[:1], columns=bars.symbols)
    with pytest.raises(QfError, match="'next_open' needs open prices.*use fill: next_close"):
        run_vectorbt(bars, targets, None, ExecutionSpec(fill="next_open"))


def test_fully_invested_with_fees_is_never_rejected_and_sells_come_first():
    bars = _bars(k=3)
    rng = np.random.default_rng(1)
    dates = bars.index[::5]
    raw = rng.uniform(0, 1, (len(dates), 3))
    targets = pd.DataFrame(raw / raw.sum(axis=1, keepdims=True), index=dates, columns=bars.symbols)
    res = run_vectorbt(bars, targets, None, ExecutionSpec(fill="next_open", fees=0.002, slippage=0.001))
    pf = res.extra["portfolio"]
    assert pf.cash().min() >= -1e-6  # never borrowed
    # every bar's sells are recorded before its buys
    rec = pf.orders.records
    for t in np.unique(rec["idx"]):
        sides = rec["side"][rec["idx"] == t]
        assert list(sides) == sorted(sides, reverse=True)


def test_integer_shares_and_min_order_value():
    bars = _bars()
    dates = bars.index[::10]
    rng = np.random.default_rng(3)
    targets = pd.DataFrame(rng.uniform(0.1, 0.3, (len(dates), 3)), index=dates, columns=bars.symbols)
    res = run_vectorbt(bars, targets, None,
                       ExecutionSpec(fill="next_close", fractional=False, min_order_value=2_000, fees=0.001))
    q = res.orders["quantity"].to_numpy()
    np.testing.assert_array_equal(q, np.round(q))
    assert (res.orders["quantity"] * res.orders["price"]).min() >= 2_000 - 1e-9


def _crash_bars() -> Bars:
    """Two symbols rising, then S0 crashes 40% over ten days while S1 drifts."""
    idx = pd.bdate_range("2021-01-01", periods=120)
    s0 = np.r_[np.linspace(100, 120, 60), np.linspace(120, 72, 10), np.linspace(72, 90, 50)]
    s1 = np.linspace(50, 55, 120)
    close = pd.DataFrame({"S0": s0, "S1": s1}, index=idx)
    return validate(Bars(close=close, source="crash"))


def test_drawdown_halt_flattens_and_stays_flat():
    bars = _crash_bars()
    targets = pd.DataFrame({"S0": 0.9, "S1": 0.1}, index=bars.index)
    res = run_vectorbt(bars, targets, [DrawdownHalt({"max_drawdown": 0.15})], ExecutionSpec(fill="next_close"))
    pf = res.extra["portfolio"]
    first = res.events.loc[res.events["event"] == "flatten", "time"].min()
    assert pd.notna(first)
    after = pf.assets().loc[first:]
    assert (after.abs().to_numpy() < 1e-9).all()  # flat from the fill bar on and never re-enters
    assert res.equity.loc[first:].nunique() <= 2


def test_drawdown_halt_with_cooldown_resumes_at_a_rebalance():
    bars = _crash_bars()
    targets = pd.DataFrame({"S0": 0.9, "S1": 0.1}, index=bars.index[::5])
    res = run_vectorbt(bars, targets, [DrawdownHalt({"max_drawdown": 0.15, "cooldown_bars": 10})],
                       ExecutionSpec(fill="next_close"))
    assets = res.extra["portfolio"].assets()
    halted = res.events.loc[res.events["event"] == "flatten", "time"]
    assert len(halted) >= 10
    assert (assets.iloc[-1] > 0).all()  # back in the market after the cool-down


def test_stop_loss_exits_only_the_losing_position():
    bars = _crash_bars()
    targets = pd.DataFrame({"S0": 0.5, "S1": 0.5}, index=bars.index[:1])  # buy once, then hold
    res = run_vectorbt(bars, targets, [StopLoss({"pct": 0.1})], ExecutionSpec(fill="next_close"))
    stops = res.events[res.events["event"] == "stop"]
    assert list(stops["symbol"].unique()) == ["S0"]
    assets = res.extra["portfolio"].assets()
    assert assets["S0"].iloc[-1] == 0 and assets["S1"].iloc[-1] > 0
    # decided at the first close 10% below the entry price, filled at the next close (events carry fill bars)
    entry = res.orders.iloc[0]["price"]
    fill = bars.index.get_loc(stops["time"].iloc[0])
    decision = bars.index[fill - 1]
    assert bars.close.at[decision, "S0"] <= entry * 0.9
    assert (bars.close.loc[:decision, "S0"].iloc[:-1] > entry * 0.9).all()


def test_daily_loss_limit_flattens_after_a_bad_day():
    idx = pd.bdate_range("2021-01-01", periods=30)
    s0 = np.r_[np.full(10, 100.0), np.full(20, 90.0)]  # one -10% day
    bars = validate(Bars(close=pd.DataFrame({"S0": s0}, index=idx), source="gap"))
    targets = pd.DataFrame({"S0": 1.0}, index=idx[:1])
    res = run_vectorbt(bars, targets, [DailyLossLimit({"limit": 0.05, "cooldown_bars": 3})],
                       ExecutionSpec(fill="next_close"))
    flat = res.events[res.events["event"] == "flatten"]
    assert flat["time"].iloc[0] == idx[11]  # decided at the close of the -10% day, filled next close
    assert res.extra["portfolio"].assets()["S0"].iloc[-1] == 0  # no rebalance after: stays out


# The reference: the same step written as vectorbt callbacks for Portfolio.from_order_func.
@nb.njit
def _ref_pre_segment(c, exec_price, close, targets, risk_inputs, rules, risk_params, lag, fees, fixed_fees, slippage,
                     integer, min_value, state, avg_price, sizes, exits, events, desired, positions):
    i, n, f0 = c.i, c.group_len, c.from_col
    for k in range(n):
        positions[k] = c.last_position[f0 + k]
    decide_nb(i, lag, c.last_cash[c.group], positions, exec_price, close, targets, risk_inputs, rules, risk_params,
              fees, fixed_fees, slippage, integer, min_value, state, avg_price, exits, events, desired, sizes)
    for k in range(n):
        if not np.isnan(exec_price[i, k]):
            c.last_val_price[f0 + k] = exec_price[i, k]
    order = np.argsort(sizes, kind="mergesort")
    for k in range(n):
        c.call_seq_now[k] = order[k]
    return ()


@nb.njit
def _ref_order(c, exec_price, sizes, fees, fixed_fees, slippage):
    k = c.col - c.from_col
    if sizes[k] == 0.0:
        return order_nothing_nb()
    return order_nb(size=sizes[k], price=exec_price[c.i, k], fees=fees, fixed_fees=fixed_fees, slippage=slippage,
                    allow_partial=False, raise_reject=True)


@nb.njit
def _ref_post_order(c, avg_price):
    r = c.order_result
    if r.status == 0:
        k = c.col - c.from_col
        avg_price[k] = update_avg_price_nb(avg_price[k], c.position_before, r.size if r.side == 0 else -r.size,
                                           r.price)


@pytest.mark.parametrize("fill,fractional", [("next_open", True), ("close", False)])
def test_cached_kernel_equals_vectorbt_from_order_func(fill, fractional):
    import vectorbt as vbt

    from qf.engines.inputs import build_inputs
    from qf.engines.vectorbt import simulate

    bars = _bars(k=4, seed=11)
    rng = np.random.default_rng(5)
    dates = bars.index[::7]
    raw = rng.uniform(0, 1, (len(dates), 4))
    targets = pd.DataFrame(raw / raw.sum(axis=1, keepdims=True), index=dates, columns=bars.symbols)
    ex = ExecutionSpec(fill=fill, fees=0.001, fixed_fees=1.0, slippage=0.0005, fractional=fractional,
                       min_order_value=500)
    risk = [DrawdownHalt({"max_drawdown": 0.12, "cooldown_bars": 15}), StopLoss({"pct": 0.07})]
    inp = build_inputs(bars, targets, risk, ex)
    pf, events = simulate(inp, ex)
    T, N = inp.close.shape
    ref_events = np.zeros((T, N), dtype=np.int8)
    avg, sizes = np.full(N, np.nan), np.zeros(N)
    ref = vbt.Portfolio.from_order_func(
        pd.DataFrame(inp.close, index=inp.index, columns=inp.symbols), _ref_order,
        inp.exec_price, sizes, ex.fees, ex.fixed_fees, ex.slippage,
        pre_segment_func_nb=_ref_pre_segment,
        pre_segment_args=(inp.exec_price, inp.close, inp.targets, inp.risk_inputs, inp.rules, inp.risk_params, inp.lag,
                          ex.fees, ex.fixed_fees, ex.slippage, not ex.fractional, ex.min_order_value,
                          inp.new_risk_state(), avg, sizes,
                          np.zeros(N, dtype=np.bool_), ref_events, np.zeros(N), np.zeros(N)),
        post_order_func_nb=_ref_post_order, post_order_args=(avg,),
        init_cash=ex.initial_cash, cash_sharing=True, group_by=True, call_pre_segment=True, freq="1D")
    assert (events != 0).any()  # the risk rules did act in this case
    np.testing.assert_array_equal(events, ref_events)
    a, b = pf.orders.records, ref.orders.records
    assert len(a) == len(b) > 50
    for field in ("idx", "col", "side", "size", "price", "fees"):
        np.testing.assert_array_equal(a[field], b[field])
    np.testing.assert_array_equal(pf.value().to_numpy(), ref.value().to_numpy())
