"""Read an experiment file: YAML with line numbers, ``${ENV}`` substitution, ``--set`` overrides,
schema validation, and resolution of every component with its own params model.

Every problem becomes one line ``file:line: dotted.path: message`` in a :class:`qf.errors.ConfigError`.

Example::

    exp = load_experiment("experiments/hrp_swing.yaml", overrides=["execution.fees=0.001"])
    exp.signal.compute(bars)
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ValidationError

from qf.bars import Bars
from qf.components import Broker, DataSource, PathResolving, RiskRule, SignalModel, Sizer, implements
from qf.config.schema import ComponentSpec, Experiment, RangeSpec
from qf.errors import ConfigError, QfError
from qf.registry import Registry, get_registry
from qf.research.folds import walk_forward_splits
from qf.research.grid import compile_constraint, count_combinations, expand_grid, integral_columns, sample_values

Path_ = tuple[str | int, ...]
Problem = tuple[Path_, str]  # where in the document, what is wrong
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_KEY = re.compile(r"(key|secret|token|password|passwd)", re.IGNORECASE)
REDACTED = "***"

# What a YAML document may expand to. An experiment is a few hundred nodes a handful of levels deep; an
# alias bomb (anchors of anchors) expands exponentially and thousands of nested brackets overflow the stack,
# so both are refused before anything is built.
MAX_NODES = 100_000
MAX_DEPTH = 64
# Every integer of an experiment ends up in numpy or numba as a C int64.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Default cap on a sweep's combinations before constraints (each one is a full backtest); --max-combos.
MAX_COMBOS = 100_000
# Sweeps up to this many combinations have every combination validated at load time (about 0.1 ms each).
CHECK_EVERY_COMBO = 20_000


@dataclass
class Source:
    """Where each value of the document came from, for error messages."""

    file: str
    lines: dict[Path_, int] = field(default_factory=dict)
    overridden: dict[Path_, str] = field(default_factory=dict)

    def where(self, path: Path_) -> str:
        """``file:line`` of the value at ``path``, or ``--set ...`` when an override set it or changed it."""
        for i in range(len(path), -1, -1):
            # an override of the value or of a section holding it wins over the (replaced) line of the file
            if tuple(path[:i]) in self.overridden:
                return f"--set {self.overridden[tuple(path[:i])]}"
        for i in range(len(path), -1, -1):
            p = tuple(path[:i])
            if p in self.lines:
                # the file has p, but an override changed or created what lies under it (risk.1.params.x=1
                # appends a rule without a type): that is the override's fault
                child = tuple(path[: i + 1])
                below = [item for q, item in self.overridden.items() if child and q[: len(child)] == child]
                if below:
                    return f"--set {below[-1]}"
                return f"{self.file}:{self.lines[p]}"
        return f"{self.file}:1"


@dataclass
class LoadedExperiment:
    """A validated experiment with its components built and ready to run."""

    spec: Experiment
    raw: dict[str, Any]
    path: Path | None
    data: DataSource
    signal: SignalModel
    sizer: Sizer
    risk: list[RiskRule]
    broker: Broker
    benchmark_source: DataSource | None
    secret_paths: set[Path_]
    source: Source | None = None  # lines of the file and the --set overrides, for errors found later
    overrides: list[str] = field(default_factory=list)  # the --set items as given, recorded in manifest.json

    def where(self, path: Path_) -> str:
        """``file:line`` (or ``--set ...``) of ``path``, for errors found after loading (e.g. from the data)."""
        return (self.source or Source(str(self.path))).where(path)

    @property
    def name(self) -> str:
        return self.spec.name

    def redacted(self) -> dict[str, Any]:
        """The resolved config with secrets replaced, safe to save next to a report."""
        return redact(self.raw, self.secret_paths)


def dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _walk_lines(node: yaml.Node, path: Path_, src: Source, errors: list[str], nodes: dict[int, Path_]) -> None:
    src.lines.setdefault(path, node.start_mark.line + 1)
    nodes.setdefault(id(node), path)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            key = k.value
            if key in seen:
                errors.append(f"{src.file}:{k.start_mark.line + 1}: {dotted((*path, key))}: duplicate key")
            seen.add(key)
            src.lines[(*path, key)] = k.start_mark.line + 1
            _walk_lines(v, (*path, key), src, errors, nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _walk_lines(v, (*path, i), src, errors, nodes)


class _BadScalar(Exception):
    """A scalar YAML resolves to a type but cannot build (``2020-02-30``); carries the node for its line."""

    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


class _Loader(yaml.SafeLoader):
    """The safe loader, with impossible dates raised as :class:`_BadScalar` instead of a bare ValueError."""

    def construct_yaml_timestamp(self, node: yaml.Node) -> Any:  # type: ignore[override]
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError) as exc:
            raise _BadScalar(node, f"{node.value!r} is not a valid date ({exc})") from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)
# YAML 1.1 (PyYAML) reads ``1e9`` as the string "1e9" (its floats need a dot); researchers write sweep values and
# sizes that way and mean numbers (YAML 1.2 agrees), so exponent-only floats resolve as floats too
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _check_size(text: str, where: str, with_line: bool = True) -> None:
    """Refuse a document nested deeper than MAX_DEPTH or expanding (aliases included) past MAX_NODES.

    Works on the event stream, which is flat, with the size of every anchored node remembered: the document
    is never expanded, so an alias bomb costs as much as its text.
    """
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = []  # [expanded size so far, anchor] of every open collection
    root = 0

    def at(line: int) -> str:
        return f"{where}:{line}" if with_line else where

    def add(n: int, line: int) -> None:
        nonlocal root
        if stack:
            stack[-1][0] += n
            size = stack[-1][0]
        else:
            root += n
            size = root
        if size > MAX_NODES:
            raise ConfigError(f"{at(line)}: the document expands to more than {MAX_NODES:,} values "
                              "(nested aliases?); an experiment needs a few hundred")

    try:
        for ev in yaml.parse(text, Loader=yaml.SafeLoader):
            line = ev.start_mark.line + 1
            if isinstance(ev, yaml.CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise ConfigError(f"{at(line)}: nested more than {MAX_DEPTH} levels deep")
                stack.append([1, ev.anchor])
            elif isinstance(ev, yaml.CollectionEndEvent):
                size, anchor = stack.pop()
                if anchor is not None:
                    sizes[anchor] = size
                add(size, line)
            elif isinstance(ev, yaml.ScalarEvent):
                if ev.anchor is not None:
                    sizes[ev.anchor] = 1
                add(1, line)
            elif isinstance(ev, yaml.AliasEvent):
                if ev.anchor in sizes:
                    add(sizes[ev.anchor], line)
                elif any(anchor == ev.anchor for _, anchor in stack):
                    raise ConfigError(f"{at(line)}: alias *{ev.anchor} refers to a value that contains it")
                # an undefined alias is reported by the composer with its line
    except yaml.YAMLError:
        return  # syntax errors are reported, with their line, when the document is composed


def _yaml_error(exc: yaml.YAMLError) -> tuple[int, str]:
    """The line and one-line description of a YAML syntax error."""
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else 1
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    detail = f"{context}, {problem}" if context else problem
    cmark = getattr(exc, "context_mark", None)
    if cmark is not None and mark is not None and cmark.line != mark.line:
        detail += f" (the construct started on line {cmark.line + 1})"
    return line, detail


def read_yaml(text: str, file: str) -> tuple[dict[str, Any], Source]:
    """Parse YAML text into a dict plus the line of every key; syntax errors name the line."""
    src = Source(file)
    _check_size(text, file)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{file}:1: the file is empty; an experiment needs at least name, data, signal, sizer")
        errors: list[str] = []
        nodes: dict[int, Path_] = {}
        _walk_lines(node, (), src, errors, nodes)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        line, detail = _yaml_error(exc)
        raise ConfigError(f"{file}:{line}: YAML syntax error: {detail}") from None
    except _BadScalar as exc:
        path = nodes.get(id(exc.node), ())
        raise ConfigError(f"{file}:{exc.node.start_mark.line + 1}: {dotted(path)}: {exc.message}") from None
    finally:
        loader.dispose()
    if data is None:
        raise ConfigError(f"{file}:1: the file is empty; an experiment needs at least name, data, signal, sizer")
    if not isinstance(data, dict):
        raise ConfigError(f"{file}:1: an experiment must be a mapping of sections, got a {type(data).__name__}")
    if errors:
        raise ConfigError(errors[0], errors)
    return data, src


def parse_value(text: str, where: str) -> Any:
    """One command-line value (``--set``, ``--param``) read as YAML, with the file's bounds and date checks.

    Text that is not valid YAML stays a string; ``where`` (e.g. ``--set a.b=x``) starts every error.

    Example::

        parse_value("[5, 10]", "--set sweep.params.x=[5, 10]")   # [5, 10]
        parse_value("2020-02-30", "--set data.params.start=...")  # ConfigError: ... is not a valid date
    """
    if not text.strip():
        return ""
    _check_size(text, where, with_line=False)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError:
        return text
    except _BadScalar as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    finally:
        loader.dispose()


def number_problems(data: Any, path: Path_ = ()) -> list[Problem]:
    """Numbers no engine can hold: integers outside C int64 (numpy and numba would overflow)."""
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in number_problems(v, (*path, k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in number_problems(v, (*path, i))]
    if isinstance(data, int) and not isinstance(data, bool) and not INT64_MIN <= data <= INT64_MAX:
        return [(path, f"{data} does not fit a 64-bit integer")]
    return []


def substitute_env(data: Any, src: Source, path: Path_ = (), secrets: set[Path_] | None = None,
                   errors: list[str] | None = None) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in strings; remember which paths came from the environment."""
    assert secrets is not None and errors is not None
    if isinstance(data, dict):
        return {k: substitute_env(v, src, (*path, k), secrets, errors) for k, v in data.items()}
    if isinstance(data, list):
        return [substitute_env(v, src, (*path, i), secrets, errors) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:

        def repl(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            errors.append(f"{src.where(path)}: {dotted(path)}: environment variable {var} is not set")
            return ""

        secrets.add(path)
        return _ENV.sub(repl, data)
    return data


def _split(key: str) -> list[str | int]:
    """``risk.0.params.limit`` -> ['risk', 0, 'params', 'limit'], as :func:`set_paths` reads it."""
    return [int(p) if p.isdigit() else p for p in key.split(".")]


def apply_overrides(data: dict[str, Any], overrides: list[str], src: Source) -> dict[str, Any]:
    """Apply ``dotted.path=value`` overrides (value parsed as YAML) to a copy of ``data``.

    A list index may be one past the end to append (``--set risk.1.type=stop_loss`` adds a second rule).
    Every error names the ``--set`` it comes from.
    """
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        where = f"--set {item}"
        if not sep or not key.strip() or any(not p.strip() for p in key.split(".")):
            raise ConfigError(f"{where}: expected dotted.path=value")
        value = parse_value(raw, f"{where}: {key.strip()}")
        parts = _split(key.strip())
        node: Any = out
        for i, p in enumerate(parts):
            here = dotted(tuple(parts[: i + 1]))
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not isinstance(p, int):
                    raise ConfigError(f"{where}: {dotted(tuple(parts[:i]))} is a list; use an index such as "
                                      f"{dotted((*parts[:i], 0))}")
                if p > len(node):
                    raise ConfigError(f"{where}: {here}: index out of range ({dotted(tuple(parts[:i]))} has "
                                      f"{len(node)} item(s); use {len(node)} to add one)")
                if p == len(node):
                    node.append(value if last else ({} if not isinstance(parts[i + 1], int) else []))
                elif last:
                    node[p] = value
            elif isinstance(node, dict):
                if last:
                    node[p] = value
                elif node.get(p) is None:
                    node[p] = [] if isinstance(parts[i + 1], int) else {}
            else:
                raise ConfigError(f"{where}: {dotted(tuple(parts[:i]))} is a value, not a section")
            if not last:
                node = node[p]
        src.overridden[tuple(parts)] = item
    return out


def _model_fields_at(model: type[BaseModel], loc: Path_) -> list[str]:
    """Field names of the (nested) model that owns ``loc``, for did-you-mean hints."""
    cur: Any = model
    for p in loc[:-1]:
        if isinstance(p, int):
            continue
        f = getattr(cur, "model_fields", {}).get(p)
        if f is None:
            return []
        ann = f.annotation
        for cand in (ann, *getattr(ann, "__args__", ())):
            for inner in (cand, *getattr(cand, "__args__", ())):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    cur = inner
                    break
            else:
                continue
            break
        else:
            return []
    return list(getattr(cur, "model_fields", {}))


def _did_you_mean(name: str, names: list[str]) -> str | None:
    """The field meant by a misspelled ``name``: a case-insensitive match first (``n`` for ``N``), then a close one."""
    folded = [n for n in names if n.lower() == name.lower()]
    if folded:
        return folded[0]
    lower = {n.lower(): n for n in names}
    hint = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)
    return lower[hint[0]] if hint else None


def validation_problems(exc: ValidationError, model: type[BaseModel], prefix: Path_ = ()) -> list[Problem]:
    """Each pydantic error as (full path, message), with did-you-mean hints for unknown fields."""
    out = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        full = (*prefix, *loc)
        if err["type"] == "extra_forbidden":
            names = _model_fields_at(model, loc)
            hint = _did_you_mean(str(loc[-1]), names)
            msg = "unknown field" + (f"; did you mean {hint!r}?" if hint else f" (allowed: {', '.join(names)})")
        elif err["type"] == "missing":
            msg = "required field is missing"
        else:
            msg = err["msg"]
            if err["type"] not in ("value_error", "assertion_error") and "input" in err:
                inp = err["input"]
                if not isinstance(inp, dict | list):
                    msg += f" (got {inp!r})"
            msg = msg.removeprefix("Value error, ")
        out.append((full, msg))
    return out


def format_validation(exc: ValidationError, model: type[BaseModel], src: Source, prefix: Path_ = ()) -> list[str]:
    """Each pydantic error as one line ``where: dotted.path: message``."""
    return [f"{src.where(path)}: {dotted(path)}: {msg}" for path, msg in validation_problems(exc, model, prefix)]


def redact(data: Any, secret_paths: set[Path_], path: Path_ = ()) -> Any:
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            secret_name = isinstance(v, str) and v and _SECRET_KEY.search(str(k))
            out[k] = REDACTED if secret_name else redact(v, secret_paths, (*path, k))
        return out
    if isinstance(data, list):
        return [redact(v, secret_paths, (*path, i)) for i, v in enumerate(data)]
    if path in secret_paths:
        return REDACTED
    return data


def params_from_options(model: type[BaseModel], items: list[str], flag: str) -> BaseModel:
    """A component's params from command-line ``key=value`` items; every error names the item at fault.

    Example::

        params_from_options(SampleSource.Params, ["dataset=arch_sp500", "start=2010-01-01"], "--param")
    """
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} {item}: expected key=value")
        if key in origin:  # the last one silently winning hides a typo in a long command line
            raise ConfigError(f"{flag} {item}: {key} is already set by {flag} {origin[key]}; give each key once")
        raw[key] = parse_value(text, f"{flag} {item}")
        origin[key] = item
    problems = number_problems(raw, ("params",))
    if not problems:
        try:
            return model(**raw)
        except ValidationError as exc:
            problems = validation_problems(exc, model, ("params",))
    everything = " ".join(f"{flag} {item}" for item in items)
    # paths read params.<key>, as in an experiment file; the item that set <key> is named
    lines = [f"{flag + ' ' + origin[str(path[1])] if len(path) > 1 and str(path[1]) in origin else everything}: "
             f"{dotted(path)}: {msg}" for path, msg in problems]
    raise ConfigError(lines[0], lines)


