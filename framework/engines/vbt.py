"""The vectorbt engine: targets -> ``Portfolio.from_order_func`` with a numba order function.

One path serves stateless and stateful rules alike: at each bar the pre-segment callback runs
:func:`qf.engines.step.decide_nb` (the stateful risk kernel on the simulated portfolio, then orders planned
from the fill price), the same step the backtrader engine runs, and puts sells before buys; the order
callback then hands vectorbt exactly those quantities. Nothing is silently dropped: if vectorbt fills
anything other than the planned quantity the run fails.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import pandas as pd
from vectorbt.portfolio.nb import order_nb
from vectorbt.portfolio.nb import order_nothing_nb as order_nothing

from qf.bars import Bars
from qf.config.schema import ExecutionSpec
from qf.engines.inputs import SimInputs, build_inputs
from qf.engines.orders import update_avg_price_nb
from qf.engines.result import ORDER_COLUMNS, EngineResult
from qf.engines.risk import RiskConfig, new_state
from qf.engines.step import EVENT_FLATTEN, EVENT_STOP, decide_nb
from qf.errors import QfError


@nb.njit(cache=True)
def pre_segment_nb(c, exec_price, close, targets, vol, cfg, lag, fees, fixed_fees, slippage, integer,
                   min_value, state, avg_price, sizes, exits, events, desired, positions):
    i = c.i
    n = c.group_len
    f0 = c.from_col
    for k in range(n):
        positions[k] = c.last_position[f0 + k]
    decide_nb(i, lag, c.last_cash[c.group], positions, exec_price, close, targets, vol, cfg, fees, fixed_fees,
              slippage, integer, min_value, state, avg_price, exits, events, desired, sizes)
    # vectorbt values the group at the fill price during the segment (and at the close after it)
    for k in range(n):
        if not np.isnan(exec_price[i, k]):
            c.last_val_price[f0 + k] = exec_price[i, k]
    order = np.argsort(sizes, kind="mergesort")  # sells (negative) first, stable
    for k in range(n):
        c.call_seq_now[k] = order[k]
    return ()


@nb.njit(cache=True)
def order_func_nb(c, exec_price, sizes, fees, fixed_fees, slippage):
    k = c.col - c.from_col
    size = sizes[k]
    if size == 0.0:
        return order_nothing()
    return order_nb(size=size, price=exec_price[c.i, k], fees=fees, fixed_fees=fixed_fees, slippage=slippage,
                    allow_partial=False, raise_reject=True)


@nb.njit(cache=True)
def post_order_nb(c, avg_price):
    r = c.order_result
    if r.status == 0:  # filled
        k = c.col - c.from_col
        signed = r.size if r.side == 0 else -r.size
        avg_price[k] = update_avg_price_nb(avg_price[k], c.position_before, signed, r.price)




def simulate(inputs: SimInputs, execution: ExecutionSpec):
    """Run the simulation; returns the vectorbt Portfolio and the risk events array."""
    import vectorbt as vbt

    T, N = inputs.close.shape
    state = new_state()
    avg_price = np.full(N, np.nan)
    sizes = np.zeros(N)
    exits = np.zeros(N, dtype=np.bool_)
    events = np.zeros((T, N), dtype=np.int8)
    desired = np.zeros(N)
    positions = np.zeros(N)
    close_df = pd.DataFrame(inputs.close, index=inputs.index, columns=inputs.symbols)
    try:
        pf = vbt.Portfolio.from_order_func(
            close_df,
            order_func_nb,
            inputs.exec_price, sizes, execution.fees, execution.fixed_fees, execution.slippage,
            pre_segment_func_nb=pre_segment_nb,
            pre_segment_args=(
                inputs.exec_price, inputs.close, inputs.targets, inputs.vol, inputs.risk, inputs.lag,
                execution.fees, execution.fixed_fees, execution.slippage, not execution.fractional,
                execution.min_order_value, state, avg_price, sizes, exits, events, desired, positions,
            ),
            post_order_func_nb=post_order_nb,
            post_order_args=(avg_price,),
            init_cash=execution.initial_cash,
            cash_sharing=True,
            group_by=True,
            call_pre_segment=True,
            freq="1D",
        )
    except Exception as exc:  # a rejected planned order is an engine bug, not user input
        if "Reject" in type(exc).__name__ or "reject" in str(exc).lower():
            raise QfError(f"vectorbt rejected a planned order: {exc}") from exc
        raise
    return pf, events


def run_vectorbt(bars: Bars, targets: pd.DataFrame, risk: RiskConfig, execution: ExecutionSpec) -> EngineResult:
    """Simulate the targets on the bars; see the module docstring for the conventions.

    Example::

        res = run_vectorbt(bars, targets, RiskConfig(), ExecutionSpec(fill="next_close"))
        res.equity.iloc[-1]
    """
    inputs = build_inputs(bars, targets, risk, execution)
    pf, events = simulate(inputs, execution)
    equity = pf.value()
    equity.name = "equity"
    rec = pf.orders.records
    orders = pd.DataFrame({
        "time": inputs.index[rec["idx"]],
        "symbol": np.asarray(inputs.symbols)[rec["col"]],
        "side": np.where(rec["side"] == 0, "buy", "sell"),
        "quantity": rec["size"].astype(float),
        "price": rec["price"].astype(float),
        "fee": rec["fees"].astype(float),
    }, columns=ORDER_COLUMNS).sort_values(["time", "side", "symbol"], kind="mergesort", ignore_index=True)
    return EngineResult("vectorbt", equity, orders, events_frame(events, inputs), {"portfolio": pf})


def events_frame(events: np.ndarray, inputs: SimInputs) -> pd.DataFrame:
    rows = []
    flat_rows = np.flatnonzero((events == EVENT_FLATTEN).any(axis=1))
    for i in flat_rows:
        rows.append((inputs.index[i], "flatten", ""))
    for i, k in zip(*np.nonzero(events == EVENT_STOP), strict=True):
        rows.append((inputs.index[i], "stop", inputs.symbols[k]))
    df = pd.DataFrame(rows, columns=["time", "event", "symbol"])
    return df.sort_values(["time", "event", "symbol"], ignore_index=True)
