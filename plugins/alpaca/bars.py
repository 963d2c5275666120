"""Historical bars from Alpaca as wide pandas frames (one frame per field, one column per symbol).

The SDK's ``get_stock_bars`` crashes on ``"bars": null`` (which the real API has returned,
alpaca-trade-api #478) and its ``Bar`` model requires ``n``/``vw``. So this loader pages
``GET /v2/stocks/bars`` itself through the client's own REST plumbing (auth, timeout, retries,
rate limiter) and reads each page defensively.

Example::

    frames = load_alpaca_bars(["AAPL", "MSFT"], "2024-01-01", "2024-03-31")
    closes = frames["close"]          # index: tz-naive dates, columns: AAPL, MSFT
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any, Literal

import pandas as pd
from alpaca.common.exceptions import APIError
from alpaca.data.historical import StockHistoricalDataClient

from qf_plugins.alpaca.client import AlpacaConfig, build_data_client, build_rate_limiter

log = logging.getLogger(__name__)

FIELDS = ("open", "high", "low", "close", "volume")
_KEYS = {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"}
_TIMEFRAME = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
_MAX_PAGES = 10_000


class AlpacaDataError(RuntimeError):
    """Base class for bar-loading failures."""


class AlpacaNoDataError(AlpacaDataError):
    """The API returned no bars at all (``bars: {}`` or ``bars: null``) for the request."""


class AlpacaDataPermissionError(AlpacaDataError):
    """403: the subscription does not cover the requested feed (typically SIP on a free plan)."""


def _utc(value: str | date | datetime | pd.Timestamp, *, end: bool) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    date_only = (isinstance(value, date) and not isinstance(value, datetime)) or (
        isinstance(value, str) and len(value.strip()) <= 10)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    ts = ts.tz_convert("UTC")
    if end and date_only:
        # A bare end date means "through that day": daily bars are stamped at midnight New York
        # (04:00/05:00 UTC), so stop just before the next UTC midnight.
        ts = ts + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
    return ts


def _rfc3339(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _default_client() -> StockHistoricalDataClient:
    cfg = AlpacaConfig.from_env()
    return build_data_client(cfg, build_rate_limiter(cfg))


def _status(err: APIError) -> int | None:
    try:
        return err.status_code
    except Exception:  # APIError's properties assume a well-formed error
        return None


def fetch_bar_pages(
    client: StockHistoricalDataClient,
    params: Mapping[str, Any],
) -> tuple[dict[str, list[dict[str, Any]]], int, int]:
    """Follow ``next_page_token`` to the end. Returns (bars by symbol, pages, null pages)."""
    out: dict[str, list[dict[str, Any]]] = {}
    query = dict(params)
    pages = nulls = 0
    seen_tokens: set[str] = set()
    while True:
        response = client.get("/stocks/bars", query)
        pages += 1
        if not isinstance(response, Mapping):
            raise AlpacaDataError(f"unexpected bars response type {type(response).__name__}")
        bars = response.get("bars")
        if bars is None:
            nulls += 1
            log.warning("Alpaca returned \"bars\": null for %s; treating the page as empty", query.get("symbols"))
        elif isinstance(bars, Mapping):
            for symbol, rows in bars.items():
                if isinstance(rows, list):
                    out.setdefault(str(symbol), []).extend(r for r in rows if isinstance(r, Mapping))
        else:
            raise AlpacaDataError(f"unexpected \"bars\" value of type {type(bars).__name__}")
        token = response.get("next_page_token")
        if not token:
            return out, pages, nulls
        if token in seen_tokens or pages >= _MAX_PAGES:
            raise AlpacaDataError("bars paging does not terminate (repeated next_page_token)")
        seen_tokens.add(token)
        query["page_token"] = token


def load_alpaca_bars(
    symbols: Iterable[str] | str,
    start: str | date | datetime | pd.Timestamp,
    end: str | date | datetime | pd.Timestamp,
    timeframe: str = "1Day",
    feed: str = "iex",
    client: StockHistoricalDataClient | None = None,
    *,
    adjustment: str = "all",
    on_empty: Literal["raise", "empty"] = "raise",
    intraday_tz: str = "America/New_York",
) -> dict[str, pd.DataFrame]:
    """Load bars into ``{"open"|"high"|"low"|"close"|"volume": DataFrame}``.

    Args:
        symbols: one ticker or several.
        start, end: dates or timestamps (naive = UTC); a bare ``end`` date includes that day.
        timeframe: Alpaca timeframe string, e.g. ``"1Day"``, ``"1Hour"``, ``"15Min"``.
        feed: ``"iex"`` (free), ``"sip"`` (paid), ``"delayed_sip"``, ...
        client: a ``StockHistoricalDataClient``; default builds one from ``ALPACA_*`` env vars.
        adjustment: ``"raw"``, ``"split"``, ``"dividend"`` or ``"all"``.
        on_empty: ``"raise"`` :class:`AlpacaNoDataError` when nothing came back, or ``"empty"``
            to return empty frames.
        intraday_tz: intraday indexes are converted to this zone, then made tz-naive.

    Returns:
        Wide frames sharing one sorted index: for daily and longer bars a tz-naive, normalized
        ``DatetimeIndex`` of New York session dates; columns in the order of ``symbols``
        (symbols without data are all-NaN columns). Values are float64.

    Raises:
        AlpacaDataPermissionError: 403, e.g. ``feed="sip"`` without a subscription.
        AlpacaNoDataError: no bars at all and ``on_empty="raise"``.
    """
    names = [symbols] if isinstance(symbols, str) else list(symbols)
    names = [s.strip().upper() for s in names if s and s.strip()]
    if not names:
        raise ValueError("no symbols given")
    timeframe = str(timeframe)
    match = _TIMEFRAME.match(timeframe)
    if match is None:
        raise ValueError(f"invalid timeframe {timeframe!r}; use e.g. '1Day', '1Hour', '15Min'")
    daily = match.group(2) in ("Day", "D", "Week", "W", "Month", "M")
    start_ts, end_ts = _utc(start, end=False), _utc(end, end=True)
    if start_ts > end_ts:
        raise ValueError(f"start {start_ts} is after end {end_ts}")
    client = client or _default_client()
    params: dict[str, Any] = {
        "symbols": ",".join(dict.fromkeys(names)), "timeframe": timeframe, "start": _rfc3339(start_ts),
        "end": _rfc3339(end_ts), "feed": feed, "adjustment": adjustment, "limit": 10_000, "sort": "asc",
    }
    try:
        raw, pages, nulls = fetch_bar_pages(client, params)
    except APIError as err:
        status = _status(err)
        if status == 403:
            raise AlpacaDataPermissionError(
                f"Alpaca refused bars for feed={feed!r} (HTTP 403: {str(err)[:200]}); "
                "a free subscription needs feed='iex'") from None
        raise
    log.debug("loaded bars for %d symbols in %d pages", len(raw), pages)

    frames_by_symbol: dict[str, pd.DataFrame] = {}
    for symbol, rows in raw.items():
        if not rows:
            continue
        index = pd.to_datetime([r.get("t") for r in rows], utc=True, errors="coerce")
        data = {name: pd.to_numeric(pd.Series([r.get(key) for r in rows], dtype="object"), errors="coerce")
                .to_numpy(dtype="float64") for name, key in _KEYS.items()}
        frame = pd.DataFrame(data, index=index)
        frame = frame[~frame.index.isna()]
        if daily:
            frame.index = frame.index.tz_convert("America/New_York").tz_localize(None).normalize()
        else:
            frame.index = frame.index.tz_convert(intraday_tz).tz_localize(None)
        frame = frame[~frame.index.duplicated(keep="last")].sort_index()
        frames_by_symbol[symbol.upper()] = frame

    if not frames_by_symbol:
        why = "\"bars\": null" if nulls else "no bars"
        message = (f"Alpaca returned {why} for {names} {timeframe} feed={feed!r} "
                   f"between {_rfc3339(start_ts)} and {_rfc3339(end_ts)}")
        if on_empty == "raise":
            raise AlpacaNoDataError(message)
        log.warning("%s", message)
        empty = pd.DatetimeIndex([], dtype="datetime64[ns]")
        return {name: pd.DataFrame(index=empty, columns=names, dtype="float64") for name in FIELDS}

    index = pd.DatetimeIndex(sorted(set().union(*(f.index for f in frames_by_symbol.values())))).as_unit("ns")
    out: dict[str, pd.DataFrame] = {}
    for name in FIELDS:
        wide = pd.DataFrame(index=index, columns=names, dtype="float64")
        for symbol, frame in frames_by_symbol.items():
            if symbol in wide.columns:
                wide[symbol] = frame[name].reindex(index)
        out[name] = wide
    missing = [s for s in names if s not in frames_by_symbol]
    if missing:
        log.warning("no Alpaca bars for %s", missing)
    return out
