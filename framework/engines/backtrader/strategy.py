"""The backtrader engine: one generic ``bt.Strategy`` that drives qf's pipeline bar by bar.

It calls the same kernels as the vectorbt engine, so the two agree to rounding: at each bar, its
:class:`qf.engines.decision.DecisionStep` runs :func:`qf.engines.kernels.step.decide_costed_nb`, which evaluates
the stateful risk kernel (:func:`qf.engines.kernels.risk.risk_step_nb`) on the real broker state at the
decision bar (its cash and positions valued at the decision close, the average entry prices tracked from the
fills), then plans the orders from the fill price; the strategy (:class:`DecisionStrategy`, which the paper
session's replay shares) sends sells before buys.

Fill conventions. Cerebro runs with ``cheat_on_open``: ``next_open`` of bar ``i`` sees bar ``i`` before the
broker processes it, and every order is placed there and filled in the same broker step:

- ``next_open``: decision at the close of ``i-1``, sized from ``open[i]``; the broker's ``coo`` fills
  market orders at that open.
- ``next_close``: decision at the close of ``i-1``, sized from ``close[i]``; the broker's ``coc`` fills
  them at the close of their creation bar, ``i``.
- ``close``: decision and fill at the close of ``i`` (``coc`` again). Placing these orders before the
  broker's step of bar ``i``, rather than in ``next()`` of bar ``i`` where backtrader would book them
  one step later, keeps the equity at the close of ``i`` net of their costs and lets the last bar's
  decision fill, exactly like the vectorbt engine. A ``next_*`` decision on the last bar has no fill
  in either engine.

Bars a symbol did not trade: the feeds carry its last close forward (what the broker values the position
at), but the strategy decides on :class:`qf.engines.inputs.SimInputs`, where such a bar has no fill price,
so no order is ever placed on it (it waits for the symbol's next real bar); a delisted symbol is closed on
its last bar or held at its last close, as ``execution.on_delist`` says (see :mod:`qf.engines.inputs`).

Costs: :class:`qf.engines.backtrader.commission.QfCommission` charges ``fees * value + fixed_fees`` per order, and
the broker's percentage slippage is set with ``slip_out`` so that it is ``price * (1 +/- slippage)`` even
outside the bar's high/low, as in vectorbt. Under a cost model (:mod:`qf.engines.costs`) each order carries
the slippage fraction the planner computed for it (``order.info.qf_slippage``), and the broker uses that
fraction for that order (see :func:`per_order_slippage`), so a spread or an impact that depends on the bar
and the order's size fills at the very price vectorbt fills it at. Backtrader's submission check is off (it
prices orders without slippage and cannot tell the legs of a reversal apart); the execution's own cash check
stays, and an order it refuses is an engine error, not a silent skip.

Targets come either precomputed (a backtest) or, with ``experiment=``, from
:func:`qf.pipeline.targets_at` on the trailing window at each rebalance (the path paper trading uses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import backtrader as bt
import numpy as np
import pandas as pd

from qf.bars import Bars, valuation_bars
from qf.components import Broker
from qf.config.loader import LoadedExperiment
from qf.config.schema import ExecutionSpec
from qf.engines.backtrader.commission import QfCommission
from qf.engines.backtrader.feed import feeds_from_bars
from qf.engines.costs import CostArrays
from qf.engines.decision import DecisionStep
from qf.engines.inputs import SimInputs, build_inputs
from qf.engines.kernels.risk import RiskStack, as_stack
from qf.engines.kernels.step import fill_value_nb
from qf.engines.result import EngineResult
from qf.errors import QfError
from qf.pipeline import risk_config, targets_at
from qf.rebalance import rebalance_dates


@dataclass
class BacktestPlan:
    """Everything :class:`QfStrategy` needs: the fill-bar arrays, the costs and, in incremental mode, the
    experiment whose pipeline it re-runs at each decision date.

    Example::

        plan = BacktestPlan(build_inputs(bars, targets, risk, execution), execution, risk)
    """

    inputs: SimInputs
    execution: ExecutionSpec
    risk: RiskStack
    experiment: LoadedExperiment | None = None
    bars: Bars | None = None
    decisions: np.ndarray | None = None  # bool per bar: a rebalance decision is made at its close

    @property
    def incremental(self) -> bool:
        return self.experiment is not None


def fit_to_cash(sizes: np.ndarray, order: np.ndarray, cash: float, prices: np.ndarray,
                held: list[tuple[float, float]], fees: float, fixed_fees: float, slippage: float | np.ndarray,
                integer: bool, tolerance: float) -> None:
    """Trim, in place, a buy that backtrader's cash check would refuse by a rounding error.

    The planner makes the buys affordable in its own arithmetic; backtrader books a fill in a different
    order of operations (``held`` is each symbol's broker position size and average price), so when the
    buys spend the cash to the last cent the final one can come out a few 1e-12 short. This replays
    ``BackBroker._execute``'s cash arithmetic and shaves such a buy by the shortfall (one share in
    integer mode). A shortfall above ``tolerance`` is a planner bug and raises. ``slippage`` is one fraction
    for every order or each order's own (an array by symbol).

    Example::

        sizes = np.array([1.0 + 1e-15])   # a hair over the 100.0 of cash at 100.0
        fit_to_cash(sizes, np.array([0]), 100.0, np.array([100.0]), [(0.0, 0.0)], 0.0, 0.0, 0.0, False, 1e-7)
        sizes[0] * 100.0 <= 100.0         # True
    """
    c = cash
    for k in order:
        s = sizes[k]
        if s == 0.0:
            continue
        slip = float(slippage[k]) if np.ndim(slippage) else slippage
        p = prices[k] * (1.0 + slip) if s > 0 else prices[k] * (1.0 - slip)
        size, pprice = held[k]
        trial = c
        for _ in range(64):
            closed, opened = _legs(size, s)
            trial = c
            if closed:
                trial += -closed * pprice + -closed * (p - pprice)
                trial -= abs(closed) * p * fees + fixed_fees
            if opened:
                trial -= opened * p
                trial -= abs(opened) * p * fees + (0.0 if closed else fixed_fees)
            if opened <= 0.0 or trial >= 0.0:
                break
            if -trial > tolerance:
                raise QfError(f"planned buy of {s:g} units costs {-trial:g} more cash than the broker has "
                              "(an order-planner bug)")
            s = s - 1.0 if integer else s - 2.0 * (-trial) / (p * (1.0 + fees)) - abs(s) * 1e-15
            if s <= 0.0:
                s, trial = 0.0, c
                break
        sizes[k] = s
        c = trial


def _legs(size: float, s: float) -> tuple[float, float]:
    """(closed, opened) parts of an order of ``s`` on a position of ``size``, as backtrader's Position splits it."""
    after = size + s
    if after == 0.0:
        return s, 0.0
    if size == 0.0 or (size > 0) == (s > 0):
        return 0.0, s
    if (after > 0) == (size > 0):
        return s, 0.0
    return -size, after


