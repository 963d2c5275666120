"""One decision step: the state and bookkeeping around the shared decision kernel, for the strategies that
call it bar by bar.

The vectorbt engine runs :func:`qf.engines.kernels.step.decide_costed_nb` inside its own compiled loop. The
backtrader strategy (:class:`qf.engines.backtrader.strategy.QfStrategy`) and both paper strategies
(:mod:`qf.engines.backtrader.paper`) call it from Python, once per bar, on a broker's real cash and
positions; :class:`DecisionStep` is what they hold for that, so the call, the risk kernel's state, the
average entry prices the stops read, and the orders and risk-events frames exist once:

- the kernel state (``state``) and the per-symbol arrays the kernel reads and writes (``avg_price``,
  ``exits``, ``desired``, ``sizes``, ``slip_out``, ``capped``);
- ``events`` and ``capped_at``, one row per bar (grown on demand: a paper session does not know how many
  bars it will see), which :meth:`DecisionStep.events_frame` and :meth:`DecisionStep.bar_events` turn
  into risk events with :func:`qf.engines.result.event_rows`;
- fill booking (:meth:`DecisionStep.book_fill`: average entry prices from the fills as the broker books
  them) and the fills themselves, which :meth:`DecisionStep.orders_frame` turns into ``orders``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from qf.config.schema import ExecutionSpec
from qf.engines.costs import CostArrays
from qf.engines.kernels.orders import update_avg_price_nb
from qf.engines.kernels.risk import RiskStack
from qf.engines.kernels.step import decide_costed_nb
from qf.engines.result import event_rows, orders_frame, risk_events_frame

Fill = tuple[int, int, str, float, float, float]  # (bar, column, "buy"/"sell", quantity > 0, price, fee)


class DecisionStep:
    """The shared per-bar decision (risk rules, then orders) with its state, fill booking and result frames.

    ``symbols`` is the number of columns, ``rows`` the number of bars to allocate for ``events`` and
    ``capped_at`` (more are added as :meth:`decide` reaches them). The strategy that holds it reads the
    broker's cash and positions, calls :meth:`decide`, sends ``sizes`` (the signed quantity per symbol, 0 =
    no order), and reports every fill to :meth:`book_fill`.

    Example::

        step = DecisionStep(len(inputs.symbols), execution, risk, rows=len(inputs.index))
        sizes = step.decide(i, inputs.lag, cash, positions, inputs.exec_price, inputs.close, inputs.targets,
                            inputs.risk_inputs, inputs.costs)
        ...                                              # send the orders; for each fill the broker makes:
        step.book_fill(i, k, "buy", 10.0, 101.5, 1.02)
        step.orders_frame(inputs.index, inputs.symbols)  # orders.csv
        step.events_frame(inputs.index, inputs.symbols, inputs.delisted_at)  # risk_events.csv
    """

    def __init__(self, symbols: int, execution: ExecutionSpec, risk: RiskStack, rows: int = 0) -> None:
        n = symbols
        self.n = n
        self.fees = float(execution.fees)
        self.fixed_fees = float(execution.fixed_fees)
        self.slippage = float(execution.slippage)
        self.integer = not execution.fractional
        self.min_value = float(execution.min_order_value)
        # the stateful risk rules: their table, parameters and flat state (qf.engines.kernels.risk.RiskStack)
        self.risk = risk
        self.rules = risk.table(n)
        self.risk_params = risk.params
        # no stateful rule: a bar without a target cannot trade, so the caller may skip it
        self.active = risk.active
        self.state = risk.new_state(n)
        self.avg_price = np.full(n, np.nan)
        self.filled_pos = np.zeros(n)  # positions rebuilt from the fills (what the average prices follow)
        self.exits = np.zeros(n, dtype=np.bool_)
        self.desired = np.zeros(n)
        self.sizes = np.zeros(n)
        self.slip_out = np.zeros(n)
        self.capped = np.zeros(n, dtype=np.bool_)
        self.events = np.zeros((rows, n), dtype=np.int8)
        self.capped_at = np.zeros((rows, n), dtype=np.bool_)
        self.fills: list[Fill] = []
        # the ``fixed`` cost model's row (a constant slippage fraction, no impact, no cap): for a caller
        # without cost arrays
        self._constant = CostArrays.constant((1, n), self.slippage)

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` bars in ``events`` and ``capped_at`` (doubling: appends stay O(1))."""
        have = self.events.shape[0]
        if rows <= have:
            return
        new = max(rows, 2 * have)
        events = np.zeros((new, self.n), dtype=np.int8)
        events[:have] = self.events
        capped = np.zeros((new, self.n), dtype=np.bool_)
        capped[:have] = self.capped_at
        self.events, self.capped_at = events, capped

    def decide(self, i: int, lag: int, cash: float, position: np.ndarray, exec_price: np.ndarray,
               close: np.ndarray, targets: np.ndarray, risk_inputs: np.ndarray, costs: CostArrays | None = None,
               row: int | None = None) -> np.ndarray:
        """The orders of fill bar ``i`` (``sizes``, signed) from ``cash`` and ``position`` before the fill.

        Runs :func:`qf.engines.kernels.step.decide_costed_nb`: the risk rules at decision bar ``i - lag``,
        then the order planner at ``exec_price[i]``; ``targets`` is updated in place where an order waits
        for a symbol's next bar. ``costs`` are the cost model's arrays and ``row`` their row for this fill
        (default ``i``; a live session passes a one-row :class:`CostArrays` and ``row=0``); without
        ``costs``, ``execution.slippage`` with no impact and no cap. Bar ``i``'s risk events and capped
        orders are (re)written, so deciding a bar again (after a broker change) replaces them.
        """
        if costs is None:
            costs, row = self._constant, 0
        r = i if row is None else row
        self.reserve(i + 1)
        self.events[i] = 0
        decide_costed_nb(i, lag, cash, position, exec_price, close, targets, risk_inputs, self.rules,
                         self.risk_params, self.fees, self.fixed_fees, costs.slippage[r], costs.impact[r],
                         costs.exponent, costs.max_qty[r],
                         self.integer, self.min_value, self.state, self.avg_price, self.exits, self.events,
                         self.desired, self.sizes, self.slip_out, self.capped)
        self.capped_at[i] = self.capped
        return self.sizes

    def book_fill(self, i: int, k: int, side: str, quantity: float, price: float, fee: float) -> None:
        """Record a fill of fill bar ``i`` in column ``k`` (``quantity`` > 0 at ``price``, the fill's own
        price) and update the symbol's average entry price as the broker books it (what the stops read)."""
        signed = quantity if side == "buy" else -quantity
        before = self.filled_pos[k]
        self.avg_price[k] = update_avg_price_nb(self.avg_price[k], before, signed, price)
        self.filled_pos[k] = before + signed
        self.fills.append((i, k, side, quantity, price, fee))

    def orders_frame(self, index: pd.DatetimeIndex, symbols: Sequence[str], first: int = 0) -> pd.DataFrame:
        """The booked fills from ``fills[first:]`` as ``orders`` (:func:`qf.engines.result.orders_frame`)."""
        f = self.fills[first:]
        return orders_frame(np.array([r[0] for r in f], dtype=np.int64), np.array([r[1] for r in f], dtype=np.int64),
                            np.array([r[2] == "sell" for r in f], dtype=np.int64),
                            np.array([r[3] for r in f], dtype=float), np.array([r[4] for r in f], dtype=float),
                            np.array([r[5] for r in f], dtype=float), pd.DatetimeIndex(index), symbols)

    def events_frame(self, index: pd.DatetimeIndex, symbols: Sequence[str],
                     delisted_at: np.ndarray | None = None) -> pd.DataFrame:
        """Risk events of the bars of ``index`` (rows ``0..len(index)-1``) as ``risk_events.csv`` rows
        (:func:`qf.engines.result.risk_events_frame`)."""
        n = len(index)
        self.reserve(n)
        return risk_events_frame(self.events[:n], pd.DatetimeIndex(index), symbols, delisted_at, self.capped_at[:n])

    def bar_events(self, i: int, symbols: Sequence[str],
                   delisted_at: np.ndarray | None = None) -> list[tuple[str, str]]:
        """Bar ``i``'s risk events as ``(event, symbol)`` in the order of :meth:`events_frame`'s rows for that
        bar (what a paper session commits with the bar).

        Example::

            step.bar_events(i, symbols)   # [('flatten', '')] after a drawdown halt
        """
        if i >= self.events.shape[0]:
            return []
        gone = None
        if delisted_at is not None:
            gone = np.where(np.asarray(delisted_at) == i, 0, -1)
            if not (gone == 0).any():
                gone = None
        if gone is None and not self.events[i].any() and not self.capped_at[i].any():
            return []
        _, event, col = event_rows(self.events[i:i + 1], gone, self.capped_at[i:i + 1])
        names = [*symbols, ""]  # column -1: no symbol
        return sorted((str(e), names[c]) for e, c in zip(event, col, strict=True))
