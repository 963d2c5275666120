"""The ``trade_updates`` WebSocket server, with the failure modes a client must survive.

Protocol (docs/alpaca.md, "alpaca-py behaviour the adapter works around"): the client authenticates,
the first reply is the authorization verdict, then ``listen`` is acknowledged with ``listening`` and
events follow. Like the real service, only one connection per account is allowed: a second concurrent
handshake gets HTTP 429.

Failure controls: :meth:`StreamServer.drop` closes the live connection (events in the gap are lost,
there is no replay), ``silent = True`` swallows events on a healthy-looking connection,
``auth_unauthorized = True`` refuses authentication, :meth:`hold` / :meth:`release` reorder
delivery, :meth:`drop_next` loses events, :meth:`inject` sends any raw message.

Example::

    server = StreamServer("127.0.0.1", 0, credentials={"KEY": "SECRET"})
    server.start()
    server.publish({"stream": "trade_updates", "data": {...}})
    server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

log = logging.getLogger(__name__)

# websockets logs every frame at DEBUG, including the client's authenticate message.
_CREDENTIALS = re.compile(r'((?:key_id|secret_key)"?\s*:\s*"?)[^"\s,}]*')


class _CredentialFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = _CREDENTIALS.sub(lambda m: m.group(1) + "***", message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = _CredentialFilter()
for _name in ("websockets.server", "websockets.protocol", "websockets"):
    if not any(isinstance(f, _CredentialFilter) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_FILTER)


class StreamServer:
    """WebSocket server for ``/stream`` running its own asyncio loop in a daemon thread.

    Args:
        host, port: bind address; port 0 picks a free port (see :attr:`port` after start).
        credentials: accepted ``{key_id: secret_key}``; None accepts any non-empty pair.
        binary: send frames as binary like paper does (text frames parse too).
        max_connections: concurrent connections per account (Alpaca allows one).
        auth_timeout: seconds to wait for the authenticate message.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: Mapping[str, str] | None = None,
        *,
        binary: bool = True,
        max_connections: int = 1,
        auth_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self._credentials = dict(credentials) if credentials is not None else None
        self.binary = binary
        self.max_connections = max_connections
        self.auth_timeout = auth_timeout
        self.silent = False
        self.auth_unauthorized = False
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._connections: set[ServerConnection] = set()
        self._subscriber: tuple[ServerConnection, asyncio.Queue[bytes | str]] | None = None
        self._held: list[dict[str, Any]] | None = None
        self._drop_next = 0
        self.sent: list[dict[str, Any]] = []
        self.dropped: list[dict[str, Any]] = []
        self.stats = {"handshakes": 0, "rejected_429": 0, "authorized": 0, "unauthorized": 0, "listening": 0}

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/stream"

    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._main(ready))
            except BaseException as exc:  # surfaced to start() below
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="alpaca-emulator-ws", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise RuntimeError("stream server failed to start") from failure[0]

    def stop(self) -> None:
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: stopped.done() or stopped.set_result(None))
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    async def _main(self, ready: threading.Event) -> None:
        self._stopped = asyncio.get_running_loop().create_future()
        # Server-initiated pings are off: the SDK pings every 10 s itself and tests stop quickly.
        async with serve(self._handle, self.host, self.port, process_request=self._process_request,
                         ping_interval=None, close_timeout=1) as server:
            self._server = server
            self.port = next(iter(server.sockets)).getsockname()[1]
            ready.set()
            await self._stopped
            for conn in list(self._connections):
                with contextlib.suppress(Exception):
                    await conn.close(1001, "server shutting down")

    # -- control (thread-safe) -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while an authorized client is listening to trade_updates."""
        return self._subscriber is not None

    @property
    def connection_count(self) -> int:
        with self._lock:
            return sum(1 for c in self._connections if c.state is not State.CLOSED)

    def publish(self, message: dict[str, Any]) -> None:
        """Deliver a trade_updates message to the listener, honouring the fault switches."""
        with self._lock:
            if self._held is not None:
                self._held.append(message)
                return
            if self._drop_next > 0:
                self._drop_next -= 1
                self.dropped.append(message)
                return
        self._deliver(message)

    def inject(self, message: dict[str, Any]) -> None:
        """Send a raw message as-is (bypasses hold/drop_next but not ``silent``)."""
        self._deliver(message)

    def hold(self) -> None:
        """Buffer published events until :meth:`release`."""
        with self._lock:
            if self._held is None:
                self._held = []

    def release(self, order: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Send held events, optionally in the given index order (indices may repeat to duplicate)."""
        with self._lock:
            held, self._held = self._held or [], None
        picked = [held[i] for i in order] if order is not None else held
        for message in picked:
            self._deliver(message)
        return held

    def drop_next(self, count: int = 1) -> None:
        """Lose the next ``count`` published events (as if sent into a dead connection)."""
        with self._lock:
            self._drop_next += count

    def drop(self, code: int = 1011, reason: str = "emulated drop") -> bool:
        """Close the live connection from the server side; True if one was open."""
        sub = self._subscriber
        loop = self._loop
        if sub is None or loop is None:
            return False
        self._subscriber = None  # events from now on are lost until the client reconnects
        future = asyncio.run_coroutine_threadsafe(sub[0].close(code, reason), loop)
        with contextlib.suppress(Exception):
            future.result(5)
        return True

    # -- internals -------------------------------------------------------------------------

    def _deliver(self, message: dict[str, Any]) -> None:
        sub, loop = self._subscriber, self._loop
        if self.silent or sub is None or loop is None or loop.is_closed():
            self.dropped.append(message)
            return
        text = json.dumps(message)
        payload: bytes | str = text.encode() if self.binary else text
        try:
            # One queue and one writer task per connection keep delivery in publish order.
            loop.call_soon_threadsafe(sub[1].put_nowait, payload)
        except RuntimeError:  # the loop closed between the check and the call (server stopping)
            self.dropped.append(message)
            return
        self.sent.append(message)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        with self._lock:
            self.stats["handshakes"] += 1
            live = [c for c in self._connections if c.state is not State.CLOSED]
            self._connections = set(live)
            if len(live) >= self.max_connections:
                self.stats["rejected_429"] += 1
                return connection.respond(429, "connection limit exceeded\n")
            self._connections.add(connection)
        return None

    def _authorized(self, data: Mapping[str, Any]) -> bool:
        if self.auth_unauthorized:
            return False
        key, secret = data.get("key_id"), data.get("secret_key")
        if not key or not secret:
            return False
        if self._credentials is None:
            return True
        return self._credentials.get(str(key)) == secret

    async def _send(self, ws: ServerConnection, message: Mapping[str, Any]) -> None:
        text = json.dumps(message)
        await ws.send(text.encode() if self.binary else text)

    async def _handle(self, ws: ServerConnection) -> None:
        queue: asyncio.Queue[bytes | str] = asyncio.Queue()
        writer: asyncio.Task[None] | None = None
        try:
            raw = await asyncio.wait_for(ws.recv(), self.auth_timeout)
            msg = json.loads(raw)
            if msg.get("action") != "authenticate" or not self._authorized(msg.get("data") or {}):
                self.stats["unauthorized"] += 1
                await self._send(ws, {"stream": "authorization", "data": {
                    "action": "authenticate", "status": "unauthorized",
                    "message": "access key verification failed"}})
                await ws.close(1008, "unauthorized")
                return
            self.stats["authorized"] += 1
            await self._send(ws, {"stream": "authorization",
                                  "data": {"action": "authenticate", "status": "authorized"}})

            async def write() -> None:
                while True:
                    await ws.send(await queue.get())

            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("action") != "listen":
                    continue
                streams = list((msg.get("data") or {}).get("streams") or [])
                await self._send(ws, {"stream": "listening", "data": {"streams": streams}})
                if "trade_updates" in streams and writer is None:
                    self.stats["listening"] += 1
                    self._subscriber = (ws, queue)
                    writer = asyncio.create_task(write())
        except (ConnectionClosed, TimeoutError, json.JSONDecodeError) as exc:
            log.debug("stream connection ended: %s", type(exc).__name__)
        finally:
            if self._subscriber is not None and self._subscriber[0] is ws:
                self._subscriber = None
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await writer
            with self._lock:
                self._connections.discard(ws)