class DecisionStrategy(bt.Strategy):
    """A backtrader strategy that trades what a :class:`qf.engines.decision.DecisionStep` decides: the
    broker's state goes into the step, its orders go to the broker (sells first) and the broker's fills
    go back to it. The backtest strategy and the replayed paper session are this class, timed differently.

    A subclass calls ``super().__init__(step, cost_arrays)``, implements :meth:`_at_open` / :meth:`_at_close`
    (backtrader's ``next_open`` / ``next`` and their warm-up variants land there) and calls
    :meth:`_place_orders` where orders are placed; it may override :meth:`_on_fill` to see each booked fill.

    Example::

        class Mine(DecisionStrategy):
            def __init__(self) -> None:
                super().__init__(DecisionStep(len(self.datas), execution, risk, rows=T), costs)
    """

    def __init__(self, step: DecisionStep, cost_arrays: CostArrays | None = None) -> None:
        super().__init__()
        self.step = step
        # the cost model's arrays (each order carries its own slippage fraction); None: execution.slippage
        self.cost_arrays = cost_arrays
        self.position_now = np.zeros(step.n)
        self.placed: dict[int, tuple[int, int]] = {}  # backtrader order ref -> (fill bar, column)
        self.refused: list[str] = []

    # backtrader calls a different method before its minimum period is met; qf has no warm-up here.
    # With cheat_on_open, ``*_open`` runs before the broker fills bar i, the others at its close.
    def prenext_open(self) -> None:
        self._at_open()

    def nextstart_open(self) -> None:
        self._at_open()

    def next_open(self) -> None:
        self._at_open()

    def prenext(self) -> None:
        self._at_close()

    def nextstart(self) -> None:
        self._at_close()

    def next(self) -> None:
        self._at_close()

    def _at_open(self) -> None:
        """Before the broker processes the current bar (cerebro's ``cheat_on_open``)."""

    def _at_close(self) -> None:
        """At the current bar's close."""

    def _place_orders(self, i: int, lag: int, exec_price: np.ndarray, close: np.ndarray, targets: np.ndarray,
                      vol: np.ndarray, listed: np.ndarray) -> None:
        """Run the shared decision step on the broker's state and send its orders, sells first."""
        step = self.step
        if not step.active and np.isnan(targets[i]).all():
            return  # nothing can trade at this bar: no target and no stateful rule to evaluate
        broker = self.broker
        cash = broker.getcash()
        pos = self.position_now
        held: list[tuple[float, float]] = []
        for k, data in enumerate(self.datas):
            if listed[k]:
                p = broker.getposition(data)
                pos[k] = p.size
                held.append((p.size, p.price))
            else:
                pos[k] = 0.0
                held.append((0.0, 0.0))
        c = self.cost_arrays
        sizes = step.decide(i, lag, cash, pos, exec_price, close, targets, vol, c)
        if not sizes.any():
            return
        slip = step.slippage if c is None else step.slip_out
        order = np.argsort(sizes, kind="mergesort")  # sells (negative) first, stable: vectorbt's call order
        value = abs(fill_value_nb(cash, pos, exec_price[i], close[i]))
        fit_to_cash(sizes, order, cash, exec_price[i], held, step.fees, step.fixed_fees, slip, step.integer,
                    tolerance=1e-9 * max(1.0, value))
        for k in order:
            q = float(sizes[k])
            if q == 0.0:
                continue
            data = self.datas[k]
            info = {} if c is None else {"qf_slippage": float(slip[k])}
            o = self.buy(data=data, size=q, **info) if q > 0 else self.sell(data=data, size=-q, **info)
            self.placed[o.ref] = (i, k)

    def notify_order(self, order: bt.Order) -> None:
        """Book a fill in the step (average prices for the stops); a refused order is kept in ``refused``."""
        if order.status in (order.Submitted, order.Accepted):
            return
        i, k = self.placed[order.ref]
        side = "buy" if order.isbuy() else "sell"
        if order.status != order.Completed:
            self.refused.append(f"{self._time(i):%Y-%m-%d} {self._symbol(k)} {side} {abs(order.size):g}: "
                                f"{order.getstatusname()}")
            return
        ex = order.executed
        qty = abs(ex.size)
        price = ex.exbits[-1].price if ex.exbits else ex.price  # the fill's own price, not a re-averaged one
        self.step.book_fill(i, k, side, qty, price, float(ex.comm))
        self._on_fill(i, k, side, qty, price, float(ex.comm))

    def _on_fill(self, i: int, k: int, side: str, quantity: float, price: float, fee: float) -> None:
        """Called after each booked fill (the paper session journals it)."""

    def _time(self, i: int) -> pd.Timestamp:
        raise NotImplementedError

    def _symbol(self, k: int) -> str:
        raise NotImplementedError


