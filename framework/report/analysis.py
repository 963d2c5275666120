"""The tear sheet's "Trades and exposure" section: the run's trade summary, its round trips and its book.

Every figure in the section's table is metrics.json's ``trades`` summary (:func:`qf.report.trades.trade_summary`,
computed once per run by :func:`qf.report.trades.run_trades`), printed, never recomputed here; each cell
carries the unrounded value in ``data-value`` so a test can hold the page to metrics.json. The charts
draw what that summary summarises: the closed round trips' holding bars (histogram), ``pnl_by_symbol``
(bars), the gross and net exposure over the evaluation period (:func:`qf.report.trades.exposure`, whose
average is the summary's ``gross_exposure_avg``) and the target weights of weights.parquet.

Example::

    data = TradeData(trades, metrics["trades"], result.orders, bars.close, result.equity,
                     targets.targets, metrics["eval_start"])
    html = analysis_section(data)   # '<div id="analysis">...</div>'
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from qf.report.trades import exposure

# best and worst closed round trips listed; symbols drawn in the P&L bar chart before the middle is cut
_N_TRADES_LISTED = 5
_MAX_SYMBOL_BARS = 30

ANALYSIS_CSS = """
#analysis{clear:both;padding-top:10px}#analysis h2{margin:0 0 10px}
#analysis .grid{display:grid;grid-template-columns:1fr 1fr;gap:10px 30px}
#analysis .wide{grid-column:1/-1}#analysis table.trades td{white-space:nowrap}
#analysis p.caption{color:#555;margin:0 0 18px}
#analysis p.legend span{display:inline-block;margin:0 12px 4px 0;font-size:12px}
#analysis p.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
#analysis table{margin-bottom:20px}
"""


@dataclass
class TradeData:
    """What the section is drawn from: the run's round trips (trades.csv), their summary (metrics.json's
    ``trades``), the fills (orders.csv), the close prices and equity that value them, the target weights
    (weights.parquet) and the evaluation period's first bar.

    Example::

        TradeData(trades, outcome.metrics["trades"], res.orders, outcome.bars.close, res.equity,
                  outcome.targets.targets, outcome.metrics.get("eval_start"))
    """

    trades: pd.DataFrame
    summary: dict[str, Any]
    orders: pd.DataFrame | None = None
    close: pd.DataFrame | None = None
    equity: pd.Series | None = None
    weights: pd.DataFrame | None = None
    eval_start: Any = None


def _money(v: float) -> str:
    return f"{v:,.2f}"


def _pct(v: float) -> str:
    return f"{v:.2%}"


def _ratio(v: float) -> str:
    return f"{v:.2f}"


def _bars(v: float) -> str:
    return f"{v:.1f}"


# (label, summary key, format) in the order the table lists them
_ROWS: tuple[tuple[str, str, Any], ...] = (
    ("Round trips closed", "n_closed", str), ("Positions still open", "n_open", str),
    ("Positions (flat to flat)", "n_positions", str),
    ("Win rate", "win_rate", _pct), ("Profit factor", "profit_factor", _ratio),
    ("Average win", "avg_win", _money), ("Average loss", "avg_loss", _money),
    ("Expectancy (P&L per trade)", "expectancy", _money), ("Expectancy (return per trade)", "expectancy_return", _pct),
    ("Holding bars, mean", "holding_bars_mean", _bars), ("Holding bars, median", "holding_bars_median", _bars),
    ("Holding bars, 90th percentile", "holding_bars_p90", _bars), ("Holding bars, longest", "holding_bars_max", str),
    ("Realized P&L", "realized_pnl", _money), ("Open P&L", "open_pnl", _money), ("Total P&L", "total_pnl", _money),
    ("Fees", "fees", _money),
    ("Gross exposure, average", "gross_exposure_avg", _pct), ("Net exposure, average", "net_exposure_avg", _pct),
)


def _summary_table(summary: dict[str, Any]) -> str:
    rows = []
    for label, key, fmt in _ROWS:
        if key not in summary:
            continue
        v = summary[key]
        text = "-" if v is None else fmt(v)  # None: undefined (no closed trade, no loss)
        rows.append(f'<tr><td>{html.escape(label)}</td><td data-key="{key}" data-value="{v!r}">{text}</td></tr>')
    return f'<table class="summary"><tbody>{"".join(rows)}</tbody></table>'


def _trades_table(trades: pd.DataFrame, summary: dict[str, Any]) -> str:
    """The best and worst closed round trips by P&L (the first of each is the summary's best/worst trade)."""
    closed = trades[trades["status"] == "closed"]
    # stable sorts: among equal P&L the first trade is the one trade_summary names (idxmax/idxmin)
    best = closed.sort_values("pnl", ascending=False, kind="mergesort").head(_N_TRADES_LISTED)
    worst = closed.sort_values("pnl", ascending=True, kind="mergesort").head(_N_TRADES_LISTED)
    head = ("<tr><th></th><th>Symbol</th><th>Side</th><th>Entry</th><th>Exit</th><th>Bars</th>"
            "<th>Return</th><th>P&amp;L</th></tr>")
    rows = []
    for kind, frame in (("best", best), ("worst", worst)):
        for k, (_, t) in enumerate(frame.iterrows()):
            label = f"{kind.capitalize()} {k + 1}"
            rows.append(
                f'<tr class="{kind}"><td>{label}</td><td>{html.escape(str(t["symbol"]))}</td>'
                f"<td>{html.escape(str(t['direction']))}</td><td>{pd.Timestamp(t['entry_time']):%Y-%m-%d}</td>"
                f"<td>{pd.Timestamp(t['exit_time']):%Y-%m-%d}</td><td>{int(t['holding_bars'])}</td>"
                f"<td>{_pct(float(t['return']))}</td>"
                f'<td data-value="{float(t["pnl"])!r}">{_money(float(t["pnl"]))}</td></tr>')
    return f'<table class="trades"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _svg(fig: Any) -> str:
    import matplotlib

    buf = io.StringIO()
    # text stays text (the browser draws it), as in the rest of the page; the margins are fixed by
    # _figure rather than measured (bbox_inches="tight" draws every chart twice)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]  # without the XML prolog and doctype, for inline HTML


def _figure(width: float, height: float, title: str, left: float = 0.9, right: float = 0.2,
            bottom: float = 0.6, title_loc: str = "center") -> tuple[Any, Any]:
    """A figure with one axes and margins in inches (room for tick labels, a legend on the right)."""
    from matplotlib.figure import Figure

    # a bare Figure, not pyplot: no global state, nothing to close
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - 0.4 / height)
    ax = fig.add_subplot()
    # a fixed title position: matplotlib would otherwise measure every tick label to place it
    ax.set_title(title, fontweight="bold", fontsize=11, y=1.02, loc=title_loc)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    # few ticks: each one is several artists, most of a small chart's drawing time
    ax.locator_params(nbins=5)
    ax.grid(alpha=0.3)
    return fig, ax


