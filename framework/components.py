"""Base classes of the pipeline's components.

Every component is a plain class with a class-level ``name`` (what YAML's ``type:`` refers to) and a
pydantic ``Params`` model that forbids unknown fields, so a YAML file is validated before any data is
loaded. The pipeline is::

    DataSource --bars--> SignalModel --signal--> Sizer --weights--> RiskRule(s) --targets--> Engine
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

if TYPE_CHECKING:
    from qf.bars import Bars
    from qf.paper.broker import BrokerView
    from qf.paper.feed import BarSource


_FLAT: dict[Any, list[Any]] = {}


def _flat_types(annotation: Any) -> list[Any]:
    """The types an annotation admits at its top level: ``int | None`` -> [int, None]. Remembered per
    annotation: every params model validates each of its fields through this (a sweep, per combination)."""
    try:
        return _FLAT[annotation]
    except KeyError:
        flat = _FLAT[annotation] = _flatten(annotation)
        return flat
    except TypeError:  # an unhashable annotation
        return _flatten(annotation)


def _flatten(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _flatten(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _flatten(arg)]
    return [annotation]


def refuse_bool_for_number(value: Any, annotation: Any) -> None:
    """Raise ``ValueError`` when ``value`` holds a boolean where ``annotation`` wants a number, or a number
    too big for the C int64 an integer field ends up in (numpy, numba).

    pydantic's lax mode reads ``fast: true`` as 1 and ``fast: 1.0e+19`` as an integer no array can hold;
    both are typos in a config file. Lists and tuples of numbers are checked item by item.

    Example::

        refuse_bool_for_number(True, int | None)   # ValueError: expected a number, got the boolean true
        refuse_bool_for_number(True, bool)         # fine
    """
    flat = _flat_types(annotation)
    if isinstance(value, bool):
        if bool not in flat and any(t in (int, float) for t in flat):
            raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
        return
    if isinstance(value, int | float) and int in flat and float not in flat and not -(2**63) <= value < 2**63:
        raise ValueError(f"{value:g} does not fit a 64-bit integer")
    if isinstance(value, (list, tuple)):
        for t in flat:
            if typing.get_origin(t) in (list, tuple, set, frozenset):
                args = [a for a in typing.get_args(t) if a is not Ellipsis]
                for i, item in enumerate(value):
                    if args:
                        try:
                            refuse_bool_for_number(item, args[min(i, len(args) - 1)])
                        except ValueError as exc:
                            raise ValueError(f"item {i}: {exc}") from None


class NumbersNotBools(BaseModel):
    """A pydantic base that refuses booleans (and lists holding them) for number fields.

    Example::

        class P(NumbersNotBools):
            n: int = 1

        P(n=True)  # ValidationError: n: expected a number, got the boolean true
    """

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None:
            refuse_bool_for_number(value, field.annotation)
        return value


class Params(NumbersNotBools):
    """Base of every component's parameters: unknown fields are errors, values are immutable.

    Booleans are refused for number fields and numbers must be finite (``.inf``, ``nan`` and ``1e400``
    are errors): neither is a value a backtest can use.

    Example::

        class SmaParams(Params):
            fast: int = 10
            slow: int = 50
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Component:
    """A named, parameterised pipeline stage.

    Example::

        class Always(SignalModel):
            name = "always"

            def compute(self, bars):
                return bars.close * 0 + 1.0

        Always({}).params  # -> Params()
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params | Mapping[str, Any] | None = None) -> None:
        if isinstance(params, self.Params):
            self.params = params
        else:
            self.params = self.Params(**dict(params or {}))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


class DataSource(Component):
    """Loads market data and returns validated :class:`qf.bars.Bars`.

    Example::

        class Constant(DataSource):
            name = "constant"

            def load(self):
                idx = pd.bdate_range("2020-01-01", periods=10)
                return Bars(close=pd.DataFrame({"X": 1.0}, index=idx), source="constant")
    """

    kind = "data"
    # True for sources that need no network or keys (packaged or local files): ``qf validate`` loads them to
    # check what depends on the data's length
    loads_offline: ClassVar[bool] = False

    def load(self) -> Bars:
        raise NotImplementedError


class SignalModel(Component):
    """Scores each symbol at each bar in [-1, 1]; row t may use bars up to and including t only.

    ``fields`` lists the bar fields the model needs (checked before computing). ``warmup`` is how many
    bars the model needs before its first meaningful row. ``history`` is how many trailing bars (the
    decision bar included) the live path must load for row t to equal the full-history row t: by
    default ``warmup + 1``; a model whose row t depends on where the history starts (a holding state,
    a recursive average) returns a larger bound, or ``None`` for "the whole available history" (see
    :func:`history_of`).

    Example::

        class Always(SignalModel):
            name = "always"

            def compute(self, bars):
                return bars.close * 0 + 1.0
    """

    kind = "signal"
    fields: ClassVar[tuple[str, ...]] = ("close",)

    @property
    def warmup(self) -> int:
        return 0

    @property
    def history(self) -> int | None:
        return int(self.warmup) + 1

    def compute(self, bars: Bars) -> pd.DataFrame:
        raise NotImplementedError


class Sizer(Component):
    """Turns signals into target weights on the rebalance dates.

    ``size`` returns a frame indexed by ``dates`` (a subset of ``bars.index``), one column per symbol;
    the row for date t may use signal and bars up to t only. Weights are fractions of equity; a
    negative weight is a short. ``warmup`` and ``history`` mean what they mean for a :class:`SignalModel`
    (the weights for date t computed from the trailing ``history`` bars equal the full-history weights).

    Example::

        class Equal(Sizer):
            name = "equal"

            def size(self, signal, bars, dates):
                s = signal.loc[dates].clip(lower=0)
                n = (s > 0).sum(axis=1).replace(0, 1)
                return (s > 0).astype(float).div(n, axis=0)
    """

    kind = "sizer"

    @property
    def warmup(self) -> int:
        return 0

    @property
    def history(self) -> int | None:
        return int(self.warmup) + 1


def history_of(component: Any) -> int | None:
    """Trailing bars (the decision bar included) a signal model or sizer needs on the live path for its
    row t to equal the full-history row t; ``None`` when it needs the whole available history.

    Reads the component's ``history`` (any object: third-party components need not subclass
    :class:`SignalModel`), else ``warmup + 1``.

    Example::

        history_of(SmaCross({"fast": 5, "slow": 20}))   # 20: warmup 19 + the decision bar
        history_of(Swing({}))                           # None: a path-dependent holding state
    """
    warmup = int(getattr(component, "warmup", 0) or 0)
    h = getattr(component, "history", warmup + 1)
    if h is None:
        return None
    if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
        raise ValueError(f"{type(component).__name__}.history must be a whole number of bars >= 1 or None, got {h!r}")
    return int(h)

    def size(self, signal: pd.DataFrame, bars: Bars, dates: pd.DatetimeIndex) -> pd.DataFrame:
        raise NotImplementedError


class RiskRule(Component):
    """A risk rule. Stateless rules transform target weights on rebalance dates (``apply``).

    Stateful rules (``stateful = True``) react to the simulated or live portfolio; they do not
    transform weights but bring a numba step that every engine and paper trading run at each bar (see
    :class:`StatefulRiskRule`), which is what makes them behave the same everywhere.

    Example::

        class Cap(RiskRule):
            name = "cap"

            def apply(self, weights, bars):
                return weights.clip(upper=0.2)
    """

    kind = "risk"
    stateful: ClassVar[bool] = False

    def apply(self, weights: pd.DataFrame, bars: Bars) -> pd.DataFrame:
        raise NotImplementedError


@dataclass(frozen=True)
class RuleStatus:
    """What a stateful risk rule says about its state, for the paper dashboard and the session's events.

    ``halted``: the rule keeps the portfolio flat; ``detail``: one short phrase about it (e.g. how long).

    Example::

        RuleStatus(halted=True, detail="3 bar(s) of cool-down left")
    """

    halted: bool = False
    detail: str = ""


class StatefulRiskRule(RiskRule):
    """A rule that watches the portfolio path (drawdown halts, loss limits, stops): the public contract.

    At every decision bar each engine (vectorbt, backtrader) and paper trading call the rule's ``step``,
    compiled by qf with ``numba.cfunc(qf.engines.kernels.risk.SIG, cache=True)``, so the rule acts
    identically everywhere at numba speed. A rule declares:

    - ``parameters()``: the floats handed to ``step`` as ``params`` (from ``self.params``);
    - ``state_size`` / ``symbol_state_size``: how many floats of state it keeps for the portfolio and per
      symbol, starting from ``initial_state()`` / ``initial_symbol_state()`` (one value per row, the same
      for every symbol). The state persists between bars (and across paper-session restarts as plain
      floats: count bars in it rather than storing bar numbers, which move when a session restarts);
    - ``n_inputs`` and ``inputs(bars)``: optional per-bar arrays, shape ``(n_inputs, bars, symbols)``, whose
      row for bar ``t`` depends on the bars up to ``t`` only (a trailing volatility, say). Backtests compute
      them once, vectorized; paper trading calls the same function on the trailing window at each bar
      (``history`` says how many bars it needs);
    - ``step(equity, close, position, avg_price, inputs, params, state, symbol_state, exits) -> int``: a
      ``staticmethod`` in numba's nopython subset, called at the close of each decision bar with the
      portfolio's equity, each symbol's close, signed position and average entry price (NaN when flat),
      the bar's ``inputs[j, n]`` and the rule's arrays. Return 1 to flatten everything (0 otherwise); set
      ``exits[n] = True`` to close symbol ``n`` (never set one False: rules share it). It must not raise.
      Helpers it calls must be ``numba.njit`` functions;
    - ``describe(params, state, symbol_state)``: a :class:`RuleStatus` (halted, and why) for the paper view.

    Rules run in the order the YAML lists them, each on its own state; any rule's flatten wins, and exits
    add up. ``qf.testing.check_risk_rule`` checks the contract.

    Example (flatten for good once equity drops below a floor)::

        class Floor(StatefulRiskRule):
            name = "floor"
            state_size = 1                       # [halted]

            class Params(Params):
                equity: float = Field(..., gt=0)

            def parameters(self):
                return [self.params.equity]

            @staticmethod
            def step(equity, close, position, avg_price, inputs, params, state, symbol_state, exits):
                if state[0] == 1.0 or equity < params[0]:
                    state[0] = 1.0
                    return 1
                return 0

            def describe(self, params, state, symbol_state):
                return RuleStatus(halted=state[0] == 1.0, detail="until an operator resets it")
    """

    stateful = True
    state_size: ClassVar[int] = 0
    symbol_state_size: ClassVar[int] = 0
    n_inputs: ClassVar[int] = 0

    def apply(self, weights: pd.DataFrame, bars: Bars) -> pd.DataFrame:
        return weights

    def parameters(self) -> Sequence[float]:
        """The ``params`` array ``step`` receives."""
        return ()

    def initial_state(self) -> Sequence[float]:
        """The portfolio-level state before the first bar (``state_size`` floats; zeros by default)."""
        return [0.0] * int(self.state_size)

    def initial_symbol_state(self) -> Sequence[float]:
        """Each per-symbol state row's starting value (``symbol_state_size`` floats; zeros by default)."""
        return [0.0] * int(self.symbol_state_size)

    def inputs(self, bars: Bars) -> np.ndarray | None:
        """The per-bar inputs, ``(n_inputs, len(bars.index), len(bars.symbols))``, causal; None without any."""
        return None

    @staticmethod
    def step(equity: float, close: np.ndarray, position: np.ndarray, avg_price: np.ndarray, inputs: np.ndarray,
             params: np.ndarray, state: np.ndarray, symbol_state: np.ndarray, exits: np.ndarray) -> int:
        raise NotImplementedError("a stateful risk rule defines step() (see qf.components.StatefulRiskRule)")

    def describe(self, params: np.ndarray, state: np.ndarray, symbol_state: np.ndarray) -> RuleStatus:
        """The rule's state in words; by default the rule never halts."""
        return RuleStatus()


