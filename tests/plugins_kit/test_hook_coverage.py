"""Meta-tests: the hook specs are the public API, so each one must be documented and tested.

For every hook in ``qf.hookspecs``: its exact signature (as ``inspect.signature`` gives it) appears in
docs/plugins.md, and some test outside this file calls it (``hook.<name>(`` or implements it with
``def <name>(``, which the registry or a run then calls). A new hook without both fails here, by name.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from qf import hookspecs
from qf.registry import HOOK_NAMES

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "plugins.md"
TESTS = ROOT / "tests"
HOOKS = sorted(
    name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if getattr(fn, "qf_spec", None) is not None
)


def signature(name: str) -> str:
    """``name(arg: Type, ...) -> Ret`` with annotations as written (they are strings under PEP 563)."""
    text = str(inspect.signature(getattr(hookspecs, name)))
    # PEP 563 leaves annotations as strings, which str(signature) quotes: 'Any' -> Any
    return name + re.sub(r"'([^']*)'", r"\1", text)


def test_hook_specs_are_found() -> None:
    # the marker attribute pluggy sets is what identifies a spec; if that ever changes, fail loudly
    assert set(HOOKS) >= {"qf_data_sources", "qf_signal_models", "qf_sizers", "qf_risk_rules", "qf_brokers",
                          "qf_before_run", "qf_after_run"}
    assert set(HOOKS) == set(HOOK_NAMES), "qf.registry.HOOK_NAMES (used for did-you-mean) is out of date"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_exact_signature(hook: str) -> None:
    sig = signature(hook)
    assert f"### `{sig}`" in DOC.read_text(encoding="utf-8"), (
        f"docs/plugins.md has no section '### `{sig}`': document the hook with its exact signature and an example"
    )


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_called_by_a_test(hook: str) -> None:
    pattern = re.compile(rf"(hook\.{hook}\s*\(|def {hook}\s*\()")
    callers = [
        str(path.relative_to(TESTS)) for path in sorted(TESTS.rglob("*.py"))
        if path.resolve() != Path(__file__).resolve() and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert callers, f"no test calls or implements {hook}: add one (see tests/plugins_kit/test_hooks.py)"


def test_documented_hooks_exist() -> None:
    # the reverse direction: a section for a hook that was renamed or removed is a stale doc
    documented = set(re.findall(r"^### `(qf_\w+)\(", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE))
    assert documented == set(HOOKS), f"documented but not hook specs: {sorted(documented - set(HOOKS))}"


def test_signature_rendering() -> None:
    assert signature("qf_after_run") == "qf_after_run(experiment: Any, result: Any, report_dir: Any) -> None"
    assert signature("qf_sizers") == "qf_sizers() -> Iterable[type[Sizer]]"
