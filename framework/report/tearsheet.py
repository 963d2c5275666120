"""The HTML tear sheet: quantstats' charts and tables, fed exactly the returns metrics.json is computed from.

quantstats gets the evaluation period's returns (warm-up excluded, see :mod:`qf.report.metrics`) with
``periods_per_year=252``, ``rf=0``, compounding, and ``match_dates=False`` (its date matching would cut
the period again, at the first non-zero return of the strategy or the benchmark), so its CAGR, Sharpe,
Sortino, volatility and max drawdown equal metrics.json. :func:`quantstats_headline` returns those
figures as quantstats computes them, for tests and checks.

The page is qf's own template (the experiment's name as title and browser-tab title, no remote
favicon, no script) around quantstats' parts; the end-of-year table and chart are drawn here, from the
same returns, one labelled bar pair per year. A curve too short or too flat for quantstats' statistics
(an empty, one-bar or never-moving paper session), or any failure inside quantstats, gives a simpler
page with the metrics table instead: writing a report never fails because of the tear sheet.
"""

from __future__ import annotations

import contextlib
import html
import io
import logging
import re
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qf.report.analysis import ANALYSIS_CSS, TradeData, analysis_section
from qf.report.metrics import PERIODS_PER_YEAR, RISK_FREE
from qf.report.parallel import render
from qf.report.regimes import REGIME_CSS, regime_section

log = logging.getLogger(__name__)

# figures from quantstats go into these slots (eoy_returns is drawn here); slots left unfilled are removed.
# Not drawn, as near-duplicates of figures on the page (each ~0.25 s for 3,300 days): the cumulative returns on a
# log scale and volatility-matched (the returns chart's two curves again, rescaled), and the rolling Sortino (the
# rolling Sharpe with downside deviation; both ratios are in the table)
_FIGURES = ("returns", "eoy_returns", "monthly_dist", "daily_returns", "rolling_beta", "rolling_vol",
            "rolling_sharpe", "dd_periods", "dd_plot", "monthly_heatmap", "returns_dist")

_CSS = """
body{-webkit-font-smoothing:antialiased;margin:30px;background:#fff;color:#000}
body,p,table,td,th{font:13px/1.4 Arial,Helvetica,"DejaVu Sans",sans-serif}
.container{max-width:960px;margin:auto}img,svg{width:100%;height:auto}
h1,h2,h3,h4{font-weight:400;margin:0}h1 small{margin-left:10px;font-size:14px;color:#555}
h3{margin-bottom:10px;font-weight:700}h4{color:grey}h4 a{color:#09c;text-decoration:none}
.note{color:#a40;font-weight:700}
hr{margin:25px 0 40px;height:0;border:0;border-top:1px solid #ccc}
#left{width:620px;margin-right:18px;margin-top:-1.2rem;float:left}#right{width:320px;float:right}
#left svg,#analysis svg{display:block;margin:0 0 12px}
p.omitted{color:#555;margin:10px 0 20px}
table{margin:0 0 40px;border:0;border-spacing:0;width:100%}
table td,table th{text-align:right;padding:4px 5px 3px 5px}table th{font-weight:400}
table td:first-of-type,table th:first-of-type{text-align:left;padding-left:2px}
td hr{margin:5px 0}table thead th{font-weight:700;background:#eee}
#ddinfo table td:nth-of-type(3):after{content:"%"}
#ddinfo table td:first-of-type,#ddinfo table td:nth-of-type(2),#ddinfo table th:first-of-type,
#ddinfo table th:nth-of-type(2){text-align:left}
@media print{body{margin:0}.container{max-width:100%}#left{width:55%;margin:0}#right{margin:0;width:45%}}
"""


