"""Walk-forward runs: choose on each train window only, then trade every test window with ONE account.

For every fold (see :mod:`qf.research.folds` for the windows): the sweep (if any) is evaluated on
the fold's purged train window alone and its best combination is taken; a trainable signal model is
fitted on that window; then the pipeline runs on the history up to the end of the test window (signals
only ever look back) and only the target rows decided inside the test window are kept. The test
windows are adjacent, so their targets form one schedule over the contiguous out-of-sample span, and
that schedule is simulated ONCE, through the experiment's engine (``execution.engine``), from
``initial_cash`` at the first test bar to the last one:

- cash and positions carry over from fold to fold; nothing is sold at a fold boundary unless the next
  fold's targets say so (a position both folds want is simply held);
- the stateful risk rules (``drawdown_halt``, ``daily_loss_limit``, ``stop_loss``) run over the whole
  account: the peak, the halt and the entry prices survive fold boundaries. Their settings must therefore
  be the same in every fold: a sweep that changes them (or ``execution``/``broker``) is refused;
- a decision taken on a test window's last bar fills on the next fold's first bar (``next_*`` fills),
  as it would in real trading; the decision on the very last bar has no bar left to fill on;
- ``turnover``, ``fees_paid`` and every other metric are those of that one account, and each row of
  ``folds.csv`` is measured on the same account's equity over its test window (from the close before
  the window to its last close), so the folds' returns compound to the total return and their fees
  add up to ``fees_paid``.

Rebalance dates come from the full data's calendar (``weekly`` = last bar of each week in the data), so
a fold's last bar is not mistaken for a period end because the history handed to the pipeline stops
there.

Trainable signal models (e.g. the xgboost model) opt in with these methods, all optional but ``fit``:

- ``fit(train_bars)``: train on the fold's purged train window only;
- ``evaluate(bars, test: slice) -> dict``: out-of-sample model metrics of the fold (added to folds.csv);
- ``save(directory)``: write the fitted model (one folder per fold, and ``final`` for the model trained
  on the last train window, which is what paper trading loads);
- ``summarize(fitted, directory)`` (classmethod): cross-fold tables such as calibration or importances.

A model that is also a :class:`qf.components.HistorySharing` gets ``share_history(bars, shared)`` after its
fold's ``fit``: the full data and a per-run dict, so that every fold's history (a prefix of the data) can be
scored from inputs built once (the xgboost model's features).

Without a sweep, a trainable model's folds (and the final model) are planned on a thread pool, one
thread per core divided by the threads one fit uses (the model's ``n_jobs``; ``run_walk_forward(...,
workers=1)`` plans them one after the other): fitting runs in native code that releases the GIL (the
xgboost model's rounds run in one native call, :mod:`qf_plugins.signals.xgb_train`), and each fold is
independent of the others, so the models, targets and every number of the report are the same as one
fold after the other.

Example::

    exp = load_experiment("experiments/xgb_swing.yaml")
    report_dir = run_walk_forward(exp, Path("/tmp/xgb"), Console())
"""

from __future__ import annotations

import importlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from qf.bars import Bars
from qf.components import HistorySharing, TrainableSignal
from qf.config.loader import LoadedExperiment, dotted, read_yaml
from qf.engines.result import EngineResult
from qf.errors import QfError
from qf.pipeline import Targets, apply_weights, compute_signal, risk_config
from qf.rebalance import rebalance_dates
from qf.report import writer
from qf.report.metrics import compute_metrics, evaluation_start
from qf.research.folds import Fold, walk_forward_splits
from qf.research.sweep import _executor, _python, combo_experiment, evaluate_grid, grid_of, rank

__all__ = ["FoldPlan", "fold_targets", "run_walk_forward"]


@dataclass
class FoldPlan:
    """What one fold decided: its combination, its train score and its targets inside the test window."""

    fold: Fold
    experiment: LoadedExperiment
    combo: dict[str, Any]
    train_score: float
    chosen: str
    targets: Targets
    model_metrics: dict[str, Any] = field(default_factory=dict)


