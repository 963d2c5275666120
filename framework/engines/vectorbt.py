"""The vectorbt engine: targets -> vectorbt's order-function simulation -> a ``vbt.Portfolio``.

One path serves stateless and stateful rules alike: at each bar :func:`qf.engines.kernels.step.decide_nb` (the
stateful risk kernel on the simulated portfolio, then orders planned from the fill price; the same step
the backtrader engine runs) decides, sells go before buys, and vectorbt's own ``process_order_nb``
executes exactly those quantities (never on a bar the symbol did not trade: see :mod:`qf.engines.inputs`
for gaps, late listings and delistings). It is what ``Portfolio.from_order_func`` does with qf's
callbacks (a test holds the two to identical records), written as one cached kernel so that a run does
not spend seconds recompiling vectorbt's simulation in every process. Nothing is silently dropped: if
vectorbt would fill anything other than the planned quantity, the run fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numba as nb
import numpy as np
import pandas as pd
from vectorbt.portfolio.enums import ProcessOrderState, log_dt, order_dt
from vectorbt.portfolio.nb import order_nb, process_order_nb

from qf.bars import Bars
from qf.config.schema import ExecutionSpec
from qf.engines.costs import CostArrays
from qf.engines.inputs import SimInputs, build_inputs
from qf.engines.kernels.orders import update_avg_price_nb
from qf.engines.kernels.risk import RiskStack
from qf.engines.kernels.step import decide_costed_nb
from qf.engines.result import EngineResult, events_frame, orders_frame
from qf.errors import QfError


@nb.njit(cache=True)
def simulate_nb(exec_price, close, targets, risk_inputs, rules, risk_params, lag, fees, fixed_fees, slippage, impact,
                exponent, max_qty, integer, min_value, init_cash, state, avg_price, sizes, exits, events, desired,
                capped_at):
    """vectorbt's ``simulate_nb`` loop for one cash-sharing group, specialised to qf's callbacks.

    Each bar runs the shared :func:`decide_nb` step on the cash and positions before the bar, values the
    group at the fill price, hands every planned order (sells first) to vectorbt's own
    ``process_order_nb`` (which fills it, charges fees and the order's own slippage fraction from the cost
    model's arrays ``slippage``/``impact``/``exponent``/``max_qty``, and writes the order record), marks in
    ``capped_at`` the orders the participation cap clipped, tracks
    average entry prices for the stops, and values positions at the close at the end of the bar (the last
    real price on a bar the symbol did not trade: ``close`` is carried forward for valuation). Being
    a plain module-level kernel it is cached on disk; ``Portfolio.from_order_func`` recompiles its
    simulation in every process because the callbacks arrive as arguments.
    """
    T, N = close.shape
    order_records = np.empty(T * N, dtype=order_dt)
    log_records = np.empty(0, dtype=log_dt)
    cash = init_cash
    free_cash = init_cash
    position = np.zeros(N)
    debt = np.zeros(N)
    val_price = np.full(N, np.nan)
    oidx = 0
    slip_out = np.zeros(N)
    capped = np.zeros(N, dtype=np.bool_)
    for i in range(T):
        decide_costed_nb(i, lag, cash, position, exec_price, close, targets, risk_inputs, rules, risk_params, fees,
                         fixed_fees, slippage[i], impact[i], exponent, max_qty[i], integer, min_value, state,
                         avg_price, exits, events, desired, sizes, slip_out, capped)
        for k in range(N):
            capped_at[i, k] = capped[k]
        for k in range(N):
            if not np.isnan(exec_price[i, k]):
                val_price[k] = exec_price[i, k]
        value = cash
        for k in range(N):
            if position[k] != 0.0:
                value += position[k] * val_price[k]
        order = np.argsort(sizes, kind="mergesort")  # sells (negative) first, stable
        for j in range(N):
            k = order[j]
            if sizes[k] == 0.0:
                continue
            o = order_nb(size=sizes[k], price=exec_price[i, k], fees=fees, fixed_fees=fixed_fees, slippage=slip_out[k],
                         allow_partial=False, raise_reject=True)
            before = ProcessOrderState(cash, position[k], debt[k], free_cash, val_price[k], value, oidx, 0)
            res, after = process_order_nb(i, k, 0, before, False, o, order_records, log_records)
            if res.status == 0:  # filled
                signed = res.size if res.side == 0 else -res.size
                avg_price[k] = update_avg_price_nb(avg_price[k], position[k], signed, res.price)
            cash = after.cash
            position[k] = after.position
            debt[k] = after.debt
            free_cash = after.free_cash
            if not np.isnan(after.val_price):
                val_price[k] = after.val_price
            value = after.value
            oidx = after.oidx
        for k in range(N):
            if not np.isnan(close[i, k]):
                val_price[k] = close[i, k]
    return order_records[:oidx], log_records


def run_kernel(inputs: SimInputs, execution: ExecutionSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`simulate_nb` on a run's inputs: ``(order_records, log_records, events, capped)``, the last two
    ``[T, N]`` (risk events, orders clipped by the participation cap).

    Example::

        records, _, events, capped = run_kernel(build_inputs(bars, targets, None, execution), execution)
    """
    T, N = inputs.close.shape
    events = np.zeros((T, N), dtype=np.int8)
    capped = np.zeros((T, N), dtype=np.bool_)
    c = inputs.costs if inputs.costs is not None else CostArrays.constant((T, N), execution.slippage)
    try:
        order_records, log_records = simulate_nb(
            # a copy: orders waiting for a symbol's next bar are written into the targets
            inputs.exec_price, inputs.close, inputs.targets.copy(), inputs.risk_inputs, inputs.rules,
            inputs.risk_params, inputs.lag,
            execution.fees, execution.fixed_fees, c.slippage, c.impact, c.exponent, c.max_qty,
            not execution.fractional, execution.min_order_value, float(execution.initial_cash),
            inputs.new_risk_state(), np.full(N, np.nan), np.zeros(N), np.zeros(N, dtype=np.bool_), events,
            np.zeros(N), capped,
        )
    except Exception as exc:  # a rejected planned order is an engine bug, not user input
        if "Reject" in type(exc).__name__ or "reject" in str(exc).lower():
            raise QfError(f"vectorbt rejected a planned order: {exc}") from exc
        raise
    return order_records, log_records, events, capped


def simulate(inputs: SimInputs, execution: ExecutionSpec):
    """Run the simulation; returns the vectorbt Portfolio and the risk events array."""
    pf, events, _ = simulate_capped(inputs, execution)
    return pf, events


def simulate_capped(inputs: SimInputs, execution: ExecutionSpec):
    """:func:`simulate`, plus the ``[T, N]`` array of the orders the participation cap clipped."""
    import vectorbt as vbt
    from vectorbt.base.array_wrapper import ArrayWrapper

    order_records, log_records, events, capped = run_kernel(inputs, execution)
    close_df = pd.DataFrame(inputs.close, index=inputs.index, columns=inputs.symbols)
    wrapper = ArrayWrapper.from_obj(close_df, freq="1D", group_by=True)
    pf = vbt.Portfolio(wrapper, close_df, order_records, log_records, float(execution.initial_cash), True)
    return pf, events, capped


def run_vectorbt(bars: Bars, targets: pd.DataFrame, risk: RiskStack | Sequence[Any] | None,
                 execution: ExecutionSpec) -> EngineResult:
    """Simulate the targets on the bars; see the module docstring for the conventions.

    ``risk``: the stateful risk rules (a :class:`qf.engines.kernels.risk.RiskStack`, a list of rules, or None).

    Example::

        res = run_vectorbt(bars, targets, [DrawdownHalt({"max_drawdown": 0.2})], ExecutionSpec(fill="next_close"))
        res.equity.iloc[-1]
    """
    inputs = build_inputs(bars, targets, risk, execution)
    pf, events, capped = simulate_capped(inputs, execution)
    equity = pf.value()
    equity.name = "equity"
    rec = pf.orders.records
    orders = orders_frame(rec["idx"], rec["col"], rec["side"], rec["size"], rec["price"], rec["fees"], inputs.index,
                          inputs.symbols)
    return EngineResult("vectorbt", equity, orders, events_frame(events, inputs, capped), {"portfolio": pf})
