"""Real market data that ships inside qf's pip dependencies, so the first run works offline.

Four datasets, listed in :data:`DATASETS` (``qf data show`` prints that table):

- ``sp500_20``: skfolio's 20 S&P 500 constituents, daily adjusted closes 1990-2022 (close only);
- ``sp500_index``: skfolio's S&P 500 index closes over the same dates (close only, symbol ``SP500``);
- ``arch_sp500`` / ``arch_nasdaq``: arch's S&P 500 and NASDAQ Composite index OHLCV 1999-2018
  (symbol ``SP500`` / ``NASDAQ``).

Quirks, checked against the shipped files and kept as they are (nothing is repaired silently):

- arch's NASDAQ file has two trading days with a recorded volume of 0 (2015-05-12 and 2018-01-09)
  although prices moved normally: the volume is simply missing in the source. They are kept as 0,
  which is also how the bars contract marks a bar without volume (a forward-filled gap bar), and they
  are listed in ``DATASETS[...]["quirks"]`` and in ``bars.meta["quirks"]``.
- arch's files have no bar with high < low or open/close outside [low, high], no missing value and no
  non-positive price (the tests check this). Their "Adj Close" equals "Close" (a price index pays no
  dividends), so it is not used.
- skfolio's closes are adjusted for splits and dividends and rounded to 3 decimals, so early prices of
  today's large caps are coarse (AAPL starts at 0.264).
- Both packages describe these files as example data: stale snapshots for research and tests, not
  authoritative market data.
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd

from qf.bars import Bars
from qf.components import DataSource
from qf.errors import QfError
from qf_plugins.data.common import SourceParams, finish

DatasetName = Literal["sp500_20", "sp500_index", "arch_sp500", "arch_nasdaq"]

_OHLCV = ["open", "high", "low", "close", "volume"]
# fmt: off
_SP500_20_SYMBOLS = [
    "AAPL", "AMD", "BAC", "BBY", "CVX", "GE", "HD", "JNJ", "JPM", "KO",
    "LLY", "MRK", "MSFT", "PEP", "PFE", "PG", "RRC", "UNH", "WMT", "XOM",
]
# fmt: on

DATASETS: dict[str, dict[str, Any]] = {
    "sp500_20": {
        "description": "20 S&P 500 constituents, daily closes adjusted for splits and dividends",
        "fields": ["close"],
        "symbols": _SP500_20_SYMBOLS,
        "start": "1990-01-02",
        "end": "2022-12-28",
        "rows": 8313,
        "frequency": "daily",
        "adjusted": True,
        "loader": "skfolio.datasets.load_sp500_dataset()",
        "package": "skfolio",
        "licence": "BSD-3-Clause",
        "quirks": [
            "close only: signals and rules that need open/high/low/volume cannot run on it",
            "prices rounded to 3 decimals (early prices of today's large caps are coarse)",
            "survivorship bias: today's constituents, chosen after the fact",
        ],
    },
    "sp500_index": {
        "description": "S&P 500 index, daily closes (a benchmark for sp500_20)",
        "fields": ["close"],
        "symbols": ["SP500"],
        "start": "1990-01-02",
        "end": "2022-12-28",
        "rows": 8313,
        "frequency": "daily",
        "adjusted": False,
        "loader": "skfolio.datasets.load_sp500_index()",
        "package": "skfolio",
        "licence": "BSD-3-Clause",
        "quirks": ["close only", "a price index: dividends are not included"],
    },
    "arch_sp500": {
        "description": "S&P 500 index, daily OHLCV",
        "fields": list(_OHLCV),
        "symbols": ["SP500"],
        "start": "1999-01-04",
        "end": "2018-12-31",
        "rows": 5031,
        "frequency": "daily",
        "adjusted": False,
        "loader": "arch.data.sp500.load()",
        "package": "arch",
        "licence": "NCSA",
        "quirks": ["a price index: dividends are not included; 'Adj Close' equals 'Close' and is not used"],
    },
    "arch_nasdaq": {
        "description": "NASDAQ Composite index, daily OHLCV",
        "fields": list(_OHLCV),
        "symbols": ["NASDAQ"],
        "start": "1999-01-04",
        "end": "2018-12-31",
        "rows": 5031,
        "frequency": "daily",
        "adjusted": False,
        "loader": "arch.data.nasdaq.load()",
        "package": "arch",
        "licence": "NCSA",
        "quirks": [
            "a price index: dividends are not included; 'Adj Close' equals 'Close' and is not used",
            "volume recorded as 0 on 2015-05-12 and 2018-01-09 (missing in the source; kept as 0)",
        ],
    },
}
"""What ``qf data show`` prints: fields, symbols, date range, rows, loader, licence and known quirks."""


def _package_file(package: str, *parts: str) -> Path:
    """A data file shipped inside an installed package, located without importing the package.

    skfolio and arch each take seconds to import (scikit-learn, statsmodels, numba ...), far longer than
    reading their csv.gz, and this source needs nothing from them but the files.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise QfError(f"the sample data set needs the {package} package, which is not installed: pip install {package}")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def _skfolio_prices(filename: str) -> pd.DataFrame:
    # as skfolio.datasets._base.load_gzip_compressed_csv_data reads it (a test holds the two equal)
    with gzip.open(_package_file("skfolio", "datasets", "data", filename), mode="rt", encoding="utf-8") as f:
        df = pd.read_csv(f, sep=",", index_col=0)
    df.index = pd.to_datetime(df.index, format="%Y-%m-%d")
    return df


