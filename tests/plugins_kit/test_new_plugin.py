"""``qf new-plugin``: the command's behaviour, and the generated packages install and pass their own tests.

The command is tried on a throwaway typer app (the lead wires it into ``qf``'s app). The generated
projects of every kind are built and installed like a third party's (pip ``--target``, offline) and their
tests run in a fresh process: a template that produces a broken package, entry point or test fails here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from setuptools import find_packages
from typer.testing import CliRunner

from qf.cli.new_plugin import Kind, new_plugin
from qf.config.loader import load_experiment
from qf.errors import QfError
from qf.scaffold import KINDS, PluginNames, create_plugin, render
from qf.testing import registry_with

app = typer.Typer()
app.command("new-plugin")(new_plugin)


@app.command("noop")
def _noop() -> None:
    """A second command, so typer keeps `new-plugin` as a named subcommand as in qf's app."""


runner = CliRunner()
KIND_NAMES = [k.value for k in Kind]
EXPECTED_FILES = {".gitignore", "README.md", "pyproject.toml", "src/qf_ema_trend/__init__.py",
                  "tests/test_qf_ema_trend.py", "experiments/ema_trend.yaml"}


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_kinds_match_the_registry_hooks():
    from qf.registry import HOOKS

    assert set(KIND_NAMES) == set(KINDS) == set(HOOKS)
    assert {k: v["hook"] for k, v in KINDS.items()} == HOOKS


def test_creates_a_package(tmp_path):
    dest = tmp_path / "plugin"
    res = runner.invoke(app, ["new-plugin", "qf-ema-trend", "--dir", str(dest)])
    assert res.exit_code == 0, res.output
    assert "created qf-ema-trend: signal model 'ema_trend' (package qf_ema_trend)" in " ".join(res.stdout.split())
    assert _files(dest) == EXPECTED_FILES
    pyproject = (dest / "pyproject.toml").read_text()
    assert '[project.entry-points.qf]\nqf_ema_trend = "qf_ema_trend"' in pyproject
    assert 'name = "qf-ema-trend"' in pyproject


def test_default_folder_is_the_name_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["new-plugin", "qf-ema-trend", "--kind", "sizer", "--component", "ema_trend"])
    assert res.exit_code == 0, res.output
    assert _files(tmp_path / "qf-ema-trend") == EXPECTED_FILES
    assert "class EmaTrend(Sizer)" in (tmp_path / "qf-ema-trend/src/qf_ema_trend/__init__.py").read_text()


def test_an_existing_empty_folder_is_fine(tmp_path):
    res = runner.invoke(app, ["new-plugin", "qf-ema-trend", "--dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert _files(tmp_path) == EXPECTED_FILES


def test_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["new-plugin", "qf-ema-trend", "--dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "already exists and is a folder that is not empty" in res.stderr
    assert _files(tmp_path) == {"notes.txt"}  # nothing written
    file = tmp_path / "notes.txt"
    res = runner.invoke(app, ["new-plugin", "qf-ema-trend", "--dir", str(file)])
    assert res.exit_code == 2 and "already exists and is a file" in res.stderr


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad name", "'bad name' is not a valid package name"),
        ("-qf-x", "'-qf-x' is not a valid package name"),
        ("qf-x-", "'qf-x-' is not a valid package name"),
        ("qf/x", "'qf/x' is not a valid package name"),
        ("2fast", "gives the import name '2fast', which is not a valid Python identifier"),
        ("class", "gives the import name 'class', which is not a valid Python identifier"),
        ("json", "gives the import name 'json', which would shadow an existing module"),
        ("QF", "gives the import name 'qf', which would shadow qf itself"),
        ("qf-plugins", "gives the import name 'qf_plugins', which would shadow qf itself"),
    ],
)
def test_refuses_invalid_names(tmp_path, name, message):
    res = runner.invoke(app, ["new-plugin", "--dir", str(tmp_path / "out"), "--", name])  # "--": "-qf-x" is no option
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.stderr.split())
    assert not (tmp_path / "out").exists()


