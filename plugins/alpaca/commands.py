"""``qf alpaca-emulator``, contributed to the ``qf`` command line through ``qf_register_commands``.

Only typer is imported here: listing or building the CLI must not load the emulator, which is imported
when the command runs.

Example::

    qf alpaca-emulator --port 8001 --ws-port 8002      # then export the printed ALPACA_* settings
"""

from __future__ import annotations

from typing import Annotated

import typer


def alpaca_emulator(
    port: Annotated[int, typer.Option(help="REST port on 127.0.0.1 (0 = any free port).")] = 8001,
    ws_port: Annotated[int, typer.Option(help="trade_updates websocket port (0 = any free port).")] = 8002,
    seed: Annotated[int, typer.Option(help="Seed of the random partial fills.")] = 0,
) -> None:
    """Serve a loopback Alpaca emulator (REST + trade_updates websocket) to rehearse paper trading offline."""
    from qf_plugins.alpaca.emulator.cli import serve  # lazy: qf_plugins.alpaca.emulator

    serve("127.0.0.1", port, ws_port, seed)
