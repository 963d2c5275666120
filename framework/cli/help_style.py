"""Help pages in click's familiar style: ``EXPERIMENT`` and ``PATH``, not ``{experiment}`` and ``<path>``.

typer 0.2x prints each parameter's Python annotation in ``--help`` (``<bool>`` beside every flag,
``<list[str]>`` beside repeatable options, ``{experiment}`` in the usage line). Flags need no type at all,
and values read better under click's names, so :func:`apply` adjusts the two display hooks once, for every
command. Older typer releases without these hooks are left as they are.

Example::

    from qf.cli import help_style
    help_style.apply()   # before the app renders any help
"""

from __future__ import annotations

from typing import Any

_LABELS = {"str": "TEXT", "path": "PATH", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN"}


def _option_type(self: Any, ctx: Any) -> str | None:
    if getattr(self, "is_flag", False) or getattr(self, "count", False):
        return None
    if self.metavar is not None:
        return self.metavar
    label = str(self.display_type(ctx) or "").strip("<>")
    if label.startswith("list[") and label.endswith("]"):  # repeatable: the help text says so
        label = label[5:-1]
    if "|" in label:  # choices read as they are typed
        return label
    return _LABELS.get(label.lower(), label.upper()) or None


def _argument_usage(self: Any) -> str:
    name = (self.metavar or self.name or "arg").upper()
    if self.nargs != 1:
        name += "..."
    return name if self.required else f"[{name}]"


def _argument_name(self: Any) -> str:
    return (self.metavar or self.name or "arg").upper() + ("..." if self.nargs != 1 else "")


def apply() -> None:
    """Install the display hooks (idempotent)."""
    from typer import core

    if hasattr(core.TyperOption, "display_type_rich"):
        core.TyperOption.display_type_rich = _option_type  # type: ignore[method-assign]
    arg = core.TyperArgument
    if hasattr(arg, "_usage_display_name") and hasattr(arg, "_rich_display_name"):
        arg._usage_display_name = _argument_usage  # type: ignore[method-assign]
        arg._rich_display_name = _argument_name  # type: ignore[method-assign]
        arg.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
