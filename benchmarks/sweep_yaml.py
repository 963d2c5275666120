"""YAML sweep benchmark: qf's sweep evaluation vs vectorbt's own broadcast, on the same grid.

The workload of issue 13: ``sma_cross`` x ``equal`` on the 20 assets of the ``sp500_20`` sample,
2010-2022, daily rebalance, decided at the close and filled at the next close, fees 5 bp, slippage 2 bp.
By default the issue's grid (fast 5..50 step 5, slow 20..200 step 20, fast < slow: 90 combinations);
``--combos N`` sweeps a rectangular grid of at least N combinations instead.

Each part runs in a fresh subprocess and reports its own wall time and peak RSS:

- **qf**: :func:`qf.research.sweep.evaluate_grid` on the experiment (what ``qf run`` does for the
  sweep table, on the configured executor: 2 worker processes here), timed from the grid to the table;
  peak RSS is the parent's plus the largest worker's times the number of workers (an upper bound of the
  pool's sum). CPU seconds count this process and its direct children (the forked workers on Linux;
  a forkserver's or Ray's workers are not its children, so there they would be missing);
- **vectorbt**: what a vectorbt user writes instead (after the same code on two combinations, so that, as
  for qf, compiling or loading its numba kernels is not timed): ``vbt.MA.run`` over the windows, equal weights among
  the symbols above their slow MA for every combination, and one ``Portfolio.from_orders`` with
  ``size_type="targetpercent"``, one cash-sharing group per combination, then ``value()`` and the
  Sharpe ratio per group. ``--vbt-max N`` caps its combinations (it needs memory for all of them at
  once); its rate is then measured on those;
- **hand-written numba**: the floor, the same portfolio as one plain numba loop per combination on one
  core (see :func:`part_floor`), with the moving averages computed once per window.

Usage::

    python benchmarks/sweep_yaml.py                 # the issue's 90 combinations, both parts
    python benchmarks/sweep_yaml.py --combos 10000 --skip-vbt
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

YAML = """
name: sweep_yaml_bench
data:
  type: sample
  params: {{dataset: sp500_20, start: 2010-01-01, end: 2022-12-31}}
signal: {{type: sma_cross, params: {{fast: 20, slow: 100}}}}
sizer: {{type: equal}}
rebalance: {{freq: daily}}
execution:
  fill: next_close
  fees: 0.0005
  slippage: 0.0002
  initial_cash: 100000
  executor: {{kind: local, n_jobs: {jobs}}}
sweep:
  params:
    signal.params.fast: {fast}
    signal.params.slow: {slow}
  constraints: ["fast < slow"]
  metric: sharpe
"""


def windows(combos: int | None) -> tuple[list[int], list[int]]:
    """(fast, slow) windows: the issue's grid, or a rectangle of at least ``combos`` (every fast < slow)."""
    if combos is None:
        return list(range(5, 51, 5)), list(range(20, 201, 20))
    n_fast = math.ceil(math.sqrt(combos))
    n_slow = math.ceil(combos / n_fast)
    fast = list(range(5, 5 + n_fast))
    return fast, list(range(fast[-1] + 5, fast[-1] + 5 + 2 * n_slow, 2))


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its waited-for children (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def part_qf(path: str, jobs: int) -> dict:
    from qf.config.loader import load_experiment
    from qf.research.sweep import ComboTask, evaluate_chunk, evaluate_grid, grid_of

    exp = load_experiment(path)
    bars = exp.data.load()
    grid = grid_of(exp)
    t0 = time.perf_counter()
    # what any qf run pays once per process: importing vectorbt, loading the compiled kernels
    evaluate_chunk(ComboTask(exp.raw, exp.path, bars, grid.head(1).to_dict("records")))
    warmup = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), cpu_seconds()
    table = evaluate_grid(exp, bars, grid)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    parent, child = peak_rss_mb(), peak_rss_mb(children=True)
    return {"combos": len(table), "wall": wall, "warmup": warmup, "cpu": cpu, "rss_mb": parent + jobs * child,
            "parent_mb": parent, "worker_mb": child, "best_sharpe": float(table["sharpe"].max())}


