"""Labels from forward returns: what a model is trained to predict at row t.

A label at row t looks ``horizon`` bars AHEAD (``close[t + horizon] / close[t] - 1``): it is the one
place where future data is used, on purpose, and only for training and scoring. Consequences:

- rows whose horizon runs past the end of the data have no label (NaN) and must be dropped, which is
  also what keeps the last ``horizon`` rows of a walk-forward train window from peeking into the test
  window (:func:`labelled_rows`);
- features are never built from labels.

Two modes:

- classification (:func:`class_labels`): +1 when the forward return is above ``up``, -1 when below
  ``-down``, 0 in between (the usual swing set-up: 5 bars, +/-2%);
- quantile regression: the forward return itself is the target (:func:`forward_returns`), and the model
  predicts several of its quantiles.

Example::

    fwd = forward_returns(bars.close, 5)
    y = class_labels(fwd, up=0.02, down=0.02)    # -1 / 0 / 1, NaN for the last 5 rows
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["CLASSES", "class_ids", "class_labels", "forward_returns", "labelled_rows"]

CLASSES: tuple[int, ...] = (-1, 0, 1)
"""Label values in the order of the model's class ids 0, 1, 2 (down, flat, up)."""


def forward_returns(close: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Simple return from the close of t to the close ``horizon`` bars later; NaN where that bar is
    beyond the data (the last ``horizon`` rows) or the symbol is not listed at t.

    Example::

        forward_returns(close, 5).iloc[-5:].isna().all().all()   # True
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return close.shift(-horizon) / close - 1.0


def class_labels(fwd: pd.DataFrame, up: float, down: float) -> pd.DataFrame:
    """-1 / 0 / +1 labels: forward return > ``up`` is 1, < ``-down`` is -1, else 0; NaN stays NaN.

    Both thresholds are positive magnitudes; the boundaries themselves count as 0 (flat).
    """
    if up <= 0 or down <= 0:
        raise ValueError(f"thresholds must be positive, got up={up}, down={down}")
    values = fwd.to_numpy(dtype=float)
    out = np.where(values > up, 1.0, np.where(values < -down, -1.0, 0.0))
    out[np.isnan(values)] = np.nan
    return pd.DataFrame(out, index=fwd.index, columns=fwd.columns)


def class_ids(labels: np.ndarray) -> np.ndarray:
    """Map label values -1 / 0 / 1 to the model's class ids 0 / 1 / 2."""
    return (np.asarray(labels, dtype=float) + 1.0).astype(np.int32)


def labelled_rows(index: pd.MultiIndex, dates: pd.DatetimeIndex, horizon: int) -> np.ndarray:
    """Mask of the long rows (``(date, symbol)`` index) whose label lies inside ``dates``.

    The forward return of row t needs the close ``horizon`` bars later; for the last ``horizon`` dates
    of ``dates`` that bar is outside the window (in a walk-forward fold: inside the purge gap or the test
    window). Those rows are dropped explicitly here rather than trusting that a NaN will appear, so the
    rule holds even for a caller that computed labels on a longer history than the window.
    """
    if len(dates) <= horizon:
        return np.zeros(len(index), dtype=bool)
    last = dates[len(dates) - 1 - horizon]
    return np.asarray(index.get_level_values(0) <= last)