class Broker(Component):
    """Where the backtrader engine sends orders: a simulated broker or a real one (Alpaca).

    ``create`` returns a backtrader broker instance configured for the experiment's execution model.
    ``state_dir`` is a paper session's folder: a broker that must remember something across restarts (a
    live broker's order journal, see :class:`LiveBroker`) keeps it there; a simulated broker ignores it.

    Example::

        class Sim(Broker):
            name = "sim"

            def create(self, execution, *, state_dir=None):
                return bt.brokers.BackBroker()      # keeps nothing across restarts: ignores state_dir
    """

    kind = "broker"

    def create(self, execution: Any, *, state_dir: Path | None = None) -> Any:
        raise NotImplementedError


class CostModel(Component):
    """What trading costs beyond the commission: slippage, spread, market impact, a participation cap.

    ``arrays`` turns the bars into a :class:`qf.engines.costs.CostArrays` before the simulation (vectorized,
    indexed like ``bars.close``); both engines and the order planner read only those arrays, so every
    engine charges the same. ``needs`` names the bar fields the model reads (a clear error when missing).

    Example::

        class HalfPercent(CostModel):
            name = "half_percent"

            def arrays(self, bars):
                return CostArrays.constant(bars.close.shape, slippage=0.005)
    """

    kind = "cost"
    needs: ClassVar[tuple[str, ...]] = ()

    def arrays(self, bars: Any) -> Any:
        raise NotImplementedError


