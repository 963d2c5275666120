"""A client-side token bucket that keeps us under Alpaca's 200 requests/minute.

The bucket holds ``burst`` tokens and refills at ``(limit - burst) / period`` per second, so no
sliding window of ``period`` seconds ever sees more than ``limit`` requests. The server's word wins:
``X-Ratelimit-Remaining: 0`` or a 429 blocks every caller until ``X-Ratelimit-Reset``.

Example::

    limiter = RateLimiter(limit=200, period=60.0, burst=10)
    limiter.acquire()                       # blocks when the budget is spent
    limiter.observe(response.headers, response.status_code)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping


def reset_delay(headers: Mapping[str, str], now: float | None = None, default: float = 1.0) -> float:
    """Seconds until ``X-Ratelimit-Reset`` (epoch seconds; small values are read as a delta)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw = lowered.get("x-ratelimit-reset")
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    if value < 1e9:  # not an epoch: some proxies send "seconds from now"
        return max(0.0, value)
    return max(0.0, value - (time.time() if now is None else now))


class RateLimiter:
    """Thread-safe token bucket honouring the server's rate-limit headers.

    Args:
        limit: requests allowed per ``period`` (Alpaca: 200 per 60 s).
        period: window length in seconds.
        burst: bucket capacity; the refill rate is ``(limit - burst) / period``.
        margin: extra seconds to wait past a server Reset (clock skew, integer Reset rounding).
    """

    def __init__(
        self,
        limit: int = 200,
        period: float = 60.0,
        burst: int = 10,
        *,
        margin: float = 0.05,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 < burst < limit:
            raise ValueError("need 0 < burst < limit")
        self.limit = limit
        self.period = period
        self.burst = burst
        self.rate = (limit - burst) / period
        self.margin = margin
        self._monotonic = monotonic
        self._wall = wall
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._stamp = monotonic()
        self._blocked_until = 0.0
        self.acquired = 0
        self.waited = 0.0

    def __repr__(self) -> str:
        return f"RateLimiter(limit={self.limit}, period={self.period}, burst={self.burst})"

    def _refill(self, now: float) -> None:
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def acquire(self, timeout: float | None = None) -> float:
        """Take one token, sleeping as needed; returns seconds waited. TimeoutError past ``timeout``."""
        started = self._monotonic()
        while True:
            with self._lock:
                now = self._monotonic()
                self._refill(now)
                wait = 0.0
                if now < self._blocked_until:
                    wait = self._blocked_until - now
                elif self._tokens >= 1.0:
                    self._tokens -= 1.0
                    self.acquired += 1
                    spent = now - started
                    self.waited += spent
                    return spent
                else:
                    wait = (1.0 - self._tokens) / self.rate
            if timeout is not None and self._monotonic() - started + wait > timeout:
                raise TimeoutError("rate limiter: no request budget within the timeout")
            self._sleep(min(wait, 1.0))

    def observe(self, headers: Mapping[str, str], status: int | None = None) -> None:
        """Feed a response's headers back: ``Remaining`` caps our tokens, 0 or 429 blocks until Reset."""
        lowered = {k.lower(): v for k, v in headers.items()}
        remaining_raw = lowered.get("x-ratelimit-remaining")
        try:
            remaining = int(float(remaining_raw)) if remaining_raw is not None else None
        except ValueError:
            remaining = None
        if status != 429 and (remaining is None or remaining > 0):
            if remaining is not None:
                with self._lock:
                    self._tokens = min(self._tokens, float(remaining))
            return
        delay = reset_delay(lowered, self._wall())
        with self._lock:
            self._tokens = 0.0
            self._blocked_until = max(self._blocked_until, self._monotonic() + delay + self.margin)

    def blocked_for(self) -> float:
        """Seconds until a server-imposed block lifts (0 when not blocked)."""
        with self._lock:
            return max(0.0, self._blocked_until - self._monotonic())
