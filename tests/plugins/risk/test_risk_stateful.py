"""Stateful risk rules: each writes the right settings into the shared risk kernel's config."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from qf.engines.kernels.risk import RiskConfig, merge, new_state, risk_step_nb
from qf.testing.contracts import sample_bars
from qf_plugins.risk.daily_loss_limit import DailyLossLimit
from qf_plugins.risk.drawdown_halt import DrawdownHalt
from qf_plugins.risk.stop_loss import StopLoss


def _configured(rule) -> RiskConfig:
    config = RiskConfig()
    rule.configure(config)
    return config


def _changed(config: RiskConfig) -> dict:
    """Fields that differ from a fresh config (NaN-aware)."""
    fresh = RiskConfig()
    out = {}
    for name, value in vars(config).items():
        default = getattr(fresh, name)
        same = (isinstance(value, float) and math.isnan(value) and math.isnan(default)) or value == default
        if not same:
            out[name] = value
    return out


def test_drawdown_halt_config() -> None:
    assert _changed(_configured(DrawdownHalt({"max_drawdown": 0.2}))) == {"dd_limit": 0.2}  # cooldown -1: stay flat
    assert _changed(_configured(DrawdownHalt({"max_drawdown": 0.15, "cooldown_bars": 10}))) == {
        "dd_limit": 0.15,
        "dd_cooldown": 10,
    }


def test_daily_loss_limit_config() -> None:
    assert _changed(_configured(DailyLossLimit({"limit": 0.03}))) == {"daily_limit": 0.03}  # cooldown 1 = default
    assert _changed(_configured(DailyLossLimit({"limit": 0.05, "cooldown_bars": 5}))) == {
        "daily_limit": 0.05,
        "daily_cooldown": 5,
    }


def test_stop_loss_config() -> None:
    assert _changed(_configured(StopLoss({"pct": 0.08}))) == {"stop_pct": 0.08}
    cfg = _configured(StopLoss({"vol_mult": 3.0, "vol_window": 30, "take_profit": 0.25}))
    assert _changed(cfg) == {"stop_vol_mult": 3.0, "stop_vol_window": 30, "take_profit_pct": 0.25}
    assert cfg.needs_vol


def test_stateful_rules_do_not_touch_weights() -> None:
    bars = sample_bars(n_symbols=2, n_bars=5)
    w = bars.close * 0 + 0.5
    assert DrawdownHalt({"max_drawdown": 0.1}).apply(w, bars).equals(w)


def test_drawdown_halt_config_drives_the_kernel() -> None:
    # equity 100 -> 110 (peak) -> 95 (-13.6% from the peak): a 10% halt fires on the third bar, a 20% one never
    path = [100.0, 110.0, 95.0]
    for limit, expect in ((0.10, [0, 0, 1]), (0.20, [0, 0, 0])):
        cfg = merge([_configured(DrawdownHalt({"max_drawdown": limit}))]).as_array()
        state = new_state()
        empty = np.zeros(1)
        actions = [
            risk_step_nb(d, eq, empty, empty, empty, empty, cfg, state, np.zeros(1, dtype=np.bool_))
            for d, eq in enumerate(path)
        ]
        assert actions == expect


def test_stop_loss_config_drives_the_kernel() -> None:
    cfg = _configured(StopLoss({"pct": 0.05, "take_profit": 0.10})).as_array()
    exits = np.zeros(3, dtype=np.bool_)
    close = np.array([94.0, 111.0, 100.0])  # -6% (stop), +11% (take profit), flat (keep)
    entry = np.full(3, 100.0)
    risk_step_nb(0, 1000.0, close, np.ones(3), entry, np.full(3, np.nan), cfg, new_state(), exits)
    assert exits.tolist() == [True, True, False]


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (DrawdownHalt, {}, "max_drawdown"),
        (DrawdownHalt, {"max_drawdown": 1.5}, "max_drawdown"),
        (DrawdownHalt, {"max_drawdown": 0.2, "cooldown_bars": 0}, "cooldown_bars"),
        (DailyLossLimit, {"limit": 0}, "limit"),
        (StopLoss, {}, "stop_loss needs pct (e.g. 0.08) or vol_mult (e.g. 3.0), or both"),
        (StopLoss, {"take_profit": 0.2}, "stop_loss needs pct"),
        (StopLoss, {"pct": 1.2}, "pct"),
        (StopLoss, {"vol_mult": 2, "vol_window": 1}, "vol_window"),
    ],
)
def test_params_validation(cls, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(params)
