"""xgb_swing's walk-forward: the plain path vs the fast path, side by side in one run, same models checked.

Each side runs in a fresh process (imports included, as ``qf run`` would) on the same experiment
(``experiments/xgb_swing.yaml`` by default, tear sheet included) and writes its report to a temp folder:

- ``old``: the folds one after the other (``workers=1``), every fold rebuilding the features of its whole
  history before scoring it (the fold models do not get ``share_history``): the path before issue 13;
- ``new``: the full history's features built once and sliced per fold, the folds' models fitted on a
  thread pool (cores // the model's n_jobs threads), the final model fitted alongside, and the engine and
  tear-sheet modules imported on a background thread while the folds fit.

Both sides fit with :func:`qf_plugins.signals.xgb_train.train` (all boosting rounds in one native call, so
a fit on a thread does not wait for the GIL between rounds): it changes no model, and it is what lets the
new side's fits overlap the Python work of other threads.

The sides alternate ``--repeat`` times; for the best run (by wall) of each the table gives wall and CPU
seconds (user + system, all threads and the forked tear-sheet processes) per phase (imports; data + folds:
fitting and scoring; simulation; report) with the new/old ratios, and the new side's CPU / wall (about 2 when
both cores work for it, 1 when it runs on one core: on a shared machine other jobs take the second core and
the wall ratio tends to the CPU ratio). Then both reports are compared: every fold's model.json and the final
one byte for byte, and folds.csv, orders, oos_predictions, equity and metrics exactly.

Usage::

    python benchmarks/xgb_walk_forward.py                 # best of 2
    python benchmarks/xgb_walk_forward.py --repeat 1 --experiment experiments/xgb_swing.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> float:
    # this process's threads and its reaped children (the tear sheet's forked drawing processes)
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def child(side: str, experiment: str, out: Path) -> None:
    """One timed run in this (fresh) process; prints a JSON line of phase wall and CPU seconds."""
    import io
    import warnings

    warnings.simplefilter("ignore")
    from rich.console import Console

    import qf.research.walk_forward as wf_run
    import qf.runner as qf_run
    from qf.config.loader import load_experiment
    from qf_plugins.signals.xgb import XGBoostSignal

    wall: dict[str, float] = {"imports": time.perf_counter() - T_START}
    cpu: dict[str, float] = {"imports": _cpu()}
    if side == "old":
        # a no-op: the model stays a HistorySharing but keeps no shared build, every fold builds its own features
        XGBoostSignal.share_history = lambda self, bars, shared: self  # type: ignore[method-assign]

    def timed(name: str, fn):  # noqa: ANN001, ANN202
        def run(*a, **k):  # noqa: ANN002, ANN003, ANN202
            wall.setdefault(f"{name}_enter", time.perf_counter())
            cpu.setdefault(f"{name}_enter", _cpu())
            try:
                return fn(*a, **k)
            finally:
                wall[name] = wall.get(name, 0.0) + time.perf_counter() - wall[f"{name}_enter"]
                cpu[name] = cpu.get(name, 0.0) + _cpu() - cpu[f"{name}_enter"]

        return run

    qf_run.run_engine = timed("simulation", qf_run.run_engine)  # type: ignore[assignment]
    qf_run.write_report = timed("report", qf_run.write_report)  # type: ignore[assignment]
    t0, c0 = time.perf_counter(), _cpu()
    exp = load_experiment(experiment)
    wf_run.run_walk_forward(exp, out, Console(file=io.StringIO()), workers=1 if side == "old" else None)
    end, c_end = time.perf_counter(), _cpu()
    wall["data + folds"] = wall["simulation_enter"] - t0
    cpu["data + folds"] = cpu["simulation_enter"] - c0
    wall["total"], cpu["total"] = end - T_START, c_end
    phases = ("imports", "data + folds", "simulation", "report")
    wall["other"] = wall["total"] - sum(wall[k] for k in phases)
    cpu["other"] = cpu["total"] - sum(cpu[k] for k in phases)
    print(json.dumps({"wall": wall, "cpu": cpu}))


def _same(old: Path, new: Path) -> list[str]:
    import pandas as pd

    problems = []
    models = sorted(p.name for p in (old / "models").iterdir())
    if models != sorted(p.name for p in (new / "models").iterdir()):
        problems.append("different model folders")
    for m in models:
        if (old / "models" / m / "model.json").read_bytes() != (new / "models" / m / "model.json").read_bytes():
            problems.append(f"models/{m}/model.json differs")
    for f in ("folds.csv", "orders.csv", "importances.csv", "calibration.csv", "metrics.json"):
        if (old / f).read_bytes() != (new / f).read_bytes():
            problems.append(f"{f} differs")
    for f in ("equity.parquet", "oos_predictions.parquet", "weights.parquet"):
        if not pd.read_parquet(old / f).equals(pd.read_parquet(new / f)):
            problems.append(f"{f} differs")
    return problems


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", default=str(ROOT / "experiments" / "xgb_swing.yaml"))
    ap.add_argument("--repeat", type=int, default=2, help="runs per side, alternating (the best is printed)")
    ap.add_argument("--child", choices=["old", "new"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.experiment, Path(args.out))
        return

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"{Path(args.experiment).name}, commit {commit}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="qf-xgb-bench-") as tmp:
        for r in range(args.repeat):
            for side in ("old", "new"):
                out = Path(tmp) / f"{side}_{r}"
                proc = subprocess.run([sys.executable, __file__, "--child", side, "--experiment", args.experiment,
                                       "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
                if proc.returncode != 0:
                    sys.exit(f"{side} run failed:\n{proc.stderr[-3000:]}")
                t = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"  run {r + 1} {side}: wall {t['wall']['total']:.1f} s, cpu {t['cpu']['total']:.1f} s")
                if side not in best or t["wall"]["total"] < best[side]["wall"]["total"]:
                    best[side] = t
        problems = _same(Path(tmp) / "old_0", Path(tmp) / "new_0")
    print(f"load average {os.getloadavg()[0]:.1f} at the end (the benchmark alone uses up to 2 cores)")
    print(f"\n{'seconds (best run)':20s}{'old wall':>10s}{'new wall':>10s}{'new/old':>9s}"
          f"{'old cpu':>10s}{'new cpu':>10s}{'new/old':>9s}{'new cpu/wall':>14s}")
    for k in ("total", "imports", "data + folds", "simulation", "report", "other"):
        ow, nw, oc, nc = best["old"]["wall"][k], best["new"]["wall"][k], best["old"]["cpu"][k], best["new"]["cpu"][k]
        print(f"{k:20s}{ow:10.2f}{nw:10.2f}{_ratio(nw, ow):9.2f}{oc:10.2f}{nc:10.2f}{_ratio(nc, oc):9.2f}"
              f"{_ratio(nc, nw):14.2f}")
    print("\nidentical models, folds.csv, orders, predictions, equity: "
          + ("yes" if not problems else "NO: " + "; ".join(problems)))
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
