"""Tests of qf-example-plugin, written as any plugin author would: qf's pytest fixtures and contract checks."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from qf.config.loader import load_experiment
from qf.testing import check_sizer

import qf_example_plugin
from qf_example_plugin import RiskParityLite, erc_weights

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "risk_parity_lite.yaml"


def risk_contributions(weights: np.ndarray, cov: np.ndarray) -> np.ndarray:
    return weights * (cov @ weights)


def test_the_hook_registers_the_sizer(qf_register):
    reg = qf_register(qf_example_plugin)
    assert reg.get("sizer", "risk_parity_lite").cls is RiskParityLite


def test_contracts(qf_bars, qf_rebalance_dates):
    # weights on exactly the rebalance dates, finite, 0 before a symbol lists, and no look-ahead
    weights = check_sizer(RiskParityLite({"window": 60}), qf_bars, dates=qf_rebalance_dates)
    invested = weights.sum(axis=1) > 0
    assert invested.sum() > len(weights) / 2
    assert np.allclose(weights[invested].sum(axis=1), 1.0)
    assert (weights.to_numpy() >= 0).all()


def test_uncorrelated_assets_get_inverse_volatility_weights():
    vol = np.array([0.1, 0.2, 0.4])
    expected = (1 / vol) / (1 / vol).sum()
    assert erc_weights(np.diag(vol**2)) == pytest.approx(expected, rel=1e-9)


def test_correlated_assets_share_one_risk_budget():
    # A and B are near copies (correlation 0.95), C is independent, all with the same volatility:
    # inverse volatility would give each a third; ERC gives C sqrt(1 + 0.95) times what A and B get
    cov = np.array([[0.04, 0.038, 0.0], [0.038, 0.04, 0.0], [0.0, 0.0, 0.04]])
    w = erc_weights(cov)
    rc = risk_contributions(w, cov)
    assert rc == pytest.approx(np.full(3, rc.mean()), rel=1e-9)
    assert w[0] == pytest.approx(w[1], rel=1e-9)
    assert w[2] == pytest.approx(np.sqrt(1.95) * w[0], rel=1e-9)
    assert w[2] > 0.4


def test_equal_risk_contributions_on_real_prices(qf_real_bars):
    bars = qf_real_bars.select(["AAPL", "JPM", "KO", "XOM", "MSFT"])
    date = bars.index[-1]
    signal = pd.DataFrame(1.0, index=bars.index, columns=bars.symbols)
    weights = RiskParityLite({"window": 126}).size(signal, bars, pd.DatetimeIndex([date]))
    w = weights.iloc[0].to_numpy()
    cov = bars.close.pct_change(fill_method=None).iloc[-126:].cov().to_numpy()
    rc = risk_contributions(w, cov)
    assert w.sum() == pytest.approx(1.0)
    assert rc == pytest.approx(np.full(5, rc.mean()), rel=1e-8)


def test_only_selected_symbols_with_history_are_held(qf_bars):
    dates = qf_bars.index[[10, 300, 599]]
    signal = pd.DataFrame(0.0, index=qf_bars.index, columns=qf_bars.symbols)
    signal[["S0", "S1"]] = 1.0
    weights = RiskParityLite({"window": 60}).size(signal, qf_bars, dates)
    assert (weights.iloc[0] == 0).all()  # 10 bars of history: not enough for a 60-day covariance
    assert (weights.iloc[1:][["S2", "S3", "S4"]] == 0).all().all()
    assert np.allclose(weights.iloc[1:].sum(axis=1), 1.0)
    flat = RiskParityLite({"window": 60}).size(signal * 0.0, qf_bars, dates)
    assert (flat == 0).all().all()


def test_unknown_or_bad_params_are_errors():
    with pytest.raises(ValidationError, match="windw"):
        RiskParityLite({"windw": 60})
    with pytest.raises(ValidationError, match="greater than or equal to 5"):
        RiskParityLite({"window": 2})


def test_the_example_experiment_is_valid(qf_register):
    exp = load_experiment(EXPERIMENT, registry=qf_register(qf_example_plugin))
    assert exp.sizer.name == "risk_parity_lite" and exp.sizer.params.window == 126


def test_the_installed_entry_point_provides_it(qf_installed_registry):
    # only true once the package is installed: qf reads the entry point from the installed metadata
    reg = qf_installed_registry.get("sizer", "risk_parity_lite")
    assert (reg.cls, reg.provider, reg.version) == (RiskParityLite, "qf_example", "0.2.0")
