"""Alpaca paper/live trading through alpaca-py, made crash-safe.

Modules: :mod:`.client` (hardened SDK clients from the environment), :mod:`.ratelimit` (token
bucket under 200 requests/min), :mod:`.journal` (SQLite WAL journal), :mod:`.ids` (deterministic
client order ids), :mod:`.session` (the broker-independent core), :mod:`.bt_broker` (the backtrader
broker over it) and :mod:`.plugin` (the ``alpaca`` broker component, registered by
``qf_plugins.brokers``). Background: docs/alpaca.md (alpaca-py 0.44's behaviour, the journal and restart design).
"""
