"""Walk-forward runs: choose on each train window only, trade the next test window, stitch the tests.

For every fold: the sweep (if any) is evaluated on the purged train window alone and its best
combination is taken; a trainable signal model is fitted on that window; then the pipeline runs on the
history up to the end of the test window (signals only ever look back) and orders are executed only
inside the test window, starting from fresh cash. The test windows' equity curves are chained into one
out-of-sample curve, which gets the tear sheet.

Trainable signal models (e.g. the xgboost model) opt in with these methods, all optional but ``fit``:

- ``fit(train_bars)``: train on the fold's purged train window only;
- ``evaluate(bars, test: slice) -> dict``: out-of-sample model metrics of the fold (added to folds.csv);
- ``save(directory)``: write the fitted model (one folder per fold, and ``final`` for the model trained
  on the last train window, which is what paper trading loads);
- ``summarize(fitted, directory)`` (classmethod): cross-fold tables such as calibration or importances.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from qf.config.loader import LoadedExperiment
from qf.engines.result import EngineResult
from qf.errors import QfError
from qf.pipeline import Targets
from qf.report import writer
from qf.report.metrics import compute_metrics
from qf.research.run import _python, _simulate, combo_experiment, evaluate_grid, grid_of, rank
from qf.research.walkforward import stitch, walk_forward_splits


def run_walk_forward(exp: LoadedExperiment, out: Path | None, console: Console) -> Path:
    from qf.run import RunOutcome, default_report_dir, write_report

    wf = exp.spec.walk_forward
    assert wf is not None
    bars = exp.data.load()
    try:
        folds = walk_forward_splits(len(bars.index), wf.train, wf.test, wf.step,
                                    "anchored" if wf.anchored else "rolling", wf.purge, wf.embargo)
    except ValueError as exc:
        raise QfError(f"walk_forward: {exc} ({len(bars.index)} bars of data)") from None
    grid = grid_of(exp) if exp.spec.sweep is not None else None
    metric = exp.spec.sweep.metric if exp.spec.sweep is not None else wf.metric
    cash = exp.spec.execution.initial_cash
    pieces, orders, events, targets, rows, fitted = [], [], [], [], [], []
    console.print(f"{exp.name}: walk-forward, {len(folds)} folds"
                  + (f", {len(grid)} combinations per train window" if grid is not None else ""))
    for fold in folds:
        train_bars = bars.iloc(fold.train)
        combo: dict = {}
        train_score = float("nan")
        if grid is not None:
            table = rank(evaluate_grid(exp, train_bars, grid), metric)
            combo = {p: _python(table[p].iloc[0]) for p in grid.columns}
            train_score = float(table[metric].iloc[0])
        fold_exp = combo_experiment(exp.raw, exp.path, combo)
        trainable = callable(getattr(fold_exp.signal, "fit", None))
        if trainable:
            fold_exp.signal.fit(train_bars)
            fitted.append((fold.index, fold_exp.signal))
        history = bars.iloc(slice(0, fold.test.stop))
        result, m = _simulate(fold_exp, history, trade_from=fold.test.start)
        model_metrics = {}
        if trainable and callable(getattr(fold_exp.signal, "evaluate", None)):
            model_metrics = fold_exp.signal.evaluate(history, fold.test)
        pieces.append(result.equity)
        orders.append(result.orders)
        events.append(result.events)
        t = result.extra.get("targets")
        if t is not None:
            targets.append(t)
        idx = bars.index
        rows.append({
            "fold": fold.index,
            "train_start": idx[fold.train.start].date(), "train_end": idx[fold.train.stop - 1].date(),
            "test_start": idx[fold.test.start].date(), "test_end": idx[fold.test.stop - 1].date(),
            **combo, f"train_{metric}": train_score,
            "test_sharpe": m["sharpe"], "test_return": m["total_return"], "test_max_drawdown": m["max_drawdown"],
            **model_metrics,
        })
    final = None
    if fitted:
        # the model paper trading uses: same params as the last fold, trained on the latest window
        last = folds[-1]
        n = len(bars.index)
        start = 0 if wf.anchored else max(0, n - last.n_train)
        final = combo_experiment(exp.raw, exp.path, combo).signal
        final.fit(bars.iloc(slice(start, n)))
    equity = stitch(pieces, init_values=[cash] * len(pieces))
    equity.name = "equity"
    combined = EngineResult("vectorbt", equity, pd.concat(orders, ignore_index=True),
                            pd.concat(events, ignore_index=True))
    metrics = compute_metrics(combined, cash)
    metrics["n_folds"] = len(folds)
    folds_table = pd.DataFrame(rows)
    _print_folds(console, folds_table)
    all_targets = pd.concat(targets) if targets else pd.DataFrame(columns=bars.symbols)
    outcome = RunOutcome(exp, bars, Targets(pd.DataFrame(), pd.DataFrame(), all_targets, None), combined,  # type: ignore[arg-type]
                         metrics, None)
    run_id = writer.new_run_id()
    out = Path(out) if out is not None else default_report_dir(exp, run_id)

    def extra(tmp: Path) -> None:
        folds_table.to_csv(tmp / "folds.csv", index=False)
        for k, model in fitted:
            if callable(getattr(model, "save", None)):
                model.save(tmp / "models" / f"fold_{k}")
        if final is not None and callable(getattr(final, "save", None)):
            final.save(tmp / "models" / "final")
        if fitted and callable(getattr(type(fitted[0][1]), "summarize", None)):
            type(fitted[0][1]).summarize([m for _, m in fitted], tmp)

    report_dir = write_report(exp, outcome, out, out.name, "vectorbt", kind="walk_forward", extra_files=extra)
    console.print(f"out-of-sample sharpe {metrics['sharpe']:.3f}, CAGR {metrics['cagr']:.2%}, "
                  f"max drawdown {metrics['max_drawdown']:.2%}")
    console.print(f"report: {report_dir}")
    return report_dir


def _print_folds(console: Console, folds: pd.DataFrame) -> None:
    # the essentials on screen; folds.csv has every column (model metrics included)
    skip = {"train_start", "test_max_drawdown"}
    cols = [c for c in folds.columns if c not in skip][: 8]
    t = Table(title="walk-forward folds (parameters chosen on train only; all columns in folds.csv)")
    for c in cols:
        t.add_column(str(c))
    for _, r in folds[cols].iterrows():
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r])
    console.print(t)
