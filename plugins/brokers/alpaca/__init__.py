"""Alpaca paper/live trading through alpaca-py, made crash-safe.

Modules: :mod:`.client` (hardened SDK clients from the environment), :mod:`.ratelimit` (token
bucket under 200 requests/min), :mod:`.journal` (SQLite WAL journal), :mod:`.ids` (deterministic
client order ids) and :mod:`.session` (the broker-independent core a live broker adapter drives).
Background and the SDK facts they rely on: the project notes on alpaca-py 0.44 (ALPACA.md, shared with the developers).

This package registers no hooks; the broker plugin that wires it into the engine lives elsewhere.
"""
