"""Sweep glue for the overfitting statistics: per-combination returns, the sweep's PBO, and ``validation: cpcv``.

The statistics themselves live in :mod:`qf.research.overfitting`; this module turns an experiment with a
``sweep:`` section into the return matrix they need (every combination simulated through the same
pipeline, engine and evaluation period as the sweep, :func:`qf.research.sweep.simulate`) and writes the
CPCV report.

Example::

    validation: {method: cpcv, n_groups: 6, n_test_groups: 2, purge: 5, embargo: 5}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from qf.bars import Bars
from qf.config.loader import LoadedExperiment
from qf.errors import QfError
from qf.report import writer
from qf.report.metrics import eval_returns
from qf.research.overfitting import CpcvResult, PboResult, check_cpcv_sizes, cpcv, n_paths, pbo
from qf.research.sweep import (
    HOLDOUT_SPLIT,
    ComboTask,
    SignalCache,
    _executor,
    _python,
    combo_experiment,
    grid_of,
    rank,
    simulate,
)

__all__ = ["PBO_MAX_COMBOS", "combo_returns", "run_cpcv", "sweep_pbo"]

PBO_MAX_COMBOS = 2000
"""Larger sweeps skip the PBO: it needs every combination's returns, simulated a second time."""
PBO_PARTITIONS = 16


def _label(combo: dict[str, Any]) -> str:
    return ", ".join(f"{str(k).rsplit('.', 1)[-1]}={_python(v)}" for k, v in combo.items())


def returns_chunk(task: ComboTask) -> list[pd.Series]:
    """Evaluation-period returns of each combination of a chunk (runs in a worker process).

    A trainable model is fitted and traded as the sweep scores it (fitted on the first part of the data).
    """
    out = []
    cache: SignalCache = {}
    for combo in task.combos:
        exp = combo_experiment(task.raw, task.path, combo)
        trade_from = task.trade_from
        if callable(getattr(exp.signal, "fit", None)):
            trade_from = max(trade_from, int(len(task.bars.index) * HOLDOUT_SPLIT))
            exp.signal.fit(task.bars.iloc(slice(0, trade_from)))
        _, result, m = simulate(exp, task.bars, trade_from, light=True, signal_cache=cache)
        start = pd.Timestamp(m["eval_start"]) if m["eval_start"] is not None else None
        out.append(eval_returns(result.equity, exp.spec.execution.initial_cash, start))
    return out


def combo_returns(exp: LoadedExperiment, bars: Bars, grid: pd.DataFrame) -> pd.DataFrame:
    """Bars × combinations matrix of returns over the combinations' common evaluation period.

    Columns are the grid's rows in order, labelled ``fast=10, slow=50``; rows start at the latest
    evaluation start of any combination (so every column has a return on every row).

    Example::

        r = combo_returns(exp, exp.data.load(), grid_of(exp))
    """
    combos = grid.to_dict("records")
    ex = _executor(exp, len(combos))
    n_chunks = max(1, min(len(combos), ex.n_workers * 4))
    parts = [combos[i::n_chunks] for i in range(n_chunks)]
    try:
        results = ex.map(returns_chunk, [ComboTask(exp.raw, exp.path, bars, p) for p in parts])
    finally:
        ex.close()
    series: list[pd.Series | None] = [None] * len(combos)
    for i, part in enumerate(results):
        for j, s in enumerate(part):
            series[i + j * n_chunks] = s
    return returns_matrix(series, combos)  # type: ignore[arg-type]


def returns_matrix(series: list[pd.Series], combos: list[dict[str, Any]]) -> pd.DataFrame:
    """Bars x combinations over the combinations' common evaluation period (see :func:`combo_returns`)."""
    matrix = pd.concat(series, axis=1, keys=range(len(combos)))
    matrix.columns = [_label(c) for c in combos]
    return matrix.dropna(how="any")


