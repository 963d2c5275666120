"""The tear sheet's "Performance by volatility regime" section.

Every tear sheet (backtest or paper) splits the evaluation period's returns by the market's volatility
regime, so a strategy that only earns in calm markets shows it whatever its signal is:

- the *market* is the benchmark when the run has one, else the equal-weight universe (the mean of the
  symbols' close-to-close returns on each bar, over the symbols that have one);
- its regime is the ``regime`` signal's labelling (``kind: volatility``, :mod:`qf_plugins.signals.regime`,
  taken from the plugin registry like any component): 20-bar realised volatility against its own
  terciles fitted on the past only (expanding, at least 252 values), ``low`` / ``mid`` / ``high``;
- each bar's return is attributed to the regime labelled at the **previous** close (what was known
  before the bar's return happened); bars before the first label are ``unlabelled``.

The table gives, per regime: bars and share of the period, compounded return, annualised mean return and
volatility, Sharpe (risk-free 0, as metrics.json), share of positive bars, and the market's annualised
mean return in the same bars. It is always drawn (a run with a ``regime`` or ``regime_switch`` signal reads
its own regimes' effect from it, any other run its sensitivity to market volatility).

Example::

    labels = market_regimes(market_price)                   # 'low' / 'mid' / 'high' / NaN per bar
    regime_stats(returns, labels.shift(1), market_returns)  # one row per regime
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pandas as pd

from qf.bars import Bars
from qf.registry import get_registry

LABEL_OF_SCORE = {1.0: "low", 0.0: "mid", -1.0: "high"}  # the regime signal's scores (volatility kind)
ORDER = ("low", "mid", "high", "unlabelled")
VOL_WINDOW = 20
MIN_HISTORY = 252
REGIME_CSS = """
#regimes{clear:both;padding-top:10px}#regimes h2{margin:0 0 10px}#regimes p.caption{color:#555;margin:0 0 12px}
#regimes table{border-collapse:collapse;margin-bottom:20px}#regimes td,#regimes th{padding:3px 10px;text-align:right}
#regimes td.l,#regimes th:first-child{text-align:left}#regimes th{border-bottom:1px solid #ccc}
"""


def market_regimes(price: pd.Series, vol_window: int = VOL_WINDOW, min_history: int = MIN_HISTORY) -> pd.Series:
    """Volatility regime of each bar of ``price`` from the registry's ``regime`` signal (past data only).

    Example::

        market_regimes(spx_close).value_counts()   # low / mid / high
    """
    cls = get_registry().get("signal", "regime").cls
    signal = cls({"kind": "volatility", "vol_window": vol_window, "min_history": min_history})
    clean = price.astype(float).dropna()
    score = signal.compute(Bars(close=clean.to_frame("market"), source="market"))["market"]
    return score.map(LABEL_OF_SCORE).reindex(price.index)


def market_price(benchmark: pd.Series | None, close: pd.DataFrame | None) -> tuple[pd.Series | None, str]:
    """(the market's price path, what it is): the benchmark's, else the equal-weight universe's; (None, why)."""
    if benchmark is not None and benchmark.notna().sum() > 1:
        name = str(benchmark.name) if benchmark.name else "benchmark"
        return (1.0 + benchmark.fillna(0.0)).cumprod(), f"the benchmark ({name})"
    if close is not None and len(close) > 1:
        ret = close.pct_change(fill_method=None).mean(axis=1, skipna=True).fillna(0.0)
        return (1.0 + ret).cumprod(), "the equal-weight universe"
    return None, "no benchmark and no prices"


def regime_stats(returns: pd.Series, regimes: pd.Series, market: pd.Series | None = None,
                 periods_per_year: int = 252) -> pd.DataFrame:
    """Per regime (``regimes`` aligned to ``returns``; NaN is ``unlabelled``): the section's table.

    Example::

        regime_stats(pd.Series([0.01, -0.02, 0.03]), pd.Series(["low", "high", "low"]))
        # low: bars 2, compounded 4.03 %, mean x 252 ...
    """
    labels = regimes.reindex(returns.index).fillna("unlabelled")
    rows = []
    n_all = len(returns)
    for name in ORDER:
        mask = (labels == name).to_numpy()
        if not mask.any():
            continue
        r = returns.to_numpy(dtype=float)[mask]
        sd = float(np.std(r, ddof=1)) if len(r) > 1 else float("nan")
        mean = float(np.mean(r))
        row: dict[str, Any] = {
            "regime": name, "bars": int(mask.sum()), "share": mask.sum() / n_all,
            "compounded": float(np.prod(1.0 + r) - 1.0), "ann_return": mean * periods_per_year,
            "ann_volatility": sd * math.sqrt(periods_per_year),
            "sharpe": mean / sd * math.sqrt(periods_per_year) if sd > 0 else float("nan"),
            "hit_rate": float((r > 0).mean()),
        }
        if market is not None:
            m = market.reindex(returns.index).to_numpy(dtype=float)[mask]
            row["market_ann_return"] = float(np.nanmean(m)) * periods_per_year if np.isfinite(m).any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(key: str, v: Any) -> str:
    if isinstance(v, str):
        return html.escape(v)
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if key in ("bars",):
        return str(int(v))
    if key == "sharpe":
        return f"{v:.2f}"
    return f"{v:.2%}"


_HEAD = {"regime": "Regime", "bars": "Bars", "share": "Share", "compounded": "Compounded return",
         "ann_return": "Return (ann.)", "ann_volatility": "Volatility (ann.)", "sharpe": "Sharpe",
         "hit_rate": "Positive bars", "market_ann_return": "Market return (ann.)"}


def regime_section(returns: pd.Series, benchmark: pd.Series | None, close: pd.DataFrame | None,
                   periods_per_year: int = 252) -> str:
    """The section's HTML (``<div id="regimes">``): the per-regime table with what the market was, or a
    sentence saying why there is none.

    Example::

        page = page.replace("</div>\\n</body>", regime_section(rets, bench, bars.close) + "</div>\\n</body>")
    """
    head = '<div id="regimes"><hr><h2>Performance by volatility regime</h2>'
    price, what = market_price(benchmark, close)
    if price is None or not len(returns):
        return head + f'<p class="caption">Not drawn: {html.escape(what)}.</p></div>'
    labels = market_regimes(price)
    known = labels.shift(1).reindex(returns.index)  # the regime known at the previous close
    market = price.pct_change(fill_method=None)
    table = regime_stats(returns, known, market, periods_per_year)
    caption = (f"The market is {html.escape(what)}; its regime is the <code>regime</code> signal's volatility "
               f"labelling ({VOL_WINDOW}-bar realised volatility against its own terciles fitted on the past only, "
               f"at least {MIN_HISTORY} values), and each bar's return counts in the regime labelled at the previous "
               "close. Risk-free rate 0, as in metrics.json.")
    if known.notna().sum() == 0:
        caption += (f" The market's history is too short for a label in the evaluation period (the first label needs "
                    f"{VOL_WINDOW + MIN_HISTORY} bars).")
    cols = list(table.columns)
    rows = "".join("<tr>" + "".join(f'<td class="{"l" if c == "regime" else "num"}" data-value="{r[c]}">'
                                    f"{_cell(c, r[c])}</td>" for c in cols) + "</tr>"
                   for r in table.to_dict("records"))
    heads = "".join(f"<th>{html.escape(_HEAD.get(c, c))}</th>" for c in cols)
    return (f'{head}<p class="caption">{caption}</p><table class="regimes"><thead><tr>{heads}</tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")
