"""A backtrader data feed over numpy arrays.

Backtrader's ``PandasData`` loads a feed one bar at a time through pandas look-ups, which is about half of
a qf backtest's run time. :class:`NumpyData` holds the bar arrays and, when cerebro preloads (the
default), copies each whole column into backtrader's line buffers in one step; without preloading (live
sessions, ``exactbars``) it hands out one row per ``_load`` call like any other feed.

Missing values are kept: a symbol that is not listed yet has NaN prices on its first bars (the bars
contract allows NaN only there). Backtrader itself copes with NaN lines; qf's strategy never trades or
asks the broker about a symbol before its first price.
"""

from __future__ import annotations

import array
from collections.abc import Sequence

import backtrader as bt
import numpy as np
import pandas as pd

from qf.bars import Bars

LINES = ("open", "high", "low", "close", "volume", "openinterest")


def date_numbers(index: pd.DatetimeIndex) -> np.ndarray:
    """Backtrader's float date numbers (``bt.date2num``) of a tz-naive DatetimeIndex.

    Example::

        date_numbers(pd.DatetimeIndex(["2020-01-02"]))  # array([737426.])
    """
    return np.fromiter((bt.date2num(ts.to_pydatetime()) for ts in index), dtype=float, count=len(index))


class NumpyData(bt.feed.DataBase):
    """OHLCV bars of one symbol from numpy arrays.

    ``datenums`` are backtrader date numbers (see :func:`date_numbers`), ``ohlcv`` a ``(T, 5)`` float array
    with the columns open, high, low, close, volume. Open interest is 0.

    Example::

        idx = pd.bdate_range("2024-01-01", periods=3)
        px = np.array([[1, 1.1, 0.9, 1.0, 100]] * 3, dtype=float)
        cerebro.adddata(NumpyData(dataname="X", datenums=date_numbers(idx), ohlcv=px), name="X")
    """

    params = (
        ("datenums", None),
        ("ohlcv", None),
    )

    def __init__(self) -> None:
        super().__init__()
        dates = np.asarray(self.p.datenums, dtype=float)
        values = np.asarray(self.p.ohlcv, dtype=float)
        if values.ndim != 2 or values.shape != (len(dates), 5):
            raise ValueError(f"ohlcv must be a ({len(dates)}, 5) array of open, high, low, close, volume; "
                             f"got shape {values.shape}")
        self._dates = dates
        # one contiguous column per backtrader line, open interest included
        self._columns = [np.ascontiguousarray(values[:, j]) for j in range(5)]
        self._columns.append(np.zeros(len(dates)))
        self._row = 0
        super()._tick_nullify()  # the tick_* attributes exist, and stay None unless filters fill them

    def start(self) -> None:
        super().start()
        self._row = 0

    # Backtrader copies every line into ``tick_*`` attributes at each bar, for feeds whose current bar is
    # still being built (replay, resampling, live ticks). The broker falls back to the bar's own lines when
    # they are None, which is the same value for whole bars, so without filters the copy is skipped: it is
    # a tenth of a multi-symbol run.
    def _tick_nullify(self) -> None:
        if self._filters:
            super()._tick_nullify()

    def _tick_fill(self, force: bool = False) -> None:
        if self._filters:
            super()._tick_fill(force)

    def _load(self) -> bool:
        # the row-by-row path: used when cerebro does not preload
        r = self._row
        if r >= len(self._dates):
            return False
        self.lines.datetime[0] = self._dates[r]
        for name, col in zip(LINES, self._columns, strict=True):
            getattr(self.lines, name)[0] = col[r]
        self._row = r + 1
        return True

    def preload(self) -> None:
        """Copy whole columns into the line buffers (the fast path), honouring ``fromdate``/``todate``."""
        buffers = [self.lines.datetime.array] + [getattr(self.lines, n).array for n in LINES]
        if self._tzinput or self._filters or not all(isinstance(b, array.array) for b in buffers):
            # time zones, filters or bounded buffers need backtrader's bar-by-bar machinery
            super().preload()
            return
        keep = (self._dates >= self.fromdate) & (self._dates <= self.todate)
        columns = [self._dates, *self._columns]
        for buf, col in zip(buffers, columns, strict=True):
            buf.frombytes(np.ascontiguousarray(col[keep], dtype=np.float64).tobytes())
        self._row = len(self._dates)
        self._last()
        self.home()


def ohlcv_array(bars: Bars, k: int) -> np.ndarray:
    """The ``(T, 5)`` OHLCV array of column ``k``; close-only data gets open = high = low = close.

    A missing high or low is the larger or smaller of open and close; a missing volume is 0.
    """
    close = bars.close.iloc[:, k].to_numpy(dtype=float)
    opn = bars.open.iloc[:, k].to_numpy(dtype=float) if bars.open is not None else close
    high = bars.high.iloc[:, k].to_numpy(dtype=float) if bars.high is not None else np.fmax(opn, close)
    low = bars.low.iloc[:, k].to_numpy(dtype=float) if bars.low is not None else np.fmin(opn, close)
    vol = bars.volume.iloc[:, k].to_numpy(dtype=float) if bars.volume is not None else np.zeros_like(close)
    return np.column_stack([opn, high, low, close, vol])


def feeds_from_bars(bars: Bars, symbols: Sequence[str] | None = None) -> list[NumpyData]:
    """One :class:`NumpyData` feed per symbol (named after it), sharing one date array.

    Example::

        for feed in feeds_from_bars(bars):
            cerebro.adddata(feed, name=feed.p.dataname)
    """
    dates = date_numbers(bars.index)
    names = list(symbols) if symbols is not None else bars.symbols
    cols = {s: i for i, s in enumerate(bars.symbols)}
    return [NumpyData(dataname=s, datenums=dates, ohlcv=ohlcv_array(bars, cols[s])) for s in names]
