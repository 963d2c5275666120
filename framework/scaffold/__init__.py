"""``qf new-plugin``: a ready plugin package (pyproject with the entry point, component, tests, README).

:func:`create_plugin` renders the templates of :mod:`qf.scaffold.templates` (``string.Template`` files,
``$name`` placeholders) into a new folder::

    NAME/
      pyproject.toml                  [project.entry-points.qf] <package> = "<package>"
      README.md
      .gitignore
      src/<package>/__init__.py       the component and its @hookimpl
      tests/test_<package>.py         qf's fixtures and contract checks; passes as generated
      experiments/<component>.yaml    an experiment using the component, runnable offline

Example::

    path = create_plugin("qf-ema-trend", kind="signal", dest=Path("/tmp/qf-ema-trend"))
    # -> signal model 'ema_trend' in package qf_ema_trend
"""

from __future__ import annotations

import keyword
import re
import string
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from qf.errors import QfError
from qf.registry import Registry, get_registry, new_plugin_manager, register_builtins

# PEP 508 distribution names: letters, digits, '.', '_', '-'; starting and ending with a letter or digit
_DIST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_COMPONENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# packages a plugin must never shadow (importing them would load the plugin instead)
_RESERVED = frozenset({"qf", "qf_plugins", "framework", "plugins", "tests", "test", "src"})

KINDS: dict[str, dict[str, str]] = {
    "signal": {"label": "signal model", "hook": "qf_signal_models", "check": "check_signal",
               "usage": "signal:\n  type: {c}\n  params: {{span: 50, band: 0.05}}"},
    "sizer": {"label": "sizer", "hook": "qf_sizers", "check": "check_sizer",
              "usage": "sizer:\n  type: {c}\n  params: {{gross: 1.0, top_n: 5}}"},
    "risk": {"label": "risk rule", "hook": "qf_risk_rules", "check": "check_risk_rule",
             "usage": "risk:\n  - type: {c}\n    params: {{max_names: 10}}"},
    "data": {"label": "data source", "hook": "qf_data_sources", "check": "check_data_source",
             "usage": "data:\n  type: {c}\n  params: {{symbols: [AAA, BBB], bars: 500, seed: 7}}"},
    "broker": {"label": "broker", "hook": "qf_brokers", "check": "check_broker",
               "usage": "execution: {{engine: backtrader}}\nbroker:\n  type: {c}\n  params: {{journal: fills.csv}}"},
    "cost": {"label": "cost model", "hook": "qf_cost_models", "check": "check_cost_model",
             "usage": "execution:\n  costs:\n    type: {c}\n    params: {{scale: 0.1, window: 20}}"},
}


@dataclass(frozen=True)
class PluginNames:
    """Every name a new plugin needs, derived from the distribution name.

    Example::

        PluginNames.from_name("qf-ema-trend")
        # PluginNames(dist='qf-ema-trend', package='qf_ema_trend', component='ema_trend', cls='EmaTrend')
    """

    dist: str
    package: str
    component: str
    cls: str

    @classmethod
    def from_name(cls, name: str, component: str | None = None) -> PluginNames:
        """Validate ``name`` (and ``component``) and derive the rest; raise :class:`QfError` if invalid."""
        if not _DIST_NAME.match(name):
            raise QfError(
                f"{name!r} is not a valid package name: use letters, digits, '-', '_' and '.', "
                "starting and ending with a letter or digit (e.g. qf-ema-trend)"
            )
        package = re.sub(r"[-_.]+", "_", name).lower()
        if not package.isidentifier() or keyword.iskeyword(package):
            raise QfError(f"{name!r} gives the import name {package!r}, which is not a valid Python identifier "
                          "(it must not start with a digit or be a keyword)")
        if package in _RESERVED or package in sys.stdlib_module_names:
            raise QfError(f"{name!r} gives the import name {package!r}, which would shadow "
                          f"{'qf itself' if package.startswith('qf') else 'an existing module'}; choose another name")
        if component is None:
            # "qf-ema-trend" -> "ema_trend": the prefix and suffix say it is a plugin, YAML does not need that
            component = re.sub(r"^qf_|_?plugins?$", "", package) or package
            component = component if _COMPONENT_NAME.match(component) else f"c_{component}"
        elif not _COMPONENT_NAME.match(component):
            raise QfError(f"component name {component!r} must be lower case letters, digits and '_', "
                          "starting with a letter (it is what YAML's type: refers to)")
        cls_name = "".join(part.capitalize() for part in component.split("_") if part)
        return cls(dist=name, package=package, component=component, cls=cls_name)


def _template(name: str) -> str:
    return resources.files("qf.scaffold.templates").joinpath(name).read_text(encoding="utf-8")


def render(kind: str, names: PluginNames) -> dict[str, str]:
    """The files of a new plugin of ``kind``, as ``{relative path: text}``.

    Example::

        files = render("sizer", PluginNames.from_name("qf-tilt"))
        sorted(files)[0]   # '.gitignore'
    """
    if kind not in KINDS:
        raise QfError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    from qf import __version__

    spec = KINDS[kind]
    values = {
        "dist": names.dist, "package": names.package, "component": names.component, "cls": names.cls,
        "kind": kind, "kind_label": spec["label"], "hook": spec["hook"], "check": spec["check"],
        "qf_version": __version__, "usage": spec["usage"].format(c=names.component),
    }
    layout = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        ".gitignore": "gitignore.tmpl",
        f"src/{names.package}/__init__.py": f"{kind}.py.tmpl",
        f"tests/test_{names.package}.py": f"test_{kind}.py.tmpl",
        f"experiments/{names.component}.yaml": f"experiment_{kind}.yaml.tmpl",
    }
    # substitute() (not safe_substitute) so a placeholder missing from `values` fails loudly here
    return {path: string.Template(_template(tmpl)).substitute(values) for path, tmpl in layout.items()}


def _taken(kind: str, component: str) -> str | None:
    """The plugin that already registers ``component`` as a ``kind``, if any (built-ins and installed)."""
    try:
        registry = get_registry()
    except QfError:
        # a broken third-party plugin must not stop a new one from being made: check the built-ins only
        pm = new_plugin_manager()
        register_builtins(pm)
        registry = Registry(pm)
    if component in registry.names(kind):
        return registry.get(kind, component).provider
    return None


def create_plugin(name: str, kind: str = "signal", dest: Path | None = None, component: str | None = None) -> Path:
    """Write a new plugin package for ``name`` into ``dest`` (default ``./name``) and return its path.

    Refuses (:class:`QfError`) an invalid name, a component name already registered for that kind, and a
    destination that exists and is not an empty folder; nothing is written then.

    Example::

        create_plugin("qf-top-weights", kind="sizer", dest=tmp_path / "plugin")
    """
    names = PluginNames.from_name(name, component)
    files = render(kind, names)
    dest = Path(name) if dest is None else Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        what = "a file" if not dest.is_dir() else "a folder that is not empty"
        raise QfError(f"{dest} already exists and is {what}; choose another --dir (nothing was written)")
    provider = _taken(kind, names.component)
    if provider is not None:
        raise QfError(f"the {KINDS[kind]['label']} name {names.component!r} is already taken by plugin "
                      f"{provider!r}; pick another with --component (or another NAME)")
    for rel, text in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return dest