KINDS: dict[str, type[Component]] = {
    "data": DataSource,
    "signal": SignalModel,
    "sizer": Sizer,
    "risk": RiskRule,
    "broker": Broker,
    "cost": CostModel,
}


# -- optional capabilities ---------------------------------------------------------------------------------
#
# A component is a SignalModel, a DataSource, ... by inheritance; what it can do beyond its kind is one of the
# Protocols below. The framework asks ``implements(component, TrainableSignal)`` (``isinstance``'s answer, faster)
# and so on, and a plugin
# author gets a capability by implementing its methods (inheriting the Protocol as well is allowed and lets a
# type checker verify the signatures). ``runtime_checkable`` checks that every member exists, not their
# signatures: tests/framework/test_capabilities.py holds each built-in to the signatures below.

_MEMBERS: dict[type, tuple[str, ...]] = {}


def implements(component: Any, capability: type) -> bool:
    """``isinstance(component, capability)`` for the capability Protocols below, at attribute-lookup speed.

    ``runtime_checkable``'s check walks the Protocol's MRO for its members on every call (~60 us on Python
    3.11; a sweep asks several times per combination). This asks the same question of the same members,
    listed once per Protocol: every member present on the component, and no method member set to None.
    A class that inherits the Protocol gets ``isinstance`` itself; only a class registered with
    ``Protocol.register`` and missing the members would differ (qf's capabilities are structural).
    ``tests/framework/test_implements.py`` holds it to ``isinstance`` for every built-in and odd cases.

    Example::

        implements(exp.signal, TrainableSignal)   # True for xgboost, False for sma_cross
    """
    if capability in type(component).__mro__:  # declared by inheritance: runtime_checkable's own rules apply
        return isinstance(component, capability)
    members = _MEMBERS.get(capability)
    if members is None:
        attrs = getattr(capability, "__protocol_attrs__", None)
        if attrs is None:  # Python 3.11
            attrs = typing._get_protocol_attrs(capability)  # type: ignore[attr-defined]
        members = _MEMBERS[capability] = tuple(sorted(attrs))
    for name in members:
        if not hasattr(component, name):
            return False
        if callable(getattr(capability, name, None)) and getattr(component, name) is None:
            return False
    return True


