"""The list of past runs: ``qf report list`` and ``reports/index.html`` (newest first)."""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from pathlib import Path

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
        if run.name.startswith(".tmp-"):
            continue
        try:
            metrics = json.loads(mpath.read_text())
            manifest = json.loads((run / "manifest.json").read_text()) if (run / "manifest.json").exists() else {}
        except (OSError, json.JSONDecodeError):
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


def write_index(root: Path) -> Path:
    """Rewrite ``root/index.html`` linking every run's tear sheet with its key metrics."""
    entries = scan(root)
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
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / ".index.html.tmp"
    tmp.write_text(doc, encoding="utf-8")
    os.replace(tmp, root / "index.html")
    return root / "index.html"
