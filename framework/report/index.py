"""The list of past runs: ``qf report list`` and ``reports/index.html`` (newest first).

Several runs may finish at once: the index is rebuilt from the report folders under a lock on the report
root and replaced through a temporary file of its own, so no writer fails and no run goes missing.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qf.report.writer import TMP_PREFIX, owned_name, remove_stale

try:
    import fcntl
except ImportError:  # Windows: no flock; write_index re-checks what it wrote instead
    fcntl = None  # type: ignore[assignment]

COLUMNS = [("cagr", "CAGR", "{:.2%}"), ("sharpe", "Sharpe", "{:.2f}"), ("sortino", "Sortino", "{:.2f}"),
           ("max_drawdown", "Max DD", "{:.2%}"), ("volatility", "Vol", "{:.2%}"),
           ("final_equity", "Final equity", "{:,.0f}"), ("n_orders", "Orders", "{:d}")]


@dataclass
class RunEntry:
    experiment: str
    run_id: str
    path: Path
    created: str
    engine: str
    kind: str
    metrics: dict


def scan(root: Path) -> list[RunEntry]:
    """Every finished run below ``root`` (folders holding metrics.json), newest first."""
    out = []
    if not root.is_dir():
        return out
    for mpath in root.glob("*/*/metrics.json"):
        run = mpath.parent
        if run.name.startswith(TMP_PREFIX):
            continue
        try:
            metrics = json.loads(mpath.read_text())
            manifest = json.loads((run / "manifest.json").read_text()) if (run / "manifest.json").exists() else {}
        except (OSError, ValueError):  # unreadable, not UTF-8 or not JSON: not a run qf can list
            continue
        if not isinstance(metrics, dict) or not isinstance(manifest, dict):
            continue
        out.append(RunEntry(manifest.get("experiment", run.parent.name), run.name, run,
                            manifest.get("created", ""), manifest.get("engine", ""), manifest.get("kind", "backtest"),
                            metrics))
    out.sort(key=lambda e: (e.created, e.run_id), reverse=True)
    return out


def fmt(metrics: dict, key: str, pattern: str) -> str:
    v = metrics.get(key)
    if v is None:
        return ""
    try:
        return pattern.format(v)
    except (ValueError, TypeError):
        return str(v)


def render_index(root: Path, entries: list[RunEntry]) -> str:
    """The HTML of ``root/index.html`` for ``entries``."""
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in COLUMNS)
    rows = []
    for e in entries:
        rel = os.path.relpath(e.path, root)
        link = f"{rel}/tearsheet.html" if (e.path / "tearsheet.html").exists() else f"{rel}/"
        cells = "".join(f"<td>{html.escape(fmt(e.metrics, k, p))}</td>" for k, _, p in COLUMNS)
        rows.append(
            f"<tr><td>{html.escape(e.created)}</td><td>{html.escape(e.experiment)}</td>"
            f"<td><a href=\"{html.escape(link)}\">{html.escape(e.run_id)}</a></td>"
            f"<td>{html.escape(e.engine)}</td><td>{html.escape(e.kind)}</td>{cells}</tr>"
        )
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>qf runs</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}}
td:nth-child(-n+5),th:nth-child(-n+5){{text-align:left}}
</style></head><body><h1>qf runs</h1><p>{len(entries)} run(s), newest first.</p>
<table><tr><th>Created (UTC)</th><th>Experiment</th><th>Run</th><th>Engine</th><th>Kind</th>{head}</tr>
{''.join(rows)}
</table></body></html>
"""
    return doc


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the report root (the folder itself: no lock file is left behind)."""
    if fcntl is None:
        yield
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _replace(root: Path, doc: str) -> None:
    tmp = root / owned_name("index.html")  # unique per writer: no writer can move another's file
    try:
        tmp.write_text(doc, encoding="utf-8")
        os.replace(tmp, root / "index.html")
    finally:
        tmp.unlink(missing_ok=True)


def _clean(root: Path) -> None:
    """Remove what killed runs left: temporary report folders and index files whose owner is gone."""
    remove_stale(root, legacy=True)
    for child in root.iterdir():
        if child.is_dir() and not child.name.startswith("."):
            remove_stale(child, legacy=True)


def write_index(root: Path) -> Path | None:
    """Rewrite ``root/index.html`` linking every run's tear sheet with its key metrics.

    Returns its path, or None when it could not be written: the runs themselves are complete, so that is
    a warning on stderr, not an error.

    Example::

        write_index(Path("reports"))   # -> Path("reports/index.html")
    """
    index = root / "index.html"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root):
            _clean(root)
            for _ in range(5):
                entries = scan(root)
                _replace(root, render_index(root, entries))
                # under the lock the last writer scans after every earlier run was renamed into place, so
                # its index holds them all; without a lock, a run that landed while we scanned needs a pass
                if fcntl is not None or {e.path for e in scan(root)} == {e.path for e in entries}:
                    break
    except OSError as exc:
        sys.stderr.write(f"warning: {index}: the index of runs was not updated: {exc.strerror or exc}\n")
        return None
    return index
