"""Deterministic, crash-safe ``client_order_id`` values.

The id is ``f"{prefix}-{run_id}-{ref}-{attempt}"``: ``run_id`` is persisted in the journal, ``ref`` is
the strategy's order reference and ``attempt`` counts fresh submissions of that reference. After a
crash the same inputs rebuild the same id, so the broker can be asked "do you have this order?"
(docs/alpaca.md, "Order identity"). At most 48 characters: the 2022 spec's cap, which is still safe today.

A ``ref`` is letters, digits and underscores, and may hold inner dashes: the kill switch and
``--flatten`` use ``kill-<YYYYMMDD>-<SYMBOL>`` and ``flatten-<YYYYMMDD>-<SYMBOL>``, so their closing
orders are ``qf-<run>-kill-20240105-AAPL-1`` (the run id and the attempt never contain a dash, so the
id still parses).

Example::

    run = new_run_id()
    cid = make_client_order_id("qf", run, 17, 1)      # "qf-<run>-17-1"
    parse_client_order_id(cid).ref                     # "17"
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

MAX_CLIENT_ORDER_ID = 48

_PREFIX = re.compile(r"[A-Za-z0-9]{1,12}")
_RUN_ID = re.compile(r"[A-Za-z0-9]{4,20}")
_REF_TEXT = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,28}[A-Za-z0-9_])?"
_REF = re.compile(_REF_TEXT)
_PARSE = re.compile(r"(?P<prefix>[A-Za-z0-9]{1,12})-(?P<run>[A-Za-z0-9]{4,20})-(?P<ref>" + _REF_TEXT + ")"
                    r"-(?P<attempt>[0-9]{1,6})")


@dataclass(frozen=True)
class ClientOrderId:
    """The parts of one of our client order ids."""

    prefix: str
    run_id: str
    ref: str
    attempt: int

    def __str__(self) -> str:
        return f"{self.prefix}-{self.run_id}-{self.ref}-{self.attempt}"


def new_run_id() -> str:
    """A fresh 12-character run id: 8 hex digits of the epoch (sortable) plus 4 random ones."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(2)}"


def make_client_order_id(prefix: str, run_id: str, ref: int | str, attempt: int) -> str:
    """Build the id; raises ValueError on characters that would make it unparseable or too long."""
    ref_text = str(ref)
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"prefix must be 1-12 letters/digits, got {prefix!r}")
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"run_id must be 4-20 letters/digits, got {run_id!r}")
    if not _REF.fullmatch(ref_text):
        raise ValueError(f"ref must be 1-30 letters/digits/underscores (inner dashes allowed), got {ref_text!r}")
    if not 1 <= attempt < 1_000_000:
        raise ValueError(f"attempt must be in [1, 999999], got {attempt}")
    cid = f"{prefix}-{run_id}-{ref_text}-{attempt}"
    if len(cid) > MAX_CLIENT_ORDER_ID:
        raise ValueError(f"client_order_id {cid!r} is longer than {MAX_CLIENT_ORDER_ID} characters")
    return cid


def parse_client_order_id(value: str | None) -> ClientOrderId | None:
    """The parts of an id we generated, or None for anything else (other tools, bracket legs)."""
    if not value:
        return None
    match = _PARSE.fullmatch(value)
    if match is None:
        return None
    return ClientOrderId(match["prefix"], match["run"], match["ref"], int(match["attempt"]))
