"""Sweeps and walk-forward runs driven by an experiment's ``sweep:`` / ``walk_forward:`` sections.

A sweep evaluates every combination of the swept parameters through the same pipeline, engine
(``execution.engine``) and metrics as a single run: each combination is a full experiment (its params are
validated by the component's own model), evaluated over its own evaluation period (its warm-up
excluded, see :mod:`qf.report.metrics`), in chunks on the configured executor. Only what the metrics
need is built per combination (the vectorbt engine runs through :mod:`qf.engines.batch`: the same kernel
and equity, no ``vbt.Portfolio``), combinations with the same signal params share one signal
computation, and local workers are forked from the already warm sweep process (Linux). Ranking, PSR and DSR use
those post-warm-up returns. It writes ``sweep.parquet`` (params + metrics per
combination), ``sweep.html`` (a heatmap for two parameters, parallel coordinates beyond), reports the
best combination with its probabilistic and deflated Sharpe ratios (the number of trials is known), and
writes the full report of that combination next to them.

Walk-forward chooses parameters by sweeping each train window only, runs the test window out of
sample, and stitches the test windows into one equity curve.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from qf.bars import Bars
from qf.components import TrainableSignal, implements
from qf.config.loader import LoadedExperiment, Source, build, set_paths
from qf.config.schema import RangeSpec
from qf.engines.result import EngineResult
from qf.errors import ConfigError, QfError
from qf.pipeline import Targets, apply_weights, compute_signal, compute_targets, risk_config
from qf.rebalance import rebalance_dates
from qf.report import writer
from qf.report.metrics import PERIODS_PER_YEAR, compute_metrics, eval_returns, evaluation_start
from qf.research.checkpoint import SweepCheckpoint, checkpoint_root
from qf.research.executors import LocalExecutor
from qf.research.grid import expand_grid
from qf.research.ray_cluster import ClusterError, ray_executor_for
from qf.research.stats import deflated_sharpe_ratio, probabilistic_sharpe_ratio, sharpe_stats

# share of a window a trainable model is fitted on when a sweep scores it (the rest is its holdout)
HOLDOUT_SPLIT = 0.7
# metrics where smaller is better; every other metric is maximised
LOWER_IS_BETTER = {"volatility", "turnover", "fees_paid", "n_orders"}
METRICS = ("sharpe", "sortino", "cagr", "total_return", "max_drawdown", "volatility", "turnover", "fees_paid",
           "n_orders", "final_equity")
# sweep workers are forked from the warm sweep process where fork is safe enough (Linux)
FORK_WORKERS = sys.platform.startswith("linux")
# each row's evaluation period (combinations with longer look-backs start later)
PERIOD = ("eval_start", "eval_end", "eval_bars")
# the key under which evaluate_chunk hands back a combination's return series (never a column of the table)
RETURNS = "_returns"


def grid_of(exp: LoadedExperiment) -> pd.DataFrame:
    """The combinations of the experiment's sweep section (after constraints)."""
    sweep = exp.spec.sweep
    assert sweep is not None
    spec = {k: ({"range": list(v.range)} if isinstance(v, RangeSpec) else v) for k, v in sweep.params.items()}
    try:
        grid = expand_grid(spec, sweep.constraints)
    except ValueError as exc:
        raise QfError(f"{exp.path}: sweep: {exc}") from None
    for col in grid.columns:  # ranges give floats; keep integers integral so int params validate
        vals = grid[col]
        if vals.dtype.kind == "f" and np.all(np.isfinite(vals)) and np.all(vals == np.round(vals)):
            grid[col] = vals.astype(np.int64)
    return grid