def _build(kind: str, spec: ComponentSpec, path: Path_, registry: Registry, base_dir: Path | None,
           problems: list[Problem]) -> Any:
    try:
        reg = registry.get(kind, spec.type, base_dir)
    except QfError as exc:
        problems.append(((*path, "type"), str(exc)))
        return None
    try:
        params = reg.cls.Params(**spec.params)
    except ValidationError as exc:
        problems.extend(validation_problems(exc, reg.cls.Params, (*path, "params")))
        return None
    except TypeError as exc:
        problems.append(((*path, "params"), str(exc)))
        return None
    comp = reg.cls(params)
    if base_dir is not None and implements(comp, PathResolving):
        comp.resolve_paths(base_dir)
    return comp


@dataclass
class _Built:
    spec: Experiment
    components: dict[str, Any]


def _validate(raw: dict[str, Any], registry: Registry, base_dir: Path | None) -> tuple[_Built | None, list[Problem]]:
    """The schema, then every component with its own params; the problems of all of them."""
    problems = number_problems(raw)
    if problems:
        return None, problems
    try:
        spec = Experiment.model_validate(raw)
    except ValidationError as exc:
        return None, validation_problems(exc, Experiment)
    comps: dict[str, Any] = {
        "data": _build("data", spec.data, ("data",), registry, base_dir, problems),
        "signal": _build("signal", spec.signal, ("signal",), registry, base_dir, problems),
        "sizer": _build("sizer", spec.sizer, ("sizer",), registry, base_dir, problems),
        "risk": [_build("risk", r, ("risk", i), registry, base_dir, problems) for i, r in enumerate(spec.risk)],
        "broker": _build("broker", spec.broker, ("broker",), registry, base_dir, problems),
        "benchmark_source": None,
    }
    if spec.execution.costs is not None:  # the engines build it again from the spec (qf.engines.costs)
        _build("cost", spec.execution.costs, ("execution", "costs"), registry, base_dir, problems)
    if spec.benchmark is not None and spec.benchmark.type is not None:
        bspec = ComponentSpec(type=spec.benchmark.type, params=spec.benchmark.params)
        comps["benchmark_source"] = _build("data", bspec, ("benchmark",), registry, base_dir, problems)
    return _Built(spec, comps), problems


