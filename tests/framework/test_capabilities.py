"""The optional capabilities of qf.components: every built-in that has one implements all of it, with the
Protocol's signatures, and qf checks them with isinstance."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import backtrader as bt
import pytest
import yaml

from qf import hookimpl
from qf.components import (
    DataSource,
    ForecastBands,
    HistorySharing,
    LiveBroker,
    LiveDataSource,
    Params,
    PathResolving,
    TrainableSignal,
    UsesForecastBands,
)
from qf.config.loader import load_experiment
from qf.config.schema import ExecutionSpec
from qf.testing import FakeLiveBroker, FakeLiveBrokerComponent, registry_with

COMPONENT_CAPABILITIES = (PathResolving, TrainableSignal, LiveDataSource, HistorySharing, ForecastBands,
                          UsesForecastBands)
# what the built-ins claim (docs/plugins.md lists the same): a built-in that gains or loses one fails here
BUILTIN_CLAIMS = {
    ("data", "alpaca"): {LiveDataSource},
    ("data", "csv"): {PathResolving},
    ("data", "parquet"): {PathResolving},
    ("data", "yfinance"): {PathResolving},
    ("risk", "correlation_cap"): {PathResolving},  # its sector groups file
    ("signal", "meta_label"): {TrainableSignal},
    ("signal", "xgboost"): {PathResolving, TrainableSignal, HistorySharing, ForecastBands},
    ("sizer", "quantile_kelly"): {UsesForecastBands},
}


def members(protocol: type) -> list[str]:
    """The methods and attributes a Protocol requires (what isinstance checks for)."""
    names = {n for n, v in vars(protocol).items() if not n.startswith("_") and callable(getattr(protocol, n))}
    return sorted(names | set(getattr(protocol, "__annotations__", {})))


def methods(protocol: type) -> list[str]:
    return [n for n in members(protocol) if callable(getattr(protocol, n, None))]


def signature_problems(cls: type, protocol: type) -> list[str]:
    """Where ``cls`` cannot be called the way the Protocol's methods are called."""
    problems = []
    for name in methods(protocol):
        want_static = inspect.getattr_static(protocol, name)
        have_static = inspect.getattr_static(cls, name)
        if isinstance(want_static, classmethod) != isinstance(have_static, classmethod):
            problems.append(f"{cls.__name__}.{name}: classmethod mismatch")
            continue
        want = inspect.signature(getattr(protocol, name))
        have = inspect.signature(getattr(cls, name))
        if not isinstance(want_static, classmethod):  # unbound: drop self from both
            want = want.replace(parameters=list(want.parameters.values())[1:])
            have = have.replace(parameters=list(have.parameters.values())[1:])
        var_kw = any(p.kind is p.VAR_KEYWORD for p in have.parameters.values())
        for p in want.parameters.values():
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            q = have.parameters.get(p.name)
            if q is None:
                if not (var_kw and p.kind is p.KEYWORD_ONLY):
                    problems.append(f"{cls.__name__}.{name}: no parameter {p.name!r}")
            elif p.default is not p.empty and q.default is q.empty:
                problems.append(f"{cls.__name__}.{name}: {p.name!r} needs a default")
            elif p.kind is p.POSITIONAL_OR_KEYWORD and q.kind is not p.POSITIONAL_OR_KEYWORD:
                problems.append(f"{cls.__name__}.{name}: {p.name!r} must be positional or keyword")
        extra = [q for n, q in have.parameters.items() if n not in want.parameters
                 and q.kind not in (q.VAR_KEYWORD, q.VAR_POSITIONAL) and q.default is q.empty]
        problems += [f"{cls.__name__}.{name}: extra required parameter {q.name!r}" for q in extra]
    return problems


def builtins() -> list[Any]:
    return registry_with().all()


def test_every_builtin_that_starts_a_capability_completes_it():
    claims = {}
    for reg in builtins():
        for cap in COMPONENT_CAPABILITIES:
            started = [m for m in members(cap) if callable(getattr(reg.cls, m, None))]
            if started:
                # half a capability would be ignored silently by isinstance: name the missing part
                assert issubclass(reg.cls, cap), f"{reg.kind} {reg.name!r} has {started} but not all of {members(cap)}"
                claims.setdefault((reg.kind, reg.name), set()).add(cap)
    assert claims == BUILTIN_CLAIMS


@pytest.mark.parametrize("key", sorted(BUILTIN_CLAIMS), ids=":".join)
def test_builtins_have_the_protocol_signatures(key):
    cls, caps = registry_with().get(*key).cls, BUILTIN_CLAIMS[key]
    for cap in caps:
        assert signature_problems(cls, cap) == []


def test_a_protocol_signature_mismatch_is_caught():
    class Wrong:
        def fit(self, train_bars, epochs): ...  # an extra required parameter

        def evaluate(self, bars): ...  # no test slice

        def save(self, directory): ...

        def summarize(self, models, directory): ...  # not a classmethod

    assert isinstance(Wrong(), TrainableSignal)  # isinstance only sees the names...
    assert signature_problems(Wrong, TrainableSignal) == [  # ...so the signatures are checked here
        "Wrong.evaluate: no parameter 'test'", "Wrong.fit: extra required parameter 'epochs'",
        "Wrong.summarize: classmethod mismatch"]


def test_builtin_brokers_create_what_paper_trading_expects(tmp_path):
    reg = registry_with()
    assert set(reg.names("broker")) == {"alpaca", "sim"}
    execution = ExecutionSpec(fill="next_open")
    sim = reg.get("broker", "sim").cls({}).create(execution)
    assert isinstance(sim, bt.brokers.BackBroker) and not isinstance(sim, LiveBroker)
    alpaca = reg.get("broker", "alpaca").cls({}).create(execution, state_dir=tmp_path)  # nothing connects
    assert isinstance(alpaca, bt.BrokerBase) and isinstance(alpaca, LiveBroker)
    assert signature_problems(type(alpaca), LiveBroker) == []


def test_the_fake_live_broker_has_the_protocol_signatures(tmp_path):
    broker = FakeLiveBrokerComponent({}).create(ExecutionSpec(), state_dir=tmp_path)
    assert isinstance(broker, LiveBroker) and signature_problems(FakeLiveBroker, LiveBroker) == []
    assert not isinstance(bt.brokers.BackBroker(), LiveBroker)


class _Anchored(DataSource):
    name = "anchored"
    seen: list[Path] = []

    class Params(Params):
        path: str = "prices.csv"

    def resolve_paths(self, base_dir: Path) -> _Anchored:
        self.seen.append(Path(base_dir))
        return self


class _NotAnchored(DataSource):
    """Switches the capability off the way Python allows for any method: set it to None."""

    name = "not_anchored"
    resolve_paths = None


class _Sources:
    @hookimpl
    def qf_data_sources(self):
        return [_Anchored, _NotAnchored]


def test_the_loader_resolves_paths_of_path_resolving_components_only(tmp_path):
    reg = registry_with(_Sources())
    path = tmp_path / "exp.yaml"
    doc = {"name": "x", "data": {"type": "anchored"}, "signal": {"type": "constant"}, "sizer": {"type": "equal"}}
    path.write_text(yaml.safe_dump(doc))
    load_experiment(path, registry=reg)
    assert _Anchored.seen == [tmp_path]
    assert not isinstance(_NotAnchored({}), PathResolving)
    path.write_text(yaml.safe_dump({**doc, "data": {"type": "not_anchored"}}))
    load_experiment(path, registry=reg)  # a component without the capability is left alone (no TypeError)