def _holding_chart(trades: pd.DataFrame, summary: dict[str, Any]) -> str:
    hold = trades.loc[trades["status"] == "closed", "holding_bars"].to_numpy(dtype=float)
    fig, ax = _figure(6, 3.2, "Holding period of closed round trips")
    top = int(hold.max()) if len(hold) else 0
    bins = np.arange(0, top + 2) - 0.5 if top <= 60 else np.histogram_bin_edges(hold, bins=60)
    ax.hist(hold, bins=bins, color="#348dc1", histtype="stepfilled")  # one outline, not a patch per bin
    if summary.get("holding_bars_median") is not None:
        ax.axvline(summary["holding_bars_median"], color="red", ls="--", lw=1.2,
                   label=f"median {summary['holding_bars_median']:.1f}")
        ax.legend(fontsize=9)
    ax.set_xlabel("bars held")
    ax.set_ylabel("round trips")
    return _svg(fig)


def _symbol_chart(summary: dict[str, Any]) -> str:
    pnl = pd.Series(summary.get("pnl_by_symbol") or {}, dtype=float).sort_values()
    cut = len(pnl) > _MAX_SYMBOL_BARS
    if cut:  # the biggest losers and winners; the middle is named in the title
        half = _MAX_SYMBOL_BARS // 2
        pnl = pd.concat([pnl.iloc[:half], pnl.iloc[-half:]])
    title = "P&L by symbol (closed and open)" + (f", {_MAX_SYMBOL_BARS} largest" if cut else "")
    fig, ax = _figure(6, max(2.5, 0.2 * len(pnl) + 1), title, bottom=0.4)
    ax.barh(np.arange(len(pnl)), pnl.to_numpy(), color=np.where(pnl.to_numpy() >= 0, "#2a9d55", "#c0392b"))
    ax.set_yticks(np.arange(len(pnl)), [str(s) for s in pnl.index], fontsize=8)
    ax.axvline(0, color="#000", lw=0.8)
    ax.xaxis.set_major_formatter(_money_ticks())
    return _svg(fig)


def _money_ticks() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:,.0f}")


def _exposure_chart(frame: pd.DataFrame, summary: dict[str, Any]) -> str:
    from matplotlib.ticker import PercentFormatter

    fig, ax = _figure(12, 3, "Exposure (fraction of equity, at each close)", title_loc="left")
    # long curves are drawn as one embedded image (rasterized): thousands of points stay a few kB
    long = len(frame) > 500
    gross, net = frame["gross"].to_numpy() * 100, frame["net"].to_numpy() * 100
    ax.fill_between(frame.index, gross, step="post", color="#348dc1", alpha=0.35, lw=0, label="gross",
                    rasterized=long)
    same = bool(np.allclose(gross, net, equal_nan=True))
    ax.step(frame.index, net, where="post", color="#fd7e14", lw=0.8, rasterized=long,
            label="net (= gross: no short positions)" if same else "net")
    if summary.get("gross_exposure_avg") is not None:
        ax.axhline(summary["gross_exposure_avg"] * 100, color="#348dc1", ls="--", lw=0.8,
                   label=f"gross average {summary['gross_exposure_avg']:.1%}")
    ax.axhline(0, color="#000", lw=0.6)
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    # above the plot, right of the title: inside, it covered the curve wherever it was put
    ax.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, frameon=False)
    _date_axis(ax)
    return _svg(fig)


