"""qf's backtrader strategies for paper sessions: the backtest's decisions, one completed bar at a time.

:class:`qf.engines.backtrader.strategy.QfStrategy` runs on arrays that hold the whole history up front. A paper
session does not have the future, so :class:`PaperStrategy` keeps the same per-bar arrays in
:class:`qf.paper.strategy.SessionArrays`, which grow as bars arrive, and recomputes the targets with
:func:`qf.pipeline.targets_at` on the trailing window at each rebalance, exactly as ``QfStrategy`` does in
incremental mode. Every order comes out of the same :class:`qf.engines.decision.DecisionStep` the backtest
holds (the stateful risk rules on the broker's real cash and positions, then the order planner), costed by
the experiment's cost model (:mod:`qf.engines.costs`): a replay charges the backtest's own arrays, a live
session computes each fill's row from the bars it has.

Two timings, one per kind of broker:

- :class:`SimPaperStrategy` (backtrader's ``BackBroker``, a replayed history): a
  :class:`qf.engines.backtrader.strategy.DecisionStrategy` like ``QfStrategy``: cerebro runs with
  ``cheat_on_open`` and the strategy places and books orders at the same points of the bar, so a replay
  places the same orders as ``run_backtrader(bars, experiment=exp)``.
- :class:`LivePaperStrategy` (a :class:`qf.components.LiveBroker` such as Alpaca): a bar arrives only
  once it is complete, so the decision is made at its close and sized at that close (the next open is
  not known yet); market orders then fill at the next open. The journal makes the decision
  restart-safe: it is written, with its planned orders, before the first order is sent, and a
  restarted session completes it instead of deciding again.

Each processed bar is committed to :class:`qf.paper.state.PaperState` in one transaction. The session
(:func:`qf.paper.session.run_paper`) builds cerebro with :func:`paper_cerebro` and feeds it through
:class:`LiveFeed`; this module is the only part of the paper layer that imports backtrader.

Example::

    cerebro = paper_cerebro(broker, sim=True)
    cerebro.addstrategy(SimPaperStrategy, paper=PaperPlan(exp, risk, history, source, hub, state, anchor))
"""

from __future__ import annotations

import logging
import math
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from qf.components import LiveBroker
from qf.engines.backtrader.strategy import DecisionStrategy
from qf.engines.decision import DecisionStep
from qf.engines.kernels.orders import order_slippage_nb
from qf.engines.kernels.step import value_nb
from qf.errors import QfError
from qf.paper.broker import BrokerView, FillView, PositionView
from qf.paper.feed import BarHub
from qf.paper.state import EXPIRED, PLANNED, REJECTED, SENT, BarRecord, DecisionRecord, FillRow, PlannedOrder
from qf.paper.strategy import (
    PaperPlan,
    SessionArrays,
    SessionView,
    kernel_to_json,
    order_ref,
)
from qf.pipeline import targets_at

log = logging.getLogger(__name__)

#: backtrader's simulated broker: a paper session on it is a replay (``--broker sim``)
SimBroker = bt.brokers.BackBroker


def paper_cerebro(broker: Any, sim: bool) -> bt.Cerebro:
    """The cerebro of a paper session on ``broker``: live feeds, no preloading, notifications as they happen
    (``quicknotify``), and ``cheat_on_open`` for a replay (``sim``), timed like the backtest.

    Example::

        cerebro = paper_cerebro(alpaca_broker, sim=False)
        cerebro.addstrategy(LivePaperStrategy, paper=plan)
    """
    # quicknotify: a live broker's notifications reach the strategy as they happen, not at the next bar
    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=sim, broker_coo=False, quicknotify=True, runonce=False,
                         preload=False, maxcpus=1, tradehistory=False)
    cerebro.setbroker(broker)
    return cerebro


