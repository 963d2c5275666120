"""Tests of qf-trailing-stop, written as any plugin author would: qf's contract checks and its risk step."""

import numpy as np
import pytest
from pydantic import ValidationError
from qf.engines.kernels.risk import compose, risk_step_nb
from qf.testing import check_risk_rule

import qf_trailing_stop
from qf_trailing_stop import TrailingStop


def _trail(closes, position, pct=0.1):
    """Exits of the composed step along a close path for one symbol held at ``position``."""
    stack = compose([TrailingStop({"pct": pct})])
    state = stack.new_state(1)
    out = []
    for c in closes:
        exits = np.zeros(1, dtype=np.bool_)
        risk_step_nb(1e5, np.array([c], dtype=float), np.array([position], dtype=float), np.array([100.0]),
                     np.zeros((0, 1)), stack.table(1), stack.params, state, exits)
        out.append(bool(exits[0]))
    return out


def test_the_hook_registers_the_rule(qf_register):
    assert qf_register(qf_trailing_stop).get("risk", "trailing_stop").cls is TrailingStop


def test_contract(qf_bars):
    check_risk_rule(TrailingStop({"pct": 0.05}), qf_bars)  # compiles, sizes, weights untouched


def test_long_trails_the_highest_close():
    # best close 120: 108 is exactly 10% below it, 109 is not
    assert _trail([100, 120, 109, 108], 1.0) == [False, False, False, True]


def test_short_mirrors():
    # best (lowest) close 80: 88 is 10% above it
    assert _trail([100, 80, 87, 88], -1.0) == [False, False, False, True]


def test_a_new_position_starts_a_new_trail():
    stack = compose([TrailingStop({"pct": 0.1})])
    state = stack.new_state(1)
    for c, pos in [(100.0, 1.0), (150.0, 1.0), (150.0, 0.0), (100.0, 1.0), (95.0, 1.0)]:
        exits = np.zeros(1, dtype=np.bool_)
        risk_step_nb(1e5, np.array([c]), np.array([pos]), np.array([100.0]), np.zeros((0, 1)), stack.table(1),
                     stack.params, state, exits)
    assert not exits[0]  # 95 is 5% below the new trail's 100, not 37% below the old one's 150
    assert state.tolist() == [100.0, 1.0]


def test_params_are_validated():
    with pytest.raises(ValidationError, match="pct"):
        TrailingStop({"pct": 1.5})
