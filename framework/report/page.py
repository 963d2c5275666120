"""What qf's own HTML pages share (sweep, compare, index): one style sheet, one page skeleton and one way
of formatting a metric, so the same figure reads the same on every page.

Every page is self-contained: no CDN, no web font, no favicon fetch (``<link rel="icon" href="data:,">``
stops the browser from asking the file system or a server for one), so it works offline from ``file://``.

Example::

    html_page("sma_cross: compare", "<h1>compare</h1>")   # -> "<!doctype html>..."
    format_metric("cagr", 0.0523)                           # -> "5.23%"
"""

from __future__ import annotations

import html
import math
from typing import Any

PERCENT = {"cagr", "total_return", "max_drawdown", "volatility", "win_rate", "exposure"}
MONEY = {"final_equity", "fees_paid", "initial_cash"}
COUNTS = {"n_orders", "n_bars", "eval_bars", "trades", "n_trials", "n_folds"}

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em 2em;color:#222;max-width:1200px}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em}
table.qf{border-collapse:collapse;font-size:.92em;margin:.5em 0}
table.qf th,table.qf td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
table.qf th{background:#f4f4f4}table.qf td.l,table.qf th.l{text-align:left}
table.qf tr.best td{background:#fff6d5;font-weight:600}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em;border-radius:4px}
.note{color:#555}.num{font-variant-numeric:tabular-nums}
"""


def format_metric(key: str, v: Any) -> str:
    """``v`` as a reader expects metric ``key``: percentages, money with separators, counts, 3 decimals.

    Example::

        format_metric("max_drawdown", -0.1234)   # -> "-12.34%"
        format_metric("final_equity", 320200.5)  # -> "320,200.50"
        format_metric("sharpe", float("nan"))    # -> "n/a"
    """
    if v is None:
        return "-"
    if isinstance(v, bool | str):
        return str(v)
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(x):
        return "n/a"
    if key in PERCENT:
        return f"{x:.2%}"
    if key in MONEY:
        return f"{x:,.2f}"
    if key == "turnover":
        return f"{x:.2f}x/yr"
    if key in COUNTS or (x == int(x) and not isinstance(v, float)):
        return f"{int(x):,d}"
    return f"{x:.3f}"


def format_param(v: Any) -> str:
    """A swept parameter's value: integers without a decimal point, floats without float noise."""
    if isinstance(v, float) and math.isfinite(v):
        return str(int(v)) if v == int(v) and abs(v) < 1e15 else f"{v:.6g}"
    return str(v)


def html_page(title: str, body: str, head: str = "") -> str:
    """A whole page: ``title`` in the browser tab, qf's style sheet, ``head`` (e.g. plotly.js) and ``body``."""
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style>{head}</head>\n<body>\n{body}\n</body></html>\n")


def plotly_js() -> str:
    """plotly.js inline (a ``<script>``), so the page draws its figures offline."""
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def figure_div(fig: Any) -> str:
    """A plotly figure as a ``<div>`` for a page that already holds :func:`plotly_js`."""
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})
