"""Tear sheet for 3,300 days: quantstats' stock ``qs.reports.html`` vs qf's ``write_tearsheet``, in one run.

The returns are the equal-weight daily returns of skfolio's 20 S&P 500 stocks (``sample`` source,
``sp500_20``) over the last ``--days`` bars, with the S&P 500 index (``sp500_index``) as benchmark: the size
of hrp_swing's evaluation period. Both are given the same returns and settings (rf 0, 252 periods a year,
compounded, no date matching). Imports and matplotlib's first figure happen before the timings; each side is
timed ``--repeat`` times, alternating, and the best is printed (wall and CPU seconds, forked children's
included) with the ratio: quantstats, qf as ``qf run`` draws it (its parts shared between processes by
:mod:`qf.report.parallel`) and qf on one process; then the CPU seconds of each part of qf's page (quantstats'
metrics table and each chart) drawn on one process.

Usage::

    python benchmarks/tearsheet.py              # 3,300 days, best of 3
    python benchmarks/tearsheet.py --days 1000 --repeat 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=3300, help="daily returns in the tear sheet")
    ap.add_argument("--repeat", type=int, default=3, help="timings per side (the best is printed)")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    import quantstats as qs

    import qf.report.tearsheet as ts
    from qf.report import parallel
    from qf.report.tearsheet import write_tearsheet
    from qf_plugins.data.sample import SampleSource

    close = SampleSource({"dataset": "sp500_20"}).load().close
    rets = close.pct_change(fill_method=None).mean(axis=1).fillna(0.0).iloc[-args.days:]
    rets.name = "Strategy"
    index = SampleSource({"dataset": "sp500_index"}).load().close.iloc[:, 0]
    bench = index.pct_change(fill_method=None).reindex(rets.index).fillna(0.0)
    bench.name = "SP500"

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)

        def stock() -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                qs.reports.html(rets, benchmark=bench, rf=0.0, title="hrp_swing", output=str(out / "qs.html"),
                                compounded=True, periods_per_year=252, match_dates=False)

        def qf() -> None:
            write_tearsheet(rets, bench, out / "qf.html", "hrp_swing", subtitle="backtest, vectorbt")

        def qf_one() -> None:  # the same page drawn on one core (qf.report.parallel off)
            with _env(parallel.ENV_WORKERS, "1"):
                qf()

        write_tearsheet(rets.iloc[:300], bench.iloc[:300], out / "warm.html", "warm")  # imports, first figure
        sides = (("quantstats html", stock), ("qf write_tearsheet", qf), ("qf, one process", qf_one))
        best = {name: (float("inf"), 0.0) for name, _ in sides}
        for _ in range(args.repeat):
            for name, fn in sides:
                wall, cpu = time.perf_counter(), _cpu()
                fn()
                wall, cpu = time.perf_counter() - wall, _cpu() - cpu
                best[name] = min(best[name], (wall, cpu))
        sizes = {"quantstats html": (out / "qs.html").stat().st_size,
                 "qf write_tearsheet": (out / "qf.html").stat().st_size}
        sizes["qf, one process"] = sizes["qf write_tearsheet"]
        parts = _time_parts(ts)
        qf_one()

    print(f"tear sheet, {len(rets)} daily returns ({rets.index[0]:%Y-%m-%d} to {rets.index[-1]:%Y-%m-%d}) + "
          f"benchmark, best of {args.repeat}; qf draws its parts on {parallel.default_workers()} processes "
          "(qf.report.parallel)")
    print(f"{'':22s}{'wall s':>8s}{'cpu s':>8s}{'page MB':>9s}")
    for name, (wall, cpu) in best.items():
        print(f"{name:22s}{wall:8.2f}{cpu:8.2f}{sizes[name] / 1e6:9.2f}")
    ratio = best["qf write_tearsheet"][0] / best["quantstats html"][0]
    print(f"ratio qf / quantstats (wall): {ratio:.2f}x  (target: qf <= 3 s)")
    print("qf page on one process, CPU s per part: " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))


def _cpu() -> float:
    """CPU seconds of this process and of its reaped children (the page's forked parts)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@contextlib.contextmanager
def _env(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def _time_parts(ts) -> dict[str, float]:
    """Wrap the tear sheet's metrics table, EOY part and each chart so their CPU time lands in the dict."""
    parts: dict[str, float] = {}

    def timed(name: str, fn):
        def run(*a, **k):
            t = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                parts[name] = time.process_time() - t
        return run

    figures, metrics, eoy = ts._figures, ts._metrics_table, ts._eoy_chart
    ts._metrics_table = timed("metrics table", metrics)
    ts._eoy_chart = timed("eoy (qf)", eoy)
    ts._figures = lambda *a: [(slot, timed(slot, draw)) for slot, draw in figures(*a)]
    return parts


if __name__ == "__main__":
    main()
