"""Scripted, per-route faults for the emulator's REST server.

A fault matches on HTTP method and a regular expression over the path (query excluded). It can
fire before the request is applied (the broker never saw it) or after (the broker applied it, but
the client does not learn the outcome) -- the second case is what makes duplicate orders possible.

Example::

    plan = FaultPlan()
    plan.status("POST", "/v2/orders", 504, apply=True)        # order lands, client sees 504
    plan.hang("POST", "/v2/orders", seconds=2.0, apply=True)  # order lands, response late
    plan.drop("POST", "/v2/orders", apply=True)               # order lands, socket closed
    plan.accept_after("POST", "/v2/orders", seconds=2.0)      # order lands 2 s late, client long gone
    plan.non_json("GET", "/v2/account", status=502)           # HTML error page
    plan.status("POST", "/v2/orders", 429, times=None)        # persistent rate limit
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field


@dataclass
class Fault:
    """One scripted misbehaviour. See :class:`FaultPlan` for the friendly constructors.

    Attributes:
        method: HTTP method to match, or ``"*"``.
        path: regular expression that must match the whole path (no query string).
        apply: True = run the request against the state first, then misbehave.
        status: respond with this status instead of the real one (None = keep the real response).
        body: response body; a dict is sent as JSON, a str verbatim (use for non-JSON errors).
        content_type: content type for ``body``.
        headers: extra response headers.
        delay: seconds to stall before responding (a "hang" when longer than the client timeout).
        drop: close the connection without any response.
        times: how many matching requests trigger the fault; None = forever.
        skip: let this many matching requests through untouched first.
        reset_in: for 429 faults, send rate-limit headers with Reset = now + ``reset_in`` seconds.
        hits: how many times the fault fired (read it in tests).
    """

    method: str
    path: str
    apply: bool = False
    status: int | None = None
    body: dict | list | str | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    times: int | None = 1
    skip: int = 0
    reset_in: float | None = None
    hits: int = 0
    _seen: int = 0
    _regex: re.Pattern[str] | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method != "*" and self.method.upper() != method.upper():
            return False
        if self._regex is None:
            self._regex = re.compile(self.path)
        return self._regex.fullmatch(path) is not None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


class FaultPlan:
    """Thread-safe list of :class:`Fault` rules; the first live matching rule wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """Return the fault to apply to this request (and count it), or None."""
        with self._lock:
            for fault in self._faults:
                if fault.exhausted or not fault.matches(method, path):
                    continue
                fault._seen += 1
                if fault._seen <= fault.skip:
                    return None
                fault.hits += 1
                return fault
        return None

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    # -- friendly constructors -------------------------------------------------------------

    def status(
        self,
        method: str,
        path: str,
        status: int,
        body: dict | list | str | None = None,
        *,
        apply: bool = False,
        headers: dict[str, str] | None = None,
        times: int | None = 1,
        skip: int = 0,
    ) -> Fault:
        """Answer ``status`` (with a JSON error body unless given) instead of the real response."""
        if body is None:
            body = {"code": status * 100000, "message": f"emulated fault {status}"}
        return self.add(
            Fault(method, path, apply=apply, status=status, body=body, headers=dict(headers or {}),
                  times=times, skip=skip)
        )

    def rate_limited(self, method: str, path: str, *, reset_in: float = 1.0, times: int | None = 1,
                     skip: int = 0) -> Fault:
        """A 429 with ``X-Ratelimit-Remaining: 0``; the server fills Reset as now + ``reset_in``."""
        return self.add(
            Fault(method, path, status=429, body={"code": 42910000, "message": "rate limit exceeded"},
                  times=times, skip=skip, reset_in=float(reset_in))
        )

    def hang(self, method: str, path: str, seconds: float, *, apply: bool = True, times: int | None = 1,
             skip: int = 0) -> Fault:
        """Stall ``seconds`` before answering normally (after applying, by default)."""
        return self.add(Fault(method, path, apply=apply, delay=seconds, times=times, skip=skip))

    def accept_after(self, method: str, path: str, seconds: float, *, times: int | None = 1, skip: int = 0) -> Fault:
        """Apply the request only ``seconds`` after it arrived, then answer (to a client that usually gave up).

        Until then the broker does not know the order: a lookup by client order id answers 404, and a
        second POST with the same id is not a duplicate yet. This is a broker that accepts late, after the
        client's timeout (and perhaps after the client process died).
        """
        return self.add(Fault(method, path, apply=False, delay=float(seconds), times=times, skip=skip))

    def drop(self, method: str, path: str, *, apply: bool = True, times: int | None = 1, skip: int = 0) -> Fault:
        """Close the socket without answering (after applying, by default)."""
        return self.add(Fault(method, path, apply=apply, drop=True, times=times, skip=skip))

    def non_json(self, method: str, path: str, status: int = 502, *, apply: bool = False,
                 times: int | None = 1, skip: int = 0) -> Fault:
        """An HTML error page, like a load balancer in front of the API produces."""
        html = f"<html><head><title>{status} Bad Gateway</title></head><body>bad gateway</body></html>"
        return self.add(
            Fault(method, path, apply=apply, status=status, body=html, content_type="text/html",
                  times=times, skip=skip)
        )
