"""Order planning shared by every engine: target weights -> share quantities at the fill price.

Both engines call :func:`plan_orders_nb` with the same inputs, so they send the same orders. Sizes are
computed from the fill price (not the decision price), buys are scaled down together when fees and
slippage would make them unaffordable, integer mode truncates toward zero, and orders below the
minimum value (or below a billionth of the portfolio) are skipped unless they close a position, and so
are orders that trade less than their fixed fee (even a closing sell: a position worth less than one fixed
fee is left in place rather than sold at a loss of cash).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from qf.engines.costs import MAX_SLIPPAGE


@nb.njit(cache=True)
def plan_orders_nb(
    target: np.ndarray,
    value: float,
    cash: float,
    position: np.ndarray,
    price: np.ndarray,
    fees: float,
    fixed_fees: float,
    slippage: float,
    integer: bool,
    min_value: float,
    out: np.ndarray,
) -> None:
    """Write into ``out`` the signed share quantity to trade per symbol (0 = no order), with a constant
    ``slippage`` fraction and no participation cap: :func:`plan_costed_nb` under the ``fixed`` cost model.

    ``target`` holds weights of ``value`` (NaN = leave the symbol alone). Sells are assumed to execute
    before buys (both engines order them so), which is what makes their proceeds available.

    Example::

        out = np.zeros(1)
        plan_orders_nb(np.array([1.0]), 100.0, 100.0, np.zeros(1), np.array([10.0]), 0.0, 0.0, 0.0, False,
                       0.0, out)   # out == [10.0]
    """
    n = target.shape[0]
    plan_costed_nb(target, value, cash, position, price, fees, fixed_fees, np.full(n, slippage), np.zeros(n), 1.0,
                   np.full(n, np.inf), integer, min_value, out, np.zeros(n), np.zeros(n, dtype=np.bool_))


@nb.njit(cache=True)
def order_slippage_nb(slippage: float, impact: float, exponent: float, qty: float) -> float:
    """The slippage fraction of an order of ``qty`` units (see :mod:`qf.engines.costs`).

    Example::

        order_slippage_nb(0.0005, 0.1 / 1000.0**2, 2.0, 100.0)   # 0.0005 + 0.1 * (100 / 1000)**2
    """
    s = slippage
    if impact > 0.0 and qty > 0.0:
        s += impact * qty ** exponent
    return min(s, MAX_SLIPPAGE)


@nb.njit(cache=True)
def _buy_cost_nb(out, scale, price, fees, slippage, impact, exponent, integer):  # pragma: no cover - numba
    # what the buys cost once scaled by ``scale`` (and truncated in integer mode), slippage at their own size
    cost = 0.0
    for k in range(out.shape[0]):
        d = out[k]
        if d > 0.0:
            d *= scale
            if integer:
                d = np.floor(d)
            cost += d * price[k] * (1.0 + order_slippage_nb(slippage[k], impact[k], exponent, d)) * (1.0 + fees)
    return cost


@nb.njit(cache=True)
def plan_costed_nb(
    target: np.ndarray,
    value: float,
    cash: float,
    position: np.ndarray,
    price: np.ndarray,
    fees: float,
    fixed_fees: float,
    slippage: np.ndarray,
    impact: np.ndarray,
    exponent: float,
    max_qty: np.ndarray,
    integer: bool,
    min_value: float,
    out: np.ndarray,
    slip_out: np.ndarray,
    capped: np.ndarray,
) -> None:
    """Write into ``out`` the signed quantity to trade per symbol, into ``slip_out`` each order's slippage
    fraction and into ``capped`` whether the participation cap clipped it.

    ``slippage``, ``impact``, ``max_qty`` are the bar's rows of :class:`qf.engines.costs.CostArrays`. The
    quantity is the target's at the fill bar's reference ``price`` (``target * value / price``), clipped to
    ``max_qty``; its fill price is ``price * (1 +/- s(q))`` with ``s`` the model's slippage at that very
    quantity. Buys that the cash cannot pay are scaled down together by one factor: with a size-dependent
    impact the cost of the buys grows faster than the factor, so the factor is the largest that is
    affordable, found by bisection (the cost is increasing in it, and at most ``budget / cost`` at the
    size-independent slippage); every order's slippage is then recomputed at its final size, so the
    planner, vectorbt and backtrader all charge the same price.
    """
    n = target.shape[0]
    for k in range(n):
        out[k] = 0.0
        slip_out[k] = 0.0
        capped[k] = False
        w = target[k]
        p = price[k]
        if np.isnan(w) or np.isnan(p) or p <= 0.0:
            continue
        goal = w * value / p
        if integer:
            goal = np.trunc(goal)
        delta = goal - position[k]
        if abs(delta) < 1e-12 * max(1.0, abs(position[k])):
            continue
        if abs(delta) > max_qty[k]:
            # the participation cap: trade what the bar allows, the caller carries the target to the next bar
            capped[k] = True
            cap = np.floor(max_qty[k]) if integer else max_qty[k]
            delta = cap if delta > 0.0 else -cap
            if delta == 0.0:
                continue
        closing = goal == 0.0 and position[k] != 0.0 and not capped[k]
        # below a billionth of the portfolio an order is numerical dust (e.g. the cash a fully
        # invested position keeps because buys are scaled a hair under what is affordable)
        if not closing and (abs(delta) * p < min_value or abs(delta) * p <= 1e-9 * abs(value)):
            continue
        # an order whose proceeds (a sell) or value (a buy) does not cover its fixed fee only loses money,
        # and a sell that nets less than nothing can leave a fully invested account short of cash
        if not closing and fixed_fees > 0.0:
            traded = abs(delta) * p
            if delta < 0.0:
                traded *= (1.0 - order_slippage_nb(slippage[k], impact[k], exponent, -delta)) * (1.0 - fees)
            if traded <= fixed_fees:
                continue
        out[k] = delta
    # cash after the sells, then what the buys would cost
    avail = cash
    cost = 0.0
    nbuys = 0
    sized = False  # any size-dependent impact on a buy
    for k in range(n):
        d = out[k]
        if d < 0.0:
            s = order_slippage_nb(slippage[k], impact[k], exponent, -d)
            net = -d * price[k] * (1.0 - s) * (1.0 - fees) - fixed_fees
            if net < 0.0:
                # a sell whose fixed fee exceeds its proceeds is refused by vectorbt (and would only cost
                # money): such a dust position, worth less than one fee, is left in place
                out[k] = 0.0
                continue
            avail += net
        elif d > 0.0:
            cost += d * price[k] * (1.0 + order_slippage_nb(slippage[k], impact[k], exponent, d)) * (1.0 + fees)
            nbuys += 1
            sized = sized or impact[k] > 0.0
    need = cost + nbuys * fixed_fees
    if nbuys > 0 and need > avail:
        budget = max(avail - nbuys * fixed_fees, 0.0)
        if not sized:
            # a hair under the exact ratio so float rounding never leaves a buy a cent short
            scale = budget / cost * (1.0 - 1e-12)
        else:
            lo, hi = 0.0, 1.0
            for _ in range(200):
                mid = 0.5 * (lo + hi)
                if _buy_cost_nb(out, mid, price, fees, slippage, impact, exponent, False) <= budget:
                    lo = mid
                else:
                    hi = mid
                if hi - lo <= 1e-15:
                    break
            scale = lo * (1.0 - 1e-12)
        for k in range(n):
            d = out[k]
            if d > 0.0:
                d *= scale
                if integer:
                    d = np.floor(d)
                # a buy scaled down to what a near-zero cash can pay is dust like any other order below a
                # billionth of the portfolio: vectorbt drops it, backtrader would fill it (a ~1e-10 share)
                v = d * price[k]
                if v < min_value or v <= fixed_fees or d <= 0.0 or v <= 1e-9 * abs(value):
                    d = 0.0
                out[k] = d
    for k in range(n):
        if out[k] != 0.0:
            slip_out[k] = order_slippage_nb(slippage[k], impact[k], exponent, abs(out[k]))


@nb.njit(cache=True)
def update_avg_price_nb(avg: float, position_before: float, size: float, fill_price: float) -> float:
    """Average entry price after a fill: weighted on adds, unchanged on reductions, reset on flips."""
    after = position_before + size
    if after == 0.0:
        return np.nan
    if position_before == 0.0 or (position_before > 0.0) != (after > 0.0):
        return fill_price
    if (size > 0.0) == (position_before > 0.0):
        return (avg * abs(position_before) + fill_price * abs(size)) / abs(after)
    return avg


def fill_price(price: float, size: float, slippage: float) -> float:
    """Execution price with slippage against the trade: buys pay up, sells receive less."""
    return price * (1.0 + slippage) if size > 0 else price * (1.0 - slippage)