def _page(title: str, heading: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<link rel="icon" href="data:,">
<style>{_CSS}{ANALYSIS_CSS}{REGIME_CSS}</style>
</head>
<body>
<div class="container">
{heading}
{body}
</div>
</body>
</html>
"""


def _heading(title: str, subtitle: str | None, period: str, warning: str | None = None) -> str:
    sub = f"<h4>{html.escape(subtitle)}</h4>" if subtitle else ""
    note = f"<h4 class=\"note\">{html.escape(warning)}</h4>" if warning else ""
    return f"<h1>{html.escape(title)} <small>{period}</small></h1>\n{sub}{note}"


def _template(title: str, subtitle: str | None, warning: str | None, eoy_table: str, eoy_chart: str) -> str:
    figures = "\n".join(f'<div id="{k}">{{{{{k}}}}}</div>' for k in _FIGURES)
    figures = figures.replace("{{eoy_returns}}", eoy_chart)
    body = f"""<h4>{{{{params}}}} qf tear sheet, statistics by
<a href="https://github.com/ranaroussi/quantstats">QuantStats</a> {{{{v}}}}</h4>
<hr>
<div id="left">
{figures}
</div>
<div id="right">
<h3>Key Performance Metrics</h3>
{{{{metrics}}}}
<div id="eoy"><h3>EOY Returns</h3>
{eoy_table}</div>
<div id="ddinfo"><h3>Worst 10 Drawdowns</h3>
{{{{dd_info}}}}</div>
</div>
"""
    return _page(title, _heading(title, subtitle, "{{date_range}}", warning), body)


def _year_returns(returns: pd.Series) -> pd.Series:
    return (1.0 + returns).groupby(returns.index.year).prod() - 1.0


# a year counts as whole when the period covers it to within this many business days at either end
# (holidays: 2 Jan can be a year's first trading day, 29 Dec its last)
_YEAR_EDGE_BDAYS = 5


def year_labels(index: pd.DatetimeIndex) -> dict[int, str]:
    """Each year of ``index`` as the EOY table and chart label it: the year, plus how many days of it the
    period covers when it covers only part of it, e.g. ``{2016: "2016 (1 day)", 2017: "2017"}``.

    A walk-forward or paper period rarely starts on 1 January; its first year's "return" may be one day
    and must not read as a year's. A year is partial when the period starts after its first
    :data:`_YEAR_EDGE_BDAYS` business days or ends before its last ones; days are distinct dates with a bar.

    Example::

        year_labels(pd.bdate_range("2016-12-30", "2018-06-29"))
        # {2016: "2016 (1 day)", 2017: "2017", 2018: "2018 (130 days)"}
    """
    out: dict[int, str] = {}
    if len(index) == 0:
        return out
    dates = pd.DatetimeIndex(index).normalize()
    if dates.tz is not None:
        dates = dates.tz_localize(None)
    first, last = dates[0], dates[-1]
    edge = pd.offsets.BDay(_YEAR_EDGE_BDAYS)
    for year in sorted(set(dates.year)):
        starts_late = year == first.year and first > pd.Timestamp(year, 1, 1) + edge
        ends_early = year == last.year and last < pd.Timestamp(year, 12, 31) - edge
        if starts_late or ends_early:
            n = int(dates[dates.year == year].nunique())
            out[year] = f"{year} ({n} day{'s' if n != 1 else ''})"
        else:
            out[year] = str(year)
    return out


def _eoy(returns: pd.Series, benchmark: pd.Series | None) -> tuple[str, pd.DataFrame]:
    """End-of-year table of the period's returns (and the benchmark's on the same bars), and the frame its
    chart (:func:`_eoy_chart`) is drawn from."""
    strat = _year_returns(returns)
    cols = {"Strategy": strat}
    if benchmark is not None:
        cols = {str(benchmark.name or "Benchmark"): _year_returns(benchmark), **cols}
    frame = pd.DataFrame(cols)
    frame.index = frame.index.map(year_labels(pd.DatetimeIndex(returns.index)))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["Year", *frame.columns]) + (
        "<th>Won</th>" if benchmark is not None else "")
    rows = []
    for year, row in frame.iterrows():
        cells = "".join(f"<td>{v:.2%}</td>" for v in row)
        won = f"<td>{'+' if row.iloc[-1] > row.iloc[0] else '-'}</td>" if benchmark is not None else ""
        rows.append(f"<tr><td>{html.escape(str(year))}</td>{cells}{won}</tr>")
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return table, frame


def _eoy_chart(frame: pd.DataFrame) -> str:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(frame))
    width = 0.8 / max(len(frame.columns), 1)
    colors = ["#fedd78", "#348dc1"] if len(frame.columns) == 2 else ["#348dc1"]
    for k, (name, color) in enumerate(zip(frame.columns, colors, strict=False)):
        ax.bar(x + (k - (len(frame.columns) - 1) / 2) * width, frame[name].to_numpy() * 100, width,
               label=name, color=color)
    ax.axhline(0, ls="--", lw=1, color="#000")
    ax.axhline(float(frame["Strategy"].mean()) * 100, ls="--", lw=1.5, color="red")
    partial = any("(" in str(y) for y in frame.index)
    ax.set_xticks(x, [str(y) for y in frame.index], rotation=45 if len(frame) > 8 or partial else 0,
                  ha="right" if len(frame) > 8 or partial else "center")
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    fig.suptitle("EOY Returns" + (" vs Benchmark" if len(frame.columns) == 2 else ""), fontweight="bold",
                 fontsize=14)
    if len(frame.columns) == 2:
        ax.legend(fontsize=11)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    return buf.getvalue()


def _inputs(returns: pd.Series, benchmark: pd.Series | None) -> tuple[pd.Series, pd.Series | None]:
    """What quantstats is given: the period's returns and the benchmark on exactly those bars."""
    rets = returns.astype(float).copy()
    rets.name = "Strategy"
    if benchmark is None:
        return rets, None
    bench = benchmark.reindex(rets.index).fillna(0.0).astype(float)
    bench.name = str(benchmark.name or "Benchmark")
    return rets, bench