def _date_axis(ax: Any) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator(maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _weights_chart(weights: pd.DataFrame) -> str:
    from matplotlib.ticker import PercentFormatter

    w = weights.fillna(0.0).astype(float)
    w = w.loc[:, (w != 0).any()]
    fig, ax = _figure(12, 3.2, "Target weights (set on rebalance dates)")
    colors = [_color(k) for k in range(w.shape[1])]
    # longs stack up from zero and shorts down from it, so a long/short book reads as such
    for part in (w.clip(lower=0.0), w.clip(upper=0.0)):
        if (part != 0).any().any():
            ax.stackplot(w.index, *(part[c].to_numpy() * 100 for c in part.columns), step="post", colors=colors,
                         lw=0, rasterized=True)
    ax.axhline(0, color="#000", lw=0.6)
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    _date_axis(ax)
    # the legend is HTML under the chart: it wraps to the page for any number of symbols, and a
    # matplotlib legend of 20 entries cost as much as the chart
    keys = "".join(f'<span><i style="background:{c}"></i>{html.escape(str(s))}</span>'
                   for c, s in zip(colors, w.columns, strict=True))
    return f'{_svg(fig)}<p class="legend">{keys}</p>'


def _color(k: int) -> str:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    return to_hex(colormaps["tab20"](k % 20))


def _eval_slice(frame: Any, eval_start: Any) -> Any:
    if eval_start is None or frame is None or len(frame) == 0:
        return frame
    start = pd.Timestamp(eval_start)
    idx = frame.index
    if getattr(idx, "tz", None) is not None and start.tz is None:
        start = start.tz_localize(idx.tz)
    elif getattr(idx, "tz", None) is None and start.tz is not None:
        start = start.tz_convert(None)
    return frame.loc[start:]


def _exposure_frame(data: TradeData) -> pd.DataFrame | None:
    if data.orders is None or data.close is None or data.equity is None or len(data.equity) == 0:
        return None
    close = data.close
    if len(close) and data.equity.index[0] > close.index[0]:
        close = close.loc[data.equity.index[0]:]  # walk-forward: the account trades the out-of-sample bars only
    return _eval_slice(exposure(data.orders, close, data.equity), data.eval_start)


def analysis_section(data: TradeData) -> str:
    """The section's HTML (``<div id="analysis">``): the summary table, best/worst trades and four SVG charts,
    or one sentence when the run has no round trips.

    Example::

        page = page.replace("</div>\\n</body>", analysis_section(data) + "</div>\\n</body>")
    """
    s = data.summary
    head = '<div id="analysis"><hr><h2>Trades and exposure</h2>'
    if not s.get("n_trades"):
        return (head + '<p class="empty">No trades in this run: no order was filled, so there are no round trips, '
                "holding periods, per-symbol P&amp;L or exposure to show.</p></div>")
    closed, n_open = int(s.get("n_closed", 0)), int(s.get("n_open", 0))
    caption = (f"{closed} closed round trip{'s' if closed != 1 else ''} and {n_open} position"
               f"{'s' if n_open != 1 else ''} still open at the last bar (valued at its close), from trades.csv; "
               "the figures are metrics.json's <code>trades</code> summary. Win rate, profit factor, averages, "
               "expectancy and holding periods are over closed round trips; P&amp;L by symbol includes the open "
               "ones. Exposure and weights cover the evaluation period.")
    if closed:
        charts = [_holding_chart(data.trades, s), _symbol_chart(s)]
        listed = _trades_table(data.trades, s)
    else:  # positions opened and never closed: no holding period or best trade yet, only their open P&L
        charts = [_symbol_chart(s)]
        listed = '<p class="empty">No closed round trip yet.</p>'
    wide = []
    ex = _exposure_frame(data)
    if ex is not None and len(ex):
        wide.append(_exposure_chart(ex, s))
    weights = _eval_slice(data.weights, data.eval_start)
    weights_note = ""
    if weights is not None and len(weights) and (weights.fillna(0.0) != 0).any().any():
        wide.append(_weights_chart(weights))
        weights_note = ('<p class="caption">Target weights are weights.parquet: what the sizer and risk rules '
                        "asked for on each rebalance date, held until the next one; the book actually held "
                        "drifts with prices between rebalances and skips orders below the minimum order value "
                        "(the exposure chart is the held book, rebuilt from the fills).</p>")
    # the two time series are full width: years of daily exposure are unreadable in half a page
    grid = "".join(f"<div>{c}</div>" for c in charts) + "".join(f'<div class="wide">{c}</div>' for c in wide)
    tables = (f'<div class="grid"><div><h3>Trade summary</h3>{_summary_table(s)}</div>'
              f"<div><h3>Best and worst round trips</h3>{listed}</div></div>")
    return (f'{head}<p class="caption">{caption}</p>{tables}<div class="grid">{grid}</div>{weights_note}</div>')
