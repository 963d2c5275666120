"""Plugins contribute ``qf`` commands through ``qf_register_commands``; the Alpaca adapter is such a plugin.

The third-party plugins here are real installed distributions (a ``*.dist-info`` with a ``qf`` entry point
on ``sys.path``), run through qf's own command line (``qf.cli.main.app``) in-process and as ``qf`` in a
fresh interpreter.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import qf.registry
from qf.cli.main import app
from qf.registry import get_registry

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

HELLO = '''
import typer
from qf import hookimpl

@hookimpl
def qf_register_commands(app):
    @app.command("hello", help="Greet someone.")
    def hello(name: str = typer.Option("world", help="Who to greet.")) -> None:
        from qf_hello_greeting import greet   # the heavy part, imported when the command runs

        print(greet(name))
'''
GREETING = '''
def greet(name):
    return f"hello, {name}"
'''
# registers one command, then fails: nothing it added may survive
BOOM = '''
from qf import hookimpl
from qf.components import SignalModel

class Boom(SignalModel):
    name = "boom_signal"

    def compute(self, bars):
        return bars.close * 0

@hookimpl
def qf_signal_models():
    return [Boom]

@hookimpl
def qf_register_commands(app):
    @app.command("boom")
    def boom() -> None:
        print("boom ran")

    raise RuntimeError("no config file")
'''
# tries to replace a qf command
CLASH = '''
from qf import hookimpl

@hookimpl
def qf_register_commands(app):
    @app.command("run")
    def run() -> None:
        print("hijacked")
'''
TYPO = '''
from qf import hookimpl

@hookimpl
def qf_register_command(app):
    pass
'''
WRONG_ARG = '''
from qf import hookimpl

@hookimpl
def qf_register_commands(cli):
    pass
'''
PLUGINS = {"hello": HELLO, "boom": BOOM, "clash": CLASH, "typo": TYPO, "wrongarg": WRONG_ARG}


def _install(root: Path, *names: str) -> None:
    (root / "qf_hello_greeting.py").write_text(textwrap.dedent(GREETING))
    for name in names:
        (root / f"qf_{name}_plugin.py").write_text(textwrap.dedent(PLUGINS[name]))
        info = root / f"qf_{name}-0.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: qf_{name}\nVersion: 0.3\n")
        (info / "entry_points.txt").write_text(f"[qf]\n{name} = qf_{name}_plugin\n")


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Install some of PLUGINS for one test; the process-wide registry is rebuilt and restored after."""

    def install(*names: str) -> Path:
        _install(tmp_path, *names)
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setattr(qf.registry, "_REGISTRY", None)
        return tmp_path

    yield install
    for name in [*PLUGINS, "hello_greeting"]:
        sys.modules.pop(f"qf_{name}_plugin", None)
    sys.modules.pop("qf_hello_greeting", None)


def _qf(args: list[str], path: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **env}
    if path is not None:
        full["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "qf.cli.main", *args], capture_output=True, text=True,
                          env=full, cwd=ROOT, timeout=120)


