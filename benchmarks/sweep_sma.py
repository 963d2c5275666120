"""SMA-cross sweep benchmark: hand-written numba loop vs qf's sweep vs one plain vectorbt run.

The issue's workload: fast 5..50 step 1, slow 20..200 step 5, fast < slow (1,590 combos per asset)
over 20 GBM assets x 2,520 bars = 31,800 combinations, fees 0.1%, slippage 0.05%.

Every part runs in a fresh subprocess (so peak RSS is that part's alone, read from
``getrusage(RUSAGE_SELF).ru_maxrss``) and first calls its code once on a tiny input, so the wall
time is a warm run (best of ``--repeat``; vectorbt runs once); the tiny call's time (JIT compile or
numba cache load) is shown separately.
Results of every part are compared on all combos: qf against vectorbt to 1e-9 absolute, and the
hand-written loop against qf to 1e-9 relative (its fee/return arithmetic is ordered differently).

Usage::

    python benchmarks/sweep_sma.py              # all three parts (vectorbt needs ~5 GB and ~20 s)
    python benchmarks/sweep_sma.py --skip-vbt   # numba reference and qf only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numba import njit

METRICS = ("total_return", "final_value", "sharpe", "max_drawdown", "n_trades")
SPEC = {"signal.params.fast": {"range": [5, 50, 1]}, "signal.params.slow": {"range": [20, 200, 5]}}
CONSTRAINTS = ["fast < slow"]
FEES = 0.001
SLIPPAGE = 0.0005
INIT_CASH = 10_000.0
PERIODS_PER_YEAR = 252


def make_prices(n_assets: int, n_bars: int, seed: int) -> np.ndarray:
    """Geometric Brownian motion closes, one row per asset (assets x bars)."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-0.05, 0.15, size=(n_assets, 1))
    sigma = rng.uniform(0.15, 0.45, size=(n_assets, 1))
    dt = 1.0 / PERIODS_PER_YEAR
    shocks = rng.standard_normal((n_assets, n_bars))
    log_ret = (mu - 0.5 * sigma**2) * dt + sigma * math.sqrt(dt) * shocks
    return 100.0 * np.exp(np.cumsum(log_ret, axis=1))


def make_combos() -> tuple[np.ndarray, np.ndarray]:
    from qf.research.grid import expand_grid

    grid = expand_grid(SPEC, CONSTRAINTS)
    # writeable copies: numba compiles a separate specialisation for read-only (copy-on-write) views,
    # and the warm-up call must hit the same one as the timed call
    return (
        np.array(grid["signal.params.fast"], dtype=np.int64),
        np.array(grid["signal.params.slow"], dtype=np.int64),
    )


# ------------------------------------------------------------------ hand-written reference


@njit(cache=True)
def reference_sweep(
    close2d: np.ndarray,
    fast: np.ndarray,
    slow: np.ndarray,
    init_cash: float,
    fees: float,
    slippage: float,
    ann_factor: float,
) -> np.ndarray:
    """The loop a quant writes by hand: MAs per distinct window, one pass per combo, running stats."""
    n_assets, n = close2d.shape
    n_combos = fast.shape[0]
    max_w = max(fast.max(), slow.max())
    needed = np.zeros(max_w + 1, dtype=np.bool_)
    for c in range(n_combos):
        needed[fast[c]] = True
        needed[slow[c]] = True
    ma = np.empty((max_w + 1, n))
    out = np.empty((n_assets, n_combos, 5))
    for a in range(n_assets):
        px = close2d[a]
        cs = np.cumsum(px)
        for w in range(1, max_w + 1):
            if needed[w]:
                for i in range(n):
                    if i < w - 1:
                        ma[w, i] = np.nan
                    elif i == w - 1:
                        ma[w, i] = cs[i] / w
                    else:
                        ma[w, i] = (cs[i] - cs[i - w]) / w
        for c in range(n_combos):
            f = ma[fast[c]]
            s = ma[slow[c]]
            cash = init_cash
            shares = 0.0
            prev_eq = init_cash
            eq = init_cash
            peak = init_cash
            mdd = 0.0
            s1 = 0.0
            s2 = 0.0
            trades = 0
            for i in range(n):
                if i > 0:
                    if shares == 0.0 and f[i] > s[i] and f[i - 1] <= s[i - 1]:
                        shares = cash / (1.0 + fees) / (px[i] * (1.0 + slippage))
                        cash = 0.0
                        trades += 1
                    elif shares > 0.0 and f[i] < s[i] and f[i - 1] >= s[i - 1]:
                        gross = shares * px[i] * (1.0 - slippage)
                        cash = gross - gross * fees
                        shares = 0.0
                eq = cash + shares * px[i]
                r = (eq - prev_eq) / prev_eq
                prev_eq = eq
                s1 += r
                s2 += r * r
                if eq > peak:
                    peak = eq
                dd = eq / peak - 1.0
                if dd < mdd:
                    mdd = dd
            mean = s1 / n
            var = (s2 - n * mean * mean) / (n - 1)
            sharpe = np.inf if var <= 0.0 else mean / np.sqrt(var) * np.sqrt(ann_factor)
            out[a, c, 0] = eq / init_cash - 1.0
            out[a, c, 1] = eq
            out[a, c, 2] = sharpe
            out[a, c, 3] = mdd
            out[a, c, 4] = trades
    return out