def _full_report_possible(returns: pd.Series) -> str | None:
    """Why quantstats' full report cannot be drawn for these returns (None when it can)."""
    if len(returns) < 2:
        return f"{len(returns)} return(s) in the evaluation period"
    if float(np.nanstd(returns.to_numpy(dtype=float))) == 0.0:
        return "the equity never moved in the evaluation period"
    return None


def _quiet():
    import matplotlib

    matplotlib.use("Agg")
    # quantstats asks matplotlib for Arial on every figure; without it installed that is one log line
    # per call, hundreds per report
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    # quantstats sets its seaborn theme when its plotting module is first imported; imported inside the
    # rc_context below, the theme would be undone when the first page is done and every later page of the
    # process (qf watch, a walk-forward) drawn in matplotlib's defaults
    import quantstats._plotting.core  # noqa: F401
    # text stays text in the SVG charts (the browser draws it) instead of one path per glyph: faster to
    # write, and the page is smaller
    stack.enter_context(matplotlib.rc_context({"svg.fonttype": "none"}))
    return stack


def quantstats_headline(returns: pd.Series) -> dict[str, float]:
    """CAGR, Sharpe, Sortino, volatility and max drawdown as quantstats computes them for the tear sheet.

    The statistics functions quantstats' metrics table calls, with the tear sheet's inputs and settings,
    unrounded (the table shows two decimals); metrics.json must equal them.

    Example::

        quantstats_headline(eval_returns(result.equity, 100_000, start))["sharpe"]
    """
    with _quiet():
        import quantstats as qs

        rets, _ = _inputs(returns, None)
        return {
            "cagr": float(qs.stats.cagr(rets, RISK_FREE, True, PERIODS_PER_YEAR)),
            "sharpe": float(qs.stats.sharpe(rets, RISK_FREE, PERIODS_PER_YEAR, True)),
            "sortino": float(qs.stats.sortino(rets, RISK_FREE, PERIODS_PER_YEAR, True)),
            "volatility": float(qs.stats.volatility(rets, PERIODS_PER_YEAR, True, prepare_returns=False)),
            "max_drawdown": float(qs.stats.max_drawdown(rets)),
        }


