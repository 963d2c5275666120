"""The ``csv`` data source: OHLCV from local CSV files (plain or compressed), long or one file per symbol."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pandas as pd
from pydantic import Field

from qf.errors import DataError
from qf_plugins.data.common import printable
from qf_plugins.data.files import ALIASES, FileParams, FileSource, Table


class CsvSource(FileSource):
    """OHLCV from CSV files: one long table (date, symbol, fields) or one file per symbol.

    ``path`` is a file, a directory (every ``*.csv``/``*.csv.gz``... in it) or a glob pattern. Relative
    paths resolve against the experiment file's folder. Compression is taken from the extension.
    See :class:`qf_plugins.data.files.FileParams` for ``layout``, ``columns``, ``fields`` and
    ``date_format``; ``delimiter`` is the field separator.

    Example (YAML)::

        data:
          type: csv
          path: data/prices.csv            # Date,ticker,Open,High,Low,Close,Adj Close,Volume
          columns: {date: Date, symbol: ticker, close: "Adj Close"}
          fields: [close, volume]
          symbols: [AAPL, MSFT]
          start: 2018-01-01
    """

    name: ClassVar[str] = "csv"
    suffixes: ClassVar[tuple[str, ...]] = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip", ".csv.zst")

    class Params(FileParams):
        """The file params plus ``delimiter``."""

        delimiter: str = Field(default=",", min_length=1)

    params: Params

    def _read(self, path: Path, **kwargs: object) -> pd.DataFrame:
        try:
            return pd.read_csv(path, sep=self.params.delimiter, **kwargs)  # type: ignore[call-overload]
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: the file is empty") from None
        except pd.errors.ParserError as exc:
            raise DataError(f"{path}: not a readable CSV file: {printable(str(exc).strip())}") from None
        except (UnicodeDecodeError, OSError, EOFError) as exc:
            raise DataError(f"{path}: cannot read the file: {printable(str(exc))}") from None

    def read_header(self, path: Path) -> list[str]:
        names = [str(c) for c in self._read(path, nrows=0).columns]
        # pandas renames a repeated column ("close", "close.1") and the first one would be read without a
        # word: refuse a repeated name that qf could pick (an alias of a field, or a mapped column)
        first = self._read(path, nrows=1, header=None, dtype=str, keep_default_na=False)
        raw = [str(c).strip() for c in first.iloc[0]] if len(first) else []
        wanted = {a for aliases in ALIASES.values() for a in aliases}
        for name in dict.fromkeys(raw):
            count = raw.count(name)
            if count > 1 and (name.lower() in wanted or name in self.params.columns.values()):
                raise DataError(f"{path}: line 1: column {printable(name)!r} appears {count} times in the header; "
                                "rename or remove the extra one")
        return names

    def read_table(self, path: Path, usecols: list[str] | None, text_columns: list[str] | None) -> Table:
        # Dates and symbols stay text: pandas would read ticker 0700 as the number 700. Blank lines are
        # kept (as empty rows, dropped later) so that row positions map to line numbers. All columns are
        # read, not just usecols: with usecols pandas silently drops extra fields, so a decimal comma
        # ("1,5" in a comma-separated file) would load as 1.0 instead of failing.
        dtype = dict.fromkeys(text_columns or [], str)
        # Only empty cells are missing: pandas would also turn "n/a", "NaN", "null"... into NaN, which validate
        # then forward-fills as if the bar did not exist; as text they are refused with their line.
        frame = self._read(path, dtype=dtype, skip_blank_lines=False, keep_default_na=False, na_values=[""])
        if not isinstance(frame.index, pd.RangeIndex):
            # every row had one field more than the header, so pandas took the first column as an index
            raise DataError(
                f"{path}: line 2 has more fields than the header's {len(frame.columns)} columns; "
                "check the delimiter and decimal commas"
            )
        frame.columns = [str(c) for c in frame.columns]
        if usecols is not None:
            frame = frame[usecols]
        return Table(path, frame.reset_index(drop=True), unit="line")
