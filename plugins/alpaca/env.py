"""Alpaca settings from the environment, with a user-facing error when something is missing.

The broker and the data source both need an :class:`~qf_plugins.alpaca.client.AlpacaConfig`. Keys
come only from the environment; URLs from the component's params when given, else from the
environment (``ALPACA_TRADING_URL``, ...), else alpaca-py's defaults.

Example::

    cfg = config_from_env(trading_url="http://127.0.0.1:8001")   # QfError naming the variables if unset
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from qf.errors import QfError

KEY_VARS = ("ALPACA_API_KEY", "ALPACA_SECRET_KEY")


def keys_present(env: Mapping[str, str] | None = None) -> bool:
    """Whether both key variables are set (their values are never read here)."""
    source = os.environ if env is None else env
    return all(source.get(v) for v in KEY_VARS)


def config_from_env(*, paper: bool = True, trading_url: str | None = None, data_url: str | None = None,
                    stream_url: str | None = None, env: Mapping[str, str] | None = None):  # -> AlpacaConfig
    """An ``AlpacaConfig`` from the environment; raises :class:`QfError` (never showing a key) when unusable.

    ``paper=False`` (real money) also needs ``ALPACA_PAPER=false`` in the environment: two independent
    switches, so neither a YAML edit nor a stray variable alone can trade a live account.
    """
    # the config class lives with the SDK clients: reading the environment must not load alpaca-py
    from qf_plugins.alpaca.client import ENV_PAPER, AlpacaConfig  # lazy: alpaca

    source = os.environ if env is None else env
    if not keys_present(source):
        raise QfError("Alpaca needs ALPACA_API_KEY and ALPACA_SECRET_KEY in the environment "
                      "(paper-trading keys from app.alpaca.markets; or run offline with --broker sim)")
    env_paper = str(source.get(ENV_PAPER, "true")).strip().lower() not in ("0", "false", "no")
    if not paper and env_paper:
        raise QfError("broker.params.paper is false (real money) but ALPACA_PAPER is not 'false'; "
                      "set both to trade a live account")
    overrides = {k: v for k, v in (("trading_url", trading_url), ("data_url", data_url), ("stream_url", stream_url))
                 if v is not None}
    try:
        return AlpacaConfig.from_env(source, paper=paper or env_paper, **overrides)
    except ValueError as exc:
        raise QfError(f"Alpaca settings: {exc}") from None