class QfStrategy(DecisionStrategy):
    """qf's generic strategy: executes targets through the shared risk and order-planning kernels.

    Built by :func:`run_backtrader`; ``plan`` is a :class:`BacktestPlan`. Equity at each close is collected
    in ``equity``; fills and risk events in ``step`` (a :class:`qf.engines.decision.DecisionStep`).

    Example::

        cerebro = bt.Cerebro(stdstats=False, cheat_on_open=True)
        cerebro.addstrategy(QfStrategy, plan=plan)
    """

    params = (("plan", None),)

    def __init__(self) -> None:
        plan: BacktestPlan = self.p.plan
        inp = plan.inputs
        T, N = inp.close.shape
        ex = plan.execution
        costs = inp.costs if inp.costs is not None else CostArrays.constant((T, N), float(ex.slippage))
        super().__init__(DecisionStep(N, ex, plan.risk, rows=T), costs)
        self.plan = plan
        self.inputs = inp
        self.T, self.N = T, N
        self.equity = np.full(T, np.nan)
        # first bar with a price: the broker is never asked about a symbol before it
        self.first_bar = inp.first_bar

    def _bar(self) -> int:
        return len(self.datas[0]) - 1

    def _time(self, i: int) -> pd.Timestamp:
        return self.inputs.index[i]

    def _symbol(self, k: int) -> str:
        return self.inputs.symbols[k]

    def _targets_for(self, d: int) -> None:
        """Incremental mode: run the pipeline on the window ending at decision bar ``d``."""
        inp, plan = self.inputs, self.plan
        i = d + inp.lag
        if i >= self.T or plan.decisions is None or not plan.decisions[d]:
            return
        assert plan.experiment is not None and plan.bars is not None
        row = np.array(targets_at(plan.experiment, plan.bars, inp.index[d]).reindex(inp.symbols), dtype=float)
        inp.adjust(row[None, :], np.array([i]))  # the trading calendar, as build_inputs applies it
        # a newer target replaces an order still waiting for its symbol's bar, as in a precomputed run
        inp.targets[i] = row

    def _at_open(self) -> None:
        i = self._bar()
        inp = self.inputs
        if self.plan.incremental and inp.lag == 0:
            self._targets_for(i)
        self._place_orders(i, inp.lag, inp.exec_price, inp.close, inp.targets, inp.risk_inputs, i >= self.first_bar)

    def _at_close(self) -> None:
        i = self._bar()
        self.equity[i] = self.broker.getvalue()
        if self.plan.incremental and self.inputs.lag == 1:
            self._targets_for(i)


