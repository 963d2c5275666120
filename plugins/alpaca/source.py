"""The ``alpaca`` data source: Alpaca market-data bars for backtests, and the live feed of ``qf paper``.

:meth:`AlpacaSource.load` wraps :func:`qf_plugins.alpaca.bars.load_alpaca_bars` and ends with the same
selection, date range and :func:`qf.bars.validate` as every built-in source. :meth:`AlpacaSource.live_source`
gives a paper session its :class:`AlpacaLiveSource`: a warm-up history, then each new *completed*
daily bar (a session's bar counts once its close, from Alpaca's trading calendar, is ``bar_delay``
seconds past, by the broker's clock), and the calendar the rebalance schedule needs.

alpaca-py is imported only when bars are loaded, so registering the source costs nothing; keys come
from the environment only.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from qf.bars import Bars
from qf.components import DataSource
from qf.config.schema import RebalanceSpec
from qf.errors import DataError, QfError
from qf.paper import schedule
from qf.paper.feed import LiveBar
from qf_plugins.alpaca.env import config_from_env
from qf_plugins.data.common import TickerParams, finish

log = logging.getLogger(__name__)

NEW_YORK = "America/New_York"


class AlpacaSource(DataSource):
    """Daily (or intraday, for backtests) bars from Alpaca's market-data API.

    ``symbols`` is required. ``start``/``end`` are inclusive dates; without ``end`` the bars run up to the
    last completed day, without ``start`` five years back. ``feed``: ``iex`` works on a free account,
    ``sip`` needs a subscription. ``adjustment``: ``all`` adjusts for splits and dividends. For
    ``qf paper``: ``poll_interval`` is how often the live feed asks for a new bar and ``bar_delay`` how
    long after the close a daily bar is taken as final. Keys: ``ALPACA_API_KEY``/``ALPACA_SECRET_KEY`` in
    the environment; ``data_url``/``trading_url`` default to ``ALPACA_DATA_URL``/``ALPACA_TRADING_URL``.

    Example (YAML)::

        data:
          type: alpaca
          symbols: [AAPL, MSFT, JPM]
          start: 2021-01-01
          timeframe: 1Day
          feed: iex
          adjustment: all
          poll_interval: 60
    """

    name: ClassVar[str] = "alpaca"

    class Params(TickerParams):
        """The common params (``symbols`` required, upper-cased) plus Alpaca's request options and the live
        feed's timing.

        Example: ``AlpacaSource.Params(symbols=["AAPL"], start="2021-01-01", feed="iex")``.
        """

        timeframe: str = Field("1Day", pattern=r"^\d+(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
        feed: Literal["iex", "sip", "delayed_sip", "boats", "overnight", "otc"] = "iex"
        adjustment: Literal["raw", "split", "dividend", "all"] = "all"
        poll_interval: float = Field(60.0, gt=0, description="seconds between polls for a new live bar")
        bar_delay: float = Field(900.0, ge=0, description="seconds after the close before a daily bar is final")
        data_url: str | None = None
        trading_url: str | None = None

        @field_validator("data_url", "trading_url")
        @classmethod
        def _no_v2(cls, value: str | None) -> str | None:
            if value is not None and (value.endswith("/") or value.endswith("/v2")):
                raise ValueError("must not end with '/' or '/v2' (alpaca-py adds /v2)")
            return value

    params: Params

    def _config(self) -> Any:
        return config_from_env(data_url=self.params.data_url, trading_url=self.params.trading_url)

    def fetch(self, start: dt.date | pd.Timestamp, end: dt.date | pd.Timestamp, client: Any = None,
              on_empty: Literal["raise", "empty"] = "raise") -> dict[str, pd.DataFrame]:
        """Raw wide frames for ``[start, end]`` through :func:`load_alpaca_bars`, errors as :class:`DataError`."""
        from alpaca.common.exceptions import APIError
        from requests import RequestException

        from qf_plugins.alpaca.bars import AlpacaDataError, load_alpaca_bars  # lazy: alpaca
        from qf_plugins.alpaca.client import build_data_client, build_rate_limiter  # lazy: alpaca

        p = self.params
        if client is None:
            cfg = self._config()
            client = build_data_client(cfg, build_rate_limiter(cfg))
        try:
            return load_alpaca_bars(p.symbols, start, end, p.timeframe, p.feed, client, adjustment=p.adjustment,
                                    on_empty=on_empty)
        except AlpacaDataError as exc:
            raise DataError(f"alpaca: {exc}") from None
        except (APIError, RequestException) as exc:
            raise DataError(f"alpaca: bars request failed: {type(exc).__name__}: {str(exc)[:200]}") from None

    def load(self) -> Bars:
        """Bars for the configured range, selected, sliced and validated like every built-in source."""
        p = self.params
        end = p.end or (pd.Timestamp.now(NEW_YORK).date() - dt.timedelta(days=1))
        start = p.start or (end - dt.timedelta(days=5 * 365))
        frames = self.fetch(start, end)
        return finish(Bars(**frames, source=f"alpaca:{p.feed}"), p)

    def live_source(self, min_history: int | None = 1, **clients: Any) -> AlpacaLiveSource:
        """The live feed of a paper session; ``min_history`` bars of history are loaded (at least), or with
        ``None`` (a path-dependent pipeline) everything from ``start`` (default: five years back, as
        :meth:`load`)."""
        if self.params.timeframe not in ("1Day", "1D"):
            raise QfError(f"data.params.timeframe: a paper session trades daily bars (1Day), got "
                          f"{self.params.timeframe!r}")
        return AlpacaLiveSource(self, min_history, **clients)


@dataclass(frozen=True)
class Session:
    """One trading day of Alpaca's calendar (bar date, and its close as a UTC timestamp).

    Example: ``Session(pd.Timestamp("2024-03-04"), pd.Timestamp("2024-03-04 21:00", tz="UTC"))``.
    """

    date: pd.Timestamp
    close: pd.Timestamp


class AlpacaLiveSource:
    """A :class:`qf.paper.feed.BarSource` over Alpaca: warm-up history, then each completed daily bar.

    Time is the broker's (``GET /v2/clock``), so an emulator's manual clock drives it. The latest
    completed bar at start-up is handed out as the first *live* bar, so a new session decides on it
    (and a restarted one completes or skips it, see :class:`qf.engines.backtrader.paper.LivePaperStrategy`).

    Example::

        live = AlpacaSource({"symbols": ["AAPL"]}).live_source(min_history=60)
        history = live.history()       # bars up to the day before the latest completed one
        live.poll(1.0)                 # [LiveBar(latest completed day)], then [] until the next close
    """

    def __init__(self, component: AlpacaSource, min_history: int | None, *, data_client: Any = None,
                 trading_client: Any = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.component = component
        self.params = component.params
        # None: the whole history (from data.params.start, or five years back)
        self.min_history = None if min_history is None else max(int(min_history), 1)
        if data_client is None or trading_client is None:
            from qf_plugins.alpaca.client import (  # lazy: alpaca
                build_data_client,
                build_rate_limiter,
                build_trading_client,
            )

            cfg = component._config()
            limiter = build_rate_limiter(cfg)
            data_client = data_client or build_data_client(cfg, limiter)
            trading_client = trading_client or build_trading_client(cfg, limiter)
        self.data = data_client
        self.trading = trading_client
        self._sleep = sleep
        self._sessions: dict[pd.Timestamp, Session] = {}
        self._calendar_span: tuple[dt.date, dt.date] | None = None
        self._pending: list[Any] = []
        self._last: pd.Timestamp | None = None
        self._next_poll = 0.0
        self._fields: tuple[str, ...] = ()
        self._closed = False

    def __repr__(self) -> str:
        return f"AlpacaLiveSource(symbols={self.params.symbols}, feed={self.params.feed!r})"

    # -- the broker's clock and calendar ---------------------------------------------------------

    def now(self) -> pd.Timestamp:
        """The broker's time (UTC)."""
        from alpaca.common.exceptions import APIError
        from requests import RequestException

        try:
            clock = self.trading.get_clock()
        except (APIError, RequestException) as exc:
            raise DataError(f"alpaca: clock request failed: {type(exc).__name__}") from None
        raw = clock.get("timestamp") if isinstance(clock, Mapping) else getattr(clock, "timestamp", None)
        ts = pd.Timestamp(raw)
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")

    def sessions(self, start: dt.date, end: dt.date) -> list[Session]:
        """Trading sessions in ``[start, end]`` from Alpaca's calendar (cached)."""
        span = self._calendar_span
        if span is None or start < span[0] or end > span[1]:
            from alpaca.common.exceptions import APIError
            from alpaca.trading.requests import GetCalendarRequest
            from requests import RequestException

            lo = min(start, span[0]) if span else start
            hi = max(end, span[1]) if span else end
            try:
                days = self.trading.get_calendar(GetCalendarRequest(start=lo, end=hi)) or []
            except (APIError, RequestException) as exc:
                raise DataError(f"alpaca: calendar request failed: {type(exc).__name__}") from None
            for day in days:
                entry = day if isinstance(day, Mapping) else day.model_dump(mode="json")
                date = pd.Timestamp(str(entry["date"])[:10])
                close_text = str(entry.get("close") or "16:00")[:5]
                close = pd.Timestamp(f"{date:%Y-%m-%d} {close_text}").tz_localize(NEW_YORK).tz_convert("UTC")
                self._sessions[date] = Session(date, close)
            self._calendar_span = (lo, hi)
        return [s for d, s in sorted(self._sessions.items()) if start <= d.date() <= end]

    def latest_complete(self, now: pd.Timestamp) -> pd.Timestamp | None:
        """The last session whose bar is final at ``now`` (its close plus ``bar_delay`` has passed)."""
        today = now.tz_convert(NEW_YORK).date()
        delay = pd.Timedelta(seconds=self.params.bar_delay)
        done = [s.date for s in self.sessions(today - dt.timedelta(days=14), today) if s.close + delay <= now]
        return done[-1] if done else None

    def next_session(self, t: pd.Timestamp) -> pd.Timestamp | None:
        """The calendar's first session after ``t``."""
        after = t.date() + dt.timedelta(days=1)
        later = self.sessions(after, after + dt.timedelta(days=14))
        return later[0].date if later else None

    def is_decision(self, t: pd.Timestamp, spec: RebalanceSpec, anchor: pd.Timestamp) -> bool:
        """Whether ``t`` is a rebalance decision, from Alpaca's trading calendar."""
        ordinal = 0
        if spec.every is not None:
            if t < anchor:
                return False
            ordinal = len(self.sessions(anchor.date(), t.date())) - 1
        nxt = self.next_session(t) if spec.freq not in (None, "daily") else None
        return schedule.is_decision(t, spec, nxt, ordinal)

    # -- bars ------------------------------------------------------------------------------------

    def history(self) -> Bars:
        """Warm-up bars up to the day before the latest completed session (that one is the first live bar)."""
        p = self.params
        now = self.now()
        latest = self.latest_complete(now)
        if latest is None:
            raise DataError("alpaca: no completed trading session in the last two weeks of the broker's calendar")
        # ~252 sessions a year: ask for enough calendar days, with a margin for holidays
        if self.min_history is None:
            start = p.start or (latest.date() - dt.timedelta(days=5 * 365))
        else:
            start = p.start or (latest.date() - dt.timedelta(days=int(self.min_history * 1.5) + 20))
        frames = self.component.fetch(start, latest.date(), client=self.data)
        bars = Bars(**frames, source=f"alpaca:{p.feed}")
        bars = bars.iloc(slice(0, int(np.searchsorted(bars.index.values, np.datetime64(latest), side="right"))))
        bars = finish(bars, replace_params(p, start=None, end=None))
        if len(bars.index) == 0 or bars.index[-1] != latest:
            raise DataError(f"alpaca: no bar yet for the completed session {latest:%Y-%m-%d}; "
                            "try again in a few minutes (or raise data.params.bar_delay)")
        if self.min_history is None and len(bars.index) and bars.index[0].date() > start + dt.timedelta(days=7):
            log.warning("alpaca: the broker's history starts on %s, after the requested %s: the path-dependent "
                        "pipeline is computed from there and may decide differently from a backtest on more history",
                        f"{bars.index[0]:%Y-%m-%d}", f"{start:%Y-%m-%d}")
        if len(bars.index) < (self.min_history or 1) + 1:
            raise DataError(f"alpaca: {len(bars.index)} bars from {bars.index[0]:%Y-%m-%d} are fewer than the "
                            f"{self.min_history} the pipeline needs to warm up, plus the first live bar; "
                            "move data.params.start earlier")
        self._fields = bars.fields
        last = bars.iloc(slice(-1, None))
        self._pending = [_live_bar(last, 0)]
        self._last = latest
        self._next_poll = time.monotonic() + p.poll_interval
        return bars.iloc(slice(0, -1))

    def poll(self, timeout: float) -> list[Any] | None:
        """New completed bars (one clock request per ``poll_interval``), ``[]`` if none, None once closed."""
        if self._closed:
            return None
        if self._pending:
            out, self._pending = self._pending, []
            return out
        wait = self._next_poll - time.monotonic()
        if wait > 0:
            self._sleep(min(wait, max(timeout, 0.0)))
            if self._next_poll > time.monotonic():
                return []
        self._next_poll = time.monotonic() + self.params.poll_interval
        assert self._last is not None, "history() first"
        try:
            latest = self.latest_complete(self.now())
            if latest is None or latest <= self._last:
                return []
            frames = self.component.fetch(self._last + pd.Timedelta(days=1), latest.date(), client=self.data,
                                          on_empty="empty")
        except DataError as exc:
            log.warning("live bars: %s; retrying in %g s", exc, self.params.poll_interval)
            return []
        bars = Bars(**{f: frames[f] for f in self._fields}, source=f"alpaca:{self.params.feed}")
        keep = [i for i, t in enumerate(bars.index) if self._last < t <= latest and bars.close.iloc[i].notna().any()]
        if not keep:
            return []  # the session closed but its bar is not published yet
        out = [_live_bar(bars, i) for i in keep]
        self._last = bars.index[keep[-1]]
        return out

    def close(self) -> None:
        """Stop handing out bars."""
        self._closed = True


def replace_params(p: AlpacaSource.Params, **changes: Any) -> AlpacaSource.Params:
    """A copy of frozen params with some fields changed (validated again)."""
    return type(p)(**{**p.model_dump(), **changes})


def _live_bar(bars: Bars, i: int) -> LiveBar:
    return LiveBar(bars.index[i], {f: getattr(bars, f).iloc[i].to_numpy(dtype=float) for f in bars.fields})

