"""Sweep-spec parsing and constraint evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf.research.grid import compile_constraint, expand_grid, parse_values

SMA_SPEC = {"signal.params.fast": {"range": [5, 50, 1]}, "signal.params.slow": {"range": [20, 200, 5]}}


def test_issue_grid_has_1590_combos() -> None:
    assert parse_values("signal.params.fast", SMA_SPEC["signal.params.fast"]).tolist() == list(range(5, 51))
    assert parse_values("signal.params.slow", SMA_SPEC["signal.params.slow"]).tolist() == list(range(20, 201, 5))
    grid = expand_grid(SMA_SPEC, constraints=["fast < slow"])
    assert len(grid) == 1590
    assert list(grid.columns) == ["signal.params.fast", "signal.params.slow"]
    assert (grid["signal.params.fast"] < grid["signal.params.slow"]).all()
    # brute force: every pair that satisfies the constraint is present exactly once
    expected = {(f, s) for f in range(5, 51) for s in range(20, 201, 5) if f < s}
    assert set(zip(grid["signal.params.fast"], grid["signal.params.slow"], strict=True)) == expected
    assert grid.index.equals(pd.RangeIndex(1590))
    assert grid.dtypes.tolist() == [np.dtype("int64"), np.dtype("int64")]


def test_product_order_first_key_slowest_and_extra_dimension() -> None:
    grid = expand_grid({**SMA_SPEC, "sizer.params.x": [0.1, 0.2]}, "fast < slow")
    assert len(grid) == 3180
    assert grid.iloc[:3].to_dict("list") == {
        "signal.params.fast": [5, 5, 5],
        "signal.params.slow": [20, 20, 25],
        "sizer.params.x": [0.1, 0.2, 0.1],
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"range": [20, 200, 5]}, list(range(20, 201, 5))),
        ({"range": [20, 203, 5]}, list(range(20, 201, 5))),  # stop off the grid is not reached
        ({"range": [3, 7]}, [3, 4, 5, 6, 7]),  # default step 1
        ({"range": [10, 0, -5]}, [10, 5, 0]),  # descending
        ({"range": [0.1, 0.3, 0.1]}, [0.1, 0.2, 0.3]),  # float end included despite rounding
        ({"range": [0.5, 1.0, 0.25]}, [0.5, 0.75, 1.0]),
        ({"values": [1, 3]}, [1, 3]),
        ([0.1, 0.2], [0.1, 0.2]),
        (7, [7]),
        ("ema", ["ema"]),
    ],
)
def test_parse_values_forms(value: object, expected: list) -> None:
    assert parse_values("k", value).tolist() == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"range": [5, 50, 0]}, "step must not be 0"),
        ({"range": [50, 5, 1]}, "moves away from stop"),
        ({"range": [5]}, "must be \\[start, stop\\]"),
        ({"range": ["a", 5]}, "bounds must be numbers"),
        ({"range": [True, 5]}, "bounds must be numbers"),
        ({"range": [1, 5], "values": [1]}, "exactly one of"),
        ({"values": 3}, "'values' must be a list"),
        ([], "empty"),
        ([1, 1], "duplicate"),
        ([1, None], "finite numbers, strings or booleans"),
        ([float("nan")], "finite numbers"),
        ([True, 2], "do not mix booleans"),
        (None, "expected a list of values"),
    ],
)
def test_bad_specs_name_the_key(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=r"signal\.params\.fast.*" + message):
        expand_grid({"signal.params.fast": value, "signal.params.slow": [1, 2]})


@pytest.mark.parametrize("key", ["", "signal..fast", ".fast", 3])
def test_bad_keys(key: object) -> None:
    with pytest.raises(ValueError, match="dotted path"):
        expand_grid({key: [1, 2]})


def test_empty_spec_and_unsatisfiable_constraints() -> None:
    with pytest.raises(ValueError, match="non-empty mapping"):
        expand_grid({})
    with pytest.raises(ValueError, match="no combination satisfies"):
        expand_grid(SMA_SPEC, ["fast > slow + 1000"])


COLS = ["signal.params.fast", "signal.params.slow", "filter.window.fast", "sizer.params.x"]
FRAME = pd.DataFrame(
    {
        "signal.params.fast": [5, 10, 30, 50],
        "signal.params.slow": [20, 20, 40, 45],
        "filter.window.fast": [1, 2, 3, 4],
        "sizer.params.x": [0.1, 0.2, 0.3, 0.4],
    }
)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("signal.params.fast < signal.params.slow", [True, True, True, False]),
        ("params.fast <= slow / 2", [True, True, False, False]),  # dotted suffix and arithmetic
        ("slow - signal.params.fast >= 10", [True, True, True, False]),
        ("5 < signal.params.fast < slow", [False, True, True, False]),  # chained comparison
        ("slow == 20 or x > 0.35", [True, True, False, True]),
        ("not (slow == 20) and x != 0.3", [False, False, False, True]),
        ("abs(signal.params.fast - slow) > 12", [True, False, False, False]),
        ("max(signal.params.fast, slow) >= 40", [False, False, True, True]),
        ("min(x, 0.25) == x", [True, True, False, False]),
        ("slow % 20 == 0 and slow // 20 == 1", [True, True, False, False]),
        ("-x < -0.15", [False, True, True, True]),
        ("True", [True, True, True, True]),
    ],
)
def test_constraint_evaluation(expr: str, expected: list[bool]) -> None:
    assert compile_constraint(expr, COLS)(FRAME).tolist() == expected


def test_constraint_on_strings() -> None:
    grid = expand_grid({"signal.params.kind": ["sma", "ema"], "signal.params.n": [1, 2]}, 'kind == "ema"')
    assert grid.to_dict("list") == {"signal.params.kind": ["ema", "ema"], "signal.params.n": [1, 2]}


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("fast < slow", "ambiguous"),  # signal.params.fast and filter.window.fast
        ("slow < nope", "unknown name 'nope'"),
        ("__import__('os').system('true')", "only abs\\(\\), min\\(\\) and max\\(\\) calls"),
        ("x.__class__", "unknown name"),
        ("().__class__.__bases__", "only plain names"),
        ("slow[0] > 1", "Subscript"),
        ("slow ** 2 > 1", "Pow"),
        ("(lambda: 1)()", "only abs"),
        ("[s for s in slow]", "ListComp"),
        ("slow if x else x", "IfExp"),
        ("slow in (1, 2)", "comparison In"),
        ("slow is None", "comparison Is"),
        ("slow < 2 < None", "unsupported literal"),
        ("abs(*slow)", "starred"),
        ("max(slow, key=abs) > 1", "only abs"),
        ("slow <", "not a valid expression"),
        ("x = 1", "not a valid expression"),
        ("", "non-empty string"),
    ],
)
def test_unsafe_or_invalid_constraints_are_rejected(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_constraint(expr, COLS)


def test_non_boolean_constraint_is_an_error() -> None:
    with pytest.raises(ValueError, match="comparison or boolean"):
        compile_constraint("signal.params.slow + 1", COLS)(FRAME)