def _sim_broker(execution: ExecutionSpec) -> bt.brokers.BackBroker:
    b = bt.brokers.BackBroker()
    b.setcash(execution.initial_cash)
    b.addcommissioninfo(QfCommission(commission=execution.fees, fixed=execution.fixed_fees))
    return b


def per_order_slippage(b: bt.brokers.BackBroker) -> None:
    """Make ``b`` fill an order carrying ``info.qf_slippage`` at that slippage fraction (``slip_out`` as
    :func:`configure_broker` sets it), other orders at the broker's own.

    ``BackBroker`` has one slippage setting, read when it executes an order; the wrapper sets it from the
    order just before, and puts the broker's own back after.

    Example::

        b = bt.brokers.BackBroker()
        per_order_slippage(b)
        strategy.buy(data=d, size=10, qf_slippage=0.0012)   # fills at price * 1.0012
    """
    execute = b._try_exec

    def _try_exec(order: bt.Order) -> None:
        slip = order.info.get("qf_slippage")
        if slip is None:
            return execute(order)
        own = b.p.slip_perc
        b.p.slip_perc = slip
        try:
            return execute(order)
        finally:
            b.p.slip_perc = own

    b._try_exec = _try_exec


def configure_broker(b: bt.brokers.BackBroker, execution: ExecutionSpec) -> None:
    """Apply the fill convention and slippage of ``execution`` to a backtrader simulated broker.

    Example::

        b = bt.brokers.BackBroker()
        configure_broker(b, ExecutionSpec(fill="next_close", slippage=0.0005))
        b.p.coc, b.p.slip_out   # (True, True)
    """
    b.set_coc(execution.fill in ("close", "next_close"))
    b.set_coo(execution.fill == "next_open")
    # slip_out: the slipped price even outside the bar's range, as vectorbt fills; slip_open: market orders slip
    b.set_slippage_perc(execution.slippage, slip_open=True, slip_limit=True, slip_match=True, slip_out=True)
    b.set_checksubmit(False)


