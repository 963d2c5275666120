"""compare.html: runs side by side (``qf report compare A B [C…]``).

The page overlays the runs' equity (as growth of 1 from the first day they all cover, so runs with different
cash or starts compare) and drawdowns, puts their metrics side by side under the rows that say what each run
was (period, kind, engine, broker, --set overrides), and lists every config value that differs between them.

Example::

    runs = [load_run(Path("reports/hrp_swing/A")), load_run(Path("reports/hrp_swing/B"))]
    write_compare(runs, [("sharpe", ["1.020", "0.870"])], Path("reports/compare-20240101-120000.html"))
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from qf.errors import QfError
from qf.paper.drift import ks, psi, read_rows, summary
from qf.report.index import main_page
from qf.report.page import figure_div, html_page, plotly_js

Rows = list[tuple[str, list[str]]]

# in the <head> of every compare page: how write_compare recognises a page it may replace
COMPARE_MARK = '<meta name="generator" content="qf report compare">'


@dataclass
class RunFiles:
    """What compare reads of one run folder (metrics are checked by the caller, which reports bad files)."""

    path: Path
    label: str
    metrics: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)
    equity: pd.Series | None = None
    weights: pd.DataFrame | None = None


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise QfError(f"{path}: cannot read: {exc}") from None
    return data if isinstance(data, dict) else {}


def load_run(path: Path, metrics: dict[str, Any], label: str | None = None) -> RunFiles:
    """The files of run folder ``path`` that compare shows (missing optional files are left empty)."""
    config: Any = {}
    if (path / "config.yaml").is_file():
        try:
            config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            raise QfError(f"{path / 'config.yaml'}: cannot read: {exc}") from None
    equity = None
    if (path / "equity.parquet").is_file():
        try:
            frame = pd.read_parquet(path / "equity.parquet")
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise QfError(f"{path / 'equity.parquet'}: cannot read: {exc}") from None
        if "equity" in frame.columns and len(frame):
            equity = frame["equity"].astype(float)
    weights = None
    if (path / "weights.parquet").is_file():
        try:
            weights = pd.read_parquet(path / "weights.parquet").astype(float)
        except Exception:  # noqa: BLE001 - optional: the drift rows of the weights are left out without it
            weights = None
    return RunFiles(path, label or f"{path.parent.name}/{path.name}", metrics, _json(path / "manifest.json"),
                    config if isinstance(config, dict) else {}, _json(path / "paper.json"), equity, weights)


def unique_labels(paths: list[Path]) -> list[str]:
    """``experiment/run`` for each path; a run given twice gets ``#2`` so the columns stay apart."""
    out: list[str] = []
    for p in paths:
        base = f"{p.parent.name}/{p.name}"
        label, n = base, 1
        while label in out:
            n += 1
            label = f"{base} #{n}"
        out.append(label)
    return out


def broker_of(run: RunFiles) -> str:
    """The broker that filled the run's orders: the paper session's, else the backtest's simulated fills."""
    if run.paper.get("broker"):
        return str(run.paper["broker"])
    broker = run.config.get("broker")
    kind = broker.get("type") if isinstance(broker, dict) else None
    return f"simulated ({kind})" if run.manifest.get("engine") == "backtrader" and kind else "simulated"


def describe_rows(runs: list[RunFiles]) -> Rows:
    """What each run was: kind, engine, broker, its --set overrides, and when it was created."""
    def overrides(r: RunFiles) -> str:
        items = r.manifest.get("overrides")
        return " ".join(f"--set {o}" for o in items) if isinstance(items, list) and items else "-"

    return [("kind", [str(r.manifest.get("kind", "?")) for r in runs]),
            ("engine", [str(r.manifest.get("engine", "?")) for r in runs]),
            ("broker", [broker_of(r) for r in runs]),
            ("overrides", [overrides(r) for r in runs]),
            ("created", [str(r.manifest.get("created", "?")) for r in runs])]


def flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "l": [{"x": 2}]}`` -> ``{"a.b": 1, "l.0.x": 2}`` (empty containers kept as values)."""
    if isinstance(doc, dict) and doc:
        out: dict[str, Any] = {}
        for k, v in doc.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(doc, list) and doc:
        out = {}
        for i, v in enumerate(doc):
            out.update(flatten(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1] or "(top level)": doc}


def config_diff(runs: list[RunFiles]) -> list[tuple[str, list[str]]]:
    """Each dotted config key whose value is not the same in every run, with each run's value."""
    flat = [flatten(r.config) for r in runs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    missing = object()
    rows = []
    for k in keys:
        values = [f.get(k, missing) for f in flat]
        if all(v == values[0] for v in values[1:]):
            continue
        rows.append((k, ["(absent)" if v is missing else json.dumps(v, default=str) for v in values]))
    return rows


def common_start(runs: list[RunFiles]) -> pd.Timestamp | None:
    """The first date every run's equity covers, or None when the runs share no date (or only one has equity)."""
    curves = [r.equity for r in runs if r.equity is not None and len(r.equity)]
    if len(curves) < 2:
        return None
    start = max(c.index[0] for c in curves)
    return start if all(c.index[-1] >= start for c in curves) else None


def overlays(runs: list[RunFiles]):
    """The equity and drawdown overlays: one line per run with an equity.parquet.

    Runs that overlap are rebased to 1 on the first date they all cover (a paper session that starts late
    and its backtest then start level); otherwise each run is its equity over its initial cash.
    """
    import plotly.graph_objects as go

    start = common_start(runs)
    eq_fig, dd_fig = go.Figure(), go.Figure()
    for r in runs:
        if r.equity is None:
            continue
        cash = r.metrics.get("initial_cash")
        base = float(cash) if isinstance(cash, int | float) and cash else float(r.equity.iloc[0])
        if start is not None:
            base = float(r.equity.asof(start))
        growth = r.equity / base
        drawdown = r.equity / r.equity.cummax() - 1.0
        name = f"<extra>{html.escape(r.label)}</extra>"
        eq_fig.add_trace(go.Scatter(x=growth.index, y=growth.to_numpy(), mode="lines", name=r.label,
                                    hovertemplate="%{x|%Y-%m-%d}<br>%{y:.3f}" + name))
        dd_fig.add_trace(go.Scatter(x=drawdown.index, y=drawdown.to_numpy(), mode="lines", name=r.label,
                                    hovertemplate="%{x|%Y-%m-%d}<br>%{y:.2%}" + name))
    title = (f"Equity, growth of 1 from {start:%Y-%m-%d} (the first day every run covers)" if start is not None
             else "Equity, growth of 1 (equity / initial cash)")
    eq_fig.update_layout(title=title, height=420, hovermode="x unified", legend={"orientation": "h", "y": -0.15})
    if start is not None:
        eq_fig.add_vline(x=start, line={"dash": "dot", "color": "#888"})
    dd_fig.update_layout(title="Drawdown from the running peak", height=320, hovermode="x unified",
                         yaxis={"tickformat": ".0%"}, legend={"orientation": "h", "y": -0.2})
    return eq_fig, dd_fig


def _table(labels: list[str], rows: Rows, first: str) -> str:
    head = f'<th class="l">{html.escape(first)}</th>' + "".join(f"<th>{html.escape(x)}</th>" for x in labels)
    body = "".join(f'<tr><td class="l">{html.escape(k)}</td>'
                   + "".join(f'<td class="num">{html.escape(v)}</td>' for v in vals) + "</tr>" for k, vals in rows)
    return f'<table class="qf"><tr>{head}</tr>{body}</table>'


def _link(run: RunFiles, page_dir: Path) -> str:
    target = main_page(run.path) or run.path
    return os.path.relpath(target.resolve(), page_dir.resolve()).replace(os.sep, "/")


def _ordered(described: Rows, metric_rows: Rows) -> Rows:
    """The period first (what every figure covers), then what the runs were, then the figures."""
    period = [row for row in metric_rows if row[0] == "period"]
    return [*period, *described, *[row for row in metric_rows if row[0] != "period"]]


def render_compare(runs: list[RunFiles], metric_rows: Rows, page_dir: Path) -> str:
    """The HTML of the compare page written in ``page_dir`` (each run linked to its main page, relative);
    ``metric_rows`` are the figures as the terminal table prints them."""
    labels = [r.label for r in runs]
    title = "compare: " + " vs ".join(labels)
    eq_fig, dd_fig = overlays(runs)
    no_equity = [r.label for r in runs if r.equity is None]
    diff = config_diff(runs)
    parts = [f"<h1>Compare {len(runs)} runs</h1>",
             "<ul>" + "".join(f'<li><a href="{html.escape(_link(r, page_dir))}">{html.escape(r.label)}</a>'
                              f" ({html.escape(str(r.manifest.get('experiment', '?')))})</li>" for r in runs) + "</ul>",
             "<h2>Metrics side by side</h2>",
             _table(labels, _ordered(describe_rows(runs), metric_rows), "metric"),
             figure_div(eq_fig), figure_div(dd_fig)]
    if no_equity:
        parts.append(f'<p class="warn">No equity.parquet in {html.escape(", ".join(no_equity))}: not drawn.</p>')
    drift = drift_section(runs)
    if drift:
        parts.append(drift)
    parts.append("<h2>Config differences</h2>")
    parts.append(_table(labels, diff, "config key") if diff else
                 '<p class="note">The runs\' config.yaml files are identical.</p>')
    return html_page(title, "\n".join(parts), COMPARE_MARK + plotly_js())


# reference samples smaller than this are not used on their own (PSI over 10 bins needs a few per bin)
MIN_REFERENCE = 50


def _paper_and_backtests(runs: list[RunFiles]) -> list[tuple[RunFiles, RunFiles]]:
    papers = [r for r in runs if r.manifest.get("kind") == "paper"]
    backtests = [r for r in runs if r.manifest.get("kind") != "paper"]
    return [(p, b) for p in papers for b in backtests]


def _reference(values: pd.Series, before: pd.Timestamp) -> tuple[pd.Series, str]:
    """The backtest's values before the paper's first bar when there are enough, else all of them."""
    early = values[values.index < before]
    if len(early) >= MIN_REFERENCE:
        return early, f"backtest before {before:%Y-%m-%d}"
    return values, "whole backtest"


def drift_rows(paper: RunFiles, backtest: RunFiles) -> list[dict[str, Any]]:
    """PSI / KS (:mod:`qf.paper.drift`) of the paper run's per-bar returns and non-zero target weights against
    the backtest's: the reference is the backtest's values before the paper's first bar when it has at least
    :data:`MIN_REFERENCE` of them (the history the strategy was tested on), else the whole backtest.

    Example::

        drift_rows(load_run(paper_dir, m1), load_run(backtest_dir, m2))[0]["psi"]
    """
    out: list[dict[str, Any]] = []
    if paper.equity is None or backtest.equity is None or not len(paper.equity):
        return out
    start = paper.equity.index[0]
    pairs: list[tuple[str, pd.Series, pd.Series]] = [
        ("returns", paper.equity.pct_change().dropna(), backtest.equity.pct_change().dropna())]
    if paper.weights is not None and backtest.weights is not None:
        def stacked(w: pd.DataFrame) -> pd.Series:
            long = w.stack(future_stack=True)
            long = long[long.notna() & (long != 0)]
            return pd.Series(long.to_numpy(dtype=float), index=long.index.get_level_values(0))
        pairs.append(("target weights", stacked(paper.weights), stacked(backtest.weights)))
    for name, cur, bt in pairs:
        ref, what = _reference(bt, start)
        p = psi(ref.to_numpy(), cur.to_numpy())
        stat, pvalue = ks(ref.to_numpy(), cur.to_numpy())
        out.append({"variable": name, "reference": what, "n_reference": len(ref), "n_paper": len(cur), "psi": p,
                    "ks_stat": stat, "ks_pvalue": pvalue})
    return out


def drift_section(runs: list[RunFiles]) -> str:
    """The page's drift section for every (paper run, other run) pair, plus each paper run's own drift.csv
    summary (its features and signal output measured during the session); '' without a paper run."""
    pairs = _paper_and_backtests(runs)
    papers = [r for r in runs if r.manifest.get("kind") == "paper"]
    if not papers:
        return ""
    parts = ["<h2>Drift: paper vs backtest</h2>",
             '<p class="note">PSI over 10 quantile bins of the reference and the two-sample KS test (scipy), per '
             "bar returns and the non-zero target weights of the paper run against the backtest's. PSI &gt; 0.1 is "
             "usually read as a shift, &gt; 0.25 as a major one.</p>"]

    def fmt(v: Any) -> str:
        return "n/a" if isinstance(v, float) and v != v else (f"{v:.4g}" if isinstance(v, float) else str(v))

    cols = ["variable", "reference", "n_reference", "n_paper", "psi", "ks_stat", "ks_pvalue"]
    for paper, backtest in pairs:
        rows = drift_rows(paper, backtest)
        if not rows:
            continue
        table = [(r["variable"], [fmt(r[c]) for c in cols[1:]]) for r in rows]
        parts.append(f"<h3>{html.escape(paper.label)} against {html.escape(backtest.label)}</h3>")
        parts.append(_table(cols[1:], table, "variable"))
    for paper in papers:
        measured = read_rows(paper.path)
        if not len(measured):
            continue
        # the report's risk_events.csv holds the session's drift events (symbol = the variable)
        events = pd.read_csv(paper.path / "risk_events.csv") if (paper.path / "risk_events.csv").is_file() else None
        if events is not None and not {"event", "symbol"} <= set(events.columns):
            events = None
        frame = summary(measured, events)
        n_events = int((events["event"] == "drift").sum()) if events is not None else 0
        shown = ["kind", "bars", "drifting_bars", "max_psi", "max_psi_at", "last_psi", "last_ks_pvalue"]
        table = [(str(r["variable"]), [fmt(r[c]) for c in shown]) for r in frame.to_dict("records")]
        parts.append(f"<h3>{html.escape(paper.label)}: drift measured during the session (drift.csv, "
                     f"{n_events} drift event(s))</h3>")
        parts.append(_table(shown, table, "variable"))
    return "\n".join(parts)


def default_page(runs: list[RunFiles], stamp: str) -> Path:
    """``<reports root>/compare-<stamp>.html``: the root holding the first run (``reports/<exp>/<run>``), or
    ``reports/`` for a run written elsewhere with ``--out``."""
    first = runs[0]
    root = first.path.parent.parent if first.manifest.get("experiment") == first.path.parent.name else Path("reports")
    return root / f"compare-{stamp}.html"


def write_compare(runs: list[RunFiles], metric_rows: Rows, path: Path) -> Path:
    """Write the compare page to ``path`` (its folder is created) and return it.

    An existing file is replaced only when it is a compare page itself (re-running a comparison); any other
    file is refused with a :class:`QfError`, so a mistyped ``--out`` never destroys a run's files. The page
    is written to a temporary file and renamed, so a failure leaves no half-written page.
    """
    if path.is_dir():
        raise QfError(f"--out {path}: is a folder; name the page to write, e.g. {path / 'compare.html'}")
    if path.exists() and not _is_compare_page(path):
        raise QfError(f"--out {path}: exists and is not a qf compare page; choose another file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(render_compare(runs, metric_rows, path.parent), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _is_compare_page(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return COMPARE_MARK.encode() in f.read(4096)
    except OSError:
        return False
