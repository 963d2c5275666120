"""SQLite (WAL) journal: the local source of truth that survives a crash.

What it records (docs/alpaca.md, "The journal"):

* the ``run_id`` that every ``client_order_id`` embeds, created once and reused after a restart;
* every order intent, committed and fsync'd **before** the POST leaves the process;
* every order event, from the stream or from REST reconciliation;
* fills, derived from the order's cumulative ``filled_qty`` / ``filled_avg_price`` (event ``price``
  is documented inconsistently) and deduplicated by ``execution_id`` and by cumulative quantity;
* the halted / kill-switch state, so a restarted process does not resume trading by accident.

Credentials never reach it: only order payloads are stored.

Example::

    journal = Journal("/tmp/run.sqlite")
    cid = f"qf-{journal.run_id}-1-1"
    journal.record_intent(cid, ref="1", attempt=1, symbol="AAPL", request={"qty": 10})
    journal.update_intent(cid, state="submitted", order_id="...", status="new")
    fill = journal.apply_fill(cid, "...", "exec-1", cum_qty="4", cum_avg_price="100")   # 4 @ 100
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from qf.sqlite_store import SqliteStore, put_meta
from qf_plugins.alpaca.ids import new_run_id

# Intent states. "pending": journaled, POST not yet answered. "ambiguous": the POST's fate is
# unknown (it may still be accepted late; it is only ever re-sent under the same id). "requeued": 429, to
# be resent with the same id. "submitted": the broker has it.
# Terminal: "rejected", "done" (broker status terminal), "abandoned" (certainly not at the broker: still
# missing after the broker's acceptance window, or withdrawn before reaching it; a later send of the same
# ref reuses its id, and if the broker shows the order after all, the intent is revived).
OPEN_STATES = ("pending", "ambiguous", "requeued", "submitted")
TERMINAL_STATES = ("rejected", "done", "abandoned")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
    client_order_id TEXT PRIMARY KEY,
    ref TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    request TEXT NOT NULL,
    state TEXT NOT NULL,
    order_id TEXT,
    status TEXT,
    filled_qty TEXT NOT NULL DEFAULT '0',
    filled_value TEXT NOT NULL DEFAULT '0',
    error TEXT,
    retry_at REAL,
    parent_client_order_id TEXT,
    leg_role TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    posted_at REAL
);
CREATE INDEX IF NOT EXISTS intents_state ON intents(state);
CREATE INDEX IF NOT EXISTS intents_order ON intents(order_id);
CREATE INDEX IF NOT EXISTS intents_ref ON intents(ref);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    client_order_id TEXT,
    order_id TEXT,
    source TEXT NOT NULL,
    event TEXT,
    execution_id TEXT,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS fills (
    fill_id TEXT PRIMARY KEY,
    execution_id TEXT,
    client_order_id TEXT NOT NULL,
    order_id TEXT,
    qty REAL NOT NULL,
    price REAL NOT NULL,
    cum_qty REAL NOT NULL,
    cum_avg_price REAL NOT NULL,
    ts REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS fills_execution ON fills(execution_id) WHERE execution_id IS NOT NULL;
"""

_EPSILON = Decimal("0.000000001")
_MICRO = Decimal("0.000001")


def _dec(value: Any) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


@dataclass(frozen=True)
class IntentRecord:
    """One journaled order (ours, an adopted orphan, or a bracket leg)."""

    client_order_id: str
    ref: str
    attempt: int
    symbol: str
    request: dict[str, Any]
    state: str
    order_id: str | None
    status: str | None
    filled_qty: float
    filled_avg_price: float | None
    error: str | None
    retry_at: float | None
    parent_client_order_id: str | None
    leg_role: str | None
    created_at: float
    updated_at: float
    posted_at: float | None = None  # when the last POST of this id left (None: never sent)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


@dataclass(frozen=True)
class FillRecord:
    """One execution derived from cumulative quantities."""

    fill_id: str
    execution_id: str | None
    client_order_id: str
    order_id: str | None
    qty: float
    price: float
    cum_qty: float
    cum_avg_price: float
    ts: float


