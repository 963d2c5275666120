"""qf's backtrader engine against a bare backtrader script, on the same run, side by side.

The run: 20 US large caps (skfolio's bundled adjusted closes, 1990-2022, about 8,300 bars), equal weight,
rebalanced at each month end, filled at the decision close, whole shares, 5 bp fees.

- **qf**: the pipeline (``constant`` signal, ``equal`` sizer) and :func:`qf.engines.backtrader.strategy.run_backtrader`
  (numpy feeds, the shared risk and order-planning kernels, fill and fee bookkeeping).
- **bare**: the script a backtrader user would write: one ``PandasData`` feed per symbol and a strategy
  calling ``order_target_percent`` on month-end bars, with cheat-on-close.

The final equities differ: the bare script sends its orders in symbol order, so many buys reach the
broker before the sales that would fund them and are refused for lack of cash (about a third of its
orders end as ``Margin``), while qf's planner sends sells first and sizes the buys to what is available.
Data loading is excluded from both timings; each side is timed ``--repeat`` times and the best run kept
(after one warm-up run of qf so numba's compile cache is loaded). Run::

    python benchmarks/bt_vs_bare.py            # full history
    python benchmarks/bt_vs_bare.py --bars 2000
"""

from __future__ import annotations

import argparse
import time

import backtrader as bt
import numpy as np
import pandas as pd

from qf.bars import Bars, validate
from qf.config.loader import LoadedExperiment, Source, build
from qf.engines.backtrader.strategy import run_backtrader
from qf.pipeline import compute_targets

FEES = 0.0005
CASH = 100_000.0


def experiment() -> LoadedExperiment:
    raw = {
        "name": "bench_equal_monthly",
        "data": {"type": "sample", "params": {"dataset": "sp500_20"}},
        "signal": {"type": "constant"},
        "sizer": {"type": "equal"},
        "rebalance": {"freq": "month_end"},
        # whole shares, as order_target_percent trades
        "execution": {"engine": "backtrader", "fill": "close", "fees": FEES, "initial_cash": CASH,
                      "fractional": False},
        "report": {"tearsheet": False},
    }
    return build(raw, Source("bench.yaml"), None)


def run_qf(exp: LoadedExperiment, bars: Bars) -> float:
    targets = compute_targets(exp, bars)
    res = run_backtrader(bars, targets.targets, targets.risk, exp.spec.execution, broker=exp.broker)
    return float(res.equity.iloc[-1])


class MonthlyEqualWeight(bt.Strategy):
    """The bare script: on each month's last bar, target 1/N of the portfolio in every symbol."""

    params = (("month_end", None),)

    def next(self) -> None:
        if not self.p.month_end[len(self) - 1]:
            return
        w = 1.0 / len(self.datas)
        for d in self.datas:
            self.order_target_percent(data=d, target=w)


def run_bare(close: pd.DataFrame) -> float:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=FEES)
    cerebro.broker.set_coc(True)
    for sym in close.columns:
        px = close[sym]
        frame = pd.DataFrame({"open": px, "high": px, "low": px, "close": px, "volume": 0.0})
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=sym)
    periods = close.index.to_period("M")
    month_end = np.r_[periods[1:] != periods[:-1], True]
    cerebro.addstrategy(MonthlyEqualWeight, month_end=month_end)
    strat = cerebro.run()[0]
    return float(strat.broker.getvalue())


def best_of(fn, repeat: int) -> tuple[float, float]:
    times, out = [], float("nan")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=None, help="use only the last N bars (default: all)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    exp = experiment()
    bars = exp.data.load()
    if args.bars:
        bars = validate(bars.iloc(slice(-args.bars, None)))
    close = bars.close
    run_qf(exp, validate(bars.iloc(slice(0, 300))))  # warm-up: loads numba's compile cache

    t_qf, eq_qf = best_of(lambda: run_qf(exp, bars), args.repeat)
    t_bare, eq_bare = best_of(lambda: run_bare(close), args.repeat)
    n_bars, n_sym = close.shape
    print(f"20-asset equal weight, monthly rebalance: {n_bars} bars x {n_sym} symbols, best of {args.repeat}")
    print(f"{'':6}{'seconds':>9}{'final equity':>16}")
    print(f"{'qf':6}{t_qf:9.3f}{eq_qf:16,.2f}")
    print(f"{'bare':6}{t_bare:9.3f}{eq_bare:16,.2f}")
    print(f"ratio qf / bare: {t_qf / t_bare:.2f}x")


if __name__ == "__main__":
    main()
