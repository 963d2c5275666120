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
import inspect
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from qf import hookspecs
from qf.components import KINDS, Component
from qf.errors import PluginError, QfError

if TYPE_CHECKING:
    import typer

GROUP = "qf"
HOOKS: dict[str, str] = {
    "data": "qf_data_sources",
    "signal": "qf_signal_models",
    "sizer": "qf_sizers",
    "risk": "qf_risk_rules",
    "broker": "qf_brokers",
    "cost": "qf_cost_models",
}
HOOK_NAMES = [*HOOKS.values(), "qf_register_commands", "qf_before_run", "qf_after_run"]
KIND_LABELS = {
    "data": "data source",
    "signal": "signal model",
    "sizer": "sizer",
    "risk": "risk rule",
    "broker": "broker",
    "cost": "cost model",
}
BUILTIN_MODULES = ("qf_plugins.data", "qf_plugins.signals", "qf_plugins.sizers", "qf_plugins.risk",
                   "qf_plugins.brokers", "qf_plugins.costs", "qf_plugins.alpaca")


@dataclass(frozen=True)
class Registration:
    """One component as registered: its kind, name, class and the plugin that provided it."""

    kind: str
    name: str
    cls: type[Component]
    provider: str
    version: str


@dataclass
class BrokenPlugin:
    """A plugin qf refuses to use, with one line per problem (each naming the plugin)."""

    name: str
    version: str
    problems: list[str] = field(default_factory=list)


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


def load_entry_points(pm: pluggy.PluginManager, tolerate: bool = False) -> None:
    """Register every ``qf`` entry point (built-ins first), honouring the allow/block lists.

    A plugin that fails to import or whose hooks do not match qf's specs is not registered; all of them are
    recorded in :func:`broken` and, unless ``tolerate``, raised together as one :class:`PluginError`.
    """
    allow, block = _env_list("QF_PLUGINS_ALLOW"), _env_list("QF_PLUGINS_BLOCK")
    eps = list(md.entry_points(group=GROUP))
    eps.sort(key=lambda ep: (ep.dist is None or ep.dist.name != "qf", ep.name))
    for ep in eps:
        dist = ep.dist.name if ep.dist else ""
        if allow and ep.name not in allow and dist not in allow:
            continue
        if ep.name in block or dist in block:
            continue
        if pm.get_plugin(ep.name) is not None or ep.name in broken(pm):
            continue
        version = ep.dist.version if ep.dist else "?"
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must name itself, not crash qf
            _mark_broken(pm, ep.name, version,
                         f"plugin {ep.name!r} ({dist}) failed to import: {type(exc).__name__}: {_one_line(exc)}")
            continue
        if register(pm, plugin, ep.name, version, label=f"plugin {ep.name!r} ({dist} {version})"):
            _record(pm, ep.name, version)
    if not tolerate:
        raise_broken(broken(pm).values())


