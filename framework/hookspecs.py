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

    from typer import Typer

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
def qf_register_commands(app: Typer) -> None:
    """Add commands to the ``qf`` command line: ``app`` is qf's typer app (as llm's ``register_commands``).

    Called once while ``qf`` builds its command line, so keep the module that implements the hook light:
    import the command's heavy code inside the command's function, where it runs only when the command does
    (``qf plugins`` or ``qf validate`` must not pay for it). A command may not replace a qf command or
    another plugin's; a plugin whose hook raises or clashes is reported as broken in one line and
    registers no command, and the rest of the command line works.

    Example::

        import typer

        @hookimpl
        def qf_register_commands(app):
            @app.command("hello", help="Print a greeting.")
            def hello(name: str = typer.Option("world", help="Who to greet.")) -> None:
                from my_plugin.greeting import greet   # heavy code: imported when the command runs

                print(greet(name))
    """


@hookspec
def qf_before_run(experiment: Any) -> None:
    """Called once before a run starts, with the validated experiment; may raise to abort it (a
    ``qf.errors.QfError`` is one ``error:`` line and exit code 2).

    Every runner fires it, through :func:`qf.runner.lifecycle`: ``qf run`` (a single run, a sweep, a
    walk-forward, a CPCV), ``qf parity``, ``qf paper`` (sim replay or live), ``qf watch`` (each run) and
    ``qf.run`` / ``qf.sweep``. A run started inside another one (the two engine runs of ``qf parity``)
    fires nothing itself: one command, one call.

    Example::

        @hookimpl
        def qf_before_run(experiment):
            print("starting", experiment.name)
    """


@hookspec
def qf_after_run(experiment: Any, result: Any, report_dir: Any) -> None:
    """Called once after a run succeeded (its report written, if it writes one), by the same runners as
    :func:`qf_before_run`; not called when the run raised, nor for a paper replay that had already ended.

    ``result`` is a :class:`qf.runner.RunRecord`: ``result.kind`` names the runner (``backtest``, ``sweep``,
    ``walk_forward``, ``cpcv``, ``parity`` or ``paper``), ``result.metrics`` is a dict of the run's
    headline figures (the report's metrics.json; ``ok``, ``final_rel_diff`` ... for parity),
    ``result.outcome`` the runner's own object (:class:`qf.runner.RunOutcome`, the sweep table,
    :class:`qf.parity.ParityReport`, :class:`qf.paper.session.PaperOutcome`), ``report_dir`` the folder
    written (None when nothing was, e.g. ``qf.run``, ``qf parity``).

    Example::

        @hookimpl
        def qf_after_run(experiment, result, report_dir):
            if result.kind != "parity":
                notify(f"{experiment.name} ({result.kind}): sharpe {result.metrics.get('sharpe')}")
    """
