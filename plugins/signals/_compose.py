"""Signals built from other configured signals: the sub-signal spec and its construction through the registry.

A sub-signal is written like an experiment's ``signal:`` section (``{type: ..., params: ...}``) and is
built exactly as the loader builds that section, through the plugin registry, so any installed signal
(built-in, third-party or ``file.py:Class``) can be composed. Bad params surface as one validation error
naming the sub-signal.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qf.components import SignalModel, TrainableSignal, implements
from qf.errors import QfError
from qf.registry import get_registry


class SubSignal(BaseModel):
    """``{type: sma_cross, params: {fast: 20}}`` (plus ``weight``/``scale`` where the composite uses them)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="an installed signal model's name")
    params: dict[str, Any] = Field(default_factory=dict, description="that model's params")


def build_signal(spec: SubSignal, where: str) -> SignalModel:
    """The signal model of ``spec``; raises ``ValueError`` (one line naming ``where``) when it cannot be built.

    Trainable models are refused: a composite would have to fit them, and the walk-forward/sweep machinery
    only fits the experiment's own signal.

    Example::

        build_signal(SubSignal(type="momentum", params={"lookback": 60}), "members[0]")
    """
    try:
        reg = get_registry().get("signal", spec.type)
    except QfError as exc:
        raise ValueError(f"{where}: {exc}") from None
    try:
        model = reg.cls(spec.params)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        raise ValueError(f"{where}.params{'.' + loc if loc else ''}: {err.get('msg', exc)}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}.params: {exc}") from None
    if implements(model, TrainableSignal):
        raise ValueError(f"{where}: {spec.type!r} is trainable; a composite signal combines rule-based signals "
                         "only (train it as the experiment's own signal)")
    return model


def union_fields(models: list[SignalModel]) -> tuple[str, ...]:
    """Every bar field any of ``models`` needs, in first-seen order."""
    out: list[str] = []
    for m in models:
        for f in getattr(m, "fields", ("close",)):
            if f not in out:
                out.append(f)
    return tuple(out)


def longest_history(histories: list[int | None]) -> int | None:
    """The trailing bars a composite needs live: the longest of its parts', None if any part needs all.

    Example::

        longest_history([20, 101]), longest_history([20, None])   # (101, None)
    """
    return None if any(h is None for h in histories) else max(h for h in histories if h is not None)
