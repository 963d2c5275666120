"""The Alpaca adapter: one plugin with the ``alpaca`` data source, its live feed, the ``alpaca`` broker and
a loopback emulator, which contributes ``qf alpaca-emulator`` to the command line.

Registered under the ``qf`` entry-point group as ``qf_alpaca``, like any third-party plugin; nothing in
``qf`` itself knows about Alpaca. Registering it imports neither alpaca-py nor backtrader (the source and
the broker import them when they load bars or connect; the command imports the emulator when it runs), so
``qf plugins`` and ``qf validate`` stay fast and work without keys.

Modules:

- :mod:`.source`: the ``alpaca`` data source (:class:`~.source.AlpacaSource`) and the live feed of
  ``qf paper`` (:class:`~.source.AlpacaLiveSource`); :mod:`.bars` pages ``GET /v2/stocks/bars`` defensively;
- :mod:`.broker`: the ``alpaca`` broker component (:class:`~.broker.AlpacaBroker`); :mod:`.bt_broker` the
  backtrader broker it creates, over :mod:`.session` (the broker-independent core), :mod:`.journal` (SQLite
  WAL journal), :mod:`.ids` (deterministic client order ids), :mod:`.client` (hardened SDK clients from
  the environment), :mod:`.env` and :mod:`.ratelimit` (token bucket under 200 requests/min);
- :mod:`.emulator`: the loopback emulator the tests and ``qf alpaca-emulator`` run; :mod:`.commands` the
  command itself.

Background: docs/alpaca.md (alpaca-py 0.44's behaviour, the journal and restart design, the emulator).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qf import hookimpl
from qf_plugins.alpaca.broker import AlpacaBroker
from qf_plugins.alpaca.commands import alpaca_emulator
from qf_plugins.alpaca.source import AlpacaSource

if TYPE_CHECKING:
    from typer import Typer


@hookimpl
def qf_data_sources() -> list[type[AlpacaSource]]:
    return [AlpacaSource]


@hookimpl
def qf_brokers() -> list[type[AlpacaBroker]]:
    return [AlpacaBroker]


@hookimpl
def qf_register_commands(app: Typer) -> None:
    # commands.py imports typer only; the emulator (and its threads, sockets) loads when the command runs
    app.command("alpaca-emulator")(alpaca_emulator)
