"""Build hardened alpaca-py clients from the environment.

alpaca-py 0.44 has no HTTP timeout and retries 429/504 three times, 3 s apart -- including
``POST /v2/orders``, which can duplicate an order after a 504 (docs/alpaca.md, "alpaca-py behaviour the
adapter works around"). So:

* every REST client gets an :class:`TimeoutHTTPAdapter` on ``client._session`` (default timeout,
  client-side rate limiting, and rate-limit headers fed back to the limiter);
* the trading client's SDK retry is switched off (``_retry = 0``): the session classifies a failed
  POST and looks the order up by ``client_order_id`` instead of blindly resending it;
* the data client keeps SDK retries for its idempotent GETs, with a configurable wait;
* :func:`check_sdk_internals` fails loudly if a future SDK renames those private attributes.

Secrets: :class:`AlpacaConfig` never prints them (``repr`` redacts), and :func:`protect_secrets`
attaches a redacting filter to every logger that could see them (websockets logs the authenticate
frame at DEBUG).

Example::

    cfg = AlpacaConfig.from_env()                       # ALPACA_API_KEY / ALPACA_SECRET_KEY
    trading = build_trading_client(cfg)
    data = build_data_client(cfg)
    stream = build_trading_stream(cfg)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from alpaca.common.rest import RESTClient
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.trading.client import TradingClient
from alpaca.trading.stream import TradingStream
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter

from qf_plugins.alpaca.ratelimit import RateLimiter

log = logging.getLogger(__name__)

ENV_KEY = "ALPACA_API_KEY"
ENV_SECRET = "ALPACA_SECRET_KEY"
ENV_TRADING_URL = "ALPACA_TRADING_URL"
ENV_DATA_URL = "ALPACA_DATA_URL"
ENV_STREAM_URL = "ALPACA_STREAM_URL"
ENV_PAPER = "ALPACA_PAPER"

# Private alpaca-py attributes this module relies on; pinned by check_sdk_internals and a test.
REST_PRIVATE_ATTRS = ("_session", "_retry", "_retry_wait", "_retry_codes")
STREAM_PRIVATE_ATTRS = ("_start_ws", "_ws", "_loop", "_reconnect_min_backoff", "_reconnect_max_backoff",
                        "_trade_updates_handler", "_running")

REDACTED = "***"


# Credentials inside JSON/log text, even when the value is truncated ("...tail") by a frame logger.
_CREDENTIAL_FIELDS = re.compile(r'((?:key_id|secret_key|APCA-API-KEY-ID|APCA-API-SECRET-KEY)["\']?\s*[:=]\s*["\']?)'
                                r'[^"\'\s,}]*', re.IGNORECASE)
# Loggers that can see credentials: websockets logs every frame at DEBUG, including the
# authenticate message (verified: '> TEXT \'{"action": "authenticate", "data": {"key_id": ...'.
WATCHED_LOGGERS = (
    "websockets", "websockets.client", "websockets.protocol", "alpaca", "alpaca.trading.stream",
    "alpaca.common.rest", "urllib3.connectionpool", "qf_plugins.alpaca.session",
    "qf_plugins.alpaca.client", "qf_plugins.alpaca.bars",
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Mask credential fields and every occurrence of each non-empty secret in ``text``."""
    text = _CREDENTIAL_FIELDS.sub(lambda m: m.group(1) + REDACTED, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class SecretFilter(logging.Filter):
    """A logging filter that scrubs credentials from the formatted message of each record.

    Example::

        handler.addFilter(SecretFilter([cfg.api_key, cfg.secret_key]))
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = {s for s in secrets if s}

    def add(self, *secrets: str | None) -> None:
        self._secrets.update(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging system's problem, not ours
            return True
        clean = redact(message, self._secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


SECRET_FILTER = SecretFilter()


def protect_secrets(*secrets: str | None) -> None:
    """Register secrets for redaction and attach :data:`SECRET_FILTER` to :data:`WATCHED_LOGGERS`.

    Logger filters only see records created on that exact logger, hence the explicit list.
    """
    SECRET_FILTER.add(*secrets)
    for name in WATCHED_LOGGERS:
        logger = logging.getLogger(name)
        if SECRET_FILTER not in logger.filters:
            logger.addFilter(SECRET_FILTER)


@dataclass(frozen=True)
class AlpacaConfig:
    """Connection settings. The key and secret never appear in ``repr``/``str``.

    Example::

        cfg = AlpacaConfig("PK...", "secret", trading_url="http://127.0.0.1:8001")
        print(cfg)     # AlpacaConfig(api_key='***', secret_key='***', paper=True, ...)
    """

    api_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    paper: bool = True
    trading_url: str | None = None
    data_url: str | None = None
    stream_url: str | None = None
    timeout: float = 10.0
    data_retry_attempts: int = 3
    data_retry_wait: float = 3.0
    rate_limit: int = 200
    rate_period: float = 60.0
    rate_burst: int = 10

    def __post_init__(self) -> None:
        if not self.api_key or not self.secret_key:
            raise ValueError(f"Alpaca credentials missing: set {ENV_KEY} and {ENV_SECRET}")
        protect_secrets(self.api_key, self.secret_key)
        for name in ("trading_url", "data_url"):
            url = getattr(self, name)
            if url and (url.endswith("/") or url.rstrip("/").endswith("/v2")):
                # alpaca-py appends "/v2" itself; a trailing "/v2" gives 404s (docs/alpaca.md, "URLs and keys").
                raise ValueError(f"{name} must not end with '/' or '/v2': {url!r}")

    def __repr__(self) -> str:
        return (f"AlpacaConfig(api_key={REDACTED!r}, secret_key={REDACTED!r}, paper={self.paper}, "
                f"trading_url={self.trading_url!r}, data_url={self.data_url!r}, "
                f"stream_url={self.stream_url!r}, timeout={self.timeout})")

    __str__ = __repr__

    @property
    def secrets(self) -> tuple[str, str]:
        return self.api_key, self.secret_key

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> AlpacaConfig:
        """Read ``ALPACA_API_KEY``, ``ALPACA_SECRET_KEY`` and the optional ``ALPACA_TRADING_URL``,
        ``ALPACA_DATA_URL``, ``ALPACA_STREAM_URL``, ``ALPACA_PAPER`` (default true)."""
        source = os.environ if env is None else env
        paper = str(source.get(ENV_PAPER, "true")).strip().lower() not in ("0", "false", "no")
        cfg = cls(
            api_key=source.get(ENV_KEY, ""),
            secret_key=source.get(ENV_SECRET, ""),
            paper=paper,
            trading_url=source.get(ENV_TRADING_URL) or None,
            data_url=source.get(ENV_DATA_URL) or None,
            stream_url=source.get(ENV_STREAM_URL) or None,
        )
        return replace(cfg, **overrides) if overrides else cfg


class TimeoutHTTPAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` with a default timeout and an optional :class:`RateLimiter`.

    alpaca-py never passes ``timeout=``, so without this a hung server blocks forever. A timeout
    raises ``requests.ReadTimeout``/``ConnectTimeout``, which the SDK does not retry.

    Example::

        client._session.mount("https://", TimeoutHTTPAdapter(10.0, RateLimiter()))
    """

    def __init__(self, timeout: float, limiter: RateLimiter | None = None, **kwargs: Any) -> None:
        self.timeout = timeout
        self.limiter = limiter
        super().__init__(**kwargs)

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        if self.limiter is not None:
            self.limiter.acquire()
        response = super().send(request, **kwargs)
        if self.limiter is not None:
            self.limiter.observe(response.headers, response.status_code)
        return response


def check_sdk_internals(client: object, attrs: Iterable[str] = REST_PRIVATE_ATTRS) -> None:
    """Raise ``RuntimeError`` if alpaca-py no longer has the private attributes we patch."""
    missing = [a for a in attrs if not hasattr(client, a)]
    if missing:
        raise RuntimeError(
            f"alpaca-py {type(client).__name__} lacks {missing}; the pinned SDK version changed -- "
            "re-verify qf_plugins.alpaca.client against docs/alpaca.md"
        )


def configure_rest_client(
    client: RESTClient,
    *,
    timeout: float,
    retry_attempts: int,
    retry_wait: float,
    retry_codes: Iterable[int] = (429, 504),
    limiter: RateLimiter | None = None,
) -> RESTClient:
    """Mount the timeout/rate-limit adapter and set the SDK's retry policy on ``client``."""
    check_sdk_internals(client)
    adapter = TimeoutHTTPAdapter(timeout, limiter)
    client._session.mount("http://", adapter)
    client._session.mount("https://", adapter)
    # The SDK's loop is `while retry >= 0`, so 0 means exactly one request.
    client._retry = max(0, int(retry_attempts))
    client._retry_wait = retry_wait  # type: ignore[assignment]  # SDK annotates int; sleep takes float
    client._retry_codes = list(retry_codes)
    return client


def build_trading_client(cfg: AlpacaConfig, limiter: RateLimiter | None = None, *,
                         raw_data: bool = True) -> TradingClient:
    """A ``TradingClient`` that never resends a request by itself (POSTs are not idempotent).

    ``raw_data=True`` (default) returns dicts: a payload the SDK models reject (a new enum value,
    say) must not turn into an exception after the order was placed.
    """
    client = TradingClient(cfg.api_key, cfg.secret_key, paper=cfg.paper, raw_data=raw_data,
                           url_override=cfg.trading_url)
    configure_rest_client(client, timeout=cfg.timeout, retry_attempts=0, retry_wait=0.0, limiter=limiter)
    return client


def build_data_client(cfg: AlpacaConfig, limiter: RateLimiter | None = None) -> StockHistoricalDataClient:
    """A ``StockHistoricalDataClient``; GETs are idempotent, so SDK retries stay on."""
    client = StockHistoricalDataClient(cfg.api_key, cfg.secret_key, url_override=cfg.data_url)
    configure_rest_client(client, timeout=cfg.timeout, retry_attempts=cfg.data_retry_attempts,
                          retry_wait=cfg.data_retry_wait, limiter=limiter)
    return client


def build_rate_limiter(cfg: AlpacaConfig) -> RateLimiter:
    return RateLimiter(cfg.rate_limit, cfg.rate_period, cfg.rate_burst)


class QfTradingStream(TradingStream):
    """``TradingStream`` with connection callbacks and a prompt ``stop()``.

    alpaca-py reconnects silently and has no on-connect hook, so events in the gap are lost
    (docs/alpaca.md, "alpaca-py behaviour the adapter works around"). ``on_connect`` fires after every
    successful authenticate+listen -- the session uses it to reconcile over REST. ``on_auth_failure`` fires
    when the server refuses the keys (the SDK would otherwise just log and retry forever). The stock
    ``stop()`` can take 5 s because ``_consume`` polls its stop queue between 5 s receive timeouts;
    closing the socket wakes it at once.

    Example::

        stream = QfTradingStream("KEY", "SECRET", raw_data=True, url_override="ws://127.0.0.1:8002/stream",
                                 on_connect=lambda: print("connected"))
    """

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        paper: bool = True,
        raw_data: bool = True,
        url_override: str | None = None,
        websocket_params: dict | None = None,
        *,
        on_connect: Callable[[], None] | None = None,
        on_auth_failure: Callable[[], None] | None = None,
        reconnect_min_backoff: float | None = None,
        reconnect_max_backoff: float | None = None,
    ) -> None:
        super().__init__(api_key, secret_key, paper=paper, raw_data=raw_data, url_override=url_override,
                         websocket_params=websocket_params)
        check_sdk_internals(self, STREAM_PRIVATE_ATTRS)
        protect_secrets(api_key, secret_key)
        self.on_connect = on_connect
        self.on_auth_failure = on_auth_failure
        if reconnect_min_backoff is not None:
            self._reconnect_min_backoff = reconnect_min_backoff
        if reconnect_max_backoff is not None:
            self._reconnect_max_backoff = reconnect_max_backoff
        self.connections = 0
        self.auth_failures = 0

    def __repr__(self) -> str:
        return f"QfTradingStream(endpoint={self._endpoint!r})"

    async def _start_ws(self) -> None:
        try:
            await super()._start_ws()
        except ValueError:
            # alpaca-py raises ValueError("failed to authenticate") for an unauthorized reply.
            self.auth_failures += 1
            if self.on_auth_failure is not None:
                self.on_auth_failure()
            raise
        self.connections += 1
        if self.on_connect is not None:
            self.on_connect()

    async def stop_ws(self) -> None:
        await super().stop_ws()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2)

    def stop(self) -> None:
        """Stop from another thread; safe before the loop has started or after it ended."""
        loop = self._loop
        if loop is None or not loop.is_running():
            self._should_run = False
            self._stop_stream_queue.put_nowait({"should_stop": True})
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self.stop_ws(), loop).result(5)


def build_trading_stream(
    cfg: AlpacaConfig,
    *,
    on_connect: Callable[[], None] | None = None,
    on_auth_failure: Callable[[], None] | None = None,
    reconnect_min_backoff: float | None = None,
) -> QfTradingStream:
    """A raw-data trading stream (dicts, so a model change cannot silently drop messages)."""
    return QfTradingStream(cfg.api_key, cfg.secret_key, paper=cfg.paper, raw_data=True,
                           url_override=cfg.stream_url, on_connect=on_connect,
                           on_auth_failure=on_auth_failure, reconnect_min_backoff=reconnect_min_backoff)