class Journal(SqliteStore):
    """Thread-safe SQLite journal in WAL mode. See the module docstring.

    Args:
        path: database file (created with its parent folder); ``":memory:"`` for throwaway use.
        run_id: force a run id for a new journal; must match the stored one for an existing journal.
        clock: epoch-seconds time source for the ``*_at`` columns.
    """

    def __init__(self, path: str | Path, *, run_id: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        # WAL + NORMAL: every commit is atomic and survives a process crash, but is only fsync'd at
        # checkpoints. Intents are the exception (see _tx(durable=True)): they must be on disk
        # before their POST leaves, or a power cut could orphan a live order. Everything else can
        # be rebuilt from the broker, so it does not pay ~5 ms of fsync per event.
        super().__init__(path, durable=False)
        self.path = str(path)
        self._clock = clock
        self._durable_mode = False
        self._db.executescript(_SCHEMA)
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(intents)")}
        if "posted_at" not in columns:  # a journal written before posted_at existed: its POSTs left at creation
            self._db.execute("ALTER TABLE intents ADD COLUMN posted_at REAL")
            self._db.execute("UPDATE intents SET posted_at = created_at")
        stored = self.get_meta("run_id")
        if stored is None:
            stored = run_id or new_run_id()
            self.set_meta("run_id", stored)
            self.set_meta("created_at", repr(self._clock()))
        elif run_id is not None and run_id != stored:
            raise ValueError(f"journal {self.path} belongs to run {stored!r}, not {run_id!r}")
        self.run_id: str = stored

    def __repr__(self) -> str:
        return f"Journal(path={self.path!r}, run_id={self.run_id!r})"

    @contextmanager
    def _tx(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if durable != self._durable_mode:
                # FULL also fsyncs the WAL frames of earlier NORMAL commits, so ordering holds.
                self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                self._durable_mode = durable
            with self._transaction() as db:
                yield db

    # -- meta ------------------------------------------------------------------------------

    @property
    def created_at(self) -> float:
        raw = self.get_meta("created_at")
        return float(raw) if raw is not None else self._clock()

    def halted(self) -> tuple[bool, str | None]:
        """(halted?, reason) -- persisted by the kill switch."""
        return self.get_meta("halted") == "1", self.get_meta("halt_reason")

    def set_halted(self, reason: str) -> None:
        with self._tx(durable=True) as db:
            for key, value in (("halted", "1"), ("halt_reason", reason), ("halted_at", repr(self._clock()))):
                put_meta(db, key, value)

    def clear_halted(self) -> None:
        self.set_meta("halted", "0")

    # -- intents ---------------------------------------------------------------------------

    def next_attempt(self, ref: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(attempt) AS a FROM intents WHERE ref = ?", (str(ref),)).fetchone()
            return int(row["a"] or 0) + 1

    def record_intent(self, client_order_id: str, *, ref: str, attempt: int, symbol: str,
                      request: Mapping[str, Any], state: str = "pending", order_id: str | None = None,
                      status: str | None = None, parent_client_order_id: str | None = None,
                      leg_role: str | None = None, durable: bool = True) -> None:
        """Insert an intent; committed (and fsync'd if ``durable``) before returning. Duplicates raise.

        ``durable=False`` suits records of orders the broker already confirmed (adopted orphans,
        bracket legs): losing them to a power cut costs nothing that reconciliation cannot restore.
        """
        now = self._clock()
        # a "pending" intent is recorded right before its POST leaves: that is when the broker may get it
        posted = now if state == "pending" else None
        with self._tx(durable) as db:
            db.execute(
                "INSERT INTO intents(client_order_id, ref, attempt, symbol, request, state, order_id, status, "
                "parent_client_order_id, leg_role, created_at, updated_at, posted_at) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (client_order_id, str(ref), attempt, symbol, json.dumps(dict(request), default=str), state,
                 order_id, status, parent_client_order_id, leg_role, now, now, posted),
            )

    def reopen_intent(self, client_order_id: str, *, symbol: str, request: Mapping[str, Any]) -> None:
        """Send an abandoned intent again under its own id: back to "pending" with the new request.

        Committed and fsync'd before returning, like :meth:`record_intent` (the POST follows).
        """
        now = self._clock()
        with self._tx(durable=True) as db:
            cur = db.execute(
                "UPDATE intents SET state = 'pending', symbol = ?, request = ?, order_id = NULL, status = NULL, "
                "error = NULL, retry_at = NULL, updated_at = ?, posted_at = ? "
                "WHERE client_order_id = ? AND state = 'abandoned'",
                (symbol, json.dumps(dict(request), default=str), now, now, client_order_id))
            if cur.rowcount != 1:
                raise KeyError(f"{client_order_id!r} is not an abandoned intent")

    def update_intent(self, client_order_id: str, *, durable: bool = False, **changes: Any) -> None:
        """Update any of: state, order_id, status, error, retry_at, posted_at (``durable``: fsync'd)."""
        allowed = {"state", "order_id", "status", "error", "retry_at", "posted_at"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        if not changes:
            return
        columns = ", ".join(f"{k} = ?" for k in changes)
        with self._tx(durable) as db:
            db.execute(f"UPDATE intents SET {columns}, updated_at = ? WHERE client_order_id = ?",
                       (*changes.values(), self._clock(), client_order_id))

    def latest_attempt(self, ref: str) -> IntentRecord | None:
        """The newest top-level intent (highest attempt) sent for ``ref``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM intents WHERE ref = ? AND parent_client_order_id IS NULL "
                "ORDER BY attempt DESC, rowid DESC LIMIT 1", (str(ref),)).fetchone()
        return None if row is None else self._intent(row)

    def intent(self, client_order_id: str) -> IntentRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM intents WHERE client_order_id = ?", (client_order_id,)).fetchone()
        return None if row is None else self._intent(row)

    def intent_by_order_id(self, order_id: str) -> IntentRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM intents WHERE order_id = ?", (order_id,)).fetchone()
        return None if row is None else self._intent(row)

    def intents(self, states: tuple[str, ...] | None = None) -> list[IntentRecord]:
        with self._lock:
            if states is None:
                rows = self._db.execute("SELECT * FROM intents ORDER BY created_at, rowid").fetchall()
            else:
                marks = ",".join("?" * len(states))
                rows = self._db.execute(f"SELECT * FROM intents WHERE state IN ({marks}) ORDER BY created_at, rowid",
                                        states).fetchall()
        return [self._intent(r) for r in rows]

    def open_intents(self) -> list[IntentRecord]:
        return self.intents(OPEN_STATES)

    @staticmethod
    def _intent(row: sqlite3.Row) -> IntentRecord:
        qty = _dec(row["filled_qty"])
        value = _dec(row["filled_value"])
        return IntentRecord(
            client_order_id=row["client_order_id"], ref=row["ref"], attempt=int(row["attempt"]),
            symbol=row["symbol"], request=json.loads(row["request"]), state=row["state"],
            order_id=row["order_id"], status=row["status"], filled_qty=float(qty),
            filled_avg_price=float(value / qty) if qty > 0 else None, error=row["error"],
            retry_at=row["retry_at"], parent_client_order_id=row["parent_client_order_id"],
            leg_role=row["leg_role"], created_at=float(row["created_at"]), updated_at=float(row["updated_at"]),
            posted_at=None if row["posted_at"] is None else float(row["posted_at"]),
        )

    # -- events and fills ------------------------------------------------------------------

    def record_event(self, *, source: str, payload: Mapping[str, Any], client_order_id: str | None = None,
                     order_id: str | None = None, event: str | None = None,
                     execution_id: str | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO events(ts, client_order_id, order_id, source, event, execution_id, payload) "
                "VALUES(?,?,?,?,?,?,?)",
                (self._clock(), client_order_id, order_id, source, event, execution_id,
                 json.dumps(dict(payload), default=str)),
            )

    def apply_fill(self, client_order_id: str, order_id: str | None, execution_id: str | None,
                   cum_qty: Any, cum_avg_price: Any) -> FillRecord | None:
        """Derive the new execution from cumulative values; None if nothing new.

        ``qty = cum_qty - known``, ``price = (cum_qty * cum_avg - known_value) / qty``. A replayed
        ``execution_id`` or a stale/out-of-order snapshot (cum_qty not above what we know) yields None,
        so nothing is ever counted twice.
        """
        new_qty, new_avg = _dec(cum_qty), _dec(cum_avg_price)
        with self._tx() as db:
            if execution_id is not None and db.execute(
                    "SELECT 1 FROM fills WHERE execution_id = ?", (execution_id,)).fetchone():
                return None
            row = db.execute("SELECT filled_qty, filled_value FROM intents WHERE client_order_id = ?",
                             (client_order_id,)).fetchone()
            if row is None:
                raise KeyError(f"unknown client_order_id {client_order_id!r}")
            known_qty, known_value = _dec(row["filled_qty"]), _dec(row["filled_value"])
            delta = new_qty - known_qty
            if delta <= _EPSILON:
                return None
            new_value = new_qty * new_avg
            # Averages arrive rounded (9 decimals on the emulator), so the difference quotient carries
            # ~1e-9 noise; prices have no meaning below a micro-dollar.
            price = ((new_value - known_value) / delta).quantize(_MICRO)
            fill_id = execution_id or f"{order_id}:{new_qty}"
            ts = self._clock()
            db.execute(
                "INSERT INTO fills(fill_id, execution_id, client_order_id, order_id, qty, price, cum_qty, "
                "cum_avg_price, ts) VALUES(?,?,?,?,?,?,?,?,?)",
                (fill_id, execution_id, client_order_id, order_id, float(delta), float(price), float(new_qty),
                 float(new_avg), ts),
            )
            db.execute("UPDATE intents SET filled_qty = ?, filled_value = ?, updated_at = ? WHERE client_order_id = ?",
                       (str(new_qty), str(new_value), ts, client_order_id))
        return FillRecord(fill_id, execution_id, client_order_id, order_id, float(delta), float(price),
                          float(new_qty), float(new_avg), ts)

    def fills(self, client_order_id: str | None = None) -> list[FillRecord]:
        with self._lock:
            if client_order_id is None:
                rows = self._db.execute("SELECT * FROM fills ORDER BY ts, rowid").fetchall()
            else:
                rows = self._db.execute("SELECT * FROM fills WHERE client_order_id = ? ORDER BY ts, rowid",
                                        (client_order_id,)).fetchall()
        return [FillRecord(r["fill_id"], r["execution_id"], r["client_order_id"], r["order_id"], r["qty"],
                           r["price"], r["cum_qty"], r["cum_avg_price"], r["ts"]) for r in rows]

    def events(self, client_order_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            if client_order_id is None:
                rows = self._db.execute("SELECT * FROM events ORDER BY seq").fetchall()
            else:
                rows = self._db.execute("SELECT * FROM events WHERE client_order_id = ? ORDER BY seq",
                                        (client_order_id,)).fetchall()
        return [dict(r) for r in rows]
