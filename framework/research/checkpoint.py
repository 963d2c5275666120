"""Checkpoints of a running sweep: finished rows on disk as chunks finish, so an interrupted sweep resumes.

A sweep that stops before its report is written (Ctrl-C, the driver killed outright, a Ray cluster that
went away) keeps every combination that had finished. Running the same command again loads those rows and
computes only the others; the rows are the ones an uninterrupted run computes (every combination is
evaluated on its own, whatever chunk it is in), so ``sweep.parquet`` is the same.

Where: ``<report root>/.qf/sweeps/<experiment>-<fingerprint>/`` -- the report root is ``report.dir``, or the
parent folder of ``--out``. A stable place on purpose: every run gets a new report folder (a new run id),
so the checkpoint cannot live in it. The fingerprint covers everything the rows depend on: the experiment
(without the ``sweep:`` section's ranking options, ``report:`` and ``execution.executor``: where a sweep
runs does not change its rows), the swept grid, the data's values, the contents of local-file components
(``strategies/x.py:Class``), and the qf, Python and plugin versions. Change any of these and the old rows
are not used (they stay on disk until deleted; the folder can be deleted at any time). The checkpoint is
removed once the sweep's report is written. ``execution.executor.resume: false`` recomputes everything
(the run still checkpoints, for the next one).

Each finished chunk is one file (``rows-*.json``: grid positions and rows; the return series, when the
sweep keeps them for the PBO, in ``rows-*.returns.parquet`` written first), written to a temporary name and
renamed into place, so a file that exists is complete: a driver killed while writing leaves only a
temporary file, which the next run removes.

Example::

    ckpt = SweepCheckpoint.for_sweep(exp, bars, grid, root=Path("reports"))
    done = ckpt.load()                  # {grid position: row} finished by an earlier run
    ckpt.save([3, 4], [row3, row4])     # as a chunk finishes
    ckpt.remove()                       # once the report is written
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qf.bars import Bars
from qf.report.writer import owned_name, remove_stale
from qf.research.ray_cluster import local_files, versions

__all__ = ["SweepCheckpoint", "fingerprint", "checkpoint_root"]

# the key under which a row carries its return series (qf.research.sweep.RETURNS)
RETURNS = "_returns"
# bumped when the files' layout changes, so that an older checkpoint is never misread
LAYOUT = 1

log = logging.getLogger(__name__)


def _bars_digest(bars: Bars) -> str:
    """A digest of the data's values, index and symbols (what the rows are computed from)."""
    h = hashlib.sha256()
    h.update(f"{bars.source}|{list(map(str, bars.close.columns))}|{bars.index.dtype}".encode())
    h.update(np.ascontiguousarray(bars.index.asi8).tobytes())
    for name in (*bars.fields, "gaps"):
        frame = getattr(bars, name, None)
        if frame is None:
            continue
        values = np.ascontiguousarray(frame.to_numpy())
        h.update(f"|{name}|{values.dtype}|{values.shape}".encode())
        h.update(values.tobytes())
    return h.hexdigest()


def _rows_raw(raw: dict[str, Any]) -> dict[str, Any]:
    """The part of the experiment the rows depend on (the grid is hashed separately)."""
    doc = {k: v for k, v in raw.items() if k not in ("sweep", "walk_forward", "report")}
    execution = doc.get("execution")
    if isinstance(execution, dict):
        doc["execution"] = {k: v for k, v in execution.items() if k != "executor"}
    return doc