class LiveFeed(bt.feed.DataBase):
    """A live backtrader feed of one symbol's bars from a :class:`BarHub`.

    Close-only data gets open = high = low = close (as the backtest feed does); volume defaults to 0.

    Example::

        cerebro.adddata(LiveFeed(dataname="AAPL", hub=hub, column=0, qcheck=0.2), name="AAPL")
    """

    params = (
        ("hub", None),
        ("column", 0),
        ("qcheck", 0.2),  # seconds a feed waits for a new bar before letting cerebro loop (notifications)
    )

    def islive(self) -> bool:
        """Live: cerebro neither preloads nor runs vectorised, and keeps looping while no bar is due."""
        return True

    def haslivedata(self) -> bool:
        """A bar is queued: cerebro should not wait before asking again."""
        return bool(self.p.hub.queues[self.p.column])

    def _load(self) -> bool | None:
        hub: BarHub = self.p.hub
        q = hub.queues[self.p.column]
        if not q and self.p.column == 0:
            # only the first feed waits for the source: it fills every feed's queue at once, and cerebro
            # asks it first in each loop, so one wait per loop keeps broker notifications flowing
            hub.pump(getattr(self, "_qcheck", self.p.qcheck))
        if not q:
            return False if hub.done else None
        t, row = q.popleft()
        close = row.get("close", np.nan)
        opn = row.get("open", np.nan)
        opn = close if np.isnan(opn) else opn
        high = row.get("high", np.nan)
        low = row.get("low", np.nan)
        self.lines.datetime[0] = bt.date2num(t.to_pydatetime())
        self.lines.open[0] = opn
        self.lines.high[0] = np.fmax(opn, close) if np.isnan(high) else high
        self.lines.low[0] = np.fmin(opn, close) if np.isnan(low) else low
        self.lines.close[0] = close
        volume = row.get("volume", np.nan)
        self.lines.volume[0] = 0.0 if np.isnan(volume) else volume
        self.lines.openinterest[0] = 0.0
        return True


