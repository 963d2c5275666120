"""Installing plugin packages like a third party would, without touching the test environment.

``pip install --no-deps --no-build-isolation --no-index --target <tmp>`` builds each project with the
setuptools already installed (offline) and puts it, with its ``*.dist-info`` entry points, in a scratch
folder; subprocesses then see it through ``PYTHONPATH``. The projects are copied first, because building
in place would leave ``build/`` and ``*.egg-info`` folders in the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


def copy_project(src: Path, dest: Path) -> Path:
    """A clean copy of a project folder (no caches or build leftovers)."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info", ".pytest_cache",
                                                             "reports"))
    return dest


def env_with(target: Path) -> dict[str, str]:
    """The environment for a subprocess that sees the packages installed into ``target``.

    qf's own plugin switches are dropped so that an outer QF_PLUGINS_BLOCK cannot hide the plugin under test.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("QF_") and k != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def qf_command() -> list[str]:
    """The ``qf`` console script of this interpreter's environment (as a user types it), else ``python -m``."""
    script = Path(sys.executable).with_name("qf")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "qf.cli.main"]


def run(cmd: Sequence[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def pip_install(projects: Sequence[Path], target: Path) -> None:
    """Build and install local projects into ``target``, offline; a failure fails the test with pip's output."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "-q", "--target", str(target), *map(str, projects)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=target.parent)
    if res.returncode != 0:
        hint = ""
        if "bdist_wheel" in res.stdout + res.stderr:
            hint = ("\nhint: setuptools < 70.1 needs the `wheel` package to build without isolation; "
                    "install qf's dev extra (pip install -e '.[dev]')")
        pytest.fail(f"pip install failed ({res.returncode}):\n{res.stdout}\n{res.stderr}{hint}", pytrace=False)


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """The helpers above, for the test modules (conftest modules are not meant to be imported)."""
    return SimpleNamespace(root=ROOT, copy_project=copy_project, env_with=env_with, qf=qf_command(), run=run,
                           pip_install=pip_install)