def part_vbt(fast: list[int], slow: list[int], vbt_max: int) -> dict:
    import numpy as np
    import pandas as pd
    import vectorbt as vbt

    from qf.config.loader import load_experiment  # only to read the same sample data

    pairs = [(f, s) for f in fast for s in slow if f < s][:vbt_max]
    close = load_experiment(sys.argv[2]).data.load().close
    # what vectorbt pays once per process (its numba kernels compiled or loaded from its cache), as qf's
    # warm-up: two combinations through the same code first, not in the timing
    t0 = time.perf_counter()
    _vbt_sweep(vbt, np, pd, close, pairs[:2])
    warmup = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), cpu_seconds()
    sharpe = _vbt_sweep(vbt, np, pd, close, pairs)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return {"combos": len(pairs), "wall": wall, "warmup": warmup, "cpu": cpu, "rss_mb": peak_rss_mb(),
            "best_sharpe": float(np.nanmax(sharpe))}


def _vbt_sweep(vbt, np, pd, close, pairs):  # noqa: ANN001, ANN202 - the modules, imported by the caller
    """The Sharpe ratio of every (fast, slow) pair, the way a vectorbt user writes the sweep."""
    f_ma = vbt.MA.run(close, window=[p[0] for p in pairs], short_name="fast")
    s_ma = vbt.MA.run(close, window=[p[1] for p in pairs], short_name="slow")
    above = (f_ma.ma.to_numpy() > s_ma.ma.to_numpy()).astype(float)
    above[np.isnan(s_ma.ma.to_numpy())] = 0.0
    n_sym = close.shape[1]
    held = above.reshape(len(close), len(pairs), n_sym)
    count = held.sum(axis=2, keepdims=True)
    weights = np.divide(held, count, out=np.zeros_like(held), where=count > 0).reshape(len(close), -1)
    size = np.vstack([np.full((1, weights.shape[1]), np.nan), weights[:-1]])  # decided at t, filled at t+1
    columns = pd.MultiIndex.from_tuples([(c, s) for c in range(len(pairs)) for s in close.columns],
                                        names=["combo", "symbol"])
    price = pd.DataFrame(np.tile(close.ffill().to_numpy(), len(pairs)), index=close.index, columns=columns)
    pf = vbt.Portfolio.from_orders(price, pd.DataFrame(size, index=close.index, columns=columns),
                                   size_type="targetpercent", group_by="combo", cash_sharing=True,
                                   call_seq="auto", fees=0.0005, slippage=0.0002, init_cash=100_000.0, freq="1D")
    return pf.returns().vbt.returns(freq="1D", year_freq="252 days").sharpe_ratio()


def part_floor(fast: list[int], slow: list[int]) -> dict:
    """The physical floor: a hand-written numba loop of the same portfolio, one core, no framework.

    Equal weight among the symbols whose fast SMA is above the slow one, decided at the close and
    filled at the next close (sells first, buys scaled to the cash), fees and slippage on every fill,
    reduced to its Sharpe ratio in the loop. Plain float arithmetic (no vectorbt tolerance snapping, no
    calendar, warm-up or risk handling), so its Sharpe ratios are close to, not equal to, qf's.
    """
    import numba as nb
    import numpy as np

    from qf.config.loader import load_experiment  # only to read the same sample data

    @nb.njit(cache=False)
    def sharpe_of(close, fma, sma, fees, slip, cash0):  # pragma: no cover - numba
        T, N = close.shape
        pos = np.zeros(N)
        cash = cash0
        prev = cash0
        s = 0.0
        s2 = 0.0
        n = 0
        want = np.zeros(N)
        goal = np.zeros(N)  # this bar's target units per symbol, computed once
        for i in range(1, T):
            # decided at the close of i - 1, filled at the close of i
            k_on = 0
            for k in range(N):
                on = sma[i - 1, k] == sma[i - 1, k] and fma[i - 1, k] > sma[i - 1, k]
                want[k] = 1.0 if on else 0.0
                k_on += 1 if on else 0
            value = cash
            for k in range(N):
                if pos[k] != 0.0:
                    value += pos[k] * close[i, k]
            for k in range(N):  # sells
                goal[k] = want[k] / k_on * value / close[i, k] if k_on > 0 else 0.0
                if goal[k] < pos[k]:
                    q = pos[k] - goal[k]
                    cash += q * close[i, k] * (1 - slip) * (1 - fees)
                    pos[k] = goal[k]
            cost = 0.0
            for k in range(N):  # buys, scaled together to the cash
                if goal[k] > pos[k]:
                    cost += (goal[k] - pos[k]) * close[i, k] * (1 + slip) * (1 + fees)
            scale = min(1.0, cash / cost) if cost > 0 else 0.0
            for k in range(N):
                if goal[k] > pos[k]:
                    q = (goal[k] - pos[k]) * scale
                    cash -= q * close[i, k] * (1 + slip) * (1 + fees)
                    pos[k] += q
            eq = cash
            for k in range(N):
                if pos[k] != 0.0:
                    eq += pos[k] * close[i, k]
            r = eq / prev - 1.0
            prev = eq
            s += r
            s2 += r * r
            n += 1
        mean = s / n
        sd = np.sqrt((s2 - n * mean * mean) / (n - 1))
        return mean / sd * np.sqrt(252.0) if sd > 0 else 0.0

    pairs = [(f, s) for f in fast for s in slow if f < s]
    frame = load_experiment(sys.argv[2]).data.load().close.ffill()
    # writable C arrays throughout (pandas hands out read-only views, a second numba signature)
    close = np.array(frame.bfill().to_numpy(dtype=float), order="C")
    sharpe_of(close[:50], close[:50], close[:50], 0.0005, 0.0002, 1e5)  # compile outside the timing
    t0, c0 = time.perf_counter(), cpu_seconds()
    mas = {w: np.ascontiguousarray(frame.rolling(w, min_periods=w).mean().to_numpy(dtype=float))
           for w in sorted({w for p in pairs for w in p})}
    best = max(sharpe_of(close, mas[f], mas[s], 0.0005, 0.0002, 1e5) for f, s in pairs)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return {"combos": len(pairs), "wall": wall, "cpu": cpu, "rss_mb": peak_rss_mb(), "best_sharpe": float(best)}