class PaperStrategy(DecisionStrategy):
    """Shared machinery: growing arrays, the trailing-window pipeline, the decision step, commits.

    Subclasses decide *when* the kernel runs (see the module docstring); use one of them, e.g.
    ``cerebro.addstrategy(SimPaperStrategy, paper=plan)``.
    """

    params = (("paper", None),)

    def __init__(self) -> None:
        paper: PaperPlan = self.p.paper
        exp = paper.experiment
        ex = exp.spec.execution
        arrays = SessionArrays(paper.history, ex, paper.risk, replay=paper.replay)
        n = len(arrays.symbols)
        # a replay charges the backtest's own cost arrays (build_inputs computed them on the replayed bars); a
        # live session computes each fill's row from the bars it has (SessionArrays.fill_costs)
        costs = arrays.calendar.costs if paper.replay is not None else None
        super().__init__(DecisionStep(n, ex, paper.risk, rows=arrays.exec_price.shape[0]), costs)
        self.paper = paper
        self.exp = exp
        self.arrays = arrays
        self.N = n
        self.seq = paper.restore.seq + 1 if paper.restore is not None else 0
        self.bars_done = 0
        self._ingested = 0
        self._restored = paper.restore is None
        self._decision: DecisionRecord | None = None
        equity = paper.state.equity()
        # the view's drawdown is measured on the equity the session recorded (the kernel's own peak is in
        # its units, which a live broker's cash reserve scales)
        self.peak_equity = float(equity.max()) if len(equity) else float("nan")

    @property
    def kernel(self) -> np.ndarray:
        """The risk kernel's state (the step's)."""
        return self.step.state

    # -- bars ------------------------------------------------------------------------------------

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
                self.kernel[:] = self.paper.risk.check_state(s["kernel"], self.N)
        if "avg_price" in s:
            self.step.avg_price[:] = np.array(s["avg_price"], dtype=float)
            self.step.filled_pos[:] = np.array(s["filled_pos"], dtype=float)

    def _kernel_json(self, d: int) -> list[float]:
        return kernel_to_json(self.kernel, d)

    def _risk_halted(self) -> tuple[bool, str]:
        """Whether a stateful risk rule halts trading, and the rules' own words about it."""
        on = self.paper.risk.halted(self.kernel, self.N)
        return bool(on), "; ".join(st.detail for _, st in on if st.detail)

    def _targets_row(self, d: int) -> np.ndarray | None:
        """Targets decided at the close of row ``d`` (None unless ``d`` is a rebalance date)."""
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
        """Row ``i``'s risk events as ``(event, symbol)``, in the backtest's ``risk_events.csv`` order."""
        return self.step.bar_events(i, self.arrays.symbols, self.arrays.delisted_at)

    def _time(self, i: int) -> pd.Timestamp:
        return self.arrays.index[i]

    def _symbol(self, k: int) -> str:
        return self.arrays.symbols[k]

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
        halted, detail = self._risk_halted()
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
        """:meth:`QfStrategy._at_open` on the growing arrays: the same decision step, the same orders."""
        a = self.arrays
        self._place_orders(i, a.lag, a.exec_price, a.close, a.targets, a.risk_inputs, a.listed(i))

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
            "kernel": self._kernel_json(i), "avg_price": [float(v) for v in self.step.avg_price],
            "filled_pos": [float(v) for v in self.step.filled_pos],
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

    def _on_fill(self, i: int, k: int, side: str, quantity: float, price: float, fee: float) -> None:
        """Keep each fill the step booked (as :class:`QfStrategy` books it) for the bar's commit."""
        a = self.arrays
        symbol = a.symbols[k]
        ref = order_ref(a.index[i - a.lag], symbol)
        self.bar_fills.append(FillRow(ref, a.index[i], symbol, side, quantity, price, fee, ref))

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
    otherwise be counted twice), run the decision step on the account's cash and positions valued at
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
        was_halted = self._risk_halted()[0]
        before = self.kernel.copy()
        equity, pos = self._run_kernel(d)
        halted = self._risk_halted()[0]
        stale = [] if halted else broker.open_refs()
        if stale:
            # orders of an earlier decision still working: their fills would be counted twice, so cancel
            # them, then decide again on the positions they leave (the kill switch above cancels them too)
            log.info("canceling %d order(s) still working from earlier decisions: %s", len(stale), ", ".join(stale))
            broker.cancel_open(self.paper.order_timeout)
            broker.sync()
            self.kernel[:] = before
            equity, pos = self._run_kernel(d)
            halted = self._risk_halted()[0]
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
        sizes = self.step.sizes
        for k in np.argsort(sizes, kind="mergesort"):  # sells first
            q = float(sizes[k])
            if q == 0.0 or np.isnan(q):
                continue
            s = a.symbols[k]
            orders.append(PlannedOrder(order_ref(t, s), t, s, "buy" if q > 0 else "sell", abs(q),
                                       float(a.exec_price[i, k])))
            self._slip[orders[-1].ref] = float(self.step.slip_out[k])
        kind = "rebalance" if row is not None else ("stop" if self.step.exits.any() else "hold")
        state.record_decision(t, kind, targets, risk, orders)
        self._decision = state.decision(t)
        self._execute(t)

    def _run_kernel(self, d: int) -> tuple[float, np.ndarray]:
        """The decision step for the fill after decision row ``d`` on the broker's last snapshot.

        Returns the equity at the close of ``d`` and the positions it used; ``self.step.sizes`` gets the orders.
        """
        a = self.arrays
        i = d + 1
        cash, pos, avg = self._snapshot()
        equity = value_nb(cash, pos, a.close[d])
        reserve = self.live.cash_reserve(equity)
        self.step.avg_price[:] = avg
        c = a.fill_costs(d, self.exp.spec.execution)
        # a reserve proportional to equity scales the kernel's equity by a constant factor, so its
        # drawdown and daily-loss ratios (and therefore its decisions) do not change
        self.step.decide(i, 1, cash - reserve, pos, a.exec_price, a.close, a.targets, a.risk_inputs, c, row=0)
        return float(equity), pos

    def _halt_reason(self, t: pd.Timestamp) -> str:
        # the rules that halted, as they name themselves
        rules = [name for name, _ in self.paper.risk.halted(self.kernel, self.N)]
        return f"qf risk: {' / '.join(rules) or 'risk rule'} halted trading at the close of {t:%Y-%m-%d}"

    def _resume(self, d: int) -> None:
        """Complete a decision journaled before a restart (kernel state from the journal, no new decision)."""
        t = self.arrays.index[d]
        dec = self.paper.state.decision(t)
        assert dec is not None
        self._decision = dec
        if "kernel" in dec.risk:
            self.kernel[:] = self.paper.risk.check_state(dec.risk["kernel"], self.N)
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
            cost = sum(o.quantity * o.price * (1.0 + self._slip.get(o.ref, self.step.slippage)) for o in buys)
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
                if self.step.integer:
                    q = math.floor(q)
                if q <= 0 or q * o.price < self.step.min_value:
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
