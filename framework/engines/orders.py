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
    """Write into ``out`` the signed share quantity to trade per symbol (0 = no order).

    ``target`` holds weights of ``value`` (NaN = leave the symbol alone). Sells are assumed to execute
    before buys (both engines order them so), which is what makes their proceeds available.
    """
    n = target.shape[0]
    for k in range(n):
        out[k] = 0.0
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
        closing = goal == 0.0 and position[k] != 0.0
        # below a billionth of the portfolio an order is numerical dust (e.g. the cash a fully
        # invested position keeps because buys are scaled a hair under what is affordable)
        if not closing and (abs(delta) * p < min_value or abs(delta) * p <= 1e-9 * abs(value)):
            continue
        # an order whose proceeds (a sell) or value (a buy) does not cover its fixed fee only loses money,
        # and a sell that nets less than nothing can leave a fully invested account short of cash
        if not closing and fixed_fees > 0.0:
            traded = abs(delta) * p
            if delta < 0.0:
                traded *= (1.0 - slippage) * (1.0 - fees)
            if traded <= fixed_fees:
                continue
        out[k] = delta
    # cash after the sells, then what the buys would cost
    avail = cash
    cost = 0.0
    nbuys = 0
    for k in range(n):
        d = out[k]
        if d < 0.0:
            net = -d * price[k] * (1.0 - slippage) * (1.0 - fees) - fixed_fees
            if net < 0.0:
                # a sell whose fixed fee exceeds its proceeds is refused by vectorbt (and would only cost
                # money): such a dust position, worth less than one fee, is left in place
                out[k] = 0.0
                continue
            avail += net
        elif d > 0.0:
            cost += d * price[k] * (1.0 + slippage) * (1.0 + fees)
            nbuys += 1
    need = cost + nbuys * fixed_fees
    if nbuys == 0 or need <= avail:
        return
    budget = avail - nbuys * fixed_fees
    # a hair under the exact ratio so float rounding never leaves a buy a cent short
    scale = max(budget, 0.0) / cost * (1.0 - 1e-12)
    for k in range(n):
        d = out[k]
        if d > 0.0:
            d *= scale
            if integer:
                d = np.floor(d)
            if d * price[k] < min_value or d * price[k] <= fixed_fees or d <= 0.0:
                d = 0.0
            out[k] = d


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
