"""``qf paper``: one paper-trading session, simulated or live, restart-safe, ending in a report.

:func:`run_paper` assembles a backtrader live session from an experiment:

- the broker component (``broker:`` in the YAML, or ``--broker``) creates either backtrader's simulated
  ``BackBroker`` (``sim``: the experiment's history is replayed on an accelerated clock) or a broker that
  implements :class:`qf.paper.broker.LiveBroker` (``alpaca``), which reconciles its journal with the
  account before anything else happens;
- the bars come from a :class:`qf.paper.feed.BarSource`: a :class:`~qf.paper.feed.ReplaySource` over the
  loaded data, or the data source's own live source (``live_source()``, the Alpaca data plugin);
- :class:`qf.engines.backtrader.paper.SimPaperStrategy` /
  :class:`~qf.engines.backtrader.paper.LivePaperStrategy` decide with
  the backtest's kernels and commit every bar to the state folder.

Stopping (Ctrl-C, ``max_bars``, the end of a replay) keeps the state; running the same command again
resumes: the simulated broker's cash and positions are restored and the replay continues after the
last processed bar; a live broker is reconciled and a half-sent decision is completed, never repeated.
Every session writes a report like a backtest (``kind: paper``) over all the bars it has processed.

Example::

    exp = load_experiment("experiments/hrp_swing.yaml")
    outcome = run_paper(exp, PaperOptions(broker="sim", max_bars=50, state_dir=Path("state/hrp")))
    outcome.status, outcome.report_dir
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from qf.bars import Bars, valuation_bars
from qf.components import Broker, LiveDataSource, history_of, implements
from qf.config.loader import LoadedExperiment
from qf.engines.backtrader.paper import LiveFeed, LivePaperStrategy, SimBroker, SimPaperStrategy, paper_cerebro
from qf.engines.backtrader.strategy import configure_broker, per_order_slippage
from qf.engines.result import EngineResult
from qf.errors import QfError
from qf.paper.broker import LiveBroker
from qf.paper.drift import attach_drift, with_drift_events, write_drift_report
from qf.paper.feed import BarHub, BarSource, ReplaySource
from qf.paper.state import STATE_FILE, PaperState
from qf.paper.strategy import PaperPlan, SessionView
from qf.registry import get_registry
from qf.report import tearsheet, writer
from qf.report.analysis import TradeData
from qf.report.metrics import compute_metrics, eval_returns, evaluation_start
from qf.report.trades import run_trades
from qf.runner import lifecycle

log = logging.getLogger(__name__)

# Parts of the config that do not change what the session trades: editing them must not orphan a state.
_NEUTRAL_KEYS = ("description", "report", "sweep", "walk_forward", "gate")
# data params that only say how far a replay goes or how often a live feed polls
_NEUTRAL_DATA_PARAMS = ("end", "poll_interval", "bar_delay")
# state meta: the report of a replay that reached its end
_REPORT_META = "final_report"
# set while a session writes its report: the CLI's SIGTERM handler lets it finish instead of interrupting it
REPORTING = threading.Event()


@dataclass
class PaperOptions:
    """How to run the session (the CLI flags).

    ``broker`` overrides the experiment's broker by name (``sim``/``alpaca``); ``speed`` is the replay
    pace of a simulated session in bars per second (0 = as fast as possible); ``max_bars`` stops after
    that many newly processed bars; ``flatten`` closes every position and exits; ``out`` is the report
    folder (default ``reports/<name>/<run-id>``).

    Example: ``PaperOptions(broker="sim", speed=10, max_bars=100, state_dir=Path("state/hrp"))``.
    """

    broker: str | None = None
    speed: float = 0.0
    state_dir: Path | None = None
    flatten: bool = False
    max_bars: int | None = None
    out: Path | None = None
    qcheck: float = 0.2
    order_timeout: float = 30.0
    write_report: bool = True


@dataclass
class PaperOutcome:
    """What a session did. ``status``: ``done`` (a replay reached its end), ``finished`` (it had already
    ended in an earlier run: nothing ran, ``report_dir`` is that run's report), ``stopped`` (``max_bars``),
    ``interrupted`` (Ctrl-C or SIGTERM) or ``flattened``. ``bars_total`` counts the session's bars across restarts.

    Example: ``outcome.status, outcome.metrics["sharpe"], outcome.report_dir``.
    """

    status: str
    broker: str
    state_dir: Path
    session_id: str
    bars_done: int
    bars_total: int
    equity: pd.Series
    orders: pd.DataFrame
    events: pd.DataFrame
    halted: bool
    metrics: dict[str, Any] | None = None
    report_dir: Path | None = None


def default_state_dir(exp: LoadedExperiment, broker: str) -> Path:
    """``.qf/paper/<experiment>-<broker>`` under the working directory (next to ``reports/``)."""
    return Path(".qf") / "paper" / f"{exp.name}-{broker}"


def session_config_hash(exp: LoadedExperiment) -> str:
    """Hash of the redacted config without the parts that do not change what is traded.

    Reports, descriptions, the backtest engine, the broker's params (its type is checked on its own), a
    replay's ``end`` and a live feed's polling may change between runs of one session; anything else
    (universe, signal, sizer, rules, costs, schedule) may not.

    Example::

        session_config_hash(load_experiment("experiments/hrp_swing.yaml", ["report.dir=/tmp/r"]))
    """
    cfg = {k: v for k, v in exp.redacted().items() if k not in _NEUTRAL_KEYS}
    data = dict(cfg.get("data") or {})
    data["params"] = {k: v for k, v in (data.get("params") or {}).items() if k not in _NEUTRAL_DATA_PARAMS}
    cfg["data"] = data
    execution = dict(cfg.get("execution") or {})
    execution.pop("engine", None)  # a paper session is always the backtrader one
    execution.pop("executor", None)
    cfg["execution"] = execution
    cfg.pop("broker", None)  # checked on its own: --broker may override it
    return writer.config_hash(cfg)


def resolve_broker(exp: LoadedExperiment, name: str | None) -> Broker:
    """The experiment's broker component, or the installed broker ``name`` with its default params."""
    if name is None or name == exp.spec.broker.type:
        return exp.broker

    return get_registry().get("broker", name).cls({})


def warmup_bars(exp: LoadedExperiment) -> int:
    """Bars the pipeline needs before its first meaningful decision (signal and sizer warm-up)."""
    return max(int(exp.signal.warmup), int(exp.sizer.warmup), 0)


def history_bars(exp: LoadedExperiment) -> int | None:
    """Trailing bars (the decision bar included) each decision is computed from: the longer of the signal's
    and the sizer's declared ``history`` (:func:`qf.components.history_of`, ``warmup + 1`` by default), or
    None when either needs the whole available history (a path-dependent component).

    A live session loads that many bars before its first live bar and computes each decision on the
    trailing window of that length (for None: everything from ``data.params.start``, or as much as the
    data source gives, with a warning if it gives less), so its decision equals the backtest's whenever
    the components declare their history truthfully (``qf validate --lookahead`` checks it, to 1e-9). A
    replay (``--broker sim``) has the experiment's whole data loaded and decides on every bar up to t,
    exactly as the backtest does, so its orders are bit-identical to the backtest's (a trailing window
    would agree only to rounding, ~1e-13, which can tip a share rounding).

    Example::

        history_bars(load_experiment("experiments/hrp_swing.yaml"))   # None: swing is path-dependent
    """
    try:
        hs = [history_of(exp.signal), history_of(exp.sizer)]
    except ValueError as exc:
        raise QfError(str(exc)) from None
    return None if None in hs else max(h for h in hs if h is not None)


def _live_source(exp: LoadedExperiment) -> BarSource:
    """The data source's live feed, asked for the history the pipeline needs (see :func:`history_bars`)."""
    h = history_bars(exp)
    if h is None:
        log.info("signal %r / sizer %r: path-dependent (history None): loading the whole available history",
                 exp.signal.name, exp.sizer.name)
    return exp.data.live_source(min_history=None if h is None else max(h, warmup_bars(exp) + 1))


def _create(component: Broker, exp: LoadedExperiment, state_dir: Path) -> Any:
    return component.create(exp.spec.execution, state_dir=state_dir)


def run_paper(exp: LoadedExperiment, options: PaperOptions | None = None,
              on_update: Callable[[SessionView], None] | None = None, registry: Any = None) -> PaperOutcome:
    """Run (or resume) the paper session of ``exp`` until its end, ``max_bars``, ``flatten`` or Ctrl-C.

    Raises :class:`QfError` for user errors (bad broker, missing keys, a state folder of another
    session). Any other exception is a crash: the state keeps the last committed bar and the broker's
    journal every order, so running again resumes.
    """
    opts = options or PaperOptions()
    if opts.max_bars is not None and opts.max_bars < 1:
        raise QfError("--max-bars must be at least 1")
    if opts.speed < 0 or math.isnan(opts.speed):
        raise QfError("--speed must be a number of bars per second >= 0 (0 = as fast as possible)")
    component = resolve_broker(exp, opts.broker)
    name = component.name
    state_dir = Path(opts.state_dir) if opts.state_dir is not None else default_state_dir(exp, name)
    with lifecycle(exp, "paper", registry) as run:  # the qf_before_run / qf_after_run hooks (kind "paper")
        broker = _create(component, exp, state_dir)
        if isinstance(broker, SimBroker):
            outcome = _run_sim(exp, opts, broker, name, state_dir, on_update)
        elif implements(broker, LiveBroker):
            outcome = _run_live(exp, opts, broker, name, state_dir, on_update)
        else:
            raise QfError(f"broker {name!r} created a {type(broker).__name__}, which is neither backtrader's "
                          "BackBroker nor a qf.paper.broker.LiveBroker; it cannot run a paper session")
        run.outcome, run.metrics, run.report_dir = outcome, outcome.metrics or {}, outcome.report_dir
        run.ran = outcome.status != "finished"  # a replay that had already ended: nothing ran, no after-run hook
    return outcome


def _risk(exp: LoadedExperiment) -> Any:
    from qf.pipeline import risk_config  # lazy: numba

    return risk_config(exp)


def _run_cerebro(cerebro: Any, hub: BarHub, source: BarSource) -> tuple[str, Any]:
    """Run until the source ends, ``runstop()`` (max bars) or Ctrl-C; returns (status, strategy or None)."""
    try:
        strategies = cerebro.run()
        status = "done" if hub.done else "stopped"
        strategy = strategies[0] if strategies else None
    except KeyboardInterrupt:
        # the bar in progress was not committed; its orders are in the broker's journal (live)
        status = "interrupted"
        running = getattr(cerebro, "runningstrats", None) or []
        strategy = running[0] if running else None
    finally:
        source.close()
    return status, strategy


def _run_sim(exp: LoadedExperiment, opts: PaperOptions, broker: SimBroker, name: str, state_dir: Path,
             on_update: Callable[[SessionView], None] | None) -> PaperOutcome:
    execution = exp.spec.execution
    bars = exp.data.load()
    state = PaperState(state_dir / STATE_FILE, durable=False)
    try:
        state.bind(experiment=exp.name, config_hash=session_config_hash(exp), broker=name, symbols=bars.symbols)
        if state.get_meta("initial_equity") is None:
            state.set_meta("initial_equity", repr(float(execution.initial_cash)))
        last = state.last_bar()
        if last is None:
            start = min(warmup_bars(exp), len(bars.index))
        else:
            if last.time not in bars.index:
                raise QfError(f"{state_dir}: the last processed bar {last.time:%Y-%m-%d} is not in the data any "
                              "more; the data changed under the session (remove the state folder to start over)")
            start = int(bars.index.get_loc(last.time)) + 1
        if opts.flatten and start >= len(bars.index):
            raise QfError("--flatten: the replay has no bar left to close the positions at")
        if last is not None and start >= len(bars.index):
            finished = _finished_replay(exp, opts, state, name, state_dir, bars)
            if finished is not None:
                return finished
        if abs(broker.getcash() - execution.initial_cash) > 1e-9 * execution.initial_cash:
            raise QfError(f"the broker starts with {broker.getcash():,.2f} in cash but execution.initial_cash is "
                          f"{execution.initial_cash:,.2f}")
        configure_broker(broker, execution)
        per_order_slippage(broker)  # each order fills at the slippage its cost model gave it, as in the backtest
        # the feeds carry the valuation prices (a gap or a delisted symbol at its last close), as the
        # backtest's broker sees them; the strategy takes the bars and their calendar from ``replay``
        source = ReplaySource(valuation_bars(bars), start, opts.speed)
        history = bars.iloc(slice(0, start))
        source, on_update = attach_drift(exp, state_dir, history, source, on_update, replay=bars)  # paper.drift
        hub = BarHub(source, bars.symbols, bars.fields)
        cerebro = paper_cerebro(broker, sim=True)
        for k, s in enumerate(bars.symbols):
            cerebro.adddata(LiveFeed(dataname=s, hub=hub, column=k, qcheck=opts.qcheck), name=s)
        plan = PaperPlan(exp, _risk(exp), history, source, hub, state, anchor=bars.index[0], restore=last,
                         max_bars=1 if opts.flatten else opts.max_bars, flatten=opts.flatten,
                         order_timeout=opts.order_timeout, on_update=on_update, replay=bars)
        before = state.bar_count()
        cerebro.addstrategy(SimPaperStrategy, paper=plan)
        status, _ = _run_cerebro(cerebro, hub, source)
        if opts.flatten and status != "interrupted":
            status = "flattened"
        # the backtest's order: by fill bar, sells before buys, then symbol
        orders = state.fills().sort_values(["time", "side", "symbol"], kind="mergesort", ignore_index=True)
        origin = bars.index[start - 1] if start > 0 else bars.index[0]
        return _finish(exp, opts, state, name, state_dir, status, state.bar_count() - before, bars, orders,
                       origin)
    finally:
        state.close()


def _finished_replay(exp: LoadedExperiment, opts: PaperOptions, state: PaperState, name: str, state_dir: Path,
                     bars: Bars) -> PaperOutcome | None:
    """The outcome of a replay that already reached its end and wrote its report (nothing to run again).

    None when its report is missing (a crash while writing it) or ``--out`` asks for another folder: the
    caller then writes the report once more.
    """
    stored = state.get_meta(_REPORT_META)
    if stored is None or not Path(stored).is_dir():
        return None
    if opts.out is not None and Path(opts.out).resolve() != Path(stored).resolve():
        return None
    equity = state.equity()
    log.info("the replay of %s already ended at %s; its report is %s", exp.name, bars.index[-1].date(), stored)
    return PaperOutcome("finished", name, state_dir, state.get_meta("run_id") or "", 0, len(equity), equity,
                        state.fills(), state.events(), _halted(exp, state), report_dir=Path(stored))


def _run_live(exp: LoadedExperiment, opts: PaperOptions, broker: Any, name: str, state_dir: Path,
              on_update: Callable[[SessionView], None] | None) -> PaperOutcome:
    if exp.spec.execution.fill != "next_open":
        raise QfError(f"execution.fill: a live session sends market orders after the close, which fill at the next "
                      f"open; set fill: next_open (got {exp.spec.execution.fill!r})")
    if not implements(exp.data, LiveDataSource):
        raise QfError(f"broker {name!r} trades live bars, but data source {exp.data.name!r} has no live feed; "
                      f"use a live data source (e.g. data: {{type: alpaca}}) or --broker sim")
    symbols = [str(s) for s in (getattr(exp.data.params, "symbols", None) or [])]
    if not symbols:
        raise QfError(f"data source {exp.data.name!r} must list its symbols for a live session")
    state = PaperState(state_dir / STATE_FILE, durable=True)
    source: BarSource | None = None
    clean = False  # False while an exception (a crash) may be propagating
    try:
        # refuse a state folder of another session before touching the account
        state.bind(experiment=exp.name, config_hash=session_config_hash(exp), broker=name, symbols=symbols)
        broker.connect()  # credentials, REST pre-check, restart reconciliation: before anything else
        if opts.flatten:
            outcome = _flatten_live(exp, opts, broker, name, state_dir, state)
            clean = True
            return outcome
        source = _live_source(exp)
        history = source.history()
        if history.symbols != symbols:
            raise QfError(f"the live source returned symbols {history.symbols}, expected {symbols}")
        if state.get_meta("initial_equity") is None:
            broker.sync()
            state.set_meta("initial_equity", repr(float(broker.getvalue())))
        anchor_text = state.get_meta("anchor")
        source, on_update = attach_drift(exp, state_dir, history, source, on_update)  # paper.drift
        hub = BarHub(source, history.symbols, history.fields)
        if anchor_text is None:
            # the first live bar (the latest completed one) starts the "every: n" count
            hub.pump(0.0)
            if not hub.times:
                raise QfError("the live data source delivered no completed bar to start from")
            state.set_meta("anchor", hub.times[0].isoformat())
            anchor_text = hub.times[0].isoformat()
        cerebro = paper_cerebro(broker, sim=False)
        for k, s in enumerate(history.symbols):
            cerebro.adddata(LiveFeed(dataname=s, hub=hub, column=k, qcheck=opts.qcheck), name=s)
        plan = PaperPlan(exp, _risk(exp), history, source, hub, state, anchor=pd.Timestamp(anchor_text),
                         restore=state.last_bar(), max_bars=opts.max_bars, order_timeout=opts.order_timeout,
                         on_update=on_update, window=history_bars(exp))
        before = state.bar_count()
        cerebro.addstrategy(LivePaperStrategy, paper=plan)
        status, strategy = _run_cerebro(cerebro, hub, source)
        bars = strategy.arrays.bars() if strategy is not None else history
        broker.disconnect()  # a last reconciliation: the report sees every fill the broker reported
        orders = broker.fills_frame()
        clean = True
        return _finish(exp, opts, state, name, state_dir, status, state.bar_count() - before, bars, orders,
                       pd.Timestamp(anchor_text))
    finally:
        if source is not None:
            source.close()
        broker.disconnect(reconcile=clean)
        broker.close()
        state.close()


def _flatten_live(exp: LoadedExperiment, opts: PaperOptions, broker: Any, name: str, state_dir: Path,
                  state: PaperState) -> PaperOutcome:
    closing = broker.flatten(opts.order_timeout)
    log.warning("flatten: canceled every open order and sent %d closing order(s)", closing)
    # a half-sent decision must not be completed by the next run: the operator closed everything
    state.expire_planned(before=pd.Timestamp.max)
    broker.disconnect()
    bars = None
    if state.bar_count() > 0:
        try:
            bars = _live_source(exp).history()
        except QfError as exc:
            log.warning("no report after the flatten: the data could not be loaded (%s)", exc)
    orders = broker.fills_frame()
    return _finish(exp, opts, state, name, state_dir, "flattened", 0, bars, orders)


def _halted(exp: LoadedExperiment, state: PaperState) -> bool:
    """Whether a stateful risk rule was halted at the last committed bar (as the rules describe their state)."""
    last = state.last_bar()
    kernel = (last.strategy.get("kernel") if last is not None else None) or []
    if last is None or not kernel:
        return False
    stack, n = _risk(exp), len(last.positions)
    return bool(stack.halted(stack.check_state(kernel, n), n))


def _finish(exp: LoadedExperiment, opts: PaperOptions, state: PaperState, name: str, state_dir: Path, status: str,
            done: int, bars: Bars | None, orders: pd.DataFrame, origin: pd.Timestamp | None = None) -> PaperOutcome:
    """The session's outcome, with its report (any number of bars, zero included, when ``origin`` is known)."""
    equity = state.equity()
    events = with_drift_events(state.events(), state_dir)  # risk events and paper.drift's drift/retrain events
    outcome = PaperOutcome(status, name, state_dir, state.get_meta("run_id") or "", done, len(equity), equity,
                           orders, events, _halted(exp, state))
    if opts.write_report and bars is not None and (len(equity) > 0 or origin is not None):
        REPORTING.set()  # a SIGTERM now waits for the report (see qf.cli.paper): stopping is what it asks for
        try:
            outcome.metrics, outcome.report_dir = write_paper_report(exp, state, name, status, bars, equity,
                                                                     orders, events, opts.out, origin)
        finally:
            REPORTING.clear()
        if status == "done":
            # a later run of the same command says the replay is over instead of reporting it again
            state.set_meta(_REPORT_META, str(outcome.report_dir.resolve()))
    return outcome


# what the report says about a session that did not reach the end of its bars
_STATUS_NOTES = {
    "interrupted": "interrupted paper session (Ctrl-C or SIGTERM): the figures stop at its last processed bar",
    "stopped": "paper session stopped after --max-bars: the figures stop at its last processed bar",
    "flattened": "paper session flattened by the operator (--flatten)",
}


def session_note(status: str, last_bar: pd.Timestamp | None = None) -> str | None:
    """The line a report of a session with ``status`` shows under its title (None for a finished one).

    Example::

        session_note("interrupted", pd.Timestamp("2024-01-05"))
        # 'interrupted paper session (Ctrl-C or SIGTERM): the figures stop at its last processed bar, 2024-01-05'
    """
    note = _STATUS_NOTES.get(status)
    if note is None or last_bar is None:
        return note
    return f"{note}, {last_bar.date()}"


def write_paper_report(exp: LoadedExperiment, state: PaperState, broker: str, status: str, bars: Bars,
                       equity: pd.Series, orders: pd.DataFrame, events: pd.DataFrame,
                       out: Path | None = None, origin: pd.Timestamp | None = None) -> tuple[dict[str, Any], Path]:
    """Write ``reports/<name>/<run-id>/`` for the whole session so far, like a backtest's (``kind: paper``).

    The metrics and the tear sheet cover the same evaluation period a backtest's do
    (:func:`qf.report.metrics.evaluation_start` on the session's decisions: from the fill of its first
    decision after the warm-up), so a replay whose equity equals the backtest's reports the same figures.
    A session that did not run to its end (interrupted, stopped, flattened) says so under the tear
    sheet's title, in ``metrics.json`` (``session_status``) and in ``manifest.json`` (``paper_status``).

    Any equity series gets a report: an empty one (stopped before its first bar) is reported as the initial
    equity at ``origin``; a one-bar or flat one gets every file (a simpler tear sheet when quantstats
    cannot draw it).

    Example::

        metrics, folder = write_paper_report(exp, state, "sim", "done", bars, state.equity(), state.fills(),
                                             state.events())
    """
    from qf.pipeline import Targets  # lazy: numba
    from qf.runner import RunOutcome, benchmark_returns, default_report_dir, write_report  # lazy: numba

    initial = float(state.get_meta("initial_equity") or (equity.iloc[0] if len(equity) else "nan"))
    processed = int(len(equity))
    targets = state.targets(bars.symbols)
    eval_start = None
    if processed == 0:
        # stopped before its first bar: the account has not moved, so the report is the starting equity at
        # the session's origin (its last history bar); paper.json says no bar was processed
        if origin is None or math.isnan(initial):
            raise QfError("the session processed no bar and has no starting point to report")
        equity = pd.Series([initial], index=pd.DatetimeIndex([origin]), dtype=float)
    elif len(bars.index):
        # nothing can fill before the session's first bar: the backtest's period rule from there on
        first = int(bars.index.searchsorted(equity.index[0], side="left"))
        eval_start = evaluation_start(exp, bars.index, targets, trade_from=first)
    result = EngineResult("backtrader", equity, orders, events, {"mode": "paper", "broker": broker})
    metrics = compute_metrics(result, initial, eval_start=eval_start)
    note = session_note(status, equity.index[-1] if processed else None)
    metrics["session_status"] = status
    window = bars.slice(equity.index[0], equity.index[-1])
    if len(window.index) == 0:
        window = bars.iloc(slice(-1, None))
    empty = pd.DataFrame(columns=bars.symbols, dtype=float)
    spec = exp.spec
    if spec.report.tearsheet:
        try:
            benchmark_returns(exp, window)
        except QfError as exc:
            log.warning("tear sheet benchmark unavailable (%s); using the equal-weight universe", exc)
            spec = spec.model_copy(update={"benchmark": None})
    tearsheet = spec.report.tearsheet
    # write_report renders the tear sheet inside its atomic folder, where any failure would take metrics,
    # equity and orders down with it; the session's tear sheet is rendered in extra() instead, from the
    # same evaluation-period returns and with the same page arguments, where a failure costs only itself
    spec = spec.model_copy(update={"report": spec.report.model_copy(update={"tearsheet": False})})
    report_exp = dataclasses.replace(exp, spec=spec, benchmark_source=None if spec.benchmark is None
                                     else exp.benchmark_source)
    run_id = writer.new_run_id()
    folder = Path(out) if out is not None else default_report_dir(exp, run_id)
    outcome = RunOutcome(report_exp, window, Targets(empty, empty, targets, _risk(exp)), result, metrics, None)

    def extra(tmp: Path) -> None:
        error = _write_tearsheet(report_exp, outcome, initial, note, tmp / "tearsheet.html") if tearsheet else None
        writer.write_json(tmp / "paper.json", {
            "session": state.get_meta("run_id"), "broker": broker, "status": status,
            "state_dir": str(state.path.parent), "bars": processed,
            "first_bar": str(equity.index[0].date()), "last_bar": str(equity.index[-1].date()),
            "initial_equity": initial, "fills": int(len(orders)), **({"note": note} if note else {}),
            **({"tearsheet_error": error} if error else {}),
        })
        write_drift_report(state.path.parent, tmp, equity.index[-1], exp.spec.paper.drift if exp.spec.paper else None)
        manifest = json.loads((tmp / "manifest.json").read_text())
        manifest["paper_status"] = status
        writer.write_json(tmp / "manifest.json", manifest)

    write_report(report_exp, outcome, folder, folder.name, "backtrader", kind="paper", extra_files=extra)
    return metrics, folder


def _write_tearsheet(exp: LoadedExperiment, outcome: Any, initial: float, note: str | None,
                     path: Path) -> str | None:
    """The tear sheet :func:`qf.runner.write_report` would draw (the metrics' evaluation period, the same
    title and subtitle, ``note`` as its warning); on failure log a warning and return why."""
    from qf.runner import benchmark_returns  # lazy: numba

    metrics = outcome.metrics
    start = metrics.get("eval_start") if metrics.get("eval_bars") else None
    try:
        first = pd.Timestamp(start) if start is not None else None
        rets = eval_returns(outcome.result.equity, initial, first)
        res = outcome.result
        trades = TradeData(run_trades(outcome), metrics["trades"], res.orders, outcome.bars.close, res.equity,
                           outcome.targets.targets, first)
        tearsheet.write_tearsheet(rets, benchmark_returns(exp, outcome.bars), path, exp.spec.report.title or exp.name,
                                  subtitle="paper, backtrader", warning=note, metrics=metrics, trades=trades)
    except Exception as exc:  # the session's numbers are written whatever the page does
        path.unlink(missing_ok=True)
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        log.warning("no tear sheet for this paper report (%s); metrics, equity and orders are written", why)
        return why
    return None