def _python(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def combo_experiment(raw: dict[str, Any], path: Path | None, combo: dict[str, Any]) -> LoadedExperiment:
    """The experiment with one combination's values set; raises a ConfigError naming the combination."""
    values = {k: _python(v) for k, v in combo.items()}
    doc = set_paths(raw, values)
    doc.pop("sweep", None)
    doc.pop("walk_forward", None)
    try:
        return build(doc, Source(str(path) if path else "sweep"), path)
    except ConfigError as exc:
        label = ", ".join(f"{k}={v}" for k, v in values.items())
        raise ConfigError(f"sweep combination {label}: {exc.problems[0]}", exc.problems) from None


SignalCache = dict[tuple[str, str], pd.DataFrame]
# signals kept per worker chunk: combinations arrive grouped by their signal params, so one is enough
# for the hits and a few more only cost memory
_SIGNAL_CACHE_SIZE = 4


def _signal_key(exp: LoadedExperiment) -> tuple[str, str] | None:
    """What a signal's output depends on besides the bars: its class and params (None: don't cache,
    a trainable model's output also depends on its fit)."""
    model = exp.signal
    if implements(model, TrainableSignal):
        return None
    params = getattr(model, "params", None)
    dumped = params.model_dump_json() if hasattr(params, "model_dump_json") else repr(params)
    cls = type(model)
    return (f"{cls.__module__}.{cls.__qualname__}", dumped)


def _targets(exp: LoadedExperiment, bars: Bars, cache: SignalCache | None) -> Targets:
    """:func:`qf.pipeline.compute_targets`, reusing the signal of an earlier combination with the same
    signal params (a sweep over sizer or risk params computes each signal once)."""
    key = _signal_key(exp) if cache is not None else None
    if cache is None or key is None:
        return compute_targets(exp, bars)
    signal = cache.get(key)
    if signal is None:
        signal = compute_signal(exp, bars)
        if len(cache) >= _SIGNAL_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = signal
    dates = rebalance_dates(bars.index, exp.spec.rebalance)
    weights, targets = apply_weights(exp, signal, bars, dates)
    return Targets(signal, weights, targets, risk_config(exp))


def _engine_result(exp: LoadedExperiment, bars: Bars, targets: Targets, light: bool) -> EngineResult:
    engine = exp.spec.execution.engine
    if light and engine == "vectorbt":
        # the same simulation and equity, without building a vbt.Portfolio (see qf.engines.batch)
        from qf.engines.batch import run_vectorbt_light  # lazy: vectorbt

        return run_vectorbt_light(bars, targets.targets, targets.risk, exp.spec.execution)
    from qf.runner import run_engine  # lazy: numba

    return run_engine(exp, bars, targets, engine)


def simulate(exp: LoadedExperiment, bars: Bars, trade_from: int = 0, *, light: bool = False,
             signal_cache: SignalCache | None = None) -> tuple[Targets, EngineResult, dict]:
    """Targets, engine result and metrics of one combination: the same engine (``execution.engine``),
    evaluation period and metrics as ``qf run`` of that combination.

    With ``trade_from`` orders fill only from that bar on (the pipeline still sees the history before
    it) and the evaluation period starts there at the earliest. ``light`` skips what only a report needs
    (the vectorbt engine then builds no ``vbt.Portfolio``; equity, orders and metrics are identical), and
    ``signal_cache`` reuses signals across combinations with the same signal params.

    Example::

        targets, result, m = simulate(combo_experiment(exp.raw, exp.path, {"signal.params.fast": 20}), bars)
    """
    targets = _targets(exp, bars, signal_cache)
    start = evaluation_start(exp, bars.index, targets.targets, trade_from)
    if trade_from:
        t = targets.targets
        targets = replace(targets, targets=t.loc[t.index >= bars.index[trade_from]])
        bars = bars.iloc(slice(trade_from, None))
    result = _engine_result(exp, bars, targets, light)
    result.extra["targets"] = targets.targets
    result.extra.pop("portfolio", None)  # large, and not needed once metrics are computed
    return targets, result, compute_metrics(result, exp.spec.execution.initial_cash, eval_start=start)


@dataclass
class ComboTask:
    raw: dict[str, Any]
    path: Path | None
    bars: Bars | None  # None: the executor passes the bars once per sweep (``shared``), not per chunk
    combos: list[dict[str, Any]]
    trade_from: int = 0
    keep_returns: bool = False


def _combo_metrics(exp: LoadedExperiment, bars: Bars, trade_from: int, traded_bars: Bars,
                   cache: SignalCache) -> tuple[dict[str, Any], np.ndarray | pd.Series]:
    """What :func:`simulate` (``light=True``) computes of one combination that a sweep row needs: its
    metrics and equity (``traded_bars`` = ``bars`` from ``trade_from`` on, sliced once per chunk).

    On the vectorbt engine one kernel call (:func:`qf.engines.batch.sweep_metrics`) simulates, values and
    reduces the combination: no order records, order frame or ``EngineResult``, the same numbers (a test
    holds every row to ``qf run`` of its combination). Other engines run :func:`simulate`'s path.
    """
    targets = _targets(exp, bars, cache)
    start = evaluation_start(exp, bars.index, targets.targets, trade_from)
    if trade_from:
        t = targets.targets
        targets = replace(targets, targets=t.loc[t.index >= bars.index[trade_from]])
    if exp.spec.execution.engine == "vectorbt":
        from qf.engines.batch import sweep_metrics  # lazy: vectorbt

        return sweep_metrics(traded_bars, targets.targets, targets.risk, exp.spec.execution, start)
    result = _engine_result(exp, traded_bars, targets, True)
    return compute_metrics(result, exp.spec.execution.initial_cash, eval_start=start), result.equity


def evaluate_chunk(task: ComboTask, bars: Bars | None = None) -> list[dict[str, Any]]:
    """Metrics of each combination in a chunk (runs in a worker process).

    Each combination goes through the full pipeline (its own experiment, signal, sizer and risk rules)
    and its engine, without what only a report needs (:func:`_combo_metrics`); combinations sharing
    signal params (consecutive in a chunk, see :func:`evaluate_grid`) compute their signal once, and the
    built-in indicators of each distinct window are computed once per worker
    (:mod:`qf_plugins.signals._indicators`).
    """
    if bars is not None:
        task = replace(task, bars=bars)
    assert task.bars is not None
    rows = []
    cache: SignalCache = {}
    sliced: dict[int, Bars] = {0: task.bars}  # the bars from trade_from on, once per chunk
    for combo in task.combos:
        exp = combo_experiment(task.raw, task.path, combo)
        trade_from = task.trade_from
        if implements(exp.signal, TrainableSignal):
            # a trainable model is scored out of sample: fitted on the first part of the window, traded on
            # the rest (its fit drops labels that would reach past the fitting part)
            trade_from = max(trade_from, int(len(task.bars.index) * HOLDOUT_SPLIT))
            exp.signal.fit(task.bars.iloc(slice(0, trade_from)))
        if trade_from not in sliced:
            sliced[trade_from] = task.bars.iloc(slice(trade_from, None))
        m, equity = _combo_metrics(exp, task.bars, trade_from, sliced[trade_from], cache)
        row = {k: m[k] for k in (*METRICS, *PERIOD)}
        if task.keep_returns:  # the per-combination return series (e.g. for the PBO), from this same run
            start = pd.Timestamp(m["eval_start"]) if m["eval_start"] is not None else None
            if not isinstance(equity, pd.Series):
                equity = pd.Series(equity, index=sliced[trade_from].index, name="equity")
            row[RETURNS] = eval_returns(equity, exp.spec.execution.initial_cash, start)
        rows.append(row)
    return rows


def _by_signal(combos: list[dict[str, Any]]) -> list[int]:
    """Positions of ``combos`` with those of equal ``signal.*`` values next to each other (first appearance
    order), so that a chunk's signal cache hits."""
    groups: dict[str, list[int]] = {}
    for i, combo in enumerate(combos):
        key = repr(sorted((k, repr(v)) for k, v in combo.items() if k.startswith("signal.")))
        groups.setdefault(key, []).append(i)
    return [i for members in groups.values() for i in members]


def _executor(exp: LoadedExperiment, n_tasks: int):
    spec = exp.spec.execution.executor
    if spec.kind == "ray":
        try:
            return ray_executor_for(exp)
        except ImportError as exc:
            raise QfError(f"execution.executor.kind: ray is not installed ({exc}); pip install 'qf[ray]'") from None

    # a fresh worker imports vectorbt and loads the compiled kernels (seconds), so small sweeps stay
    # in-process; on Linux the workers are forked from this process once it is warm (see evaluate_grid),
    # so they start with all of that done
    n = spec.n_jobs or (os.cpu_count() or 1)
    context = "fork" if FORK_WORKERS else "forkserver"
    return LocalExecutor(n_jobs=1 if n_tasks < (12 if FORK_WORKERS else 40) else n, mp_context=context)


def evaluate_grid(exp: LoadedExperiment, bars: Bars, grid: pd.DataFrame, trade_from: int = 0,
                  progress: Callable[[int, int], None] | None = None, keep_returns: bool = False, *,
                  executor: Any | None = None, checkpoint: SweepCheckpoint | None = None,
                  done: Mapping[int, dict[str, Any]] | None = None) -> pd.DataFrame:
    """Params + metrics for every row of ``grid``, in grid order.

    With ``keep_returns`` each combination's evaluation-period returns come back too, in grid order, as
    ``table.attrs["returns"]`` (a list of Series; pop it before using the table further).

    ``progress(done, total)`` is called as chunks of combinations finish (the executor streams them).
    ``executor``: run on this executor and leave it open (a walk-forward runs every fold's sweep on one);
    default: one made from ``execution.executor`` for this call. ``checkpoint``: every finished chunk's
    rows are saved there as it finishes (see :mod:`qf.research.checkpoint`); ``done``: rows already
    finished, by grid position (``checkpoint.load()``), which are not computed again. If the Ray cluster
    fails under the sweep, the :class:`~qf.research.ray_cluster.ClusterError` says how many rows were kept.

    Example::

        table = evaluate_grid(exp, exp.data.load(), grid_of(exp))
    """
    combos = grid.to_dict("records")
    # fail fast, in this process, on a combination whose params do not validate
    for combo in combos:
        combo_experiment(exp.raw, exp.path, combo)
    rows: list[dict | None] = [None] * len(combos)
    for pos, row in (done or {}).items():
        rows[pos] = dict(row)
    todo = [j for j in _by_signal(combos) if rows[j] is None]
    n_done = len(combos) - len(todo)
    if todo:
        own = executor is None
        ex = _executor(exp, len(todo)) if own else executor
        try:
            _evaluate(exp, bars, combos, todo, rows, ex, trade_from, keep_returns, checkpoint, progress, n_done)
        finally:
            if own:
                ex.close()
            else:  # the executor lives on: drop this call's bars from its shared files / object store
                release = getattr(ex, "release", None)
                if callable(release):
                    release(bars)
    returns = [row.pop(RETURNS) for row in rows] if keep_returns else None  # type: ignore[union-attr]
    table = pd.concat([grid.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
    if returns is not None:
        table.attrs["returns"] = returns
    return table


def _evaluate(exp: LoadedExperiment, bars: Bars, combos: list[dict[str, Any]], todo: list[int],
              rows: list[dict | None], ex: Any, trade_from: int, keep_returns: bool,
              checkpoint: SweepCheckpoint | None, progress: Callable[[int, int], None] | None, n_done: int) -> None:
    """Fill ``rows[j]`` for every ``j`` in ``todo`` (signal-grouped order) on ``ex``, checkpointing each chunk."""
    # forked workers start as warm as this process: one combination here first imports and loads
    # everything they need (vectorbt, the compiled kernels), then the pool forks them (once per executor)
    warm_up = FORK_WORKERS and ex.n_workers > 1 and isinstance(ex, LocalExecutor) and not ex.started
    head, rest = (todo[:1], todo[1:]) if warm_up else ([], todo)
    n_chunks = max(1, min(len(rest), ex.n_workers * 16))
    # contiguous runs of the signal-grouped order: a chunk holds whole groups where it can
    bounds = np.linspace(0, len(rest), n_chunks + 1).round().astype(int)
    positions = [rest[bounds[i]:bounds[i + 1]] for i in range(n_chunks)]
    positions = [pos for pos in positions if pos]
    tasks = [ComboTask(exp.raw, exp.path, None, [combos[j] for j in pos], trade_from, keep_returns)
             for pos in positions]
    done = n_done

    def finished(pos: list[int], part: list[dict[str, Any]]) -> None:
        nonlocal done
        for j, row in zip(pos, part, strict=True):
            rows[j] = row
        if checkpoint is not None:
            checkpoint.save(pos, part)
        done += len(part)
        if progress is not None:
            progress(done, len(combos))

    if progress is not None and n_done:
        progress(n_done, len(combos))
    try:
        if head:
            finished(head, evaluate_chunk(ComboTask(exp.raw, exp.path, bars, [combos[head[0]]], trade_from,
                                                    keep_returns)))
        # streamed: each finished chunk frees a worker for the next one; the bars travel once
        for i, part in ex.imap(evaluate_chunk, tasks, shared={"bars": bars}):
            finished(positions[i], part)
    except ClusterError as exc:
        if checkpoint is None:
            raise
        kept = len(combos) - sum(row is None for row in rows)
        raise ClusterError(f"{exc}; {kept} of {len(combos)} combinations are kept in {checkpoint.folder}: run "
                           "the same command again to resume") from None


def rank(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    if metric not in table.columns:
        raise QfError(f"sweep.metric: {metric!r} is not a metric; use one of {', '.join(METRICS)}")
    asc = metric in LOWER_IS_BETTER
    ranked = table.sort_values(metric, ascending=asc, kind="mergesort", na_position="last")
    if "eval_bars" in ranked.columns:
        # a combination whose warm-up is longer than the data has no bar to evaluate: its figures are 0.0
        # by convention, not a result, and would otherwise beat every losing (or more volatile) combination
        empty = ranked["eval_bars"].fillna(0).to_numpy() == 0
        ranked = pd.concat([ranked[~empty], ranked[empty]])
    return ranked


def sharpe_inference(returns: pd.Series, trial_sharpes: np.ndarray, n_trials: int) -> dict[str, float]:
    """PSR (against 0) and DSR (against the expected best of ``n_trials``) of the chosen run."""
    try:
        st = sharpe_stats(returns.to_numpy())
    except ValueError:  # a run that never trades has no return distribution to test
        return {"n_trials": n_trials, "psr": float("nan"), "dsr": float("nan")}
    out = {"n_trials": n_trials, "sharpe_per_bar": st.sharpe, "skew": st.skew, "kurtosis": st.kurtosis,
           "n_obs": st.n_obs}
    out["psr"] = probabilistic_sharpe_ratio(st.sharpe, st.n_obs, 0.0, st.skew, st.kurtosis)
    finite = trial_sharpes[np.isfinite(trial_sharpes)]
    if n_trials >= 2 and finite.size >= 2:
        out["dsr"] = deflated_sharpe_ratio(st.sharpe, st.n_obs, n_trials, skew=st.skew, kurtosis=st.kurtosis,
                                           trial_sharpes=finite / math.sqrt(PERIODS_PER_YEAR))
    else:
        out["dsr"] = out["psr"]
    return out


def inference_html(inference: dict[str, Any]) -> str:
    """The best combination's PSR and DSR, one sentence each on what they mean."""
    n_obs = inference.get("n_obs")
    bars = f"{n_obs} post-warm-up returns" if n_obs else "its returns"

    def num(key: str) -> str:
        v = inference.get(key, float("nan"))
        return f"{v:.3f}" if isinstance(v, float | int) and math.isfinite(v) else "n/a (no return variance)"

    return (
        "<h2>Is the best combination's Sharpe ratio real?</h2>"
        f"<p><b>PSR {num('psr')}</b>: probabilistic Sharpe ratio, the probability "
        f"that the best combination's true Sharpe ratio is above zero, given {bars}, their skewness and "
        "fat tails.</p>"
        f"<p><b>DSR {num('dsr')}</b>: deflated Sharpe ratio, the same probability "
        f"measured against the best Sharpe ratio that {inference.get('n_trials', '?')} trials of pure luck "
        "would be expected to reach; well below 0.95, the winner may be an artefact of trying many "
        "combinations.</p>"
    )


def print_top(console: Console, table: pd.DataFrame, params: list[str], metric: str, top: int) -> None:
    t = Table(title=f"top {min(top, len(table))} of {len(table)} by {metric}")
    cols = [*params, "sharpe", "cagr", "max_drawdown", "n_orders"]
    if metric not in cols:
        cols.append(metric)
    for c in cols:
        t.add_column(c)
    for _, row in rank(table, metric).head(top).iterrows():
        t.add_row(*[_fmt(row[c]) for c in cols])
    console.print(t)


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{v:.4g}"
    return str(v)


def _progress(console: Console):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=True)


def run_sweep(exp: LoadedExperiment, out: Path | None, console: Console) -> Path:
    from qf.runner import RunOutcome, default_report_dir, write_report  # lazy: numba

    sweep = exp.spec.sweep
    assert sweep is not None
    grid = grid_of(exp)
    params = list(grid.columns)
    bars = exp.data.load()
    from qf.research.cpcv import PBO_MAX_COMBOS  # cycle: qf.research.cpcv

    keep_returns = 2 <= len(grid) <= PBO_MAX_COMBOS
    # finished rows go to a stable place (each run gets a new report folder) as chunks finish, so that the
    # same command run again after an interruption computes only what is missing
    ckpt = SweepCheckpoint.for_sweep(exp, bars, grid, root=checkpoint_root(exp, out), keep_returns=keep_returns)
    done = ckpt.load() if exp.spec.execution.executor.resume else {}
    if done:
        console.print(f"resumed {len(done)} of {len(grid)} combinations from {ckpt.folder} (finished by an "
                      f"earlier run of this sweep); computing the other {len(grid) - len(done)}", highlight=False)
    with _progress(console) as bar:
        task = bar.add_task(f"{exp.name}: {len(grid)} combinations of {', '.join(params)}", total=len(grid))
        try:
            table = evaluate_grid(exp, bars, grid, progress=lambda n, total: bar.update(task, completed=n),
                                  keep_returns=keep_returns, checkpoint=ckpt, done=done)
        except KeyboardInterrupt:
            console.print(f"interrupted: {len(done) + ckpt.saved} of {len(grid)} combinations are kept in "
                          f"{ckpt.folder}; run the same command again to resume", highlight=False)
            raise
    combo_rets = table.attrs.pop("returns", None)
    ranked = rank(table, sweep.metric)
    best_combo = {p: _python(ranked[p].iloc[0]) for p in params}  # per column, so ints stay ints
    best_exp = combo_experiment(exp.raw, exp.path, best_combo)
    best_exp.overrides = exp.overrides  # the report records the --set items of the command
    targets, result, metrics = simulate(best_exp, bars)
    start = pd.Timestamp(metrics["eval_start"]) if metrics["eval_start"] is not None else None
    returns = eval_returns(result.equity, best_exp.spec.execution.initial_cash, start)
    inference = sharpe_inference(returns, table["sharpe"].to_numpy(dtype=float), len(table))
    metrics.update({"dsr": inference["dsr"], "psr": inference["psr"], "n_trials": len(table)})
    from qf.research.cpcv import pbo_text, sweep_pbo  # cycle: qf.research.cpcv

    pbo_res, pbo_reason = sweep_pbo(exp, bars, grid, combo_rets)
    inference.update(pbo_res.summary() if pbo_res is not None else {"pbo": None, "pbo_note": pbo_reason})
    print_top(console, table, params, sweep.metric, sweep.top)
    console.print(f"best by {sweep.metric}: " + ", ".join(f"{k}={v}" for k, v in best_combo.items())
                  + f"  sharpe {metrics['sharpe']:.3f}  PSR {inference['psr']:.3f}  "
                    f"DSR {inference['dsr']:.3f} ({len(table)} trials, {metrics['eval_bars']} bars from "
                    f"{metrics['eval_start']})  " + pbo_text(pbo_res, pbo_reason))
    run_id = writer.new_run_id()
    out = Path(out) if out is not None else default_report_dir(exp, run_id)
    outcome = RunOutcome(best_exp, bars, targets, result, metrics, None)

    def extra(tmp: Path) -> None:
        from qf.report.sweep_page import sweep_html  # cycle: qf.report.sweep_page (it imports this module)

        table.to_parquet(tmp / "sweep.parquet", index=False)
        sweep_html(table, params, sweep.metric, tmp / "sweep.html", f"{exp.name}: {sweep.metric} by parameters",
                   inference)
        writer.write_json(tmp / "best.json", {"params": best_combo, "metric": sweep.metric, **inference})

    engine = best_exp.spec.execution.engine
    report_dir = write_report(best_exp, outcome, out, out.name, engine, kind="sweep", extra_files=extra)
    ckpt.remove()  # the report holds every row now
    console.print(f"report: {report_dir}")
    other = "backtrader" if engine == "vectorbt" else "vectorbt"
    console.print(f"check the best combination in {other} too: qf parity {report_dir}", highlight=False)
    return report_dir
