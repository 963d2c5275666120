"""Turning pipeline targets into the per-bar arrays every engine simulates on.

Trading calendar of a symbol (the same in every engine):

- before its first bar (not listed yet) a target is held at 0: nothing can be bought;
- on a bar where it did not trade (a gap: NaN in the raw data, see :attr:`qf.bars.Bars.gaps`) nothing
  fills: ``exec_price`` is NaN there, and :func:`qf.engines.kernels.step.decide_nb` makes the order wait for the
  symbol's next real bar (it is sized there, at that bar's fill price). Positions are valued at the last
  real price in the meantime (``close`` is forward-filled for valuation only);
- when its data ends before the universe's last bar it is delisted on its last bar ``L``. With
  ``execution.on_delist: close`` (the default) the position is closed on ``L`` at ``L``'s fill price (the
  open under ``next_open``, the close otherwise), like any order, with fees and slippage; with
  ``hold_cash_value`` it is kept, valued at its last close, and never traded again. Either way every
  target for it after ``L`` is ignored and a ``delisted`` event is recorded at ``L``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from qf.bars import Bars
from qf.config.schema import ExecutionSpec
from qf.engines.costs import CostArrays, cost_arrays
from qf.engines.kernels.risk import RiskStack, as_stack
from qf.errors import QfError


@dataclass
class SimInputs:
    """Arrays indexed by fill bar: the price orders fill at, closes, and the targets to execute.

    ``exec_price`` is NaN wherever the symbol has no real bar (not listed, a gap, delisted): no order ever
    fills there. ``close`` is the valuation close, carried forward through gaps and after a delisting.
    ``first_bar[k]`` is the symbol's first bar with a price (``T`` if none), ``delisted_at[k]`` its last
    one when its data ends early, else -1. ``costs`` is the run's :class:`qf.engines.costs.CostArrays`.
    ``risk`` is the run's stateful rules (:class:`qf.engines.kernels.risk.RiskStack`), ``risk_inputs`` their
    per-bar inputs ``[T, K, N]`` by decision bar, and :attr:`rules` / :attr:`risk_params` what the kernels
    take (see :func:`qf.engines.kernels.step.decide_costed_nb`).

    Example::

        inp = build_inputs(bars, targets, None, ExecutionSpec(fill="next_close"))
        inp.targets[inp.lag]   # the first rebalance row, executed one bar after its decision
    """

    index: pd.DatetimeIndex
    symbols: list[str]
    exec_price: np.ndarray
    close: np.ndarray
    targets: np.ndarray  # NaN = leave the symbol alone at this fill bar
    is_rebalance: np.ndarray
    risk_inputs: np.ndarray  # [T, K, N]: the stateful rules' per-bar inputs (K = 0 without any)
    risk: RiskStack
    lag: int
    first_bar: np.ndarray
    delisted_at: np.ndarray
    close_on_delist: bool = True
    costs: CostArrays | None = None  # the cost model's arrays (None: execution.slippage, no cap)

    @property
    def rules(self) -> np.ndarray:
        """The rule table the kernels call (:meth:`qf.engines.kernels.risk.RiskStack.table`)."""
        return self.risk.table(len(self.symbols))

    @property
    def risk_params(self) -> np.ndarray:
        """Every stateful rule's parameters, back to back."""
        return self.risk.params

    def new_risk_state(self) -> np.ndarray:
        """A fresh flat state of the stateful rules (:meth:`qf.engines.kernels.risk.RiskStack.new_state`)."""
        return self.risk.new_state(len(self.symbols))

    def adjust(self, rows: np.ndarray, at: np.ndarray) -> None:
        """Apply the trading calendar, in place, to target rows ``rows`` executed at fill bars ``at``.

        Before listing a target is 0, after a delisting it is ignored (NaN), and on the delisting bar
        ``close`` makes it 0.

        Example::

            row = targets_at(exp, bars, date).to_numpy()[None, :]
            inputs.adjust(row, np.array([i]))
        """
        at = np.asarray(at)[:, None]
        before = (at < self.first_bar) & ~np.isnan(rows)
        rows[before] = 0.0
        gone = self.delisted_at >= 0
        rows[gone & (at > self.delisted_at)] = np.nan
        if self.close_on_delist:
            rows[gone & (at == self.delisted_at)] = 0.0

    def adjust_all(self, rows: np.ndarray) -> None:
        """:meth:`adjust` for a full ``[T, N]`` array whose row ``i`` fills at bar ``i``, touching only the
        cells the calendar changes (the bars before a listing, from a delisting on).

        Example::

            tgt = np.full(inputs.close.shape, 0.5)
            inputs.adjust_all(tgt)   # 0 before each symbol lists, NaN after it is delisted
        """
        for k in np.flatnonzero(self.first_bar > 0):
            head = rows[:self.first_bar[k], k]
            head[~np.isnan(head)] = 0.0
        for k in np.flatnonzero(self.delisted_at >= 0):
            last = self.delisted_at[k]
            rows[last + 1:, k] = np.nan
            if self.close_on_delist:
                rows[last, k] = 0.0


