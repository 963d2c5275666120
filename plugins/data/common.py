"""What every built-in data source shares: the common params and the last steps of ``load``.

Each source reads its raw frames its own way, then hands a :class:`qf.bars.Bars` to :func:`finish`, which
applies the symbol selection, the date range and finally :func:`qf.bars.validate`, so every source gives
the same errors for the same problems.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import Field, StringConstraints, field_validator, model_validator

from qf.bars import Bars, validate
from qf.components import Params
from qf.errors import DataError

Symbol = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class SourceParams(Params):
    """Params every built-in data source accepts.

    ``start`` and ``end`` are inclusive calendar dates; ``max_gap`` is the longest run of missing bars
    inside a series that is forward-filled (longer runs are errors).

    Example (YAML)::

        data:
          type: sample
          symbols: [AAPL, MSFT]
          start: 2015-01-01
          end: 2020-12-31
          max_gap: 3
    """

    symbols: list[Symbol] | None = Field(default=None, min_length=1)
    start: dt.date | None = None
    end: dt.date | None = None
    max_gap: int = Field(default=3, ge=0)

    @field_validator("symbols")
    @classmethod
    def _unique_symbols(cls, value: list[str] | None) -> list[str] | None:
        # a repeated symbol would become a duplicate column, which validate() rejects without naming it
        if value is not None:
            seen: set[str] = set()
            for sym in value:
                if sym in seen:
                    raise ValueError(f"symbol {sym!r} is listed twice")
                seen.add(sym)
        return value

    @model_validator(mode="after")
    def _ordered_range(self) -> SourceParams:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


class TickerParams(SourceParams):
    """:class:`SourceParams` of a market-data vendor: ``symbols`` required and upper-cased, each listed once.

    Vendors (Yahoo, Alpaca) upper-case tickers and name their result columns that way, so ``aapl`` and
    ``AAPL`` are the same symbol: listing both is the "listed twice" error, as listing ``AAPL`` twice is.

    Example::

        class Params(TickerParams):
            feed: str = "iex"

        Params(symbols=["aapl", "brk-b"]).symbols   # ['AAPL', 'BRK-B']
    """

    symbols: list[Symbol] = Field(min_length=1)  # type: ignore[assignment]

    @field_validator("symbols")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        upper = [s.upper() for s in value]
        dup = next((s for i, s in enumerate(upper) if s in upper[:i]), None)
        if dup is not None:
            raise ValueError(f"symbol {dup!r} is listed twice")
        return upper


def printable(text: str) -> str:
    """``text`` with control and other unprintable characters escaped, for error messages.

    A binary file read as text must not write raw bytes (terminal escape codes, NULs) to the console.

    Example::

        printable("close\x1b[2J")   # 'close\\x1b[2J'
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def check_symbols(source: str, available: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    """Return ``wanted`` (or all of ``available``), raising the did-you-mean error of ``Bars.select``.

    Used where a source can skip reading unwanted symbols (one file per symbol, yfinance) but should
    still give exactly the error message ``Bars.select`` gives.
    """
    if wanted is None:
        return list(available)
    probe = Bars(close=pd.DataFrame(columns=list(available), dtype="float64"), source=source)
    probe.select(list(wanted))  # raises DataError naming unknown symbols with hints
    return list(wanted)


def _bounds(
    index: pd.DatetimeIndex, start: dt.date | None, end: dt.date | None
) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    lo = pd.Timestamp(start) if start is not None else None
    # ``end`` is a calendar day: include every bar on that day, intraday ones too
    hi = pd.Timestamp(end) + pd.Timedelta(days=1) if end is not None else None
    if index.tz is not None:
        lo = lo.tz_localize(index.tz) if lo is not None else None
        hi = hi.tz_localize(index.tz) if hi is not None else None
    return lo, hi


def date_mask(index: pd.DatetimeIndex, start: dt.date | None, end: dt.date | None) -> np.ndarray:
    """Boolean mask of the rows of ``index`` inside ``[start, end]`` (inclusive days).

    A mask rather than ``.loc[start:end]`` because label slicing fails on an unsorted index, and an
    unsorted index must reach :func:`qf.bars.validate` to get its clear error.
    """
    lo, hi = _bounds(index, start, end)
    mask = np.ones(len(index), dtype=bool)
    if lo is not None:
        mask &= np.asarray(index >= lo)
    if hi is not None:
        mask &= np.asarray(index < hi)
    return mask


def no_bars_error(source: str, start: dt.date | None, end: dt.date | None, index: pd.Index) -> DataError:
    """The error for a date range that selects nothing, saying what range the data does cover."""
    if start is None and end is None:
        return DataError(f"{source}: no data rows")
    if start is not None and end is not None:
        wanted = f"between {start} and {end}"
    elif start is not None:
        wanted = f"from {start} on"
    else:
        wanted = f"up to {end}"
    if len(index):
        first, last = index.min(), index.max()
        covers = f"the data covers {first:%Y-%m-%d} to {last:%Y-%m-%d}"
    else:
        covers = "the data has no rows"
    return DataError(f"{source}: no bars {wanted} ({covers})")


def slice_dates(bars: Bars, start: dt.date | None, end: dt.date | None) -> Bars:
    """Keep the bars inside ``[start, end]``; an empty result is a :class:`DataError`."""
    if start is None and end is None:
        return bars
    index = bars.index
    if not isinstance(index, pd.DatetimeIndex):
        # leave it to validate(), which explains what is wrong with a non-date index
        return bars
    mask = date_mask(index, start, end)
    if not mask.any():
        raise no_bars_error(bars.source, start, end, index)
    return replace(bars, **{name: frame.loc[mask] for name, frame in bars.frames().items()})


def finish(bars: Bars, params: SourceParams) -> Bars:
    """The last steps of every ``load``: select symbols, slice dates, validate.

    Selection and slicing come before validation on purpose: a problem in a symbol or a year the
    experiment does not use must not stop it.
    """
    if params.symbols is not None:
        bars = bars.select(params.symbols)
    bars = slice_dates(bars, params.start, params.end)
    return validate(bars, max_gap=params.max_gap)