def _period(returns: pd.Series) -> str:
    if len(returns) == 0:
        return "no bars in the evaluation period"
    return f"{returns.index[0]:%d %b %Y} - {returns.index[-1]:%d %b %Y}"


def _simple(returns: pd.Series, title: str, subtitle: str | None, warning: str | None, reason: str,
            metrics: dict[str, Any] | None) -> str:
    """A page without quantstats: the period, why there are no charts, and the metrics."""
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_cell(v))}</td></tr>"
                   for k, v in (metrics or {}).items())
    table = f"<table><tbody>{rows}</tbody></table>" if rows else ""
    body = (f"<hr><p>No charts: {html.escape(reason)}. The run's figures (metrics.json):</p>{table}")
    return _page(title, _heading(title, subtitle, _period(returns), warning), body)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if np.isfinite(v) else "-"
    return "-" if v is None else str(v)


def _clean(page: str) -> str:
    # "CAGR﹪" uses a small percent sign most fonts lack; undefined ratios print as "nan"
    page = page.replace("CAGR﹪", "CAGR")
    page = re.sub(r"<td>\s*-?nan%?\s*</td>", "<td>-</td>", page)
    return page


def write_tearsheet(returns: pd.Series, benchmark: pd.Series | None, path: Path, title: str, *,
                    subtitle: str | None = None, warning: str | None = None,
                    metrics: dict[str, Any] | None = None, trades: TradeData | None = None) -> None:
    """Write the tear sheet of the evaluation period's ``returns`` (with ``benchmark``) to ``path``.

    ``title`` is the page's heading and browser-tab title; ``subtitle`` is shown under it (e.g. "paper,
    backtrader") and ``warning`` under that, highlighted (e.g. "interrupted paper session"); ``metrics``
    fill the simpler page written when the returns are too short or flat for charts, or quantstats fails;
    ``trades`` (the run's round trips, their summary, fills and weights) adds the "Trades and exposure"
    section (:mod:`qf.report.analysis`) at the foot of either page; every page ends with the "Performance by
    volatility regime" section (:mod:`qf.report.regimes`: the benchmark's regime, else the equal-weight
    universe's from ``trades.close``).

    Example::

        write_tearsheet(eval_returns(result.equity, 100_000, start), bench_rets,
                        Path("reports/x/run/tearsheet.html"), "hrp_swing", subtitle="backtest, vectorbt")
    """
    rets, bench = _inputs(returns, benchmark)
    reason = _full_report_possible(rets)
    analysis = (lambda: _analysis(trades)) if trades is not None else None
    section = None
    if reason is None:
        try:
            page, section = _quantstats_page(rets, bench, title, subtitle, warning, analysis)
        except Exception as exc:  # noqa: BLE001 - a tear sheet must never fail the run
            log.warning("tear sheet: quantstats failed (%s: %s); writing a simpler page", type(exc).__name__, exc)
            reason = f"quantstats could not draw this curve ({type(exc).__name__}: {exc})"
    if reason is not None:
        page = _simple(rets, title, subtitle, warning, reason, metrics)
        section = analysis() if analysis is not None else None
    if section is not None:
        page = page.replace("</div>\n</body>", section + "\n</div>\n</body>")
    try:  # performance by the market's volatility regime (qf.report.regimes), on every tear sheet
        with _quiet():
            regimes = regime_section(rets, benchmark, trades.close if trades is not None else None, PERIODS_PER_YEAR)
    except Exception as exc:  # noqa: BLE001 - a tear sheet must never fail the run
        log.warning("tear sheet: the regime section failed (%s: %s)", type(exc).__name__, exc)
        regimes = (f'<div id="regimes"><hr><h2>Performance by volatility regime</h2><p>Not drawn: '
                   f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}.</p></div>")
    page = page.replace("</div>\n</body>", regimes + "\n</div>\n</body>")
    path.write_text(page, encoding="utf-8")


