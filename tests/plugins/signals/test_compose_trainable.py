"""Composite signals refuse trainable members by the ``qf.components.TrainableSignal`` protocol (isinstance),
not by the presence of a ``fit`` attribute."""

from __future__ import annotations

import pytest

from qf.components import TrainableSignal
from qf.registry import get_registry
from qf_plugins.signals._compose import SubSignal, build_signal


def test_a_trainable_member_is_refused_by_its_protocol():
    assert issubclass(get_registry().get("signal", "xgboost").cls, TrainableSignal)
    with pytest.raises(ValueError, match=r"^members\[0\]: 'xgboost' is trainable; a composite signal combines"):
        build_signal(SubSignal(type="xgboost", params={}), "members[0]")


def test_a_rule_based_member_is_built():
    model = build_signal(SubSignal(type="momentum", params={"lookback": 60}), "members[1]")
    assert not isinstance(model, TrainableSignal) and model.params.lookback == 60