def register(pm: pluggy.PluginManager, plugin: Any, name: str, version: str = "local",
             label: str | None = None) -> bool:
    """Register ``plugin`` as ``name``; a plugin pluggy refuses is recorded in :func:`broken` instead.

    Returns whether it was registered. Every hook whose arguments do not match qf's spec gets its own line
    naming the plugin, the hook and the argument (pluggy stops at the first, with a long traceback).

    Example::

        register(pm, my_module, "my_plugin")   # False, and broken(pm)["my_plugin"] says why
    """
    label = label or f"plugin {name!r}"
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        problems = _bad_arguments(pm, plugin, label) or [f"{label}: {_one_line(exc)}"]
    except ValueError as exc:  # the same module under two entry-point names
        problems = [f"{label}: {_one_line(exc)}"]
    else:
        return True
    if pm.get_plugin(name) is not None:  # pluggy < 1.6 could leave it half registered
        pm.unregister(name=name)
    for problem in problems:
        _mark_broken(pm, name, version, problem)
    return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _impl_args(func: Any) -> list[str] | None:
    """The arguments pluggy will pass by name: positional ones without a default (as pluggy reads them)."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return None
    names = [p.name for p in params if p.default is p.empty
             and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if names and names[0] in ("self", "cls") and "." in getattr(func, "__qualname__", ""):
        names = names[1:]  # a method looked up on a class, as pluggy strips it
    return names


def _bad_arguments(pm: pluggy.PluginManager, plugin: Any, label: str) -> list[str]:
    """One line per hook implementation of ``plugin`` that asks for arguments its hook does not pass."""
    problems = []
    for attr in sorted(dir(plugin)):
        opts = pm.parse_hookimpl_opts(plugin, attr)
        if opts is None:
            continue
        hook_name = opts.get("specname") or attr
        hook = getattr(pm.hook, hook_name, None)
        if hook is None or not hook.has_spec():
            continue  # an unknown hook: Registry reports it with a did-you-mean
        args = _impl_args(getattr(plugin, attr))
        if args is None:
            continue
        spec = [*hook.spec.argnames, *hook.spec.kwargnames]
        bad = [a for a in args if a not in spec]
        if not bad:
            continue
        hints = []
        for arg in bad:
            close = difflib.get_close_matches(arg, spec, n=1)
            hints.append(f"{arg!r} (did you mean {close[0]!r}?)" if close else repr(arg))
        passes = f"it passes {', '.join(spec)}" if spec else "it passes no arguments"
        problems.append(f"{label}: {hook_name}({', '.join(args)}) asks for {', '.join(hints)}, which the hook "
                        f"does not pass; {passes}")
    return problems


def _record(pm: pluggy.PluginManager, name: str, version: str) -> None:
    loaded(pm)[name] = version


def loaded(pm: pluggy.PluginManager) -> dict[str, str]:
    """Plugins registered by qf on ``pm``, in load order, with their versions."""
    if not hasattr(pm, "_qf_loaded"):
        pm._qf_loaded = {}  # type: ignore[attr-defined]
    return pm._qf_loaded  # type: ignore[attr-defined]


def broken(pm: pluggy.PluginManager) -> dict[str, BrokenPlugin]:
    """Plugins qf could not register on ``pm`` (failed import, hook arguments not in the spec)."""
    if not hasattr(pm, "_qf_broken"):
        pm._qf_broken = {}  # type: ignore[attr-defined]
    return pm._qf_broken  # type: ignore[attr-defined]


def _mark_broken(pm: pluggy.PluginManager, name: str, version: str, problem: str) -> None:
    broken(pm).setdefault(name, BrokenPlugin(name, version)).problems.append(problem)


def raise_broken(plugins: Iterable[BrokenPlugin], hint: str | None = None) -> None:
    """Raise one PluginError listing every problem of every broken plugin (nothing when there is none)."""
    problems = [p for b in plugins for p in b.problems]
    if problems:
        if hint:
            problems.append(hint)
        raise PluginError("\n".join(problems), problems)


def register_builtins(pm: pluggy.PluginManager) -> None:
    """Register the built-in plugin modules directly (for managers built without entry points)."""
    from qf import __version__

    for mod in BUILTIN_MODULES:
        name = mod.split(".")[-1]
        name = f"qf_{name}"
        if pm.get_plugin(name) is None:
            pm.register(importlib.import_module(mod), name=name)
            _record(pm, name, __version__)


def _unknown_hooks(pm: pluggy.PluginManager) -> dict[Any, list[str]]:
    """Every implementation of a hook qf does not define (a misspelling), by plugin object."""
    out: dict[Any, list[str]] = {}
    for hook_name, hook in sorted(vars(pm.hook).items()):
        if hook_name.startswith("_") or hook.has_spec():
            continue
        for impl in hook.get_hookimpls():
            if impl.optionalhook:
                continue
            name = pm.get_name(impl.plugin) or repr(impl.plugin)
            hint = difflib.get_close_matches(hook_name, HOOK_NAMES, n=1)
            did = f"; did you mean {hint[0]!r}?" if hint else f" (qf's hooks: {', '.join(HOOK_NAMES)})"
            out.setdefault(impl.plugin, []).append(f"plugin {name!r} implements unknown hook {hook_name!r}{did}")
    return out


def check(pm: pluggy.PluginManager) -> None:
    """Fail loudly on misspelled hooks (what ``check_pending`` finds), naming each plugin and hook."""
    problems = [p for lines in _unknown_hooks(pm).values() for p in lines]
    if problems:
        raise PluginError("\n".join(problems), problems)


class Registry:
    """Components by kind and name, built from a plugin manager's registration hooks.

    A plugin is used whole or not at all: one whose hooks are misspelled, fail, return something other
    than component classes or clash with an earlier plugin's names is left out and listed in ``broken``.
    Unless ``allow_broken``, any broken plugin makes the constructor raise one PluginError listing them all.

    Example::

        reg = Registry(pm)
        reg.get("signal", "sma_cross").cls(params={"fast": 5, "slow": 20})
    """

    def __init__(self, pm: pluggy.PluginManager, allow_broken: bool = False) -> None:
        self.pm = pm
        self._by_kind: dict[str, dict[str, Registration]] = {k: {} for k in HOOKS}
        self.commands: dict[str, str] = {}  # command name -> plugin, set by register_commands
        versions = loaded(pm)
        self.broken: dict[str, BrokenPlugin] = {
            name: BrokenPlugin(b.name, b.version, list(b.problems)) for name, b in broken(pm).items()}
        for plugin, problems in _unknown_hooks(pm).items():
            name = pm.get_name(plugin) or repr(plugin)
            self.broken.setdefault(name, BrokenPlugin(name, versions.get(name, "local"))).problems.extend(problems)
        for kind, hook_name in HOOKS.items():
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                provider = pm.get_name(impl.plugin) or repr(impl.plugin)
                if provider in self.broken:
                    continue
                try:
                    classes = _as_classes(_call(impl.function, provider, hook_name), provider, hook_name)
                    if os.environ.get("QF_TRACE"):
                        sys.stderr.write(f"qf trace: {hook_name} of {provider}: {[c.__name__ for c in classes]}\n")
                    for cls in classes:
                        self._add(kind, cls, provider, versions.get(provider, "local"))
                except PluginError as exc:
                    self.broken.setdefault(provider, BrokenPlugin(provider, versions.get(provider, "local"))
                                           ).problems.append(str(exc))
        for by_name in self._by_kind.values():  # what a plugin registered before its problem showed up
            for name in [n for n, r in by_name.items() if r.provider in self.broken]:
                del by_name[name]
        if not allow_broken:
            raise_broken(self.broken.values())
        for name in self.broken:  # its lifecycle hooks must not run either
            if pm.get_plugin(name) is not None:
                pm.unregister(name=name)

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

    def register_commands(self, app: typer.Typer, taken: Iterable[str] = ()) -> dict[str, str]:
        """Let every healthy plugin add its commands to ``app`` (``qf_register_commands``).

        Returns the names added, each with the plugin that added it (kept in :attr:`commands` until the next call).
        Plugins are asked in load order (built-ins first). A plugin is used whole or not at all: one whose
        hook raises, or that adds a command or group whose name is taken (one of ``taken``, qf's own
        commands, or an earlier plugin's), gets everything it added removed, its components dropped and
        one line in ``broken`` naming it; the other plugins' commands and the rest of the command line work.

        Example::

            extra = typer.Typer()
            get_registry(allow_broken=True).register_commands(extra, taken={"run", "plugins"})
            # -> {'alpaca-emulator': 'qf_alpaca'}
        """
        added: dict[str, str] = {}
        for impl in self.pm.hook.qf_register_commands.get_hookimpls():
            provider = self.pm.get_name(impl.plugin) or repr(impl.plugin)
            if provider in self.broken:
                continue
            used = {*taken, *command_names(app)}
            n_commands, n_groups = len(app.registered_commands), len(app.registered_groups)
            try:
                impl.function(*[{"app": app}[arg] for arg in impl.argnames])
                new = command_names(app, n_commands, n_groups)
                clash = sorted({n for n in new if n in used or new.count(n) > 1})
                if clash:
                    raise PluginError(f"plugin {provider!r}: qf_register_commands added command(s) "
                                      f"{', '.join(map(repr, clash))}, whose name is already taken")
            except Exception as exc:  # a plugin's own bug names the plugin; the command line still starts
                del app.registered_commands[n_commands:], app.registered_groups[n_groups:]
                line = str(exc) if isinstance(exc, PluginError) else (
                    f"plugin {provider!r}: qf_register_commands() raised {type(exc).__name__}: {_one_line(exc)}")
                self._drop(provider, line)
                continue
            added.update(dict.fromkeys(new, provider))
        self.commands = added
        return added

    def _drop(self, provider: str, problem: str) -> None:
        """Mark ``provider`` broken after the registry was built: its components and hooks go too."""
        self.broken.setdefault(provider, BrokenPlugin(provider, loaded(self.pm).get(provider, "local"))
                               ).problems.append(problem)
        for by_name in self._by_kind.values():
            for name in [n for n, r in by_name.items() if r.provider == provider]:
                del by_name[name]
        if self.pm.get_plugin(provider) is not None:
            self.pm.unregister(name=provider)

    def call_before_run(self, experiment: Any) -> None:
        self.pm.hook.qf_before_run(experiment=experiment)

    def call_after_run(self, experiment: Any, result: Any, report_dir: Any) -> None:
        self.pm.hook.qf_after_run(experiment=experiment, result=result, report_dir=report_dir)


def command_names(app: typer.Typer, first_command: int = 0, first_group: int = 0) -> list[str]:
    """The names under which ``app`` serves its commands and groups (from the given positions on), derived as
    typer derives them (a group added without a name serves its own commands)."""
    from typer.main import get_command_name, get_group_from_info

    names = [info.name or get_command_name(getattr(info.callback, "__name__", "") or "?")
             for info in app.registered_commands[first_command:]]
    for info in app.registered_groups[first_group:]:
        group = get_group_from_info(info, pretty_exceptions_short=True, suggest_commands=True, rich_markup_mode=None)
        names += [group.name] if group.name else list(group.commands)
    return names


def _call(function: Any, provider: str, hook_name: str) -> Any:
    try:
        return function()
    except Exception as exc:  # a plugin's own bug names the plugin instead of showing its traceback
        raise PluginError(f"plugin {provider!r}: {hook_name}() raised {type(exc).__name__}: {_one_line(exc)}"
                          ) from None


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


def get_registry(refresh: bool = False, allow_broken: bool = False) -> Registry:
    """The process-wide registry over all installed plugins (built once, cached).

    Raises one PluginError listing every broken plugin unless ``allow_broken`` (``qf plugins`` lists the
    healthy ones and marks the broken ones).
    """
    global _REGISTRY
    if _REGISTRY is None or refresh:
        pm = new_plugin_manager()
        load_entry_points(pm, tolerate=True)
        _REGISTRY = Registry(pm, allow_broken=True)
    if not allow_broken:
        names = ",".join(_REGISTRY.broken)
        raise_broken(_REGISTRY.broken.values(),
                     f"qf does not run with a broken plugin: fix, uninstall or skip it (QF_PLUGINS_BLOCK={names}); "
                     "`qf plugins` lists the healthy ones")
    return _REGISTRY
