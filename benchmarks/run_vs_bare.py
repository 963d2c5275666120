"""`qf run experiments/hrp_swing.yaml` against a bare script doing the same vectorbt + quantstats work.

Both sides run in a fresh Python process (imports, numba compilation and all), one after the other, and
the wall times are printed side by side with their ratio. The work both do:

- load skfolio's 20 large caps from 2010 and the S&P 500 index (the benchmark);
- the swing signal and weekly HRP weights (riskfolio-lib) — computed by the same plugin classes, since
  that cost is the strategy's, not the framework's;
- simulate in vectorbt with fees and slippage, fills at the next close;
- write a quantstats HTML tear sheet with the benchmark.

qf additionally validates the YAML, applies the max_weight and drawdown_halt rules in its order function,
and writes metrics.json, equity.parquet, orders.csv, weights.parquet, the manifest and reports/index.html.
The bare script uses ``Portfolio.from_orders`` with target-percent sizing and no risk rules. Run::

    python benchmarks/run_vs_bare.py [--repeat 2]
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
    import logging, warnings
    import matplotlib; matplotlib.use("Agg")
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    import numpy as np, pandas as pd, vectorbt as vbt, quantstats as qs
    from skfolio.datasets import load_sp500_dataset, load_sp500_index
    from qf.bars import Bars
    from qf_plugins.signals.swing import Swing
    from qf_plugins.sizers.hrp import Hrp

    close = load_sp500_dataset().loc["2010-01-01":]
    bench = load_sp500_index()["SP500"].reindex(close.index).ffill().pct_change().fillna(0.0)
    bars = Bars(close=close, source="bare")
    signal = Swing({"trend": 200, "lookback": 126, "rsi_window": 3, "entry_rsi": 20, "exit_rsi": 70,
                    "max_hold": 15}).compute(bars)
    periods = close.index.to_period("W")
    dates = close.index[np.r_[periods[1:] != periods[:-1], True]]
    weights = Hrp({"window": 252}).size(signal, bars, dates).clip(upper=0.25)
    size = weights.reindex(close.index).shift(1)  # decided at the close, filled at the next close
    pf = vbt.Portfolio.from_orders(close, size=size, size_type="targetpercent", fees=0.0005, slippage=0.0005,
                                   init_cash=100_000, cash_sharing=True, group_by=True, call_seq="auto", freq="1D")
    rets = pf.returns()
    rets.name = "Strategy"
    bench.name = "SP500"
    qs.reports.html(rets, benchmark=bench, output=OUT, title="hrp_swing (bare)")
    print("final equity", pf.value().iloc[-1])
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
    q, b = min(qf_times), min(bare_times)
    print("hrp_swing: 20 assets, weekly HRP, 2010-2022, tear sheet included; fresh process each, best of",
          args.repeat)
    print(f"{'':8}{'seconds':>10}")
    print(f"{'qf run':8}{q:10.2f}")
    print(f"{'bare':8}{b:10.2f}")
    print(f"ratio qf / bare: {q / b:.2f}x")


if __name__ == "__main__":
    main()
