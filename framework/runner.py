"""One backtest run end to end (load, pipeline, engine, metrics, report), and the run lifecycle every
runner goes through.

:func:`lifecycle` is the one place that fires the ``qf_before_run`` / ``qf_after_run`` hooks: single runs
(:func:`run_experiment`), sweeps, walk-forward and CPCV (:func:`qf.research.study.run_research`), ``qf
parity``, paper sessions, ``qf watch`` and the Python API (``qf.run`` / ``qf.sweep``) all wrap their work
in it. A run started inside another one (the two engine runs of ``qf parity``) fires nothing itself: the
hooks see one run per command.

Example::

    exp = load_experiment("experiments/hrp_swing.yaml")
    outcome = run_experiment(exp)
    outcome.metrics["sharpe"], outcome.report_dir
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from qf.bars import Bars
from qf.config.loader import LoadedExperiment
from qf.engines.result import EngineResult
from qf.errors import QfError
from qf.lookahead import guard_run
from qf.pipeline import Targets, compute_targets
from qf.registry import Registry, get_registry, loaded
from qf.report import tearsheet, writer
from qf.report.analysis import TradeData
from qf.report.index import write_index
from qf.report.metrics import compute_metrics, eval_returns, evaluation_start
from qf.report.trades import run_trades

Step = Callable[[str], None]


@dataclass
class RunOutcome:
    experiment: LoadedExperiment
    bars: Bars
    targets: Targets
    result: EngineResult
    metrics: dict
    report_dir: Path | None


def _noop(_: str) -> None:
    return None


RunKind = Literal["backtest", "sweep", "walk_forward", "cpcv", "parity", "paper"]
RUN_KINDS: tuple[RunKind, ...] = ("backtest", "sweep", "walk_forward", "cpcv", "parity", "paper")


@dataclass
class RunRecord:
    """One run as the lifecycle hooks see it: ``qf_after_run(experiment, result, report_dir)`` gets it as
    ``result``. ``kind`` says which runner ran; ``metrics`` is always a dict of the run's headline figures;
    ``outcome`` is the runner's own object:

    ============== ============================================ ==================================================
    kind           run by                                       outcome / metrics
    ============== ============================================ ==================================================
    backtest       ``qf run``, ``qf.run``, ``qf watch``          :class:`RunOutcome` / its metrics.json dict
    sweep          ``qf run`` (``sweep:``), ``qf.sweep``         the ranked table (``qf.sweep`` without ``out``), else
                                                                None / the best combination's metrics
    walk_forward   ``qf run`` (``walk_forward:``)                None / the out-of-sample account's metrics
    cpcv           ``qf run`` (``validation:``)                  None / the full-period best combination's metrics
    parity         ``qf parity``                                 :class:`qf.parity.ParityReport` / ``ok``,
                                                                ``final_rel_diff``, ``max_rel_diff``, ``matched``
    paper          ``qf paper`` (sim replay or live)             :class:`qf.paper.session.PaperOutcome` / the
                                                                session's metrics ({} when nothing was written)
    ============== ============================================ ==================================================

    ``report_dir`` is the folder written (None when nothing was, e.g. ``qf.run``).

    Example::

        @hookimpl
        def qf_after_run(experiment, result, report_dir):
            if result.kind in ("backtest", "paper"):
                print(experiment.name, result.kind, result.metrics.get("sharpe"))
    """

    kind: RunKind
    experiment: LoadedExperiment
    outcome: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    report_dir: Path | None = None
    # False when the runner found nothing to run (a paper replay that had already ended): no after-run hook
    ran: bool = True

    def read_metrics(self) -> None:
        """Fill ``metrics`` from ``report_dir/metrics.json`` (the runners that return only a folder)."""
        if self.report_dir is not None and (Path(self.report_dir) / "metrics.json").is_file():
            self.metrics = json.loads((Path(self.report_dir) / "metrics.json").read_text())


# the run the hooks were fired for in this thread/task; a run started inside it fires none itself
_ACTIVE: ContextVar[RunRecord | None] = ContextVar("qf_active_run", default=None)


@contextmanager
def lifecycle(experiment: LoadedExperiment, kind: RunKind, registry: Registry | None = None) -> Iterator[RunRecord]:
    """Fire ``qf_before_run`` now and ``qf_after_run`` when the block ends without an exception.

    The block fills the yielded :class:`RunRecord` (``outcome``, ``metrics``, ``report_dir``). A hook that
    raises in ``qf_before_run`` aborts the run before the block starts. Inside another lifecycle block this
    one fires nothing (the outer run is the one the hooks see). ``registry`` defaults to the process's
    :func:`qf.registry.get_registry`.

    Example::

        with lifecycle(exp, "backtest") as run:
            run.outcome = outcome = run_experiment(exp)   # fires nothing itself: nested
            run.metrics, run.report_dir = outcome.metrics, outcome.report_dir
    """
    if kind not in RUN_KINDS:
        raise ValueError(f"unknown run kind {kind!r}; one of {', '.join(RUN_KINDS)}")
    record = RunRecord(kind, experiment)
    if _ACTIVE.get() is not None:
        yield record
        return
    reg = registry if registry is not None else get_registry()
    reg.call_before_run(experiment)
    token = _ACTIVE.set(record)
    try:
        yield record
    finally:
        _ACTIVE.reset(token)
    if record.ran:
        reg.call_after_run(experiment, record, record.report_dir)


def run_engine(exp: LoadedExperiment, bars: Bars, targets: Targets, engine: str) -> EngineResult:
    if engine == "vectorbt":
        from qf.engines.vectorbt import run_vectorbt  # lazy: vectorbt

        return run_vectorbt(bars, targets.targets, targets.risk, exp.spec.execution)
    if engine == "backtrader":
        try:
            from qf.engines.backtrader.strategy import run_backtrader  # lazy: backtrader
        except ImportError as exc:  # pragma: no cover - the module ships with qf
            raise QfError(f"the backtrader engine is not available: {exc}") from None
        return run_backtrader(bars, targets.targets, targets.risk, exp.spec.execution, broker=exp.broker)
    raise QfError(f"unknown engine {engine!r}; use vectorbt or backtrader")


def benchmark_returns(exp: LoadedExperiment, bars: Bars) -> pd.Series:
    """Daily returns of the experiment's benchmark, or of the equal-weight universe when none is set."""
    spec = exp.spec.benchmark
    if spec is None:
        rets = bars.close.pct_change(fill_method=None).mean(axis=1).fillna(0.0)
        rets.name = "Universe (equal weight)"
        return rets
    if exp.benchmark_source is not None:
        bb = exp.benchmark_source.load()
        symbol = spec.symbol or bb.symbols[0]
        if symbol not in bb.symbols:
            raise QfError(f"benchmark.symbol: {symbol!r} is not in the benchmark data ({', '.join(bb.symbols)})")
        close = bb.close[symbol]
    else:
        assert spec.symbol is not None
        if spec.symbol not in bars.symbols:
            raise QfError(f"benchmark.symbol: {spec.symbol!r} is not a symbol of the data "
                          f"({', '.join(bars.symbols)})")
        close = bars.close[spec.symbol]
    close = close.reindex(bars.index).ffill()
    rets = close.pct_change(fill_method=None).fillna(0.0)
    rets.name = spec.symbol or close.name or "Benchmark"
    return rets


