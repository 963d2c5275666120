"""Reading OHLCV from local files: the logic the ``csv`` and ``parquet`` sources share.

Two layouts:

- **long**: one table with a date column, a symbol column and one column per field
  (``date, symbol, open, high, low, close, volume``), possibly split over several files;
- **per symbol**: one table per symbol (a directory or a glob pattern), the symbol being the file name
  without its extension (``data/AAPL.csv`` -> ``AAPL``); no symbol column is needed.

Every file is turned into the same long frame first, so both layouts share the checks: missing columns
(naming the file, the column and the columns there are), unparseable dates and non-numeric prices (naming
the line, or the row for parquet), repeated (date, symbol) rows (naming both lines: a pivot would
otherwise crash or silently aggregate them) and dates out of order within a symbol (also what a wrongly
guessed day/month order looks like). The long frame is then pivoted to wide frames and validated by
:func:`qf.bars.validate`. Line numbers assume one line per row (no line breaks inside quoted fields).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self

import numpy as np
import pandas as pd
from pydantic import Field, StringConstraints, field_validator

from qf.bars import FIELDS, Bars
from qf.components import DataSource
from qf.errors import DataError
from qf_plugins.data.common import SourceParams, check_symbols, date_mask, finish, no_bars_error, printable

ColumnKey = Literal["date", "symbol", "open", "high", "low", "close", "volume"]
FieldKey = Literal["open", "high", "low", "close", "volume"]
ColumnName = Annotated[str, StringConstraints(min_length=1)]

# Names recognised without a mapping, compared case-insensitively: the usual spellings of exports.
ALIASES: dict[str, tuple[str, ...]] = {
    "date": ("date", "datetime", "timestamp", "time"),
    "symbol": ("symbol", "ticker"),
    **{f: (f,) for f in FIELDS},
}


class FileParams(SourceParams):
    """Params of the file sources (``csv``, ``parquet``), on top of the common ones.

    - ``path``: a file, a directory or a glob pattern; relative paths resolve against the experiment
      file's folder (see :meth:`FileSource.resolve_paths`) or else the working directory.
    - ``layout``: ``long`` (date and symbol columns), ``per_symbol`` (one file per symbol, named after
      it) or ``auto``: a directory or pattern is per-symbol, a single file is long when it has a symbol
      column and otherwise holds the one symbol its name says.
    - ``columns``: our field names mapped to the file's column names, for files whose headers differ
      from ``date, symbol, open, high, low, close, volume`` (matched case-insensitively; ``datetime``,
      ``timestamp`` and ``time`` also count as date, ``ticker`` as symbol).
    - ``fields``: the price fields to load (default: every one the files have; close is always loaded).
    - ``date_format``: a ``strftime`` format such as ``"%d/%m/%Y"`` when dates are not ISO (or pandas'
      ``"ISO8601"`` / ``"mixed"``); by default the format is inferred from the first date.
    - ``date_unit``: ``s``, ``ms``, ``us`` or ``ns`` for dates stored as integer epoch times. Without it
      the unit is inferred from the size of the numbers (seconds ~1.7e9, milliseconds ~1.7e12, ...);
      integers such as ``20200131`` are read as ``YYYYMMDD`` and ``2020`` as a year.

    Example (YAML)::

        data:
          type: csv
          path: data/prices.csv
          columns: {date: Date, symbol: ticker, close: "Adj Close"}
          date_format: "%d/%m/%Y"
    """

    path: str = Field(min_length=1)
    layout: Literal["auto", "long", "per_symbol"] = "auto"
    columns: dict[ColumnKey, ColumnName] = Field(default_factory=dict)
    fields: list[FieldKey] | None = Field(default=None, min_length=1)
    date_format: str | None = None
    date_unit: Literal["s", "ms", "us", "ns"] | None = None

    @field_validator("fields")
    @classmethod
    def _close_first(cls, value: list[str] | None) -> list[str] | None:
        # close is the field every component relies on, so it is always loaded
        if value is not None and "close" not in value:
            value = ["close", *value]
        return value


@dataclass
class Table:
    """One file as read: its raw columns and how to point at one of its rows in an error."""

    path: Path
    frame: pd.DataFrame  # index = position of the row among the file's data rows
    unit: str  # "line" (csv, header on line 1) or "row" (parquet)

    def where(self, pos: int, with_name: bool = False) -> str:
        number = pos + 2 if self.unit == "line" else pos + 1
        return f"{self.path.name} {self.unit} {number}" if with_name else f"{self.unit} {number}"


@dataclass
class _Part:
    """One file turned into long rows, with each symbol's full date span (before the date filter)."""

    table: Table
    frame: pd.DataFrame  # date, symbol, <fields>, _pos
    spans: dict[str, tuple[pd.Timestamp, pd.Timestamp]]