def _analysis(trades: TradeData) -> str:
    """The "Trades and exposure" section, or a sentence saying why it is not drawn (it never fails the page)."""
    try:
        with _quiet():
            return analysis_section(trades)
    except Exception as exc:  # noqa: BLE001 - a tear sheet must never fail the run
        log.warning("tear sheet: the trades section failed (%s: %s)", type(exc).__name__, exc)
        return (f'<div id="analysis"><hr><h2>Trades and exposure</h2><p>Not drawn: '
                f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}. trades.csv and "
                "metrics.json have the figures.</p></div>")


def add_section(path: Path, name: str, body: str) -> bool:
    """Put ``body`` (HTML) at the foot of the written tear sheet ``path`` as section ``name``, replacing the
    section of that name a previous call added (a gate re-evaluated); False when there is no tear sheet.

    The paper report adds its drift summary and the go/no-go verdict this way (both are decided after the
    page is drawn). Example::

        add_section(report / "tearsheet.html", "gate", "<h2>Go / no-go: GO</h2>...")
    """
    if not path.is_file():
        return False
    page = path.read_text(encoding="utf-8")
    start, end = f'<div id="{name}" class="qf-section">', f"</div><!--/{name}-->"
    block = f"{start}<hr>{body}{end}"
    if start in page and end in page:
        page = page[:page.index(start)] + block + page[page.index(end) + len(end):]
    elif "</div>\n</body>" in page:
        page = page.replace("</div>\n</body>", block + "\n</div>\n</body>")
    else:
        return False
    path.write_text(page, encoding="utf-8")
    return True


def _quantstats_page(rets: pd.Series, bench: pd.Series | None, title: str, subtitle: str | None,
                     warning: str | None, analysis: Callable[[], str] | None = None) -> tuple[str, str | None]:
    """The page, assembled here from quantstats' own metrics table, drawdown table and charts, and the
    ``analysis`` section drawn among them: ``(page, section)``.

    This is what ``qs.reports.html`` does with the same arguments, minus the work a qf page does not show:
    quantstats' end-of-year table and chart (drawn here instead, see :func:`_eoy`) and the duplicate figures
    left out of :data:`_FIGURES`. Two quantstats helpers called hundreds of times per page in pandas are
    replaced for the duration by equal numpy/grouped versions (:func:`_fast_quantstats`). The charts, the
    metrics table and the section are independent parts drawn on the machine's cores
    (:func:`qf.report.parallel.render`).
    """
    import matplotlib.pyplot as plt

    try:
        with _quiet(), _fast_quantstats():
            import quantstats as qs
            from quantstats.reports import _html_table

            eoy_table, eoy_frame = _eoy(rets, bench)
            dates = rets.index.strftime("%e %b, %Y")
            params = [f"Benchmark: {bench.name.upper()}"] if bench is not None else []
            params += [f"Periods/Year: {PERIODS_PER_YEAR}", f"RF: {RISK_FREE:.1%}"]
            dd_info = qs.stats.drawdown_details(qs.stats.to_drawdown_series(rets))
            dd_info = dd_info.sort_values(by="max drawdown", ascending=True)[:10]
            dd_info = dd_info[["start", "end", "max drawdown", "days"]]
            dd_info.columns = ["Started", "Recovered", "Drawdown", "Days"]
            parts: list[tuple[str, Callable[[], str]]] = [
                ("metrics", lambda: _metrics_table(qs, _html_table, rets, bench)),
                ("eoy_returns", lambda: _eoy_chart(eoy_frame)),
            ]
            parts += [(slot, draw if isinstance(draw, str) else _svg_part(draw))
                      for slot, draw in _figures(qs, rets, bench)]
            if analysis is not None:
                parts.append(("analysis", analysis))
            drawn = dict(zip([slot for slot, _ in parts], render(
                [p if callable(p) else _constant(p) for _, p in parts],
                [_PART_COSTS.get(slot, _PART_COST) for slot, _ in parts]), strict=True))
            tpl = _template(title, subtitle, warning, eoy_table, drawn.pop("eoy_returns"))
            tpl = tpl.replace("{{date_range}}", f"{dates[0]} - {dates[-1]}")
            tpl = tpl.replace("{{v}}", qs.__version__)
            tpl = tpl.replace("{{params}}", " &bull; ".join(params) + " | ")
            tpl = tpl.replace("{{dd_info}}", _html_table(dd_info, False))
            section = drawn.pop("analysis", None)
            for slot, part in drawn.items():
                tpl = tpl.replace("{{" + slot + "}}", part)
            tpl = re.sub(r"\{\{(.*?)\}\}", "", tpl).replace("white-space:pre;", "")
        return _clean(tpl), section
    finally:
        plt.close("all")