def _plugin_versions() -> dict[str, str]:
    """Every plugin (built-in and third-party) loaded for this run, with its distribution's version."""
    try:
        return dict(loaded(get_registry().pm))
    except QfError:
        return {}


def default_report_dir(exp: LoadedExperiment, run_id: str) -> Path:
    return Path(exp.spec.report.dir) / exp.name / run_id


def write_report(exp: LoadedExperiment, outcome: RunOutcome, out: Path, run_id: str, engine: str,
                 kind: str = "backtest", extra_files: Callable[[Path], None] | None = None,
                 tearsheet_note: str | None = None) -> Path:
    """Write every report file into ``out`` atomically and refresh the reports index.

    The tear sheet gets the returns of the evaluation period stated in ``outcome.metrics`` (the same
    returns the metrics were computed from); ``tearsheet_note`` is shown under its title (e.g.
    "interrupted paper session").
    """
    res = outcome.result
    trades = run_trades(outcome)  # also adds the trade summary to outcome.metrics["trades"]
    with writer.atomic_dir(out) as tmp:
        writer.write_json(tmp / "metrics.json", outcome.metrics)
        res.equity.to_frame("equity").to_parquet(tmp / "equity.parquet")
        res.orders.to_csv(tmp / "orders.csv", index=False, date_format="%Y-%m-%d %H:%M:%S")
        trades.to_csv(tmp / "trades.csv", index=False, date_format="%Y-%m-%d %H:%M:%S")
        res.events.to_csv(tmp / "risk_events.csv", index=False)
        outcome.targets.targets.to_parquet(tmp / "weights.parquet")
        cfg = exp.redacted()
        writer.write_yaml(tmp / "config.yaml", cfg)
        writer.write_json(tmp / "manifest.json", {
            "experiment": exp.name,
            "run_id": run_id,
            "kind": kind,
            "engine": engine,
            "created": pd.Timestamp.now("UTC").strftime("%Y-%m-%d %H:%M:%S"),
            "config_file": str(exp.path) if exp.path else None,
            "overrides": list(exp.overrides),  # the --set items, as typed (config.yaml has their result)
            "config_hash": writer.config_hash(cfg),
            "data_hash": writer.data_hash(outcome.bars.frames()),
            "data": {"source": outcome.bars.source, "symbols": outcome.bars.symbols,
                     "start": str(outcome.bars.index[0].date()), "end": str(outcome.bars.index[-1].date()),
                     "bars": len(outcome.bars.index), "fields": list(outcome.bars.fields)},
            "git_commit": writer.git_commit(exp.path.parent if exp.path else None),
            "versions": writer.versions(),
            "plugins": _plugin_versions(),
            # what each component reports about how it ran (e.g. which HRP path: kernel or riskfolio)
            "components": {kind: {"type": comp.name, **dict(getattr(comp, "info", None) or {})}
                           for kind, comp in (("signal", exp.signal), ("sizer", exp.sizer))},
        })
        if exp.spec.report.tearsheet:
            metrics = outcome.metrics
            start = metrics.get("eval_start")
            cash = float(metrics.get("initial_cash", exp.spec.execution.initial_cash))
            rets = eval_returns(res.equity, cash, pd.Timestamp(start) if start is not None else None)
            tearsheet.write_tearsheet(rets, benchmark_returns(exp, outcome.bars), tmp / "tearsheet.html",
                                      exp.spec.report.title or exp.name,
                                      subtitle=f"{kind}, {engine}", warning=tearsheet_note,
                                      metrics=metrics,
                                      trades=TradeData(trades, metrics["trades"], res.orders, outcome.bars.close,
                                                       res.equity, outcome.targets.targets, start))
        if extra_files is not None:
            extra_files(tmp)
    root = Path(exp.spec.report.dir).resolve()
    if out.resolve().is_relative_to(root):
        write_index(root)
    return out


