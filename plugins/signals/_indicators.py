"""Causal indicators and the position-holding kernel shared by the built-in signal models.

Everything here computes row t from rows up to t only: trailing windows (``min_periods`` = the window, so
a symbol's first rows are NaN until it has enough history), recursive averages, and a loop over time.
Leading NaN closes (a symbol not listed yet) stay NaN.
"""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from collections.abc import Callable

import numba as nb
import numpy as np
import pandas as pd

# Indicators of the same closes and window are computed once per process and shared: a sweep evaluates
# thousands of combinations on one set of bars, and every combination with the same window (of any
# signal built on these functions) would otherwise compute the same frame again. Entries are keyed on
# the close frame's identity, live only as long as that frame (a weak reference drops them with it: the
# trailing windows of a live loop are not kept), and are dropped least recently used beyond a memory
# budget. Cached frames are shared: never modify one.
_MEMO: OrderedDict[tuple[str, int, int], tuple[pd.DataFrame, int]] = OrderedDict()  # (frame, bytes)
_REFS: dict[int, weakref.ref] = {}
_MEMO_BYTES = 256 * 1024 * 1024
_memo_used = 0


def _nbytes(df: pd.DataFrame) -> int:
    # the values' bytes (a view for the float frames cached here); memory_usage() takes ~1 ms on pandas 3
    return int(df.to_numpy().nbytes)


def _forget(frame_id: int) -> None:
    global _memo_used
    _REFS.pop(frame_id, None)
    for key in [k for k in _MEMO if k[1] == frame_id]:
        _memo_used -= _MEMO.pop(key)[1]


def _memo(name: str, close: pd.DataFrame, window: int, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    global _memo_used
    ref = _REFS.get(id(close))
    if ref is not None and ref() is not close:  # an id recycled before the callback ran
        _forget(id(close))
        ref = None
    key = (name, id(close), int(window))
    hit = _MEMO.get(key) if ref is not None else None
    if hit is not None:
        _MEMO.move_to_end(key)
        return hit[0]
    out = compute()
    size = _nbytes(out)
    if size > _MEMO_BYTES:
        return out
    while _MEMO and _memo_used + size > _MEMO_BYTES:
        _memo_used -= _MEMO.popitem(last=False)[1][1]
    if ref is None:
        frame_id = id(close)
        _REFS[frame_id] = weakref.ref(close, lambda _, frame_id=frame_id: _forget(frame_id))
    _MEMO[key] = (out, size)
    _memo_used += size
    return out


def clear_memo() -> None:
    """Forget every shared indicator (they are recomputed on the next use).

    Example::

        clear_memo()
    """
    global _memo_used
    _MEMO.clear()
    _REFS.clear()
    _memo_used = 0


def sma(close: pd.DataFrame, window: int) -> pd.DataFrame:
    """Trailing simple moving average; NaN until ``window`` closes exist. Shared per process (see above)."""
    return _memo("sma", close, window, lambda: close.rolling(window, min_periods=window).mean())


def rsi(close: pd.DataFrame, window: int) -> pd.DataFrame:
    """Wilder's RSI in [0, 100]; NaN for a symbol's first ``window`` bars. Shared per process.

    Wilder smoothing is an exponential average with alpha = 1/window; it is recursive, so it is causal.
    A window with no losses gives 100 and one with no moves at all gives 50 (neutral), never NaN.
    """
    return _memo("rsi", close, window, lambda: _rsi(close, window))


def _rsi(close: pd.DataFrame, window: int) -> pd.DataFrame:
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
    """(close - trailing mean) / trailing std (ddof=1); 0 where the window has no dispersion. Shared per process."""
    return _memo("zscore", close, window, lambda: _zscore(close, window))


def _zscore(close: pd.DataFrame, window: int) -> pd.DataFrame:
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
