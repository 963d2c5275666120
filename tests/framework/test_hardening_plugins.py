"""Broken plugins: one line each (plugin, hook, argument), all of them at once, healthy ones still listed.

The plugins are real installed distributions (a ``*.dist-info`` with entry points on ``sys.path``), loaded
the way ``qf`` loads third-party plugins.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import qf.registry
from qf import hookimpl
from qf.cli.main import app
from qf.errors import PluginError
from qf.registry import Registry, broken, get_registry, load_entry_points, new_plugin_manager, register

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

GOOD = """
from qf import hookimpl
from qf.components import SignalModel

class Twos(SignalModel):
    \"\"\"Always 1.\"\"\"

    name = "twos"

    def compute(self, bars):
        return bars.close * 0 + 1.0

@hookimpl
def qf_signal_models():
    return [Twos]
"""

BAD_ARGS = """
from qf import hookimpl
from qf.components import Sizer

class Unused(Sizer):
    name = "unused_sizer"

@hookimpl
def qf_sizers(universe):
    return [Unused]

@hookimpl
def qf_after_run(experiment, result, reportdir):
    pass
"""

TYPO = """
from qf import hookimpl

@hookimpl
def qf_signal_model():
    return []
"""

RAISES = """
from qf import hookimpl

@hookimpl
def qf_risk_rules():
    raise KeyError("limits")
"""

IMPORT_FAILS = "import qf_no_such_dependency\n"

# name: (distribution, module body)
PLUGINS = {
    "good": ("qf_good", GOOD),
    "badargs": ("qf_badargs", BAD_ARGS),
    "typo": ("qf_typo", TYPO),
    "raises": ("qf_raises", RAISES),
    "noimport": ("qf_noimport", IMPORT_FAILS),
}


def _install(root: Path, names: list[str]) -> None:
    """Minimal installed distributions (dist-info + module) that importlib.metadata discovers."""
    for name in names:
        dist, body = PLUGINS[name]
        (root / f"{dist}_plugin.py").write_text(textwrap.dedent(body))
        info = root / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[qf]\n{name} = {dist}_plugin\n")


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Install some of PLUGINS for one test; the process-wide registry is rebuilt and restored after."""

    def install(*names: str) -> Path:
        _install(tmp_path, list(names))
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setattr(qf.registry, "_REGISTRY", None)
        return tmp_path

    yield install
    for dist, _ in PLUGINS.values():
        sys.modules.pop(f"{dist}_plugin", None)


def test_hook_arguments_not_in_the_spec_are_one_line_per_hook(installed):
    installed("good", "badargs")
    pm = new_plugin_manager()
    with pytest.raises(PluginError) as exc:
        load_entry_points(pm)
    assert exc.value.problems == [
        "plugin 'badargs' (qf_badargs 0.1): qf_after_run(experiment, result, reportdir) asks for 'reportdir' "
        "(did you mean 'report_dir'?), which the hook does not pass; it passes experiment, result, report_dir",
        "plugin 'badargs' (qf_badargs 0.1): qf_sizers(universe) asks for 'universe', which the hook does not "
        "pass; it passes no arguments",
    ]
    # the healthy plugin was registered, the broken one was not
    assert pm.get_plugin("good") is not None and pm.get_plugin("badargs") is None


def test_every_broken_plugin_is_reported_at_once(installed):
    installed("good", "badargs", "typo", "raises", "noimport")
    with pytest.raises(PluginError) as exc:
        get_registry()
    problems = exc.value.problems
    assert len(problems) == 6  # two hooks of badargs, one for each other broken plugin, and the hint
    assert [p for p in problems if p.startswith("plugin 'badargs'")] and "good" not in " ".join(problems)
    assert ("plugin 'typo' implements unknown hook 'qf_signal_model'; did you mean 'qf_signal_models'?"
            in problems)
    assert "plugin 'raises': qf_risk_rules() raised KeyError: 'limits'" in problems
    assert ("plugin 'noimport' (qf_noimport) failed to import: ModuleNotFoundError: No module named "
            "'qf_no_such_dependency'" in problems)
    assert problems[-1].startswith("qf does not run with a broken plugin") and \
        "QF_PLUGINS_BLOCK=badargs,noimport,typo,raises" in problems[-1]
    assert all("\n" not in p for p in problems)


def test_the_healthy_plugins_stay_usable_when_asked_for(installed):
    installed("good", "badargs", "typo", "raises")
    reg = get_registry(allow_broken=True)
    assert reg.get("signal", "twos").provider == "good"
    assert "sma_cross" in reg.names("signal")
    assert sorted(reg.broken) == ["badargs", "raises", "typo"]
    # nothing of a broken plugin is used, not even its lifecycle hooks
    assert all(reg.pm.get_plugin(name) is None for name in reg.broken)
    assert [impl.plugin_name for impl in reg.pm.hook.qf_after_run.get_hookimpls()] == []


def test_qf_plugins_lists_the_healthy_ones_and_marks_the_broken(installed):
    installed("good", "badargs", "noimport")
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "twos" in result.stdout and "sma_cross" in result.stdout
    rows = [line for line in result.stdout.splitlines() if "BROKEN" in line]
    assert len(rows) == 2 and "badargs" in rows[0] and "noimport" in rows[1]
    err = result.stderr.splitlines()
    assert sum(line.startswith("broken: plugin 'badargs'") for line in err) == 2
    assert sum(line.startswith("broken: plugin 'noimport'") for line in err) == 1
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [
    ["validate", str(ROOT / "experiments/buy_and_hold.yaml")],
    ["run", str(ROOT / "experiments/buy_and_hold.yaml")],
    ["data", "show", "--dataset", "sp500_20"],
])
def test_every_other_command_refuses_with_the_list(installed, command):
    installed("good", "badargs", "typo")
    result = runner.invoke(app, [*command])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines)
    assert "qf_sizers(universe)" in lines[1] and "'typo'" in lines[2] and "QF_PLUGINS_BLOCK" in lines[3]
    assert "Traceback" not in result.output


def test_blocking_the_broken_plugins_lets_qf_run(installed, monkeypatch):
    installed("good", "badargs")
    monkeypatch.setenv("QF_PLUGINS_BLOCK", "badargs")
    assert get_registry().get("signal", "twos").provider == "good"


def test_the_real_command_prints_no_traceback(installed):
    path = installed("badargs")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "qf.cli.main", "validate", str(ROOT / "experiments/sma_cross.yaml")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "PluginValidationError" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 3


def test_a_method_plugin_is_named_without_self():
    class Wrong:
        @hookimpl
        def qf_before_run(self, experiment, run_id):
            pass

    pm = new_plugin_manager()
    assert not register(pm, Wrong(), "wrong")
    assert broken(pm)["wrong"].problems == [
        "plugin 'wrong': qf_before_run(experiment, run_id) asks for 'run_id', which the hook does not pass; "
        "it passes experiment"]
    assert pm.get_plugin("wrong") is None
    with pytest.raises(PluginError, match="plugin 'wrong': qf_before_run"):
        Registry(pm)