RefStatus = Literal["none", "open", "done", "lost", "rejected"]
"""What became of the order(s) a live broker sent for a decision reference (see :meth:`LiveBroker.ref_status`)."""


@runtime_checkable
class PathResolving(Protocol):
    """A component whose params hold file paths that are relative to the experiment file.

    The loader calls ``resolve_paths(folder of the YAML file)`` right after building the component, so
    ``path: prices.csv`` means the file next to the experiment, whatever the working directory. The
    return value is ignored (built-ins return ``self`` for chaining).

    Example::

        class Csv(DataSource):
            name = "csv"

            class Params(Params):
                path: str

            def resolve_paths(self, base_dir: Path) -> Csv:
                self.base_dir = Path(base_dir)
                return self

        isinstance(Csv({"path": "x.csv"}), PathResolving)   # True
    """

    def resolve_paths(self, base_dir: str | Path) -> object:
        """Anchor relative paths of the params at ``base_dir`` (the experiment file's folder)."""
        ...


@runtime_checkable
class TrainableSignal(Protocol):
    """A signal model that is fitted before it scores: walk-forward fits it on each fold's training window.

    The framework (``qf walk-forward``, sweeps, cpcv) calls, for a model that is an instance of this protocol:

    - ``fit(train_bars)`` on the training bars only (labels must not reach past them), returning ``self``;
    - ``evaluate(bars, test)`` after ``compute`` on a fold: model metrics (accuracy, log loss, ...) on the
      rows ``bars.index[test]``, written to the fold's row of ``folds.csv``;
    - ``save(directory)`` to keep each fold's fitted model in the report (``models/fold_<k>``, ``models/final``),
      returning the folder written;
    - the classmethod ``summarize(fitted, directory)`` once with every fold's fitted model, to write summary
      files (feature importance across folds, ...) into the report folder.

    A model without a use for one of them implements it as a no-op (``evaluate`` returning ``{}``).

    Example::

        class MeanReverter(SignalModel):
            name = "mean_reverter"

            def fit(self, train_bars):
                self.mean = train_bars.close.mean()
                return self

            def compute(self, bars):
                return (self.mean - bars.close).clip(-1, 1)

            def evaluate(self, bars, test):
                return {}

            def save(self, directory):
                Path(directory).mkdir(parents=True, exist_ok=True)
                self.mean.to_csv(Path(directory) / "mean.csv")
                return Path(directory)

            @classmethod
            def summarize(cls, fitted, directory):
                pass

        isinstance(MeanReverter({}), TrainableSignal)   # True
    """

    def fit(self, train_bars: Bars) -> Any:
        """Fit on ``train_bars`` (and only on them); returns ``self``."""
        ...

    def evaluate(self, bars: Bars, test: slice) -> dict[str, float]:
        """Model metrics on the rows ``bars.index[test]`` (a fitted model, out of sample)."""
        ...

    def save(self, directory: str | Path) -> Path:
        """Write the fitted model into ``directory``; returns the folder."""
        ...

    @classmethod
    def summarize(cls, fitted: list[Any], directory: str | Path) -> None:
        """Write summary files of every fold's fitted model (``fitted``, in fold order) into the report folder."""
        ...


