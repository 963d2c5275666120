"""The ``yfinance`` data source: daily OHLCV downloaded from Yahoo Finance, cached locally as parquet.

The download is one ``yfinance.download(..., group_by="ticker")`` call; its result (columns
``(Ticker, Price)``) is turned into wide frames and written to the cache in long format, keyed by the
symbols, the date range and the adjustment, so a second run with the same request reads the cache and
needs no network. ``refresh: true`` downloads again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, ClassVar, Self

import pandas as pd

from qf.bars import FIELDS, Bars
from qf.components import DataSource
from qf.errors import DataError
from qf_plugins.data.common import TickerParams, finish

# yfinance's names of the fields we use; with auto_adjust=False it also returns "Adj Close" (ignored)
_YF_FIELDS = {"open": "Open", "high": "High", "low": "Low", "close": "Close", "volume": "Volume"}
_CACHE_VERSION = 1  # bump when the cache file layout changes, so old files are not misread


class YFinanceSource(DataSource):
    """Daily OHLCV from Yahoo Finance through yfinance, with a local parquet cache.

    ``symbols`` is required (Yahoo tickers, upper-cased as Yahoo does: ``AAPL``, ``BRK-B``, ``^GSPC``).
    ``start``/``end`` are inclusive; without ``start`` the whole history is fetched, without ``end`` up to
    today (such a request is cached per day). ``auto_adjust: true`` gives prices adjusted for splits and
    dividends; ``false`` gives Yahoo's unadjusted OHLC. Downloads are cached in ``cache_dir``;
    ``refresh: true`` ignores the cache and downloads again. A relative ``cache_dir`` resolves against
    the experiment file's folder once :meth:`resolve_paths` is called, else the working directory.

    Example (YAML)::

        data:
          type: yfinance
          symbols: [SPY, TLT, GLD]
          start: 2010-01-01
          end: 2023-12-31
          auto_adjust: true
          cache_dir: ~/.cache/qf/yfinance
          refresh: false
    """

    name: ClassVar[str] = "yfinance"

    class Params(TickerParams):
        """The common params (``symbols`` required, upper-cased) plus ``auto_adjust``, ``cache_dir`` and ``refresh``."""

        auto_adjust: bool = True
        cache_dir: str = "~/.cache/qf/yfinance"
        refresh: bool = False

    params: Params

    def __init__(self, params: Params | dict | None = None, base_dir: str | Path | None = None) -> None:
        super().__init__(params)
        self.base_dir: Path | None = Path(base_dir) if base_dir is not None else None

    def resolve_paths(self, base_dir: str | Path) -> Self:
        """Resolve a relative ``cache_dir`` against ``base_dir`` (the experiment file's folder)."""
        self.base_dir = Path(base_dir)
        return self

    # -- cache ---------------------------------------------------------------------------------------

    def _end(self) -> dt.date:
        # an open end means "up to today": part of the cache key, so such a request is cached per day
        return self.params.end or dt.date.today()

    def cache_path(self) -> Path:
        """The cache file for this request: symbols (in any order), range and adjustment."""
        p = self.params
        key = {
            "v": _CACHE_VERSION,
            "symbols": sorted(p.symbols),
            "start": str(p.start) if p.start else None,
            "end": str(self._end()),
            "auto_adjust": p.auto_adjust,
            "interval": "1d",
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        # a readable prefix helps someone looking in the folder; the digest makes the name unique
        readable = re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(sorted(p.symbols)))[:40]
        folder = Path(os.path.expanduser(p.cache_dir))
        if not folder.is_absolute() and self.base_dir is not None:
            folder = self.base_dir / folder
        return folder / f"{readable}_{digest}.parquet"

    def _read_cache(self, path: Path) -> dict[str, pd.DataFrame] | None:
        try:
            long = pd.read_parquet(path)
        except Exception as exc:  # a truncated or foreign file: download again rather than fail
            warnings.warn(f"yfinance: ignoring unreadable cache file {path}: {exc}", stacklevel=3)
            return None
        frames = _from_long(long)
        if frames is None or set(frames["close"].columns) != set(self.params.symbols):
            warnings.warn(f"yfinance: ignoring cache file {path}: it does not hold the expected data", stacklevel=3)
            return None
        return frames

    def _write_cache(self, path: Path, frames: dict[str, pd.DataFrame]) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            _to_long(frames).to_parquet(tmp, index=False)
            os.replace(tmp, path)  # atomic: a reader never sees half a file
        except OSError as exc:  # an unwritable cache must not cost the user the data just downloaded
            warnings.warn(f"yfinance: could not write the cache file {path}: {exc}", stacklevel=3)

    # -- download ------------------------------------------------------------------------------------

    def _download(self) -> dict[str, pd.DataFrame]:
        import yfinance  # imported here: slow to import, and only this source needs it

        p = self.params
        end = self._end()
        kwargs: dict[str, Any] = {
            "start": str(p.start) if p.start else None,
            # yfinance's end is exclusive; ours is an inclusive day
            "end": str(end + dt.timedelta(days=1)),
            "auto_adjust": p.auto_adjust,
            "group_by": "ticker",
            "progress": False,
            "threads": False,
            "multi_level_index": True,
        }
        if p.start is None:
            kwargs["period"] = "max"
        try:
            raw = yfinance.download(list(p.symbols), **kwargs)
        except Exception as exc:  # network and HTTP errors come in many types; all mean "no data"
            raise DataError(
                f"yfinance: download of {', '.join(p.symbols)} failed: {type(exc).__name__}: {exc}"
            ) from None
        span = f"from {p.start or 'the first day'} to {end}"
        if raw is None or raw.empty:
            raise DataError(
                f"yfinance: no data for {', '.join(p.symbols)} {span} "
                "(no network, misspelled tickers, or no trading days in the range?)"
            )
        return _to_frames(raw, list(p.symbols), span)

    def load(self) -> Bars:
        """Read the cache or download, then select, slice and validate."""
        path = self.cache_path()
        frames = None if self.params.refresh or not path.is_file() else self._read_cache(path)
        hit = frames is not None
        if frames is None:
            frames = self._download()
            self._write_cache(path, frames)
        meta = {"cache": str(path), "cache_hit": hit, "auto_adjust": self.params.auto_adjust}
        return finish(Bars(**frames, source=self.name, meta=meta), self.params)


def _to_frames(raw: pd.DataFrame, symbols: list[str], span: str) -> dict[str, pd.DataFrame]:
    """yfinance's ``group_by="ticker"`` frame -> our wide frames; a ticker without data is an error."""
    if not isinstance(raw.columns, pd.MultiIndex):
        # single-level columns: one ticker downloaded without multi_level_index
        if len(symbols) != 1:
            raise DataError(f"yfinance: unexpected result layout (columns {list(raw.columns)[:6]})")
        raw = pd.concat({symbols[0]: raw}, axis=1)
    names = list(raw.columns.names)
    # group_by="ticker" puts the ticker first; the level names say so in yfinance >= 0.2.48
    level = names.index("Ticker") if "Ticker" in names else 0
    if level != 0:
        raw = raw.swaplevel(0, 1, axis=1)
    tickers = set(raw.columns.get_level_values(0))
    got = [s for s in symbols if s in tickers and "Close" in raw[s] and raw[s]["Close"].notna().any()]
    missing = [s for s in symbols if s not in got]
    if missing:
        # yfinance does not raise for a bad ticker: it logs and returns an all-NaN block (or none)
        have = f"; got data for {', '.join(got)}" if got else ""
        raise DataError(f"yfinance: no data for {', '.join(missing)} {span} (misspelled or delisted ticker?){have}")
    frames: dict[str, pd.DataFrame] = {}
    for field, yf_name in _YF_FIELDS.items():
        lacking = [s for s in symbols if yf_name not in raw[s]]
        if lacking:
            raise DataError(f"yfinance: the download has no {yf_name!r} column for {', '.join(lacking)}")
        frame = pd.DataFrame({s: raw[s][yf_name] for s in symbols}).astype("float64")
        frames[field] = frame.rename_axis(index=None, columns=None)
    return frames


def _to_long(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Wide frames -> one long table ``date, symbol, open, ..., volume`` (the cache file's layout)."""
    parts = []
    for sym in frames["close"].columns:
        part = pd.DataFrame({f: frames[f][sym] for f in FIELDS if f in frames})
        part = part.loc[part["close"].notna()].rename_axis("date").reset_index()
        part.insert(1, "symbol", str(sym))
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _from_long(long: pd.DataFrame) -> dict[str, pd.DataFrame] | None:
    """The inverse of :func:`_to_long`; None when the table is not laid out that way."""
    if not {"date", "symbol", "close"} <= set(long.columns):
        return None
    return {
        f: long.pivot(index="date", columns="symbol", values=f).rename_axis(index=None, columns=None)
        for f in FIELDS
        if f in long.columns
    }
