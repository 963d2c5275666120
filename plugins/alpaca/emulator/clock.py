"""Injectable clocks and the US equity session calendar used by the Alpaca emulator.

The emulator never calls ``datetime.now()`` directly: every timestamp, the market-open flag and the
OPG/CLS windows come from a :class:`Clock`, so tests can pin time with :class:`ManualClock`.

Example::

    clock = ManualClock("2024-01-02T14:00:00Z")     # 09:00 New York, before the open
    hours = MarketHours()
    assert not hours.is_open(clock.now())
    clock.advance(minutes=45)
    assert hours.is_open(clock.now())
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")


def utc(value: datetime | str) -> datetime:
    """Parse an RFC 3339 string (``Z`` or offset; naive means UTC) into an aware UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace(" ", "T"))
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """Format like Alpaca does: UTC, nanosecond precision, ``Z`` suffix."""
    value = utc(value)
    # Alpaca emits 9 fractional digits; we only have microseconds, so pad. alpaca-py parses both.
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


class Clock(Protocol):
    """Anything with ``now() -> aware UTC datetime``."""

    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves when told to; thread-safe.

    Example::

        clock = ManualClock("2024-01-02T15:00:00Z")
        clock.advance(seconds=30)
        clock.set("2024-01-03T15:00:00Z")
    """

    def __init__(self, start: datetime | str | None = None) -> None:
        self._lock = threading.Lock()
        self._now = utc(start) if start is not None else datetime.now(UTC)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, value: datetime | str) -> None:
        with self._lock:
            self._now = utc(value)

    def advance(self, seconds: float = 0.0, **kwargs: float) -> datetime:
        """Move forward by ``seconds`` plus any ``timedelta`` keyword (minutes=, hours=, days=)."""
        with self._lock:
            self._now = self._now + timedelta(seconds=seconds, **kwargs)
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self.now().isoformat()})"


class MarketHours:
    """Regular US equity sessions: weekdays 09:30-16:00 New York, minus the given holidays.

    Early closes are not modelled; pass ``holidays`` for days the market is shut.

    Example::

        hours = MarketHours(holidays=[date(2024, 1, 1)])
        hours.session(date(2024, 1, 2))   # (open_utc, close_utc)
    """

    def __init__(
        self,
        open_time: time = time(9, 30),
        close_time: time = time(16, 0),
        holidays: Iterable[date] = (),
    ) -> None:
        self.open_time = open_time
        self.close_time = close_time
        self.holidays = frozenset(holidays)

    def is_trading_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def session(self, day: date) -> tuple[datetime, datetime] | None:
        """Open and close of ``day`` in UTC, or None when the market is shut that day."""
        if not self.is_trading_day(day):
            return None
        start = datetime.combine(day, self.open_time, NEW_YORK).astimezone(UTC)
        end = datetime.combine(day, self.close_time, NEW_YORK).astimezone(UTC)
        return start, end

    def is_open(self, now: datetime) -> bool:
        now = utc(now)
        bounds = self.session(now.astimezone(NEW_YORK).date())
        return bounds is not None and bounds[0] <= now < bounds[1]

    def next_open(self, now: datetime) -> datetime:
        now = utc(now)
        day = now.astimezone(NEW_YORK).date()
        for offset in range(0, 30):
            bounds = self.session(day + timedelta(days=offset))
            if bounds is not None and bounds[0] > now:
                return bounds[0]
        raise RuntimeError("no trading day within 30 days")  # only with absurd holiday lists

    def next_close(self, now: datetime) -> datetime:
        now = utc(now)
        day = now.astimezone(NEW_YORK).date()
        for offset in range(0, 30):
            bounds = self.session(day + timedelta(days=offset))
            if bounds is not None and bounds[1] > now:
                return bounds[1]
        raise RuntimeError("no trading day within 30 days")

    def sessions(self, start: date, end: date) -> list[tuple[date, datetime, datetime]]:
        """Every trading day in ``[start, end]`` with its open and close (UTC)."""
        out: list[tuple[date, datetime, datetime]] = []
        day = start
        while day <= end:
            bounds = self.session(day)
            if bounds is not None:
                out.append((day, bounds[0], bounds[1]))
            day += timedelta(days=1)
        return out

    @staticmethod
    def new_york_time(now: datetime) -> time:
        return utc(now).astimezone(NEW_YORK).time()