def sweep_pbo(exp: LoadedExperiment, bars: Bars, grid: pd.DataFrame,
              returns: list[pd.Series] | None = None) -> tuple[PboResult | None, str]:
    """The sweep's PBO (CSCV with 16 partitions, fewer when the period is short) and a one-line reason
    when it cannot be computed (``(None, reason)``). ``returns`` are the combinations' evaluation-period
    returns in grid order when the sweep kept them (``evaluate_grid(keep_returns=True)``); otherwise they
    are simulated again."""
    if len(grid) < 2:
        return None, "PBO needs at least 2 combinations"
    if len(grid) > PBO_MAX_COMBOS:
        return None, f"PBO skipped: {len(grid)} combinations > {PBO_MAX_COMBOS}"
    combos = grid.to_dict("records")
    r = returns_matrix(returns, combos) if returns is not None else combo_returns(exp, bars, grid)
    values = r.to_numpy(dtype=float)
    if len(values) and (values == values[:, :1]).all():
        # ties everywhere (e.g. no combination trades): CSCV's "best" is arbitrary and PBO came out as 1.0
        return None, "PBO not computed: every combination has the same returns, so none is chosen over another"
    s = PBO_PARTITIONS
    while s > 2 and len(r) // s < 20:  # keep at least 20 bars per partition
        s -= 2
    try:
        return pbo(r.to_numpy(), s), ""
    except ValueError as exc:
        return None, f"PBO not computed: {exc}"


def pbo_text(res: PboResult | None, reason: str) -> str:
    """The PBO figures of the sweep's printed line."""
    if res is None:
        return reason
    return (f"PBO {res.pbo:.3f} (CSCV, {res.n_partitions} partitions; OOS-vs-IS slope "
            f"{res.degradation_slope:.2f}, P(loss) {res.prob_loss:.2f})")


def _check(exp: LoadedExperiment) -> None:
    where = str(exp.path) if exp.path else "experiment"
    if exp.spec.sweep is None:
        raise QfError(f"{where}: validation: cpcv chooses among a sweep's combinations on each train part; "
                      "add a sweep: section")
    if exp.spec.walk_forward is not None:
        raise QfError(f"{where}: validation: cpcv and walk_forward are two validation schemes; keep one")


def run_cpcv(exp: LoadedExperiment, out: Path | None, console: Console) -> Path:
    """Run ``validation: {method: cpcv, ...}``: choose on every split's train part, trade its test groups,
    assemble the backtest paths, and write the report of the full-period best combination with
    ``cpcv.csv`` (one row per path), ``cpcv_splits.csv``, ``cpcv.json`` and ``cpcv.html``."""
    from qf.runner import RunOutcome, default_report_dir, write_report  # lazy: numba

    _check(exp)
    val = exp.spec.validation
    assert val is not None
    grid = grid_of(exp)
    bars = exp.data.load()
    trainable = callable(getattr(combo_experiment(exp.raw, exp.path, grid.iloc[0].to_dict()).signal, "fit", None))
    if trainable:
        raise QfError(f"{exp.path or 'experiment'}: validation: cpcv refits nothing yet: the signal "
                      f"{exp.spec.signal.type!r} is trainable; validate it with walk_forward")
    from qf.research.walk_forward import _where  # lazy: numba

    where = _where(exp, ("validation",))
    try:  # the sizes alone, before minutes of simulation (the data length is checked below)
        check_cpcv_sizes(val.n_groups, val.n_test_groups, val.purge, val.embargo)
    except ValueError as exc:
        raise QfError(f"{where}: validation: {exc}") from None
    console.print(f"{exp.name}: CPCV, {len(grid)} combinations, {val.n_groups} groups, {val.n_test_groups} "
                  f"tested per split: {n_paths(val.n_groups, val.n_test_groups)} paths")
    r = combo_returns(exp, bars, grid)
    try:
        res = cpcv(r, val.n_groups, val.n_test_groups, val.purge, val.embargo)
    except ValueError as exc:
        raise QfError(f"{where}: validation: {exc} ({len(r)} bars in the common "
                      "evaluation period)") from None
    summary = {"method": "cpcv", "n_groups": val.n_groups, "n_test_groups": val.n_test_groups,
               "purge": val.purge, "embargo": val.embargo, "n_combinations": len(grid),
               "eval_start": str(r.index[0].date()), "eval_end": str(r.index[-1].date()), "eval_bars": len(r),
               **res.summary()}
    _print(console, res, summary)

    # the report's run is the combination a plain sweep would pick on the whole period
    table = pd.concat([grid.reset_index(drop=True),
                       pd.DataFrame({"sharpe": _sharpes(r)})], axis=1)
    best = rank(table, "sharpe").iloc[0]
    best_combo = {p: _python(best[p]) for p in grid.columns}
    best_exp = combo_experiment(exp.raw, exp.path, best_combo)
    best_exp.overrides = exp.overrides  # the report records the --set items of the command
    targets, result, metrics = simulate(best_exp, bars)
    metrics["cpcv"] = summary
    run_id = writer.new_run_id()
    out = Path(out) if out is not None else default_report_dir(exp, run_id)
    outcome = RunOutcome(best_exp, bars, targets, result, metrics, None)

    def extra(tmp: Path) -> None:
        res.paths.to_csv(tmp / "cpcv.csv", index=False)
        res.splits.to_csv(tmp / "cpcv_splits.csv", index=False)
        writer.write_json(tmp / "cpcv.json", summary)
        _html(res, summary, tmp / "cpcv.html", exp.name)

    engine = best_exp.spec.execution.engine
    report_dir = write_report(best_exp, outcome, out, out.name, engine, kind="cpcv", extra_files=extra)
    console.print(f"report: {report_dir}")
    return report_dir