class FileSource(DataSource):
    """Base of the file sources: finds the files, reads them into one long frame, pivots and validates.

    Subclasses set ``name``, ``suffixes`` and implement :meth:`read_table`.

    Example (YAML, through the csv subclass)::

        data:
          type: csv
          path: data/daily            # AAPL.csv, MSFT.csv, ...
          start: 2015-01-01
    """

    suffixes: ClassVar[tuple[str, ...]] = ()
    loads_offline: ClassVar[bool] = True

    class Params(FileParams):
        """The file params (see :class:`FileParams`)."""

    params: FileParams

    def __init__(self, params: FileParams | dict | None = None, base_dir: str | Path | None = None) -> None:
        super().__init__(params)
        self.base_dir: Path | None = Path(base_dir) if base_dir is not None else None

    def resolve_paths(self, base_dir: str | Path) -> Self:
        """Resolve a relative ``path`` against ``base_dir`` (the experiment file's folder) from now on."""
        self.base_dir = Path(base_dir)
        return self

    # -- reading -----------------------------------------------------------------------------------

    def read_header(self, path: Path) -> list[str]:
        """The column names of ``path`` (read without loading the data where the format allows)."""
        return list(self.read_table(path, None, None).frame.columns)

    def read_table(self, path: Path, usecols: list[str] | None, text_columns: list[str] | None) -> Table:
        """Read ``usecols`` (all when None) of one file; ``text_columns`` must be kept as text."""
        raise NotImplementedError

    # -- finding files -----------------------------------------------------------------------------

    def resolved_path(self) -> Path:
        """``params.path`` with ``~`` expanded and, when relative, joined to ``base_dir`` if one was set."""
        path = Path(os.path.expanduser(self.params.path))
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return path

    def symbol_of(self, path: Path) -> str:
        """The symbol a per-symbol file holds: its name without the (possibly double) extension."""
        name = path.name
        for suffix in sorted(self.suffixes, key=len, reverse=True):
            if name.lower().endswith(suffix):
                return name[: -len(suffix)]
        return path.stem

    def find_files(self) -> tuple[list[Path], bool]:
        """The files to read and whether ``path`` named several (a directory or a glob pattern)."""
        path = self.resolved_path()
        text = str(path)
        if any(ch in text for ch in "*?["):
            files = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
            if not files:
                raise DataError(f"{self.name}: no files match {text}")
            return files, True
        if path.is_dir():
            files = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(self.suffixes)
            )
            if not files:
                raise DataError(f"{self.name}: no {' / '.join('*' + s for s in self.suffixes)} files in {path}")
            return files, True
        if not path.exists():
            relative = not Path(os.path.expanduser(self.params.path)).is_absolute()
            where = f" (relative paths resolve against {self.base_dir})" if relative and self.base_dir else ""
            raise DataError(f"{self.name}: no such file or directory: {path}{where}")
        return [path], False

    # -- loading -----------------------------------------------------------------------------------

    def load(self) -> Bars:
        """Read the files, check them, pivot to wide frames and validate."""
        p = self.params
        files, several = self.find_files()
        label = str(self.resolved_path())
        if p.layout == "auto":
            # a mapped symbol column means long even if it is missing (then the error says so)
            long = not several and (
                "symbol" in p.columns
                or _find_column("symbol", self.read_header(files[0]), p.columns, files[0]) is not None
            )
        else:
            long = p.layout == "long"

        if long:
            parts = self._read_long(files)
            available = sorted({s for part in parts for s in part.spans})
            wanted = check_symbols(label, available, p.symbols)
        else:
            by_symbol: dict[str, Path] = {}
            for f in files:
                sym = self.symbol_of(f)
                if sym in by_symbol:
                    raise DataError(f"{label}: two files for symbol {sym!r}: {by_symbol[sym].name} and {f.name}")
                by_symbol[sym] = f
            wanted = check_symbols(label, sorted(by_symbol), p.symbols)
            parts = [self._read_one(by_symbol[s], symbol=s) for s in wanted]

        frame = self._combine(label, parts, wanted, several)
        fields = [f for f in FIELDS if f in frame.columns]
        wide = {
            f: frame.pivot(index="date", columns="symbol", values=f)
            .reindex(columns=wanted)
            .rename_axis(index=None, columns=None)
            for f in fields
        }
        bars = Bars(**wide, source=label, meta={"path": label, "files": [str(f) for f in files]})
        return finish(bars, p)

    def _read_long(self, files: list[Path]) -> list[_Part]:
        out = []
        for f in files:
            header = self.read_header(f)
            if _find_column("symbol", header, self.params.columns, f) is None:
                _missing_column(f, "symbol", header, self.params.columns)
            out.append(self._read_one(f, symbol=None, header=header))
        return out

    def _read_one(self, path: Path, symbol: str | None, header: list[str] | None = None) -> _Part:
        """Read one file into a long frame ``date, symbol, <fields>, _pos`` (symbol given for per-symbol)."""
        p = self.params
        header = header if header is not None else self.read_header(path)
        want = ["date", *(["symbol"] if symbol is None else []), *(p.fields or FIELDS)]
        cols: dict[str, str] = {}
        for key in want:
            col = _find_column(key, header, p.columns, path)
            if col is not None:
                cols[key] = col
            elif key in ("date", "symbol", "close") or key in p.columns or (p.fields and key in p.fields):
                _missing_column(path, key, header, p.columns)
        text = [cols["date"], *([cols["symbol"]] if "symbol" in cols else [])]
        table = self.read_table(path, list(dict.fromkeys(cols.values())), text)
        raw = table.frame
        # blank lines (csv) are all-missing rows: drop them, keeping the positions for line numbers
        raw = raw.loc[raw.notna().any(axis=1)]

        out = pd.DataFrame(index=raw.index)
        if symbol is None:
            syms = raw[cols["symbol"]]
            missing = syms.isna() | (syms.astype(str).str.strip() == "")
            if missing.any():
                raise DataError(f"{path}: {table.where(int(missing.idxmax()))}: no symbol")
            out["symbol"] = syms.astype(str).str.strip()
        else:
            out["symbol"] = symbol
        if p.symbols is not None and symbol is None:
            # only the symbols asked for are parsed (and so can fail); unknown ones are reported later
            # against every symbol of every file, with a did-you-mean
            known = out["symbol"].isin(p.symbols)
            spans = {s: (pd.NaT, pd.NaT) for s in out["symbol"].loc[~known].unique()}
            out, raw = out.loc[known], raw.loc[known]
        else:
            spans = {}
        out["date"] = _parse_dates(table, raw[cols["date"]], p.date_format, p.date_unit)
        # each symbol's span before the date filter, to say what the data covers if the range is empty
        for sym, (lo, hi) in out.groupby("symbol")["date"].agg(["min", "max"]).iterrows():
            spans[str(sym)] = (lo, hi)
        if symbol is not None and symbol not in spans:
            spans[symbol] = (pd.NaT, pd.NaT)
        keep = date_mask(pd.DatetimeIndex(out["date"]), p.start, p.end)
        out, raw = out.loc[keep], raw.loc[keep]
        for key in FIELDS:
            if key in cols:
                out[key] = _parse_numbers(table, key, cols[key], raw[cols[key]])
        out["_pos"] = out.index
        return _Part(table, out, spans)

    def _combine(self, label: str, parts: list[_Part], wanted: list[str], several: bool) -> pd.DataFrame:
        """Concatenate the per-file frames and run the checks that need rows from all of them."""
        p = self.params
        # every file must give the same fields, or a pivot would leave a whole symbol without open, say
        present = [set(part.frame.columns) & set(FIELDS) for part in parts]
        union = set().union(*present)
        for part, fields in zip(parts, present, strict=True):
            lacking = sorted(union - fields, key=FIELDS.index)
            if lacking:
                other = next(q.table for q, fs in zip(parts, present, strict=True) if lacking[0] in fs)
                raise DataError(
                    f"{part.table.path}: no {lacking[0]!r} column, but {other.path.name} has one; available "
                    f"columns: {', '.join(map(str, part.table.frame.columns))} (map it with columns:, or list "
                    "the fields to load with fields:)"
                )
        frame = pd.concat([part.frame.assign(_file=i) for i, part in enumerate(parts)], ignore_index=True)

        def where(row: pd.Series) -> str:
            return parts[int(row["_file"])].table.where(int(row["_pos"]), with_name=several)

        spans: dict[str, list[pd.Timestamp]] = {}
        for part in parts:
            for sym, span in part.spans.items():
                spans.setdefault(sym, []).extend(d for d in span if not pd.isna(d))
        if frame.empty:
            covered = pd.DatetimeIndex([d for sym in wanted for d in spans.get(sym, [])])
            raise no_bars_error(label, p.start, p.end, covered)
        for sym in wanted:
            if not (frame["symbol"] == sym).any():
                raise no_bars_error(f"{label}: {sym}", p.start, p.end, pd.DatetimeIndex(spans.get(sym, [])))

        dup = frame.duplicated(["date", "symbol"], keep=False)
        if dup.any():
            first = frame.loc[dup].iloc[0]
            same = frame.loc[dup & (frame["date"] == first["date"]) & (frame["symbol"] == first["symbol"])]
            pairs = frame.loc[dup, ["date", "symbol"]].drop_duplicates()
            lines = " and ".join(where(r) for _, r in same.iloc[:2].iterrows())
            raise DataError(
                f"{label}: duplicate rows for {first['symbol']} on {_day(first['date'])} ({lines}); "
                f"{len(pairs)} (date, symbol) pair(s) appear more than once"
            )
        # within a symbol, rows must come in date order (file order; files in name order)
        step = frame.groupby("symbol", sort=False)["date"].diff()
        back = step < pd.Timedelta(0)
        if back.any():
            pos = int(np.argmax(back.to_numpy()))
            row = frame.iloc[pos]
            before = frame.iloc[:pos]
            prev = before.loc[before["symbol"] == row["symbol"]].iloc[-1]
            raise DataError(
                f"{label}: {row['symbol']}: dates are not sorted: {_day(row['date'])} ({where(row)}) comes after "
                f"{_day(prev['date'])} ({where(prev)}); sort the rows by date, or check date_format"
            )
        return frame


