"""qf.components.implements gives isinstance's answer for every capability Protocol."""

from __future__ import annotations

import typing

import pytest

import qf.components as components
from qf.components import implements
from qf.testing import FakeLiveBroker, registry_with

CAPABILITIES = [v for v in vars(components).values()
                if isinstance(v, type) and getattr(v, "_is_runtime_protocol", False)]


def test_every_capability_is_covered() -> None:
    names = {c.__name__ for c in CAPABILITIES}
    assert {"TrainableSignal", "HistorySharing", "ForecastBands", "UsesForecastBands", "PathResolving",
            "LiveDataSource", "LiveBroker"} <= names


@pytest.mark.parametrize("cap", CAPABILITIES, ids=lambda c: c.__name__)
def test_builtin_classes_and_odd_objects_agree_with_isinstance(cap: type) -> None:
    objects: list[typing.Any] = [reg.cls for reg in registry_with().all()]  # classes: attribute lookups alike
    objects += [object(), None, 3, FakeLiveBroker]

    class Blocked(cap):  # type: ignore[misc, valid-type]
        pass

    blocked = Blocked()
    methods = [n for n in typing._get_protocol_attrs(cap) if callable(getattr(cap, n, None))]  # type: ignore[attr-defined]
    if methods:  # a method member set to None blocks the capability, as runtime_checkable has it
        setattr(blocked, methods[0], None)
    objects += [Blocked(), blocked]
    # structural, not inherited: every member present, then one method member set to None on the class
    members = typing._get_protocol_attrs(cap)  # type: ignore[attr-defined]
    Structural = type("Structural", (), {n: (lambda self: None) for n in members})
    objects += [Structural()]
    if methods:
        Structural2 = type("Structural2", (), {n: (None if n == methods[0] else lambda self: None) for n in members})
        objects += [Structural2()]
        assert not implements(Structural2(), cap)
    assert implements(Structural(), cap)
    for obj in objects:
        assert implements(obj, cap) == isinstance(obj, cap), (obj, cap)
    assert implements(Blocked(), cap)
