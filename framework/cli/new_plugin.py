"""``qf new-plugin NAME``: create a ready plugin package from qf's templates.

The command function is wired into the app in :mod:`qf.cli.main`::

    from qf.cli.new_plugin import new_plugin
    app.command("new-plugin")(new_plugin)

Example session::

    $ qf new-plugin qf-ema-trend --kind signal
    created qf-ema-trend: signal model 'ema_trend' (package qf_ema_trend) in qf-ema-trend
    $ cd qf-ema-trend && pip install -e . && pytest
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from qf.errors import QfError
from qf.scaffold import KINDS, PluginNames, create_plugin

_out = Console(width=None if sys.stdout.isatty() else 160)
_err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


class Kind(StrEnum):
    """The component kinds a new plugin can provide (one registration hook each)."""

    signal = "signal"
    sizer = "sizer"
    risk = "risk"
    data = "data"
    broker = "broker"
    cost = "cost"


def new_plugin(
    name: Annotated[str, typer.Argument(help="Distribution name, e.g. qf-ema-trend (imported as qf_ema_trend).")],
    kind: Annotated[Kind, typer.Option("--kind", help="What the plugin provides.")] = Kind.signal,
    dir_: Annotated[
        Path | None, typer.Option("--dir", help="Folder to create (default ./NAME); must not exist or be empty.")
    ] = None,
    component: Annotated[
        str | None,
        typer.Option("--component", help="The component's name in YAML (default: NAME without qf-/-plugin)."),
    ] = None,
) -> None:
    """Create a plugin package: pyproject with the qf entry point, a component, tests, README, experiment."""
    try:
        dest = create_plugin(name, kind.value, dir_, component)
    except QfError as exc:
        for line in exc.problems:
            _err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    names = PluginNames.from_name(name, component)
    label = KINDS[kind.value]["label"]
    _out.print(f"created {escape(names.dist)}: {label} {names.component!r} (package {names.package}) in {dest}",
               highlight=False, soft_wrap=True)
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        _out.print(f"  {path.relative_to(dest)}", highlight=False)
    _out.print(f"next: cd {dest} && pip install -e . && pytest && qf validate experiments/{names.component}.yaml",
               highlight=False, soft_wrap=True)
