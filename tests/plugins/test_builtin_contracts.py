"""Generic contracts, run over EVERY signal model, sizer and risk rule in the real registry.

A new built-in (or an installed third-party plugin) is covered without touching this file; only a
component whose defaults cannot run on sample bars needs an entry in the params dicts below.
"""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pandas as pd
import pytest
import yaml

from qf.components import UsesForecastBands
from qf.registry import get_registry
from qf.testing import check_stateful_rule
from qf.testing.contracts import (
    assert_risk_rule_idempotent,
    assert_signal_no_lookahead,
    assert_signal_valid,
    assert_sizer_no_lookahead,
    assert_weights_valid,
    sample_bars,
)

REGISTRY = get_registry()
# params for components whose defaults cannot run as-is (required fields)
SIGNAL_PARAMS: dict[str, dict] = {"xgboost": {"n_estimators": 20}}
SIZER_PARAMS: dict[str, dict] = {}
RISK_PARAMS: dict[str, dict] = {
    "drawdown_halt": {"max_drawdown": 0.2},
    "daily_loss_limit": {"limit": 0.05},
    "stop_loss": {"pct": 0.1},
}

# one symbol lists a third of the way in, to check not-yet-listed symbols are left alone
BARS = sample_bars(n_symbols=5, n_bars=600, seed=3, unlisted=1)


def _make(kind: str, name: str, params: dict[str, dict]):
    return REGISTRY.get(kind, name).cls(params.get(name, {}))


@pytest.mark.parametrize("name", REGISTRY.names("signal"))
def test_signal_contract(name: str) -> None:
    model = _make("signal", name, SIGNAL_PARAMS)
    if callable(getattr(model, "fit", None)):
        # a trainable model (xgboost) refuses to predict untrained: check the model fitted on a train window
        model.fit(BARS.iloc(slice(0, 400)))
    signal = assert_signal_valid(model, BARS)
    assert_signal_no_lookahead(model, BARS, points=6)
    # the sample is long enough for every default warm-up: the model must say something somewhere
    assert signal.notna().to_numpy().any(), f"{name} is NaN everywhere on 600 bars"


@pytest.fixture(scope="module")
def sizer_signal() -> pd.DataFrame:
    """A long/flat signal that changes selection over time, with warm-up NaN and a late listing."""
    signal = REGISTRY.get("signal", "sma_cross").cls({"fast": 10, "slow": 30}).compute(BARS)
    # a stretch where nothing is selected: every sizer must go flat there
    signal.iloc[300:330] = 0.0
    return signal


class TrailingBands:
    """A ForecastBands for sizers that read bands (quantile_kelly): the last 5 bars' return +- 2 %."""

    warmup = 5

    def forecast_bands(self, bars):
        r = bars.close.pct_change(5, fill_method=None)
        return {0.25: r - 0.02, 0.5: r, 0.75: r + 0.02}


@pytest.mark.parametrize("name", REGISTRY.names("sizer"))
def test_sizer_contract(name: str, sizer_signal: pd.DataFrame) -> None:
    sizer = _make("sizer", name, SIZER_PARAMS)
    if isinstance(sizer, UsesForecastBands):  # the pipeline hands it the signal model; here a stand-in
        sizer.use_forecast_bands(TrailingBands())
    dates = BARS.index[::21]
    weights = sizer.size(sizer_signal, BARS, dates)
    assert_weights_valid(weights, dates, BARS.symbols)
    assert_sizer_no_lookahead(sizer, sizer_signal, BARS, dates, points=4)
    w = weights.to_numpy()
    assert (w >= 0).all(), f"{name}: a long/flat signal produced a negative weight"
    not_selected = (sizer_signal.reindex(dates).fillna(0.0) <= 0).to_numpy()
    assert (w[not_selected] == 0).all(), f"{name}: weight on a symbol whose signal is not positive"
    unlisted = BARS.close.reindex(dates).isna().to_numpy()
    assert unlisted.any() and (w[unlisted] == 0).all(), f"{name}: weight on a symbol with no close yet"
    flat_dates = dates[(dates >= BARS.index[300]) & (dates < BARS.index[330])]
    assert len(flat_dates) and (weights.loc[flat_dates] == 0).all().all()
    assert (weights.abs().sum(axis=1) <= 1 + 1e-9).all(), f"{name}: default params must not lever up"
    assert (weights.abs().sum(axis=1) > 0).any(), f"{name} never invests on 600 bars"


def _random_weights(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = BARS.index[::25]
    w = rng.normal(0.1, 0.3, (len(dates), len(BARS.symbols)))
    w[rng.random(w.shape) < 0.1] = np.nan  # NaN = hold
    w[2] = 0.0
    return pd.DataFrame(w, index=dates, columns=BARS.symbols)


@pytest.mark.parametrize("name", REGISTRY.names("risk"))
def test_risk_rule_contract(name: str) -> None:
    rule = _make("risk", name, RISK_PARAMS)
    weights = _random_weights()
    assert_risk_rule_idempotent(rule, weights, BARS)
    out = rule.apply(weights, BARS)
    assert (out.isna() == weights.isna()).all().all(), f"{name}: a hold (NaN) must stay a hold"
    if rule.stateful:
        check_stateful_rule(rule, BARS)  # step compiles, sizes as declared, inputs use past data only


ALL = [(kind, name) for kind in ("signal", "sizer", "risk") for name in REGISTRY.names(kind)]


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_docstring_yaml_example_is_valid(kind: str, name: str) -> None:
    """Every class documents itself with a YAML example that names it and whose params validate."""
    cls = REGISTRY.get(kind, name).cls
    doc = cls.__doc__ or ""
    assert "YAML::" in doc, f"{name}: docstring has no YAML example"
    block = textwrap.dedent(doc.split("YAML::", 1)[1].split("\n\n", 2)[1])
    loaded = yaml.safe_load(block)
    section = next(iter(loaded.values()))
    entry = section[0] if isinstance(section, list) else section
    assert entry["type"] == name
    cls(entry.get("params", {}))  # raises if the documented params are invalid


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_unknown_params_are_rejected(kind: str, name: str) -> None:
    cls = REGISTRY.get(kind, name).cls
    params = {**(SIGNAL_PARAMS | SIZER_PARAMS | RISK_PARAMS).get(name, {}), "no_such_param": 1}
    with pytest.raises(ValueError, match=re.escape("no_such_param")):
        cls(params)