# the parts' relative costs (CPU seconds for hrp_swing's 3,000 days), for sharing them between processes
_PART_COSTS = {"metrics": 0.5, "eoy_returns": 0.35, "analysis": 0.65, "monthly_heatmap": 0.6,
               "returns_dist": 0.3, "monthly_dist": 0.25}
_PART_COST = 0.18


def _svg_part(draw: Callable[[dict[str, Any]], Any]) -> Callable[[], str]:
    """A quantstats chart as a part: drawn into an SVG (a tight box keeps rotated date labels inside it, they
    were cut to "-09") and embedded as quantstats' html() does."""
    def part() -> str:
        import matplotlib.pyplot as plt
        from quantstats.reports import _embed_figure

        buf = io.BytesIO()
        draw({"fname": buf, "format": "svg", "bbox_inches": "tight", "pad_inches": 0.1})
        plt.close("all")
        return _embed_figure(buf, "svg")
    return part


def _constant(text: str) -> Callable[[], str]:
    return lambda: text


def _metrics_table(qs: Any, html_table: Any, rets: pd.Series, bench: pd.Series | None) -> str:
    """quantstats' "full" metrics table, with the arguments ``qs.reports.html`` passes."""
    mtrx = qs.reports.metrics(
        returns=rets, benchmark=bench, rf=RISK_FREE, display=False, mode="full", sep=True, internal="True",
        compounded=True, periods_per_year=PERIODS_PER_YEAR, prepare_returns=False,
        benchmark_title=bench.name if bench is not None else None, strategy_title=rets.name, match_dates=False,
    )[2:]
    mtrx.index.name = "Metric"
    table = html_table(mtrx)
    table = table.replace("<tr><td></td><td></td><td></td></tr>", '<tr><td colspan="3"><hr></td></tr>')
    return table.replace("<tr><td></td><td></td></tr>", '<tr><td colspan="2"><hr></td></tr>')


# the rolling charts (6-month windows) are drawn when they have at least a month of values; a shorter
# period (a 5-month paper session) gets a sentence instead of empty axes
_ROLLING_MIN_VALUES = 21


def _figures(qs: Any, rets: pd.Series, bench: pd.Series | None) -> list[tuple[str, Any]]:
    """(template slot, draw(savefig)) for every quantstats chart on the page, with html()'s arguments;
    draw is an HTML sentence instead where the chart would be empty."""
    p = qs.plots
    half, year = PERIODS_PER_YEAR // 2, PERIODS_PER_YEAR
    if len(rets) < half + _ROLLING_MIN_VALUES:
        note = (f'<p class="omitted">No rolling volatility, Sharpe or beta charts: their 6-month windows '
                f"({half} bars) need at least {half + _ROLLING_MIN_VALUES} bars, and this period has "
                f"{len(rets)}.</p>")
        return [f for f in _all_figures(p, rets, bench, half, year) if not f[0].startswith("rolling_")] + [
            ("rolling_vol", note)]
    return _all_figures(p, rets, bench, half, year)


