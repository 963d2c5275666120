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

import yaml
from pydantic import BaseModel, ValidationError

from qf.components import Broker, DataSource, RiskRule, SignalModel, Sizer
from qf.config.schema import ComponentSpec, Experiment
from qf.errors import ConfigError, QfError
from qf.registry import Registry, get_registry

Path_ = tuple[str | int, ...]
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_KEY = re.compile(r"(key|secret|token|password|passwd)", re.IGNORECASE)
REDACTED = "***"


@dataclass
class Source:
    """Where each value of the document came from, for error messages."""

    file: str
    lines: dict[Path_, int] = field(default_factory=dict)
    overridden: dict[Path_, str] = field(default_factory=dict)

    def where(self, path: Path_) -> str:
        for i in range(len(path), -1, -1):
            p = tuple(path[:i])
            if p in self.overridden:
                return f"--set {self.overridden[p]}"
            if p in self.lines:
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

    @property
    def name(self) -> str:
        return self.spec.name

    def redacted(self) -> dict[str, Any]:
        """The resolved config with secrets replaced, safe to save next to a report."""
        return redact(self.raw, self.secret_paths)


def dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _walk_lines(node: yaml.Node, path: Path_, src: Source, errors: list[str]) -> None:
    src.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            key = k.value
            if key in seen:
                errors.append(f"{src.file}:{k.start_mark.line + 1}: {dotted((*path, key))}: duplicate key")
            seen.add(key)
            src.lines[(*path, key)] = k.start_mark.line + 1
            _walk_lines(v, (*path, key), src, errors)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _walk_lines(v, (*path, i), src, errors)


def read_yaml(text: str, file: str) -> tuple[dict[str, Any], Source]:
    """Parse YAML text into a dict plus the line of every key; syntax errors name the line."""
    src = Source(file)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{context}, {problem}" if context else problem
        cmark = getattr(exc, "context_mark", None)
        if cmark is not None and mark is not None and cmark.line != mark.line:
            detail += f" (the construct started on line {cmark.line + 1})"
        raise ConfigError(f"{file}:{line}: YAML syntax error: {detail}") from None
    if node is None or data is None:
        raise ConfigError(f"{file}:1: the file is empty; an experiment needs at least name, data, signal, sizer")
    if not isinstance(data, dict):
        raise ConfigError(f"{file}:1: an experiment must be a mapping of sections, got a {type(data).__name__}")
    errors: list[str] = []
    _walk_lines(node, (), src, errors)
    if errors:
        raise ConfigError(errors[0], errors)
    return data, src


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


def apply_overrides(data: dict[str, Any], overrides: list[str], src: Source) -> dict[str, Any]:
    """Apply ``dotted.path=value`` overrides (value parsed as YAML) to a copy of ``data``."""
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item}: expected dotted.path=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
        node: Any = out
        for i, p in enumerate(parts[:-1]):
            if isinstance(node, list) and isinstance(p, int):
                if p >= len(node):
                    raise ConfigError(f"--set {item}: {dotted(tuple(parts[: i + 1]))}: index out of range")
                node = node[p]
            elif isinstance(node, dict):
                if node.get(p) is None:
                    node[p] = {}
                node = node[p]
            else:
                raise ConfigError(f"--set {item}: {dotted(tuple(parts[:i]))} is not a mapping")
        last = parts[-1]
        if isinstance(node, list) and isinstance(last, int) and last < len(node):
            node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {item}: cannot set {dotted(tuple(parts))}")
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


def format_validation(exc: ValidationError, model: type[BaseModel], src: Source, prefix: Path_ = ()) -> list[str]:
    out = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        full = (*prefix, *loc)
        if err["type"] == "extra_forbidden":
            names = _model_fields_at(model, loc)
            hint = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
            msg = "unknown field" + (f"; did you mean {hint[0]!r}?" if hint else f" (allowed: {', '.join(names)})")
        elif err["type"] == "missing":
            msg = "required field is missing"
        else:
            msg = err["msg"]
            if err["type"] not in ("value_error", "assertion_error") and "input" in err:
                inp = err["input"]
                if not isinstance(inp, dict | list):
                    msg += f" (got {inp!r})"
            msg = msg.removeprefix("Value error, ")
        out.append(f"{src.where(full)}: {dotted(full)}: {msg}")
    return out


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


def _build(kind: str, spec: ComponentSpec, path: Path_, src: Source, registry: Registry, base_dir: Path | None,
           errors: list[str]) -> Any:
    try:
        reg = registry.get(kind, spec.type, base_dir)
    except QfError as exc:
        errors.append(f"{src.where((*path, 'type'))}: {dotted((*path, 'type'))}: {exc}")
        return None
    try:
        params = reg.cls.Params(**spec.params)
    except ValidationError as exc:
        errors.extend(format_validation(exc, reg.cls.Params, src, (*path, "params")))
        return None
    except TypeError as exc:
        errors.append(f"{src.where((*path, 'params'))}: {dotted((*path, 'params'))}: {exc}")
        return None
    comp = reg.cls(params)
    if base_dir is not None and hasattr(comp, "resolve_paths"):
        comp.resolve_paths(base_dir)
    return comp


def build(raw: dict[str, Any], src: Source, path: Path | None, secrets: set[Path_] | None = None,
          registry: Registry | None = None) -> LoadedExperiment:
    """Validate a raw experiment dict and build its components; all problems are reported together."""
    registry = registry or get_registry()
    try:
        spec = Experiment.model_validate(raw)
    except ValidationError as exc:
        lines = format_validation(exc, Experiment, src)
        raise ConfigError(lines[0], lines) from None
    base_dir = path.parent if path is not None else None
    errors: list[str] = []
    data = _build("data", spec.data, ("data",), src, registry, base_dir, errors)
    signal = _build("signal", spec.signal, ("signal",), src, registry, base_dir, errors)
    sizer = _build("sizer", spec.sizer, ("sizer",), src, registry, base_dir, errors)
    risk = [_build("risk", r, ("risk", i), src, registry, base_dir, errors) for i, r in enumerate(spec.risk)]
    broker = _build("broker", spec.broker, ("broker",), src, registry, base_dir, errors)
    bench = None
    if spec.benchmark is not None and spec.benchmark.type is not None:
        bspec = ComponentSpec(type=spec.benchmark.type, params=spec.benchmark.params)
        bench = _build("data", bspec, ("benchmark",), src, registry, base_dir, errors)
    if errors:
        raise ConfigError(errors[0], errors)
    return LoadedExperiment(spec, raw, path, data, signal, sizer, risk, broker, bench, secrets or set())


def load_experiment(path: str | Path, overrides: list[str] | None = None, registry: Registry | None = None,
                    extra: dict[str, Any] | None = None) -> LoadedExperiment:
    """Read, substitute, override, validate and build an experiment file.

    ``extra`` is a dict of dotted-path overrides applied after ``overrides`` (used by sweeps).
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
    return build(raw, src, p, secrets, registry)


def set_paths(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` with each dotted path set to its value (paths must be valid)."""
    out = copy.deepcopy(raw)
    for key, value in values.items():
        parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.split(".")]
        node: Any = out
        for p in parts[:-1]:
            node = node.setdefault(p, {}) if isinstance(node, dict) else node[p]
        node[parts[-1]] = value
    return out