def _sharpes(r: pd.DataFrame) -> np.ndarray:
    from qf.research.overfitting import annual_sharpe  # lazy: scipy

    return annual_sharpe(r.to_numpy())


def _print(console: Console, res: CpcvResult, s: dict[str, Any]) -> None:
    t = Table(title=f"CPCV: out-of-sample Sharpe of {s['n_paths']} backtest paths ({s['n_splits']} splits, "
                    f"purge {s['purge']}, embargo {s['embargo']}; all columns in cpcv.csv)")
    for c in ("path", "sharpe", "total_return", "choices"):
        t.add_column(c)
    for _, row in res.paths.iterrows():
        t.add_row(str(row["path"]), f"{row['sharpe']:.3f}", f"{row['total_return']:.2%}", str(row["choices"]))
    console.print(t)
    console.print(f"OOS Sharpe over paths: mean {s['oos_sharpe_mean']:.3f}, std {s['oos_sharpe_std']:.3f}, "
                  f"min {s['oos_sharpe_min']:.3f}, max {s['oos_sharpe_max']:.3f}, "
                  f"{s['share_paths_sharpe_positive']:.0%} of paths positive ({s['eval_bars']} bars from "
                  f"{s['eval_start']})")


def _html(res: CpcvResult, s: dict[str, Any], path: Path, name: str) -> None:
    import plotly.graph_objects as go

    fig = go.Figure(go.Histogram(x=res.paths["sharpe"], nbinsx=max(5, len(res.paths))))
    fig.update_layout(title=f"{name}: out-of-sample Sharpe of the CPCV backtest paths",
                      xaxis_title="annualised Sharpe", yaxis_title="paths")
    curves = go.Figure([go.Scatter(x=res.path_returns.index, y=(1 + res.path_returns[c]).cumprod(),
                                   name=f"path {c}") for c in res.path_returns.columns])
    curves.update_layout(title="growth of 1 along each path")
    facts = "".join(f"<li>{k}: {v:.4g}</li>" if isinstance(v, float) else f"<li>{k}: {v}</li>"
                    for k, v in s.items())
    page = fig.to_html(include_plotlyjs=True, full_html=True)
    body = (curves.to_html(include_plotlyjs=False, full_html=False) + f"<h2>Summary</h2><ul>{facts}</ul>"
            + "<h2>Splits</h2>" + res.splits.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0))
    path.write_text(page.replace("</body>", body + "</body>"), encoding="utf-8")
