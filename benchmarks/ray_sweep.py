"""Ray sweep benchmark: bytes shipped per sweep and wall time, Ray vs the local process pool.

A YAML sweep of an SMA cross over the bundled ``arch_sp500`` sample (``--combos`` combinations, 1,000 by
default) runs through :func:`qf.research.sweep.evaluate_grid` twice on this machine: on the local pool and on
Ray (a private ``address: local`` instance, or ``--address`` for a running cluster). Both tables must be
identical. Bytes moved per sweep are the pickled sizes of what travels between the driver and the workers:
to the workers, the bars once plus every chunk's task (now), against the bars inside every chunk's task
(before the bars were shared); back, every combination's row.

Usage::

    python benchmarks/ray_sweep.py                       # 1,000 combinations, all cores
    python benchmarks/ray_sweep.py --combos 200 --n-jobs 2
    python benchmarks/ray_sweep.py --address 10.0.0.1:6379
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml


def experiment(combos: int, folder: Path, executor: dict) -> Path:
    """A sweep file with about ``combos`` combinations (fast x slow, fast < slow)."""
    slow = list(range(60, 260, 10))  # 20 values
    n_fast = max(1, round(combos / len(slow)))
    raw = {
        "name": "ray_bench",
        "data": {"type": "sample", "params": {"dataset": "arch_sp500", "start": "2010-01-01", "end": "2018-12-31"}},
        "signal": {"type": "sma_cross", "params": {"fast": 10, "slow": 100}},
        "sizer": {"type": "equal"},
        "execution": {"fill": "next_open", "fees": 0.001, "executor": executor},
        "sweep": {"params": {"signal.params.fast": list(range(2, 2 + n_fast)), "signal.params.slow": slow}},
    }
    path = folder / f"{executor['kind']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def shipped_bytes(exp, bars, n_rows: int, n_workers: int) -> dict[str, int]:
    """Pickled bytes sent to workers: bars once + light tasks, vs the bars in every task."""
    from qf.research.sweep import ComboTask, grid_of

    combos = grid_of(exp).to_dict("records")[:n_rows]
    n_chunks = max(1, min(len(combos), n_workers * 16))  # as evaluate_grid splits them
    bounds = np.linspace(0, len(combos), n_chunks + 1).round().astype(int)
    tasks = [ComboTask(exp.raw, exp.path, None, combos[bounds[i]:bounds[i + 1]]) for i in range(n_chunks)]
    light = sum(len(pickle.dumps(t, protocol=5)) for t in tasks)
    bars_once = len(pickle.dumps(bars, protocol=5))
    heavy = sum(len(pickle.dumps(replace(t, bars=bars), protocol=5)) for t in tasks)
    return {"chunks": n_chunks, "bars": bars_once, "now": bars_once + light, "bars_in_every_task": heavy}


def timed(path: Path) -> tuple[float, object]:
    from qf.config.loader import load_experiment
    from qf.research.sweep import evaluate_grid, grid_of

    exp = load_experiment(path)
    bars = exp.data.load()
    t0 = time.perf_counter()
    table = evaluate_grid(exp, bars, grid_of(exp))
    return time.perf_counter() - t0, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--combos", type=int, default=1000)
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--address", default="local", help="Ray address (default: a private local instance)")
    args = parser.parse_args()
    from qf.config.loader import load_experiment
    from qf.research.sweep import grid_of

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        local_path = experiment(args.combos, folder, {"kind": "local", "n_jobs": args.n_jobs})
        ray_path = experiment(args.combos, folder, {"kind": "ray", "address": args.address, "n_jobs": args.n_jobs})
        exp = load_experiment(ray_path)
        bars = exp.data.load()
        n = len(grid_of(exp))
        sizes = shipped_bytes(exp, bars, n, args.n_jobs)
        local_s, local_table = timed(local_path)
        ray_s, ray_table = timed(ray_path)  # includes starting (or joining) Ray and the version handshake
    assert ray_table.equals(local_table), "Ray and the local pool disagree"
    back = len(pickle.dumps(ray_table.to_dict("records"), protocol=5))
    print(json.dumps({"combinations": n, "n_jobs": args.n_jobs, "address": args.address,
                      "wall_s": {"local_pool": round(local_s, 2), "ray": round(ray_s, 2),
                                 "ray_vs_local": round(ray_s / local_s, 2)},
                      "bytes_shipped": sizes,
                      "bytes_per_sweep": {"to_workers": sizes["now"], "results_back": back,
                                          "total": sizes["now"] + back,
                                          "bars_in_every_task_total": sizes["bars_in_every_task"] + back}},
                     indent=2))


if __name__ == "__main__":
    main()
