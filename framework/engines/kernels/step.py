"""The per-bar decision both engines make: risk check at the decision bar, then orders at the fill price.

Both the vectorbt engine (from its simulation kernel) and the backtrader engine (from its strategy)
call :func:`decide_nb`, so they cannot drift apart.

Bars a symbol did not trade (``exec_price`` is NaN: a gap, not listed yet, delisted) never get a fill. An
order for such a bar waits: its target is carried to the next bar until the symbol has a real bar, where
it is sized at that bar's fill price, unless a newer target (a rebalance, a stop, a halt) replaces it.
Meanwhile the symbol is valued at its last real price, and stops are only evaluated on real closes.

An order the cost model's participation cap clips (see :mod:`qf.engines.costs`) trades what the bar allows
and its target is carried to the next bar the same way, until the position reaches it (or a newer target
replaces it); the caller records a ``participation_cap`` event for each clipped order.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from qf.engines.kernels.orders import plan_costed_nb
from qf.engines.kernels.risk import risk_step_nb

EVENT_FLATTEN, EVENT_STOP = 1, 2


@nb.njit(cache=True)
def value_nb(cash: float, position: np.ndarray, price: np.ndarray) -> float:
    # summed in column order, skipping flat symbols, as vectorbt values a group
    v = cash
    for k in range(position.shape[0]):
        if position[k] != 0.0:
            v += position[k] * price[k]
    return v


@nb.njit(cache=True)
def fill_value_nb(cash: float, position: np.ndarray, exec_price: np.ndarray, close: np.ndarray) -> float:
    """The portfolio valued at the fill prices of a bar; a symbol with no bar there at ``close`` (its last
    real price, carried forward). Summed in column order like :func:`value_nb`."""
    v = cash
    for k in range(position.shape[0]):
        if position[k] != 0.0:
            p = exec_price[k]
            v += position[k] * (close[k] if np.isnan(p) else p)
    return v


@nb.njit(cache=True)
def decide_costed_nb(i, lag, cash, position, exec_price, close, targets, risk_inputs, rules, risk_params, fees,
                     fixed_fees, slippage, impact, exponent, max_qty, integer, min_value, state, avg_price, exits,
                     events, desired, sizes, slip_out, capped):  # pragma: no cover - numba
    """The orders of fill bar ``i`` from the broker's ``cash`` and ``position`` before the fill.

    The stateful risk rules (:func:`qf.engines.kernels.risk.risk_step_nb` on the rule table ``rules``, their
    ``risk_params``, their flat ``state`` and the decision bar's row of ``risk_inputs``, all from
    :class:`qf.engines.inputs.SimInputs`) run at the decision bar
    ``d = i - lag`` on the equity at its close, a halt flattens everything, a stop closes its symbol,
    a rebalance row sets the targets (NaN = leave the symbol alone), and ``sizes`` receives the signed
    quantities from :func:`plan_orders_nb` at ``exec_price[i]``. ``events[i]`` records what the risk rules
    did. ``close`` is the valuation close (carried forward through gaps); ``exec_price`` is NaN where the
    symbol did not trade, and a target there is written forward into ``targets[i + 1]`` (see the module
    docstring): the caller's ``targets`` array is updated in place.

    ``slippage``, ``impact``, ``max_qty`` are bar ``i``'s rows of the run's
    :class:`qf.engines.costs.CostArrays`; ``slip_out`` receives each order's slippage fraction (the fill price
    is ``exec_price[i] * (1 +/- slip_out)``) and ``capped`` which orders the participation cap clipped (their
    target is carried to ``targets[i + 1]``).

    Example (what :class:`QfStrategy` does at each bar)::

        c = inp.costs
        decide_costed_nb(i, inp.lag, broker.getcash(), positions, inp.exec_price, inp.close, inp.targets,
                         inp.risk_inputs, inp.rules, inp.risk_params, fees, fixed_fees, c.slippage[i],
                         c.impact[i], c.exponent, c.max_qty[i], integer, min_value, state, avg_price, exits,
                         events, desired, sizes, slip_out, capped)
    """
    n = position.shape[0]
    d = i - lag
    flatten = 0
    for k in range(n):
        exits[k] = False
    if d >= 0 and rules.shape[0] > 0:
        # the broker's value at the close of d: its cash and positions at that close (nothing fills between
        # the close of d and the orders of i), valued at the close; computed here rather than read from the
        # broker because with fill=close the broker has not yet valued bar i when its orders are placed
        equity = value_nb(cash, position, close[d])
        flatten = risk_step_nb(equity, close[d], position, avg_price, risk_inputs[d], rules, risk_params, state, exits)
        for k in range(n):
            # on a bar the symbol did not trade its close is a carried price: no new stop on it
            if np.isnan(exec_price[d, k]):
                exits[k] = False
    value = fill_value_nb(cash, position, exec_price[i], close[i])
    for k in range(n):
        if flatten == 1:
            desired[k] = 0.0
            events[i, k] = EVENT_FLATTEN
        elif exits[k]:
            desired[k] = 0.0
            events[i, k] = EVENT_STOP
        else:
            desired[k] = targets[i, k]
        if np.isnan(exec_price[i, k]) and not np.isnan(desired[k]):
            # no bar for the symbol here: the order waits for its next real bar (a newer target wins);
            # a zero target on no position is no order at all
            waits = desired[k] != 0.0 or position[k] != 0.0
            if waits and i + 1 < targets.shape[0] and np.isnan(targets[i + 1, k]):
                targets[i + 1, k] = desired[k]
            desired[k] = np.nan
    plan_costed_nb(desired, value, cash, position, exec_price[i], fees, fixed_fees, slippage, impact, exponent,
                   max_qty, integer, min_value, sizes, slip_out, capped)
    for k in range(n):
        # the rest of a clipped order: its target again at the next bar, unless a newer one is there
        if capped[k] and i + 1 < targets.shape[0] and np.isnan(targets[i + 1, k]):
            targets[i + 1, k] = desired[k]


@nb.njit(cache=True)
def decide_nb(i, lag, cash, position, exec_price, close, targets, risk_inputs, rules, risk_params, fees, fixed_fees,
              slippage, integer, min_value, state, avg_price, exits, events, desired,
              sizes):  # pragma: no cover - numba
    """:func:`decide_costed_nb` under the ``fixed`` cost model: a constant ``slippage`` fraction, no cap.

    Example (what the paper strategy does at each bar)::

        decide_nb(i, inp.lag, broker.getcash(), positions, inp.exec_price, inp.close, inp.targets,
                  inp.risk_inputs, inp.rules, inp.risk_params, fees, fixed_fees, slippage, integer, min_value,
                  state, avg_price, exits, events, desired, sizes)
    """
    n = position.shape[0]
    decide_costed_nb(i, lag, cash, position, exec_price, close, targets, risk_inputs, rules, risk_params, fees,
                     fixed_fees, np.full(n, slippage), np.zeros(n), 1.0, np.full(n, np.inf), integer, min_value, state,
                     avg_price, exits, events, desired, sizes, np.zeros(n), np.zeros(n, dtype=np.bool_))
