"""The plugin host: a pluggy manager plus a typed registry of components by kind and name.

Built-ins and third-party plugins load the same way, through entry points of the group ``qf``
(built-ins first). Environment switches:

- ``QF_PLUGINS_ALLOW=a,b``: load only these entry points (by entry-point or distribution name);
- ``QF_PLUGINS_BLOCK=a,b``: never load these;
- ``QF_TRACE=1``: print every hook call to stderr.

Example::

    reg = get_registry()
    reg.get("sizer", "hrp").cls       # -> the HRP sizer class
    reg.names("signal")               # -> ['breakout', 'constant', ...]
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import importlib.util
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from qf import hookspecs
from qf.components import KINDS, Component
from qf.errors import PluginError, QfError

GROUP = "qf"
HOOKS: dict[str, str] = {
    "data": "qf_data_sources",
    "signal": "qf_signal_models",
    "sizer": "qf_sizers",
    "risk": "qf_risk_rules",
    "broker": "qf_brokers",
}
HOOK_NAMES = [*HOOKS.values(), "qf_before_run", "qf_after_run"]
KIND_LABELS = {
    "data": "data source",
    "signal": "signal model",
    "sizer": "sizer",
    "risk": "risk rule",
    "broker": "broker",
}
BUILTIN_MODULES = ("qf_plugins.data", "qf_plugins.signals", "qf_plugins.sizers", "qf_plugins.risk",
                   "qf_plugins.brokers")


@dataclass(frozen=True)
class Registration:
    """One component as registered: its kind, name, class and the plugin that provided it."""

    kind: str
    name: str
    cls: type[Component]
    provider: str
    version: str


def _env_list(var: str) -> set[str]:
    return {x.strip() for x in os.environ.get(var, "").split(",") if x.strip()}


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with qf's hook specs and nothing registered (what tests start from)."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    if os.environ.get("QF_TRACE"):
        pm.trace.root.setwriter(lambda msg: sys.stderr.write(msg))
        pm.enable_tracing()
    return pm


def load_entry_points(pm: pluggy.PluginManager) -> None:
    """Register every ``qf`` entry point (built-ins first), honouring the allow/block lists."""
    allow, block = _env_list("QF_PLUGINS_ALLOW"), _env_list("QF_PLUGINS_BLOCK")
    eps = list(md.entry_points(group=GROUP))
    eps.sort(key=lambda ep: (ep.dist is None or ep.dist.name != "qf", ep.name))
    for ep in eps:
        dist = ep.dist.name if ep.dist else ""
        if allow and ep.name not in allow and dist not in allow:
            continue
        if ep.name in block or dist in block:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must name itself, not crash qf
            raise PluginError(f"plugin {ep.name!r} ({dist}) failed to import: {type(exc).__name__}: {exc}") from exc
        pm.register(plugin, name=ep.name)
        _record(pm, ep.name, ep.dist.version if ep.dist else "?")


def _record(pm: pluggy.PluginManager, name: str, version: str) -> None:
    loaded(pm)[name] = version


def loaded(pm: pluggy.PluginManager) -> dict[str, str]:
    """Plugins registered by qf on ``pm``, in load order, with their versions."""
    if not hasattr(pm, "_qf_loaded"):
        pm._qf_loaded = {}  # type: ignore[attr-defined]
    return pm._qf_loaded  # type: ignore[attr-defined]


def register_builtins(pm: pluggy.PluginManager) -> None:
    """Register the built-in plugin modules directly (for managers built without entry points)."""
    from qf import __version__

    for mod in BUILTIN_MODULES:
        name = mod.split(".")[-1]
        name = f"qf_{name}"
        if pm.get_plugin(name) is None:
            pm.register(importlib.import_module(mod), name=name)
            _record(pm, name, __version__)


def check(pm: pluggy.PluginManager) -> None:
    """Fail loudly on a misspelled hook (``check_pending``) with the plugin's name."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        hook = str(exc).split("'")[1] if "'" in str(exc) else str(exc)
        known = ", ".join(HOOK_NAMES)
        hint = difflib.get_close_matches(hook, HOOK_NAMES, n=1)
        did = f"; did you mean {hint[0]!r}?" if hint else f" (qf's hooks: {known})"
        raise PluginError(f"plugin {name!r} implements unknown hook {hook!r}{did}") from None


