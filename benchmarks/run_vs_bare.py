"""`qf run experiments/hrp_swing.yaml` against a bare script doing the same work with the libraries directly.

Both sides run in a fresh Python process (imports, numba compilation and all), one after the other, and
the wall times are printed side by side with their ratio. The work both do:

- load skfolio's 20 large caps from 2010 and the S&P 500 index (the benchmark);
- the swing signal (200-day trend, 126-day momentum, RSI(3) entries/exits, 15-bar time stop) and, every
  Friday, HRP weights (Pearson, single linkage, variance) of the selected stocks over 252 days of returns,
  capped at 25 %;
- simulate with fees and slippage, fills at the next close;
- write a quantstats HTML tear sheet with the benchmark.

The bare script calls skfolio, pandas, riskfolio-lib (``HCPortfolio``), vectorbt
(``Portfolio.from_orders``, target-percent sizing) and quantstats only, never qf's own classes, so it does
not speed up when qf does. qf additionally validates the YAML, applies the drawdown_halt rule in its order
function, and writes metrics.json, equity.parquet, orders.csv, weights.parquet, the manifest and
reports/index.html. ``--phases`` also prints where qf's time goes (one extra in-process run). Run::

    python benchmarks/run_vs_bare.py [--repeat 2] [--phases]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BARE = textwrap.dedent("""
    import contextlib, io, logging, warnings
    import matplotlib; matplotlib.use("Agg")
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    import numpy as np, pandas as pd, riskfolio as rp, vectorbt as vbt, quantstats as qs
    from skfolio.datasets import load_sp500_dataset, load_sp500_index

    close = load_sp500_dataset().loc["2010-01-01":]
    bench = load_sp500_index()["SP500"].reindex(close.index).ffill().pct_change().fillna(0.0)

    # swing signal: long while in trend after an RSI(3) pullback, out on RSI >= 70, a broken trend or 15 bars
    trend = close.rolling(200).mean()
    momentum = close / close.shift(126) - 1
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / 3, adjust=False, min_periods=3).mean()
    loss = (-delta).clip(lower=0).ewm(alpha=1 / 3, adjust=False, min_periods=3).mean()
    rsi = 100 * gain / (gain + loss)
    valid = (trend.notna() & momentum.notna() & rsi.notna()).to_numpy()
    enter = ((close > trend) & (momentum > 0) & (rsi <= 20)).to_numpy()
    leave = ((rsi >= 70) | (close < trend)).to_numpy()
    long = np.zeros(close.shape[1], bool)
    held = np.zeros(close.shape[1], int)
    signal = np.zeros(close.shape)
    for t in range(len(close)):
        held = np.where(long, held + 1, 0)
        stop = long & (leave[t] | (held >= 15))
        start = ~long & enter[t]
        long = np.where(stop, False, long | start) & valid[t]
        signal[t] = long

    # HRP every Friday on the selected stocks' last 252 daily returns
    rets = close.pct_change()
    periods = close.index.to_period("W")
    fridays = np.flatnonzero(np.r_[periods[1:] != periods[:-1], True])
    weights = pd.DataFrame(0.0, index=close.index[fridays], columns=close.columns)
    for i in fridays:
        window = rets.iloc[max(i - 251, 0) : i + 1]
        names = [c for c, on in zip(close.columns, signal[i]) if on and window[c].notna().all()
                 and window[c].std() > 0] if i >= 252 else []
        if len(names) == 1:
            weights.loc[close.index[i], names] = 1.0
        elif names:
            with contextlib.redirect_stdout(io.StringIO()):
                w = rp.HCPortfolio(returns=window[names]).optimization(
                    model="HRP", codependence="pearson", rm="MV", linkage="single", leaf_order=True)
            weights.loc[close.index[i], names] = w["weights"].reindex(names).to_numpy()
    weights = weights.clip(upper=0.25)

    size = weights.reindex(close.index).shift(1)  # decided at the close, filled at the next close
    pf = vbt.Portfolio.from_orders(close, size=size, size_type="targetpercent", fees=0.0005, slippage=0.0005,
                                   init_cash=100_000, cash_sharing=True, group_by=True, call_seq="auto", freq="1D")
    returns = pf.returns()
    returns.name = "Strategy"
    bench.name = "SP500"
    qs.reports.html(returns, benchmark=bench, output=OUT, title="hrp_swing (bare)")
    print("final equity", pf.value().iloc[-1])
""")

PHASES = textwrap.dedent("""
    import sys, time
    t0 = time.perf_counter()
    from qf.config.loader import load_experiment
    from qf.runner import run_experiment
    marks = [("imports", time.perf_counter())]
    exp = load_experiment("experiments/hrp_swing.yaml")
    marks.append(("validate", time.perf_counter()))
    names = {"computing signals and targets": "load data", "simulating (vectorbt)": "signals + targets",
             "writing report": "simulate + metrics"}
    run_experiment(exp, out=sys.argv[1], step=lambda s: marks.append((names.get(s, "-"), time.perf_counter())))
    marks.append(("report + tear sheet", time.perf_counter()))
    last = t0
    for name, t in marks:
        if name != "-":
            print(f"  {name:22}{t - last:6.2f} s")
        last = t
    print(f"  {'total':22}{last - t0:6.2f} s   (sizer: {getattr(exp.sizer, 'info', {})})")
""")


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed:\n{res.stdout}\n{res.stderr}")
    return elapsed, res.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=1, help="runs per side; the best is kept")
    ap.add_argument("--phases", action="store_true", help="also time qf's phases in one more fresh process")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bare.py"
        script.write_text(f"OUT = {str(Path(tmp) / 'bare.html')!r}\n" + BARE)
        qf_times, bare_times = [], []
        for i in range(args.repeat):
            t, _ = timed([sys.executable, "-m", "qf.cli.main", "run", "experiments/hrp_swing.yaml", "--out",
                          str(Path(tmp) / f"qf{i}")], ROOT)
            qf_times.append(t)
            t, _ = timed([sys.executable, str(script)], ROOT)
            bare_times.append(t)
        if args.phases:
            _, phases = timed([sys.executable, "-c", PHASES, str(Path(tmp) / "phases")], ROOT)
    q, b = min(qf_times), min(bare_times)
    print("hrp_swing: 20 assets, weekly HRP, 2010-2022, tear sheet included; fresh process each, best of",
          args.repeat)
    print(f"{'':8}{'seconds':>10}")
    print(f"{'qf run':8}{q:10.2f}")
    print(f"{'bare':8}{b:10.2f}")
    print(f"ratio qf / bare: {q / b:.2f}x")
    if args.phases:
        print("qf phases (one more fresh process):")
        print(phases, end="")


if __name__ == "__main__":
    main()
