"""Helpers shared by the built-in sizers: aligning the signal to rebalance dates and trailing returns.

All of them look at rows up to the rebalance date only, so every sizer built on them is causal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qf.bars import Bars


def aligned_signal(
    signal: pd.DataFrame, bars: Bars, dates: pd.DatetimeIndex, allow_short: bool = False
) -> pd.DataFrame:
    """The signal on the rebalance dates, one column per symbol, with every unusable score set to 0.

    A missing score (warm-up, or a date the signal does not cover) means no view, and a symbol with no close
    on the date (not listed yet) cannot be traded: both become 0. Shorts are clipped unless allowed.
    """
    s = signal.reindex(index=dates, columns=bars.close.columns).astype(float).fillna(0.0)
    s = s.where(bars.close.reindex(index=dates).notna(), 0.0)
    return s if allow_short else s.clip(lower=0.0)


def daily_returns(bars: Bars) -> pd.DataFrame:
    """Simple close-to-close returns; NaN on a symbol's first bar and before it lists."""
    return bars.close.pct_change(fill_method=None)


def trailing_vol(bars: Bars, window: int) -> pd.DataFrame:
    """Standard deviation (ddof=1) of the last ``window`` daily returns; NaN without a full window.

    The same estimate ``stop_loss``'s volatility stop uses (on the close carried through gaps), so
    "volatility" means one thing in qf.
    """
    vol = trailing_vol_array(bars.close.to_numpy(dtype=float), window)
    return pd.DataFrame(vol, index=bars.close.index, columns=bars.close.columns)


def trailing_vol_array(close: np.ndarray, window: int) -> np.ndarray:
    """:func:`trailing_vol` on a ``[T, N]`` array of closes (each row from the rows up to it only)."""
    ret = pd.DataFrame(close).pct_change(fill_method=None)
    return ret.rolling(window, min_periods=window).std().to_numpy()


def normalise_rows(raw: pd.DataFrame, total: float) -> pd.DataFrame:
    """Scale each row so sum |w| equals ``total``; an all-zero row stays all zero (go flat)."""
    gross = raw.abs().sum(axis=1)
    return raw.div(gross.where(gross > 0), axis=0).fillna(0.0) * total


def positions(bars: Bars, dates: pd.DatetimeIndex) -> np.ndarray:
    """Row positions of ``dates`` in ``bars.index`` (each rebalance date must be a bar)."""
    pos = bars.index.get_indexer(dates)
    if (pos < 0).any():
        missing = dates[pos < 0][0]
        raise ValueError(f"rebalance date {missing:%Y-%m-%d} is not a bar of {bars.source}")
    return pos
