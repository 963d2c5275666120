"""Stateful risk rules, evaluated by one numba kernel that every engine calls at each bar.

Rules write their settings into a :class:`RiskConfig`; :func:`risk_step_nb` turns the portfolio state at
a decision bar into actions (flatten everything, or exit single positions). The vectorbt engine calls
it from its order function, the backtrader engine and paper trading from Python: one implementation,
so a rule behaves the same everywhere.

Semantics (decision at the close of bar ``d``, acted on at the fill bar):

- ``drawdown_halt``: when equity falls ``dd_limit`` below its running peak, flatten and stay flat;
  with ``dd_cooldown`` bars set, trading resumes at the first rebalance after the cool-down, and the
  peak restarts from the equity at that point.
- ``daily_loss_limit``: when equity falls ``daily_limit`` or more from the previous bar's close, flatten
  and stay flat for ``daily_cooldown`` bars, then resume at the next rebalance.
- ``stop_loss``: a long position whose close falls ``stop_pct`` below its average entry price (or
  ``stop_vol_mult`` trailing daily volatilities below it) is closed; shorts mirror this. With
  ``take_profit_pct`` a position is also closed that far in profit. The symbol stays out until the next
  rebalance re-enters it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numba as nb
import numpy as np

# indices into the float state vector
S_PEAK, S_PREV, S_HALT_UNTIL, S_HALTED = 0, 1, 2, 3
STATE_SIZE = 4


@dataclass
class RiskConfig:
    """Settings of the stateful risk kernel; NaN switches a rule off.

    Example::

        cfg = RiskConfig(dd_limit=0.2, dd_cooldown=20)
        cfg.active   # True
    """

    dd_limit: float = math.nan
    dd_cooldown: int = -1
    daily_limit: float = math.nan
    daily_cooldown: int = 1
    stop_pct: float = math.nan
    stop_vol_mult: float = math.nan
    stop_vol_window: int = 20
    take_profit_pct: float = math.nan

    @property
    def active(self) -> bool:
        return any(
            not math.isnan(getattr(self, f))
            for f in ("dd_limit", "daily_limit", "stop_pct", "stop_vol_mult", "take_profit_pct")
        )

    @property
    def needs_vol(self) -> bool:
        return not math.isnan(self.stop_vol_mult)

    def as_array(self) -> np.ndarray:
        return np.array([float(getattr(self, f.name)) for f in fields(self)], dtype=np.float64)


def new_state() -> np.ndarray:
    """A fresh kernel state: no peak yet, not halted."""
    s = np.full(STATE_SIZE, np.nan)
    s[S_HALTED] = 0.0
    s[S_HALT_UNTIL] = -1.0
    return s


def trailing_vol(close: np.ndarray, window: int) -> np.ndarray:
    """Rolling standard deviation (ddof=1) of simple daily returns ending at each bar (NaN in warm-up)."""
    import pandas as pd

    ret = pd.DataFrame(close).pct_change(fill_method=None)
    return ret.rolling(window, min_periods=window).std().to_numpy()


@nb.njit(cache=True)
def risk_step_nb(
    d: int,
    equity: float,
    close: np.ndarray,
    position: np.ndarray,
    avg_price: np.ndarray,
    vol: np.ndarray,
    cfg: np.ndarray,
    state: np.ndarray,
    exit_out: np.ndarray,
) -> int:
    """Update ``state`` with the portfolio at decision bar ``d``; return the action.

    Returns 1 when everything must be flat (a halt is on), else 0; ``exit_out[n]`` is set True for each
    position a stop closes. ``cfg`` is :meth:`RiskConfig.as_array`.
    """
    dd_limit, dd_cool, daily_limit, daily_cool = cfg[0], cfg[1], cfg[2], cfg[3]
    stop_pct, stop_vol_mult, tp_pct = cfg[4], cfg[5], cfg[7]
    for n in range(exit_out.shape[0]):
        exit_out[n] = False
    prev = state[S_PREV]
    state[S_PREV] = equity
    if state[S_HALTED] == 1.0:
        if state[S_HALT_UNTIL] >= 0 and d >= state[S_HALT_UNTIL]:
            state[S_HALTED] = 0.0
            state[S_PEAK] = equity
        else:
            return 1
    if np.isnan(state[S_PEAK]) or equity > state[S_PEAK]:
        state[S_PEAK] = equity
    if not np.isnan(dd_limit) and equity <= state[S_PEAK] * (1.0 - dd_limit):
        state[S_HALTED] = 1.0
        state[S_HALT_UNTIL] = -1.0 if dd_cool < 0 else d + dd_cool
        return 1
    if not np.isnan(daily_limit) and not np.isnan(prev) and prev > 0 and equity / prev - 1.0 <= -daily_limit:
        state[S_HALTED] = 1.0
        state[S_HALT_UNTIL] = d + max(daily_cool, 1.0)
        return 1
    for n in range(position.shape[0]):
        pos = position[n]
        if pos == 0.0 or np.isnan(close[n]) or np.isnan(avg_price[n]):
            continue
        entry = avg_price[n]
        dist = np.nan
        if not np.isnan(stop_pct):
            dist = stop_pct
        if not np.isnan(stop_vol_mult) and not np.isnan(vol[n]):
            vdist = stop_vol_mult * vol[n]
            dist = vdist if np.isnan(dist) else min(dist, vdist)
        move = close[n] / entry - 1.0
        if pos < 0:
            move = -move
        if not np.isnan(dist) and move <= -dist:
            exit_out[n] = True
        elif not np.isnan(tp_pct) and move >= tp_pct:
            exit_out[n] = True
    return 0


def merge(configs: list[RiskConfig]) -> RiskConfig:
    """Combine several rules' settings into one config (the strictest limit of each kind wins)."""
    out = RiskConfig()
    for c in configs:
        for f in ("dd_limit", "daily_limit", "stop_pct", "stop_vol_mult", "take_profit_pct"):
            a, b = getattr(out, f), getattr(c, f)
            if not math.isnan(b):
                setattr(out, f, b if math.isnan(a) else min(a, b))
        for f in ("dd_cooldown", "daily_cooldown", "stop_vol_window"):
            if getattr(c, f) != getattr(RiskConfig, f):
                setattr(out, f, getattr(c, f))
    return out
