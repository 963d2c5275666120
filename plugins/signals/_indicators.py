"""Causal indicators and the position-holding kernel shared by the built-in signal models.

Everything here computes row t from rows up to t only: trailing windows (``min_periods`` = the window, so
a symbol's first rows are NaN until it has enough history), recursive averages, and a loop over time.
Leading NaN closes (a symbol not listed yet) stay NaN.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import pandas as pd


def sma(close: pd.DataFrame, window: int) -> pd.DataFrame:
    """Trailing simple moving average; NaN until ``window`` closes exist."""
    return close.rolling(window, min_periods=window).mean()


def rsi(close: pd.DataFrame, window: int) -> pd.DataFrame:
    """Wilder's RSI in [0, 100]; NaN for a symbol's first ``window`` bars.

    Wilder smoothing is an exponential average with alpha = 1/window; it is recursive, so it is causal.
    A window with no losses gives 100 and one with no moves at all gives 50 (neutral), never NaN.
    """
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1.0 / window, adjust=False, min_periods=window).mean()
    loss = (-delta).clip(lower=0).ewm(alpha=1.0 / window, adjust=False, min_periods=window).mean()
    total = gain + loss
    out = 100.0 * gain / total.where(total > 0)
    return out.mask(total.notna() & (total <= 0), 50.0)


# residual weight of the start of a recursive average below which two histories count as the same
RECURSION_TOL = 1e-12


def rsi_history(window: int, tol: float = RECURSION_TOL) -> int:
    """Trailing bars after which :func:`rsi` no longer depends on where the history starts.

    Wilder's averages are recursive (alpha = 1/window): computed from a later start, the difference at
    bar t is the starting difference times ``(1 - 1/window) ** (bars - 2)`` (the first bar has no change,
    the second seeds the average). This is the smallest number of bars for which that factor is below
    ``tol``, so the RSI of the trailing window differs from the full-history RSI by less than ``tol``
    times 100 times the ratio of the seed's absolute move to the average absolute move (and is never
    shorter than the RSI's own warm-up).

    Example::

        rsi_history(14)   # 375
        rsi_history(3)    # 71
    """
    decay = 1.0 - 1.0 / window
    steps = math.ceil(math.log(tol) / math.log(decay)) if decay > 0 else 0
    return max(steps + 2, window + 1)


def zscore(close: pd.DataFrame, window: int) -> pd.DataFrame:
    """(close - trailing mean) / trailing std (ddof=1); 0 where the window has no dispersion."""
    mean = close.rolling(window, min_periods=window).mean()
    std = close.rolling(window, min_periods=window).std()
    # rolling std of a flat window can come out as rounding noise instead of 0: treat it as flat
    flat = std <= 1e-12 * mean.abs()
    return ((close - mean) / std.mask(flat)).mask(flat & std.notna(), 0.0)


@nb.njit(cache=True)
def hold_nb(enter: np.ndarray, exit_: np.ndarray, valid: np.ndarray, max_hold: int) -> np.ndarray:
    """Long/flat state machine over time, one column per symbol.

    A flat symbol goes long on a bar where ``enter`` is True; a long one goes flat on a bar where ``exit_``
    is True or after ``max_hold`` bars (0 = no limit), and cannot re-enter on that same bar (otherwise a
    time stop would be a no-op). Where ``valid`` is False (warm-up, not listed) the output is NaN and the
    state resets to flat. Returns 1.0 (long), 0.0 (flat) or NaN.
    """
    n_rows, n_cols = enter.shape
    out = np.empty((n_rows, n_cols), dtype=np.float64)
    for c in range(n_cols):
        long = False
        held = 0
        for t in range(n_rows):
            if not valid[t, c]:
                out[t, c] = np.nan
                long = False
                held = 0
                continue
            if long:
                held += 1
                if exit_[t, c] or (max_hold > 0 and held >= max_hold):
                    long = False
            elif enter[t, c]:
                long = True
                held = 0
            out[t, c] = 1.0 if long else 0.0
    return out


def hold(enter: pd.DataFrame, exit_: pd.DataFrame, valid: pd.DataFrame, max_hold: int = 0) -> pd.DataFrame:
    """:func:`hold_nb` on frames: returns a frame shaped like ``enter``."""
    out = hold_nb(
        np.ascontiguousarray(enter.to_numpy(dtype=np.bool_)),
        np.ascontiguousarray(exit_.to_numpy(dtype=np.bool_)),
        np.ascontiguousarray(valid.to_numpy(dtype=np.bool_)),
        int(max_hold),
    )
    return pd.DataFrame(out, index=enter.index, columns=enter.columns)
