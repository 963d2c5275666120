"""Every hook of qf.hookspecs, called through pluggy the way qf calls it, with a third-party implementation.

Registration hooks: the plugin's classes come back from ``pm.hook.<name>()`` next to the built-ins', the
Registry files them under their kind and name with the plugin as provider, and a wrong return value is a
PluginError naming the plugin. Lifecycle hooks: called with keyword arguments, in registration order, and
``qf_before_run`` can abort a run before any data is loaded.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from qf import hookimpl
from qf.bars import Bars, validate
from qf.components import Broker, DataSource, RiskRule, SignalModel, Sizer, StatefulRiskRule
from qf.config.loader import load_experiment
from qf.errors import PluginError, QfError
from qf.testing import check_broker, check_data_source, check_risk_rule, check_signal, check_sizer

EXPERIMENT = ("name: hooks\ndata: {type: counting, params: {}}\nsignal: {type: constant}\nsizer: {type: equal}\n"
              "execution: {fill: close}\n")


class Counting(DataSource):
    """Three bars of one symbol; counts how often it was loaded."""

    name = "counting"
    loads = 0

    def load(self) -> Bars:
        type(self).loads += 1
        idx = pd.bdate_range("2024-01-01", periods=3)
        return validate(Bars(close=pd.DataFrame({"X": [1.0, 2.0, 3.0]}, index=idx), source="counting"))


class Half(SignalModel):
    name = "half"

    def compute(self, bars: Bars) -> pd.DataFrame:
        return bars.close * 0 + 0.5


class AllIn(Sizer):
    name = "all_in"

    def size(self, signal: pd.DataFrame, bars: Bars, dates: pd.DatetimeIndex) -> pd.DataFrame:
        listed = bars.close.reindex(dates).notna().astype(float)
        return listed.div(listed.sum(axis=1).where(lambda s: s > 0), axis=0).fillna(0.0)


class NoShorts(RiskRule):
    name = "no_shorts"

    def apply(self, weights: pd.DataFrame, bars: Bars) -> pd.DataFrame:
        return weights.clip(lower=0.0)


class Halt5(StatefulRiskRule):
    name = "halt5"
    state_size = 1  # [peak]

    @staticmethod
    def step(equity, close, position, avg_price, inputs, params, state, symbol_state, exits):  # pragma: no cover
        state[0] = max(state[0], equity)
        return 1 if equity < 0.95 * state[0] else 0


class Sim2(Broker):
    name = "sim2"

    def create(self, execution: Any) -> Any:
        import backtrader as bt

        broker = bt.brokers.BackBroker()
        broker.setcash(execution.initial_cash)
        return broker


class ThirdParty:
    """A plugin object implementing every registration hook (as a module's functions would)."""

    @hookimpl
    def qf_data_sources(self):
        return [Counting]

    @hookimpl
    def qf_signal_models(self):
        return [Half]

    @hookimpl
    def qf_sizers(self):
        return (cls for cls in [AllIn])  # any iterable will do, a generator included

    @hookimpl
    def qf_risk_rules(self):
        return [NoShorts, Halt5]

    @hookimpl
    def qf_brokers(self):
        return [Sim2]


def _flat(results: list) -> list:
    return [cls for batch in results for cls in batch]


def test_qf_data_sources(qf_plugin_manager, qf_register):
    qf_plugin_manager.register(ThirdParty(), name="third_party")
    classes = _flat(qf_plugin_manager.hook.qf_data_sources())
    assert Counting in classes and any(c.name == "sample" for c in classes)
    reg = qf_register()
    assert reg.get("data", "counting").provider == "third_party"
    check_data_source(reg.get("data", "counting").cls())


def test_qf_signal_models(qf_plugin_manager, qf_register, qf_bars):
    qf_plugin_manager.register(ThirdParty(), name="third_party")
    assert Half in _flat(qf_plugin_manager.hook.qf_signal_models())
    check_signal(qf_register().get("signal", "half").cls(), qf_bars)


def test_qf_sizers(qf_plugin_manager, qf_register, qf_bars):
    qf_plugin_manager.register(ThirdParty(), name="third_party")
    assert AllIn in _flat(qf_plugin_manager.hook.qf_sizers())
    check_sizer(qf_register().get("sizer", "all_in").cls(), qf_bars)


def test_qf_risk_rules(qf_plugin_manager, qf_register, qf_bars):
    qf_plugin_manager.register(ThirdParty(), name="third_party")
    classes = _flat(qf_plugin_manager.hook.qf_risk_rules())
    assert NoShorts in classes and Halt5 in classes
    reg = qf_register()
    check_risk_rule(reg.get("risk", "no_shorts").cls(), qf_bars)
    check_risk_rule(reg.get("risk", "halt5").cls(), qf_bars)


def test_qf_brokers(qf_plugin_manager, qf_register):
    qf_plugin_manager.register(ThirdParty(), name="third_party")
    assert Sim2 in _flat(qf_plugin_manager.hook.qf_brokers())
    check_broker(qf_register().get("broker", "sim2").cls())


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ([Half], "returned <class"),  # a signal model from the sizers hook
        (Half, "must return a list of classes"),  # a class instead of a list
        ([Half()], "is not a Sizer subclass"),  # an instance instead of a class
    ],
)
def test_a_registration_hook_returning_the_wrong_thing_names_the_plugin(qf_plugin_manager, qf_register, returned,
                                                                        message):
    class Wrong:
        @hookimpl
        def qf_sizers(self):
            return returned

    qf_plugin_manager.register(Wrong(), name="wrong")
    with pytest.raises(PluginError, match="plugin 'wrong'") as err:
        qf_register()
    assert message in str(err.value)


def test_qf_before_run_and_qf_after_run_get_keyword_arguments_in_order(qf_plugin_manager, qf_register, tmp_path):
    calls: list[tuple] = []

    class First:
        @hookimpl
        def qf_before_run(self, experiment):
            calls.append(("first.before", experiment.name))

        @hookimpl
        def qf_after_run(self, experiment, result, report_dir):
            calls.append(("first.after", result.metrics["sharpe"], report_dir))

    class Second:
        @hookimpl
        def qf_before_run(self, experiment):
            calls.append(("second.before", experiment.name))

    path = tmp_path / "hooks.yaml"
    path.write_text(EXPERIMENT)
    reg = qf_register(ThirdParty(), First(), Second())
    exp = load_experiment(path, registry=reg)
    qf_plugin_manager.hook.qf_before_run(experiment=exp)
    qf_plugin_manager.hook.qf_after_run(experiment=exp, result=SimpleNamespace(metrics={"sharpe": 1.5}),
                                        report_dir=tmp_path)
    # pluggy calls the most recently registered implementation first
    assert calls == [("second.before", "hooks"), ("first.before", "hooks"), ("first.after", 1.5, tmp_path)]


def test_qf_before_run_can_abort_a_run_before_any_data_is_loaded(qf_register, tmp_path):
    from qf.runner import run_experiment

    class Veto:
        @hookimpl
        def qf_before_run(self, experiment):
            raise QfError(f"{experiment.name}: vetoed")

    path = tmp_path / "hooks.yaml"
    path.write_text(EXPERIMENT)
    reg = qf_register(ThirdParty(), Veto())
    exp = load_experiment(path, registry=reg)
    before = Counting.loads
    with pytest.raises(QfError, match="hooks: vetoed"):
        run_experiment(exp, write=False, registry=reg)
    assert Counting.loads == before
