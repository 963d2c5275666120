"""qf.testing.check_cost_model: the built-in cost models pass it, and each broken contract fails it."""

from __future__ import annotations

import numpy as np
import pytest

from qf.components import CostModel
from qf.engines.costs import CostArrays
from qf.testing import check_cost_model, sample_bars
from qf_plugins.costs.almgren_chriss import AlmgrenChriss
from qf_plugins.costs.fixed import Fixed
from qf_plugins.costs.spread import Spread
from qf_plugins.costs.volume_share import VolumeShare

BARS = sample_bars(n_symbols=3, n_bars=200, unlisted=1)


@pytest.mark.parametrize("model", [Fixed({"slippage": 0.001}), Spread({"bps": 5}),
                                   Spread({"estimate": "corwin_schultz"}), VolumeShare({}), AlmgrenChriss({})],
                         ids=lambda m: m.name)
def test_the_built_ins_pass(model):
    arrays = check_cost_model(model, BARS)
    assert arrays.slippage.shape == arrays.impact.shape == arrays.max_qty.shape == BARS.close.shape


def _model(make, needs: tuple[str, ...] = ()) -> CostModel:
    cls = type("Broken", (CostModel,), {"name": "broken", "needs": needs, "arrays": lambda self, bars: make(bars)})
    return cls()


def _arrays(slippage: np.ndarray) -> CostArrays:
    return CostArrays(slippage, np.zeros(slippage.shape), 1.0, np.full(slippage.shape, np.inf))


@pytest.mark.parametrize(("make", "message"), [
    # tomorrow's return as today's slippage: a look-ahead
    (lambda b: _arrays(np.abs(np.log(b.close).diff().shift(-1)).fillna(0.0).to_numpy() / 10),
     r"slippage on \d{4}-\d\d-\d\d for S\d is .* from the bars up to .*: it uses later bars"),
    (lambda b: _arrays(np.full(b.close.shape, -0.001)), "slippage has NaN or negative values"),
    (lambda b: _arrays(np.full(b.close.shape, np.inf)), "slippage is inf on 2015-01-02 for S0; it must be finite"),
    (lambda b: _arrays(np.zeros((3, 3))), r"slippage has shape \(3, 3\), the bars are"),
    (lambda b: b.close.to_numpy(), "arrays\\(\\) must return qf.engines.costs.CostArrays, got ndarray"),
])
def test_a_broken_contract_fails(make, message):
    with pytest.raises(AssertionError, match=message):
        check_cost_model(_model(make), BARS)


def test_a_missing_field_is_named():
    with pytest.raises(AssertionError, match="cost 'broken' needs volume but .* provides only close"):
        check_cost_model(_model(lambda b: _arrays(np.zeros(b.close.shape)), needs=("volume",)),
                         sample_bars(n_bars=50, ohlc=False))