@runtime_checkable
class HistorySharing(Protocol):
    """A trainable signal whose walk-forward folds can score their histories from inputs built once.

    Every walk-forward fold scores the history up to its test window's end, a prefix of the full data. A
    model that is an instance of this protocol gets, after its fold's ``fit``, the full data and one dict per
    run (shared by every fold's model, also across the fold threads): it may keep there what it builds
    from the full data (features, say) and serve each prefix from it. It must return exactly what it would
    have computed from the prefix alone -- the walk-forward's models and numbers may not change -- and
    guard the dict itself when it fills it lazily (folds run on several threads). The return value is
    ignored.

    Example::

        class Model(SignalModel):            # also a TrainableSignal
            def share_history(self, bars, shared):
                key = ("model.features", id(bars))
                self.features = shared.setdefault(key, FeatureCache(bars))   # built on first use
                return self

        isinstance(Model({}), HistorySharing)   # True
    """

    def share_history(self, bars: Bars, shared: dict[Any, Any]) -> object:
        """Every history this model will score is a prefix of ``bars``; keep builds for all folds in ``shared``."""
        ...


@runtime_checkable
class ForecastBands(Protocol):
    """A signal model that forecasts quantiles of the forward return (a band), not only a score.

    ``forecast_bands(bars)`` returns one frame per quantile level (``{0.25: frame, 0.5: frame, ...}``), each
    shaped like ``bars.close`` (dates x symbols): row t is the forecast of the return over the model's
    horizon from t, made with bars up to t only (NaN where the model has no forecast). A sizer that reads
    bands (see :class:`UsesForecastBands`) gets the signal model handed over by the pipeline.

    Example::

        class Bands(SignalModel):
            name = "bands"

            def compute(self, bars):
                return np.sign(self.forecast_bands(bars)[0.5])

            def forecast_bands(self, bars):
                r = bars.close.pct_change(5)              # a naive forecast: the last 5 bars' return
                return {0.25: r - 0.02, 0.5: r, 0.75: r + 0.02}

        isinstance(Bands({}), ForecastBands)   # True
    """

    def forecast_bands(self, bars: Bars) -> dict[float, pd.DataFrame]:
        """Quantile level -> forecast frame (dates x symbols of ``bars``), row t from bars up to t."""
        ...