def fill_lag(execution: ExecutionSpec) -> int:
    """Bars between the decision and the fill: 1 for next_open/next_close, 0 for close."""
    return 0 if execution.fill == "close" else 1


def build_inputs(bars: Bars, targets: pd.DataFrame, risk: RiskStack | Sequence[Any] | None,
                 execution: ExecutionSpec) -> SimInputs:
    """The :class:`SimInputs` of a run: targets moved to their fill bars, the trading calendar applied.

    ``risk`` is a :class:`qf.engines.kernels.risk.RiskStack`, a list of risk rules (the stateful ones are
    composed), or None for no stateful rule.

    Example::

        inp = build_inputs(bars, tg.targets, tg.risk, exp.spec.execution)
        inp.delisted_at   # -1, or the last bar of a symbol whose data ends early
    """
    if execution.fill == "next_open":
        if bars.open is None:
            raise QfError(
                f"execution.fill: 'next_open' needs open prices, but {bars.source} has only "
                f"{', '.join(bars.fields)}; use fill: next_close (decide at the close, fill at the next close)"
            )
        fill_field = bars.open
    else:
        fill_field = bars.close
    traded = bars.traded()
    exec_price = np.where(traded, fill_field.to_numpy(dtype=float), np.nan)
    close = bars.close.ffill().to_numpy(dtype=float)  # the valuation close (valuation_bars' close)
    lag = fill_lag(execution)
    T, N = close.shape
    # listed = a price, real or a filled gap: a window that ends (or starts) inside a gap is not a delisting
    # (or a late listing), its orders just wait for a real bar
    listed = bars.close.notna().to_numpy()
    any_bar = listed.any(axis=0)
    first_bar = np.where(any_bar, listed.argmax(axis=0), T)
    last_bar = np.where(any_bar, T - 1 - listed[::-1].argmax(axis=0), -1)
    delisted_at = np.where(any_bar & (last_bar < T - 1), last_bar, -1)
    tgt = np.full((T, N), np.nan)
    pos = bars.index.get_indexer(targets.index)
    if (pos < 0).any():
        raise QfError("targets contain dates that are not bars")
    fill_rows = pos + lag
    keep = fill_rows < T
    tgt[fill_rows[keep]] = targets.to_numpy(dtype=float)[keep]
    stack = as_stack(risk)
    inputs = SimInputs(bars.index, bars.symbols, exec_price, close, tgt, np.zeros(T, dtype=bool),
                       stack.inputs(bars), stack, lag, first_bar, delisted_at, execution.on_delist == "close",
                       cost_arrays(bars, execution))
    inputs.adjust_all(tgt)
    inputs.is_rebalance = ~np.isnan(tgt).all(axis=1)
    return inputs


def delisting_events(inputs: SimInputs) -> list[tuple[pd.Timestamp, str, str]]:
    """``(time, "delisted", symbol)`` for every symbol whose data ends before the last bar, at its last bar.

    Example::

        delisting_events(build_inputs(bars, targets, None, ExecutionSpec()))
        # [(Timestamp('2020-03-02'), 'delisted', 'XYZ')]
    """
    return [(inputs.index[b], "delisted", inputs.symbols[k]) for k, b in enumerate(inputs.delisted_at) if b >= 0]
