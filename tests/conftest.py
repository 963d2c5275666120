"""How the suite is split between pytest-xdist workers (``-n auto``, pyproject's addopts).

Every test module is one unit of work that a single worker runs from top to bottom, so a module-scoped
fixture (a sweep, a walk-forward run, an installed plugin package) is computed once, as without xdist.
A few units span modules (GROUPS): the tests that start a local Ray instance run one after the other on
one worker (``address: auto`` joins any instance it finds; the SIGKILL test counts the processes a sweep
leaves behind), and the two report modules that read the same session-scoped runs share a worker.

The units are made here, by node id, with xdist's scheduler hook: ``xdist_group`` marks do nothing under
pytest 9 (xdist 3.8 renames ``item._nodeid``, which pytest 9 no longer reads), and the controller, which
schedules, never sees marks.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from typing import Any

import pytest

GROUPS: dict[str, tuple[str, ...]] = {
    "ray": ("tests/research/test_ray_cluster.py::",
            "tests/research/test_executors.py::test_ray_executor_gives_the_same_table",
            "tests/framework/test_hardening_files.py::test_sigkill_during_a_sweep_leaves_no_process_alive[ray-local]"),
    "report_runs": ("tests/report/test_pages_browser.py::", "tests/report/test_tearsheet_analysis.py::"),
}


def unit_of(nodeid: str) -> str:
    """The unit of work of a test: its group's name, else its module's path."""
    for name, prefixes in GROUPS.items():
        if nodeid.startswith(prefixes):
            return name
    return nodeid.split("::", 1)[0]


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        """xdist's loadscope (each unit to one worker, whole) with the units above."""

        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return ModuleScheduling(config, log)


@pytest.fixture
def high_descriptors() -> Iterator[None]:
    """Hold descriptors up to ~1030, so that the next file or pipe this process opens lands above 1023 (where
    ``select()`` refuses it): what a process holding many files (a sweep pool, a Ray driver) gets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("the file limit is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held: list[int] = []
    try:
        while not held or held[-1] < 1030:
            held.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
