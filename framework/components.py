"""Base classes of the pipeline's components.

Every component is a plain class with a class-level ``name`` (what YAML's ``type:`` refers to) and a
pydantic ``Params`` model that forbids unknown fields, so a YAML file is validated before any data is
loaded. The pipeline is::

    DataSource --bars--> SignalModel --signal--> Sizer --weights--> RiskRule(s) --targets--> Engine
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

if TYPE_CHECKING:
    from qf.bars import Bars


def _flat_types(annotation: Any) -> list[Any]:
    """The types an annotation admits at its top level: ``int | None`` -> [int, None]."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _flat_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _flat_types(arg)]
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
    bars the model needs before its first meaningful row (used by paper trading's trailing window).

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

    def compute(self, bars: Bars) -> pd.DataFrame:
        raise NotImplementedError


class Sizer(Component):
    """Turns signals into target weights on the rebalance dates.

    ``size`` returns a frame indexed by ``dates`` (a subset of ``bars.index``), one column per symbol;
    the row for date t may use signal and bars up to t only. Weights are fractions of equity; a
    negative weight is a short.

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

    def size(self, signal: pd.DataFrame, bars: Bars, dates: pd.DatetimeIndex) -> pd.DataFrame:
        raise NotImplementedError


class RiskRule(Component):
    """A risk rule. Stateless rules transform target weights on rebalance dates (``apply``).

    Stateful rules (``stateful = True``) react to the simulated or live portfolio; they do not
    transform weights but configure the shared risk kernel both engines run (see
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


class StatefulRiskRule(RiskRule):
    """A rule that watches the portfolio path: drawdown halts, loss limits, stops.

    It writes its settings into a :class:`qf.engines.risk.RiskConfig`; both engines evaluate that
    config with the same numba kernel at every bar, so the rule acts identically in vectorbt and
    backtrader (and in paper trading).

    Example::

        class HaltAt10(StatefulRiskRule):
            name = "halt10"

            def configure(self, config):
                config.dd_limit = 0.10
    """

    stateful = True

    def apply(self, weights: pd.DataFrame, bars: Bars) -> pd.DataFrame:
        return weights

    def configure(self, config: Any) -> None:
        raise NotImplementedError


class Broker(Component):
    """Where the backtrader engine sends orders: a simulated broker or a real one (Alpaca).

    ``create`` returns a backtrader broker instance configured for the experiment's execution model.

    Example::

        class Sim(Broker):
            name = "sim"

            def create(self, execution):
                return bt.brokers.BackBroker()
    """

    kind = "broker"

    def create(self, execution: Any) -> Any:
        raise NotImplementedError


KINDS: dict[str, type[Component]] = {
    "data": DataSource,
    "signal": SignalModel,
    "sizer": Sizer,
    "risk": RiskRule,
    "broker": Broker,
}