def _day(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()


def _find_column(key: str, header: list[str], mapping: dict[str, str], path: Path) -> str | None:
    """The file column for one of our names: the mapped one, else the first alias present (any case)."""
    if key in mapping:
        return mapping[key] if mapping[key] in header else None
    for alias in ALIASES[key]:
        found = [c for c in header if str(c).strip().lower() == alias]
        if len(found) > 1:
            # close and CLOSE: taking either one would be a guess
            names = " and ".join(repr(printable(str(c))) for c in found)
            raise DataError(
                f"{path}: columns {names} both name the {key}; map one with columns: {{{key}: <column name>}}"
            )
        if found:
            return found[0]
    return None


def _missing_column(path: Path, key: str, header: list[str], mapping: dict[str, str]) -> None:
    available = printable(", ".join(map(str, header))) or "none"
    if key in mapping:
        raise DataError(f"{path}: column {mapping[key]!r} (mapped to {key}) not found; available columns: {available}")
    raise DataError(
        f"{path}: no {key!r} column; available columns: {available} (map one with columns: {{{key}: <column name>}})"
    )


# Epoch units by the size of today's timestamps: seconds ~1.7e9, milliseconds ~1.7e12, ... A column is read in
# the largest unit its biggest value fits; values below 1e8 (1973 in seconds) are not taken for epoch times.
_EPOCH_UNITS = (("s", 1e11), ("ms", 1e14), ("us", 1e17), ("ns", float("inf")))
_EPOCH_MIN = 1e8
# Texts pandas would silently read as NaN (and validate would then forward-fill): refused with their line.
_NA_MARKERS = {"n/a", "na", "nan", "-nan", "null", "none", "#n/a", "#na", "<na>", "n.a.", "-", "?"}
# A bar dated later than this after today is a wrong unit or format, not market data.
_FUTURE_SLACK = pd.Timedelta(days=2)


def _integers(values: pd.Series) -> pd.Series | None:
    """The column as int64 when every present value is a whole number (numbers or digit strings), else None."""
    present = values.dropna()
    if present.empty or pd.api.types.is_bool_dtype(present):
        return None
    if pd.api.types.is_numeric_dtype(present):
        nums = present.astype("float64")
    else:
        text = present.astype(str).str.strip()
        if not text.str.fullmatch(r"-?\d+").all():
            return None
        nums = pd.to_numeric(text, errors="coerce")
    if not (np.isfinite(nums) & (nums == np.round(nums))).all() or (nums.abs() >= 2**63).any():
        return None
    return nums.astype("int64")


def _parse_epochs(table: Table, ints: pd.Series, unit: str | None) -> tuple[pd.Series, str]:
    """Integer dates as timestamps: years, YYYYMMDD, or epoch times in the declared or inferred unit."""
    if unit is None:
        for low, high, fmt in ((1800, 2200, "%Y"), (1800_01_01, 2200_12_31, "%Y%m%d")):
            if ints.between(low, high).all():
                return pd.to_datetime(ints.astype(str), format=fmt, errors="coerce"), f"as {fmt}"
        top = int(ints.abs().max())
        unit = next(u for u, limit in _EPOCH_UNITS if top < limit)
        low = ints.loc[ints.abs() < max(_EPOCH_MIN, top / 1000)]
        if len(low):
            pos = int(low.index[0])
            raise DataError(
                f"{table.path}: {table.where(pos)}: date {int(low.iloc[0])} is an integer qf cannot place: not "
                f"YYYYMMDD, and too small for epoch {unit} like the rest of the column; set date_unit (s, ms, us, "
                "ns) or date_format"
            )
    try:
        return pd.to_datetime(ints, unit=unit, errors="coerce"), f"as epoch {unit}"
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
        return pd.Series(pd.NaT, index=ints.index), f"as epoch {unit}"


def _parse_dates(table: Table, values: pd.Series, date_format: str | None, date_unit: str | None = None) -> pd.Series:
    """Parse a date column; a missing, unparseable or future date is an error naming its line or row.

    Integer dates (numbers or digit strings) are epoch times (unit declared or inferred) or YYYYMMDD;
    pandas alone would read 1577836800 as nanoseconds after 1970.
    """
    how = f"with date_format {date_format!r}" if date_format else "(set date_format, e.g. '%d/%m/%Y')"
    ints = None if pd.api.types.is_datetime64_any_dtype(values) or date_format else _integers(values)
    if date_unit is not None and ints is None and not pd.api.types.is_datetime64_any_dtype(values):
        bad_pos = int(values.index[0])
        for pos, v in values.items():
            if pd.notna(v) and not str(v).strip().lstrip("-").isdigit():
                bad_pos = int(pos)
                break
        raise DataError(f"{table.path}: {table.where(bad_pos)}: date {printable(str(values.loc[bad_pos]))!r} is not "
                        f"an integer, but date_unit is {date_unit!r}")
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    elif ints is not None:
        parsed, how = _parse_epochs(table, ints, date_unit)
        parsed = parsed.reindex(values.index)
    else:
        try:
            parsed = pd.to_datetime(values, format=date_format, errors="coerce")
        except (ValueError, TypeError):
            try:  # mixed UTC offsets need utc=True; anything else is reported below as unparseable
                parsed = pd.to_datetime(values, format=date_format, errors="coerce", utc=True)
            except (ValueError, TypeError) as exc:
                raise DataError(f"{table.path}: cannot parse the dates: {printable(str(exc))}") from None
    bad = parsed.isna()
    if bad.any():
        pos = int(bad.idxmax())
        raw = values.loc[pos]
        n = int(bad.sum())
        more = f" ({n} bad dates in all)" if n > 1 else ""
        if pd.isna(raw) or str(raw).strip() == "":
            raise DataError(f"{table.path}: {table.where(pos)}: missing date{more}")
        raise DataError(f"{table.path}: {table.where(pos)}: cannot parse date {str(raw)!r} {how}{more}")
    naive = parsed.dt.tz_convert(None) if getattr(parsed.dt, "tz", None) is not None else parsed
    future = naive > pd.Timestamp.now() + _FUTURE_SLACK
    if future.any():
        pos = int(future.idxmax())
        raise DataError(f"{table.path}: {table.where(pos)}: date {_day(naive.loc[pos])} is in the future "
                        f"(read from {str(values.loc[pos])!r}); check date_format or date_unit")
    return parsed


def _parse_numbers(table: Table, key: str, column: str, values: pd.Series) -> pd.Series:
    """Convert a price or volume column to float; text that is not a number names its line or row."""
    if pd.api.types.is_bool_dtype(values):
        raise DataError(f"{table.path}: column {column!r} ({key}) holds true/false values, not numbers")
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float64")
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        pos = int(bad.idxmax())
        n = int(bad.sum())
        more = f" ({n} such values in this column)" if n > 1 else ""
        text = str(values.loc[pos])
        if text.strip().lower() in _NA_MARKERS:
            # an empty cell is a missing bar that max_gap may fill; a written marker is refused, not filled
            more += "; leave the cell empty for a missing bar (short gaps are filled), or fix the price"
        raise DataError(f"{table.path}: {table.where(pos)}: {key} ({column!r}) is not a number: {text!r}{more}")
    return numbers.astype("float64")
