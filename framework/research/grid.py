"""Parameter grids: turn a sweep spec plus constraints into a table of combinations.

A spec maps dotted config paths to the values to sweep::

    spec = {
        "signal.params.fast": {"range": [5, 50, 1]},     # 5, 6, ..., 50 (end included)
        "signal.params.slow": {"range": [20, 200, 5]},   # 20, 25, ..., 200
        "sizer.params.x": [0.1, 0.2],                    # explicit values
    }
    combos = expand_grid(spec, constraints=["fast < slow"])

Constraints are small expressions over the swept names, evaluated vectorised over all combinations.
They are parsed with :mod:`ast` and only a whitelist of node types is accepted (comparisons, boolean
``and``/``or``/``not``, ``+ - * / // %``, unary minus, numbers/strings and ``abs``/``min``/``max``),
so a config file can never run code. A name may be the full dotted path or any dotted suffix of it
(usually the last segment, e.g. ``fast``) as long as it names exactly one swept path.
"""

from __future__ import annotations

import ast
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "Constraint", "compile_constraint", "count_combinations", "count_values", "expand_grid", "integral_columns",
    "parse_values", "sample_values",
]

_COMPARE_OPS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
_BIN_OPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.FloorDiv: np.floor_divide,
    ast.Mod: np.mod,
}
_FUNCS: dict[str, Callable[..., Any]] = {
    "abs": lambda x: np.abs(x),
    "min": lambda *xs: _reduce(np.minimum, xs),
    "max": lambda *xs: _reduce(np.maximum, xs),
}


def _reduce(func: Callable[[Any, Any], Any], xs: Sequence[Any]) -> Any:
    if len(xs) < 2:
        raise ValueError("min()/max() in a constraint need at least two arguments")
    out = xs[0]
    for x in xs[1:]:
        out = func(out, x)
    return out


def _is_number(x: Any) -> bool:
    # bool is an int subclass, but True as a range bound is always a config mistake
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


@dataclass(frozen=True)
class _Range:
    """A checked ``range`` entry: ``n`` values ``start + i * step`` (integers when every bound is one)."""

    start: float
    step: float
    n: int
    integral: bool

    def values(self, positions: np.ndarray) -> np.ndarray:
        if self.integral:
            return int(self.start) + int(self.step) * positions.astype(np.int64)
        # 0.1 + 2 * 0.1 = 0.30000000000000004; users wrote 0.3 and will filter/merge on it
        return np.round(float(self.start) + float(self.step) * positions.astype(np.float64), 12)


def _check_range(key: str, bounds: Any) -> _Range:
    if not isinstance(bounds, (list, tuple)) or len(bounds) not in (2, 3):
        raise ValueError(f"{key}: 'range' must be [start, stop] or [start, stop, step], got {bounds!r}")
    if not all(_is_number(b) for b in bounds):
        raise ValueError(f"{key}: 'range' bounds must be numbers, got {bounds!r}")
    start, stop = bounds[0], bounds[1]
    step = bounds[2] if len(bounds) == 3 else 1
    if not all(math.isfinite(float(b)) for b in (start, stop, step)):
        raise ValueError(f"{key}: 'range' bounds must be finite, got {bounds!r}")
    if step == 0:
        raise ValueError(f"{key}: 'range' step must not be 0")
    if (stop - start) * step < 0:
        raise ValueError(f"{key}: 'range' step {step} moves away from stop (start={start}, stop={stop})")
    integral = all(isinstance(b, numbers.Integral) for b in (start, stop, step))
    if integral:
        # stop is included when it lands on the grid: [5, 50, 1] -> 5..50
        n = (int(stop) - int(start)) // int(step) + 1
    else:
        # Floats: a slack so that [0.1, 0.3, 0.1] includes 0.3 despite binary rounding; relative for long
        # ranges, but far below one step (1e-9 of a span of 1e10 would add 10 values)
        span = (float(stop) - float(start)) / float(step)
        n = int(math.floor(span + max(1e-9, 1e-12 * abs(span)))) + 1
    return _Range(start, step, n, integral)


