"""The examples of docs/plugins.md are executed, so they cannot rot.

Each fenced block is handled by its language:

- ``python`` starting with a file-name comment (``# my_signals/__init__.py``): written to a scratch folder
  that is on ``sys.path`` and is the working directory, so later blocks can import it or load it by path;
  a file under ``tests/`` is a test module, run by pytest (in-process) with qf's fixtures;
- any other ``python`` block: executed on its own, as a script;
- ``yaml``: validated with qf's loader (``load_experiment``), against the built-ins plus the plugin modules
  the page defines; a fragment (no ``name:``) is laid over a minimal experiment first;
- ``toml``: parsed, and a ``[project.entry-points]`` table must use the group ``qf``;
- ``bash`` / ``text``: shown only.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from qf.config.loader import load_experiment
from qf.registry import Registry
from qf.testing import registry_with

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / "plugins.md"]
SHOWN_ONLY = {"bash", "text", "console"}
# the page also shows the example plugin's component; its source is registered like the page's own modules
EXAMPLE_SRC = ROOT / "examples" / "qf-example-plugin" / "src"
EXAMPLE_MODULE = "qf_example_plugin"
_FENCE = re.compile(r"^```(\w*)\s*$")
_FILE_HEADER = re.compile(r"^# ([\w./-]+\.(?:py|ya?ml))\s*$")
# what a YAML fragment is laid over: the smallest valid experiment
BASE_EXPERIMENT = {
    "name": "doc_example",
    "data": {"type": "sample", "params": {"dataset": "sp500_20"}},
    "signal": {"type": "constant"},
    "sizer": {"type": "equal"},
}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    doc: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str

    @property
    def file(self) -> str | None:
        """The relative path a block stands for, from its first-line comment, if any."""
        first = self.code.split("\n", 1)[0]
        m = _FILE_HEADER.match(first)
        return m.group(1) if m else None

    @property
    def id(self) -> str:
        return f"{self.doc.name}:{self.line}:{self.lang}" + (f":{self.file}" if self.file else "")


def parse_blocks(doc: Path) -> list[Block]:
    """Every fenced block of ``doc``, in order; an unclosed fence is an error."""
    blocks: list[Block] = []
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{doc.name}:{start + 1}: unclosed code fence")
        blocks.append(Block(doc, start + 1, m.group(1), "\n".join(body) + "\n"))
        i += 1
    return blocks


BLOCKS = [b for doc in DOCS for b in parse_blocks(doc)]
SNIPPETS = [b for b in BLOCKS if b.lang == "python" and b.file is None]
YAMLS = [b for b in BLOCKS if b.lang == "yaml"]


def _module_name(rel: str) -> str | None:
    """The import name of a written file if it is a top-level module or package, else None."""
    parts = Path(rel).parts
    if len(parts) == 1 and rel.endswith(".py"):
        return parts[0][:-3]
    if len(parts) == 2 and parts[1] == "__init__.py":
        return parts[0]
    return None


@dataclass
class DocWorld:
    """The scratch folder holding a page's files, and the registry of the plugin modules it defines."""

    folder: Path
    modules: list[str]
    registry: Registry
    tests: list[Path]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocWorld]:
    folder = tmp_path_factory.mktemp("docs")
    modules: list[str] = []
    tests: list[Path] = []
    for block in BLOCKS:
        if block.file is None or block.lang not in ("python", "yaml"):
            continue
        path = folder / block.file
        assert not path.exists(), f"{block.id}: two blocks write {block.file}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.code, encoding="utf-8")
        if block.file.startswith("tests/"):
            tests.append(path)
        elif (name := _module_name(block.file)) is not None:
            modules.append(name)
    sys.path[:0] = [str(folder), str(EXAMPLE_SRC)]
    try:
        registry = registry_with(*[importlib.import_module(m) for m in [*modules, EXAMPLE_MODULE]])
        yield DocWorld(folder, modules, registry, tests)
    finally:
        sys.path.remove(str(folder))
        sys.path.remove(str(EXAMPLE_SRC))
        for name in list(sys.modules):
            if name.split(".")[0] in [*modules, EXAMPLE_MODULE]:
                del sys.modules[name]


@pytest.fixture
def in_world(world: DocWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[DocWorld]:
    """Run from the scratch folder, and undo whatever a snippet does to the environment."""
    monkeypatch.chdir(world.folder)
    saved = dict(os.environ)
    try:
        yield world
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_every_block_has_a_known_language() -> None:
    known = {"python", "yaml", "toml"} | SHOWN_ONLY
    unknown = [b.id for b in BLOCKS if b.lang not in known]
    assert not unknown, f"blocks in a language the doc test does not handle (typo?): {unknown}"
    assert len(SNIPPETS) >= 10 and len(YAMLS) >= 6


@pytest.mark.parametrize("block", SNIPPETS, ids=lambda b: b.id)
def test_python_example_runs(block: Block, in_world: DocWorld) -> None:
    # padded so that a traceback points at the line of docs/plugins.md, with its source shown
    code = compile("\n" * block.line + block.code, str(block.doc), "exec")
    exec(code, {"__name__": f"doc_block_{block.line}"})


@pytest.mark.parametrize("block", YAMLS, ids=lambda b: b.id)
def test_yaml_example_is_a_valid_experiment(block: Block, in_world: DocWorld) -> None:
    if block.file is not None:
        path = in_world.folder / block.file
    else:
        fragment = yaml.safe_load(block.code)
        assert isinstance(fragment, dict), f"{block.id}: a YAML example must be a mapping"
        path = in_world.folder / f"fragment_{block.line}.yaml"
        path.write_text(yaml.safe_dump({**BASE_EXPERIMENT, **fragment}), encoding="utf-8")
    exp = load_experiment(path, registry=in_world.registry)  # raises ConfigError with file:line problems
    assert exp.name


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "toml"], ids=lambda b: b.id)
def test_toml_example_declares_a_qf_entry_point(block: Block) -> None:
    data = tomllib.loads(block.code)
    groups = data.get("project", {}).get("entry-points", {})
    assert "qf" in groups and groups["qf"], f"{block.id}: no [project.entry-points.qf] table"


def test_test_file_example_passes_with_qf_fixtures(in_world: DocWorld, pytester: pytest.Pytester) -> None:
    assert in_world.tests, "docs/plugins.md shows no test file"
    # the fixtures come from qf's pytest11 entry point, loaded by the inner session as by any project's
    result = pytester.runpytest_inprocess(*map(str, in_world.tests), "-p", "no:cacheprovider")
    counted = sum(p.read_text().count("\ndef test_") for p in in_world.tests)
    result.assert_outcomes(passed=counted)


def test_the_page_defines_every_kind_of_plugin(world: DocWorld) -> None:
    # one complete example per registration hook, each resolvable by its YAML name
    for kind, name in [("data", "long_csv"), ("signal", "range_position"), ("sizer", "score_weighted"),
                       ("risk", "max_net"), ("risk", "quick_halt"), ("broker", "audited_sim")]:
        assert world.registry.get(kind, name).provider in world.modules
