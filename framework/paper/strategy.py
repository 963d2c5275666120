"""qf's backtrader strategy for paper sessions: the backtest's decisions, one completed bar at a time.

:class:`qf.engines.backtrader.strategy.QfStrategy` runs on arrays that hold the whole history up front. A paper session
does not have the future, so :class:`PaperStrategy` keeps the same per-bar arrays in
:class:`SessionArrays`, which grow as bars arrive, and recomputes the targets with
:func:`qf.pipeline.targets_at` on the trailing window at each rebalance, exactly as ``QfStrategy`` does
in incremental mode. Every order comes out of the same kernel, :func:`qf.engines.kernels.step.decide_costed_nb` (the
stateful risk rules on the broker's real cash and positions, then the order planner), costed by the
experiment's cost model (:mod:`qf.engines.costs`): a replay charges the backtest's own arrays, a live
session computes each fill's row from the bars it has.

Two timings, one per kind of broker:

- :class:`SimPaperStrategy` (backtrader's ``BackBroker``, a replayed history): cerebro runs with
  ``cheat_on_open`` and the strategy acts at the same points of the bar as ``QfStrategy`` does, so a
  replay places the same orders as ``run_backtrader(bars, experiment=exp)``.
- :class:`LivePaperStrategy` (a :class:`qf.paper.broker.LiveBroker` such as Alpaca): a bar arrives only
  once it is complete, so the decision is made at its close and sized at that close (the next open is
  not known yet); market orders then fill at the next open. The journal makes the decision
  restart-safe: it is written, with its planned orders, before the first order is sent, and a
  restarted session completes it instead of deciding again.

Each processed bar is committed to :class:`qf.paper.state.PaperState` in one transaction.

Example::

    cerebro.addstrategy(SimPaperStrategy, paper=PaperPlan(exp, risk, history, source, hub, state, anchor))
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import backtrader as bt
import numpy as np
import pandas as pd

from qf.bars import Bars
from qf.config.loader import LoadedExperiment
from qf.config.schema import ExecutionSpec
from qf.engines.backtrader.strategy import QfStrategy
from qf.engines.costs import CostArrays, cost_arrays
from qf.engines.inputs import fill_lag
from qf.engines.kernels.orders import order_slippage_nb, update_avg_price_nb
from qf.engines.kernels.risk import S_HALT_UNTIL, S_HALTED, RiskConfig, new_state, trailing_vol
from qf.engines.kernels.step import EVENT_FLATTEN, EVENT_STOP, decide_costed_nb, value_nb
from qf.errors import QfError
from qf.paper.broker import BrokerView, FillView, LiveBroker, PositionView
from qf.paper.feed import BarHub, BarSource
from qf.paper.state import (
    EXPIRED,
    PLANNED,
    REJECTED,
    SENT,
    BarRecord,
    DecisionRecord,
    FillRow,
    PaperState,
    PlannedOrder,
)

log = logging.getLogger(__name__)

_SYMBOL_REF = re.compile(r"[^A-Za-z0-9]")


def order_ref(decision: pd.Timestamp, symbol: str) -> str:
    """The deterministic part of an order's id: decision date and symbol, e.g. ``20240105_AAPL``.

    A session that decides again on the same bar after a restart gets the same reference, which is
    how it recognises an order it already sent.

    Example::

        order_ref(pd.Timestamp("2024-01-05"), "BRK.B")   # '20240105_BRK_B'
    """
    ref = f"{decision:%Y%m%d}_{_SYMBOL_REF.sub('_', symbol)}"
    if len(ref) > 20:
        raise QfError(f"symbol {symbol!r} is too long for a client order id (at most 11 characters)")
    return ref


class SessionArrays:
    """The per-bar arrays of :class:`qf.engines.inputs.SimInputs`, growing one bar at a time.

    Rows are bars (history first). ``data`` holds the bars the pipeline sees (:meth:`bars`); ``close`` is
    the valuation close (carried forward through gaps and after a delisting); ``exec_price`` the open
    (fill ``next_open``) or the close, NaN on a bar the symbol did not trade, so no order fills there (it
    waits for the symbol's next real bar, see :func:`qf.engines.kernels.step.decide_nb`); ``targets[i]`` is the
    rebalance row executed at fill bar ``i`` (NaN = none); ``vol`` the trailing volatility the
    volatility stop uses.

    The trading calendar (listing, gaps, delisting) is the engines' own (:func:`qf.engines.inputs.build_inputs`):

    - a replay (``replay=`` the whole replayed bars) takes every row from the :class:`SimInputs` of those
      bars, so it knows a symbol's last bar like the backtest does and delists it there
      (``execution.on_delist``);
    - a live session cannot know that a symbol will never trade again: a listed symbol missing from a bar
      is a gap (filled for the pipeline as :func:`qf.bars.validate` fills one, never traded), never a
      delisting.

    Example::

        arrays = SessionArrays(history, ExecutionSpec(fill="next_close"), RiskConfig())
        i = arrays.append(pd.Timestamp("2024-01-08"), {"close": np.array([101.0, 50.5])})
        arrays.bars().close.index[-1]   # Timestamp('2024-01-08')
    """

    def __init__(self, history: Bars, execution: ExecutionSpec, risk: RiskConfig, extra: int = 64,
                 replay: Bars | None = None) -> None:
        from qf.engines.inputs import build_inputs

        self.symbols = history.symbols
        self.fields = history.fields
        self.source = history.source
        self.meta = dict(history.meta)
        self.lag = fill_lag(execution)
        self.use_open = execution.fill == "next_open"
        if self.use_open and "open" not in self.fields:
            raise QfError(f"execution.fill: 'next_open' needs open prices, but {history.source} has only "
                          f"{', '.join(self.fields)}; use fill: next_close")
        self.risk = risk
        self.replay = replay
        n0, width = len(history.index), len(self.symbols)
        cap = (len(replay.index) if replay is not None else n0 + extra) + 2
        self.index: list[pd.Timestamp] = list(history.index)
        self.rows: dict[pd.Timestamp, int] = {t: i for i, t in enumerate(self.index)}
        no_targets = pd.DataFrame(index=pd.DatetimeIndex([]), columns=self.symbols, dtype=float)
        # the engines' calendar: of the whole replay, or of the history a live session starts from
        self.calendar = build_inputs(replay if replay is not None else history, no_targets, risk, execution)
        if replay is None:
            self.calendar.delisted_at[:] = -1  # history ending early for a symbol is a gap so far, not a delisting
            # a symbol without a price yet is listed at its first live bar with one (set by append)
            self.calendar.first_bar[self.calendar.first_bar >= n0] = np.iinfo(np.int64).max
        elif list(replay.index[:n0]) != self.index:
            raise QfError("the replay's history is not the start of the replayed bars")
        self._gaps_of = replay.gaps.to_numpy(dtype=bool) if replay is not None and replay.gaps is not None else None
        self._replay_data = {f: getattr(replay, f).to_numpy(dtype=float) for f in self.fields} if replay is not None \
            else None
        self.data = {f: np.full((cap, width), np.nan) for f in self.fields}
        for f in self.fields:
            self.data[f][:n0] = getattr(history, f).to_numpy(dtype=float)
        self.gaps = np.zeros((cap, width), dtype=bool)
        if history.gaps is not None:
            self.gaps[:n0] = history.gaps.to_numpy(dtype=bool)
        self.value_close = np.full((cap, width), np.nan)
        self.exec_price = np.full((cap, width), np.nan)
        self.vol = np.full((cap, width), np.nan)
        self.value_close[:n0] = self.calendar.close[:n0]
        self.exec_price[:n0] = self.calendar.exec_price[:n0]
        self.vol[:n0] = self.calendar.vol[:n0]
        self.targets = np.full((cap, width), np.nan)
        self.events = np.zeros((cap, width), dtype=np.int8)
        self.capped = np.zeros((cap, width), dtype=np.bool_)  # orders the cost model's participation cap clipped
        self.n = n0

    @property
    def close(self) -> np.ndarray:
        """The valuation close (a symbol's last real close through its gaps and after its delisting)."""
        return self.value_close

    @property
    def first_bar(self) -> np.ndarray:
        """Each symbol's first row with a price (a row past the end when it has none yet)."""
        return self.calendar.first_bar

    @property
    def delisted_at(self) -> np.ndarray:
        """Each symbol's delisting row (its last bar, a replay only), else -1."""
        return self.calendar.delisted_at

    def listed(self, i: int) -> np.ndarray:
        """Bool per symbol: listed at row ``i`` (the broker is never asked about a symbol before it)."""
        return i >= self.first_bar

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` rows (doubling, so appends stay amortised O(1))."""
        cap = self.exec_price.shape[0]
        if rows <= cap:
            return
        new = max(rows, 2 * cap)

        def grow(a: np.ndarray, fill: float | int | bool) -> np.ndarray:
            out = np.full((new, a.shape[1]), fill, dtype=a.dtype)
            out[:cap] = a
            return out

        self.data = {f: grow(a, np.nan) for f, a in self.data.items()}
        self.gaps = grow(self.gaps, False)
        self.value_close = grow(self.value_close, np.nan)
        self.exec_price = grow(self.exec_price, np.nan)
        self.targets = grow(self.targets, np.nan)
        self.vol = grow(self.vol, np.nan)
        self.events = grow(self.events, 0)
        self.capped = grow(self.capped, False)

    def append(self, t: pd.Timestamp, values: dict[str, np.ndarray]) -> int:
        """Add the bar at ``t`` (values per field, NaN where a symbol has none) and return its row."""
        if self.index and t <= self.index[-1]:
            raise QfError(f"bar {t} does not come after {self.index[-1]}")
        i = self.n
        self.reserve(i + 2)
        if self._replay_data is not None:
            self._append_replay(i, t)
        else:
            self._append_live(i, t, values)
        self.index.append(t)
        self.rows[t] = i
        self.n = i + 1
        return i

    def _append_replay(self, i: int, t: pd.Timestamp) -> None:
        # the feed carries valuation prices (what the simulated broker marks positions at); the row the
        # pipeline sees and the calendar are the replayed bars', exactly as the backtest has them
        assert self.replay is not None and self._replay_data is not None
        if i >= len(self.replay.index) or self.replay.index[i] != t:
            raise QfError(f"bar {t} is not row {i} of the replayed bars")
        for f, a in self._replay_data.items():
            self.data[f][i] = a[i]
        if self._gaps_of is not None:
            self.gaps[i] = self._gaps_of[i]
        cal = self.calendar
        self.value_close[i] = cal.close[i]
        self.exec_price[i] = cal.exec_price[i]
        self.vol[i] = cal.vol[i]
        self.adjust(i)  # a delisting closes the position on its last bar even without a rebalance there

    def _append_live(self, i: int, t: pd.Timestamp, values: dict[str, np.ndarray]) -> None:
        close = np.asarray(values.get("close"), dtype=float).copy()
        priced = ~np.isnan(close)
        new = priced & (self.first_bar > i)
        self.first_bar[new] = i  # listed from this bar on
        gap = (self.first_bar < i) & ~priced
        if gap.any() and i > 0:
            # as validate() fills a gap: a flat bar at the last close with no volume, for the pipeline only;
            # nothing trades on it
            log.warning("no bar for %s at %s: no order fills on it, the position is valued at its last close",
                        ", ".join(s for s, g in zip(self.symbols, gap, strict=True) if g), t)
        for f in self.fields:
            row = np.asarray(values.get(f, np.full(len(close), np.nan)), dtype=float).copy()
            if gap.any() and i > 0:
                row[gap] = 0.0 if f == "volume" else self.data["close"][i - 1][gap]
            self.data[f][i] = row
        self.gaps[i] = gap
        self.value_close[i] = np.where(priced, close, self.value_close[i - 1] if i > 0 else np.nan)
        fill = self.data["open" if self.use_open else "close"][i]
        self.exec_price[i] = np.where(priced, fill, np.nan)
        if self.risk.needs_vol:
            self.vol[i] = trailing_vol(self.value_close[: i + 1], self.risk.stop_vol_window)[-1]

    def adjust(self, i: int) -> None:
        """Apply the engines' trading calendar to the target row of fill bar ``i`` (see
        :meth:`qf.engines.inputs.SimInputs.adjust`): 0 before listing, ignored after a delisting."""
        self.calendar.adjust(self.targets[i:i + 1], np.array([i]))

    def bars(self, n: int | None = None, first: int = 0) -> Bars:
        """Rows ``first`` to ``n`` (default: all) as :class:`Bars`, the window the pipeline sees."""
        n = self.n if n is None else n
        idx = pd.DatetimeIndex(self.index[first:n])
        frames = {f: pd.DataFrame(self.data[f][first:n].copy(), index=idx, columns=self.symbols)
                  for f in self.fields}
        gaps = self.gaps[first:n]
        mask = pd.DataFrame(gaps.copy(), index=idx, columns=self.symbols) if gaps.any() else None
        return Bars(**frames, source=self.source, meta=dict(self.meta), gaps=mask)

    def fill_costs(self, d: int, execution: ExecutionSpec) -> CostArrays:
        """The cost model's row for the fill after decision row ``d``, from the bars up to ``d`` only.

        A live session decides at the close of ``d`` without the fill bar, so the model
        (:func:`qf.engines.costs.cost_arrays`, the engines' own) runs on the bars so far plus a provisional
        fill bar, a copy of bar ``d``. A model that reads only bars before the fill (``spread``'s high-low
        estimate, ``almgren_chriss``'s volatility and volume) gives exactly the backtest's row;
        ``volume_share``, which reads the fill bar's own volume, gets the decision bar's as its estimate.
        Returns a one-row :class:`CostArrays`.

        Example::

            c = arrays.fill_costs(d, exp.spec.execution)
            c.max_qty[0]   # the participation cap of each symbol's order after the close of d
        """
        window = self.bars(d + 1)
        idx = window.index
        step = idx[-1] - idx[-2] if len(idx) > 1 else pd.Timedelta(days=1)
        nxt = pd.DatetimeIndex([idx[-1] + step])

        def extend(frame: pd.DataFrame) -> pd.DataFrame:
            return pd.concat([frame, frame.iloc[-1:].set_axis(nxt)])

        frames = {f: extend(getattr(window, f)) for f in self.fields}
        gaps = extend(window.gaps) if window.gaps is not None else None
        c = cost_arrays(Bars(**frames, source=self.source, meta=dict(self.meta), gaps=gaps), execution)
        last = slice(len(idx), len(idx) + 1)
        return CostArrays(c.slippage[last], c.impact[last], c.exponent, c.max_qty[last])


@dataclass
class SessionView:
    """What the live terminal view shows after each bar or broker event.

    Example: ``render(SessionView("hrp_swing", "sim", pd.Timestamp("2024-01-05"), 1, 1, BrokerView("sim", 1e5, 1e5),
    peak=1e5, drawdown=0.0, halted=False))``.
    """

    experiment: str
    mode: str
    time: pd.Timestamp | None
    bars_done: int
    bars_total: int
    broker: BrokerView
    peak: float
    drawdown: float
    halted: bool
    halt_detail: str = ""
    stops: list[str] = field(default_factory=list)
    last_decision: str = ""
    message: str = ""
    event: str = "bar"  # "bar": a bar was processed; "order": a broker notification; "resume": a restart


@dataclass
class PaperPlan:
    """Everything a :class:`PaperStrategy` needs from the session that built it.

    ``anchor`` is where ``rebalance: {every: n}`` starts counting; ``restore`` the last committed bar of a
    resumed session; ``max_bars`` stops the session after that many newly processed bars; ``flatten``
    (simulation) makes the first bar's decision a close-out.

    Example: ``PaperPlan(exp, risk_config(exp), source.history(), source, BarHub(...), state, bars.index[0])``.
    """

    experiment: LoadedExperiment
    risk: RiskConfig
    history: Bars
    source: BarSource
    hub: BarHub
    state: PaperState
    anchor: pd.Timestamp
    restore: BarRecord | None = None
    max_bars: int | None = None
    flatten: bool = False
    order_timeout: float = 30.0
    on_update: Callable[[SessionView], None] | None = None
    replay: Bars | None = None  # a replay's whole bars: their calendar (gaps, delisting) is the backtest's
    window: int | None = None  # trailing bars each decision is computed from (None: every bar loaded)


class PaperStrategy(QfStrategy):
    """Shared machinery: growing arrays, the trailing-window pipeline, the risk kernel, commits.

    Subclasses decide *when* the kernel runs (see the module docstring); use one of them, e.g.
    ``cerebro.addstrategy(SimPaperStrategy, paper=plan)``.
    """

    params = (("paper", None),)

    def __init__(self) -> None:  # QfStrategy.__init__ needs the whole history; this one grows it
        paper: PaperPlan = self.p.paper
        exp = paper.experiment
        ex = exp.spec.execution
        self.paper = paper
        self.exp = exp
        self.arrays = SessionArrays(paper.history, ex, paper.risk, replay=paper.replay)
        self.N = len(self.arrays.symbols)
        self.costs = (float(ex.fees), float(ex.fixed_fees), float(ex.slippage))
        # a replay charges the backtest's own cost arrays (build_inputs computed them on the replayed bars); a
        # live session computes each fill's row from the bars it has (SessionArrays.fill_costs)
        self.cost_arrays = self.arrays.calendar.costs if paper.replay is not None else None
        self.slip_out = np.zeros(self.N)
        self.capped = np.zeros(self.N, dtype=np.bool_)
        self.integer = not ex.fractional
        self.min_value = float(ex.min_order_value)
        self.risk_array = paper.risk.as_array()
        self.kernel = new_state()
        self.avg_price = np.full(self.N, np.nan)
        self.filled_pos = np.zeros(self.N)
        self.exits = np.zeros(self.N, dtype=np.bool_)
        self.desired = np.zeros(self.N)
        self.sizes = np.zeros(self.N)
        self.position_now = np.zeros(self.N)
        self.seq = paper.restore.seq + 1 if paper.restore is not None else 0
        self.bars_done = 0
        self._ingested = 0
        self._restored = paper.restore is None
        self._decision: DecisionRecord | None = None
        self.refused: list[str] = []
        equity = paper.state.equity()
        # the view's drawdown is measured on the equity the session recorded (the kernel's own peak is in
        # its units, which a live broker's cash reserve scales)
        self.peak_equity = float(equity.max()) if len(equity) else float("nan")

    @property
    def capped_at(self) -> np.ndarray:
        """Per row and symbol: the participation cap clipped the order (``QfStrategy._place_orders`` writes it)."""
        return self.arrays.capped

    # -- bars ------------------------------------------------------------------------------------

    def _bar(self) -> int:
        return self._ingest()

    def _ingest(self) -> int:
        """Append the feeds' current bar to the arrays once; return its row."""
        k = len(self.datas[0]) - 1
        if k < self._ingested:
            return self.arrays.n - 1
        t = self.paper.hub.times[k]
        values = {f: np.array([getattr(d, f)[0] for d in self.datas], dtype=float) for f in self.arrays.fields}
        i = self.arrays.append(t, values)
        self._ingested = k + 1
        if not self._restored:
            self._restore(self.paper.restore)
        return i

    def _restore(self, rec: BarRecord | None) -> None:
        """Load the strategy state of the last committed bar (relative cool-downs re-anchored)."""
        self._restored = True
        if rec is None:
            return
        row = self.arrays.rows.get(rec.time)
        s = rec.strategy
        if "kernel" in s:
            if row is None:
                log.warning("the last processed bar %s is outside the loaded history: the risk rules restart "
                            "from the current equity (load more history with data.params.start)", rec.time.date())
            else:
                self.kernel[:] = kernel_from_json(s["kernel"], row)
        if "avg_price" in s:
            self.avg_price[:] = np.array(s["avg_price"], dtype=float)
            self.filled_pos[:] = np.array(s["filled_pos"], dtype=float)

    def _kernel_json(self, d: int) -> list[float]:
        return kernel_to_json(self.kernel, d)

    def _targets_row(self, d: int) -> np.ndarray | None:
        """Targets decided at the close of row ``d`` (None unless ``d`` is a rebalance date)."""
        from qf.pipeline import targets_at

        a = self.arrays
        t = a.index[d]
        if not self.paper.source.is_decision(t, self.exp.spec.rebalance, self.paper.anchor):
            return None
        # the trailing window the components declare they need (qf.paper.session.history_bars)
        window = self.paper.window
        first = 0 if window is None else max(0, d + 1 - window)
        row = targets_at(self.exp, a.bars(d + 1, first), t).reindex(a.symbols)
        return np.array(row, dtype=float)

    def _events_of(self, i: int) -> list[tuple[str, str]]:
        ev = self.arrays.events[i]
        # in the order of the backtest's risk_events.csv within a bar: delisted, flatten, stop
        out = [("delisted", s) for s, at in zip(self.arrays.symbols, self.arrays.delisted_at, strict=True) if at == i]
        out += [("flatten", "")] if (ev == EVENT_FLATTEN).any() else []
        out += [("stop", self.arrays.symbols[k]) for k in np.flatnonzero(ev == EVENT_STOP)]
        out += [("participation_cap", self.arrays.symbols[k]) for k in np.flatnonzero(self.arrays.capped[i])]
        return out

    def _done_one(self) -> None:
        """Count a newly processed bar; stop the session once ``max_bars`` are done."""
        self.bars_done += 1
        self.seq += 1
        limit = self.paper.max_bars
        if limit is not None and self.bars_done >= limit:
            self.env.runstop()

    # -- view ------------------------------------------------------------------------------------

    def _broker_view(self) -> BrokerView:
        raise NotImplementedError

    def publish(self, message: str = "", event: str = "bar") -> None:
        """Send a snapshot to the live view (if any); ``message`` is shown with this snapshot only."""
        cb = self.paper.on_update
        if cb is None:
            return
        bview = self._broker_view()
        equity = bview.equity
        peak = equity if math.isnan(self.peak_equity) else max(self.peak_equity, equity)
        dd = equity / peak - 1.0 if peak > 0 else 0.0
        halted = self.kernel[S_HALTED] == 1.0
        detail = ""
        if halted:
            until = self.kernel[S_HALT_UNTIL]
            left = int(until) - (self.arrays.n - 1) if until >= 0 else -1
            detail = "until an operator resets it" if left < 0 else f"{max(left, 0)} bar(s) of cool-down left"
        last = self.arrays.n - 1
        stops = [s for name, s in self._events_of(last) if name == "stop"] if last >= 0 else []
        dec = self._decision
        cb(SessionView(
            experiment=self.exp.name, mode=self.mode, time=self.arrays.index[-1] if self.arrays.index else None,
            bars_done=self.bars_done, bars_total=self.seq, broker=bview, peak=peak, drawdown=min(dd, 0.0),
            halted=halted or bview.halted, halt_detail=detail or (bview.halt_reason or ""), stops=stops,
            last_decision=f"{dec.kind} at {dec.time:%Y-%m-%d}" if dec is not None else "", message=message,
            event=event,
        ))

    mode = "paper"


def kernel_to_json(kernel: np.ndarray, d: int) -> list[float]:
    """The risk kernel's state with its cool-down end stored relative to decision row ``d``.

    A live session reloads a history window that starts later after a restart, so absolute row numbers
    move; bars-remaining does not.

    Example::

        kernel_to_json(np.array([1e5, 9e4, 120.0, 1.0]), 100)   # [100000.0, 90000.0, 20.0, 1.0]
    """
    out = [float(v) for v in kernel]
    out[S_HALT_UNTIL] = out[S_HALT_UNTIL] - d if out[S_HALT_UNTIL] >= 0 else -1.0
    return out


def kernel_from_json(values: list[float], d: int) -> np.ndarray:
    """Inverse of :func:`kernel_to_json` for decision row ``d`` of the current arrays."""
    out = np.array(values, dtype=float)
    out[S_HALT_UNTIL] = out[S_HALT_UNTIL] + d if out[S_HALT_UNTIL] >= 0 else -1.0
    return out


class SimPaperStrategy(PaperStrategy):
    """The replayed session on backtrader's simulated broker, timed like :class:`QfStrategy`.

    Orders are placed in ``next_open`` of the fill bar (cerebro's ``cheat_on_open``) and the broker fills
    them in the same step at the open (``next_open``) or the close (``next_close``, ``close``). The bar
    is committed at its close with the broker's cash and positions, so a restart restores
    ``BackBroker`` exactly and replays the next bar.

    Example::

        cerebro = bt.Cerebro(stdstats=False, cheat_on_open=True, broker_coo=False, quicknotify=True)
        cerebro.addstrategy(SimPaperStrategy, paper=plan)
    """

    mode = "sim"

    def __init__(self) -> None:
        super().__init__()
        self.placed: dict[int, tuple[int, int]] = {}
        self.bar_fills: list[FillRow] = []
        self._column = {d: k for k, d in enumerate(self.datas)}

    def start(self) -> None:
        """Restore the simulated broker's cash, positions and pending targets of a resumed session."""
        rec = self.paper.restore
        if rec is None:
            return
        # the simulated broker's whole state between two bars is its cash and its positions
        b = self.broker
        b.cash = float(rec.cash)
        # the broker values its positions in its dict's order: restore that order too, so the equity it
        # reports is bit-identical to an uninterrupted run's
        order = rec.strategy.get("broker_order") or [k for k in range(self.N) if rec.positions[k] != 0.0]
        for k in order:
            b.positions[self.datas[k]] = bt.Position(float(rec.positions[k]), float(rec.prices[k]))
        pending = rec.strategy.get("pending")
        if pending is not None:
            self.arrays.reserve(self.arrays.n + 2)
            self.arrays.targets[self.arrays.n] = np.array(pending, dtype=float)

    def _at_open(self) -> None:
        i = self._ingest()
        a = self.arrays
        if a.lag == 0:
            row = self._targets_row(i)
            if row is not None:
                a.targets[i] = row  # a newer target replaces an order still waiting for its symbol's bar
                a.adjust(i)
                self._decision = DecisionRecord(a.index[i], "rebalance", [float(v) for v in row], {})
        if self.paper.flatten and self.bars_done == 0:
            a.targets[i] = 0.0  # the operator's close-out is a rebalance to nothing
            a.adjust(i)
        self._place(i)

    def _place(self, i: int) -> None:
        """:meth:`QfStrategy._at_open` on the growing arrays: the same kernel call, the same orders."""
        a = self.arrays
        if not self.paper.risk.active and np.isnan(a.targets[i]).all():
            return
        self._place_orders(i, a.lag, a.exec_price, a.close, a.targets, a.vol, self.risk_array, a.listed(i), self.kernel,
                           a.events)

    def _at_close(self) -> None:
        i = self._ingest()
        a = self.arrays
        b = self.broker
        equity = b.getvalue()
        if a.lag == 1:
            row = self._targets_row(i)
            if row is not None:
                a.reserve(i + 2)
                a.targets[i + 1] = row
                a.adjust(i + 1)
                self._decision = DecisionRecord(a.index[i], "rebalance", [float(v) for v in row], {})
        if self.refused:
            raise QfError(f"the simulated broker refused {len(self.refused)} planned order(s) (an engine bug): "
                          + "; ".join(self.refused[:5]))
        positions = np.zeros(self.N)
        prices = np.zeros(self.N)
        for k, data in enumerate(self.datas):
            # read without creating: the broker values every position it holds, and a symbol not listed yet
            # (a NaN close) would make the account NaN
            p = b.positions.get(data)
            if p is not None:
                positions[k], prices[k] = p.size, p.price
        # the next fill bar's targets: a next-bar decision's, or (any fill) an order waiting for a symbol's bar
        pending = a.targets[i + 1] if i + 1 < a.targets.shape[0] else None
        strategy = {
            "kernel": self._kernel_json(i), "avg_price": [float(v) for v in self.avg_price],
            "filled_pos": [float(v) for v in self.filled_pos],
            "pending": None if pending is None or np.isnan(pending).all() else [float(v) for v in pending],
            "broker_order": [self._column[d] for d in b.positions],
        }
        dec = self._decision if self._decision is not None and self._decision.time == a.index[i] else None
        self.paper.state.commit_bar(BarRecord(self.seq, a.index[i], float(equity), float(b.getcash()), positions,
                                              prices, strategy), self.bar_fills, self._events_of(i), dec)
        self.peak_equity = float(np.fmax(self.peak_equity, equity))
        self.bar_fills = []
        self._done_one()
        self.publish()

    def notify_order(self, order: bt.Order) -> None:
        """Book a fill as :class:`QfStrategy` does (average prices for the stops) and keep it for the commit."""
        if order.status in (order.Submitted, order.Accepted):
            return
        i, k = self.placed[order.ref]
        a = self.arrays
        symbol = a.symbols[k]
        if order.status != order.Completed:
            self.refused.append(f"{a.index[i]:%Y-%m-%d} {symbol} {'buy' if order.isbuy() else 'sell'} "
                                f"{abs(order.size):g}: {order.getstatusname()}")
            return
        ex = order.executed
        qty = abs(ex.size)
        price = ex.exbits[-1].price if ex.exbits else ex.price
        signed = qty if order.isbuy() else -qty
        before = self.filled_pos[k]
        self.avg_price[k] = update_avg_price_nb(self.avg_price[k], before, signed, price)
        self.filled_pos[k] = before + signed
        ref = order_ref(a.index[i - a.lag], symbol)
        self.bar_fills.append(FillRow(ref, a.index[i], symbol, "buy" if order.isbuy() else "sell", qty, price,
                                      float(ex.comm), ref))

    def _broker_view(self) -> BrokerView:
        b = self.broker
        positions = []
        for k, data in enumerate(self.datas):
            p = b.positions.get(data)  # without creating one (see _at_close)
            if p is not None and p.size:
                close = self.arrays.close[self.arrays.n - 1, k]
                positions.append(PositionView(self.arrays.symbols[k], p.size, p.price, p.size * close))
        fills = [FillView(f.time, f.symbol, f.side, f.quantity, f.price) for f in self.paper.state.recent_fills()]
        return BrokerView("sim", cash=b.getcash(), equity=b.getvalue(), buying_power=b.getcash(),
                          positions=positions, fills=fills)


class LivePaperStrategy(PaperStrategy):
    """The session on a live broker: decide at the close of each completed bar, journal, then send.

    At each new bar: refresh the account, cancel this session's orders still working (their fills would
    otherwise be counted twice), run :func:`decide_costed_nb` on the account's cash and positions valued at
    the bar's close, with the orders sized at that close and costed by the experiment's cost model on the
    bars so far (:meth:`SessionArrays.fill_costs`). A halt from the risk kernel fires the broker's
    kill switch (cancel everything, close everything, persist the halt). Otherwise the planned orders are
    journaled, sells are sent at once and buys as soon as the buying power covers them (a cash account
    must wait for its sells to fill). A bar that was already decided before a restart is completed,
    never decided again.

    Example::

        cerebro = bt.Cerebro(stdstats=False, quicknotify=True)
        cerebro.setbroker(alpaca_broker)
        cerebro.addstrategy(LivePaperStrategy, paper=plan)
    """

    mode = "live"

    def __init__(self) -> None:
        super().__init__()
        self.live_orders: dict[str, bt.Order] = {}
        self._busy = False
        self._slip: dict[str, float] = {}  # each planned order's modelled slippage (the buying-power check)

    @property
    def live(self) -> LiveBroker:
        """The broker, as the live interface it implements."""
        return self.broker  # type: ignore[return-value]

    def start(self) -> None:
        """Listen to the broker's account changes."""
        # sells sent before a restart have no backtrader order here, so no notify_order: the broker tells
        # us about any fill instead, and the decision's waiting buys are tried again
        self.live.listeners.append(self._account_changed)

    def _account_changed(self) -> None:
        if self._decision is not None:
            self._try_buys(self._decision.time)

    def _at_open(self) -> None:
        return None  # cerebro runs without cheat-on-open here: everything happens at the close

    def _at_close(self) -> None:
        d = self._ingest()
        a = self.arrays
        t = a.index[d]
        state = self.paper.state
        last = state.last_bar()
        if state.decision(t) is not None:
            self._resume(d)
            if last is None or last.time < t:
                # the previous process journaled this decision but died before committing its bar
                self._commit(d, state.decision(t))
                self._done_one()
            self.publish(f"resumed the decision of {t:%Y-%m-%d}", event="resume")
            return
        if last is not None and last.time >= t:
            self.publish(f"bar {t:%Y-%m-%d} was already processed; waiting for the next one", event="resume")
            return
        if last is not None:
            missed = [x for x in a.index[:d] if x > last.time]
            if missed:
                log.warning("the session was stopped for %d bar(s) (%s to %s): no decision was made on them",
                            len(missed), missed[0].date(), missed[-1].date())
        self._decide(d)
        self._commit(d, state.decision(t))
        self._done_one()
        self.publish()

    # -- the decision ----------------------------------------------------------------------------

    def _snapshot(self) -> tuple[float, np.ndarray, np.ndarray]:
        """Cash, positions and average entry prices of the universe from the broker's last sync."""
        pos = np.zeros(self.N)
        avg = np.full(self.N, np.nan)
        for k, s in enumerate(self.arrays.symbols):
            qty, price = self.live.position_of(s)
            pos[k] = qty
            if qty:
                avg[k] = price
        return float(self.broker.getcash()), pos, avg

    def _decide(self, d: int) -> None:
        a = self.arrays
        t = a.index[d]
        state = self.paper.state
        broker = self.live
        expired = state.expire_planned(before=t)
        if expired:
            log.warning("%d order(s) of an earlier decision were never sent and are dropped: %s",
                        len(expired), ", ".join(expired))
        broker.sync()
        i = d + 1
        a.reserve(i + 2)
        # sized at the decision's close (the next open is not known yet); a symbol that did not trade at
        # that close gets no order: its target waits for a bar it trades on, as in the backtest
        a.exec_price[i] = np.where(a.gaps[d] | np.isnan(a.data["close"][d]), np.nan, a.close[d])
        row = self._targets_row(d)
        if row is not None:
            a.targets[i] = row
            a.adjust(i)
        was_halted = self.kernel[S_HALTED] == 1.0
        before = self.kernel.copy()
        equity, pos = self._run_kernel(d)
        halted = self.kernel[S_HALTED] == 1.0
        stale = [] if halted else broker.open_refs()
        if stale:
            # orders of an earlier decision still working: their fills would be counted twice, so cancel
            # them, then decide again on the positions they leave (the kill switch above cancels them too)
            log.info("canceling %d order(s) still working from earlier decisions: %s", len(stale), ", ".join(stale))
            broker.cancel_open(self.paper.order_timeout)
            broker.sync()
            self.kernel[:] = before
            equity, pos = self._run_kernel(d)
            halted = self.kernel[S_HALTED] == 1.0
        risk = {"kernel": self._kernel_json(d), "events": self._events_of(i), "equity": float(equity)}
        targets = None if row is None else [float(v) for v in row]
        if halted:
            kind = "halted" if was_halted else "halt"
            state.record_decision(t, kind, targets, risk)  # before the kill switch: a restart repeats it
            self._decision = state.decision(t)
            if kind == "halt" or any(pos != 0) or broker.open_refs():
                broker.kill_switch(self._halt_reason(t), decision=t)
            return
        on, why = broker.halted()
        if on and (why or "").startswith("qf risk:"):
            log.warning("the risk rule's cool-down is over at %s: trading resumes", t.date())
            broker.resume()
        orders = []
        sizes = self.sizes
        for k in np.argsort(sizes, kind="mergesort"):  # sells first
            q = float(sizes[k])
            if q == 0.0 or np.isnan(q):
                continue
            s = a.symbols[k]
            orders.append(PlannedOrder(order_ref(t, s), t, s, "buy" if q > 0 else "sell", abs(q),
                                       float(a.exec_price[i, k])))
            self._slip[orders[-1].ref] = float(self.slip_out[k])
        kind = "rebalance" if row is not None else ("stop" if self.exits.any() else "hold")
        state.record_decision(t, kind, targets, risk, orders)
        self._decision = state.decision(t)
        self._execute(t)

    def _run_kernel(self, d: int) -> tuple[float, np.ndarray]:
        """:func:`decide_costed_nb` for the fill after decision row ``d`` on the broker's last snapshot.

        Returns the equity at the close of ``d`` and the positions it used; ``self.sizes`` gets the orders.
        """
        a = self.arrays
        i = d + 1
        cash, pos, avg = self._snapshot()
        equity = value_nb(cash, pos, a.close[d])
        reserve = self.live.cash_reserve(equity)
        a.events[i] = 0
        self.avg_price[:] = avg
        fees, fixed, _ = self.costs
        c = a.fill_costs(d, self.exp.spec.execution)
        # a reserve proportional to equity scales the kernel's equity by a constant factor, so its
        # drawdown and daily-loss ratios (and therefore its decisions) do not change
        decide_costed_nb(i, 1, cash - reserve, pos, a.exec_price, a.close, a.targets, a.vol, self.risk_array, fees,
                         fixed, c.slippage[0], c.impact[0], c.exponent, c.max_qty[0], self.integer, self.min_value,
                         self.kernel, self.avg_price, self.exits, a.events, self.desired, self.sizes, self.slip_out,
                         self.capped)
        a.capped[i] = self.capped
        return float(equity), pos

    def _halt_reason(self, t: pd.Timestamp) -> str:
        cfg = self.paper.risk
        rules = [n for n, v in (("drawdown_halt", cfg.dd_limit), ("daily_loss_limit", cfg.daily_limit))
                 if not math.isnan(v)]
        return f"qf risk: {' / '.join(rules) or 'risk rule'} halted trading at the close of {t:%Y-%m-%d}"

    def _resume(self, d: int) -> None:
        """Complete a decision journaled before a restart (kernel state from the journal, no new decision)."""
        t = self.arrays.index[d]
        dec = self.paper.state.decision(t)
        assert dec is not None
        self._decision = dec
        if "kernel" in dec.risk:
            self.kernel[:] = kernel_from_json(dec.risk["kernel"], d)
        self.live.sync()
        if dec.kind in ("halt", "halted"):
            if not self.live.halted()[0]:
                self.live.kill_switch(self._halt_reason(t), decision=t)
            return
        # the slippage the previous process modelled for the orders it journaled: the same model, same bars
        c = self.arrays.fill_costs(d, self.exp.spec.execution)
        col = {s: k for k, s in enumerate(self.arrays.symbols)}
        for o in self.paper.state.planned(t):
            k = col[o.symbol]
            self._slip[o.ref] = float(order_slippage_nb(c.slippage[0, k], c.impact[0, k], c.exponent, o.quantity))
        self._execute(t)

    def _commit(self, d: int, dec: DecisionRecord | None) -> None:
        a = self.arrays
        cash, pos, avg = self._snapshot()  # as of the decision's last sync: the bar's close
        equity = dec.risk.get("equity") if dec is not None else None
        if equity is None:
            equity = value_nb(cash, pos, a.close[d])
        kernel = dec.risk.get("kernel") if dec is not None else self._kernel_json(d)
        events = [tuple(e) for e in dec.risk.get("events", [])] if dec is not None else []
        self.paper.state.commit_bar(BarRecord(self.seq, a.index[d], float(equity), cash, pos,
                                              np.nan_to_num(avg), {"kernel": kernel}), (), events)
        self.peak_equity = float(np.fmax(self.peak_equity, equity))

    # -- sending ---------------------------------------------------------------------------------

    def _send(self, o: PlannedOrder, qty: float | None = None) -> None:
        """Send one planned order unless the broker already has it (the restart-safety check)."""
        state = self.paper.state
        status = self.live.ref_status(o.ref)
        if status in ("open", "done"):
            state.mark_planned(o.ref, SENT)
            return
        if status == "rejected":
            state.mark_planned(o.ref, REJECTED)
            return
        # "none": never sent; "lost": journaled by the broker but it never reached the broker
        q = float(o.quantity if qty is None else qty)
        data = self.getdatabyname(o.symbol)
        order = self.buy(data=data, size=q, qf_ref=o.ref) if o.side == "buy" else \
            self.sell(data=data, size=q, qf_ref=o.ref)
        self.live_orders[o.ref] = order
        state.mark_planned(o.ref, REJECTED if order.status == order.Rejected else SENT, q)

    def _execute(self, t: pd.Timestamp) -> None:
        for o in self.paper.state.planned(t):
            if o.side == "sell" and o.status == PLANNED:
                self._send(o)
        self._try_buys(t)

    def _try_buys(self, t: pd.Timestamp | None) -> None:
        """Send the decision's buys once the buying power covers them (or scale them once sells are done)."""
        if t is None or self._busy:
            return
        self._busy = True
        try:
            planned = self.paper.state.planned(t)
            buys = [o for o in planned if o.side == "buy" and o.status == PLANNED]
            if not buys:
                return
            cost = sum(o.quantity * o.price * (1.0 + self._slip.get(o.ref, self.costs[2])) for o in buys)
            if cost <= self.live.buying_power():
                for o in buys:
                    self._send(o)
                return
            working = any(self.live.ref_status(o.ref) == "open" for o in planned
                          if o.side == "sell" and o.status == SENT)
            if working:
                return  # the sells' proceeds are not there yet
            self.live.sync()
            power = self.live.buying_power()
            scale = min(1.0, max(power, 0.0) / cost * (1.0 - 1e-9)) if cost > 0 else 0.0
            for o in buys:
                q = o.quantity * scale
                if self.integer:
                    q = math.floor(q)
                if q <= 0 or q * o.price < self.min_value:
                    self.paper.state.mark_planned(o.ref, EXPIRED, 0.0)
                    continue
                if scale < 1.0:
                    log.warning("%s: buying %.6g instead of %.6g (buying power after the sells)", o.ref, q,
                                o.quantity)
                self._send(o, q)
        finally:
            self._busy = False

    def notify_order(self, order: bt.Order) -> None:
        """A rejection is journaled; any fill or cancel may free cash for the decision's waiting buys."""
        if order.status in (order.Submitted, order.Accepted):
            return
        ref = order.info.get("qf_ref") if order.info is not None else None
        if order.status == order.Rejected and ref:
            self.paper.state.mark_planned(ref, REJECTED)
        if self._decision is not None:
            self._try_buys(self._decision.time)
        self.publish(event="order")

    def _broker_view(self) -> BrokerView:
        return self.live.view()

