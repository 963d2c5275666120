"""sweep.html: the page that helps choose a sweep's combination.

It shows the metric over the grid (a heatmap with the value in every cell and the best cell outlined for
two parameters, a line for one, parallel coordinates beyond), warns when the best sits on the grid's edge
(the optimum may lie outside the values tried), says how much of the best survives one grid step away
(the neighbourhood: a plateau or a spike?), states the best's probabilistic and deflated Sharpe ratio, and
lists the top combinations, the best linked to its tear sheet (the only combination with a full report).

Example::

    sweep_html(table, ["signal.params.fast", "signal.params.slow"], "sharpe", Path("r/sweep.html"),
               "sma_cross: sharpe by parameters", inference)
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qf.report.page import PERCENT, figure_div, format_metric, format_param, html_page, plotly_js
from qf.research.sweep import LOWER_IS_BETTER, inference_html, rank

# columns of the top table after the parameters, in this order (the chosen metric comes first)
TOP_COLUMNS = ("sharpe", "sortino", "cagr", "total_return", "max_drawdown", "volatility", "turnover", "fees_paid",
               "n_orders", "final_equity")
TOP_ROWS = 50
# above this many cells the heatmap's numbers would be unreadable: hover shows them instead
MAX_CELL_LABELS = 400


@dataclass
class Neighbourhood:
    """The best combination's metric and that of the combinations one grid step away in every parameter."""

    best: float
    values: pd.Series  # the neighbours' metric (finite ones), indexed like the table

    @property
    def mean(self) -> float:
        return float(self.values.mean()) if len(self.values) else float("nan")

    @property
    def worst(self) -> float:
        return float(self.values.min()) if len(self.values) else float("nan")


