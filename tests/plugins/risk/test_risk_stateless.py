"""Stateless risk rules: max_weight, max_gross, long_only, min_weight."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf.testing.contracts import assert_risk_rule_idempotent, sample_bars
from qf_plugins.risk.long_only import LongOnly
from qf_plugins.risk.max_gross import MaxGross
from qf_plugins.risk.max_weight import MaxWeight
from qf_plugins.risk.min_weight import MinWeight

BARS = sample_bars(n_symbols=3, n_bars=10)


def _w(*rows: list[float]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), index=BARS.index[: len(rows)], columns=BARS.symbols, dtype=float)


def test_max_weight_caps_magnitudes_and_keeps_signs_and_holds() -> None:
    out = MaxWeight({"limit": 0.3}).apply(_w([0.5, -0.6, 0.1], [np.nan, 0.2, 0.4]), BARS)
    np.testing.assert_allclose(out, [[0.3, -0.3, 0.1], [np.nan, 0.2, 0.3]])


@pytest.mark.parametrize(
    ("row", "limit", "expected"),
    [
        ([0.5, 0.3, 0.2], 0.4, [0.4, 0.36, 0.24]),  # 0.1 excess split 3:2
        ([0.6, 0.3, 0.1], 0.35, [0.35, 0.35, 0.3]),  # the first hand-out overfills the 0.3: it overflows on
        ([0.5, 0.5, 0.0], 0.3, [0.3, 0.3, 0.0]),  # everyone held is capped: the rest is cash, 0 stays 0
        ([-0.6, 0.2, 0.2], 0.4, [-0.4, 0.3, 0.3]),  # magnitudes redistributed, signs kept
    ],
)
def test_max_weight_redistributes_without_breaking_the_cap(
    row: list[float], limit: float, expected: list[float]
) -> None:
    out = MaxWeight({"limit": limit, "redistribute": True}).apply(_w(row), BARS)
    np.testing.assert_allclose(out.iloc[0], expected, atol=1e-12)
    assert (out.abs() <= limit + 1e-12).all().all()


def test_max_gross_scales_rows_down_only() -> None:
    out = MaxGross({"limit": 1.0}).apply(_w([0.8, -0.6, 0.0], [0.3, 0.3, 0.3], [np.nan, 1.5, 0.5]), BARS)
    np.testing.assert_allclose(out.iloc[0], [0.8 / 1.4, -0.6 / 1.4, 0.0])
    np.testing.assert_allclose(out.iloc[1], [0.3, 0.3, 0.3])  # inside the limit: untouched, never levered up
    np.testing.assert_allclose(out.iloc[2], [np.nan, 0.75, 0.25])  # holds are not counted and stay holds


def test_max_gross_with_max_net() -> None:
    out = MaxGross({"limit": 2.0, "max_net": 0.5}).apply(_w([0.8, 0.2, -0.2], [0.5, -0.5, 0.0], [0, 0, 0]), BARS)
    np.testing.assert_allclose(out.iloc[0], [0.5, 0.125, -0.125])  # net 0.8 -> 0.5
    np.testing.assert_allclose(out.iloc[1], [0.5, -0.5, 0.0])  # net 0: inside the cap
    np.testing.assert_allclose(out.iloc[2], [0.0, 0.0, 0.0])  # flat stays flat


def test_long_only_clips_shorts() -> None:
    out = LongOnly({}).apply(_w([0.5, -0.3, np.nan]), BARS)
    np.testing.assert_allclose(out, [[0.5, 0.0, np.nan]])


def test_min_weight_drops_small_and_optionally_renormalises() -> None:
    w = _w([0.6, 0.38, 0.02], [0.005, -0.005, np.nan])
    out = MinWeight({"threshold": 0.05}).apply(w, BARS)
    np.testing.assert_allclose(out, [[0.6, 0.38, 0.0], [0.0, 0.0, np.nan]])
    out = MinWeight({"threshold": 0.05, "renormalise": True}).apply(w, BARS)
    np.testing.assert_allclose(out, [[0.6 / 0.98, 0.38 / 0.98, 0.0], [0.0, 0.0, np.nan]])


@pytest.mark.parametrize(
    "rule",
    [
        MaxWeight({"limit": 0.35, "redistribute": True}),
        MaxGross({"limit": 0.9, "max_net": 0.4}),
        MinWeight({"threshold": 0.1, "renormalise": True}),
    ],
    ids=["max_weight", "max_gross", "min_weight"],
)
def test_idempotent_on_random_books(rule) -> None:
    rng = np.random.default_rng(11)
    w = pd.DataFrame(rng.normal(0.1, 0.4, (8, 3)), index=BARS.index[:8], columns=BARS.symbols)
    assert_risk_rule_idempotent(rule, w, BARS)


@pytest.mark.parametrize(
    ("cls", "params", "field"),
    [
        (MaxWeight, {"limit": 0}, "limit"),
        (MaxWeight, {"limit": 1.5}, "limit"),
        (MaxGross, {"limit": -1}, "limit"),
        (MaxGross, {"max_net": 0}, "max_net"),
        (MinWeight, {"threshold": 0}, "threshold"),
        (LongOnly, {"limit": 1}, "limit"),
    ],
)
def test_params_validation(cls, params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        cls(params)
