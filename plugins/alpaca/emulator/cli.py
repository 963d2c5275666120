"""``qf alpaca-emulator``: run the loopback Alpaca emulator in the foreground until Ctrl-C.

Example::

    from qf_plugins.alpaca.emulator.cli import serve
    serve("127.0.0.1", 8001, 8002, seed=0)     # blocks; prints the URLs and env settings
"""

from __future__ import annotations

import threading

from qf_plugins.alpaca.emulator import AlpacaEmulator


def serve(host: str, port: int, ws_port: int, seed: int, *, stop: threading.Event | None = None) -> None:
    """Serve until Ctrl-C (or until ``stop`` is set, which tests use).

    The emulator accepts any non-empty key pair, keeps the market open and fills marketable orders
    against synthetic quotes with paper-like random partial fills.
    """
    emulator = AlpacaEmulator(host, port, ws_port, api_key=None, secret_key=None, seed=seed)
    emulator.start()
    try:
        print(f"Alpaca emulator REST      {emulator.rest_url}", flush=True)
        print(f"Alpaca emulator stream    {emulator.ws_url}", flush=True)
        print("Point the plugin at it with:", flush=True)
        print(f"  export ALPACA_TRADING_URL={emulator.rest_url}", flush=True)
        print(f"  export ALPACA_DATA_URL={emulator.data_url}", flush=True)
        print(f"  export ALPACA_STREAM_URL={emulator.ws_url}", flush=True)
        print("  export ALPACA_API_KEY=<anything> ALPACA_SECRET_KEY=<anything>", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        waiter = stop or threading.Event()
        while not waiter.wait(0.5):
            pass
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        emulator.stop()
