"""The tear sheet's per-regime section (qf.report.regimes): statistics by hand, the regime signal's labelling
on past data only, attribution to the previous close's regime, and the section on a written tear sheet."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qf.report.regimes import market_price, market_regimes, regime_section, regime_stats
from qf.report.tearsheet import write_tearsheet
from qf_plugins.signals.regime import RegimeParams, regime_codes


def _price(n: int = 700, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    vol = np.where((np.arange(n) // 100) % 2 == 0, 0.005, 0.02)  # calm and wild stretches of 100 bars
    return pd.Series(100 * np.cumprod(1 + rng.normal(0, 1, n) * vol), index=pd.bdate_range("2015-01-01", periods=n),
                     name="SPX")


def test_regime_stats_by_hand() -> None:
    idx = pd.bdate_range("2024-01-01", periods=4)
    r = pd.Series([0.01, -0.02, 0.03, 0.0], index=idx)
    labels = pd.Series(["low", "high", "low", np.nan], index=idx, dtype=object)
    market = pd.Series([0.02, 0.01, 0.0, 0.5], index=idx)
    t = regime_stats(r, labels, market).set_index("regime")
    assert list(t.index) == ["low", "high", "unlabelled"]
    low = t.loc["low"]
    assert low["bars"] == 2 and low["share"] == 0.5
    assert low["compounded"] == pytest.approx(1.01 * 1.03 - 1, abs=1e-15)
    assert low["ann_return"] == pytest.approx(0.02 * 252)
    sd = np.std([0.01, 0.03], ddof=1)
    assert low["ann_volatility"] == pytest.approx(sd * math.sqrt(252))
    assert low["sharpe"] == pytest.approx(0.02 / sd * math.sqrt(252))
    assert low["hit_rate"] == 1.0 and low["market_ann_return"] == pytest.approx(0.01 * 252)
    assert t.loc["high", "bars"] == 1 and math.isnan(t.loc["high", "sharpe"])  # one bar: no volatility


def test_labels_are_the_regime_signals_and_use_past_data_only() -> None:
    price = _price()
    labels = market_regimes(price)
    codes = regime_codes(price.to_frame("m"), RegimeParams(kind="volatility", vol_window=20, min_history=252))["m"]
    expected = codes.map({0.0: "low", 1.0: "mid", 2.0: "high"})
    pd.testing.assert_series_equal(labels, expected, check_names=False)
    assert labels.iloc[:271].isna().all() and labels.iloc[271:].notna().all()
    assert set(labels.dropna()) == {"low", "mid", "high"}
    for cut in (300, 450, 600):  # a label never changes when later bars arrive
        pd.testing.assert_series_equal(market_regimes(price.iloc[:cut]), labels.iloc[:cut])


def test_section_attributes_each_bar_to_the_previous_close_regime() -> None:
    price = _price()
    market_ret = price.pct_change()
    rets = (0.5 * market_ret).iloc[300:]  # a half-beta strategy over the evaluation period
    page = regime_section(rets, market_ret, None)
    assert "the benchmark (SPX)" in page
    table = regime_stats(rets, market_regimes(price).shift(1), market_ret)
    for row in table.to_dict("records"):
        assert f'data-value="{row["bars"]}"' in page and f'data-value="{row["sharpe"]}"' in page
    # the market's own return in each regime is twice the strategy's
    assert np.allclose(table["market_ann_return"], 2 * table["ann_return"])
    # no benchmark: the equal-weight universe of the closes
    close = pd.DataFrame({"A": price, "B": price * 2})
    eq_price, what = market_price(None, close)
    assert what == "the equal-weight universe" and np.allclose(eq_price.pct_change().iloc[1:], market_ret.iloc[1:])
    assert "the equal-weight universe" in regime_section(rets, None, close)
    assert "Not drawn" in regime_section(rets, None, None)


def test_every_tear_sheet_has_the_section(tmp_path: Path) -> None:
    price = _price(400)
    rets = price.pct_change().iloc[1:].rename("returns")
    write_tearsheet(rets, price.pct_change(), tmp_path / "t.html", "regimes")
    page = (tmp_path / "t.html").read_text()
    assert page.count('<div id="regimes">') == 1 and "Performance by volatility regime" in page
    assert "<td class=\"l\" data-value=\"low\">low</td>" in page