def run_backtrader(
    bars: Bars,
    targets: pd.DataFrame | None = None,
    risk: RiskStack | None = None,
    execution: ExecutionSpec | None = None,
    *,
    broker: Broker | None = None,
    experiment: LoadedExperiment | None = None,
) -> EngineResult:
    """Run the targets bar by bar in backtrader; the result matches :func:`qf.engines.vectorbt.run_vectorbt`.

    Give either ``targets`` (weights indexed by decision dates, as :func:`qf.pipeline.compute_targets`
    makes them) or ``experiment=`` without targets: then the strategy recomputes the targets from the
    trailing window at each rebalance date with :func:`qf.pipeline.targets_at` (slower: the pipeline runs
    once per rebalance). ``risk``, ``execution`` and ``broker`` default to the experiment's; without an
    experiment, to no stateful rule, :class:`ExecutionSpec` defaults and backtrader's simulated broker with
    :class:`QfCommission`.

    Example::

        tg = compute_targets(exp, bars)
        res = run_backtrader(bars, tg.targets, tg.risk, exp.spec.execution, broker=exp.broker)
        live_like = run_backtrader(bars, experiment=exp)   # same orders, computed incrementally
    """
    if targets is None and experiment is None:
        raise QfError("run_backtrader needs precomputed targets or an experiment to compute them from")
    if experiment is not None:
        execution = execution or experiment.spec.execution
        risk = risk if risk is not None else risk_config(experiment)
        broker = broker or experiment.broker
    execution = execution or ExecutionSpec()
    risk = as_stack(risk)

    incremental = targets is None
    decisions = None
    if incremental:
        assert experiment is not None
        targets = pd.DataFrame(index=pd.DatetimeIndex([]), columns=bars.symbols, dtype=float)
        decisions = bars.index.isin(rebalance_dates(bars.index, experiment.spec.rebalance))
    assert targets is not None
    inputs = build_inputs(bars, targets, risk, execution)
    inputs.targets = np.array(inputs.targets)  # the strategy writes into it in incremental mode
    plan = BacktestPlan(inputs, execution, risk, experiment if incremental else None,
                        bars if incremental else None, decisions)

    b = broker.create(execution) if broker is not None else _sim_broker(execution)
    if not isinstance(b, bt.brokers.BackBroker):
        raise QfError(f"backtests need a simulated broker; {type(b).__name__} is not backtrader's BackBroker "
                      "(use broker: {type: sim})")
    if not math.isclose(b.getcash(), execution.initial_cash, rel_tol=1e-12):
        raise QfError(f"the broker starts with {b.getcash():,.2f} in cash but execution.initial_cash is "
                      f"{execution.initial_cash:,.2f}")
    configure_broker(b, execution)
    per_order_slippage(b)

    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=True, broker_coo=False, runonce=True, preload=True,
                         maxcpus=1, tradehistory=False)
    cerebro.setbroker(b)
    # the broker values positions at the feed's close: carried forward where a symbol has no bar (a gap, after
    # a delisting); the strategy never trades there (its exec_price is NaN)
    for feed in feeds_from_bars(valuation_bars(bars)):
        cerebro.adddata(feed, name=feed.p.dataname)
    cerebro.addstrategy(QfStrategy, plan=plan)
    strat: QfStrategy = cerebro.run()[0]
    if strat.refused:
        raise QfError(f"backtrader refused {len(strat.refused)} planned order(s) (an engine bug): "
                      + "; ".join(strat.refused[:5]))

    equity = pd.Series(strat.equity, index=inputs.index, name="equity")
    orders = strat.step.orders_frame(inputs.index, inputs.symbols)
    events = strat.step.events_frame(inputs.index, inputs.symbols, inputs.delisted_at)
    mode = "incremental" if incremental else "precomputed"
    return EngineResult("backtrader", equity, orders, events, {"mode": mode, "broker": b})
