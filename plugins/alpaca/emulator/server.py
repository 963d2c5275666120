"""The REST side of the emulator: a stdlib ``ThreadingHTTPServer`` over :class:`BrokerState`.

Each request goes through: request log -> auth (401 missing keys, 403 ``{"message": "forbidden."}``
for wrong ones) -> per-account rate limit (200/min by default, ``X-Ratelimit-*`` on every response)
-> scripted faults -> the route. Trading and market-data routes share one port, so both SDK clients
can use the same ``url_override``.

Example::

    state = BrokerState()
    rest = RestServer(state, FaultPlan(), credentials={"KEY": "SECRET"})
    rest.start()
    print(rest.url)          # http://127.0.0.1:<port>
    rest.stop()
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from qf_plugins.alpaca.emulator.errors import ApiError
from qf_plugins.alpaca.emulator.faults import Fault, FaultPlan
from qf_plugins.alpaca.emulator.state import BrokerState, _truthy

log = logging.getLogger(__name__)

SECRET_HEADER = "APCA-API-SECRET-KEY"
KEY_HEADER = "APCA-API-KEY-ID"


class WindowRateLimiter:
    """Fixed-window request budget per account, like Alpaca's 200 requests per minute.

    ``reset_decimals`` > 0 emits fractional epoch seconds in ``X-Ratelimit-Reset`` so that tests can
    use sub-second windows; the real API sends whole seconds.

    Example::

        limiter = WindowRateLimiter(limit=200, window=60.0)
        allowed, headers = limiter.take()     # headers: X-Ratelimit-Limit/-Remaining/-Reset
    """

    def __init__(self, limit: int = 200, window: float = 60.0, *, reset_decimals: int = 0,
                 wall: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.window = window
        self.reset_decimals = reset_decimals
        self._wall = wall
        self._lock = threading.Lock()
        self._start = 0.0
        self._count = 0
        self.rejected = 0
        self.accepted_times: list[float] = []

    def _roll(self, now: float) -> None:
        if now >= self._start + self.window:
            self._start = now
            self._count = 0

    def format_reset(self, epoch: float) -> str:
        if self.reset_decimals <= 0:
            return str(math.ceil(epoch))
        return f"{epoch:.{self.reset_decimals}f}"

    def take(self) -> tuple[bool, dict[str, str]]:
        """Consume one request if the budget allows; returns (allowed, rate-limit headers)."""
        with self._lock:
            now = self._wall()
            self._roll(now)
            allowed = self._count < self.limit
            if allowed:
                self._count += 1
                self.accepted_times.append(now)
            else:
                self.rejected += 1
            headers = {
                "X-Ratelimit-Limit": str(self.limit),
                "X-Ratelimit-Remaining": str(max(0, self.limit - self._count)),
                "X-Ratelimit-Reset": self.format_reset(self._start + self.window),
            }
            return allowed, headers

    def max_in_any_window(self) -> int:
        """Most accepted requests inside any sliding window (for "stays under budget" tests)."""
        with self._lock:
            times = sorted(self.accepted_times)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= self.window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best


@dataclass
class RequestRecord:
    """One logged request. ``headers`` never contains the secret key (it is redacted)."""

    ts: float
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    fault: str | None = None


Route = Callable[["_Request"], tuple[int, Any]]


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    match: re.Match[str]


class RestServer:
    """Threaded HTTP server exposing the Alpaca trading and market-data REST surface.

    Args:
        state: the broker state.
        faults: scripted faults consulted for every request.
        credentials: accepted ``{key_id: secret}``; None accepts any non-empty pair.
        limiter / data_limiter: rate limits for trading and market-data routes.
    """

    def __init__(
        self,
        state: BrokerState,
        faults: FaultPlan,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: Mapping[str, str] | None = None,
        limiter: WindowRateLimiter | None = None,
        data_limiter: WindowRateLimiter | None = None,
    ) -> None:
        self.state = state
        self.faults = faults
        self.host = host
        self.port = port
        self._credentials = dict(credentials) if credentials is not None else None
        self.limiter = limiter or WindowRateLimiter()
        self.data_limiter = data_limiter or WindowRateLimiter()
        self.requests: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes: list[tuple[str, re.Pattern[str], Route, bool]] = []
        self._install_routes()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._stop.clear()
        self._httpd = _HTTPServer((self.host, self.port), _Handler, self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="alpaca-emulator-rest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()  # wakes handlers stalled in a "hang" fault
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.close_all()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    # -- routes ----------------------------------------------------------------------------

    def _route(self, method: str, pattern: str, func: Route, data: bool = False) -> None:
        self._routes.append((method, re.compile(pattern), func, data))

    def _install_routes(self) -> None:
        s = self.state
        self._route("GET", r"/v2/account", lambda r: (200, s.get_account()))
        self._route("GET", r"/v2/clock", lambda r: (200, s.get_clock()))
        self._route("GET", r"/v2/calendar", lambda r: (200, s.get_calendar(r.query)))
        self._route("GET", r"/v2/assets", lambda r: (200, s.list_assets()))
        self._route("GET", r"/v2/assets/(?P<sym>[^/]+)", lambda r: (200, s.get_asset(r.match["sym"])))
        self._route("GET", r"/v2/orders:by_client_order_id",
                    lambda r: (200, s.get_order_by_client_id(self._required(r.query, "client_order_id"))))
        self._route("GET", r"/v2/orders", lambda r: (200, s.list_orders(r.query)))
        self._route("POST", r"/v2/orders", lambda r: (200, s.submit_order(r.body)))
        self._route("DELETE", r"/v2/orders", lambda r: (207, s.cancel_all()))
        self._route("GET", r"/v2/orders/(?P<id>[^/]+)",
                    lambda r: (200, s.get_order(r.match["id"], _truthy(r.query.get("nested", "false")))))
        self._route("DELETE", r"/v2/orders/(?P<id>[^/]+)", self._cancel_one)
        self._route("GET", r"/v2/positions", lambda r: (200, s.list_positions()))
        self._route("DELETE", r"/v2/positions",
                    lambda r: (207, s.close_all_positions(_truthy(r.query.get("cancel_orders", "false")))))
        self._route("GET", r"/v2/positions/(?P<sym>[^/]+)", lambda r: (200, s.get_position(r.match["sym"])))
        self._route("DELETE", r"/v2/positions/(?P<sym>[^/]+)",
                    lambda r: (200, s.close_position(r.match["sym"], r.query.get("qty"),
                                                     r.query.get("percentage"))))
        self._route("GET", r"/v2/stocks/bars", lambda r: (200, s.bars.query(r.query)), data=True)

    def _cancel_one(self, r: _Request) -> tuple[int, Any]:
        self.state.cancel_order(r.match["id"])
        return 204, None

    @staticmethod
    def _required(query: Mapping[str, str], name: str) -> str:
        value = query.get(name)
        if not value:
            raise ApiError(422, 40010001, f"{name} is required")
        return value

    # -- request pipeline ------------------------------------------------------------------

    def _authorize(self, headers: Mapping[str, str]) -> ApiError | None:
        key, secret = headers.get(KEY_HEADER), headers.get(SECRET_HEADER)
        if not key or not secret:
            return ApiError(401, 40110000, "request is not authorized")
        if self._credentials is not None and self._credentials.get(key) != secret:
            return ApiError(403, None, "forbidden.")
        return None

    def handle(self, handler: _Handler, method: str) -> None:
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body: Any = None
        body_error = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body_error = True
        headers = {k: ("***" if k.lower() == SECRET_HEADER.lower() else v) for k, v in handler.headers.items()}
        record = RequestRecord(time.time(), method, path, query, body, headers)
        with self._log_lock:
            self.requests.append(record)

        matched: tuple[Route, re.Match[str], bool] | None = None
        for route_method, pattern, func, data in self._routes:
            m = pattern.fullmatch(path)
            if m and route_method == method:
                matched = (func, m, data)
                break

        auth_error = self._authorize(handler.headers)
        if auth_error is not None:
            self._respond(handler, record, auth_error.status, auth_error.body(), {})
            return
        limiter = self.data_limiter if matched and matched[2] else self.limiter
        allowed, rate_headers = limiter.take()
        if not allowed:
            self._respond(handler, record, 429, {"code": 42910000, "message": "rate limit exceeded"},
                          rate_headers)
            return

        fault = self.faults.take(method, path)
        if fault is not None:
            record.fault = self._describe(fault)
            if not fault.apply and self._fault_responds(handler, record, fault, limiter, rate_headers):
                return

        if matched is None:
            status, payload = 404, {"code": 40410000, "message": f"endpoint not found: {method} {path}"}
        elif body_error:
            status, payload = 400, {"code": 40010000, "message": "request body format is invalid"}
        else:
            func, m, _ = matched
            try:
                status, payload = func(_Request(method, path, query, body, m))
            except ApiError as err:
                status, payload = err.status, err.body()
            except Exception:  # the emulator must answer like a server, not die
                log.exception("emulator route failed: %s %s", method, path)
                status, payload = 500, {"code": 50010000, "message": "internal server error"}

        if fault is not None and fault.apply and self._fault_responds(handler, record, fault, limiter,
                                                                      rate_headers):
            return
        self._respond(handler, record, status, payload, rate_headers)

    def _fault_responds(self, handler: _Handler, record: RequestRecord, fault: Fault,
                        limiter: WindowRateLimiter, rate_headers: dict[str, str]) -> bool:
        """Apply a fault; True if it produced (or suppressed) the response."""
        if fault.delay:
            self._stop.wait(fault.delay)
        if fault.drop:
            record.status = None
            handler.drop()
            return True
        if fault.status is None:
            return False
        headers = dict(rate_headers)
        if fault.reset_in is not None:
            headers["X-Ratelimit-Remaining"] = "0"
            headers["X-Ratelimit-Reset"] = limiter.format_reset(time.time() + fault.reset_in)
        headers.update(fault.headers)
        self._respond(handler, record, fault.status, fault.body, headers, fault.content_type)
        return True

    @staticmethod
    def _describe(fault: Fault) -> str:
        kind = "drop" if fault.drop else f"status {fault.status}" if fault.status else f"delay {fault.delay}"
        return f"{kind}{' after apply' if fault.apply else ''}"

    def _respond(self, handler: _Handler, record: RequestRecord, status: int, payload: Any,
                 headers: Mapping[str, str], content_type: str = "application/json") -> None:
        record.status = status
        if payload is None:
            data = b""
        elif isinstance(payload, str):
            data = payload.encode()
        else:
            data = json.dumps(payload).encode()
        try:
            handler.send_response(status)
            if data:
                handler.send_header("Content-Type", f"{content_type}; charset=utf-8")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            if data:
                handler.wfile.write(data)
        except OSError:
            handler.close_connection = True  # the client gave up (e.g. its timeout fired)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], app: RestServer) -> None:
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        """Close kept-alive client sockets so handler threads end with the server."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API behind its load balancer
    server: _HTTPServer
    timeout = 30  # idle keep-alive connections release their thread eventually
    # Headers and body go out in two writes; with Nagle on, delayed ACKs add ~40 ms per response.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self.server.app.handle(self, "GET")

    def do_POST(self) -> None:  # noqa: N802
        self.server.app.handle(self, "POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self.server.app.handle(self, "DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self.server.app.handle(self, "PATCH")

    def do_PUT(self) -> None:  # noqa: N802
        self.server.app.handle(self, "PUT")

    def drop(self) -> None:
        """Close the socket without writing a response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # The request line holds no credentials (they travel in headers), so it is safe to log.
        log.debug("%s %s", self.address_string(), format % args)