def test_refuses_a_component_name_already_taken(tmp_path):
    res = runner.invoke(app, ["new-plugin", "qf-momentum", "--dir", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert ("the signal model name 'momentum' is already taken by plugin 'qf_signals'; pick another with "
            "--component") in " ".join(res.stderr.split())
    res = runner.invoke(app, ["new-plugin", "qf-x", "--component", "Bad-Name", "--dir", str(tmp_path / "out")])
    assert res.exit_code == 2 and "component name 'Bad-Name' must be lower case" in res.stderr
    assert not (tmp_path / "out").exists()


def test_refuses_an_unknown_kind(tmp_path):
    res = runner.invoke(app, ["new-plugin", "qf-x", "--kind", "strategy", "--dir", str(tmp_path / "out")])
    assert res.exit_code == 2 and not (tmp_path / "out").exists()
    with pytest.raises(QfError, match="unknown kind 'strategy'"):
        render("strategy", PluginNames.from_name("qf-x"))


def test_names_are_derived_sensibly():
    assert PluginNames.from_name("qf-ema-trend") == PluginNames("qf-ema-trend", "qf_ema_trend", "ema_trend", "EmaTrend")
    assert PluginNames.from_name("My.Tilt_plugin").component == "my_tilt"
    assert PluginNames.from_name("qf-plugin").component == "qf_plugin"
    assert PluginNames.from_name("qf-2x").component == "c_2x"  # YAML names start with a letter
    assert PluginNames.from_name("acme-qf", component="tilt").cls == "Tilt"


def test_templates_ship_as_package_data():
    # pyproject's package-data glob "*.tmpl" matches files directly inside a package, so the templates
    # folder must be a package, and every template a *.tmpl file in it
    root = Path(__file__).resolve().parents[2] / "framework"
    assert "scaffold.templates" in find_packages(str(root))
    folder = root / "scaffold" / "templates"
    assert {p.name for p in folder.iterdir() if p.is_file() and p.name != "__init__.py"} == {
        "pyproject.toml.tmpl", "README.md.tmpl", "gitignore.tmpl",
        *(f"{k}.py.tmpl" for k in KINDS), *(f"test_{k}.py.tmpl" for k in KINDS),
        *(f"experiment_{k}.yaml.tmpl" for k in KINDS),
    }
    assert not [p for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"]


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_generated_module_registers_and_its_experiment_validates(tmp_path, kind):
    dest = create_plugin(f"qf-gen-{kind}", kind, tmp_path / kind)
    package = f"qf_gen_{kind}"
    spec = importlib.util.spec_from_file_location(package, dest / "src" / package / "__init__.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    try:
        spec.loader.exec_module(module)
        reg = registry_with(module)
        assert reg.get(kind, f"gen_{kind}").provider == package
        exp = load_experiment(dest / "experiments" / f"gen_{kind}.yaml", registry=reg)
        assert exp.name == f"gen_{kind}"
    finally:
        del sys.modules[package]
    compile((dest / "tests" / f"test_{package}.py").read_text(), "test", "exec")


def test_generated_packages_install_and_pass_their_own_tests(tmp_path, kit: SimpleNamespace):
    projects = [create_plugin(f"qf-made-{kind}", kind, tmp_path / f"qf-made-{kind}") for kind in KIND_NAMES]
    target = tmp_path / "site-packages"
    kit.pip_install(projects, target)
    for kind in KIND_NAMES:
        assert (target / f"qf_made_{kind}-0.1.0.dist-info" / "entry_points.txt").is_file()
    tests = [p / "tests" for p in projects]
    res = kit.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, tests)], tmp_path,
                  kit.env_with(target))
    expected = sum(f.read_text().count("\ndef test_") for t in tests for f in t.glob("test_*.py"))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert expected >= 6 * len(KIND_NAMES) and f"{expected} passed" in res.stdout, res.stdout[-2000:]
