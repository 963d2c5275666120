"""The cost-model plugin kind: a third-party model registered through qf_cost_models runs in both engines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf import hookimpl
from qf.bars import Bars
from qf.components import CostModel, Params
from qf.engines.costs import CostArrays


class FlatBpsParams(Params):
    bps: float = 5.0


class FlatBps(CostModel):
    name = "flat_bps"
    Params = FlatBpsParams

    def arrays(self, bars):
        return CostArrays.constant(bars.close.shape, slippage=self.params.bps / 10_000)


class Plugin:
    @hookimpl
    def qf_cost_models(self):
        return [FlatBps]


def test_qf_cost_models_registers_a_third_party_model(qf_register):
    reg = qf_register(Plugin())
    assert reg.get("cost", "flat_bps").cls is FlatBps
    assert {"fixed", "spread", "volume_share", "almgren_chriss"} <= set(reg.names("cost"))


def test_builtin_models_build_their_arrays():
    from qf_plugins.costs import AlmgrenChriss, Fixed, Spread, VolumeShare

    idx = pd.bdate_range("2021-01-04", periods=5)
    close = pd.DataFrame({"A": [10.0, 11, 12, 11, 10]}, index=idx)
    vol = pd.DataFrame({"A": [100.0, 0, 200, 100, 50]}, index=idx)
    bars = Bars(close=close, volume=vol, source="t")
    assert Fixed({"slippage": 0.001}).arrays(bars).slippage.tolist() == [[0.001]] * 5
    assert Spread({"bps": 8}).arrays(bars).slippage[0, 0] == pytest.approx(0.0004)
    vs = VolumeShare({"max_participation": 0.1, "price_impact": 0.2}).arrays(bars)
    assert vs.max_qty[:, 0].tolist() == [10.0, 0.0, 20.0, 10.0, 5.0]
    assert vs.impact[0, 0] == pytest.approx(0.2 / 100**2) and vs.impact[1, 0] == 0.0 and vs.exponent == 2.0
    ac = AlmgrenChriss({"eta": 0.5, "window": 2}).arrays(bars)
    assert ac.impact[:2, 0].tolist() == [0.0, 0.0]  # no volatility known before two returns
    assert np.isinf(ac.max_qty).all()


def test_a_model_without_volume_data_is_a_clear_error():
    from qf.config.schema import ExecutionSpec
    from qf.engines.costs import cost_arrays
    from qf.errors import QfError

    idx = pd.bdate_range("2021-01-04", periods=3)
    bars = Bars(close=pd.DataFrame({"A": [1.0, 2, 3]}, index=idx), source="closes.csv")
    ex = ExecutionSpec.model_validate({"costs": {"type": "volume_share"}})
    with pytest.raises(QfError, match="volume_share.*needs volume"):
        cost_arrays(bars, ex)


def test_corwin_schultz_spread_by_hand():
    import math

    from qf_plugins.costs.spread import Spread

    idx = pd.bdate_range("2021-01-04", periods=4)
    high = pd.DataFrame({"A": [101.0, 101.2, 101.5, 103.0]}, index=idx)
    low = pd.DataFrame({"A": [99.0, 99.1, 100.0, 101.0]}, index=idx)
    close = pd.DataFrame({"A": [100.0, 101.0, 100.5, 102.0]}, index=idx)
    bars = Bars(close=close, high=high, low=low, source="t")
    half = Spread({"estimate": "corwin_schultz", "window": 1}).arrays(bars).slippage[:, 0]
    # the pair (bar 0, bar 1), charged at fill bar 2
    beta = math.log(101 / 99) ** 2 + math.log(101.2 / 99.1) ** 2
    gamma = math.log(101.2 / 99) ** 2
    k = 3 - 2 * math.sqrt(2)
    alpha = (math.sqrt(2 * beta) - math.sqrt(beta)) / k - math.sqrt(gamma / k)
    s = max(2 * (math.exp(alpha) - 1) / (1 + math.exp(alpha)), 0.0)
    assert s > 0
    assert half[0] == 0.0 and half[1] == 0.0
    assert half[2] == pytest.approx(s / 2, rel=1e-12)


def test_spread_needs_exactly_one_source():
    from pydantic import ValidationError

    from qf_plugins.costs.spread import Spread

    with pytest.raises(ValidationError, match="exactly one"):
        Spread({})
    with pytest.raises(ValidationError, match="exactly one"):
        Spread({"bps": 3, "estimate": "corwin_schultz"})