@runtime_checkable
class UsesForecastBands(Protocol):
    """A sizer that sizes from the signal model's forecast bands (:class:`ForecastBands`).

    The pipeline calls ``use_forecast_bands(model)`` with the experiment's signal model before every
    ``size``; a signal model that is not a :class:`ForecastBands` is refused there (one ``error:`` line).
    ``size`` then asks ``model.forecast_bands(bars)`` for the bars it is given (never more), so the
    look-ahead checks that cut the bars cut the bands too.

    Example::

        class MedianOverSpread(Sizer):
            name = "median_over_spread"

            def use_forecast_bands(self, model):
                self.model = model

            def size(self, signal, bars, dates):
                b = self.model.forecast_bands(bars)
                w = (b[0.5] / (b[0.75] - b[0.25])).clip(0, 0.2)
                return w.reindex(dates).fillna(0.0)

        isinstance(MedianOverSpread({}), UsesForecastBands)   # True
    """

    def use_forecast_bands(self, model: ForecastBands) -> None:
        """Keep ``model`` (the experiment's signal model) to ask for its bands in ``size``."""
        ...


@runtime_checkable
class LiveDataSource(Protocol):
    """A data source that can also stream completed bars to a live paper session (``qf paper`` with a live broker).

    ``live_source(min_history=n)`` returns a :class:`qf.paper.feed.BarSource`: ``history()`` with at least
    ``n`` completed bars (the history the pipeline declares, see :func:`history_of`; ``None``: as much as
    the source has, for a path-dependent pipeline), then ``poll(timeout)`` for each new completed bar,
    ``is_decision(t, rebalance, anchor)`` from the market's calendar and ``close()``. The source's params
    must list the ``symbols`` it trades (the session binds its state to them). Extra keyword arguments are
    the source's own (e.g. injected API clients in tests).

    Example::

        class Replay(DataSource):
            name = "replay"

            def load(self):
                return sample_bars()

            def live_source(self, min_history: int | None = 1, **options):
                return ReplaySource(self.load(), start=min_history or 60, speed=1.0)

        isinstance(Replay({}), LiveDataSource)   # True
    """

    def live_source(self, min_history: int | None = 1, **options: Any) -> BarSource:
        """A bar source whose ``history()`` holds at least ``min_history`` completed bars (None: all it has)."""
        ...