def test_a_third_party_command_runs_through_qf(installed):
    installed("hello")
    assert "qf_hello_greeting" not in sys.modules
    listed = runner.invoke(app, ["--help"])
    assert listed.exit_code == 0 and "hello" in listed.stdout and "Greet someone." in listed.stdout
    assert "qf_hello_greeting" not in sys.modules  # listing the commands did not import the command's code
    result = runner.invoke(app, ["hello", "--name", "qf"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello, qf\n"
    assert "qf_hello_greeting" in sys.modules
    # qf plugins lists the command with the plugin that adds it
    rows = [line for line in runner.invoke(app, ["plugins"]).stdout.splitlines() if "qf hello" in line]
    assert len(rows) == 1 and "hello" in rows[0] and "0.3" in rows[0] and "command" in rows[0]


def test_qf_own_commands_do_not_ask_plugins_for_theirs(installed, monkeypatch):
    installed("hello")
    asked: list[str] = []
    real = qf.registry.Registry.register_commands
    monkeypatch.setattr(qf.registry.Registry, "register_commands",
                        lambda self, *a, **k: asked.append("asked") or real(self, *a, **k))
    assert runner.invoke(app, ["schema"]).exit_code == 0
    assert runner.invoke(app, ["report", "list", "--root", "nowhere"]).exit_code == 0
    assert asked == []
    assert runner.invoke(app, ["hello"]).stdout == "hello, world\n"
    assert asked == ["asked"]


def test_a_command_registration_that_raises_is_one_line_and_the_rest_works(installed):
    installed("hello", "boom")
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "hello" in result.stdout and "boom " not in result.stdout and "alpaca-emulator" in result.stdout
    assert result.stderr.splitlines() == [
        "warning: plugin 'boom': qf_register_commands() raised RuntimeError: no config file; its commands "
        "are not available"]
    assert runner.invoke(app, ["hello"]).stdout == "hello, world\n"
    assert runner.invoke(app, ["schema"]).exit_code == 0
    # the half-registered command is gone, and the plugin is used whole or not at all: its signal too
    missing = runner.invoke(app, ["boom"])
    assert missing.exit_code == 2 and "No such command 'boom'" in missing.output
    reg = get_registry(allow_broken=True)
    assert "boom_signal" not in reg.names("signal") and reg.pm.get_plugin("boom") is None
    listing = runner.invoke(app, ["plugins"])
    assert listing.exit_code == 0
    assert [line for line in listing.stdout.splitlines() if "BROKEN" in line and "boom" in line]
    assert ("broken: plugin 'boom': qf_register_commands() raised RuntimeError: no config file"
            in listing.stderr.splitlines())
    assert "Traceback" not in result.output + listing.output


def test_a_plugin_cannot_replace_a_qf_command(installed):
    installed("clash")
    reg = get_registry(allow_broken=True)
    import typer

    assert reg.register_commands(typer.Typer(), taken={"run", "plugins"}) == {"alpaca-emulator": "qf_alpaca"}
    assert reg.broken["clash"].problems == [
        "plugin 'clash': qf_register_commands added command(s) 'run', whose name is already taken"]
    # through qf: `qf run` is still qf's own (it asks for an experiment file)
    result = runner.invoke(app, ["run", "--help"])
    assert result.exit_code == 0 and "Experiment YAML file" in result.stdout


def test_two_plugins_cannot_take_the_same_name(installed):
    import typer

    installed("hello")
    reg = get_registry(allow_broken=True)
    taken = typer.Typer()

    @taken.command("hello")
    def other() -> None: ...

    added = reg.register_commands(taken)
    assert "hello" not in added and reg.broken["hello"].problems == [
        "plugin 'hello': qf_register_commands added command(s) 'hello', whose name is already taken"]
    assert len(taken.registered_commands) == 2  # 'hello' (the first) and alpaca-emulator: nothing else


def test_a_misspelled_or_mistyped_hook_is_named(installed):
    installed("typo", "wrongarg")
    reg = get_registry(allow_broken=True)
    assert reg.broken["typo"].problems == [
        "plugin 'typo' implements unknown hook 'qf_register_command'; did you mean 'qf_register_commands'?"]
    assert reg.broken["wrongarg"].problems == [
        "plugin 'wrongarg' (qf_wrongarg 0.3): qf_register_commands(cli) asks for 'cli', which the hook does not "
        "pass; it passes app"]


def test_the_real_qf_runs_a_plugin_command_and_warns_once(installed):
    path = installed("hello", "boom")
    warning = ("warning: plugin 'boom': qf_register_commands() raised RuntimeError: no config file; its commands "
               "are not available")
    proc = _qf(["hello", "--name", "world"], path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello, world\n" and proc.stderr.splitlines() == [warning]
    helped = _qf(["--help"], path)
    assert helped.returncode == 0 and "hello" in helped.stdout and helped.stderr.splitlines() == [warning]
    # qf's own commands do not ask plugins for theirs, so they do not warn
    schema = _qf(["schema"], path)
    assert schema.returncode == 0 and schema.stderr == ""


# --- the Alpaca adapter: one plugin, no vendor code in the framework


def test_alpaca_is_one_plugin_that_adds_its_command():
    reg = get_registry(allow_broken=True)
    assert reg.get("data", "alpaca").provider == "qf_alpaca" == reg.get("broker", "alpaca").provider
    assert reg.get("data", "alpaca").cls.__module__.startswith("qf_plugins.alpaca.")
    result = runner.invoke(app, ["alpaca-emulator", "--help"])
    assert result.exit_code == 0 and "loopback Alpaca emulator" in result.stdout


def test_blocking_the_alpaca_plugin_removes_all_of_it():
    proc = _qf(["plugins"], QF_PLUGINS_BLOCK="qf_alpaca")
    assert proc.returncode == 0, proc.stderr
    assert "alpaca" not in proc.stdout and "sample" in proc.stdout
    assert "No such command 'alpaca-emulator'" in _qf(["alpaca-emulator"], QF_PLUGINS_BLOCK="qf_alpaca").stderr


def test_building_the_command_line_imports_no_vendor_code():
    probe = ("import json, sys; sys.argv = ['qf', '--help']\n"
             "from qf.cli.main import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('PROBE ' + json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('alpaca', 'backtrader', 'vectorbt') or m.startswith('qf_plugins.alpaca.emulator'))))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")]
    assert line, proc.stdout + proc.stderr
    assert "alpaca-emulator" in proc.stdout  # the plugin command was listed...
    assert json.loads(line[-1][6:]) == []  # ...without importing alpaca-py or the emulator


def test_the_framework_holds_no_alpaca_code():
    assert not (ROOT / "framework" / "emulators").exists()
    offenders = []
    for path in sorted((ROOT / "framework").rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"^\s*(from|import)\s+(alpaca|qf_plugins)\b", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_qf_alpaca_emulator_serves_until_interrupted():
    # Ctrl-C as a terminal delivers it: SIGINT at its default disposition in the child, whatever an earlier
    # test of this process left (a child inherits an ignored SIGINT, and Python then never raises
    # KeyboardInterrupt: the emulator served on for 180 s in a full clean-clone run)
    proc = subprocess.Popen([sys.executable, "-m", "qf.cli.main", "alpaca-emulator", "--port", "0", "--ws-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = []
        for line in proc.stdout:  # the emulator prints its settings, then waits
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(lines)
        assert re.search(r"export ALPACA_TRADING_URL=http://127\.0\.0\.1:\d+", text), text + proc.stderr.read()
        assert "export ALPACA_STREAM_URL=ws://127.0.0.1:" in text
        # Ctrl-C once the REST server really answers: on a loaded CI machine its thread may start late
        port = int(re.search(r"ALPACA_TRADING_URL=http://127\.0\.0\.1:(\d+)", text).group(1))
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the emulator never answered on its REST port"
                time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0 and "stopping" in out, out + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