def parse_values(key: str, value: Any) -> np.ndarray:
    """Expand one spec entry into the 1-d array of values it sweeps.

    Accepted forms: ``{"range": [start, stop, step]}`` (stop included when it lands on the step;
    step defaults to 1), ``{"values": [...]}``, a plain list/tuple, or a single scalar (a fixed value).

    Example:
        >>> parse_values("signal.params.slow", {"range": [20, 200, 5]}).size
        37
        >>> parse_values("sizer.params.x", [0.1, 0.2]).tolist()
        [0.1, 0.2]
    """
    entry = _entry(key, value)
    return entry.values(np.arange(entry.n)) if isinstance(entry, _Range) else entry


def count_values(key: str, value: Any) -> int:
    """How many values one spec entry sweeps, checked like :func:`parse_values` but counted, not allocated.

    Example:
        >>> count_values("signal.params.fast", {"range": [1, 10_000_000_000]})
        10000000000
    """
    entry = _entry(key, value)
    return entry.n if isinstance(entry, _Range) else len(entry)


def sample_values(key: str, value: Any, limit: int = 1000) -> np.ndarray:
    """The values of one spec entry, or for a range longer than ``limit`` its first two and last values.

    Enough to check every swept value's type and bounds without allocating a huge range.

    Example:
        >>> sample_values("signal.params.fast", {"range": [1, 10_000_000_000, 1]}).tolist()
        [1, 2, 10000000000]
    """
    entry = _entry(key, value)
    if not isinstance(entry, _Range):
        return entry
    if entry.n <= limit:
        return entry.values(np.arange(entry.n))
    return entry.values(np.array([0, 1, entry.n - 1]))


def count_combinations(spec: Mapping[str, Any]) -> int:
    """The number of combinations of a sweep spec before constraints, computed without building them.

    Example:
        >>> count_combinations({"a.fast": {"range": [5, 50, 1]}, "a.slow": [50, 100]})
        92
    """
    _check_spec(spec)
    return math.prod(count_values(key, value) for key, value in spec.items())


def _check_spec(spec: Mapping[str, Any]) -> None:
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(f"a sweep spec must be a non-empty mapping of dotted path -> values, got {spec!r}")
    for key in spec:
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise ValueError(f"sweep key {key!r} must be a non-empty dotted path like 'signal.params.fast'")


def _entry(key: str, value: Any) -> _Range | np.ndarray:
    """A range entry checked but not expanded, or the array of any other entry."""
    if isinstance(value, Mapping):
        keys = set(value)
        if keys == {"range"}:
            return _check_range(key, value["range"])
        if keys == {"values"}:
            if not _is_listlike(value["values"]):
                raise ValueError(f"{key}: 'values' must be a list, got {value['values']!r}")
            return parse_values(key, list(value["values"]))
        raise ValueError(
            f"{key}: a mapping spec must have exactly one of 'range' or 'values', got keys {sorted(keys)}"
        )
    if _is_listlike(value):
        items = list(value)
        if not items:
            raise ValueError(f"{key}: the list of values is empty")
        for item in items:
            if not (_is_number(item) or isinstance(item, (str, bool))) or (
                _is_number(item) and not math.isfinite(float(item))
            ):
                raise ValueError(f"{key}: values must be finite numbers, strings or booleans, got {item!r}")
        if any(isinstance(v, bool) for v in items) and not all(isinstance(v, bool) for v in items):
            # numpy would silently turn [True, 2] into [1, 2]
            raise ValueError(f"{key}: do not mix booleans with other values in {items!r}")
        if len({(type(v), v) for v in items}) != len(items):
            raise ValueError(f"{key}: duplicate values in {items!r}")
        return np.asarray(items, dtype=object if any(isinstance(v, str) for v in items) else None)
    if (_is_number(value) and math.isfinite(float(value))) or isinstance(value, (str, bool)):
        return np.asarray([value])
    raise ValueError(
        f"{key}: expected a list of values, {{'range': [start, stop, step]}}, {{'values': [...]}} or a "
        f"scalar, got {value!r}"
    )


