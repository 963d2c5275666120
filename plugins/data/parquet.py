"""The ``parquet`` data source: OHLCV from local parquet files, long or one file per symbol."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pandas as pd

from qf.errors import DataError
from qf_plugins.data.common import printable
from qf_plugins.data.files import FileParams, FileSource, Table


class ParquetSource(FileSource):
    """OHLCV from parquet files: one long table (date, symbol, fields) or one file per symbol.

    ``path`` is a file, a directory (every ``*.parquet``/``*.pq`` in it) or a glob pattern. A date
    stored as the frame's index (``df.to_parquet`` of a date-indexed frame) is read as a column. Errors
    point at rows (1 = first data row). See :class:`qf_plugins.data.files.FileParams` for the params.

    Example (YAML)::

        data:
          type: parquet
          path: data/bars/*.parquet        # one file per symbol: AAPL.parquet, MSFT.parquet, ...
          columns: {date: timestamp}
          start: 2020-01-01
          max_gap: 5
    """

    name: ClassVar[str] = "parquet"
    suffixes: ClassVar[tuple[str, ...]] = (".parquet", ".pq")

    class Params(FileParams):
        """The file params (see :class:`qf_plugins.data.files.FileParams`)."""

    params: Params

    def read_header(self, path: Path) -> list[str]:
        import pyarrow.parquet as pq  # imported here: only needed when a parquet file is actually read

        # the schema lists index columns too (named ones by name), which read_table turns into columns
        try:
            schema = pq.read_schema(path)
        except Exception as exc:  # pyarrow raises several types for a file that is not parquet
            raise DataError(f"{path}: not a readable parquet file: {printable(str(exc))}") from None
        # an unnamed index is stored as __index_level_0__ and comes back from reset_index() as "index"
        return ["index" if c.startswith("__index_level_") else c for c in schema.names]

    def read_table(self, path: Path, usecols: list[str] | None, text_columns: list[str] | None) -> Table:
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # as above: ArrowInvalid, OSError, ...
            raise DataError(f"{path}: not a readable parquet file: {printable(str(exc))}") from None
        if not isinstance(frame.index, pd.RangeIndex):
            frame = frame.reset_index()
        frame.columns = [str(c) for c in frame.columns]
        if usecols is not None:
            frame = frame[usecols]
        return Table(path, frame.reset_index(drop=True), unit="row")
