"""The paper session's own state: what a restarted ``qf paper`` needs to carry on where it stopped.

One SQLite file (WAL) per state folder, ``paper.sqlite``. It holds what the strategy knows and the broker
does not: which bars were processed (with the equity, cash and positions at their close), the stateful
risk kernel's state, the average entry prices the stops use, every decision with its planned orders
(journaled before the first order leaves), the fills of the simulated broker, and the risk events.

Each processed bar is one transaction (:meth:`PaperState.commit_bar`): a session killed in the middle
of a bar resumes from the previous one, and since everything a bar does is derived from the state
before it, doing it again gives the same orders. Orders sent to a real broker are the exception; they
are journaled as a decision (:meth:`PaperState.record_decision`, fsync'd) before the first order is
sent, and each planned order is marked once the broker has it, so a restart completes a decision
instead of recomputing it.

Credentials never reach this file: it stores the experiment's name, a hash of its redacted config,
prices, quantities and dates.

Example::

    state = PaperState(Path("state/paper.sqlite"))
    state.bind(experiment="hrp_swing", config_hash="ab12...", broker="sim", symbols=["AAPL", "MSFT"])
    last = state.last_bar()                # None on a fresh state
    state.commit_bar(BarRecord(0, pd.Timestamp("2024-01-02"), 100_000.0, 100_000.0,
                               np.zeros(2), np.zeros(2), {}), fills=[], events=[])
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qf.engines.result import ORDER_COLUMNS
from qf.errors import QfError
from qf.sqlite_store import SqliteStore

STATE_FILE = "paper.sqlite"
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bars (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL UNIQUE,
    equity REAL NOT NULL,
    cash REAL NOT NULL,
    positions TEXT NOT NULL,
    prices TEXT NOT NULL,
    strategy TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fills (
    fill_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    time TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    quantity REAL NOT NULL,
    price REAL NOT NULL,
    fee REAL NOT NULL,
    ref TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS risk_events (
    seq INTEGER NOT NULL,
    time TEXT NOT NULL,
    event TEXT NOT NULL,
    symbol TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    time TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    targets TEXT,
    risk TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS planned (
    ref TEXT PRIMARY KEY,
    decision TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    quantity REAL NOT NULL,
    price REAL NOT NULL,
    status TEXT NOT NULL,
    sent_quantity REAL,
    updated REAL NOT NULL
);
"""

# planned-order states: "planned" (journaled, not yet at the broker), "sent" (the broker has it),
# "rejected" (the broker refused it), "expired" (a newer decision superseded it before it was sent)
PLANNED, SENT, REJECTED, EXPIRED = "planned", "sent", "rejected", "expired"


def _ts(value: pd.Timestamp) -> str:
    return pd.Timestamp(value).isoformat()


def _floats(values: Sequence[float] | np.ndarray) -> str:
    # json writes NaN as NaN and reads it back; repr-exact floats make a restored run bit-identical
    return json.dumps([float(v) for v in values])


@dataclass
class BarRecord:
    """The state at the close of one processed bar.

    ``seq`` counts processed bars from 0; ``positions`` and ``prices`` are the broker's position sizes and
    average prices per symbol (in the session's symbol order); ``strategy`` holds what the strategy needs
    to continue (risk kernel state, average entry prices, pending targets), as JSON-able values.

    Example::

        BarRecord(3, pd.Timestamp("2024-01-05"), 101_250.0, 20_000.0, np.array([10.0]), np.array([150.0]), {})
    """

    seq: int
    time: pd.Timestamp
    equity: float
    cash: float
    positions: np.ndarray
    prices: np.ndarray
    strategy: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FillRow:
    """One fill as the report's ``orders.csv`` shows it, with the decision reference it belongs to.

    Example: ``FillRow("20240105_AAPL", pd.Timestamp("2024-01-08"), "AAPL", "buy", 10.0, 185.5, 0.93,
    "20240105_AAPL")``.
    """

    fill_id: str
    time: pd.Timestamp
    symbol: str
    side: str
    quantity: float
    price: float
    fee: float
    ref: str


