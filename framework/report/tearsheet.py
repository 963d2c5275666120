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
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qf.report.metrics import PERIODS_PER_YEAR, RISK_FREE

log = logging.getLogger(__name__)

# figures from quantstats go into these slots; {{...}} left unfilled are removed by quantstats
_FIGURES = ("returns", "log_returns", "vol_returns", "eoy_returns", "monthly_dist", "daily_returns",
            "rolling_beta", "rolling_vol", "rolling_sharpe", "rolling_sortino", "dd_periods", "dd_plot",
            "monthly_heatmap", "returns_dist")

_CSS = """
body{-webkit-font-smoothing:antialiased;margin:30px;background:#fff;color:#000}
body,p,table,td,th{font:13px/1.4 Arial,Helvetica,"DejaVu Sans",sans-serif}
.container{max-width:960px;margin:auto}img,svg{width:100%;height:auto}
h1,h2,h3,h4{font-weight:400;margin:0}h1 small{margin-left:10px;font-size:14px;color:#555}
h3{margin-bottom:10px;font-weight:700}h4{color:grey}h4 a{color:#09c;text-decoration:none}
.note{color:#a40;font-weight:700}
hr{margin:25px 0 40px;height:0;border:0;border-top:1px solid #ccc}
#left{width:620px;margin-right:18px;margin-top:-1.2rem;float:left}#right{width:320px;float:right}
#left svg{margin:-1.5rem 0}#monthly_heatmap{overflow:hidden}#monthly_heatmap svg{margin:-1.5rem 0}
#eoy_returns svg{margin:0}
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
<style>{_CSS}</style>
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


def _eoy(returns: pd.Series, benchmark: pd.Series | None) -> tuple[str, str]:
    """End-of-year table and chart of the period's returns (and the benchmark's on the same bars)."""
    strat = _year_returns(returns)
    cols = {"Strategy": strat}
    if benchmark is not None:
        cols = {str(benchmark.name or "Benchmark"): _year_returns(benchmark), **cols}
    frame = pd.DataFrame(cols)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["Year", *frame.columns]) + (
        "<th>Won</th>" if benchmark is not None else "")
    rows = []
    for year, row in frame.iterrows():
        cells = "".join(f"<td>{v:.2%}</td>" for v in row)
        won = f"<td>{'+' if row.iloc[-1] > row.iloc[0] else '-'}</td>" if benchmark is not None else ""
        rows.append(f"<tr><td>{year}</td>{cells}{won}</tr>")
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return table, _eoy_chart(frame)


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
    ax.set_xticks(x, [str(y) for y in frame.index], rotation=45 if len(frame) > 8 else 0)
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


def _simple(returns: pd.Series, path: Path, title: str, subtitle: str | None, warning: str | None, reason: str,
            metrics: dict[str, Any] | None) -> None:
    """A page without quantstats: the period, why there are no charts, and the metrics."""
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_cell(v))}</td></tr>"
                   for k, v in (metrics or {}).items())
    table = f"<table><tbody>{rows}</tbody></table>" if rows else ""
    body = (f"<hr><p>No charts: {html.escape(reason)}. The run's figures (metrics.json):</p>{table}")
    path.write_text(_page(title, _heading(title, subtitle, _period(returns), warning), body), encoding="utf-8")


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
                    metrics: dict[str, Any] | None = None) -> None:
    """Write the tear sheet of the evaluation period's ``returns`` (with ``benchmark``) to ``path``.

    ``title`` is the page's heading and browser-tab title; ``subtitle`` is shown under it (e.g. "paper,
    backtrader") and ``warning`` under that, highlighted (e.g. "interrupted paper session"); ``metrics``
    fill the simpler page written when the returns are too short or flat for charts, or quantstats fails.

    Example::

        write_tearsheet(eval_returns(result.equity, 100_000, start), bench_rets,
                        Path("reports/x/run/tearsheet.html"), "hrp_swing", subtitle="backtest, vectorbt")
    """
    rets, bench = _inputs(returns, benchmark)
    reason = _full_report_possible(rets)
    if reason is None:
        try:
            page = _quantstats_page(rets, bench, path, title, subtitle, warning)
        except Exception as exc:  # noqa: BLE001 - a tear sheet must never fail the run
            log.warning("tear sheet: quantstats failed (%s: %s); writing a simpler page", type(exc).__name__, exc)
            reason = f"quantstats could not draw this curve ({type(exc).__name__}: {exc})"
        else:
            path.write_text(page, encoding="utf-8")
            return
    _simple(rets, path, title, subtitle, warning, reason, metrics)


def _quantstats_page(rets: pd.Series, bench: pd.Series | None, path: Path, title: str, subtitle: str | None,
                     warning: str | None) -> str:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.qs.html")
    tpl = path.with_name(f".{path.name}.template.html")
    try:
        with _quiet():
            import quantstats as qs

            eoy_table, eoy_chart = _eoy(rets, bench)
            tpl.write_text(_template(title, subtitle, warning, eoy_table, eoy_chart), encoding="utf-8")
            qs.reports.html(rets, benchmark=bench, rf=RISK_FREE, title=title, output=str(tmp),
                            compounded=True, periods_per_year=PERIODS_PER_YEAR, match_dates=False,
                            template_path=str(tpl), benchmark_title=bench.name if bench is not None else None)
        return _clean(tmp.read_text(encoding="utf-8"))
    finally:
        plt.close("all")
        tmp.unlink(missing_ok=True)
        tpl.unlink(missing_ok=True)
