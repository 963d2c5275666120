"""Loopback emulators of external brokers and data vendors, for tests and local paper trading.

Nothing in here talks to the network beyond 127.0.0.1 (or whatever host you bind). Each emulator
serves the real wire protocol so that the vendor's unmodified SDK can be pointed at it::

    from qf.emulators.alpaca import AlpacaEmulator

    with AlpacaEmulator() as emu:
        print(emu.rest_url, emu.ws_url)
"""