def _where(exp: LoadedExperiment, path: tuple[str, ...]) -> str:
    """``file:line`` of ``path`` in the experiment file (or ``--set ...`` when an override set it)."""
    if exp.path is None:
        return dotted(path)
    try:
        file_raw, src = read_yaml(exp.path.read_text(encoding="utf-8"), str(exp.path))
    except (OSError, QfError):
        return str(exp.path)
    node_file: Any = file_raw
    node_raw: Any = exp.raw
    for p in path:
        node_file = node_file.get(p) if isinstance(node_file, dict) else None
        node_raw = node_raw.get(p) if isinstance(node_raw, dict) else None
    if node_file != node_raw:  # the value came from the command line
        return f"--set {dotted(path)}={node_raw}"
    return src.where(path)


def _splits(exp: LoadedExperiment, n_bars: int) -> list[Fold]:
    wf = exp.spec.walk_forward
    assert wf is not None
    try:
        # allow_partial: the out-of-sample span runs to the last bar (the last test window may be shorter)
        return walk_forward_splits(n_bars, wf.train, wf.test, wf.step, "anchored" if wf.anchored else "rolling",
                                   wf.purge, wf.embargo, allow_partial=True)
    except ValueError as exc:
        key = "step" if str(exc).startswith("step") else None
        where = _where(exp, ("walk_forward", key) if key else ("walk_forward",))
        raise QfError(f"{where}: walk_forward: {exc} ({n_bars} bars of data)") from None


def _check_one_account(exp: LoadedExperiment, grid: pd.DataFrame) -> None:
    """Refuse sweeps that would need a different account or risk kernel in different folds."""
    base_risk = risk_config(exp).settings()
    for combo in grid.to_dict("records"):
        ce = combo_experiment(exp.raw, exp.path, combo)
        what = None
        if ce.spec.execution != exp.spec.execution or ce.spec.broker != exp.spec.broker:
            what, prefixes = "the execution or broker settings", ("execution", "broker")
        elif risk_config(ce).settings() != base_risk:
            what, prefixes = "the settings of a stateful risk rule (drawdown_halt, daily_loss_limit, stop_loss)", \
                ("risk",)
        if what is None:
            continue
        keys = [k for k in grid.columns if str(k).split(".")[0] in prefixes] or list(grid.columns)
        raise QfError(
            f"{_where(exp, ('sweep',))}: sweep: {', '.join(map(str, keys))} change{'s' if len(keys) == 1 else ''} "
            f"{what}; a walk-forward trades one account through one risk kernel, so these must be the same "
            "in every fold: fix them, or sweep them without walk_forward"
        )


def fold_targets(exp: LoadedExperiment, bars: Bars, fold: Fold) -> tuple[Targets, Bars]:
    """The pipeline's output for the decisions taken inside ``fold``'s test window.

    The pipeline sees the history up to the window's end only (returned as the second value, for the
    model's own evaluation); rebalance dates come from the calendar of all of ``bars``.

    Example::

        targets, history = fold_targets(exp, bars, walk_forward_splits(len(bars.index), 500, 100)[0])
        targets.targets.index.min() >= bars.index[500]   # True
    """
    history = bars.iloc(slice(0, fold.test.stop))
    first, last = bars.index[fold.test.start], bars.index[fold.test.stop - 1]
    dates = rebalance_dates(bars.index, exp.spec.rebalance)
    # sizers may depend on their earlier decisions, so they see every decision date up to the window's end
    dates = dates[dates <= last]
    signal = compute_signal(exp, history)
    if len(dates):
        weights, targets = apply_weights(exp, signal, history, dates)
    else:
        weights = targets = pd.DataFrame(index=dates, columns=bars.symbols, dtype=float)

    def window(df: pd.DataFrame) -> pd.DataFrame:
        return df.loc[(df.index >= first) & (df.index <= last)]

    return Targets(window(signal), window(weights), window(targets), risk_config(exp)), history


def _describe(combo: dict[str, Any], exp: LoadedExperiment, trainable: bool, n_train: int) -> str:
    parts = [", ".join(f"{str(k).rsplit('.', 1)[-1]}={v}" for k, v in combo.items())] if combo else []
    if trainable:
        parts.append(f"{exp.signal.name} fitted on {n_train} train bars")
    return "; ".join(parts) or "fixed params (no sweep)"


