"""Historical bars for ``GET /v2/stocks/bars``: stored or synthetic, paged like the real API.

The real endpoint sorts by symbol, then time, and cuts pages at ``limit`` items regardless of symbol
boundaries, handing back an opaque ``next_page_token``. This store does the same, and can also be
told to misbehave the ways the real API has: ``bars: null``, ``bars: {}``, missing ``n``/``vw``, and
a 403 for SIP data on a free subscription.

Example::

    store = BarStore(seed=1, page_size=2)
    store.set_bars("AAPL", [{"t": "2024-01-02T05:00:00Z", "o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 10}])
    store.mode = "null"          # next responses carry "bars": null
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from qf_plugins.alpaca.emulator.clock import NEW_YORK, Clock, MarketHours, utc
from qf_plugins.alpaca.emulator.errors import ApiError

BarsMode = Literal["normal", "empty", "null"]

_TIMEFRAME = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
_UNIT_ALIASES = {"T": "Min", "H": "Hour", "D": "Day", "W": "Week", "M": "Month"}
# A guard against a careless request for years of minute bars eating the test machine.
_MAX_SYNTHETIC_BARS = 250_000
_FIELD_ALIASES = {
    "timestamp": "t", "open": "o", "high": "h", "low": "l", "close": "c", "volume": "v",
    "trade_count": "n", "vwap": "vw",
}


def parse_timeframe(value: str) -> tuple[int, str]:
    """``"15Min"`` -> ``(15, "Min")``; raises :class:`ApiError` 422 on anything else."""
    match = _TIMEFRAME.match(value or "")
    if not match:
        raise ApiError(422, 42210000, f"invalid timeframe: {value!r}")
    amount, unit = int(match.group(1)), match.group(2)
    return amount, _UNIT_ALIASES.get(unit, unit)


def _t(value: datetime) -> str:
    return utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unit_hash(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts; stands in for a seeded RNG per bar."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class BarStore:
    """Bars by symbol, with paging and scripted misbehaviour. Thread-safe.

    Attributes:
        mode: ``"normal"``, ``"empty"`` (``bars: {}``) or ``"null"`` (``bars: null``).
        omit_fields: bar keys to leave out of responses, e.g. ``{"n", "vw"}``.
        sip_forbidden: answer 403 to ``feed=sip`` like a free subscription does.
        page_size: the most bars one page holds, whatever ``limit`` the client sends.
        synthetic: invent deterministic bars for symbols without stored ones.
    """

    def __init__(
        self,
        clock: Clock,
        hours: MarketHours,
        seed: int = 0,
        page_size: int = 10_000,
        synthetic: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._hours = hours
        self.seed = seed
        self.page_size = page_size
        self.synthetic = synthetic
        self.mode: BarsMode = "normal"
        self.omit_fields: set[str] = set()
        self.sip_forbidden = False
        self._stored: dict[str, list[dict[str, Any]]] = {}

    # -- control ---------------------------------------------------------------------------

    def set_bars(self, symbol: str, bars: Iterable[Mapping[str, Any]]) -> None:
        """Store bars for ``symbol``; keys may be Alpaca's (t, o, h, l, c, v, n, vw) or long names."""
        rows: list[dict[str, Any]] = []
        for bar in bars:
            row = {_FIELD_ALIASES.get(k, k): v for k, v in bar.items()}
            rows.append({
                "t": utc(row["t"]),
                "o": float(row["o"]), "h": float(row["h"]), "l": float(row["l"]), "c": float(row["c"]),
                "v": int(row["v"]),
                "n": None if row.get("n") is None else int(row["n"]),
                "vw": None if row.get("vw") is None else float(row["vw"]),
            })
        rows.sort(key=lambda r: r["t"])
        with self._lock:
            self._stored[symbol.upper()] = rows

    def clear(self) -> None:
        with self._lock:
            self._stored.clear()

    # -- prices ----------------------------------------------------------------------------

    def base_price(self, symbol: str) -> float:
        """The symbol's synthetic price level, between 20 and 500."""
        return round(20 + 480 * _unit_hash(self.seed, symbol, "base"), 2)

    def synthetic_close(self, symbol: str, when: datetime) -> float:
        """Deterministic price for ``symbol`` at ``when``: a slow sine plus per-bar noise."""
        base = self.base_price(symbol)
        days = utc(when).timestamp() / 86400.0
        phase = 2 * math.pi * _unit_hash(self.seed, symbol, "phase")
        noise = _unit_hash(self.seed, symbol, utc(when).isoformat()) - 0.5
        return round(base * (1 + 0.15 * math.sin(days / 20.0 + phase)) * (1 + 0.01 * noise), 2)

    def latest_price(self, symbol: str) -> float:
        """Last stored close, else the synthetic price now."""
        with self._lock:
            stored = self._stored.get(symbol.upper())
            if stored:
                return float(stored[-1]["c"])
        # Floor to the minute so that marks and auto-quotes do not jitter between two requests.
        return self.synthetic_close(symbol, self._clock.now().replace(second=0, microsecond=0))

    # -- query -----------------------------------------------------------------------------

    def query(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Serve one page of ``GET /v2/stocks/bars`` for the given query parameters."""
        symbols = [s.strip().upper() for s in (params.get("symbols") or "").split(",") if s.strip()]
        if not symbols:
            raise ApiError(400, 40010000, "symbols is required")
        amount, unit = parse_timeframe(params.get("timeframe", "1Day"))
        feed = (params.get("feed") or "sip").lower()
        if feed == "sip" and self.sip_forbidden:
            raise ApiError(403, None, "subscription does not permit querying recent SIP data")
        now = self._clock.now()
        end = utc(params["end"]) if params.get("end") else now
        start = utc(params["start"]) if params.get("start") else end - timedelta(days=7)
        if start > end:
            raise ApiError(422, 42210000, "end should not be before start")
        limit = int(params.get("limit") or 1000)
        if not 1 <= limit <= 10_000:
            raise ApiError(422, 42210000, "invalid limit: must be between 1 and 10000")
        descending = (params.get("sort") or "asc").lower() == "desc"

        if self.mode == "null":
            return {"bars": None, "next_page_token": None}
        if self.mode == "empty":
            return {"bars": {}, "next_page_token": None}

        series = [(sym, self._series(sym, start, end, amount, unit)) for sym in sorted(set(symbols))]
        flat = [(sym, i) for sym, rows in series for i in range(len(rows))]
        by_symbol = dict(series)
        offset = self._decode_token(params.get("page_token")) if params.get("page_token") else 0
        size = min(limit, self.page_size)
        page = flat[offset:offset + size]
        bars: dict[str, list[dict[str, Any]]] = {}
        for sym, i in page:
            rows = by_symbol[sym]
            row = rows[len(rows) - 1 - i] if descending else rows[i]
            bars.setdefault(sym, []).append(self._render(row))
        more = offset + size < len(flat)
        return {"bars": bars, "next_page_token": self._encode_token(offset + size) if more else None}

    # -- internals -------------------------------------------------------------------------

    def _render(self, row: Mapping[str, Any]) -> dict[str, Any]:
        out = {"t": _t(row["t"]), "o": row["o"], "h": row["h"], "l": row["l"], "c": row["c"],
               "v": row["v"], "n": row["n"], "vw": row["vw"]}
        for key in self.omit_fields:
            out.pop(key, None)
        return out

    def _encode_token(self, offset: int) -> str:
        return base64.urlsafe_b64encode(json.dumps({"o": offset, "s": self.seed}).encode()).decode()

    def _decode_token(self, token: str) -> int:
        try:
            return int(json.loads(base64.urlsafe_b64decode(token.encode()))["o"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(422, 42210000, "invalid page_token") from exc

    def _series(self, symbol: str, start: datetime, end: datetime, amount: int, unit: str) -> list[dict]:
        with self._lock:
            stored = self._stored.get(symbol)
        if stored is not None:
            return [r for r in stored if start <= r["t"] <= end]
        if not self.synthetic:
            return []
        return self._synthesize(symbol, start, end, amount, unit)

    def _stamps(self, start: datetime, end: datetime, amount: int, unit: str) -> list[datetime]:
        first_day: date = start.astimezone(NEW_YORK).date()
        last_day: date = end.astimezone(NEW_YORK).date()
        sessions = self._hours.sessions(first_day, last_day)
        stamps: list[datetime] = []
        if unit in ("Min", "Hour"):
            step = timedelta(minutes=amount) if unit == "Min" else timedelta(hours=amount)
            for _, open_, close in sessions:
                t = open_
                while t < close:
                    if start <= t <= end:
                        stamps.append(t)
                        if len(stamps) > _MAX_SYNTHETIC_BARS:
                            raise ApiError(422, 42210000, "emulator: too many synthetic bars requested")
                    t += step
            return stamps
        # Daily and longer bars are stamped at midnight New York, like Alpaca's.
        midnights = [datetime.combine(d, datetime.min.time(), NEW_YORK).astimezone(UTC) for d, _, _ in sessions]
        if unit == "Day":
            picked = midnights[::amount]
        elif unit == "Week":
            picked = [m for m in midnights if m.astimezone(NEW_YORK).weekday() == 0][::amount]
        else:
            picked = [m for m in midnights if m.astimezone(NEW_YORK).day <= 7
                      and m.astimezone(NEW_YORK).weekday() < 5][::amount]
        return [m for m in picked if start <= m <= end]

    def _synthesize(self, symbol: str, start: datetime, end: datetime, amount: int, unit: str) -> list[dict]:
        rows = []
        for t in self._stamps(start, end, amount, unit):
            close = self.synthetic_close(symbol, t)
            wiggle = _unit_hash(self.seed, symbol, "open", t.isoformat()) - 0.5
            open_ = round(close * (1 + 0.01 * wiggle), 2)
            high = round(max(open_, close) * (1 + 0.005 * _unit_hash(self.seed, symbol, "h", t.isoformat())), 2)
            low = round(min(open_, close) * (1 - 0.005 * _unit_hash(self.seed, symbol, "l", t.isoformat())), 2)
            volume = int(10_000 + 1_000_000 * _unit_hash(self.seed, symbol, "v", t.isoformat()))
            rows.append({"t": t, "o": open_, "h": high, "l": low, "c": close, "v": volume,
                         "n": max(1, volume // 100), "vw": round((high + low + close) / 3, 4)})
        return rows