def _fail(problems: list[Problem], src: Source) -> ConfigError:
    lines = [f"{src.where(path)}: {dotted(path)}: {msg}" for path, msg in problems]
    return ConfigError(lines[0], lines)


def build(raw: dict[str, Any], src: Source, path: Path | None, secrets: set[Path_] | None = None,
          registry: Registry | None = None, max_combos: int | None = None) -> LoadedExperiment:
    """Validate a raw experiment dict and build its components; all problems are reported together.

    A ``sweep:`` section is checked as ``qf run`` would use it (paths, every swept value, the number of
    combinations against ``max_combos``, constraints); ``walk_forward:`` sizes are checked too.
    """
    registry = registry or get_registry()
    base_dir = path.parent if path is not None else None
    built, problems = _validate(raw, registry, base_dir)
    if built is not None and not problems:
        if built.spec.sweep is not None:
            problems = sweep_problems(built.spec, raw, registry, base_dir, max_combos or MAX_COMBOS)
        if built.spec.walk_forward is not None:
            # the sizes alone (purge < train, step...); the data length is checked once the data is loaded
            wf = built.spec.walk_forward
            problems += walk_forward_problems(built.spec, wf.train + wf.test)
    if problems or built is None:
        raise _fail(problems, src)
    c = built.components
    return LoadedExperiment(built.spec, raw, path, c["data"], c["signal"], c["sizer"], c["risk"], c["broker"],
                            c["benchmark_source"], secrets or set(), src)