def run_experiment(exp: LoadedExperiment, out: Path | None = None, engine: str | None = None,
                   step: Step = _noop, write: bool = True, registry: Registry | None = None) -> RunOutcome:
    """Run ``exp`` once and (unless ``write=False``) write its report folder, inside :func:`lifecycle`
    (kind ``backtest``; ``registry`` defaults to the process's)."""
    with lifecycle(exp, "backtest", registry) as run:
        run.outcome = outcome = _run_once(exp, out, engine or exp.spec.execution.engine, step, write)
        run.metrics, run.report_dir = outcome.metrics, outcome.report_dir
    return outcome


def _run_once(exp: LoadedExperiment, out: Path | None, engine: str, step: Step, write: bool) -> RunOutcome:
    step("loading data")
    bars = exp.data.load()
    if exp.spec.execution.check_lookahead:
        guard_run(exp, bars, step)  # a look-ahead stops the run here (LookaheadError, exit code 1)
    step("computing signals and targets")
    targets = compute_targets(exp, bars)
    step(f"simulating ({engine})")
    result = run_engine(exp, bars, targets, engine)
    metrics = compute_metrics(result, exp.spec.execution.initial_cash,
                              eval_start=evaluation_start(exp, bars.index, targets.targets))
    outcome = RunOutcome(exp, bars, targets, result, metrics, None)
    if write:
        step("writing report")
        run_id = writer.new_run_id()
        out = Path(out) if out is not None else default_report_dir(exp, run_id)
        outcome.report_dir = write_report(exp, outcome, out, out.name, engine)
    return outcome