def _all_figures(p: Any, rets: pd.Series, bench: pd.Series | None, half: int, year: int) -> list[tuple[str, Any]]:
    kw: dict[str, Any] = {"grayscale": False, "subtitle": False, "show": False, "ylabel": ""}
    figs: list[tuple[str, Any]] = [
        ("returns", lambda s: p.returns(rets, bench, figsize=(8, 5), savefig=s, compound=True,
                                        prepare_returns=False, **kw)),
    ]
    figs += [
        ("monthly_dist", lambda s: p.histogram(rets, bench, figsize=(7, 4), savefig=s, compounded=True,
                                               prepare_returns=False, **kw)),
        ("daily_returns", lambda s: p.daily_returns(rets, bench, figsize=(8, 3), savefig=s, prepare_returns=False,
                                                    active=False, **kw)),
    ]
    if bench is not None:
        figs.append(("rolling_beta", lambda s: p.rolling_beta(rets, bench, figsize=(8, 3), window1=half,
                                                              window2=year, savefig=s, prepare_returns=False,
                                                              **kw)))
    figs += [
        ("rolling_vol", lambda s: p.rolling_volatility(rets, bench, figsize=(8, 3), savefig=s, period=half,
                                                       periods_per_year=year, **kw)),
        ("rolling_sharpe", lambda s: p.rolling_sharpe(rets, figsize=(8, 3), savefig=s, period=half,
                                                      periods_per_year=year, **kw)),
        ("dd_periods", lambda s: p.drawdowns_periods(rets, figsize=(8, 4), title=rets.name, savefig=s,
                                                     compounded=True, prepare_returns=False, **kw)),
        ("dd_plot", lambda s: p.drawdown(rets, figsize=(8, 3), savefig=s, **kw)),
        ("monthly_heatmap", lambda s: p.monthly_heatmap(rets, bench, figsize=(8, 4), cbar=False,
                                                        returns_label=rets.name, savefig=s, compounded=True,
                                                        active=False, show=False, ylabel="", grayscale=False)),
        ("returns_dist", lambda s: p.distribution(rets, figsize=(8, 4), title=rets.name, savefig=s,
                                                  compounded=True, prepare_returns=False, **kw)),
    ]
    return figs


_DD_COLUMNS = ("start", "valley", "end", "days", "max drawdown", "99% max drawdown")


def _drawdown_details(drawdown: Any) -> pd.DataFrame:
    """quantstats' ``stats.drawdown_details``, the same table, with numpy per drawdown instead of pandas.

    quantstats slices a Series and takes a pandas quantile for each of the hundreds of drawdowns of a
    long daily curve (about 0.3 s per call, three calls per tear sheet). Inputs this does not cover
    (NaN, an unsorted or duplicated index) go to quantstats' own function.
    """
    from quantstats._compat import safe_concat

    if isinstance(drawdown, pd.DataFrame):
        return safe_concat({c: _drawdown_details_series(drawdown[c]) for c in drawdown.columns}, axis=1)
    return _drawdown_details_series(drawdown)


def _drawdown_details_series(drawdown: pd.Series) -> pd.DataFrame:
    idx = drawdown.index
    v = drawdown.to_numpy(dtype=float)
    if np.isnan(v).any() or not (isinstance(idx, pd.DatetimeIndex) and idx.is_monotonic_increasing
                                 and idx.is_unique):
        return _qs_drawdown_details(drawdown)
    no_dd = v == 0
    # the same boundaries as quantstats: a start is the first bar under water, an end the last one
    start_pos = list(np.flatnonzero(~no_dd[1:] & no_dd[:-1]) + 1)
    end_pos = list(np.flatnonzero(no_dd[1:] & ~no_dd[:-1]))
    if not start_pos:
        return pd.DataFrame(index=[], columns=_DD_COLUMNS)
    if end_pos and start_pos[0] > end_pos[0]:
        start_pos.insert(0, 0)
    if not end_pos or start_pos[-1] > end_pos[-1]:
        end_pos.append(len(v) - 1)
    if len(end_pos) < len(start_pos) or any(e < s for s, e in zip(start_pos, end_pos, strict=False)):
        return _qs_drawdown_details(drawdown)
    data = []
    for s, e in zip(start_pos, end_pos, strict=False):
        seg = v[s:e + 1]
        neg = -seg
        kept = neg[neg < np.quantile(neg, 0.99)]  # quantstats' remove_outliers(-dd, 0.99)
        clean = float((-kept).min()) if kept.size else np.nan
        data.append((idx[s], idx[s + int(np.argmin(seg))], idx[e], (idx[e] - idx[s]).days + 1,
                     float(seg.min()) * 100, clean * 100))
    df = pd.DataFrame(data=data, columns=_DD_COLUMNS)
    df["days"] = df["days"].astype(int)
    df["max drawdown"] = df["max drawdown"].astype(float)
    df["99% max drawdown"] = df["99% max drawdown"].astype(float)
    for col in ("start", "end", "valley"):
        df[col] = df[col].dt.strftime("%Y-%m-%d")
    return df