def run_part(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--combos", type=int, default=None, help="sweep at least this many combinations")
    ap.add_argument("--jobs", type=int, default=2, help="qf worker processes (default 2)")
    ap.add_argument("--vbt-max", type=int, default=None, help="cap on vectorbt's combinations")
    ap.add_argument("--skip-vbt", action="store_true", help="qf only")
    a = ap.parse_args()
    fast, slow = windows(a.combos)
    with tempfile.TemporaryDirectory(prefix="qf-sweep-bench-") as tmp:
        path = Path(tmp) / "sweep.yaml"
        path.write_text(YAML.format(fast=fast, slow=slow, jobs=a.jobs))
        qf = run_part(["--part-qf", str(path), str(a.jobs)])
        vb = None if a.skip_vbt else run_part(["--part-vbt", str(path), json.dumps([fast, slow, a.vbt_max or 10**9])])
        floor = run_part(["--part-floor", str(path), json.dumps([fast, slow])])
    rows = [("qf YAML sweep", qf)] + ([("vectorbt broadcast", vb)] if vb else []) + [("hand-written numba", floor)]
    # CPU seconds show the work itself on a machine shared with other jobs: combos per CPU-second x cores
    # is what the same run would reach on that many idle cores
    print(f"{'part':<22}{'combos':>8}{'wall s':>10}{'combos/s':>11}{'CPU s':>9}{'combos/CPU-s':>14}"
          f"{'peak RSS MB':>13}{'best sharpe':>13}")
    for name, r in rows:
        print(f"{name:<22}{r['combos']:>8}{r['wall']:>10.2f}{r['combos'] / r['wall']:>11.1f}{r['cpu']:>9.1f}"
              f"{r['combos'] / r['cpu']:>14.1f}{r['rss_mb']:>13.0f}{r['best_sharpe']:>13.3f}")
    print(f"qf: one-time warm-up (imports, compiled kernels) {qf['warmup']:.1f} s, not in the wall time; "
          f"parent {qf['parent_mb']:.0f} MB + {a.jobs} workers x {qf['worker_mb']:.0f} MB (largest worker)")
    if vb:
        print(f"vectorbt: one-time warm-up (its compiled kernels, two combinations) {vb['warmup']:.1f} s, not in "
              "the wall time")
    if vb:
        ratio = (qf["combos"] / qf["wall"]) / (vb["combos"] / vb["wall"])
        per_cpu = (qf["combos"] / qf["cpu"]) / (vb["combos"] / vb["cpu"])
        print(f"qf / vectorbt broadcast: {ratio:.1f}x combinations per second (wall), {per_cpu:.1f}x per CPU-second")
    floor_cpu = (floor["combos"] / floor["cpu"]) / (qf["combos"] / qf["cpu"])
    print(f"hand-written numba (one core, simplified arithmetic) / qf: {floor_cpu:.1f}x per CPU-second: the "
          "distance to the floor")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--part-qf":
        print(json.dumps(part_qf(sys.argv[2], int(sys.argv[3]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "--part-floor":
        f, s = json.loads(sys.argv[3])
        print(json.dumps(part_floor(f, s)))
    elif len(sys.argv) > 1 and sys.argv[1] == "--part-vbt":
        f, s, cap = json.loads(sys.argv[3])
        print(json.dumps(part_vbt(f, s, cap)))
    else:
        main()
