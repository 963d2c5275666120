"""The plugin host: entry points, duplicates, misspelled hooks, allow/block lists, tracing, local plugins."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from qf import __version__, hookimpl
from qf.components import SignalModel, Sizer
from qf.errors import PluginError, QfError
from qf.registry import Registry, get_registry, load_entry_points, loaded, new_plugin_manager, register_builtins


class Ones(SignalModel):
    name = "ones"

    def compute(self, bars):
        return bars.close * 0 + 1.0


def _fake_dist(root: Path, dist: str, version: str, module: str, body: str, ep_name: str) -> None:
    """A minimal installed distribution (dist-info + module) that importlib.metadata discovers."""
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[qf]\n{ep_name} = {module}\n")


PLUGIN_BODY = """
from qf import hookimpl
from qf.components import SignalModel

class Twos(SignalModel):
    name = "twos"

    def compute(self, bars):
        return bars.close * 0 + 1.0

@hookimpl
def qf_signal_models():
    return [Twos]
"""


def test_builtins_come_from_the_qf_entry_point_group():
    reg = get_registry(refresh=True)
    sma = reg.get("signal", "sma_cross")
    assert sma.provider == "qf_signals"
    assert sma.version == __version__
    assert "equal" in reg.names("sizer")
    assert "sample" in reg.names("data")
    assert "sim" in reg.names("broker")


def test_third_party_entry_point_is_discovered(tmp_path, monkeypatch):
    _fake_dist(tmp_path, "qf_twos", "1.2.3", "qf_twos_plugin", PLUGIN_BODY, "twos")
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = new_plugin_manager()
    load_entry_points(pm)
    reg = Registry(pm)
    r = reg.get("signal", "twos")
    assert (r.provider, r.version) == ("twos", "1.2.3")
    # built-ins are loaded first
    names = list(loaded(pm))
    assert names.index("qf_signals") < names.index("twos")
    sys.modules.pop("qf_twos_plugin", None)


def test_duplicate_name_names_both_providers():
    class Dup:
        @hookimpl
        def qf_signal_models(self):
            return [Ones]

    class Dup2:
        @hookimpl
        def qf_signal_models(self):
            return [Ones]

    pm = new_plugin_manager()
    pm.register(Dup(), name="first_plugin")
    pm.register(Dup2(), name="second_plugin")
    with pytest.raises(PluginError) as exc:
        Registry(pm)
    msg = str(exc.value)
    assert "signal model 'ones' is registered twice" in msg
    assert "'first_plugin'" in msg and "'second_plugin'" in msg


def test_duplicate_of_a_builtin_is_an_error():
    class Clash(SignalModel):
        name = "sma_cross"

    class P:
        @hookimpl
        def qf_signal_models(self):
            return [Clash]

    pm = new_plugin_manager()
    register_builtins(pm)
    pm.register(P(), name="clasher")
    with pytest.raises(PluginError, match="'sma_cross' is registered twice: by plugin 'qf_signals'"):
        Registry(pm)


def test_misspelled_hook_fails_loudly():
    class Typo:
        @hookimpl
        def qf_signal_model(self):  # missing the final "s"
            return [Ones]

    pm = new_plugin_manager()
    pm.register(Typo(), name="typo_plugin")
    with pytest.raises(PluginError, match="typo_plugin.*qf_signal_model"):
        Registry(pm)


def test_hook_must_return_component_classes():
    class Bad:
        @hookimpl
        def qf_sizers(self):
            return [Ones]  # a signal model where sizers are expected

    pm = new_plugin_manager()
    pm.register(Bad(), name="bad")
    with pytest.raises(PluginError, match="qf_sizers returned .*Ones.*not a Sizer subclass"):
        Registry(pm)


def test_block_list(monkeypatch):
    monkeypatch.setenv("QF_PLUGINS_BLOCK", "qf_sizers")
    pm = new_plugin_manager()
    load_entry_points(pm)
    reg = Registry(pm)
    assert reg.names("sizer") == []
    assert "sma_cross" in reg.names("signal")


def test_allow_list(monkeypatch):
    monkeypatch.setenv("QF_PLUGINS_ALLOW", "qf_signals")
    pm = new_plugin_manager()
    load_entry_points(pm)
    reg = Registry(pm)
    assert reg.names("sizer") == [] and reg.names("data") == []
    assert "sma_cross" in reg.names("signal")


def test_trace_switch_prints_hook_calls(monkeypatch, capsys):
    monkeypatch.setenv("QF_TRACE", "1")
    pm = new_plugin_manager()
    register_builtins(pm)
    Registry(pm)
    assert "qf_signal_models" in capsys.readouterr().err


def test_broken_plugin_import_names_the_plugin(tmp_path, monkeypatch):
    _fake_dist(tmp_path, "qf_broken", "0.1", "qf_broken_plugin", "raise RuntimeError('boom')\n", "broken")
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = new_plugin_manager()
    with pytest.raises(PluginError, match=r"plugin 'broken' \(qf_broken\) failed to import: RuntimeError: boom"):
        load_entry_points(pm)


def test_did_you_mean_for_unknown_names():
    reg = get_registry()
    with pytest.raises(QfError, match="'hrpp' is not an installed sizer; did you mean 'hrp'"):
        reg.get("sizer", "hrpp")
    with pytest.raises(QfError, match=r"'zzz' is not an installed broker \(installed: .*sim"):
        reg.get("broker", "zzz")


def test_local_plugin_by_file_and_by_module(tmp_path):
    strat = tmp_path / "strategies"
    strat.mkdir()
    (strat / "mine.py").write_text(textwrap.dedent("""
        from qf.components import SignalModel

        class Mine(SignalModel):
            name = "mine"

            def compute(self, bars):
                return bars.close * 0
    """))
    reg = get_registry()
    r = reg.get("signal", "strategies/mine.py:Mine", base_dir=tmp_path)
    assert r.cls.__name__ == "Mine" and r.provider == "local"
    assert reg.get("sizer", "qf_plugins.sizers.equal:" + reg.get("sizer", "equal").cls.__name__).cls is \
        reg.get("sizer", "equal").cls
    with pytest.raises(QfError, match="is not a SignalModel subclass"):
        reg.get("signal", "qf.components:Sizer")
    with pytest.raises(QfError, match="local plugin file 'strategies/none.py' not found"):
        reg.get("signal", "strategies/none.py:X", base_dir=tmp_path)


def test_every_kind_has_a_base_class():
    assert issubclass(Sizer, object)
    reg = get_registry()
    for r in reg.all():
        assert r.cls.name == r.name
        assert r.cls.__doc__, f"{r.name} has no docstring"
