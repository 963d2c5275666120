"""qf's pytest plugin (entry point ``pytest11``): fixtures for plugin authors.

Installed with qf, so in a plugin package's tests these fixtures are simply available::

    def test_my_signal(qf_bars, qf_register):
        reg = qf_register(my_plugin_module)
        model = reg.get("signal", "my_signal").cls({})
        assert_signal_no_lookahead(model, qf_bars)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from qf.bars import Bars


@pytest.fixture
def qf_plugin_manager():
    """A plugin manager with qf's hook specs and the built-ins, but no third-party entry points."""
    from qf.registry import new_plugin_manager, register_builtins

    pm = new_plugin_manager()
    register_builtins(pm)
    return pm


@pytest.fixture
def qf_register(qf_plugin_manager) -> Iterator[Callable[..., Any]]:
    """Register plugin objects for one test; returns the resulting :class:`qf.registry.Registry`."""
    from qf.registry import Registry

    added: list[Any] = []

    def register(*plugins: Any) -> Registry:
        for p in plugins:
            qf_plugin_manager.register(p)
            added.append(p)
        return Registry(qf_plugin_manager)

    yield register
    for p in added:
        qf_plugin_manager.unregister(p)


@pytest.fixture(scope="session")
def qf_bars() -> Bars:
    """Synthetic but realistic OHLCV bars (5 symbols, 600 days, one listed late), made with a fixed seed."""
    from qf.testing.contracts import sample_bars

    return sample_bars()


@pytest.fixture(scope="session")
def qf_real_bars() -> Bars:
    """Real daily closes of 20 US large caps shipped inside skfolio (2015-2022 slice), validated."""
    from qf.registry import get_registry

    source = get_registry().get("data", "sample").cls({"dataset": "sp500_20", "start": "2015-01-01"})
    return source.load()
