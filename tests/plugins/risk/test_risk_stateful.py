"""Stateful risk rules: the built-ins on the public StatefulRiskRule contract, driving the composed risk step."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from qf.components import RuleStatus
from qf.engines.kernels.risk import compose, risk_step_nb
from qf.testing import check_risk_rule
from qf.testing.contracts import sample_bars
from qf_plugins.risk.daily_loss_limit import DailyLossLimit
from qf_plugins.risk.drawdown_halt import DrawdownHalt
from qf_plugins.risk.stop_loss import StopLoss


def _params(rule) -> list[float | None]:
    return [None if math.isnan(v) else v for v in rule.parameters()]


def _run(rules, equity_path, close=None, position=None, avg_price=None):
    """The composed step over an equity path (one symbol unless given); returns the actions and the state."""
    stack = compose(rules)
    n = 1 if close is None else len(close)
    close = np.zeros(n) if close is None else np.asarray(close, dtype=float)
    position = np.zeros(n) if position is None else np.asarray(position, dtype=float)
    avg_price = np.full(n, np.nan) if avg_price is None else np.asarray(avg_price, dtype=float)
    state = stack.new_state(n)
    exits = np.zeros(n, dtype=np.bool_)
    actions = [risk_step_nb(eq, close, position, avg_price, np.zeros((stack.n_inputs, n)), stack.table(n),
                            stack.params, state, exits) for eq in equity_path]
    return actions, stack, state, exits


def test_drawdown_halt_parameters_and_state() -> None:
    assert _params(DrawdownHalt({"max_drawdown": 0.2})) == [0.2, -1.0]  # cooldown -1: stay flat
    assert _params(DrawdownHalt({"max_drawdown": 0.15, "cooldown_bars": 10})) == [0.15, 10.0]
    assert DrawdownHalt.state_size == 3 and DrawdownHalt.symbol_state_size == 0 and DrawdownHalt.n_inputs == 0


def test_daily_loss_limit_parameters() -> None:
    assert _params(DailyLossLimit({"limit": 0.03})) == [0.03, 1.0]  # cooldown 1 = default
    assert _params(DailyLossLimit({"limit": 0.05, "cooldown_bars": 5})) == [0.05, 5.0]


def test_stop_loss_parameters_and_inputs() -> None:
    assert _params(StopLoss({"pct": 0.08})) == [0.08, None, None]
    rule = StopLoss({"vol_mult": 3.0, "vol_window": 30, "take_profit": 0.25})
    assert _params(rule) == [None, 3.0, 0.25]
    assert rule.n_inputs == 1 and StopLoss({"pct": 0.08}).n_inputs == 0
    bars = sample_bars(n_symbols=3, n_bars=80)
    vol = rule.inputs(bars)
    assert vol.shape == (1, 80, 3) and np.isnan(vol[0, :30]).all() and np.isfinite(vol[0, 31:]).all()
    ret = bars.close.pct_change().iloc[50 - 29:51]
    assert vol[0, 50] == pytest.approx(ret.std().to_numpy(), rel=1e-12)
    assert rule.history == 31


def test_stateful_rules_do_not_touch_weights() -> None:
    bars = sample_bars(n_symbols=2, n_bars=5)
    w = bars.close * 0 + 0.5
    assert DrawdownHalt({"max_drawdown": 0.1}).apply(w, bars).equals(w)


@pytest.mark.parametrize("rule", [DrawdownHalt({"max_drawdown": 0.1, "cooldown_bars": 3}),
                                  DailyLossLimit({"limit": 0.03}),
                                  StopLoss({"pct": 0.05, "vol_mult": 2.0, "vol_window": 10})], ids=lambda r: r.name)
def test_builtins_pass_the_stateful_contract(rule) -> None:
    check_risk_rule(rule, sample_bars(n_symbols=3, n_bars=120))


def test_drawdown_halt_drives_the_kernel() -> None:
    # equity 100 -> 110 (peak) -> 95 (-13.6% from the peak): a 10% halt fires on the third bar, a 20% one never
    path = [100.0, 110.0, 95.0]
    for limit, expect in ((0.10, [0, 0, 1]), (0.20, [0, 0, 0])):
        actions, *_ = _run([DrawdownHalt({"max_drawdown": limit})], path)
        assert actions == expect


def test_drawdown_halt_cooldown_counts_bars_and_restarts_the_peak() -> None:
    # halts at bar 2 (95 vs peak 110), 3 bars of cool-down: flat on bars 3 and 4, trading again at bar 5 with
    # the peak restarted from 90, so 85 (-5.6%) does not halt again, 80 (-11%) does
    path = [100.0, 110.0, 95.0, 93.0, 92.0, 90.0, 85.0, 80.0]
    actions, stack, state, _ = _run([DrawdownHalt({"max_drawdown": 0.1, "cooldown_bars": 3})], path)
    assert actions == [0, 0, 1, 1, 1, 0, 0, 1]
    assert stack.describe(state, 1) == [("drawdown_halt", RuleStatus(True, "2 bar(s) of cool-down left"))]
    _, stack, state, _ = _run([DrawdownHalt({"max_drawdown": 0.1})], path[:3])
    assert stack.halted(state, 1) == [("drawdown_halt", RuleStatus(True, "until an operator resets it"))]


def test_daily_loss_limit_drives_the_kernel() -> None:
    # -4% day halts a 3% limit for 2 bars; the 0% day after the cool-down trades
    actions, *_ = _run([DailyLossLimit({"limit": 0.03, "cooldown_bars": 2})], [100.0, 96.0, 96.0, 96.0, 96.0])
    assert actions == [0, 1, 1, 0, 0]


def test_stop_loss_drives_the_kernel() -> None:
    close = np.array([94.0, 111.0, 100.0])  # -6% (stop), +11% (take profit), flat (keep)
    actions, _, _, exits = _run([StopLoss({"pct": 0.05, "take_profit": 0.10})], [1000.0], close, np.ones(3),
                                np.full(3, 100.0))
    assert actions == [0] and exits.tolist() == [True, True, False]
    # shorts mirror: a short entered at 100 is stopped at 106, taken profit at 89
    _, _, _, exits = _run([StopLoss({"pct": 0.05, "take_profit": 0.10})], [1000.0], [106.0, 89.0, 100.0],
                          -np.ones(3), np.full(3, 100.0))
    assert exits.tolist() == [True, True, False]


def test_rules_compose_each_on_its_own_state() -> None:
    # the drawdown rule flattens; the stop still reports its exit; nothing of one rule's state is the other's
    actions, stack, state, exits = _run([DrawdownHalt({"max_drawdown": 0.1}), StopLoss({"pct": 0.05})],
                                        [100.0, 80.0], [90.0], [1.0], [100.0])
    assert actions == [0, 1] and exits.tolist() == [True]
    assert stack.names == ["drawdown_halt", "stop_loss"] and state.shape == (3,)
    assert [name for name, _ in stack.halted(state, 1)] == ["drawdown_halt"]


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (DrawdownHalt, {}, "max_drawdown"),
        (DrawdownHalt, {"max_drawdown": 1.5}, "max_drawdown"),
        (DrawdownHalt, {"max_drawdown": 0.2, "cooldown_bars": 0}, "cooldown_bars"),
        (DailyLossLimit, {"limit": 0}, "limit"),
        (StopLoss, {}, "stop_loss needs pct (e.g. 0.08) or vol_mult (e.g. 3.0), or both"),
        (StopLoss, {"take_profit": 0.2}, "stop_loss needs pct"),
        (StopLoss, {"pct": 1.2}, "pct"),
        (StopLoss, {"vol_mult": 2, "vol_window": 1}, "vol_window"),
    ],
)
def test_params_validation(cls, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(params)