@dataclass(frozen=True)
class PlannedOrder:
    """One order of a decision: ``ref`` is ``<decision date>_<symbol>``, the id's deterministic part.

    ``quantity`` is unsigned; ``price`` is the estimate it was sized at; ``sent_quantity`` what was sent
    (a buy can be scaled down to the buying power the sells left).

    Example: ``PlannedOrder("20240105_AAPL", pd.Timestamp("2024-01-05"), "AAPL", "buy", 10.0, 185.5)``.
    """

    ref: str
    decision: pd.Timestamp
    symbol: str
    side: str
    quantity: float
    price: float
    status: str = PLANNED
    sent_quantity: float | None = None


@dataclass(frozen=True)
class DecisionRecord:
    """A decision made at the close of ``time``: ``kind`` is ``rebalance``, ``hold``, ``stop``, ``halt`` or ``halted``.

    ``risk`` holds the kernel state after the decision (and, live, its events and the equity it saw).
    Example: ``DecisionRecord(pd.Timestamp("2024-01-05"), "rebalance", [0.5, 0.5], {})``.
    """

    time: pd.Timestamp
    kind: str
    targets: list[float] | None
    risk: dict[str, Any]


class PaperState(SqliteStore):
    """Thread-safe SQLite store of one paper session (see the module docstring).

    Args:
        path: the database file (its folder is created).
        durable: fsync every commit (a live broker's decisions must survive a power cut; a replayed
            simulation can redo its last bars, so it commits without waiting for the disk).

    Example::

        state = PaperState(".qf/paper/hrp_swing-sim/paper.sqlite", durable=False)
        state.equity().tail()
    """

    def __init__(self, path: str | Path, *, durable: bool = True) -> None:
        super().__init__(path, durable=durable)
        self.path = Path(path)
        self._db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"PaperState({str(self.path)!r})"

    def bind(self, *, experiment: str, config_hash: str, broker: str, symbols: Sequence[str]) -> bool:
        """Claim a fresh state for this session, or check that an existing one belongs to it.

        Returns True when the state was fresh. A state made by another experiment, configuration,
        broker or universe is refused: resuming it would mix two strategies' positions.
        """
        wanted = {"experiment": experiment, "config_hash": config_hash, "broker": broker,
                  "symbols": json.dumps(list(symbols)), "schema": SCHEMA_VERSION}
        stored = {k: self.get_meta(k) for k in wanted}
        if all(v is None for v in stored.values()) or (stored != wanted and self._untouched()):
            # a session refused at start-up (a bad setting found after binding) processed nothing: the
            # corrected command claims the state instead of being told it belongs to "another configuration"
            with self._transaction() as db:
                db.execute("DELETE FROM meta")
                for k, v in {**wanted, "run_id": secrets.token_hex(6), "created": repr(time.time())}.items():
                    db.execute("INSERT INTO meta(key, value) VALUES(?, ?)", (k, v))
            return True
        labels = {"experiment": "experiment", "config_hash": "configuration (YAML or --set values)",
                  "broker": "broker", "symbols": "symbols", "schema": "state format"}
        for key, value in wanted.items():
            if stored[key] != value:
                have = stored[key] if key in ("experiment", "broker") else None
                detail = f" ({have!r}, not {value!r})" if have else ""
                raise QfError(f"{self.path.parent}: this state folder belongs to a session with another "
                              f"{labels[key]}{detail}; use another --state-dir or remove the folder to start over")
        return False

    def _untouched(self) -> bool:
        """Nothing was processed, decided, filled or recorded in this state (only its binding exists)."""
        with self._lock:
            return all(self._db.execute(f"SELECT COUNT(*) AS n FROM {table}").fetchone()["n"] == 0  # noqa: S608
                       for table in ("bars", "fills", "risk_events", "decisions", "planned"))

    @property
    def run_id(self) -> str:
        """The session's id (in the report's paper.json)."""
        value = self.get_meta("run_id")
        if value is None:
            raise QfError(f"{self.path}: the state is not bound to a session yet")
        return value

    # -- bars ------------------------------------------------------------------------------------

    def commit_bar(self, rec: BarRecord, fills: Sequence[FillRow] = (), events: Sequence[tuple[str, str]] = (),
                   decision: DecisionRecord | None = None) -> None:
        """Write one processed bar with its fills, risk events and (simulation) decision, all or nothing."""
        with self._transaction() as db:
            if decision is not None:
                self._insert_decision(db, decision, (), time.time())
            db.execute(
                "INSERT INTO bars(seq, time, equity, cash, positions, prices, strategy, created) "
                "VALUES(?,?,?,?,?,?,?,?)",
                (rec.seq, _ts(rec.time), float(rec.equity), float(rec.cash), _floats(rec.positions),
                 _floats(rec.prices), json.dumps(rec.strategy), time.time()))
            for f in fills:
                db.execute("INSERT OR IGNORE INTO fills(fill_id, seq, time, symbol, side, quantity, price, fee, ref) "
                           "VALUES(?,?,?,?,?,?,?,?,?)",
                           (f.fill_id, rec.seq, _ts(f.time), f.symbol, f.side, float(f.quantity), float(f.price),
                            float(f.fee), f.ref))
            for event, symbol in events:
                db.execute("INSERT INTO risk_events(seq, time, event, symbol) VALUES(?,?,?,?)",
                           (rec.seq, _ts(rec.time), event, symbol))

    def last_bar(self) -> BarRecord | None:
        """The last committed bar (what a restart resumes from), or None on a fresh state."""
        with self._lock:
            row = self._db.execute("SELECT * FROM bars ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return BarRecord(int(row["seq"]), pd.Timestamp(row["time"]), float(row["equity"]), float(row["cash"]),
                         np.array(json.loads(row["positions"]), dtype=float),
                         np.array(json.loads(row["prices"]), dtype=float), json.loads(row["strategy"]))

    def bar_count(self) -> int:
        """How many bars the session has processed, across restarts."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) AS n FROM bars").fetchone()["n"])

    def equity(self) -> pd.Series:
        """Equity at the close of every processed bar."""
        with self._lock:
            rows = self._db.execute("SELECT time, equity FROM bars ORDER BY seq").fetchall()
        index = pd.DatetimeIndex([pd.Timestamp(r["time"]) for r in rows])
        return pd.Series([float(r["equity"]) for r in rows], index=index, name="equity", dtype=float)

    def fills(self) -> pd.DataFrame:
        """The recorded fills as ``orders.csv`` columns (time, symbol, side, quantity, price, fee)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM fills ORDER BY seq, rowid").fetchall()
        df = pd.DataFrame({
            "time": pd.DatetimeIndex([pd.Timestamp(r["time"]) for r in rows]),
            "symbol": [r["symbol"] for r in rows], "side": [r["side"] for r in rows],
            "quantity": np.array([r["quantity"] for r in rows], dtype=float),
            "price": np.array([r["price"] for r in rows], dtype=float),
            "fee": np.array([r["fee"] for r in rows], dtype=float),
        }, columns=ORDER_COLUMNS)
        return df

    def recent_fills(self, limit: int = 8) -> list[FillRow]:
        """The latest recorded fills, newest first (the live view)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM fills ORDER BY seq DESC, rowid DESC LIMIT ?", (limit,)).fetchall()
        return [FillRow(r["fill_id"], pd.Timestamp(r["time"]), r["symbol"], r["side"], r["quantity"], r["price"],
                        r["fee"], r["ref"]) for r in rows]

    def events(self) -> pd.DataFrame:
        """Risk events as ``risk_events.csv`` rows (time, event, symbol)."""
        with self._lock:
            rows = self._db.execute("SELECT time, event, symbol FROM risk_events ORDER BY seq, rowid").fetchall()
        return pd.DataFrame({"time": pd.DatetimeIndex([pd.Timestamp(r["time"]) for r in rows]),
                             "event": [r["event"] for r in rows], "symbol": [r["symbol"] for r in rows]},
                            columns=["time", "event", "symbol"])

    # -- decisions -------------------------------------------------------------------------------

    def record_decision(self, when: pd.Timestamp, kind: str, targets: Sequence[float] | None, risk: dict[str, Any],
                        orders: Sequence[PlannedOrder] = ()) -> None:
        """Journal a decision and its planned orders in one transaction, before any order is sent."""
        with self._transaction() as db:
            self._insert_decision(db, DecisionRecord(when, kind, None if targets is None else list(targets), risk),
                                  orders, time.time())

    @staticmethod
    def _insert_decision(db: sqlite3.Connection, dec: DecisionRecord, orders: Sequence[PlannedOrder],
                         now: float) -> None:
        db.execute("INSERT INTO decisions(time, kind, targets, risk, created) VALUES(?,?,?,?,?)",
                   (_ts(dec.time), dec.kind, None if dec.targets is None else _floats(dec.targets),
                    json.dumps(dec.risk), now))
        for o in orders:
            db.execute("INSERT INTO planned(ref, decision, symbol, side, quantity, price, status, sent_quantity, "
                       "updated) VALUES(?,?,?,?,?,?,?,?,?)",
                       (o.ref, _ts(dec.time), o.symbol, o.side, float(o.quantity), float(o.price), o.status,
                        o.sent_quantity, now))

    def decision(self, when: pd.Timestamp) -> DecisionRecord | None:
        """The decision journaled at the close of ``when``, if any."""
        with self._lock:
            row = self._db.execute("SELECT * FROM decisions WHERE time = ?", (_ts(when),)).fetchone()
        return None if row is None else self._decision(row)

    def latest_decision(self) -> DecisionRecord | None:
        """The most recent decision, if any."""
        with self._lock:
            row = self._db.execute("SELECT * FROM decisions ORDER BY time DESC LIMIT 1").fetchone()
        return None if row is None else self._decision(row)

    @staticmethod
    def _decision(row: sqlite3.Row) -> DecisionRecord:
        targets = None if row["targets"] is None else [float(v) for v in json.loads(row["targets"])]
        return DecisionRecord(pd.Timestamp(row["time"]), row["kind"], targets, json.loads(row["risk"]))

    def planned(self, when: pd.Timestamp | None = None) -> list[PlannedOrder]:
        """Planned orders of one decision (or of all), sells first, in the order they were planned."""
        with self._lock:
            if when is None:
                rows = self._db.execute("SELECT * FROM planned ORDER BY decision, rowid").fetchall()
            else:
                rows = self._db.execute("SELECT * FROM planned WHERE decision = ? ORDER BY rowid",
                                        (_ts(when),)).fetchall()
        return [PlannedOrder(r["ref"], pd.Timestamp(r["decision"]), r["symbol"], r["side"], float(r["quantity"]),
                             float(r["price"]), r["status"],
                             None if r["sent_quantity"] is None else float(r["sent_quantity"])) for r in rows]

    def mark_planned(self, ref: str, status: str, sent_quantity: float | None = None) -> None:
        """Record what became of a planned order (``sent``, ``rejected``, ``expired``)."""
        with self._transaction() as db:
            db.execute("UPDATE planned SET status = ?, sent_quantity = COALESCE(?, sent_quantity), updated = ? "
                       "WHERE ref = ?", (status, sent_quantity, time.time(), ref))

    def expire_planned(self, before: pd.Timestamp) -> list[str]:
        """Mark still-unsent orders of decisions older than ``before`` as expired; returns their refs."""
        with self._transaction() as db:
            rows = db.execute("SELECT ref FROM planned WHERE status = ? AND decision < ?",
                              (PLANNED, _ts(before))).fetchall()
            db.execute("UPDATE planned SET status = ?, updated = ? WHERE status = ? AND decision < ?",
                       (EXPIRED, time.time(), PLANNED, _ts(before)))
        return [r["ref"] for r in rows]

    def targets(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Target weights of every rebalance decision (rows: decision dates)."""
        with self._lock:
            rows = self._db.execute("SELECT time, targets FROM decisions WHERE targets IS NOT NULL "
                                    "ORDER BY time").fetchall()
        index = pd.DatetimeIndex([pd.Timestamp(r["time"]) for r in rows])
        data = [json.loads(r["targets"]) for r in rows]
        return pd.DataFrame(data if data else None, index=index, columns=list(symbols), dtype=float)