def _qs_drawdown_details(drawdown: Any) -> pd.DataFrame:
    """quantstats' own ``drawdown_details``, also while :func:`_fast_quantstats` replaces it."""
    import quantstats.stats

    return _ORIGINALS.get("drawdown_details", quantstats.stats.drawdown_details)(drawdown)


def _group_returns(returns: Any, groupby: Any, compounded: bool = False) -> Any:
    """quantstats' ``utils.group_returns`` as one grouped product instead of a Python call per group.

    quantstats applies ``comp`` (``(1 + r).prod() - 1``) group by group: some 2,400 calls per tear sheet for
    its monthly and yearly tables and charts. The grouped product multiplies the same factors in the same
    order; NaN are skipped by both.
    """
    if not compounded:
        return returns.groupby(groupby).sum()
    return returns.add(1).groupby(groupby).prod() - 1


def _safe_resample(data: Any, freq: str, func_name: Any = None, **kwargs: Any) -> Any:
    """quantstats' ``_compat.safe_resample``; compounding a period (``comp``) is one grouped product."""
    import quantstats.stats

    original = _ORIGINALS["safe_resample"]
    if func_name is quantstats.stats.comp and not kwargs:
        return original(data.add(1), freq, "prod") - 1
    return original(data, freq, func_name, **kwargs)


_ORIGINALS: dict[str, Any] = {}
_PAGE_LOCK = threading.Lock()


@contextlib.contextmanager
def _fast_quantstats():
    """quantstats' metrics, tables and charts call :func:`_drawdown_details`, :func:`_group_returns` and
    :func:`_safe_resample` (in every module that imported quantstats' own) for the duration, and the Agg
    canvas skips its redraw after each save."""
    import quantstats._compat
    import quantstats._plotting.core
    import quantstats._plotting.wrappers
    import quantstats.stats
    import quantstats.utils
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    patches = [(quantstats.stats, "drawdown_details", _drawdown_details),
               (quantstats.utils, "group_returns", _group_returns)]
    patches += [(m, "safe_resample", _safe_resample) for m in (quantstats._compat, quantstats._plotting.core,
                                                                quantstats._plotting.wrappers, quantstats.stats)]
    for module, name, _ in patches:
        _ORIGINALS.setdefault(name, getattr(module, name))
    # pyplot.savefig ends with canvas.draw_idle(), which on the non-interactive Agg canvas draws the whole
    # figure once more, into nothing: a third of each chart's time
    _PAGE_LOCK.acquire()  # pyplot's state and these patches are process-wide: one page at a time
    agg = FigureCanvasAgg.__dict__.get("draw_idle")
    try:
        for module, name, fast in patches:
            setattr(module, name, fast)
        FigureCanvasAgg.draw_idle = _no_draw  # type: ignore[method-assign]
        yield
    finally:
        for module, name, _ in patches:
            setattr(module, name, _ORIGINALS[name])
        if agg is None:
            del FigureCanvasAgg.draw_idle
        else:
            FigureCanvasAgg.draw_idle = agg  # type: ignore[method-assign]
        _PAGE_LOCK.release()


def _no_draw(*args: Any, **kwargs: Any) -> None:
    return None