def fingerprint(exp: Any, bars: Bars, grid: pd.DataFrame, trade_from: int = 0, keep_returns: bool = False) -> str:
    """What a sweep's rows depend on, as a hex digest: equal digests mean interchangeable rows.

    Example::

        fingerprint(exp, bars, grid) == fingerprint(exp_on_other_cluster, bars, grid)   # True
    """
    h = hashlib.sha256()
    h.update(f"layout {LAYOUT}|from {trade_from}|returns {bool(keep_returns)}\n".encode())
    h.update(json.dumps(_rows_raw(exp.raw), sort_keys=True, default=repr).encode())
    h.update(json.dumps(versions(), sort_keys=True, default=repr).encode())
    cells = [[_plain(v) for v in row] for row in grid.itertuples(index=False)]  # json writes floats exactly
    h.update(json.dumps([list(map(str, grid.columns)), list(map(str, grid.dtypes)), cells], default=repr).encode())
    h.update(_bars_digest(bars).encode())
    base_dir = exp.path.parent if exp.path is not None else None
    for rel, path in sorted(local_files(exp.raw, base_dir).items()):
        h.update(f"|{rel}|".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def checkpoint_root(exp: Any, out: Path | None) -> Path:
    """``<report root>/.qf/sweeps``: the report root is ``out``'s parent, or ``report.dir``."""
    root = Path(out).parent if out is not None else Path(exp.spec.report.dir)
    return root / ".qf" / "sweeps"


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


class SweepCheckpoint:
    """The finished rows of one sweep (one fingerprint), one file per finished chunk.

    Args:
        folder: the checkpoint's folder (created on the first save).
        n_rows: the grid's length (rows at other positions are ignored).
        keep_returns: rows carry their return series (``_returns``), stored next to them.

    Example::

        ckpt = SweepCheckpoint(Path("reports/.qf/sweeps/sma-0123abcd"), n_rows=90)
        ckpt.save([0], [{"sharpe": 0.5, ...}])
        ckpt.load()   # {0: {"sharpe": 0.5, ...}}
    """

    def __init__(self, folder: Path, n_rows: int, keep_returns: bool = False) -> None:
        self.folder = Path(folder)
        self.n_rows = n_rows
        self.keep_returns = keep_returns
        self.saved = 0  # rows this process has written
        self.disabled = False  # set when a save failed: the sweep goes on without checkpoints

    @classmethod
    def for_sweep(cls, exp: Any, bars: Bars, grid: pd.DataFrame, *, root: Path, trade_from: int = 0,
                  keep_returns: bool = False) -> SweepCheckpoint:
        """The checkpoint of this sweep under ``root`` (see :func:`checkpoint_root`)."""
        digest = fingerprint(exp, bars, grid, trade_from, keep_returns)
        return cls(Path(root) / f"{exp.name}-{digest[:20]}", len(grid), keep_returns)

    def load(self) -> dict[int, dict[str, Any]]:
        """Rows finished by earlier runs, by grid position (unreadable or incomplete files are skipped)."""
        if not self.folder.is_dir():
            return {}

        remove_stale(self.folder)  # temporary files of a run killed while writing
        rows: dict[int, dict[str, Any]] = {}
        for path in sorted(self.folder.glob("rows-*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                positions, part = doc["positions"], doc["rows"]
                if doc.get("layout") != LAYOUT or len(positions) != len(part):
                    continue
                returns = self._load_returns(path) if self.keep_returns else None
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a file we cannot trust is recomputed, never used
            for pos, row in zip(positions, part, strict=True):
                # JSON true is an int to Python, and a row must be an object: anything else is not ours
                if not (isinstance(pos, int) and not isinstance(pos, bool) and 0 <= pos < self.n_rows) \
                        or pos in rows or not isinstance(row, dict):
                    continue
                if returns is not None:
                    if pos not in returns:
                        continue
                    row[RETURNS] = returns[pos]
                rows[pos] = row
        return rows

    @staticmethod
    def _load_returns(path: Path) -> dict[int, pd.Series]:
        long = pd.read_parquet(path.with_suffix(".returns.parquet"))
        out = {}
        for pos, part in long.groupby("position", sort=False):
            out[int(pos)] = pd.Series(part["value"].to_numpy(dtype=float), index=pd.DatetimeIndex(part["time"]),
                                      name="returns")
        return out

    def save(self, positions: list[int], rows: list[dict[str, Any]]) -> None:
        """Write one finished chunk (atomically: a reader sees all of it or nothing).

        A checkpoint that cannot be written (a full disk, ``.qf`` being a file, the folder removed by a
        concurrent sweep that finished) must not cost the sweep itself: one warning, and the sweep goes on
        without checkpoints (it just cannot be resumed).
        """
        if not positions or self.disabled:
            return
        try:
            self._save(positions, rows)
        except OSError as exc:
            self.disabled = True
            log.warning("cannot checkpoint the sweep in %s (%s): it goes on, but an interrupted run will start "
                        "over", self.folder, exc.strerror or exc)

    def _save(self, positions: list[int], rows: list[dict[str, Any]]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = f"rows-{os.getpid()}-{secrets.token_hex(6)}"
        if self.keep_returns:  # first: the .json's presence says the chunk is complete
            parts = [pd.DataFrame({"position": np.full(len(row[RETURNS]), pos, dtype=np.int64),
                                   "time": row[RETURNS].index, "value": row[RETURNS].to_numpy(dtype=float)})
                     for pos, row in zip(positions, rows, strict=True)]
            self._atomic(stem + ".returns.parquet", owned_name(stem),
                         lambda tmp: pd.concat(parts, ignore_index=True).to_parquet(tmp, index=False))
        doc = {"layout": LAYOUT, "positions": [int(p) for p in positions],
               "rows": [{k: _plain(v) for k, v in row.items() if k != RETURNS} for row in rows]}
        text = json.dumps(doc)  # floats round-trip exactly (repr); NaN and inf are written as NaN, Infinity
        self._atomic(stem + ".json", owned_name(stem), lambda tmp: tmp.write_text(text, encoding="utf-8"))
        self.saved += len(positions)

    def _atomic(self, name: str, tmp_name: str, write: Any) -> None:
        tmp = self.folder / tmp_name
        try:
            write(tmp)
            os.replace(tmp, self.folder / name)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def remove(self) -> None:
        """Delete the checkpoint (its sweep's report is written)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # the parents, once no other sweep's checkpoint is left
            self.folder.parent.rmdir()
            self.folder.parent.parent.rmdir()