# ------------------------------------------------------------------ parts (run in subprocesses)


def _current_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux (bytes on macOS)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


Runner = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _runner(part: str, n_jobs: int, vbt_combos_per_run: int | None) -> Runner:
    """The function a part times: (assets x bars closes, fast, slow) -> (assets, combos, metrics)."""
    if part == "numba":

        def run(close2d: np.ndarray, fast: np.ndarray, slow: np.ndarray) -> np.ndarray:
            return reference_sweep(close2d, fast, slow, INIT_CASH, FEES, SLIPPAGE, float(PERIODS_PER_YEAR))

        return run
    import pandas as pd

    from qf.research.sma_sweep import METRICS as QF_METRICS
    from qf.research.sma_sweep import run_sma_sweep, run_sma_sweep_vectorbt

    assert tuple(QF_METRICS) == METRICS

    def to_frame(close2d: np.ndarray) -> pd.DataFrame:
        index = pd.date_range("2010-01-01", periods=close2d.shape[1], freq="D")
        return pd.DataFrame(close2d.T, index=index, columns=[f"A{i:02d}" for i in range(close2d.shape[0])])

    def table_to_array(table: pd.DataFrame, n_assets: int, n_combos: int) -> np.ndarray:
        return table[list(METRICS)].to_numpy(np.float64).reshape(n_assets, n_combos, len(METRICS))

    if part == "qf":

        def run(close2d: np.ndarray, fast: np.ndarray, slow: np.ndarray) -> np.ndarray:
            table = run_sma_sweep(
                to_frame(close2d), fast, slow, fees=FEES, slippage=SLIPPAGE, init_cash=INIT_CASH,
                n_jobs=n_jobs, periods_per_year=PERIODS_PER_YEAR,
            )
            return table_to_array(table, close2d.shape[0], fast.size)

        return run
    if part == "vbt":

        def run(close2d: np.ndarray, fast: np.ndarray, slow: np.ndarray) -> np.ndarray:
            table = run_sma_sweep_vectorbt(
                to_frame(close2d), fast, slow, fees=FEES, slippage=SLIPPAGE, init_cash=INIT_CASH,
                periods_per_year=PERIODS_PER_YEAR, combos_per_run=vbt_combos_per_run,
            )
            return table_to_array(table, close2d.shape[0], fast.size)

        return run
    raise ValueError(f"unknown part {part!r}")


def run_part(args: argparse.Namespace) -> None:
    """Child process: warm up on a tiny input, time the full sweep, save results, print JSON."""
    run = _runner(args.part, args.n_jobs, args.vbt_combos_per_run)
    close2d = make_prices(args.assets, args.bars, args.seed)
    fast, slow = make_combos()

    t0 = time.perf_counter()
    run(close2d[:1, :300].copy(), fast[:3].copy(), slow[:3].copy())
    warmup = time.perf_counter() - t0
    rss_before = _current_rss_mb()

    # best of `repeat` runs: the machine may be shared, and the minimum is the least disturbed one
    wall = math.inf
    for _ in range(args.repeat if args.part != "vbt" else 1):
        t0 = time.perf_counter()
        result = run(close2d, fast, slow)
        wall = min(wall, time.perf_counter() - t0)

    np.save(args.out, result)
    print(json.dumps({"wall": wall, "warmup": warmup, "rss_before_mb": rss_before, "peak_rss_mb": _peak_rss_mb()}))


# ------------------------------------------------------------------ driver


