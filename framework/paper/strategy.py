"""A paper session's per-bar arrays and plan: what its backtrader strategies
(:mod:`qf.engines.backtrader.paper`) decide on, without backtrader.

:class:`SessionArrays` holds the per-bar arrays of :class:`qf.engines.inputs.SimInputs`, growing one completed
bar at a time (a session does not have the future); :class:`PaperPlan` is what the session hands its strategy;
:class:`SessionView` what the live view shows; :func:`order_ref` the restart-safe part of an order id;
:func:`kernel_to_json` / :func:`kernel_from_json` the risk kernel's state as the session commits it.

Example::

    arrays = SessionArrays(history, exp.spec.execution, risk_config(exp), replay=bars)
    cerebro.addstrategy(SimPaperStrategy, paper=PaperPlan(exp, risk, history, source, hub, state, anchor))
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from qf.bars import Bars
from qf.config.loader import LoadedExperiment
from qf.config.schema import ExecutionSpec
from qf.engines.costs import CostArrays, cost_arrays
from qf.engines.inputs import build_inputs, fill_lag
from qf.engines.kernels.risk import RiskStack
from qf.errors import QfError
from qf.paper.broker import BrokerView
from qf.paper.feed import BarHub, BarSource
from qf.paper.state import (
    BarRecord,
    PaperState,
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
    rebalance row executed at fill bar ``i`` (NaN = none); ``risk_inputs`` the stateful risk rules' per-bar
    inputs (``[rows, K, N]``; a live bar's from its trailing window, see
    :meth:`qf.engines.kernels.risk.RiskStack.inputs_row`).

    The trading calendar (listing, gaps, delisting) is the engines' own (:func:`qf.engines.inputs.build_inputs`):

    - a replay (``replay=`` the whole replayed bars) takes every row from the :class:`SimInputs` of those
      bars, so it knows a symbol's last bar like the backtest does and delists it there
      (``execution.on_delist``);
    - a live session cannot know that a symbol will never trade again: a listed symbol missing from a bar
      is a gap (filled for the pipeline as :func:`qf.bars.validate` fills one, never traded), never a
      delisting.

    Example::

        arrays = SessionArrays(history, ExecutionSpec(fill="next_close"), compose([]))
        i = arrays.append(pd.Timestamp("2024-01-08"), {"close": np.array([101.0, 50.5])})
        arrays.bars().close.index[-1]   # Timestamp('2024-01-08')
    """

    def __init__(self, history: Bars, execution: ExecutionSpec, risk: RiskStack, extra: int = 64,
                 replay: Bars | None = None) -> None:
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
        self.risk_inputs = np.full((cap, risk.n_inputs, width), np.nan)
        self.value_close[:n0] = self.calendar.close[:n0]
        self.exec_price[:n0] = self.calendar.exec_price[:n0]
        self.risk_inputs[:n0] = self.calendar.risk_inputs[:n0]
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
        risk_inputs = np.full((new, *self.risk_inputs.shape[1:]), np.nan)
        risk_inputs[:cap] = self.risk_inputs
        self.risk_inputs = risk_inputs
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
        self.risk_inputs[i] = cal.risk_inputs[i]
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
        if self.risk.n_inputs:
            # the rules' inputs of this bar from the trailing window they need (the backtest's, bar by bar)
            h = self.risk.history
            self.risk_inputs[i] = self.risk.inputs_row(self.bars(i + 1, 0 if h is None else max(0, i + 1 - h)))

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
    risk: RiskStack
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


def kernel_to_json(kernel: np.ndarray, d: int) -> list[float]:
    """The stateful risk rules' flat state (:meth:`qf.engines.kernels.risk.RiskStack.new_state`) as the session
    commits it after decision row ``d``: plain floats. The rules count bars in their state (a cool-down's
    bars left), never row numbers, so a restarted session whose history window starts later reloads it as is.

    Example::

        kernel_to_json(np.array([1e5, 1.0, 20.0]), 100)   # [100000.0, 1.0, 20.0]
    """
    return [float(v) for v in kernel]


def kernel_from_json(values: list[float], d: int) -> np.ndarray:
    """Inverse of :func:`kernel_to_json` for decision row ``d`` of the current arrays."""
    return np.array(values, dtype=float)
