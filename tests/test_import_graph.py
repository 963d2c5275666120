"""The import graph of qf (framework/ as ``qf``, plugins/ as ``qf_plugins``), read with ``ast``, nothing imported.

- No import cycle among qf modules through module-level imports (a failure prints the cycle's path).
- The framework core imports no vendor SDK: no ``alpaca`` anywhere in framework/, ``backtrader`` only in
  framework/engines/backtrader/, ``riskfolio`` only in plugins/sizers/.
- Every function-local ``from qf... import`` / ``import qf...`` says why it is not at module level, in a
  trailing comment the test verifies:

  - ``# lazy: LIB``: the imported module loads the heavy library LIB (one of :data:`HEAVY`) through its
    module-level imports, so importing it at the top would slow the commands that never need it (listing
    commands load nothing heavy: tests/framework/test_lazy_imports.py); in qf.cli modules and the pytest
    plugin qf.testing.fixtures pandas, numpy and pydantic count as heavy too (start-up paths); LIB may also
    be one of the few qf packages as costly as such a library (:data:`HEAVY_MODULES`) that the imported
    module loads;
  - ``# cycle: MOD``: the imported module reaches this one through module-level imports (via MOD, the
    imported module itself or one on the way), so importing it at the top would close a cycle.

  Imports under ``if TYPE_CHECKING:`` never run and are not counted; a module-level ``__getattr__``
  (PEP 562, e.g. ``qf.run`` loading :mod:`qf.api` on first use) is lazy by design.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"qf": ROOT / "framework", "qf_plugins": ROOT / "plugins"}
# libraries that take from a few hundred milliseconds (numba, scipy) to seconds to import
HEAVY = frozenset({"vectorbt", "backtrader", "riskfolio", "quantstats", "xgboost", "scipy", "numba", "alpaca",
                   "sklearn", "skfolio", "plotly", "ray"})
# vendor SDK -> the only folders (relative to the repository) whose modules may import it, and the tree checked
VENDORS = {
    "alpaca": ((), "framework"),
    "backtrader": (("framework/engines/backtrader",), "framework"),
    "riskfolio": (("plugins/sizers",), None),  # None: framework/ and plugins/
}
# modules on a start-up path count pandas, numpy and pydantic as heavy too: the command-line front end
# (`qf --help` and the listing commands) and the pytest plugin every pytest session of a qf install loads
CLI_HEAVY = HEAVY | {"pandas", "numpy", "pydantic"}
# qf packages that cost what a heavy library costs and that the start-up paths must not load, so ``# lazy:`` may
# name them: the loopback Alpaca emulator (REST and websocket servers, the broker state machine; about 150 ms),
# which listing the commands must not import (tests/framework/test_plugin_commands.py) though the plugin's
# ``qf alpaca-emulator`` command is registered with every `qf --help`
HEAVY_MODULES = frozenset({"qf_plugins.alpaca.emulator"})
STARTUP = ("qf.cli.", "qf.testing.fixtures")
REASON = re.compile(r"#\s*(lazy|cycle):\s*([\w.]+)")
# Files whose function-local imports are known not to be converted yet, file -> why (issue #15; empty since
# every file was converted): their check is expected to fail (strict: an entry whose file passes fails, so
# the list cannot go stale).
PENDING: dict[str, str] = {}
# vendor imports outside their place that are known and left to move, file -> why (same rule: an entry that
# no longer offends fails the test; empty since qf.testing's backtrader code moved to qf.engines.backtrader)
VENDOR_PENDING: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    line: int
    end_line: int
    targets: tuple[str, ...]  # qf modules this statement loads (the module and its packages)
    external: tuple[str, ...]  # top-level names of the other libraries it loads
    local: bool  # inside a function (runs when called), not at module level
    text: str


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: list[Import] = field(default_factory=list)
    comments: dict[int, str] = field(default_factory=dict)

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


def _module_name(top: str, base: Path, path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(base).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join([top, *parts]), is_package


@cache
def modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for top, base in PACKAGES.items():
        for path in sorted(base.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            name, is_package = _module_name(top, base, path)
            found[name] = Module(name, path, is_package)
    for mod in found.values():
        source = mod.path.read_text()
        mod.comments = {tok.start[0]: tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                        if tok.type == tokenize.COMMENT}
        mod.imports = list(_imports(ast.parse(source, str(mod.path)), mod, found, source))
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _called_at_import(tree: ast.Module) -> set[str]:
    """Functions the module calls in its own top-level statements (e.g. ``_register_commands()``): their
    imports run when the module is imported, so they count as module-level."""
    calls = [stmt.value for stmt in tree.body if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)]
    return {call.func.id for call in calls if isinstance(call.func, ast.Name)}


def _walk(node: ast.AST, local: bool, in_getattr: bool,
          at_import: frozenset[str] = frozenset()) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for sub in child.orelse:  # the else branch runs
                yield from _walk(ast.Module(body=[sub], type_ignores=[]), local, in_getattr)
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, local, in_getattr
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            pep562 = not local and isinstance(child, ast.FunctionDef) and child.name == "__getattr__"
            runs_now = not local and isinstance(child, ast.FunctionDef) and child.name in at_import
            yield from _walk(child, not runs_now, in_getattr or pep562)
        else:
            yield from _walk(child, local, in_getattr)


def _packages_of(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _imports(tree: ast.Module, mod: Module, known: dict[str, Module], source: str) -> Iterator[Import]:
    own_packages = set(_packages_of(mod.name)[:-1]) | ({mod.name} if mod.is_package else set())
    lines = source.splitlines()
    for node, local, pep562 in _walk(tree, False, False, frozenset(_called_at_import(tree))):
        if pep562:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            if node.level:
                package = mod.name if mod.is_package else mod.name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            names = [base]
            names += [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
        targets: list[str] = []
        external: list[str] = []
        for name in names:
            if name.split(".")[0] in PACKAGES:
                # importing a.b.c runs a, a.b and a.b.c; the packages this module sits in are already running
                targets += [p for p in _packages_of(name) if p in known and p not in own_packages and p != mod.name]
            else:
                external.append(name.split(".")[0])
        text = " ".join(line.strip() for line in lines[node.lineno - 1:node.end_lineno])
        yield Import(node.lineno, node.end_lineno or node.lineno, tuple(dict.fromkeys(targets)),
                     tuple(dict.fromkeys(external)), local, text)


@cache
def graph() -> dict[str, frozenset[str]]:
    """Module-level qf -> qf edges."""
    return {name: frozenset(t for imp in mod.imports if not imp.local for t in imp.targets)
            for name, mod in modules().items()}


@cache
def reach(name: str) -> frozenset[str]:
    """Every qf module loaded by importing ``name`` (through module-level imports), ``name`` included."""
    seen, todo = {name}, [name]
    while todo:
        for nxt in graph()[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


@cache
def heavy_loaded_by(name: str) -> frozenset[str]:
    """The heavy libraries (:data:`CLI_HEAVY`) importing ``name`` loads: module-level imports of it and of every
    qf module it loads."""
    return frozenset(lib for m in reach(name) for imp in modules()[m].imports if not imp.local
                     for lib in imp.external if lib in CLI_HEAVY)


def find_cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected component with more than one module, or a
    module importing itself (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        comp.append(top)
                        if top == node:
                            break
                    if len(comp) > 1 or node in edges[node]:
                        components.append(sorted(comp))
    cycles = []
    for comp in components:
        members = set(comp)
        start = comp[0]
        # shortest way back to the start inside the component (breadth first)
        prev: dict[str, str] = {}
        frontier = [start]
        found = None
        while frontier and found is None:
            nxt_frontier = []
            for node in frontier:
                for child in sorted(edges[node] & members):
                    if child == start:
                        found = node
                        break
                    if child not in prev:
                        prev[child] = node
                        nxt_frontier.append(child)
                if found is not None:
                    break
            frontier = nxt_frontier
        path = [start]
        node = found
        while node is not None and node != start:
            path.insert(1, node)
            node = prev.get(node)
        cycles.append([*path, start])
    return cycles


def where(mod: Module, imp: Import) -> str:
    return f"{mod.rel}:{imp.line}: {imp.text}"


# --- the graph itself ---------------------------------------------------------------------------------


def test_the_graph_sees_every_module_and_its_imports():
    mods = modules()
    assert {"qf", "qf.runner", "qf.research.study", "qf_plugins.signals"} <= set(mods)
    assert "qf.config.loader" in graph()["qf.runner"]  # from qf.config.loader import LoadedExperiment
    # `from qf.report import tearsheet, writer`: the package and both modules run
    assert {"qf.report", "qf.report.tearsheet", "qf.report.writer"} <= graph()["qf.runner"]
    # a module's own packages are already running when it imports a sibling: no edge to them
    assert "qf.research.cpcv" in graph()["qf.research.study"] and "qf.research" not in graph()["qf.research.study"]
    assert "vectorbt" in heavy_loaded_by("qf.engines.vectorbt")
    assert "qf.runner" in reach("qf.research.study")


def test_find_cycles_reports_the_path():
    edges = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"}),
             "e": frozenset({"e"}), "f": frozenset()}
    assert find_cycles(edges) == [["a", "b", "c", "a"], ["e", "e"]]
    assert find_cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_imports_of_a_function_called_at_import_time_are_module_level():
    # qf.cli.main registers its commands in _register_commands(), called at the module's top level
    tree = ast.parse("def _register():\n    from qf.cli.paper import paper\n\n_register()\n\n"
                     "def later():\n    from qf.cli.parity import parity\n\n"
                     "if TYPE_CHECKING:\n    from qf.runner import RunOutcome\n\n"
                     "def __getattr__(name):\n    from qf import api\n")
    assert _called_at_import(tree) == {"_register"}
    found = [(node.module, local, pep562)
             for node, local, pep562 in _walk(tree, False, False, frozenset(_called_at_import(tree)))]
    assert found == [("qf.cli.paper", False, False), ("qf.cli.parity", True, False), ("qf", True, True)]


def test_reason_comments_are_read_from_any_line_of_the_statement():
    assert REASON.search("    from qf.engines.vectorbt import run_vectorbt  # lazy: vectorbt").groups() == (
        "lazy", "vectorbt")
    assert REASON.search("# cycle: qf.cli.main").groups() == ("cycle", "qf.cli.main")


def test_a_heavy_qf_package_justifies_a_lazy_import_only_of_what_loads_it():
    mod = Module("qf_plugins.alpaca.commands", ROOT / "plugins/alpaca/commands.py", False,
                 comments={1: "# lazy: qf_plugins.alpaca.emulator", 2: "# lazy: qf_plugins.alpaca.ids",
                           3: "# lazy: qf_plugins.alpaca.emulator"})
    emulator = Import(1, 1, ("qf_plugins.alpaca.emulator", "qf_plugins.alpaca.emulator.cli"), (), True, "")
    assert justification(mod, emulator) == "lazy: qf_plugins.alpaca.emulator"
    # a qf module that is not in HEAVY_MODULES is no reason, and neither is one the import does not load
    assert justification(mod, Import(2, 2, ("qf_plugins.alpaca.ids",), (), True, "")) is None
    assert justification(mod, Import(3, 3, ("qf_plugins.alpaca.env",), (), True, "")) is None


# --- the rules ----------------------------------------------------------------------------------------


def test_no_import_cycles():
    cycles = find_cycles(graph())
    assert not cycles, "import cycles through module-level imports:\n" + "\n".join(
        " -> ".join(c) for c in cycles)


def _vendor_offenders(vendor: str) -> dict[str, list[str]]:
    """Per file, the imports of ``vendor`` outside the folders allowed to use it."""
    allowed, tree = VENDORS[vendor]
    out: dict[str, list[str]] = {}
    for mod in modules().values():
        if tree is not None and not mod.rel.startswith(tree + "/"):
            continue
        if any(mod.rel.startswith(a + "/") for a in allowed):
            continue
        found = [where(mod, imp) for imp in mod.imports if vendor in imp.external]
        if found:
            out[mod.rel] = found
    return out


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_the_core_imports_no_vendor_sdk(vendor):
    offenders = {rel: found for rel, found in _vendor_offenders(vendor).items() if rel not in VENDOR_PENDING}
    allowed, tree = VENDORS[vendor]
    place = " or ".join(allowed) or "nowhere"
    assert not offenders, (f"{vendor} may be imported only in {place} (checked: {tree or 'framework/ and plugins/'}"
                           "):\n" + "\n".join(line for found in offenders.values() for line in found))


def test_the_known_vendor_imports_left_to_move_are_still_there():
    offending = {rel for vendor in VENDORS for rel in _vendor_offenders(vendor)}
    stale = sorted(set(VENDOR_PENDING) - offending)
    assert not stale, f"no longer import a vendor SDK out of place: remove them from VENDOR_PENDING: {stale}"


def justification(mod: Module, imp: Import) -> str | None:
    """Why ``imp`` (a function-local qf import of ``mod``) is right where it is, or None when it is not."""
    comment = " ".join(mod.comments.get(n, "") for n in range(imp.line, imp.end_line + 1))
    claim = REASON.search(comment)
    if claim is None:
        return None
    kind, what = claim.groups()
    if kind == "lazy":
        if what in HEAVY_MODULES:
            return f"lazy: {what}" if any(what in reach(t) for t in imp.targets) else None
        heavy = CLI_HEAVY if mod.name.startswith(STARTUP) else HEAVY
        return f"lazy: {what}" if what in heavy and any(what in heavy_loaded_by(t) for t in imp.targets) else None
    for target in imp.targets:
        if mod.name in reach(target) and (what == target or (what in reach(target) and mod.name in reach(what))):
            return f"cycle: {what}"
    return None


def unjustified(mod: Module) -> list[str]:
    out = []
    for imp in mod.imports:
        if not imp.local or not imp.targets:
            continue
        if justification(mod, imp) is None:
            comment = " ".join(mod.comments.get(n, "") for n in range(imp.line, imp.end_line + 1))
            claim = REASON.search(comment)
            heavy = sorted(set().union(*(heavy_loaded_by(t) for t in imp.targets)))
            cycle = [t for t in imp.targets if mod.name in reach(t)]
            said = f"says '{claim.group(0)}', which is not true" if claim else "gives no reason"
            fact = (f"it loads {', '.join(heavy)}" if heavy else "it loads nothing heavy") + (
                f" and closes a cycle through {', '.join(cycle)}" if cycle else ", closes no cycle")
            out.append(f"{where(mod, imp)}  <- {said}; {fact}")
    return out


def _files_with_local_imports() -> list[str]:
    return sorted({m.rel for m in modules().values() if any(i.local and i.targets for i in m.imports)})


@pytest.mark.parametrize("rel", [
    pytest.param(rel, marks=pytest.mark.xfail(strict=True, reason=PENDING[rel])) if rel in PENDING else rel
    for rel in _files_with_local_imports()])
def test_function_local_qf_imports_break_a_cycle_or_defer_a_heavy_library(rel):
    (mod,) = [m for m in modules().values() if m.rel == rel]
    offenders = unjustified(mod)
    assert not offenders, ("function-local qf imports that neither defer a heavy library (# lazy: LIB) nor break a "
                           "cycle (# cycle: MODULE); move them to the top of the module:\n" + "\n".join(offenders))
