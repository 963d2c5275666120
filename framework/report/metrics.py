"""The one metrics function behind every number qf shows: the CLI table, metrics.json, the tear sheet's
headline figures, ``qf report compare/list``, index.html and sweep rows.

**Evaluation period.** Statistics cover the bars on which the strategy could trade, not its warm-up:
the period starts at the first decision bar at or after the longest warm-up (``max(signal.warmup,
sizer.warmup)``, or earlier if the pipeline already asks for a position), and with a next-bar fill
(``next_open``/``next_close``) at the bar after it, where that decision's orders fill. Each counted bar
contributes one simple return, measured from the previous close (from ``initial_cash`` when the period
starts on the first bar). Every metrics dict states its period: ``eval_start`` (first counted bar),
``eval_end`` (last bar), ``eval_bars`` (number of counted returns, the T of PSR/DSR) and
``excluded_bars`` (bars of the curve before the period); ``n_bars``, ``start`` and ``end`` describe the
whole curve, ``initial_cash`` the equity the first bar is measured from.

**Conventions** (one set, used everywhere, and the tear sheet is fed the same returns with the same
settings so its figures equal these):

- ``periods_per_year`` = 252 bars, risk-free rate 0;
- ``cagr`` = ``(end / start) ** (252 / eval_bars) - 1`` where start is the equity before the first
  counted bar and end the last equity (quantstats' CAGR: years = number of returns / 252);
- ``sharpe`` = mean / std (ddof=1) of the returns x sqrt(252);
- ``sortino`` = mean / sqrt(mean(min(r, 0)^2)) x sqrt(252) (quantstats' downside deviation);
- ``volatility`` = std (ddof=1) x sqrt(252);
- ``max_drawdown`` over the period's equity including its starting value; negative (-0.25 = 25% below peak);
- ``total_return`` = end / start - 1 over the period; ``final_equity`` is the account's last value;
- ``turnover`` = traded value / average equity, per year of the period (``eval_bars / 252`` years);
  ``n_orders`` and ``fees_paid`` count the fills inside the period.

Ratios that are undefined (no variance, no losses, no bars) are reported as 0.0.

Example::

    start = evaluation_start(exp, bars.index, targets.targets)
    m = compute_metrics(result, 100_000, eval_start=start)
    m["sharpe"], m["eval_start"], m["eval_bars"]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from qf.engines.result import EngineResult
from qf.rebalance import bar_positions

PERIODS_PER_YEAR = 252
PERIODS = PERIODS_PER_YEAR  # the name older callers import
RISK_FREE = 0.0
CAGR_CONVENTION = "(end/start)^(periods_per_year/eval_bars) - 1"


def returns_of(equity: pd.Series) -> pd.Series:
    """Bar-to-bar simple returns of a whole equity curve (its first bar has none).

    Example::

        returns_of(pd.Series([100.0, 101.0, 99.99], index=pd.bdate_range("2024-01-01", periods=3)))
    """
    return equity.pct_change().iloc[1:].fillna(0.0)


def warmup_of(exp: Any) -> int:
    """Bars the pipeline needs before its first meaningful decision (signal and sizer warm-up).

    Example::

        warmup_of(load_experiment("experiments/hrp_swing.yaml"))   # 252: the HRP window
    """
    return max(int(getattr(exp.signal, "warmup", 0) or 0), int(getattr(exp.sizer, "warmup", 0) or 0), 0)


def evaluation_start(exp: Any, index: pd.DatetimeIndex, targets: pd.DataFrame,
                     trade_from: int = 0) -> pd.Timestamp:
    """The first bar of the evaluation period of ``exp`` run on bars ``index`` with these target weights.

    The first decision is the first rebalance date (a row of ``targets``) at or after bar
    ``max(warm-up, trade_from)``, or any earlier row that already holds a non-zero weight (a component
    that trades before its declared warm-up is evaluated from its first trade). With ``fill: close``
    that decision fills on its own bar, which is the start; with a next-bar fill the start is the
    next bar. When nothing can be traded the start lies after the last bar (an empty period).

    ``trade_from`` is the position in ``index`` before which no order may fill (sweeps of trainable
    models, walk-forward test windows). Shared by ``qf run``, sweeps and paper reports.

    Example::

        t = compute_targets(exp, bars)
        evaluation_start(exp, bars.index, t.targets)   # e.g. Timestamp('2011-01-10')
    """
    n = len(index)
    if n == 0:
        raise ValueError("evaluation_start needs at least one bar")
    first = min(max(warmup_of(exp), int(trade_from), 0), n)
    pos = bar_positions(index, pd.DatetimeIndex(targets.index))
    # every row from ``first`` on is a candidate; before it (and from trade_from on) only rows holding a
    # weight, so only those few rows' weights are read
    early = np.flatnonzero((pos >= int(trade_from)) & (pos < first))
    if len(early) and targets.shape[1]:
        weights = targets.to_numpy(dtype=float)[early]
        early = early[np.nan_to_num(np.abs(weights)).sum(axis=1) > 0]
    else:
        early = early[:0]
    candidates = np.concatenate([pos[pos >= first], pos[early]])
    if len(candidates) == 0:
        return index[-1] + pd.Timedelta(days=1)
    decision = int(candidates.min())
    start = decision if exp.spec.execution.fill == "close" else decision + 1
    return index[start] if start < n else index[-1] + pd.Timedelta(days=1)


def _aligned(ts: pd.Timestamp | str, index: pd.DatetimeIndex) -> pd.Timestamp:
    # a period start read back from metrics.json has no time zone; live bars may have one
    ts = pd.Timestamp(ts)
    if ts.tz is None and index.tz is not None:
        return ts.tz_localize(index.tz)
    if ts.tz is not None and index.tz is None:
        return ts.tz_convert(None)
    return ts


def _window(equity: pd.Series, initial_cash: float,
            eval_start: pd.Timestamp | None) -> tuple[float, pd.Series]:
    """(equity before the period, equity over the period)."""
    pos = 0 if eval_start is None else int(equity.index.searchsorted(_aligned(eval_start, equity.index), side="left"))
    if pos == 0:
        return float(initial_cash), equity
    return float(equity.iloc[pos - 1]), equity.iloc[pos:]


def eval_returns(equity: pd.Series, initial_cash: float, eval_start: pd.Timestamp | None = None) -> pd.Series:
    """The returns every statistic (and the tear sheet) uses: one per bar of the evaluation period.

    Bars from ``eval_start`` (default: the first bar) to the end; each return is measured from the
    previous close, the first bar's from ``initial_cash``.

    Example::

        r = eval_returns(result.equity, 100_000, pd.Timestamp("2011-01-10"))
        len(r)   # == compute_metrics(result, 100_000, eval_start=...)["eval_bars"]
    """
    base, window = _window(equity.astype(float), initial_cash, eval_start)
    values = window.to_numpy(dtype=float)
    prev = np.r_[base, values[:-1]] if len(values) else values
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(prev != 0, values / prev - 1.0, 0.0)
    return pd.Series(r, index=window.index, name="returns")


def _fill_times(orders: pd.DataFrame, index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    # fills from a live broker may carry a time zone the bar index does not (or the other way round)
    t = pd.DatetimeIndex(pd.to_datetime(orders["time"]))
    if t.tz is not None and index.tz is None:
        t = t.tz_convert(None)
    elif t.tz is None and index.tz is not None:
        t = t.tz_localize(index.tz)
    return t


def _stamp(ts: pd.Timestamp) -> str:
    ts = pd.Timestamp(ts)
    return str(ts.date()) if ts == ts.normalize() and ts.tz is None else ts.isoformat()


def compute_metrics(result: EngineResult, initial_cash: float, *,
                    eval_start: pd.Timestamp | None = None) -> dict[str, Any]:
    """Metrics of one run over its evaluation period, as saved in metrics.json (see the module docstring).

    ``eval_start`` is the first bar counted (:func:`evaluation_start`); by default the whole curve,
    its first bar measured from ``initial_cash``.

    Example::

        m = compute_metrics(result, 100_000, eval_start=pd.Timestamp("2011-01-10"))
        m["sharpe"], m["max_drawdown"], m["eval_bars"]
    """
    eq = result.equity.astype(float)
    pos = 0 if eval_start is None else int(eq.index.searchsorted(_aligned(eval_start, eq.index), side="left"))
    n = len(eq) - pos
    orders = result.orders
    if n and len(orders):
        orders = orders[_fill_times(orders, eq.index) >= eq.index[pos]]
    elif not n:
        orders = orders.iloc[0:0]
    traded = float((orders["quantity"] * orders["price"]).sum()) if len(orders) else 0.0
    fees = float(orders["fee"].sum()) if len(orders) else 0.0
    return metrics_from_equity(eq.to_numpy(), eq.index, initial_cash, pos, eval_start, n_orders=len(orders),
                               fees_paid=fees, traded=traded, risk_events=len(result.events))


def metrics_from_equity(equity: np.ndarray, index: pd.DatetimeIndex, initial_cash: float, pos: int,
                        eval_start: pd.Timestamp | None = None, *, n_orders: int = 0, fees_paid: float = 0.0,
                        traded: float = 0.0, risk_events: int = 0) -> dict[str, Any]:
    """:func:`compute_metrics` from arrays: the account's ``equity`` at each bar of ``index``, the evaluation
    period starting at bar ``pos`` (``eval_start`` as given to :func:`compute_metrics`, only for the period
    label of an empty period), and the fills of that period already counted (``n_orders``, ``fees_paid``,
    ``traded`` = sum of quantity x price). What a sweep uses when its kernel reduces the fills itself;
    :func:`compute_metrics` is this function on an :class:`~qf.engines.result.EngineResult`.

    Example::

        m = metrics_from_equity(equity, bars.index, 100_000, 252, n_orders=310, fees_paid=51.2, traded=1.1e6)
        m["sharpe"]
    """
    values = np.asarray(equity, dtype=float)[pos:]
    base = float(initial_cash) if pos == 0 else float(equity[pos - 1])
    n = len(values)
    prev = np.r_[base, values[:-1]] if n else values
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(prev != 0, values / prev - 1.0, 0.0)
    end_value = float(values[-1]) if n else base
    growth = end_value / base if base > 0 else float("nan")
    sd = float(np.std(r, ddof=1)) if n > 1 else 0.0
    mean = float(np.mean(r)) if n else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))) if n else 0.0
    path = np.r_[base, values]
    dd = path / np.maximum.accumulate(path) - 1.0 if base > 0 else np.array([0.0])
    years = n / PERIODS_PER_YEAR
    if n == 0 or not math.isfinite(growth):
        cagr = 0.0
    else:
        cagr = growth ** (1.0 / years) - 1.0 if growth > 0 else -1.0
    if not n:
        n_orders, fees_paid, traded = 0, 0.0, 0.0
    avg_equity = float(pd.Series(values).mean()) if n else 0.0  # pandas' mean, as before (bottleneck or not)
    first = eval_start if eval_start is not None else (index[0] if len(index) else None)
    T = len(equity)
    return {
        "initial_cash": float(initial_cash),
        "final_equity": float(equity[-1]) if T else float(initial_cash),
        "total_return": growth - 1.0 if math.isfinite(growth) else 0.0,
        "cagr": cagr,
        "sharpe": mean / sd * math.sqrt(PERIODS_PER_YEAR) if sd > 0 else 0.0,
        "sortino": mean / downside * math.sqrt(PERIODS_PER_YEAR) if downside > 0 else 0.0,
        "max_drawdown": float(dd.min()),
        "volatility": sd * math.sqrt(PERIODS_PER_YEAR),
        "n_orders": int(n_orders),
        "fees_paid": float(fees_paid),
        "turnover": traded / avg_equity / years if n and avg_equity > 0 else 0.0,
        "n_bars": int(T),
        "start": str(index[0].date()) if T else None,
        "end": str(index[-1].date()) if T else None,
        "eval_start": _stamp(index[pos]) if n else (_stamp(first) if first is not None else None),
        "eval_end": _stamp(index[-1]) if n else None,
        "eval_bars": int(n),
        "excluded_bars": int(T - n),
        "periods_per_year": PERIODS_PER_YEAR,
        "risk_free": RISK_FREE,
        "cagr_convention": CAGR_CONVENTION,
        "risk_events": int(risk_events),
    }