def _plan_fold(exp: LoadedExperiment, bars: Bars, fold: Fold, grid: pd.DataFrame | None, metric: str,
               fitted: list[tuple[int, Any]], shared: dict[Any, Any] | None = None, executor: Any = None) -> FoldPlan:
    train_bars = bars.iloc(fold.train)
    combo: dict[str, Any] = {}
    train_score = float("nan")
    if grid is not None:
        table = rank(evaluate_grid(exp, train_bars, grid, executor=executor), metric)
        if "eval_bars" in table.columns and not table["eval_bars"].fillna(0).to_numpy().any():
            # every combination's warm-up outlasts the train window: the "choice" would be the first row
            raise QfError(f"walk_forward: fold {fold.index}: no combination trades inside its {fold.n_train} train "
                          "bars (each one's warm-up is at least that long); make walk_forward.train longer")
        combo = {p: _python(table[p].iloc[0]) for p in grid.columns}
        train_score = float(table[metric].iloc[0])
    fold_exp = combo_experiment(exp.raw, exp.path, combo)
    trainable = isinstance(fold_exp.signal, TrainableSignal)
    if trainable:
        fold_exp.signal.fit(train_bars)
        fitted.append((fold.index, fold_exp.signal))
        # a model that can serve every fold's history (a prefix of bars) from one build of its inputs gets
        # the full data and a per-run dict to keep that build in
        if shared is not None and isinstance(fold_exp.signal, HistorySharing):
            fold_exp.signal.share_history(bars, shared)
    targets, history = fold_targets(fold_exp, bars, fold)
    model_metrics: dict[str, Any] = {}
    if trainable:
        model_metrics = fold_exp.signal.evaluate(history, fold.test)
    return FoldPlan(fold, fold_exp, combo, train_score, _describe(combo, fold_exp, trainable, fold.n_train), targets,
                    model_metrics)


def _fold_metrics(result: EngineResult, fold: Fold, oos_start: int, eval_start: pd.Timestamp,
                  initial_cash: float) -> dict:
    """The one account's metrics over ``fold``'s test window, each return measured from the previous close.

    The account's curve is cut at the window's last bar and evaluated from the window's first bar (from
    the account's evaluation start in the first window), so the windows' returns compound to the total.
    """
    eq = result.equity
    stop = fold.test.stop - oos_start
    last = eq.index[stop - 1]
    start = max(eq.index[fold.test.start - oos_start], pd.Timestamp(eval_start))

    def upto(df: pd.DataFrame) -> pd.DataFrame:
        return df.loc[pd.to_datetime(df["time"]) <= last]

    part = EngineResult(result.engine, eq.iloc[:stop], upto(result.orders), upto(result.events))
    return compute_metrics(part, initial_cash, eval_start=start)