def _is_listlike(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray, pd.Index, pd.Series))


def _dotted_name(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _resolve_name(ref: str, columns: Sequence[str], expr: str) -> str:
    if ref in columns:
        return ref
    matches = [c for c in columns if c.endswith("." + ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ValueError(f"constraint {expr!r}: unknown name {ref!r}; swept names are {list(columns)}")
    raise ValueError(
        f"constraint {expr!r}: name {ref!r} is ambiguous ({matches}); use the full dotted path"
    )


@dataclass(frozen=True)
class Constraint:
    """A parsed, validated constraint; call it on a combinations DataFrame to get a boolean mask.

    Example:
        >>> c = compile_constraint("fast < slow", ["signal.params.fast", "signal.params.slow"])
        >>> c(pd.DataFrame({"signal.params.fast": [5, 30], "signal.params.slow": [20, 20]})).tolist()
        [True, False]
    """

    expr: str
    tree: ast.Expression
    names: Mapping[str, str]

    def __call__(self, combos: pd.DataFrame) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            result = self._eval(self.tree.body, combos)
        mask = np.asarray(result)
        if mask.dtype != np.bool_:
            raise ValueError(f"constraint {self.expr!r} must be a comparison or boolean expression")
        return np.broadcast_to(mask, (len(combos),)).copy()

    def _eval(self, node: ast.AST, combos: pd.DataFrame) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.Name, ast.Attribute)):
            return combos[self.names[_dotted_name(node) or ""]].to_numpy()
        if isinstance(node, ast.UnaryOp):
            operand = self._eval(node.operand, combos)
            if isinstance(node.op, ast.Not):
                return np.logical_not(operand)
            return np.negative(operand) if isinstance(node.op, ast.USub) else np.positive(operand)
        if isinstance(node, ast.BinOp):
            return _BIN_OPS[type(node.op)](self._eval(node.left, combos), self._eval(node.right, combos))
        if isinstance(node, ast.BoolOp):
            values = [np.asarray(self._eval(v, combos), dtype=bool) for v in node.values]
            func = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            return _reduce(func, values)
        if isinstance(node, ast.Compare):
            # chained comparisons (5 <= fast < slow) mean pairwise and, as in Python
            left = self._eval(node.left, combos)
            result: Any = True
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                right = self._eval(comparator, combos)
                result = np.logical_and(result, _COMPARE_OPS[type(op)](left, right))
                left = right
            return result
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            return _FUNCS[node.func.id](*(self._eval(a, combos) for a in node.args))
        raise AssertionError(f"unvalidated node {type(node).__name__}")  # _validate rejects these


def _validate(node: ast.AST, expr: str, columns: Sequence[str], names: dict[str, str]) -> None:
    if isinstance(node, ast.Expression):
        _validate(node.body, expr, columns, names)
    elif isinstance(node, (ast.Name, ast.Attribute)):
        ref = _dotted_name(node)
        if ref is None:
            raise ValueError(f"constraint {expr!r}: only plain names and dotted paths may be referenced")
        names[ref] = _resolve_name(ref, columns, expr)
    elif isinstance(node, ast.Constant):
        if not (_is_number(node.value) or isinstance(node.value, (bool, str))):
            raise ValueError(f"constraint {expr!r}: unsupported literal {node.value!r}")
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
            raise ValueError(f"constraint {expr!r}: operator {type(node.op).__name__} is not allowed")
        _validate(node.operand, expr, columns, names)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BIN_OPS:
            raise ValueError(f"constraint {expr!r}: operator {type(node.op).__name__} is not allowed")
        _validate(node.left, expr, columns, names)
        _validate(node.right, expr, columns, names)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            _validate(value, expr, columns, names)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE_OPS:
                raise ValueError(f"constraint {expr!r}: comparison {type(op).__name__} is not allowed")
        for child in (node.left, *node.comparators):
            _validate(child, expr, columns, names)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS or node.keywords:
            raise ValueError(f"constraint {expr!r}: only abs(), min() and max() calls are allowed")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise ValueError(f"constraint {expr!r}: starred arguments are not allowed")
            _validate(arg, expr, columns, names)
    else:
        raise ValueError(f"constraint {expr!r}: {type(node).__name__} expressions are not allowed")


def compile_constraint(expr: str, columns: Sequence[str]) -> Constraint:
    """Parse and validate a constraint string against the swept ``columns`` (dotted paths).

    Raises ``ValueError`` for syntax errors, disallowed constructs and unknown or ambiguous names.

    Example:
        >>> compile_constraint("slow - fast >= 10", ["a.fast", "a.slow"]).names
        {'slow': 'a.slow', 'fast': 'a.fast'}
    """
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError(f"a constraint must be a non-empty string, got {expr!r}")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"constraint {expr!r} is not a valid expression: {exc.msg}") from None
    names: dict[str, str] = {}
    _validate(tree, expr, list(columns), names)
    return Constraint(expr=expr, tree=tree, names=names)


