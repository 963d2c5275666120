"""Turning pipeline targets into the per-bar arrays every engine simulates on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from qf.bars import Bars
from qf.config.schema import ExecutionSpec
from qf.engines.risk import RiskConfig, trailing_vol
from qf.errors import QfError


@dataclass
class SimInputs:
    """Arrays indexed by fill bar: the price orders fill at, closes, and the targets to execute."""

    index: pd.DatetimeIndex
    symbols: list[str]
    exec_price: np.ndarray
    close: np.ndarray
    targets: np.ndarray  # NaN row = no rebalance at this fill bar
    is_rebalance: np.ndarray
    vol: np.ndarray
    risk: np.ndarray
    lag: int


def fill_lag(execution: ExecutionSpec) -> int:
    """Bars between the decision and the fill: 1 for next_open/next_close, 0 for close."""
    return 0 if execution.fill == "close" else 1


def build_inputs(bars: Bars, targets: pd.DataFrame, risk: RiskConfig, execution: ExecutionSpec) -> SimInputs:
    if execution.fill == "next_open":
        if bars.open is None:
            raise QfError(
                f"execution.fill: 'next_open' needs open prices, but {bars.source} has only "
                f"{', '.join(bars.fields)}; use fill: next_close (decide at the close, fill at the next close)"
            )
        exec_price = bars.open.to_numpy(dtype=float)
    else:
        exec_price = bars.close.to_numpy(dtype=float)
    close = bars.close.to_numpy(dtype=float)
    lag = fill_lag(execution)
    T, N = close.shape
    tgt = np.full((T, N), np.nan)
    pos = bars.index.get_indexer(targets.index)
    if (pos < 0).any():
        raise QfError("targets contain dates that are not bars")
    fill_rows = pos + lag
    keep = fill_rows < T
    tgt[fill_rows[keep]] = targets.to_numpy(dtype=float)[keep]
    # a symbol without a price at the fill bar cannot be traded: hold it at zero
    tgt[np.isnan(exec_price) & ~np.isnan(tgt)] = 0.0
    is_reb = ~np.isnan(tgt).all(axis=1)
    vol = trailing_vol(close, risk.stop_vol_window) if risk.needs_vol else np.full((T, N), np.nan)
    return SimInputs(bars.index, bars.symbols, exec_price, close, tgt, is_reb, vol, risk.as_array(), lag)