def _fold_workers(exp: LoadedExperiment, grid: pd.DataFrame | None, n_folds: int, workers: int | None) -> int:
    """Threads planning folds at once: for a trainable model without a sweep, the cores divided by the threads
    each fit uses (the model's ``n_jobs`` param, 1 if it has none), else 1.

    A sweep evaluates its grid on forked worker processes, which must not be forked from several threads;
    a plain signal's fold is pandas work holding the GIL, which threads would not speed up. A model fitting on
    ``n_jobs`` threads already uses that many cores: more folds at once than cores // n_jobs would
    oversubscribe them: OpenMP threads spin at their barriers waiting for a core (measured on this 2-core
    machine with other work running: one 2-thread xgboost fit took 18.5 s, the same fit on 1 thread 1.7 s).
    """
    if grid is not None or not isinstance(exp.signal, TrainableSignal):
        return 1
    if workers is None:
        threads = getattr(getattr(exp.signal, "params", None), "n_jobs", 1)
        threads = threads if isinstance(threads, int) and threads >= 1 else 1
        workers = max(1, (os.cpu_count() or 1) // threads)
    return max(1, min(int(workers), n_folds))


def _prewarm(exp: LoadedExperiment, after: Future[Any]) -> threading.Thread:
    """Import what the simulation and the report will need on a background thread, while the folds fit.

    The folds' xgboost fits run in native code without the GIL; the engine (vectorbt: numba, plotly) and the
    tear sheet (quantstats, matplotlib) take seconds to import, which would otherwise be spent after the
    last fold. The thread starts importing once ``after`` (the first fold) is done, so the fold threads have
    imported what they need and no two threads import overlapping module graphs at once. Importing a module
    earlier changes nothing it computes; a failure is left for the real import to report.
    """
    names = ["qf.engines.vectorbt" if exp.spec.execution.engine == "vectorbt" else "qf.engines.backtrader.strategy"]
    if exp.spec.report.tearsheet:
        names += ["qf.report.tearsheet", "quantstats"]

    def run() -> None:
        try:
            if after.exception() is not None:  # waits for the first fold; a failed run needs no engine
                return
            for name in names:
                importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - cancelled, or an import error the run's own import reports
            return

    thread = threading.Thread(target=run, name="qf-prewarm", daemon=True)
    thread.start()
    return thread


def _fit_final(exp: LoadedExperiment, bars: Bars, folds: list[Fold], grid: pd.DataFrame | None,
               combo: dict[str, Any] | None = None) -> Any:
    """The model paper trading uses: the last fold's params, trained on the latest train-sized window."""
    assert grid is None or combo is not None  # with a sweep the last fold's choice is needed first
    wf = exp.spec.walk_forward
    assert wf is not None
    n = len(bars.index)
    start = 0 if wf.anchored else max(0, n - folds[-1].n_train)
    final = combo_experiment(exp.raw, exp.path, combo or {}).signal
    final.fit(bars.iloc(slice(start, n)))
    return final


def run_walk_forward(exp: LoadedExperiment, out: Path | None, console: Console, workers: int | None = None) -> Path:
    """Run the experiment's ``walk_forward:`` section and write its report (see the module docstring).

    ``workers``: threads fitting a trainable model's folds at once (default: one per core; 1 = one fold
    after the other). The fitted models and every number of the report are the same for any value.
    """
    from qf.runner import RunOutcome, default_report_dir, run_engine, write_report  # lazy: numba

    wf = exp.spec.walk_forward
    assert wf is not None
    bars = exp.data.load()
    folds = _splits(exp, len(bars.index))
    grid = grid_of(exp) if exp.spec.sweep is not None else None
    if grid is not None:
        _check_one_account(exp, grid)
    metric = exp.spec.sweep.metric if exp.spec.sweep is not None else wf.metric
    cash = exp.spec.execution.initial_cash
    engine = exp.spec.execution.engine
    console.print(f"{exp.name}: walk-forward, {len(folds)} folds"
                  + (f", {len(grid)} combinations per train window" if grid is not None else ""))
    fitted: list[tuple[int, Any]] = []
    shared: dict[Any, Any] = {}
    n_workers = _fold_workers(exp, grid, len(folds), workers)
    final_fit = None
    if n_workers == 1:
        # every fold's sweep runs on one executor: one worker pool (or Ray connection, runtime_env upload and
        # version handshake) for the whole walk-forward, not one per fold
        ex = _executor(exp, len(grid) * len(folds)) if grid is not None else None
        try:
            plans = [_plan_fold(exp, bars, fold, grid, metric, fitted, shared, executor=ex) for fold in folds]
        finally:
            if ex is not None:
                ex.close()
    else:
        # a trainable model's fit spends its time in native code that releases the GIL (xgboost), so the
        # folds' fits overlap on a thread pool; each model still trains on its own window with its own
        # thread count and seed, so the models are the ones a sequential run fits
        with ThreadPoolExecutor(n_workers, thread_name_prefix="qf-fold") as pool:
            jobs = [pool.submit(_plan_fold, exp, bars, fold, grid, metric, fitted, shared) for fold in folds]
            _prewarm(exp, after=jobs[0])
            final_fit = pool.submit(_fit_final, exp, bars, folds, grid)  # needs only the last combo (fixed)
            try:
                plans = [job.result() for job in jobs]
            except BaseException:
                for job in (*jobs, final_fit):
                    job.cancel()  # the earliest failing fold's error is the one raised, as sequentially
                raise
        fitted.sort(key=lambda kv: kv[0])  # appended in completion order
    shared.clear()

    idx = bars.index
    oos_start, oos_stop = folds[0].test.start, folds[-1].test.stop
    oos = bars.iloc(slice(oos_start, oos_stop))
    targets = Targets(*(pd.concat([getattr(p.targets, f) for p in plans]) for f in ("signal", "weights", "targets")),
                      risk_config(exp))
    result = run_engine(exp, oos, targets, engine)
    result.extra.pop("portfolio", None)
    # statistics start where the first fold's first decision fills (the same rule as a plain run)
    eval_start = evaluation_start(plans[0].experiment, idx, targets.targets, trade_from=oos_start)
    metrics = compute_metrics(result, cash, eval_start=eval_start)
    metrics["n_folds"] = len(folds)

    rows = []
    for p in plans:
        f = p.fold
        m = _fold_metrics(result, f, oos_start, eval_start, cash)
        rows.append({
            "fold": f.index,
            "train_start": idx[f.train.start].date(), "train_end": idx[f.train.stop - 1].date(),
            "train_bars": f.n_train,
            "test_start": idx[f.test.start].date(), "test_end": idx[f.test.stop - 1].date(), "test_bars": f.n_test,
            "chosen": p.chosen, **p.combo, **({f"train_{metric}": p.train_score} if grid is not None else {}),
            "test_return": m["total_return"], "test_sharpe": m["sharpe"], "test_max_drawdown": m["max_drawdown"],
            "test_orders": m["n_orders"], "test_fees": m["fees_paid"],
            **p.model_metrics,
        })
    folds_table = pd.DataFrame(rows)
    _print_folds(console, folds_table, metric if grid is not None else None)

    final = None
    if fitted:
        final = final_fit.result() if final_fit is not None else _fit_final(exp, bars, folds, grid,
                                                                             plans[-1].combo)

    outcome = RunOutcome(exp, bars, targets, result, metrics, None)
    run_id = writer.new_run_id()
    out = Path(out) if out is not None else default_report_dir(exp, run_id)

    def extra(tmp: Path) -> None:
        folds_table.to_csv(tmp / "folds.csv", index=False)
        for k, model in fitted:
            model.save(tmp / "models" / f"fold_{k}")
        if final is not None:
            final.save(tmp / "models" / "final")
        if fitted:
            type(fitted[0][1]).summarize([m for _, m in fitted], tmp)

    report_dir = write_report(exp, outcome, out, out.name, engine, kind="walk_forward", extra_files=extra)
    console.print(f"out-of-sample, one {engine} account over {metrics['n_bars']} bars "
                  f"({metrics['start']} to {metrics['end']}): sharpe {metrics['sharpe']:.3f}, "
                  f"CAGR {metrics['cagr']:.2%}, max drawdown {metrics['max_drawdown']:.2%}, "
                  f"turnover {metrics['turnover']:.1f}x/yr, fees {metrics['fees_paid']:,.2f}")
    console.print(f"report: {report_dir}")
    return report_dir


def _print_folds(console: Console, folds: pd.DataFrame, metric: str | None) -> None:
    # the essentials on screen; folds.csv has every column (model metrics included)
    cols = ["fold", "train_end", "test_start", "test_end", "chosen",
            *([f"train_{metric}"] if metric else []), "test_return", "test_sharpe", "test_fees"]
    title = "walk-forward folds traded by one account (" + (f"best {metric} on each train window; " if metric else "") \
        + "all columns in folds.csv)"
    # a classifier's out-of-sample accuracy against always calling its train window's majority class: a
    # fold below that baseline has no edge, whatever its return says
    baseline = {"accuracy", "majority_accuracy"} <= set(folds.columns)
    if baseline:
        cols.append("model vs baseline")
    t = Table(title=title)
    for c in cols:
        t.add_column(c)
    below = 0
    for _, r in folds.iterrows():
        cells = [f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols if c != "model vs baseline"]
        if baseline:
            acc, base = float(r["accuracy"]), float(r["majority_accuracy"])
            low = acc < base
            below += low
            cells.append(f"{acc:.3f} vs {base:.3f}" + (" [red]below[/]" if low else ""))
        t.add_row(*cells)
    console.print(t)
    if baseline:
        console.print(f"{below} of {len(folds)} folds below their majority-class baseline (accuracy of always "
                      "predicting the train window's most common label)")
