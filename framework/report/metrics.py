"""Performance metrics computed the same way for every engine (daily bars, 252 per year).

- ``sharpe`` = mean / std (ddof=1) of simple returns x sqrt(252), risk-free rate 0;
- ``sortino`` = mean / sqrt(mean(min(r, 0)^2)) x sqrt(252) (the downside deviation quantstats uses);
- ``cagr`` over calendar time (days / 365.25); ``max_drawdown`` is negative (-0.25 = 25% below peak);
- ``turnover`` = traded value / average equity, per year.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from qf.engines.result import EngineResult

PERIODS = 252


def returns_of(equity: pd.Series) -> pd.Series:
    return equity.pct_change().iloc[1:].fillna(0.0)


def compute_metrics(result: EngineResult, initial_cash: float) -> dict[str, float | int]:
    """Metrics of one run, as saved in metrics.json.

    Example::

        m = compute_metrics(result, 100_000)
        m["sharpe"], m["max_drawdown"]
    """
    eq = result.equity.astype(float)
    rets = returns_of(eq)
    r = rets.to_numpy()
    final = float(eq.iloc[-1])
    years = max((eq.index[-1] - eq.index[0]).days / 365.25, 1e-9)
    total = final / initial_cash - 1.0
    sd = float(np.std(r, ddof=1)) if len(r) > 1 else 0.0
    mean = float(np.mean(r)) if len(r) else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))) if len(r) else 0.0
    dd = eq / eq.cummax() - 1.0
    traded = result.traded_value
    return {
        "final_equity": final,
        "total_return": total,
        "cagr": (final / initial_cash) ** (1.0 / years) - 1.0 if final > 0 else -1.0,
        "sharpe": mean / sd * math.sqrt(PERIODS) if sd > 0 else 0.0,
        "sortino": mean / downside * math.sqrt(PERIODS) if downside > 0 else 0.0,
        "max_drawdown": float(dd.min()),
        "volatility": sd * math.sqrt(PERIODS),
        "n_orders": int(len(result.orders)),
        "fees_paid": result.fees_paid,
        "turnover": traded / float(eq.mean()) / years if len(eq) else 0.0,
        "n_bars": int(len(eq)),
        "start": str(eq.index[0].date()),
        "end": str(eq.index[-1].date()),
        "risk_events": int(len(result.events)),
    }
