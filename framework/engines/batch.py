"""The vectorbt engine's numbers without a ``vbt.Portfolio``: what a sweep evaluates each combination with.

:func:`sweep_metrics` is the sweep's path: one call of :func:`sweep_simulate_nb` per combination simulates
(the same decision step, the same orders, vectorbt's order arithmetic in :func:`fill_order_nb`), values
the account as ``Portfolio.value()`` does and reduces the fills to what the metrics need, so that no
order record, order frame or result object is built; the bars' arrays are prepared once per sweep.
:func:`run_vectorbt_light` below is the reference it is tested against (and the path of other callers).

:func:`run_vectorbt_light` runs the very same simulation as :func:`qf.engines.vectorbt.run_vectorbt` (the
same :func:`qf.engines.vectorbt.simulate_nb` kernel, so the same :func:`qf.engines.kernels.step.decide_nb` step and
vectorbt's own order execution) and then values the account from the order records with the same vectorbt kernels,
in the same order, as ``Portfolio.value()`` does: cash flows per column, summed for the cash-sharing group,
accumulated from the initial cash, plus positions at the (filled) close. Only the wrappers are skipped:
``Portfolio.value()`` builds dozens of array wrappers, configs and frames per call, which cost a sweep about
80 % of its time per combination, while the numbers come out bit for bit the same (a test holds the two
equal).

The result is an :class:`~qf.engines.result.EngineResult` with the equity, orders and events of the full
run, but no ``portfolio`` in ``extra``: enough for :func:`qf.report.metrics.compute_metrics`, not for a
tear sheet (the best combination of a sweep is re-run on the full path for its report).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numba as nb
import numpy as np
import pandas as pd
from vectorbt.portfolio.nb import (
    asset_flow_nb,
    asset_value_grouped_nb,
    asset_value_nb,
    assets_nb,
    cash_flow_grouped_nb,
    cash_flow_nb,
    cash_grouped_nb,
    init_cash_grouped_nb,
    value_nb,
)
from vectorbt.records.nb import col_map_nb

from qf.bars import Bars
from qf.config.schema import ExecutionSpec
from qf.engines.costs import CostArrays
from qf.engines.inputs import SimInputs, build_inputs
from qf.engines.kernels.orders import update_avg_price_nb
from qf.engines.kernels.risk import RiskStack
from qf.engines.kernels.step import decide_costed_nb
from qf.engines.kernels.tolerance import add_nb, is_close_nb, is_close_or_less_nb, is_less_nb
from qf.engines.result import EVENT_COLUMNS, EngineResult, events_frame, orders_frame
from qf.errors import QfError
from qf.report.metrics import _aligned, compute_metrics, metrics_from_equity


@nb.njit(cache=True)
def _value_nb(close, order_records, init_cash):  # pragma: no cover - numba
    # vectorbt's own numba kernels, in the order Portfolio.value() calls them for one cash-sharing group
    T, N = close.shape
    col_map = col_map_nb(order_records["col"], N)
    group_lens = np.full(1, N, dtype=np.int64)
    cash_flow = cash_flow_grouped_nb(cash_flow_nb((T, N), order_records, col_map, False), group_lens)
    init = init_cash_grouped_nb(np.full(1, init_cash), group_lens, True)
    cash = cash_grouped_nb((T, N), cash_flow, group_lens, init)
    assets = assets_nb(asset_flow_nb((T, N), order_records, col_map, 2))  # Direction.Both (LongOnly is 0)
    filled = close.copy()
    for k in range(N):  # Portfolio.get_filled_close(): forward, then backward fill (close is ffilled)
        first = 0
        while first < T and np.isnan(filled[first, k]):
            first += 1
        for i in range(min(first, T)):
            filled[i, k] = filled[first, k] if first < T else np.nan
    for i in range(T):
        for k in range(N):
            if assets[i, k] == 0:  # for price being NaN, as vectorbt does
                filled[i, k] = 0.0
    asset_value = asset_value_grouped_nb(asset_value_nb(filled, assets), group_lens)
    return value_nb(cash, asset_value)[:, 0]


def portfolio_value(close: np.ndarray, order_records: np.ndarray, init_cash: float) -> np.ndarray:
    """The group's value at each bar's close, computed as ``vbt.Portfolio(...).value()`` computes it for one
    cash-sharing group over all columns (``fillna_close`` on), with the same kernels in the same order.

    ``close`` must be forward-filled already (as :class:`~qf.engines.inputs.SimInputs` ``close`` is).
    When vectorbt dispatches to its Rust engine the same steps go through its dispatch functions instead.

    Example::

        records, _ = simulate_nb(...)
        equity = portfolio_value(inputs.close, records, 100_000.0)
    """
    from vectorbt.portfolio import dispatch
    from vectorbt.portfolio.enums import Direction
    from vectorbt.records import dispatch as records_dispatch

    if dispatch.resolve_engine(None) == "numba":
        return _value_nb(np.ascontiguousarray(close, dtype=np.float64), order_records, float(init_cash))
    T, N = close.shape
    shape = (T, N)
    col_map = records_dispatch.col_map(order_records["col"], N)
    group_lens = np.array([N])
    cash_flow = dispatch.cash_flow(shape, order_records, col_map, False)
    cash_flow = dispatch.cash_flow_grouped(cash_flow, group_lens)
    init = dispatch.init_cash_grouped(np.array([float(init_cash)]), group_lens, True)
    cash = dispatch.cash_grouped(shape, cash_flow, group_lens, init)
    filled = pd.DataFrame(close).ffill().bfill().to_numpy(dtype=float, copy=True)  # get_filled_close()
    assets = dispatch.assets(dispatch.asset_flow(shape, order_records, col_map, Direction.Both))
    filled[assets == 0] = 0.0  # for price being NaN, as vectorbt does
    asset_value = dispatch.asset_value_grouped(dispatch.asset_value(filled, assets), group_lens)
    return dispatch.value(cash, asset_value)[:, 0]


def records_frame(order_records: np.ndarray, inputs: SimInputs) -> pd.DataFrame:
    """vectorbt's order records as :func:`qf.engines.result.orders_frame` rows (categorical names: a sweep
    builds thousands of frames), in the order ``run_vectorbt`` gives them.

    Example::

        records_frame(records, inputs)[["symbol", "quantity"]]
    """
    r = order_records
    return orders_frame(r["idx"], r["col"], r["side"], r["size"], r["price"], r["fees"], inputs.index, inputs.symbols,
                        categorical=True)


def run_vectorbt_light(bars: Bars, targets: pd.DataFrame, risk: RiskStack | None,
                       execution: ExecutionSpec) -> EngineResult:
    """:func:`qf.engines.vectorbt.run_vectorbt`'s equity, orders and events, without building a ``vbt.Portfolio``.

    Example::

        res = run_vectorbt_light(bars, tg.targets, tg.risk, exp.spec.execution)
        compute_metrics(res, exp.spec.execution.initial_cash)["sharpe"]
    """
    from qf.engines.vectorbt import run_kernel  # lazy: vectorbt

    inputs = build_inputs(bars, targets, risk, execution)
    order_records, _, events, capped = run_kernel(inputs, execution)
    init_cash = float(execution.initial_cash)
    equity = pd.Series(portfolio_value(inputs.close, order_records, init_cash), index=inputs.index, name="equity")
    has_events = events.any() or capped.any() or (inputs.delisted_at >= 0).any()
    ev = events_frame(events, inputs, capped) if has_events else pd.DataFrame(columns=EVENT_COLUMNS)
    return EngineResult("vectorbt", equity, records_frame(order_records, inputs), ev, {})


# ----------------------------------------------------------------------------------------------------------
# Sweeps: one kernel call per combination that simulates and values the account without any record array
# ----------------------------------------------------------------------------------------------------------


@nb.njit(cache=True)
def _stable_order_nb(sizes: np.ndarray, order: np.ndarray) -> None:  # pragma: no cover - numba
    # the permutation np.argsort(sizes, kind="mergesort") gives (ascending, ties in index order), written
    # into a preallocated array: an insertion sort of ~N symbols allocates nothing per bar
    n = sizes.shape[0]
    for j in range(n):
        order[j] = j
    for j in range(1, n):
        k = order[j]
        v = sizes[k]
        m = j - 1
        while m >= 0 and sizes[order[m]] > v:
            order[m + 1] = order[m]
            m -= 1
        order[m + 1] = k


@nb.njit(cache=True)
def _snap_nb(x: float) -> float:
    # execute_order_nb's "numerical stability" step: is_close_nb(x, 0) -> exactly 0
    return 0.0 if is_close_nb(x, 0.0) else x


@nb.njit(cache=True)
def fill_order_nb(cash, position, debt, free_cash, size, price, fees, fixed_fees, slippage):  # pragma: no cover
    """vectorbt's ``process_order_nb`` for the one kind of order qf's kernels send, operation by operation.

    The order is ``order_nb(size, price, fees=, fixed_fees=, slippage=, allow_partial=False,
    raise_reject=True)`` (an amount, both directions, no size limits, no log) processed without value
    updates, as :func:`qf.engines.vectorbt.simulate_nb` sends it. Returns ``(status, size, price, fees,
    side, cash, position, debt, free_cash)``: status 0 filled (side 0 buy, 1 sell), 1 ignored (the state
    snapped as vectorbt snaps it), -1 anything vectorbt would reject or raise on (the caller falls back to
    the reference kernel, which raises vectorbt's own error). ``tests/research/test_sweep_fast.py`` holds
    it to ``process_order_nb`` bit for bit.
    """
    cash = _snap_nb(cash)
    position = _snap_nb(position)
    debt = _snap_nb(debt)
    free_cash = _snap_nb(free_cash)
    if np.isnan(size) or np.isnan(price):
        return 1, np.nan, np.nan, np.nan, -1, cash, position, debt, free_cash
    if (np.isnan(cash) or cash < 0 or not np.isfinite(position) or not np.isfinite(debt) or debt < 0
            or np.isnan(free_cash) or not np.isfinite(price) or price <= 0 or not np.isfinite(fees)
            or not np.isfinite(fixed_fees) or not np.isfinite(slippage) or slippage < 0 or np.isinf(size)):
        return -1, np.nan, np.nan, np.nan, -1, cash, position, debt, free_cash
    if size > 0:  # buy_nb
        adj_price = price * (1 + slippage)
        cash_limit = cash
        if cash_limit == 0:
            return -1, np.nan, np.nan, np.nan, -1, cash, position, debt, free_cash
        req_cash = size * adj_price
        req_fees = req_cash * fees + fixed_fees
        total_req_cash = req_cash + req_fees
        if is_close_or_less_nb(total_req_cash, cash_limit):
            final_size = size
            fees_paid = req_fees
            final_req_cash = total_req_cash
        else:
            max_req_cash = add_nb(cash_limit, -fixed_fees) / (1 + fees)
            if max_req_cash <= 0:
                return -1, np.nan, np.nan, np.nan, -1, cash, position, debt, free_cash
            final_size = max_req_cash / adj_price
            fees_paid = cash_limit - max_req_cash
            final_req_cash = cash_limit
        if is_close_nb(size, 0):
            return 1, np.nan, np.nan, np.nan, -1, cash, position, debt, free_cash
        if is_less_nb(final_size, 0.0) or is_less_nb(final_size, size):  # min size / partial fill
            return -1, np.nan, np.nan, np.nan, -1, cash, position, debt, free_cash
        new_cash = add_nb(cash, -final_req_cash)
        new_position = add_nb(position, final_size)
        if position < 0:
            short_size = final_size if new_position < 0 else abs(position)
            avg_entry_price = debt / abs(position)
            debt_diff = short_size * avg_entry_price
            new_debt = add_nb(debt, -debt_diff)
            new_free_cash = add_nb(free_cash + 2 * debt_diff, -final_req_cash)
        else:
            new_debt = debt
            new_free_cash = add_nb(free_cash, -final_req_cash)
        return 0, final_size, adj_price, fees_paid, 0, new_cash, new_position, new_debt, new_free_cash
    # sell_nb
    size_limit = -size
    adj_price = price * (1 - slippage)
    if is_close_nb(size_limit, 0):
        return 1, np.nan, np.nan, np.nan, -1, cash, position, debt, free_cash
    if is_less_nb(size_limit, 0.0):
        return -1, np.nan, np.nan, np.nan, -1, cash, position, debt, free_cash
    acq_cash = size_limit * adj_price
    fees_paid = acq_cash * fees + fixed_fees
    final_acq_cash = add_nb(acq_cash, -fees_paid)
    if final_acq_cash < 0:
        return -1, np.nan, np.nan, np.nan, -1, cash, position, debt, free_cash
    new_cash = cash + final_acq_cash
    new_position = add_nb(position, -size_limit)
    if new_position < 0:
        short_size = size_limit if position < 0 else abs(new_position)
        short_value = short_size * adj_price
        new_debt = debt + short_value
        free_cash_diff = add_nb(final_acq_cash, -2 * short_value)
        new_free_cash = add_nb(free_cash, free_cash_diff)
    else:
        new_debt = debt
        new_free_cash = free_cash + final_acq_cash
    return 0, size_limit, adj_price, fees_paid, 1, new_cash, new_position, new_debt, new_free_cash


@nb.njit(cache=True)
def sweep_simulate_nb(exec_price, close, filled, targets, risk_inputs, rules, risk_params, lag, fees, fixed_fees,
                      slippage, impact, exponent, max_qty, integer, min_value, init_cash, state, eval_from, equity,
                      events, capped_at, totals):  # pragma: no cover - numba
    """:func:`qf.engines.vectorbt.simulate_nb` and :func:`portfolio_value` fused for one combination of a sweep.

    Every bar makes the same :func:`decide_costed_nb` decision and executes the same orders, in the same
    order (sells first, stable), with :func:`fill_order_nb` (vectorbt's ``process_order_nb`` arithmetic for
    these orders, without its generic checks and records), so the fills are the same numbers. No order
    record array is kept: each fill is booked straight into the account's value the way
    ``Portfolio.value()`` rebuilds it from the records (the bar's cash flow per column with ``add_nb``,
    summed over the columns in column order and accumulated from the initial cash with ``add_nb``;
    positions accumulated with ``add_nb`` and valued at ``filled``, vectorbt's filled close), which gives
    ``equity`` bit for bit. ``totals`` receives (fills, fees, traded value) of the fills from bar
    ``eval_from`` on, what :func:`qf.report.metrics.compute_metrics` counts over the evaluation period.
    ``targets`` is updated in place (orders waiting for a symbol's next bar), as in ``simulate_nb``;
    ``events`` and ``capped_at`` receive the risk events and the orders the participation cap clipped.
    Returns False (and leaves the rest undefined) when an order is one :func:`fill_order_nb` does not
    fill: the caller then runs the reference kernel, which raises vectorbt's own error for it.
    """
    T, N = close.shape
    cash = init_cash
    free_cash = init_cash
    position = np.zeros(N)
    debt = np.zeros(N)
    avg_price = np.full(N, np.nan)
    sizes = np.zeros(N)
    exits = np.zeros(N, dtype=np.bool_)
    desired = np.zeros(N)
    slip_out = np.zeros(N)
    capped = np.zeros(N, dtype=np.bool_)
    order = np.zeros(N, dtype=np.int64)
    cash_flow = np.zeros(N)  # this bar's cash flow per column (vectorbt's cash_flow_nb row)
    asset_flow = np.zeros(N)
    assets = np.zeros(N)  # vectorbt's assets_nb row
    cash_v = init_cash  # vectorbt's cash_grouped_nb
    n_fills = 0
    fees_paid = 0.0
    traded = 0.0
    for i in range(T):
        decide_costed_nb(i, lag, cash, position, exec_price, close, targets, risk_inputs, rules, risk_params, fees,
                         fixed_fees, slippage[i], impact[i], exponent, max_qty[i], integer, min_value, state,
                         avg_price, exits, events, desired, sizes, slip_out, capped)
        for k in range(N):
            if capped[k]:  # the caller's array starts all False
                capped_at[i, k] = True
        _stable_order_nb(sizes, order)
        for j in range(N):
            k = order[j]
            if sizes[k] == 0.0:
                continue
            position_before = position[k]
            status, f_size, f_price, f_fees, side, cash, position[k], debt[k], free_cash = fill_order_nb(
                cash, position[k], debt[k], free_cash, sizes[k], exec_price[i, k], fees, fixed_fees, slip_out[k])
            if status < 0:
                return False
            if status == 0:  # filled
                signed = f_size if side == 0 else -f_size
                # the average price sees the position before the fill
                avg_price[k] = update_avg_price_nb(avg_price[k], position_before, signed, f_price)
                cash_flow[k] = add_nb(cash_flow[k], -signed * f_price - f_fees)
                asset_flow[k] = add_nb(asset_flow[k], signed)
                if i >= eval_from:
                    n_fills += 1
                    fees_paid += f_fees
                    traded += f_size * f_price
        # one pass for both sums, each still in column order; the flows are reset for the next bar
        flow = 0.0
        asset_value = 0.0
        for k in range(N):
            flow += cash_flow[k]
            assets[k] = add_nb(assets[k], asset_flow[k])
            if assets[k] != 0.0:  # vectorbt values a flat column at 0 (its price may be NaN)
                asset_value += filled[i, k] * assets[k]
            cash_flow[k] = 0.0
            asset_flow[k] = 0.0
        cash_v = add_nb(cash_v, flow)
        equity[i] = cash_v + asset_value
    totals[0] = n_fills
    totals[1] = fees_paid
    totals[2] = traded
    return True


class _SweepBase:
    """What every combination of a sweep shares: the bars' inputs without targets or stateful rules, and
    vectorbt's filled close (``Portfolio.get_filled_close()``) for valuation."""

    def __init__(self, bars: Bars, execution: ExecutionSpec) -> None:
        self.bars = bars  # held, so that the id in the cache key is never reused while the entry lives
        empty = pd.DataFrame(index=bars.index[:0], columns=bars.close.columns, dtype=float)
        inputs = build_inputs(bars, empty, None, execution)
        close = inputs.close
        filled = np.ascontiguousarray(pd.DataFrame(close).ffill().bfill().to_numpy(dtype=np.float64))
        # every combination's kernel reads these arrays again; where two hold the same values (a fill at the
        # close on data without gaps) or an array is one constant (the fixed cost model), one copy in memory
        # (a stride-0 view for a constant) leaves the cache to the combination's own arrays
        self.filled = close if np.array_equal(filled, close, equal_nan=True) else filled
        if np.array_equal(inputs.exec_price, close, equal_nan=True):
            inputs = replace(inputs, exec_price=close)
        c = inputs.costs if inputs.costs is not None else CostArrays.constant(close.shape, execution.slippage)
        self.costs = CostArrays(*(_one_copy(a) for a in (c.slippage, c.impact)), c.exponent, _one_copy(c.max_qty))
        self.inputs = inputs


def _one_copy(a: np.ndarray) -> np.ndarray:
    # a constant array as a read-only stride-0 view of its one value (same values, one cache line)
    if a.size and (a == a.flat[0]).all():
        return np.broadcast_to(a.flat[0], a.shape)
    return a


# the bars of a sweep (and of a walk-forward window or two): an entry costs a few arrays of the bars' size
_BASES: dict[tuple[int, str], _SweepBase] = {}
_BASES_SIZE = 4


def _sweep_base(bars: Bars, execution: ExecutionSpec) -> _SweepBase:
    key = (id(bars), execution.model_dump_json())
    base = _BASES.get(key)
    if base is None or base.bars is not bars:
        if len(_BASES) >= _BASES_SIZE:
            _BASES.pop(next(iter(_BASES)))
        base = _BASES[key] = _SweepBase(bars, execution)
    return base


def sweep_metrics(bars: Bars, targets: pd.DataFrame, risk: RiskStack | Sequence[Any] | None, execution: ExecutionSpec,
                  eval_start: pd.Timestamp | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """``compute_metrics(run_vectorbt_light(...), initial_cash, eval_start=eval_start)`` and the equity array,
    from one call of :func:`sweep_simulate_nb`: no order records, no frames of fills, no ``EngineResult``.

    What a sweep evaluates each combination with on the vectorbt engine. The fills are the reference
    kernel's, the equity is ``Portfolio.value()``'s bit for bit, and the metrics come from
    :func:`qf.report.metrics.metrics_from_equity` (what ``compute_metrics`` itself uses); only the order
    of summing fees and traded value differs (a few ulps). The bars' arrays are built once per sweep
    (:class:`_SweepBase`). If an order would be rejected the reference path runs and raises its error.

    Example::

        m, equity = sweep_metrics(bars, tg.targets, tg.risk, exp.spec.execution, eval_start)
        m["sharpe"]
    """
    from qf.engines.kernels.risk import as_stack  # lazy: numba

    base = _sweep_base(bars, execution)
    inp = base.inputs
    T, N = inp.close.shape
    tgt = np.full((T, N), np.nan)
    lag = inp.lag
    if len(targets.index) == T and targets.index.equals(bars.index):  # a daily schedule: row d fills at d + lag
        tgt[lag:] = targets.to_numpy(dtype=float)[:T - lag]
    else:
        pos = bars.index.get_indexer(targets.index)
        if (pos < 0).any():
            raise QfError("targets contain dates that are not bars")
        fill_rows = pos + lag
        keep = fill_rows < T
        tgt[fill_rows[keep]] = targets.to_numpy(dtype=float)[keep]
    inp.adjust_all(tgt)
    stack = as_stack(risk)
    if stack.active:
        inp = replace(inp, risk_inputs=stack.inputs(bars), risk=stack)
    eval_pos = 0 if eval_start is None else int(bars.index.searchsorted(_aligned(eval_start, bars.index), side="left"))
    c = base.costs
    equity = np.empty(T)
    events = np.zeros((T, N), dtype=np.int8)
    capped = np.zeros((T, N), dtype=np.bool_)
    totals = np.zeros(3)
    ok = sweep_simulate_nb(inp.exec_price, inp.close, base.filled, tgt, inp.risk_inputs, inp.rules, inp.risk_params,
                           inp.lag, execution.fees, execution.fixed_fees, c.slippage, c.impact, c.exponent, c.max_qty,
                           not execution.fractional, execution.min_order_value, float(execution.initial_cash),
                           inp.new_risk_state(), eval_pos, equity, events, capped, totals)
    if not ok:  # an order vectorbt would not fill as planned: the reference path raises its error
        result = run_vectorbt_light(bars, targets, risk, execution)
        return compute_metrics(result, execution.initial_cash, eval_start=eval_start), result.equity.to_numpy()
    n_events = 0
    if events.any() or capped.any() or (inp.delisted_at >= 0).any():
        n_events = len(events_frame(events, inp, capped))
    m = metrics_from_equity(equity, bars.index, execution.initial_cash, eval_pos, eval_start, n_orders=int(totals[0]),
                            fees_paid=float(totals[1]), traded=float(totals[2]), risk_events=n_events)
    return m, equity