class Registry:
    """Components by kind and name, built from a plugin manager's registration hooks.

    Example::

        reg = Registry(pm)
        reg.get("signal", "sma_cross").cls(params={"fast": 5, "slow": 20})
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        check(pm)
        self.pm = pm
        self._by_kind: dict[str, dict[str, Registration]] = {k: {} for k in HOOKS}
        versions = loaded(pm)
        for kind, hook_name in HOOKS.items():
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                provider = pm.get_name(impl.plugin) or repr(impl.plugin)
                classes = _as_classes(impl.function(), provider, hook_name)
                if os.environ.get("QF_TRACE"):
                    sys.stderr.write(f"qf trace: {hook_name} of {provider}: {[c.__name__ for c in classes]}\n")
                for cls in classes:
                    self._add(kind, cls, provider, versions.get(provider, "local"))

    def _add(self, kind: str, cls: type[Component], provider: str, version: str) -> None:
        base = KINDS[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(
                f"plugin {provider!r}: {HOOKS[kind]} returned {cls!r}, which is not a {base.__name__} subclass"
            )
        if not cls.name:
            raise PluginError(f"plugin {provider!r}: {cls.__name__} has no name")
        prev = self._by_kind[kind].get(cls.name)
        if prev is not None:
            raise PluginError(
                f"{KIND_LABELS[kind]} {cls.name!r} is registered twice: by plugin {prev.provider!r} "
                f"({prev.cls.__module__}.{prev.cls.__qualname__}) and by plugin {provider!r} "
                f"({cls.__module__}.{cls.__qualname__})"
            )
        self._by_kind[kind][cls.name] = Registration(kind, cls.name, cls, provider, version)

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def all(self) -> list[Registration]:
        return [r for k in HOOKS for r in sorted(self._by_kind[k].values(), key=lambda r: r.name)]

    def get(self, kind: str, name: str, base_dir: Path | None = None) -> Registration:
        """Resolve a YAML ``type:``: a registered name, ``module.path:Class`` or ``file.py:Class``."""
        reg = self._by_kind[kind].get(name)
        if reg is not None:
            return reg
        if ":" in name:
            cls = load_local(name, base_dir)
            base = KINDS[kind]
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise QfError(f"{name!r} is not a {base.__name__} subclass")
            return Registration(kind, cls.name or cls.__name__, cls, "local", "local")
        known = self.names(kind)
        hint = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        msg = f"{name!r} is not an installed {KIND_LABELS[kind]}"
        msg += f"; did you mean {hint[0]!r}?" if hint else f" (installed: {', '.join(known) or 'none'})"
        raise QfError(msg)

    def call_before_run(self, experiment: Any) -> None:
        self.pm.hook.qf_before_run(experiment=experiment)

    def call_after_run(self, experiment: Any, result: Any, report_dir: Any) -> None:
        self.pm.hook.qf_after_run(experiment=experiment, result=result, report_dir=report_dir)


def _as_classes(result: Any, provider: str, hook_name: str) -> Iterable[type[Component]]:
    if result is None:
        return []
    try:
        return list(result)
    except TypeError:
        raise PluginError(f"plugin {provider!r}: {hook_name} must return a list of classes, got {result!r}") from None


def load_local(spec: str, base_dir: Path | None = None) -> Any:
    """Load ``module.path:Class`` or ``path/to/file.py:Class`` (relative to ``base_dir`` or the cwd)."""
    target, _, attr = spec.rpartition(":")
    module: ModuleType
    if target.endswith(".py"):
        candidates = [Path(target)]
        if base_dir is not None:
            candidates.insert(0, base_dir / target)
            candidates.append(base_dir.parent / target)
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise QfError(f"local plugin file {target!r} not found")
        mod_name = f"qf_local_{path.stem}_{abs(hash(str(path.resolve())))}"
        module = sys.modules.get(mod_name)  # type: ignore[assignment]
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(mod_name, path)
            assert loader_spec and loader_spec.loader
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_name] = module
            try:
                loader_spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[mod_name]
                raise QfError(f"local plugin {str(path)!r} failed to import: {type(exc).__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise QfError(f"cannot import module {target!r} for {spec!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise QfError(f"{target!r} has no attribute {attr!r}") from None


_REGISTRY: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry over all installed plugins (built once, cached)."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        pm = new_plugin_manager()
        load_entry_points(pm)
        _REGISTRY = Registry(pm)
    return _REGISTRY
