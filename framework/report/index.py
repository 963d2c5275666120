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
from dataclasses import dataclass, field
from pathlib import Path

from qf.report.page import html_page
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
    overrides: list[str] = field(default_factory=list)  # the run's --set items (manifest.json)

    @property
    def main_page(self) -> Path | None:
        """The page to open first: see :func:`main_page`."""
        return main_page(self.path)


# the page a run is read from first, by what the folder holds: a sweep's or CPCV's choice page, else the tear sheet
MAIN_PAGES = ("sweep.html", "cpcv.html", "tearsheet.html")


def main_page(run: Path) -> Path | None:
    """``run``'s main page (sweep.html for a sweep, tearsheet.html otherwise), or None when it has no page.

    Example::

        main_page(Path("reports/sma_cross/20240101-120000"))   # -> .../sweep.html for a sweep
    """
    for name in MAIN_PAGES:
        if (run / name).is_file():
            return run / name
    return None


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
        overrides = manifest.get("overrides")
        out.append(RunEntry(manifest.get("experiment", run.parent.name), run.name, run,
                            manifest.get("created", ""), manifest.get("engine", ""), manifest.get("kind", "backtest"),
                            metrics, [str(o) for o in overrides] if isinstance(overrides, list) else []))
    out.sort(key=lambda e: (e.created, e.run_id), reverse=True)
    return out


def fmt(metrics: dict, key: str, pattern: str) -> str:
    if key not in metrics:
        return ""
    v = metrics[key]
    if v is None or (isinstance(v, float) and v != v):  # null in strict JSON, NaN in older reports
        return "n/a"  # a run without the figure (e.g. no trade), not the text "nan"
    try:
        return pattern.format(v)
    except (ValueError, TypeError):
        return str(v)


# clicking a header sorts by it (numbers by their raw value in data-v); the box keeps the rows holding every word
SCRIPT = """
const table = document.getElementById("runs"), body = table.tBodies[0], box = document.getElementById("filter");
const count = document.getElementById("count");
function filterRows() {
  const words = box.value.toLowerCase().split(/\\s+/).filter(Boolean);
  let shown = 0;
  for (const row of body.rows) {
    const text = row.textContent.toLowerCase();
    row.hidden = !words.every(w => text.includes(w));
    if (!row.hidden) shown++;
  }
  count.textContent = shown + " of " + body.rows.length + " run(s) shown";
}
box.addEventListener("input", filterRows);
table.tHead.querySelectorAll("th").forEach((th, i) => th.addEventListener("click", () => {
  const asc = th.getAttribute("aria-sort") !== "ascending";
  table.tHead.querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", asc ? "ascending" : "descending");
  const numeric = th.dataset.type === "num";
  const key = row => { const c = row.cells[i]; return c.dataset.v !== undefined ? c.dataset.v : c.textContent; };
  const rows = [...body.rows];
  rows.sort((a, b) => {
    let x = key(a), y = key(b);
    if (numeric) {
      x = x === "" ? NaN : Number(x); y = y === "" ? NaN : Number(y);
      if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);  // runs without the figure go last
      return asc ? x - y : y - x;
    }
    return asc ? x.localeCompare(y) : y.localeCompare(x);
  });
  rows.forEach(r => body.appendChild(r));
}));
filterRows();
"""

INDEX_STYLE = """<style>
th{cursor:pointer;user-select:none}th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}#filter{font-size:1em;padding:4px 8px;width:24em}
td.o{font-family:ui-monospace,monospace;font-size:.85em;white-space:normal;max-width:22em}
</style>"""


def _raw(metrics: dict, key: str) -> str:
    v = metrics.get(key)
    return str(v) if isinstance(v, int | float) and not isinstance(v, bool) and v == v else ""


def render_index(root: Path, entries: list[RunEntry]) -> str:
    """The HTML of ``root/index.html`` for ``entries``: sortable, filterable, each run linked to its main page."""
    head = "".join(f'<th data-type="num">{html.escape(label)}</th>' for _, label, _ in COLUMNS)
    rows = []
    for e in entries:
        page = e.main_page
        link = os.path.relpath(page if page is not None else e.path, root).replace(os.sep, "/")
        cells = "".join(f'<td data-v="{_raw(e.metrics, k)}">{html.escape(fmt(e.metrics, k, p))}</td>'
                        for k, _, p in COLUMNS)
        overrides = "<br>".join(f"--set {html.escape(o)}" for o in e.overrides)
        rows.append(
            f'<tr><td class="l">{html.escape(e.created)}</td><td class="l">{html.escape(e.experiment)}</td>'
            f'<td class="l"><a href="{html.escape(link)}">{html.escape(e.run_id)}</a></td>'
            f'<td class="l">{html.escape(e.engine)}</td><td class="l">{html.escape(e.kind)}</td>'
            f'<td class="l o">{overrides}</td>{cells}</tr>'
        )
    body = f"""<h1>qf runs</h1>
<p class="note">{len(entries)} run(s) in {html.escape(str(root))}, newest first. Click a column to sort; each run
links to its main page (sweep.html for a sweep, the tear sheet otherwise).</p>
<p><input id="filter" type="search" placeholder="filter: words that must all appear in the row" aria-label="filter">
<span id="count" class="note"></span></p>
<table class="qf" id="runs"><thead><tr><th class="l">Created (UTC)</th><th class="l">Experiment</th>
<th class="l">Run</th><th class="l">Engine</th><th class="l">Kind</th><th class="l">Overrides (--set)</th>{head}</tr>
</thead><tbody>
{chr(10).join(rows)}
</tbody></table>
<script>{SCRIPT}</script>"""
    return html_page("qf runs", body, INDEX_STYLE)


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
    """Rewrite ``root/index.html`` linking every run's main page with its key metrics and overrides.

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
