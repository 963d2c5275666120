"""A small base for qf's SQLite state files (the paper session state, the Alpaca journal)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SqliteStore:
    """One WAL-mode SQLite file shared by threads: immediate transactions and a ``meta`` key/value table.

    Subclasses create their schema (which must include ``meta(key TEXT PRIMARY KEY, value TEXT)``) after
    ``super().__init__``. ``durable=True`` fsyncs every commit (``synchronous=FULL``); otherwise commits are
    atomic and survive a process crash but reach the disk at checkpoints (``NORMAL``).

    Example::

        class Notes(SqliteStore):
            def __init__(self, path):
                super().__init__(path, durable=False)
                self._db.executescript("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);")

        Notes("/tmp/n.sqlite").set_meta("run_id", "r1")
    """

    def __init__(self, path: str | Path, *, durable: bool) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")

    def close(self) -> None:
        """Close the database (the file stays)."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                # a Ctrl-C or a crash mid-transaction must leave the previous state intact
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get_meta(self, key: str) -> str | None:
        """The stored value of ``key``, or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` (one transaction)."""
        with self._transaction() as db:
            put_meta(db, key, value)


def put_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    """Upsert one meta value inside an open transaction."""
    db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
               (key, value))
