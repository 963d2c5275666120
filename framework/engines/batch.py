"""The vectorbt engine's result without a ``vbt.Portfolio``: what a sweep evaluates each combination with.

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
from qf.engines.inputs import SimInputs, build_inputs
from qf.engines.kernels.risk import RiskStack
from qf.engines.result import EVENT_COLUMNS, EngineResult, events_frame, orders_frame


@nb.njit(cache=True)
def _value_nb(close, order_records, init_cash):  # pragma: no cover - numba
    # vectorbt's own numba kernels, in the order Portfolio.value() calls them for one cash-sharing group
    T, N = close.shape
    col_map = col_map_nb(order_records["col"], N)
    group_lens = np.full(1, N, dtype=np.int64)
    cash_flow = cash_flow_grouped_nb(cash_flow_nb((T, N), order_records, col_map, False), group_lens)
    init = init_cash_grouped_nb(np.full(1, init_cash), group_lens, True)
    cash = cash_grouped_nb((T, N), cash_flow, group_lens, init)
    assets = assets_nb(asset_flow_nb((T, N), order_records, col_map, 0))  # Direction.Both
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
    from qf.engines.vectorbt import run_kernel

    inputs = build_inputs(bars, targets, risk, execution)
    order_records, _, events, capped = run_kernel(inputs, execution)
    init_cash = float(execution.initial_cash)
    equity = pd.Series(portfolio_value(inputs.close, order_records, init_cash), index=inputs.index, name="equity")
    has_events = events.any() or capped.any() or (inputs.delisted_at >= 0).any()
    ev = events_frame(events, inputs, capped) if has_events else pd.DataFrame(columns=EVENT_COLUMNS)
    return EngineResult("vectorbt", equity, records_frame(order_records, inputs), ev, {})