def _spawn(part: str, args: argparse.Namespace, out: Path, n_jobs: int) -> dict[str, float]:
    cmd = [
        sys.executable, __file__, "--part", part, "--out", str(out), "--assets", str(args.assets),
        "--bars", str(args.bars), "--seed", str(args.seed), "--n-jobs", str(n_jobs), "--repeat", str(args.repeat),
    ]
    if args.vbt_combos_per_run is not None:
        cmd += ["--vbt-combos-per-run", str(args.vbt_combos_per_run)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"part {part!r} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _max_diffs(a: np.ndarray, b: np.ndarray) -> dict[str, tuple[float, float]]:
    """Per metric: (max absolute diff, max relative diff) over finite pairs."""
    out = {}
    for j, name in enumerate(METRICS):
        x, y = a[..., j].ravel(), b[..., j].ravel()
        both = np.isfinite(x) & np.isfinite(y)
        diff = np.abs(x[both] - y[both])
        rel = diff / np.maximum(np.abs(y[both]), 1e-300)
        out[name] = (float(diff.max(initial=0.0)), float(rel.max(initial=0.0)))
    return out


def _check_same_nonfinite(a: np.ndarray, b: np.ndarray, label: str) -> None:
    fin_a, fin_b = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(fin_a, fin_b) or not np.array_equal(a[~fin_a], b[~fin_b]):
        raise AssertionError(f"{label}: non-finite values differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-vbt", action="store_true", help="skip the plain vectorbt run")
    parser.add_argument("--assets", type=int, default=20)
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--n-jobs", type=int, default=-1, help="numba threads for qf's parallel run")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per part (best is shown; vbt runs once)")
    parser.add_argument("--vbt-combos-per-run", type=int, default=None,
                        help="split the vectorbt reference into several runs (default: one run)")
    parser.add_argument("--part", choices=["numba", "qf", "vbt"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        run_part(args)
        return

    fast, slow = make_combos()
    n_combos = fast.size * args.assets
    print(f"SMA-cross sweep: {args.assets} assets x {args.bars} bars, {fast.size} combos/asset "
          f"= {n_combos:,} combinations; fees={FEES}, slippage={SLIPPAGE}, init_cash={INIT_CASH:,.0f}")
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")

    import numba

    n_threads = numba.config.NUMBA_NUM_THREADS if args.n_jobs == -1 else args.n_jobs
    parts = [("numba", "hand-written numba loop (1 thread)", 1), ("qf", "qf run_sma_sweep (n_jobs=1)", 1)]
    if n_threads > 1:
        parts.append(("qf", f"qf run_sma_sweep (n_jobs={n_threads})", n_threads))
    if not args.skip_vbt:
        parts.append(("vbt", "plain vectorbt from_signals", 1))

    results: dict[str, np.ndarray] = {}
    stats: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="qf-bench-") as tmp:
        for key, label, n_jobs in parts:
            out = Path(tmp) / f"{key}-{n_jobs}.npy"
            stats[label] = _spawn(key, args, out, n_jobs)
            results[label] = np.load(out)
            print(f"  done: {label}", flush=True)

    ref_label = parts[0][1]
    ref_wall = stats[ref_label]["wall"]
    print()
    print(f"{'part':<40}{'wall [s]':>10}{'x numba':>9}{'warm-up [s]':>13}{'RSS before [MB]':>17}"
          f"{'peak RSS [MB]':>15}")
    for _, label, _ in parts:
        s = stats[label]
        print(f"{label:<40}{s['wall']:>10.3f}{s['wall'] / ref_wall:>9.2f}{s['warmup']:>13.2f}"
              f"{s['rss_before_mb']:>17.0f}{s['peak_rss_mb']:>15.0f}")

    print()
    qf_label = parts[-2][1] if not args.skip_vbt else parts[-1][1]
    qf = results[qf_label]
    failures = []
    for _, label, _ in parts[1:]:
        same = np.array_equal(results[label], qf, equal_nan=True)
        if label != qf_label and label.startswith("qf") and not same:
            failures.append(f"{label} differs from {qf_label}")
    if not args.skip_vbt:
        vbt = results[parts[-1][1]]
        _check_same_nonfinite(qf, vbt, "qf vs vectorbt")
        diffs = _max_diffs(qf, vbt)
        print("qf vs vectorbt, all combos (max abs diff / max rel diff):")
        for name, (d_abs, d_rel) in diffs.items():
            print(f"  {name:<14}{d_abs:>12.3e}{d_rel:>12.3e}")
            if d_abs > 1e-9:
                failures.append(f"qf vs vectorbt: {name} differs by {d_abs:.3e} > 1e-9")
    ref = results[ref_label]
    _check_same_nonfinite(ref, qf, "numba reference vs qf")
    diffs = _max_diffs(ref, qf)
    print("hand-written numba vs qf, all combos (max abs diff / max rel diff):")
    for name, (d_abs, d_rel) in diffs.items():
        print(f"  {name:<14}{d_abs:>12.3e}{d_rel:>12.3e}")
        if d_abs > 1e-9 and d_rel > 1e-9:
            failures.append(f"numba reference vs qf: {name} differs by {d_abs:.3e} (rel {d_rel:.3e})")

    best_qf = min(stats[label]["wall"] for _, label, _ in parts if label.startswith("qf"))
    qf_peak = max(stats[label]["peak_rss_mb"] for _, label, _ in parts if label.startswith("qf"))
    print()
    print(f"goal qf <= 3x numba loop: {best_qf / ref_wall:.2f}x -> {'OK' if best_qf <= 3 * ref_wall else 'MISSED'}")
    print(f"goal qf peak RSS <= 1.5 GB: {qf_peak:.0f} MB -> {'OK' if qf_peak <= 1536 else 'MISSED'}")
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        raise SystemExit(1)
    print("results identical within 1e-9 on all combos: OK")


if __name__ == "__main__":
    main()