def _python(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _sweep_path_problem(raw: dict[str, Any], key: str) -> str | None:
    """Why ``key`` names no value ``qf run`` could set in ``raw``, or None."""
    parts = _split(key)
    if parts[0] in ("sweep", "walk_forward", "name", "report"):
        return f"{parts[0]} cannot be swept"
    node: Any = raw
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not isinstance(p, int):
                return f"{dotted(tuple(parts[:i]))} is a list; use an index such as {dotted((*parts[:i], 0))}"
            if p >= len(node):
                return f"{dotted(tuple(parts[:i + 1]))}: index out of range ({dotted(tuple(parts[:i]))} has " \
                       f"{len(node)} item(s))"
            node = node[p]
        elif isinstance(node, dict):
            if not last and node.get(p) is None and isinstance(parts[i + 1], int):
                return f"{dotted(tuple(parts[:i + 1]))} has no items to index"
            node = node.get(p)
            if node is None:
                node = {}
        else:
            return f"{dotted(tuple(parts[:i]))} is a value, not a section"
    return None


def sweep_problems(spec: Experiment, raw: dict[str, Any], registry: Registry, base_dir: Path | None,
                   max_combos: int = MAX_COMBOS) -> list[Problem]:
    """What ``qf run`` would refuse in the sweep section, each at the line of the sweep entry at fault.

    Every path must name a value (``risk.0.params.limit`` indexes a list); every swept value must pass the
    component's own params (a range is checked at its ends); the combinations are counted, not built,
    against ``max_combos``; constraints must compile; and when the grid is small enough every combination
    is validated as a whole (cross-field rules such as fast < slow).
    """
    from qf.research.sweep import METRICS  # lazy: numba

    sweep = spec.sweep
    assert sweep is not None
    entries = {k: ({"range": list(v.range)} if isinstance(v, RangeSpec) else v) for k, v in sweep.params.items()}
    base = {k: v for k, v in raw.items() if k not in ("sweep", "walk_forward")}
    problems: list[Problem] = []
    # the ranking metric is only looked up once every combination has run: refuse a typo before that
    metrics = [(("sweep", "metric"), sweep.metric)]
    if spec.walk_forward is not None:
        metrics.append((("walk_forward", "metric"), spec.walk_forward.metric))
    for at, metric in metrics:
        if metric not in METRICS:
            hint = _did_you_mean(metric, list(METRICS))
            problems.append((at, f"{metric!r} is not a metric; " + (f"did you mean {hint!r}? " if hint else "")
                             + f"use one of {', '.join(METRICS)}"))
    for key, value in entries.items():
        at: Path_ = ("sweep", "params", key)
        why = _sweep_path_problem(base, key)
        if why is not None:
            problems.append((at, why))
            continue
        try:
            values = integral_columns(pd.DataFrame({key: sample_values(key, value)}))[key].tolist()
        except ValueError as exc:
            problems.append((at, str(exc).removeprefix(f"{key}: ")))
            continue
        own = tuple(_split(key))
        for v in values:
            _, found = _validate(set_paths(base, {key: v}), registry, base_dir)
            # field-level problems only: a cross-field rule depends on the other swept values
            mine = [msg for p, msg in found if p[: len(own)] == own]
            if mine:
                problems.append((at, f"value {v!r}: {mine[0]}"))
                break
    if problems:
        return problems
    total = count_combinations(entries)
    if total > max_combos:
        return [(("sweep", "params"), f"{total:,} combinations before constraints, more than the limit of "
                                      f"{max_combos:,}; narrow the ranges or raise the limit with --max-combos")]
    for i, expr in enumerate(sweep.constraints):
        try:
            compile_constraint(expr, list(entries))
        except ValueError as exc:
            problems.append((("sweep", "constraints", i), str(exc)))
    if problems or total > CHECK_EVERY_COMBO:
        return problems
    try:
        grid = integral_columns(expand_grid(entries, sweep.constraints))
    except ValueError as exc:
        return [(("sweep", "constraints"), str(exc))]
    for combo in grid.to_dict("records"):
        values = {k: _python(v) for k, v in combo.items()}
        _, found = _validate(set_paths(base, values), registry, base_dir)
        if found:
            label = ", ".join(f"{k}={v}" for k, v in values.items())
            path, msg = found[0]
            return [(("sweep", "params"), f"combination {label}: {dotted(path)}: {msg}")]
    return []


def walk_forward_problems(spec: Experiment, n_bars: int) -> list[Problem]:
    """Why the walk-forward windows do not fit ``n_bars`` bars (or are inconsistent), at the section's line."""
    wf = spec.walk_forward
    assert wf is not None
    try:
        walk_forward_splits(n_bars, wf.train, wf.test, wf.step, "anchored" if wf.anchored else "rolling",
                            wf.purge, wf.embargo, allow_partial=True)
    except ValueError as exc:
        key = "step" if str(exc).startswith("step") else None
        return [(("walk_forward", key) if key else ("walk_forward",), str(exc))]
    return []


def data_problems(exp: LoadedExperiment, bars: Bars) -> list[Problem]:
    """What the experiment asks of its data that ``bars`` cannot give: rebalance period, walk-forward windows,
    and a warm-up (signal or sizer) shorter than the data, so that at least one bar is evaluated."""
    n = len(bars.index)
    problems: list[Problem] = []
    every = exp.spec.rebalance.every
    if every is not None and every >= n:
        problems.append((("rebalance", "every"), f"{every} bars is not shorter than the data ({n} bars of "
                                                 f"{bars.source}): it would never rebalance after the first bar"))
    if exp.spec.walk_forward is not None:
        problems += [(p, f"{msg} ({n} bars of data)") for p, msg in walk_forward_problems(exp.spec, n)]
    warmup = max(int(getattr(exp.signal, "warmup", 0) or 0), int(getattr(exp.sizer, "warmup", 0) or 0), 0)
    lag = 0 if exp.spec.execution.fill == "close" else 1
    if n and warmup + lag >= n and not problems:  # one line: the length rules above already say the data is short
        # the first decision comes after the warm-up and fills `lag` bars later: past the data, so a run would
        # trade nothing and report an empty period
        who = ("signal",) if int(getattr(exp.signal, "warmup", 0) or 0) == warmup else ("sizer",)
        problems.append((who, f"needs {warmup} bars of warm-up before its first decision, but {bars.source} has "
                              f"only {n} bars ({bars.index[0]:%Y-%m-%d} to {bars.index[-1]:%Y-%m-%d}): nothing "
                              "would be traded or evaluated; load earlier data or use shorter windows"))
    return problems


def needs_data(exp: LoadedExperiment) -> bool:
    """Whether :func:`check_data` has anything to check beyond the warm-up (a rebalance period in bars,
    walk-forward windows)."""
    return exp.spec.rebalance.every is not None or exp.spec.walk_forward is not None


def check_data(exp: LoadedExperiment, bars: Bars) -> Bars:
    """Raise a ConfigError naming the experiment's lines when ``bars`` cannot serve it; return ``bars``.

    Example::

        bars = check_data(exp, exp.data.load())
    """
    problems = data_problems(exp, bars)
    if problems:
        raise _fail(problems, exp.source or Source(str(exp.path)))
    return bars


def load_experiment(path: str | Path, overrides: list[str] | None = None, registry: Registry | None = None,
                    extra: dict[str, Any] | None = None, max_combos: int | None = None) -> LoadedExperiment:
    """Read, substitute, override, validate and build an experiment file.

    ``extra`` is a dict of dotted-path overrides applied after ``overrides`` (used by sweeps);
    ``max_combos`` caps the sweep's combinations before constraints (default :data:`MAX_COMBOS`).
    """
    p = Path(path)
    file = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    raw, src = read_yaml(text, file)
    secrets: set[Path_] = set()
    errors: list[str] = []
    raw = substitute_env(raw, src, (), secrets, errors)
    if errors:
        raise ConfigError(errors[0], errors)
    if overrides:
        raw = apply_overrides(raw, overrides, src)
    if extra:
        raw = set_paths(raw, extra)
    exp = build(raw, src, p, secrets, registry, max_combos)
    exp.overrides = list(overrides or [])
    _check_on_load(exp)
    return exp


def _check_on_load(exp: LoadedExperiment) -> None:
    """Make ``exp.data.load()`` run :func:`check_data`.

    Every command loads the data through this one call (run, sweeps, walk-forward, parity, paper), so the
    checks that need the data length happen there, with the experiment's lines, whoever loads it.
    """
    load = exp.data.load

    def checked() -> Bars:
        return check_data(exp, load())

    exp.data.load = checked  # type: ignore[method-assign]


def _copy_tree(node: Any) -> Any:
    # a YAML document's containers are dicts and lists, its leaves immutable scalars: copying the containers
    # is a deep copy, at a fraction of copy.deepcopy's cost (a sweep copies the document per combination)
    if isinstance(node, dict):
        return {k: _copy_tree(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy_tree(v) for v in node]
    if isinstance(node, str | int | float | bool | type(None)):
        return node
    return copy.deepcopy(node)


def set_paths(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` with each dotted path set to its value (paths must be valid)."""
    out = _copy_tree(raw)
    for key, value in values.items():
        parts = _split(key)
        node: Any = out
        for p in parts[:-1]:
            node = node.setdefault(p, {}) if isinstance(node, dict) else node[p]
        node[parts[-1]] = value
    return out
