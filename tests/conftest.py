"""How the suite is split between pytest-xdist workers (``-n auto --dist loadgroup``, pyproject's addopts).

Every test module is one unit of work that a single worker runs from top to bottom, so a module-scoped
fixture (a sweep, a walk-forward run, an installed plugin package) is computed once, as without xdist.
Tests marked ``xdist_group("ray")`` leave their module for one shared "ray" unit instead: each of them
starts a local Ray instance, and two at once would see each other's processes (``address: auto`` joins any
instance it finds; the SIGKILL test counts the processes a sweep leaves behind).
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # before xdist's own hook, which appends the group name to the node id that --dist loadgroup splits on
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
