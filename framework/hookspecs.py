"""The public plugin API of qf: hook markers and hook specifications.

A plugin is any module or object with functions marked ``@hookimpl``. Registration hooks return the
component classes the plugin provides; each class carries its own ``name`` and pydantic ``Params``.

Example plugin module, registered under the entry-point group ``qf``::

    from qf import hookimpl
    from qf.components import SignalModel

    class Always(SignalModel):
        name = "always"

        def compute(self, bars):
            return bars.close * 0 + 1.0

    @hookimpl
    def qf_signal_models():
        return [Always]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Iterable

    from qf.components import Broker, CostModel, DataSource, RiskRule, SignalModel, Sizer

hookspec = pluggy.HookspecMarker("qf")
hookimpl = pluggy.HookimplMarker("qf")


@hookspec
def qf_data_sources() -> Iterable[type[DataSource]]:
    """Return the data-source classes this plugin provides.

    Example::

        @hookimpl
        def qf_data_sources():
            return [MyCsvSource]   # MyCsvSource.name == "my_csv"
    """


@hookspec
def qf_signal_models() -> Iterable[type[SignalModel]]:
    """Return the signal-model classes this plugin provides (scores in [-1, 1], no look-ahead).

    Example::

        @hookimpl
        def qf_signal_models():
            return [Always]
    """


@hookspec
def qf_sizers() -> Iterable[type[Sizer]]:
    """Return the sizer classes this plugin provides (signal -> target weights on rebalance dates).

    Example::

        @hookimpl
        def qf_sizers():
            return [EqualWeight]
    """


@hookspec
def qf_risk_rules() -> Iterable[type[RiskRule]]:
    """Return the risk-rule classes this plugin provides (stateless transforms or stateful rules).

    Example::

        @hookimpl
        def qf_risk_rules():
            return [MaxWeight]
    """


@hookspec
def qf_brokers() -> Iterable[type[Broker]]:
    """Return the broker classes this plugin provides (used by the backtrader engine and ``qf paper``).

    Example::

        @hookimpl
        def qf_brokers():
            return [SimBroker]
    """


@hookspec
def qf_cost_models() -> Iterable[type[CostModel]]:
    """Return the cost-model classes this plugin provides (``execution.costs: {type: ...}``: slippage,
    spread, impact and a participation cap as per-bar arrays both engines apply).

    Example::

        @hookimpl
        def qf_cost_models():
            return [HalfPercent]   # HalfPercent.name == "half_percent"
    """


@hookspec
def qf_before_run(experiment: Any) -> None:
    """Called once before a run starts, with the validated experiment; may raise to abort.

    Example::

        @hookimpl
        def qf_before_run(experiment):
            print("starting", experiment.name)
    """


@hookspec
def qf_after_run(experiment: Any, result: Any, report_dir: Any) -> None:
    """Called once after a run's report is written, with the result and the report folder.

    Example::

        @hookimpl
        def qf_after_run(experiment, result, report_dir):
            notify(f"{experiment.name}: {result.metrics['sharpe']:.2f}")
    """