@runtime_checkable
class LiveBroker(Protocol):
    """The interface, beyond backtrader's ``BrokerBase``, of a broker that trades a real (paper) account.

    A broker component supports live paper trading when its ``create(execution, *, state_dir=None)``
    returns a ``bt.BrokerBase`` that is also a ``LiveBroker``; ``state_dir`` is the session's folder, where
    the broker keeps what must survive a crash (its order journal). Backtrader's own ``buy``/``sell``/
    ``cancel``/``getcash``/``getvalue``/``getposition``/``next`` trade; these members make it restart-safe:
    reconcile before anything else, tell whether a decision's order already reached the broker, cancel
    what is still working, the kill switch, a buying-power figure, and the broker's own fill log.

    ``ref`` is a decision reference ``<YYYYMMDD>_<SYMBOL>`` that the paper strategy passes to
    ``buy``/``sell`` as ``qf_ref=``; the broker derives a deterministic client order id from it, so the same
    decision after a restart is recognised instead of sent twice. :class:`qf.testing.FakeLiveBroker` is an
    in-memory implementation to test against.

    Example::

        broker = exp.broker.create(exp.spec.execution, state_dir=Path(".qf/paper/x"))
        if isinstance(broker, LiveBroker):
            broker.connect()                      # credentials, restart reconciliation
            broker.sync()
            broker.ref_status("20240105_AAPL")    # "none" | "open" | "done" | "lost" | "rejected"
    """

    name: str
    listeners: list[Callable[[], None]]  # called from ``next()`` after fills or cancels of any order

    def connect(self) -> None:
        """Credentials from the environment, REST pre-check, restart reconciliation (before anything else)."""
        ...

    def disconnect(self, reconcile: bool = True) -> None:
        """A last reconciliation (unless after a crash), then stop streams and threads."""
        ...

    def close(self) -> None:
        """Release what :meth:`connect` opened (journal files); the session calls it last, also after a crash."""
        ...

    def sync(self) -> None:
        """Refresh cash, positions and buying power from the broker (the truth for a decision)."""
        ...

    def position_of(self, symbol: str) -> tuple[float, float]:
        """(quantity, average entry price) of ``symbol`` after the last :meth:`sync`."""
        ...

    def cash_reserve(self, equity: float) -> float:
        """Cash kept out of sizing so an order sized at the last close stays affordable at the open."""
        ...

    def buying_power(self) -> float:
        """What new buys may spend now (after the last :meth:`sync`)."""
        ...

    def open_refs(self) -> list[str]:
        """References of this session's orders still working at the broker."""
        ...

    def cancel_open(self, timeout: float) -> None:
        """Cancel this session's working orders and wait (up to ``timeout``) until they are final."""
        ...

    def ref_status(self, ref: str) -> RefStatus:
        """What became of the order(s) sent for ``ref`` (``lost``: journaled but never reached the broker)."""
        ...

    def kill_switch(self, reason: str, decision: pd.Timestamp | None = None) -> None:
        """Persist a halt, cancel every open order and close every position.

        ``decision`` is the bar whose decision fired it: the closing orders' ids name it, so the broker's
        journal ties every order to a decision.
        """
        ...

    def resume(self) -> None:
        """Clear a persisted halt (the risk rule's cool-down is over)."""
        ...

    def halted(self) -> tuple[bool, str | None]:
        """(halted?, reason) as persisted by the kill switch."""
        ...

    def flatten(self, timeout: float) -> int:
        """Cancel everything and close every position with orders the broker's journal records (ids naming
        the flatten); returns the number of closing orders."""
        ...

    def fills_frame(self) -> pd.DataFrame:
        """Every fill of this session from the broker's journal, as ``orders.csv`` columns."""
        ...

    def view(self) -> BrokerView:
        """A snapshot for the live view."""
        ...
