"""hrp: riskfolio-lib HRP on the trailing window of the selected assets."""

from __future__ import annotations

import re
from typing import get_args

import numpy as np
import pandas as pd
import pytest
import riskfolio as rp

from qf.testing.contracts import sample_bars
from qf_plugins.sizers.hrp import Hrp, RiskMeasure

BARS = sample_bars(n_symbols=6, n_bars=160, seed=5)
WINDOW = 40


def _signal(selected: dict[pd.Timestamp, list[str]]) -> pd.DataFrame:
    signal = pd.DataFrame(0.0, index=BARS.index, columns=BARS.close.columns)
    for t, names in selected.items():
        signal.loc[t, names] = 1.0
    return signal


def test_matches_a_direct_riskfolio_call_on_the_same_window() -> None:
    t = BARS.index[-1]
    # selected in an order unlike the columns', to catch any mix-up of riskfolio's asset order
    names = ["S4", "S1", "S5", "S2"]
    w = Hrp({"window": WINDOW}).size(_signal({t: names}), BARS, BARS.index[-1:]).iloc[0]
    returns = BARS.close.pct_change(fill_method=None).iloc[-WINDOW:][names]
    direct = rp.HCPortfolio(returns=returns).optimization(
        model="HRP", codependence="pearson", rm="MV", linkage="single"
    )["weights"]
    np.testing.assert_allclose(w[names], direct[names], rtol=1e-10)
    assert w.sum() == pytest.approx(1.0)
    assert (w >= 0).all()
    assert (w.drop(names) == 0).all()
    assert len(set(np.round(w[names], 6))) > 1  # really risk-weighted, not an equal split


def test_each_date_uses_its_own_selection_and_window() -> None:
    dates = BARS.index[[60, 100, 159]]
    picks = {dates[0]: ["S0", "S1", "S2"], dates[1]: ["S3", "S4", "S5"], dates[2]: ["S0", "S5"]}
    w = Hrp({"window": WINDOW, "linkage": "ward", "codependence": "spearman"}).size(_signal(picks), BARS, dates)
    for t, names in picks.items():
        row = w.loc[t]
        assert row.sum() == pytest.approx(1.0) and (row >= 0).all()
        assert set(row[row > 0].index) == set(names)


def test_fallbacks_below_min_assets_and_flat_without_selection() -> None:
    t = BARS.index[-1]
    dates = BARS.index[-1:]
    w = Hrp({"window": WINDOW, "min_assets": 4}).size(_signal({t: ["S0", "S1", "S2"]}), BARS, dates).iloc[0]
    np.testing.assert_allclose(w[["S0", "S1", "S2"]], [1 / 3] * 3)
    w = Hrp({"window": WINDOW}).size(_signal({t: ["S3"]}), BARS, dates).iloc[0]
    assert w["S3"] == 1.0 and w.sum() == 1.0
    w = Hrp({"window": WINDOW}).size(_signal({}), BARS, dates)
    assert (w == 0).all().all()


def test_assets_without_a_full_window_or_a_close_are_not_weighted() -> None:
    bars = sample_bars(n_symbols=4, n_bars=120, seed=6, unlisted=1)  # S3 lists on row 40
    signal = pd.DataFrame(1.0, index=bars.index, columns=bars.close.columns)
    sizer = Hrp({"window": 60})
    w = sizer.size(signal, bars, bars.index[[30, 70, 119]])
    assert (w.iloc[0] == 0).all()  # no one has 60 returns yet
    assert w.iloc[1]["S3"] == 0 and w.iloc[1].sum() == pytest.approx(1.0)  # S3 has 30 returns
    assert w.iloc[2]["S3"] > 0 and w.iloc[2].sum() == pytest.approx(1.0)
    assert sizer.warmup == 60


def test_riskfolio_output_is_silenced(capsys: pytest.CaptureFixture[str]) -> None:
    # the DBHT linkage prints from inside riskfolio on fewer than 9 assets
    t = BARS.index[-1]
    sizer = Hrp({"window": WINDOW, "linkage": "DBHT", "min_assets": 4})
    w = sizer.size(_signal({t: ["S0", "S1", "S2", "S3"]}), BARS, BARS.index[-1:])
    assert w.iloc[0].sum() == pytest.approx(1.0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize(
    ("params", "field"),
    [({"window": 5}, "window"), ({"linkage": "nearest"}, "linkage"), ({"codependence": "cosine"}, "codependence"),
     ({"rm": "EVaR_x"}, "rm"), ({"min_assets": 1}, "min_assets"),
     ({"linkage": "DBHT"}, "linkage DBHT needs at least 4 assets: set min_assets to 4 or more (is 2)")],
)
def test_params_validation(params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        Hrp(params)


@pytest.mark.parametrize("rm", get_args(RiskMeasure))
def test_every_accepted_risk_measure_runs(rm: str) -> None:
    t = BARS.index[-1]
    w = Hrp({"window": WINDOW, "rm": rm}).size(_signal({t: ["S0", "S1", "S2", "S3"]}), BARS, BARS.index[-1:])
    assert w.iloc[0].sum() == pytest.approx(1.0) and (w.iloc[0] >= 0).all()


def test_a_non_finite_riskfolio_result_falls_back_to_equal_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    import qf_plugins.sizers.hrp as hrp_module

    monkeypatch.setattr(hrp_module, "hrp_weights", lambda returns, *a: pd.Series(np.nan, index=returns.columns))
    t = BARS.index[-1]
    w = Hrp({"window": WINDOW}).size(_signal({t: ["S0", "S1"]}), BARS, BARS.index[-1:]).iloc[0]
    assert w[["S0", "S1"]].tolist() == [0.5, 0.5] and w.sum() == 1.0
