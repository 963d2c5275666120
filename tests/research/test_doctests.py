"""The usage examples in the research modules' docstrings must run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "qf.research.grid",
    "qf.research.stats",
    "qf.research.folds",
    "qf.research.executors",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0