def _arch_ohlcv(folder: str, filename: str) -> pd.DataFrame:
    # as arch.data.utility.load_file reads it (a test holds the two equal)
    data = pd.read_csv(_package_file("arch", "data", folder, filename))
    data["Date"] = pd.to_datetime(data["Date"])
    data = data.set_index("Date")
    for col in data:
        data[col] = pd.to_numeric(data[col], errors="coerce")
    return data


@cache
def _load_frames(dataset: str) -> dict[str, pd.DataFrame]:
    """The dataset as wide frames per field (cached: parsing the bundled csv.gz takes a fraction of a second).

    Callers must not mutate the result; :meth:`SampleSource.load` copies before use.
    """
    if dataset == "sp500_20":
        return {"close": _skfolio_prices("sp500_dataset.csv.gz")}
    if dataset == "sp500_index":
        return {"close": _skfolio_prices("sp500_index.csv.gz")}
    if dataset in ("arch_sp500", "arch_nasdaq"):
        raw = _arch_ohlcv(*(("sp500", "sp500.csv.gz") if dataset == "arch_sp500" else ("nasdaq", "nasdaq.csv.gz")))
        (symbol,) = DATASETS[dataset]["symbols"]
        return {f: raw[[f.capitalize()]].set_axis([symbol], axis=1).astype("float64") for f in _OHLCV}
    raise KeyError(dataset)  # unreachable: Params.dataset is a Literal of the keys above


class SampleSource(DataSource):
    """Real daily market data bundled with skfolio and arch: no network, no files to prepare.

    ``dataset`` is one of ``sp500_20`` (20 US large caps, adjusted closes 1990-2022), ``sp500_index``
    (S&P 500 closes, same dates), ``arch_sp500`` and ``arch_nasdaq`` (index OHLCV 1999-2018); see
    :data:`DATASETS` or ``qf data show`` for fields, symbols, licences and quirks.

    Example (YAML)::

        data:
          type: sample
          dataset: sp500_20
          symbols: [AAPL, MSFT, JPM, XOM]
          start: 2010-01-01
          end: 2019-12-31
    """

    name: ClassVar[str] = "sample"
    loads_offline: ClassVar[bool] = True

    class Params(SourceParams):
        """``dataset`` plus the common params (``symbols``, ``start``, ``end``, ``max_gap``)."""

        dataset: DatasetName = "sp500_20"

    params: Params

    def load(self) -> Bars:
        """Return the dataset's bars, selected, sliced and validated."""
        dataset = self.params.dataset
        info = DATASETS[dataset]
        # copies: the cached frames are shared by every load in this process
        frames = {
            name: frame.rename_axis(index=None, columns=None).copy() for name, frame in _load_frames(dataset).items()
        }
        meta = {
            "dataset": dataset,
            "licence": info["licence"],
            "loader": info["loader"],
            "quirks": list(info["quirks"]),
        }
        bars = Bars(**frames, source=f"sample:{dataset}", meta=meta)
        return finish(bars, self.params)