def expand_grid(
    spec: Mapping[str, Any], constraints: str | Sequence[str] | None = None, max_combos: int | None = None
) -> pd.DataFrame:
    """All combinations of a sweep spec that satisfy every constraint.

    Args:
        spec: dotted config path -> values (see :func:`parse_values` for the accepted forms).
        constraints: one expression or a list of them, all of which must hold (see module docs).
        max_combos: refuse (``ValueError``) a spec with more combinations than this, before allocating.

    Returns:
        One row per combination (RangeIndex), one column per dotted path in spec order; the first
        path varies slowest. Raises ``ValueError`` naming the offending key or constraint on bad input,
        including when the constraints leave no combination.

    Example:
        >>> grid = expand_grid(
        ...     {"signal.params.fast": {"range": [5, 50, 1]}, "signal.params.slow": {"range": [20, 200, 5]}},
        ...     constraints="fast < slow",
        ... )
        >>> len(grid)
        1590
    """
    total = count_combinations(spec)
    if max_combos is not None and total > max_combos:
        # counted before anything is allocated: a range of 1e10 points would otherwise try to take 75 GiB
        raise ValueError(f"the sweep has {total:,} combinations before constraints, more than the limit of "
                         f"{max_combos:,}; narrow the ranges or raise the limit (--max-combos)")
    columns = list(spec)
    levels = [parse_values(key, value) for key, value in spec.items()]

    if constraints is None:
        exprs: list[str] = []
    elif isinstance(constraints, str):
        exprs = [constraints]
    else:
        exprs = list(constraints)
    compiled = [compile_constraint(expr, columns) for expr in exprs]

    # np.indices-style product: first key slowest, like itertools.product
    sizes = [len(level) for level in levels]
    grids = np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij")
    combos = pd.DataFrame(
        {col: level[g.ravel()] for col, level, g in zip(columns, levels, grids, strict=True)}
    )
    for col, level in zip(columns, levels, strict=True):
        if level.dtype == object:
            combos[col] = combos[col].astype(object)
    if compiled:
        mask = np.ones(len(combos), dtype=bool)
        for constraint in compiled:
            mask &= constraint(combos)
        if not mask.any():
            raise ValueError(f"no combination satisfies the constraints {exprs}")
        combos = combos.loc[mask].reset_index(drop=True)
    return combos


def integral_columns(grid: pd.DataFrame) -> pd.DataFrame:
    """``grid`` with float columns whose values are all whole numbers made int64, in place.

    Ranges written with floats (``[5.0, 50.0, 5.0]``) give floats; integer params only validate as ints.

    Example:
        >>> integral_columns(pd.DataFrame({"a": [5.0, 10.0], "b": [0.5, 1.0]})).dtypes.tolist()
        [dtype('int64'), dtype('float64')]
    """
    for col in grid.columns:
        vals = grid[col]
        if vals.dtype.kind == "f" and np.all(np.isfinite(vals)) and np.all(vals == np.round(vals)):
            grid[col] = vals.astype(np.int64)
    return grid
