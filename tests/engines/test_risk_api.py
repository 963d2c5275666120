"""The public stateful-risk-rule API: composition, the contract checks, and the kernels' on-disk cache.

The built-ins and the third-party example (test_risk_api_trailing_stop.py) show the rules acting alike in
every engine; here each broken rule is refused with a message naming it, and a run with a rule the kernels
have never seen compiles nothing in a new process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from qf.components import RiskRule, RuleStatus, StatefulRiskRule
from qf.engines.kernels.risk import compose, risk_step_nb
from qf.errors import QfError
from qf.testing import check_risk_rule, check_stateful_rule, sample_bars

BARS = sample_bars(n_symbols=3, n_bars=150)


class Floor(StatefulRiskRule):
    """Flatten for good once equity is below ``params[0]``."""

    name = "test_floor"
    state_size = 1

    def parameters(self):
        return [990_000.0]

    @staticmethod
    def step(equity, close, position, avg_price, inputs, params, state, symbol_state, exits):  # pragma: no cover
        if state[0] == 1.0 or equity < params[0]:
            state[0] = 1.0
            return 1
        return 0

    def describe(self, params, state, symbol_state):
        return RuleStatus(state[0] == 1.0, "for good")


class NoStep(StatefulRiskRule):
    name = "test_no_step"


class NotStatic(StatefulRiskRule):
    name = "test_not_static"

    def step(self, equity, close, position, avg_price, inputs, params, state, symbol_state, exits):
        return 0


class ReturnsText(Floor):
    name = "test_returns_text"

    @staticmethod
    def step(equity, close, position, avg_price, inputs, params, state, symbol_state, exits):  # pragma: no cover
        return "halt"


class ShortState(Floor):
    name = "test_short_state"

    def initial_state(self):
        return []


class Peeking(StatefulRiskRule):
    """Its input is a centred mean: bar t reads bar t+2."""

    name = "test_peeking"
    n_inputs = 1

    def inputs(self, bars):
        return bars.close.rolling(5, center=True).mean().to_numpy()[None]

    @staticmethod
    def step(equity, close, position, avg_price, inputs, params, state, symbol_state, exits):  # pragma: no cover
        return 0


class WrongShape(Peeking):
    name = "test_wrong_shape"

    def inputs(self, bars):
        return bars.close.to_numpy()


class ShortHistory(StatefulRiskRule):
    """A causal 20-bar mean whose declared ``history`` (5 bars) is too short for the live path."""

    name = "test_short_history"
    n_inputs = 1
    history = 5

    def inputs(self, bars):
        return bars.close.rolling(20).mean().to_numpy()[None]

    @staticmethod
    def step(equity, close, position, avg_price, inputs, params, state, symbol_state, exits):  # pragma: no cover
        return 0


def test_a_correct_rule_passes_and_acts():
    check_risk_rule(Floor(), BARS)
    stack = compose([Floor()])
    state = stack.new_state(3)
    exits = np.zeros(3, dtype=np.bool_)
    args = (np.ones(3), np.zeros(3), np.full(3, np.nan), np.zeros((0, 3)), stack.table(3), stack.params, state, exits)
    assert risk_step_nb(1_000_000.0, *args) == 0 and risk_step_nb(980_000.0, *args) == 1
    assert risk_step_nb(2_000_000.0, *args) == 1  # stays halted: its state says so
    assert stack.halted(state, 3) == [("test_floor", RuleStatus(True, "for good"))]


@pytest.mark.parametrize(("rule", "message"), [
    (NoStep(), "risk 'test_no_step': defines no step(), so the rule would never act"),
    (NotStatic(), "risk 'test_not_static': step must be a @staticmethod"),
    (ReturnsText(), "risk 'test_returns_text': risk rule 'test_returns_text': step() does not compile with "
                    "numba.cfunc(qf.engines.kernels.risk.SIG)"),
    (ShortState(), "risk 'test_short_state': risk rule 'test_short_state': initial_state() must give 1 float(s), "
                   "got 0"),
    (WrongShape(), "risk 'test_wrong_shape': risk rule 'test_wrong_shape': inputs(bars) must return an array of "
                   "shape (n_inputs, bars, symbols) = (1, 150, 3), got (150, 3)"),
    (Peeking(), "risk 'test_peeking': inputs() look ahead: on "),
    (ShortHistory(), "from its trailing 5 bars (history)"),
], ids=lambda x: getattr(x, "name", "msg"))
def test_a_broken_rule_is_refused_with_its_name(rule: StatefulRiskRule, message: str):
    with pytest.raises(AssertionError) as err:
        check_stateful_rule(rule, BARS)
    assert message in str(err.value)


def test_compose_keeps_the_order_and_skips_stateless_rules():
    class Cap(RiskRule):
        name = "cap"

    stack = compose([Floor(), Cap(), ShortHistory()])
    assert stack.names == ["test_floor", "test_short_history"] and stack.n_inputs == 1
    assert stack.table(3)[:, 1:].tolist() == [[0, 1, 0, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0, 1]]
    assert stack.inputs(BARS).shape == (150, 1, 3)
    assert not compose([Cap()]).active and compose([Floor()]).active


def test_a_stored_state_that_does_not_fit_the_rules_is_refused():
    stack = compose([Floor()])
    assert stack.check_state([1.0], 3).tolist() == [1.0]
    with pytest.raises(QfError, match=r"the stored risk state has 4 value\(s\) but the rules test_floor keep 1"):
        stack.check_state([0.0, 0.0, 0.0, 1.0], 3)


def test_a_stateful_flag_without_the_contract_is_refused():
    class Pretends(RiskRule):
        name = "pretends"
        stateful = True

    with pytest.raises(QfError, match="says stateful = True but does not subclass"):
        compose([Pretends()])


RULE_MODULE = '''
from qf.components import StatefulRiskRule


class Fresh(StatefulRiskRule):
    name = "fresh"
    state_size = 1

    @staticmethod
    def step(equity, close, position, avg_price, inputs, params, state, symbol_state, exits):
        state[0] = max(state[0], equity)
        return 1 if equity < 0.9 * state[0] else 0
'''

RUN = '''
import warnings, numpy as np, pandas as pd
import fresh_rule
from qf.config.schema import ExecutionSpec
from qf.engines.inputs import build_inputs
from qf.engines.kernels import risk, step
from qf.engines.vectorbt import run_kernel, simulate_nb
from qf.testing import month_ends, sample_bars

bars = sample_bars(n_symbols=3, n_bars=200)
targets = (bars.close.reindex(month_ends(bars)) * 0 + 1 / 3).fillna(0.0)
ex = ExecutionSpec(fill="next_close")
run_kernel(build_inputs(bars, targets, [fresh_rule.Fresh()], ex), ex)
print(sum(simulate_nb.stats.cache_misses.values()), sum(step.decide_costed_nb.stats.cache_misses.values()),
      sum(risk.risk_step_nb.stats.cache_misses.values()))
'''


def test_a_new_rule_compiles_no_kernel_in_the_next_process(tmp_path: Path):
    # the rule's step is a cfunc passed by address: the kernels' types do not depend on it, so the second
    # process loads every kernel from numba's on-disk cache (the first may compile them if they are cold)
    (tmp_path / "fresh_rule.py").write_text(textwrap.dedent(RULE_MODULE))
    outs = []
    for _ in range(2):
        res = subprocess.run([sys.executable, "-c", RUN], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                             env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
        assert res.returncode == 0, res.stderr[-3000:]
        outs.append(res.stdout.split())
    assert outs[1] == ["0", "0", "0"], outs


def test_a_halt_is_a_flatten_event_and_the_account_stays_in_cash():
    from qf.config.schema import ExecutionSpec
    from qf.engines.vectorbt import run_vectorbt
    from qf.testing import month_ends

    targets = (BARS.close.reindex(month_ends(BARS)) * 0 + 1 / 3).fillna(0.0)
    res = run_vectorbt(BARS, targets, [Floor()], ExecutionSpec(fill="next_close", initial_cash=1_000_000.0))
    flat = res.events[res.events["event"] == "flatten"]
    assert len(flat) > 0 and res.orders["time"].max() == flat["time"].iloc[0]  # the close-out is the last order
    after = res.equity.loc[flat["time"].iloc[0]:]
    assert len(after) > 5 and after.nunique() == 1