def grid_positions(table: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    """Each row's position on each parameter's axis (0 = the smallest value tried; first seen for text)."""
    pos = {}
    for p in params:
        col = table[p]
        values = sorted(col.unique()) if pd.api.types.is_numeric_dtype(col) else list(dict.fromkeys(col))
        lookup = {v: i for i, v in enumerate(values)}
        pos[p] = col.map(lookup).astype(int)
    return pd.DataFrame(pos, index=table.index)


def edge_params(table: pd.DataFrame, params: list[str], best: pd.Series) -> list[str]:
    """Sentences naming each numeric parameter whose best value is the smallest or largest tried."""
    out = []
    for p in params:
        col = table[p]
        if not pd.api.types.is_numeric_dtype(col) or col.nunique() < 2:
            continue  # an unordered or single value has no edge to move beyond
        v = best[p]
        if v == col.min():
            out.append(f"{p} = {format_param(v)} is the smallest value tried")
        elif v == col.max():
            out.append(f"{p} = {format_param(v)} is the largest value tried")
    return out


def neighbourhood(table: pd.DataFrame, params: list[str], metric: str, best_label: Any) -> Neighbourhood:
    """The metric of the combinations at most one grid step from the best in every numeric parameter (and
    with the best's value of every text parameter, which has no order).

    Example::

        nb = neighbourhood(table, ["fast", "slow"], "sharpe", ranked.index[0])
        nb.mean / nb.best   # how much of the best survives a small change of the parameters
    """
    pos = grid_positions(table, params)
    # one step on a numeric axis; an unordered (text) value has no neighbour, so it must stay the same
    steps = pd.Series({p: 1 if pd.api.types.is_numeric_dtype(table[p]) else 0 for p in params})
    near = (pos - pos.loc[best_label]).abs().le(steps, axis=1).all(axis=1)
    near.loc[best_label] = False
    vals = pd.to_numeric(table.loc[near, metric], errors="coerce")
    return Neighbourhood(float(table.loc[best_label, metric]), vals[np.isfinite(vals)])


def _d3(metric: str) -> str:
    return ".2%" if metric in PERCENT else ".3f"


def _figure(table: pd.DataFrame, params: list[str], metric: str, best: pd.Series, title: str):
    import plotly.express as px
    import plotly.graph_objects as go

    if len(params) == 2:
        piv = table.pivot_table(index=params[0], columns=params[1], values=metric, aggfunc="first", dropna=False)
        xs = [format_param(v) for v in piv.columns]
        ys = [format_param(v) for v in piv.index]
        fmt = _d3(metric)
        labels = piv.size <= MAX_CELL_LABELS
        fig = go.Figure(go.Heatmap(
            z=piv.to_numpy(dtype=float), x=xs, y=ys, colorscale="RdYlGn",
            reversescale=metric in LOWER_IS_BETTER, colorbar={"title": metric},
            texttemplate=f"%{{z:{fmt}}}" if labels else None, textfont={"size": 11},
            hovertemplate=f"{params[1]}=%{{x}}<br>{params[0]}=%{{y}}<br>{metric}=%{{z:{fmt}}}<extra></extra>"))
        # outline the best cell in axis-domain units: numeric-looking category names ("40") would make plotly
        # read data coordinates as names, and the heatmap fills each axis' domain in equal cells
        bx, by = list(piv.columns).index(best[params[1]]), list(piv.index).index(best[params[0]])
        nx, ny = len(xs), len(ys)
        fig.add_shape(type="rect", xref="x domain", yref="y domain", x0=bx / nx, x1=(bx + 1) / nx,
                      y0=by / ny, y1=(by + 1) / ny, line={"color": "#1a1aff", "width": 4})
        fig.add_annotation(xref="x domain", yref="y domain", x=(bx + 0.5) / nx, y=(by + 1) / ny, text="best",
                           showarrow=True, arrowhead=2, ax=0, ay=-26, font={"color": "#1a1aff", "size": 13},
                           bgcolor="white")
        fig.update_xaxes(title=params[1], type="category")
        fig.update_yaxes(title=params[0], type="category", ticksuffix=" ")  # keep labels off the outline
    elif len(params) == 1:
        p = params[0]
        data = table.sort_values(p)
        fig = px.line(data, x=p, y=metric, markers=True)
        fig.add_trace(go.Scatter(x=[best[p]], y=[best[metric]], mode="markers+text", text=["best"],
                                 textposition="top center", showlegend=False,
                                 marker={"symbol": "star", "size": 16, "color": "#1a1aff"}))
        fig.update_yaxes(tickformat=_d3(metric))
    else:
        numeric = [p for p in params if pd.api.types.is_numeric_dtype(table[p])]
        fig = px.parallel_coordinates(table, dimensions=[*numeric, metric], color=metric,
                                      color_continuous_scale="RdYlGn_r" if metric in LOWER_IS_BETTER else "RdYlGn")
    fig.update_layout(title=title, height=560 if len(params) == 2 else 480, margin={"t": 60})
    return fig


def _best_sentence(params: list[str], metric: str, best: pd.Series) -> str:
    combo = ", ".join(f"<b>{html.escape(p)} = {html.escape(format_param(best[p]))}</b>" for p in params)
    value = format_metric(metric, best[metric])
    return f"<p>Best by {html.escape(metric)}: {combo} ({html.escape(metric)} {value}).</p>"


def _edge_html(edges: list[str]) -> str:
    if not edges:
        return ""
    items = "; ".join(html.escape(e) for e in edges)
    return (f'<p class="warn"><b>Warning: the best combination sits on the edge of the grid</b> ({items}). '
            "The optimum may lie outside the values tried: widen the range before trusting it.</p>")


def _stability_html(table: pd.DataFrame, params: list[str], metric: str, best_label: Any) -> str:
    nb = neighbourhood(table, params, metric, best_label)
    head = (f"<h2>Parameter stability: the best and its neighbours</h2><p>The {html.escape(metric)} of the "
            "combinations one grid step from the best in every parameter. A plateau (neighbours close to the "
            "best) is more likely to hold out of sample than a lone spike.</p>")
    if not len(nb.values):
        return head + '<p class="note">The best combination has no evaluated neighbour on the grid.</p>'
    def f(v: float) -> str:
        return format_metric(metric, v)

    rows = [("best", f(nb.best)), (f"neighbours ({len(nb.values)})", ""), ("mean of the neighbours", f(nb.mean)),
            ("worst neighbour", f(nb.worst)), ("best neighbour", f(float(nb.values.max())))]
    if metric not in LOWER_IS_BETTER and nb.best > 0:
        rows.append(("mean / best", f"{nb.mean / nb.best:.0%}"))
        rows.append(("worst / best", f"{nb.worst / nb.best:.0%}"))
    body = "".join(f'<tr><td class="l">{k}</td><td class="num">{v}</td></tr>' for k, v in rows)
    out = head + f'<table class="qf stability">{body}</table>'
    if len(params) == 2:
        out += _neighbour_grid(table, params, metric, best_label)
    return out


def _neighbour_grid(table: pd.DataFrame, params: list[str], metric: str, best_label: Any) -> str:
    """The 3×3 block of the heatmap around the best cell, with the values."""
    piv = table.pivot_table(index=params[0], columns=params[1], values=metric, aggfunc="first", dropna=False)
    r = list(piv.index).index(table.loc[best_label, params[0]])
    c = list(piv.columns).index(table.loc[best_label, params[1]])
    dr = 1 if pd.api.types.is_numeric_dtype(table[params[0]]) else 0  # text values have no neighbour
    dc = 1 if pd.api.types.is_numeric_dtype(table[params[1]]) else 0
    block = piv.iloc[max(r - dr, 0): r + dr + 1, max(c - dc, 0): c + dc + 1]
    head = "".join(f"<th>{html.escape(format_param(v))}</th>" for v in block.columns)
    mark = ' style="outline:3px solid #1a1aff;font-weight:700"'
    rows = []
    for y, row in block.iterrows():
        cells = "".join(
            f'<td class="num"{mark if (y, x) == (piv.index[r], piv.columns[c]) else ""}>'
            f"{format_metric(metric, v) if pd.notna(v) else ''}</td>" for x, v in row.items())
        rows.append(f"<tr><th>{html.escape(format_param(y))}</th>{cells}</tr>")
    return (f"<p>The neighbourhood on the heatmap ({html.escape(params[0])} down, {html.escape(params[1])} "
            f"across):</p><table class=\"qf\"><tr><th></th>{head}</tr>{''.join(rows)}</table>")


def _pbo_html(inference: dict[str, Any]) -> str:
    """The sweep's probability of backtest overfitting (CSCV), one sentence, or why it is missing."""
    pbo = inference.get("pbo")
    if isinstance(pbo, int | float) and np.isfinite(pbo):
        parts = inference.get("pbo_partitions", "?")
        return (f"<p><b>PBO {pbo:.3f}</b>: probability of backtest overfitting (CSCV, {parts} partitions), how "
                "often the combination that is best in-sample ranks below the median of the others out of sample; "
                "above 0.5, choosing by this sweep is worse than picking at random.</p>")
    note = inference.get("pbo_note")
    return f'<p class="note">PBO not computed: {html.escape(str(note))}</p>' if note else ""


def _top_html(ranked: pd.DataFrame, params: list[str], metric: str, tearsheet: str | None) -> str:
    top = ranked.head(TOP_ROWS)
    cols = [metric, *[c for c in TOP_COLUMNS if c != metric and c in top.columns]]
    head = ('<th>#</th><th class="l">report</th>' + "".join(f'<th class="l">{html.escape(p)}</th>' for p in params)
            + "".join(f"<th>{html.escape(c)}</th>" for c in cols))
    rows = []
    for i, (_, row) in enumerate(top.iterrows(), start=1):
        link = f'<a href="{html.escape(tearsheet)}">tear sheet</a>' if i == 1 and tearsheet else ""
        cls = ' class="best"' if i == 1 else ""
        rows.append(f'<tr{cls}><td>{i}</td><td class="l">{link}</td>'
                    + "".join(f'<td class="l">{html.escape(format_param(row[p]))}</td>' for p in params)
                    + "".join(f'<td class="num">{format_metric(c, row[c])}</td>' for c in cols) + "</tr>")
    note = ("The best combination's full report (tear sheet, orders, trades) is in this folder."
            if tearsheet else "The best combination's report is in this folder (report.tearsheet is off).")
    return (f"<h2>Top {len(top)} by {html.escape(metric)}</h2><p class=\"note\">{len(top)} of {len(ranked)} "
            f"combinations. {note}</p>"
            f'<table class="qf top"><tr>{head}</tr>{"".join(rows)}</table>')


def sweep_html(table: pd.DataFrame, params: list[str], metric: str, path: Path, title: str,
               inference: dict[str, Any] | None = None, tearsheet: str = "tearsheet.html") -> None:
    """Write ``path``: a self-contained page on ``table`` (params + metrics per combination).

    ``inference`` holds the best combination's PSR/DSR (``sharpe_inference``); ``tearsheet`` is the best
    combination's tear sheet, relative to ``path`` (linked when it exists).
    """
    ranked = rank(table, metric)
    best_label = ranked.index[0]
    best = ranked.iloc[0]
    has_best = bool(np.isfinite(pd.to_numeric(pd.Series([best[metric]]), errors="coerce")).all())
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">{len(table)} combinations of {html.escape(", ".join(params))}; '
             f"{'lower' if metric in LOWER_IS_BETTER else 'higher'} {html.escape(metric)} is better.</p>"]
    if has_best:
        parts.append(_best_sentence(params, metric, best))
        parts.append(_edge_html(edge_params(table, params, best)))
    else:
        parts.append(f'<p class="warn">No combination has a finite {html.escape(metric)}: nothing to choose.</p>')
    parts.append(figure_div(_figure(table, params, metric, best, title)))
    if has_best:
        parts.append(_stability_html(table, params, metric, best_label))
    if inference is not None:
        parts.append(inference_html(inference))
        parts.append(_pbo_html(inference))
    link = tearsheet if (path.parent / tearsheet).is_file() else None
    parts.append(_top_html(ranked, params, metric, link))
    path.write_text(html_page(title, "\n".join(p for p in parts if p), plotly_js()), encoding="utf-8")

