"""The bars contract: OHLCV as wide frames (time x symbol), validated once at load.

After :func:`validate` a :class:`Bars` object guarantees: a sorted, unique, tz-naive DatetimeIndex shared
by every field; the same columns in every field; strictly positive prices; ``low <= open, close <= high``;
and missing values only before a symbol's first bar (not listed yet) and after its last bar (delisted: its
data ends before the others'). A gap inside a symbol's life (at most ``max_gap`` bars in a row, such as a
trading halt or a holiday one exchange kept) becomes a flat bar at the last close with no volume, so that
signals see a continuous series, and is recorded in :attr:`Bars.gaps`: the engines never fill an order on
such a bar and value positions there at the last real price. A longer run inside a symbol's life is an
error (more likely a broken file than a halt; raise ``max_gap`` to accept it, handled the same way).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from qf.errors import DataError

PRICE_FIELDS = ("open", "high", "low", "close")
FIELDS = (*PRICE_FIELDS, "volume")


@dataclass(frozen=True)
class Bars:
    """Wide OHLCV frames sharing one index and one set of columns; ``close`` is always present.

    ``gaps`` (bool, same shape, or None when there are none) is True on the bars :func:`validate` filled in
    because the symbol did not trade there (see the module docstring); :meth:`traded` is where it did.

    Example::

        idx = pd.bdate_range("2020-01-01", periods=3)
        bars = Bars(close=pd.DataFrame({"A": [1.0, 2.0, 3.0]}, index=idx), source="demo")
        bars.fields        # ('close',)
        bars.truncate(idx[1]).close.shape  # (2, 1)
    """

    close: pd.DataFrame
    open: pd.DataFrame | None = None
    high: pd.DataFrame | None = None
    low: pd.DataFrame | None = None
    volume: pd.DataFrame | None = None
    source: str = "data"
    meta: dict = field(default_factory=dict, compare=False)
    gaps: pd.DataFrame | None = field(default=None, compare=False)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for f in FIELDS if getattr(self, f) is not None)

    @property
    def index(self) -> pd.DatetimeIndex:
        return self.close.index  # type: ignore[return-value]

    @property
    def symbols(self) -> list[str]:
        return [str(c) for c in self.close.columns]

    def has(self, *names: str) -> bool:
        return all(getattr(self, n) is not None for n in names)

    def require(self, names: Iterable[str], who: str) -> None:
        """Raise a clear error when a component needs fields this data does not have."""
        missing = [n for n in names if getattr(self, n, None) is None]
        if missing:
            raise DataError(
                f"{who} needs {', '.join(missing)} but {self.source} provides only {', '.join(self.fields)}"
            )

    def frames(self) -> dict[str, pd.DataFrame]:
        return {f: getattr(self, f) for f in self.fields}

    def traded(self) -> np.ndarray:
        """``(T, N)`` bool array: True where the symbol has a real bar (listed, not delisted, not a gap).

        Example::

            bars.traded()[:, 0]   # the bars on which the first symbol could be bought or sold
        """
        real = self.close.notna().to_numpy()
        if self.gaps is not None:
            real = real & ~self.gaps.to_numpy(dtype=bool)
        return real

    def _map(self, fn) -> Bars:
        mapped = {f: fn(getattr(self, f)) for f in self.fields}
        if self.gaps is not None:
            mapped["gaps"] = fn(self.gaps)
        return replace(self, **mapped)

    def truncate(self, end: pd.Timestamp | str) -> Bars:
        """Bars up to and including ``end``: what a model may see at time ``end``."""
        return self._map(lambda df: df.loc[:end])

    def slice(self, start: pd.Timestamp | str | None = None, end: pd.Timestamp | str | None = None) -> Bars:
        return self._map(lambda df: df.loc[start:end])

    def iloc(self, rows: slice) -> Bars:
        return self._map(lambda df: df.iloc[rows])

    def select(self, symbols: Sequence[str]) -> Bars:
        unknown = [s for s in symbols if s not in self.close.columns]
        if unknown:
            import difflib

            hints = []
            for s in unknown:
                close = difflib.get_close_matches(s, self.symbols, n=1)
                hints.append(f"{s!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            avail = ", ".join(self.symbols)
            raise DataError(f"{self.source}: unknown symbol(s) {', '.join(hints)}; available: {avail}")
        return self._map(lambda df: df[list(symbols)])


def _fmt(ts: pd.Timestamp) -> str:
    if pd.isna(ts):
        return "NaT"
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()


def validate(bars: Bars, max_gap: int = 3) -> Bars:
    """Check the bars contract and return clean bars, or raise :class:`DataError` naming symbol and date.

    Example::

        clean = validate(Bars(close=frame, source="prices.csv"))
    """
    src = bars.source
    frames = bars.frames()
    close = frames["close"]
    if close.empty or close.shape[1] == 0:
        raise DataError(f"{src}: no data (empty result)")
    idx = close.index
    if not isinstance(idx, pd.DatetimeIndex):
        try:
            idx = pd.DatetimeIndex(pd.to_datetime(idx))
        except (ValueError, TypeError) as exc:
            raise DataError(f"{src}: the index is not made of dates ({exc})") from None
    if idx.hasnans:
        raise DataError(f"{src}: missing date (NaT) in row {int(np.argmax(idx.isna())) + 1} of the index")
    if idx.tz is not None:
        # daily bars stamped at local midnight keep their calendar dates; intraday bars go to UTC
        local = idx.tz_localize(None)
        idx = local if (local == local.normalize()).all() else idx.tz_convert("UTC").tz_localize(None)
    dup = idx[idx.duplicated()]
    if len(dup):
        raise DataError(f"{src}: duplicate date {_fmt(dup[0])} ({len(dup)} duplicate row(s))")
    if not idx.is_monotonic_increasing:
        pos = int(np.argmax(np.diff(idx.asi8) < 0)) + 1
        raise DataError(f"{src}: dates are not sorted: {_fmt(idx[pos])} comes after {_fmt(idx[pos - 1])}")
    cols = list(close.columns)
    if len(set(map(str, cols))) != len(cols):
        raise DataError(f"{src}: duplicate symbol columns")
    clean: dict[str, pd.DataFrame] = {}
    for name, df in frames.items():
        if list(df.columns) != cols or not df.index.equals(close.index):
            raise DataError(f"{src}: field {name!r} does not have the same dates and symbols as close")
        df = df.copy()
        df.index = idx
        df.columns = [str(c) for c in cols]
        try:
            df = df.astype("float64")
        except (ValueError, TypeError):
            bad = df.apply(pd.to_numeric, errors="coerce").isna() & df.notna()
            sym = bad.any().idxmax()
            raise DataError(
                f"{src}: {sym} {name} has a non-numeric value on {_fmt(bad[sym].idxmax())}"
            ) from None
        clean[name] = df
    close = clean["close"]
    for sym in close.columns:
        _check_gaps(src, sym, close[sym], max_gap)
    gaps = inner_gaps(close)
    filled = {name: _ffill(name, df, close, gaps) for name, df in clean.items()}
    if bars.gaps is not None:
        # validating validated bars: the bars filled the first time are still gaps
        if bars.gaps.shape != close.shape:
            raise DataError(f"{src}: the gaps mask does not have the shape of the bars")
        gaps |= bars.gaps.to_numpy(dtype=bool)
    fc = filled["close"]
    for name in PRICE_FIELDS:
        if name in filled:
            _check_positive(src, name, filled[name])
    if "volume" in filled:
        neg = filled["volume"] < 0
        if neg.to_numpy().any():
            sym = neg.any().idxmax()
            raise DataError(f"{src}: {sym} has negative volume on {_fmt(neg[sym].idxmax())}")
    if "high" in filled and "low" in filled:
        hi, lo = filled["high"], filled["low"]
        bad = hi < lo
        for other in ("open", "close"):
            if other in filled:
                bad |= (filled[other] > hi * (1 + 1e-9)) | (filled[other] < lo * (1 - 1e-9))
        if bad.to_numpy().any():
            sym = bad.any().idxmax()
            day = bad[sym].idxmax()
            raise DataError(
                f"{src}: {sym} on {_fmt(day)}: high {hi.at[day, sym]:g} / low {lo.at[day, sym]:g} "
                "do not bracket the bar (high < low, or open/close outside the range)"
            )
    for name in ("open", "high", "low", "volume"):
        if name in filled:
            # a field that is missing where close exists cannot be filled honestly
            miss = filled[name].isna() & fc.notna()
            if miss.to_numpy().any():
                sym = miss.any().idxmax()
                raise DataError(f"{src}: {sym} has close but no {name} on {_fmt(miss[sym].idxmax())}")
    mask = pd.DataFrame(gaps, index=idx, columns=fc.columns) if gaps.any() else None
    return replace(bars, **filled, gaps=mask)


def inner_gaps(close: pd.DataFrame) -> np.ndarray:
    """``(T, N)`` bool: missing closes between a symbol's first and last price (not before listing or after
    delisting).

    Example::

        inner_gaps(pd.DataFrame({"A": [np.nan, 1.0, np.nan, 2.0, np.nan]}))[:, 0]
        # array([False, False,  True, False, False])
    """
    valid = close.notna().to_numpy()
    started = np.maximum.accumulate(valid, axis=0)
    ended = np.maximum.accumulate(valid[::-1], axis=0)[::-1]  # a price comes later
    return ~valid & started & ended


def _check_gaps(src: str, sym: str, s: pd.Series, max_gap: int) -> None:
    valid = s.notna().to_numpy()
    if not valid.any():
        raise DataError(f"{src}: {sym} has no prices at all")
    first = int(np.argmax(valid))
    last = len(valid) - 1 - int(np.argmax(valid[::-1]))
    # missing values after the last price are a delisting, not a gap
    inner = ~valid[first:last + 1]
    if not inner.any():
        return
    # lengths of runs of missing values between the first and the last price
    padded = np.concatenate([[False], inner, [False]])
    d = np.diff(padded.astype(np.int8))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    lengths = ends - starts
    worst = int(np.argmax(lengths))
    if lengths[worst] > max_gap:
        a = s.index[first + starts[worst]]
        b = s.index[first + ends[worst] - 1]
        raise DataError(
            f"{src}: {sym} has {lengths[worst]} missing bars in a row from {_fmt(a)} to {_fmt(b)} "
            f"(at most {max_gap} are filled; raise max_gap or fix the data)"
        )


def _ffill(name: str, df: pd.DataFrame, close: pd.DataFrame, where: np.ndarray) -> pd.DataFrame:
    """``df`` with the bars in ``where`` replaced by a flat bar at the last close, with no volume."""
    if not where.any():
        return df
    fill = 0.0 if name == "volume" else close.ffill()
    return df.mask(pd.DataFrame(where, index=df.index, columns=df.columns), fill)


def valuation_bars(bars: Bars) -> Bars:
    """``bars`` with every bar after a symbol's listing filled in (gaps and after a delisting) as a flat bar at
    the last close with no volume: the prices positions are marked at, never prices to trade at.

    Example::

        valuation_bars(bars).close.iloc[-1]   # a delisted symbol keeps its last close
    """
    close = bars.close
    missing = close.isna().to_numpy() & np.maximum.accumulate(close.notna().to_numpy(), axis=0)
    return replace(bars, **{name: _ffill(name, df, close, missing) for name, df in bars.frames().items()})


# No traded instrument is quoted anywhere near this; a price of 1e308 (or a unit mix-up) would overflow the
# sums of positions, fees and equity.
MAX_PRICE = 1e10


def _check_positive(src: str, name: str, df: pd.DataFrame) -> None:
    bad = (df <= 0) | (df > MAX_PRICE)
    if bad.to_numpy().any():
        sym = bad.any().idxmax()
        day = bad[sym].idxmax()
        value = df.at[day, sym]
        what = ("an infinite" if np.isinf(value) else "a non-positive" if value <= 0
                else f"an implausibly large (over {MAX_PRICE:g})")
        raise DataError(f"{src}: {sym} has {what} {name} ({value:g}) on {_fmt(day)}")
