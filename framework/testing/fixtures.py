"""qf's pytest plugin (entry point ``pytest11``): fixtures for plugin authors.

Installed with qf, so in a plugin package's tests these fixtures are simply available:

=========================  ==========================================================================
``qf_plugin_manager``      a pluggy manager with qf's hook specs and the built-ins, no entry points
``qf_register``            ``qf_register(module_or_object, ...)`` -> a :class:`qf.registry.Registry`
``qf_installed_registry``  the registry over every installed plugin, as ``qf run`` builds it
``qf_bars``                synthetic OHLCV (5 symbols, 600 days, one listed late), fixed seed
``qf_real_bars``           real daily closes of 20 US large caps (2015-2022), shipped inside skfolio
``qf_rebalance_dates``     the month ends of ``qf_bars``
``qf_fake_broker``         a :class:`qf.testing.FakeBroker` with 100,000 in cash and no prices yet
=========================  ==========================================================================

Example::

    import my_plugin
    from qf.testing import check_signal

    def test_my_signal(qf_bars, qf_register):
        reg = qf_register(my_plugin)
        model = reg.get("signal", "my_signal").cls({})
        check_signal(model, qf_bars)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import pandas as pd
    import pluggy

    from qf.bars import Bars
    from qf.registry import Registry
    from qf.testing.fake_broker import FakeBroker


@pytest.fixture
def qf_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with qf's hook specs and the built-ins, but no third-party entry points.

    Example::

        def test_hook(qf_plugin_manager):
            qf_plugin_manager.register(my_plugin)
            classes = [c for batch in qf_plugin_manager.hook.qf_signal_models() for c in batch]
    """
    from qf.registry import new_plugin_manager, register_builtins  # lazy: pandas

    pm = new_plugin_manager()
    register_builtins(pm)
    return pm


@pytest.fixture
def qf_register(qf_plugin_manager: pluggy.PluginManager) -> Iterator[Callable[..., Registry]]:
    """Register plugins (modules, or objects with ``@hookimpl`` methods) for one test;
    returns the resulting :class:`qf.registry.Registry`, built-ins included.

    The registry is built the way ``qf run`` builds it, so a misspelled hook, a duplicate name or a hook
    returning something other than component classes fails here with qf's own error.

    Example::

        def test_registered(qf_register):
            reg = qf_register(my_plugin)
            assert reg.get("sizer", "my_sizer").provider == "my_plugin"
    """
    from qf.registry import Registry  # lazy: pandas

    added: list[Any] = []

    def register(*plugins: Any) -> Registry:
        for p in plugins:
            if not qf_plugin_manager.is_registered(p):
                # pluggy names a module plugin after its __name__, so messages say "plugin 'my_plugin'"
                qf_plugin_manager.register(p)
                added.append(p)
        return Registry(qf_plugin_manager)

    yield register
    for p in added:
        qf_plugin_manager.unregister(p)


@pytest.fixture
def qf_installed_registry() -> Registry:
    """The registry over every installed plugin (entry points of the group ``qf``), built afresh for the test.

    It honours ``QF_PLUGINS_ALLOW`` / ``QF_PLUGINS_BLOCK``, exactly as ``qf run`` and ``qf plugins`` do, so
    a test can check that a package's entry point is declared correctly once it is installed.

    Example::

        def test_entry_point(qf_installed_registry):
            reg = qf_installed_registry.get("signal", "my_signal")
            assert reg.version == "1.0.0"
    """
    from qf.registry import Registry, load_entry_points, new_plugin_manager  # lazy: pandas

    # built like get_registry() builds it, but not cached: a test must not change the process-wide registry
    pm = new_plugin_manager()
    load_entry_points(pm)
    return Registry(pm)


@pytest.fixture(scope="session")
def qf_bars() -> Bars:
    """Synthetic but realistic OHLCV bars (5 symbols, 600 days, one listed late), made with a fixed seed."""
    from qf.testing.contracts import sample_bars  # lazy: numba

    return sample_bars(unlisted=1)


@pytest.fixture(scope="session")
def qf_real_bars() -> Bars:
    """Real daily closes of 20 US large caps shipped inside skfolio (2015-2022 slice), validated."""
    from qf.registry import get_registry  # lazy: pandas

    source = get_registry().get("data", "sample").cls({"dataset": "sp500_20", "start": "2015-01-01"})
    return source.load()


@pytest.fixture(scope="session")
def qf_rebalance_dates(qf_bars: Bars) -> pd.DatetimeIndex:
    """The last bar of each month of ``qf_bars``: rebalance dates for sizer and risk-rule tests."""
    from qf.testing.checks import month_ends  # lazy: numba

    return month_ends(qf_bars)


@pytest.fixture
def qf_fake_broker() -> FakeBroker:
    """A fresh :class:`qf.testing.FakeBroker`: 100,000 in cash, no fees, no prices until you set them.

    Example::

        def test_adapter(qf_fake_broker, qf_bars):
            qf_fake_broker.set_prices(qf_bars.close.iloc[-1], time=qf_bars.index[-1])
            my_adapter(qf_fake_broker).rebalance({"S0": 0.5})
            assert qf_fake_broker.fills[0].symbol == "S0"
    """
    from qf.testing.fake_broker import FakeBroker  # lazy: pandas

    return FakeBroker(cash=100_000.0)
