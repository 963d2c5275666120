"""quantile_kelly: weights from a quantile model's forecast bands, handed over through the pipeline."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from qf.bars import Bars
from qf.cli.main import app
from qf.components import ForecastBands, UsesForecastBands
from qf.config.loader import load_experiment
from qf.errors import QfError
from qf.research.walk_forward import run_walk_forward
from qf.testing.contracts import assert_sizer_no_lookahead, sample_bars
from qf_plugins.signals.xgb import XGBoostSignal
from qf_plugins.sizers.quantile_kelly import QuantileKelly

ROOT = Path(__file__).resolve().parents[3]
EXPERIMENT = ROOT / "experiments" / "xgb_quantile_kelly.yaml"


class FixedBands:
    """A ForecastBands whose forecasts are given frames (what a test needs to compute weights by hand)."""

    def __init__(self, bands: dict[float, pd.DataFrame]) -> None:
        self.bands = bands
        self.asked: list[int] = []

    def forecast_bands(self, bars: Bars) -> dict[float, pd.DataFrame]:
        self.asked.append(len(bars.index))
        return {a: f.reindex(index=bars.index) for a, f in self.bands.items()}


def _tiny() -> tuple[Bars, pd.DataFrame, dict[float, pd.DataFrame]]:
    idx = pd.bdate_range("2024-01-01", periods=2)
    syms = ["A", "B", "C", "D", "E", "F"]
    close = pd.DataFrame(100.0, index=idx, columns=syms)
    # day 0: A confident (median 2 %, IQR 4 %), B straddling 0 (median 1 %, IQR 4 %), C negative median,
    # D a degenerate band (width 0), E not selected by the signal, F no forecast
    q25 = pd.DataFrame([[0.01, -0.01, -0.03, 0.01, 0.01, np.nan], [0.02] * 6], index=idx, columns=syms)
    q50 = pd.DataFrame([[0.02, 0.01, -0.01, 0.01, 0.02, np.nan], [0.04] * 6], index=idx, columns=syms)
    q75 = pd.DataFrame([[0.05, 0.03, 0.01, 0.01, 0.05, np.nan], [0.06] * 6], index=idx, columns=syms)
    signal = pd.DataFrame([[1.0, 0.5, 0.2, 0.3, 0.0, 0.4], [1.0] * 6], index=idx, columns=syms)
    return Bars(close=close, source="tiny"), signal, {0.25: q25, 0.5: q50, 0.75: q75}


def test_weights_by_hand() -> None:
    bars, signal, bands = _tiny()
    sizer = QuantileKelly({"fraction": 0.5, "cap": 0.2})
    sizer.use_forecast_bands(FixedBands(bands))
    w = sizer.size(signal, bars, bars.index)
    # A: 0.5 * 0.02 / 0.04 = 0.25 -> cap 0.2; B: 0.5 * 0.01 / 0.04 = 0.125; C, D, E, F: 0
    assert w.iloc[0].tolist() == [0.2, 0.125, 0.0, 0.0, 0.0, 0.0]
    # day 1: every name 0.5 * 0.04 / 0.04 = 0.5 -> cap 0.2, six of them = 1.2 -> scaled down to 1/6 each
    np.testing.assert_allclose(w.iloc[1].to_numpy(), np.full(6, 0.2 / 1.2), rtol=0, atol=1e-15)
    assert w.iloc[1].sum() == pytest.approx(1.0, abs=1e-12)


def test_straddling_band_is_zero_when_asked() -> None:
    bars, signal, bands = _tiny()
    sizer = QuantileKelly({"fraction": 0.5, "cap": 0.2, "zero_when_straddling": True})
    sizer.use_forecast_bands(FixedBands(bands))
    w = sizer.size(signal, bars, bars.index)
    assert w.iloc[0].tolist() == [0.2, 0.0, 0.0, 0.0, 0.0, 0.0]  # B's band reaches below 0


def test_other_levels_and_missing_levels() -> None:
    bars, signal, bands = _tiny()
    bands = {**bands, 0.1: bands[0.25] - 0.01, 0.9: bands[0.75] + 0.01}
    sizer = QuantileKelly({"lower": 0.1, "upper": 0.9, "fraction": 1.0, "cap": 1.0})
    sizer.use_forecast_bands(FixedBands(bands))
    w = sizer.size(signal, bars, bars.index[:1])
    # A: 0.02 / 0.06, B: 0.01 / 0.06, D: its 10-90 % band is 0.00..0.02, so 0.01 / 0.02 (sum 1: no scaling)
    np.testing.assert_allclose(w.iloc[0].to_numpy(), [0.02 / 0.06, 0.01 / 0.06, 0, 0.5, 0, 0], rtol=0, atol=1e-15)
    sizer = QuantileKelly({"lower": 0.2})
    sizer.use_forecast_bands(FixedBands(bands))
    with pytest.raises(QfError, match="levels 0.1, 0.25, 0.5, 0.75, 0.9, not 0.2"):
        sizer.size(signal, bars, bars.index)
    with pytest.raises(ValueError, match="lower < center < upper"):
        QuantileKelly({"lower": 0.6})


def test_an_unbound_sizer_refuses() -> None:
    bars, signal, _ = _tiny()
    with pytest.raises(QfError, match="no signal model that forecasts them"):
        QuantileKelly({}).size(signal, bars, bars.index)


def test_capabilities_are_protocols() -> None:
    assert isinstance(QuantileKelly({}), UsesForecastBands)
    assert isinstance(XGBoostSignal({"mode": "quantile"}), ForecastBands)
    assert isinstance(FixedBands({}), ForecastBands)


@pytest.fixture(scope="module")
def quantile_model() -> tuple[XGBoostSignal, Bars]:
    bars = sample_bars(n_symbols=5, n_bars=520, seed=5)
    model = XGBoostSignal({"mode": "quantile", "quantiles": [0.1, 0.25, 0.5, 0.75, 0.9], "n_estimators": 15,
                           "max_depth": 2, "learning_rate": 0.3, "seed": 1})
    model.fit(bars.iloc(slice(0, 350)))
    return model, bars


def test_xgboost_bands_are_its_sorted_quantile_predictions(quantile_model) -> None:
    model, bars = quantile_model
    bands = model.forecast_bands(bars)
    assert sorted(bands) == [0.1, 0.25, 0.5, 0.75, 0.9]
    for frame in bands.values():
        assert frame.index.equals(bars.index) and list(frame.columns) == bars.symbols
    stack = np.stack([bands[a].to_numpy() for a in sorted(bands)])
    warm = np.isfinite(stack).all(axis=0)
    assert warm.sum() > 1000 and (np.diff(stack[:, warm], axis=0) >= 0).all()
    classify = XGBoostSignal({"n_estimators": 5})
    classify.fit(bars.iloc(slice(0, 350)))
    with pytest.raises(QfError, match="forecast bands need mode: quantile"):
        classify.forecast_bands(bars)


def test_no_lookahead_through_the_real_model(quantile_model) -> None:
    """Row t's weights from bars cut at t equal the full run's: the bands of the cut bars are asked for."""
    model, bars = quantile_model
    sizer = QuantileKelly({"fraction": 2.0, "cap": 0.5})
    sizer.use_forecast_bands(model)
    signal = model.compute(bars)
    dates = bars.index[360::7]
    full = sizer.size(signal, bars, dates)
    assert (full.to_numpy() > 0).any()
    for t in dates[::6]:
        cut = bars.truncate(t)
        part = sizer.size(signal.loc[:t], cut, pd.DatetimeIndex([t]))
        pd.testing.assert_series_equal(part.iloc[0], full.loc[t], check_exact=True)
    # and the harness used for every built-in sizer (truncates at seeded dates, changes the future)
    assert_sizer_no_lookahead(sizer, signal, bars, dates, points=4)


def test_the_pipeline_refuses_a_signal_without_bands(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\ndata: {type: sample, params: {dataset: sp500_20, start: '2021-01-01'}}\n"
        "signal: {type: sma_cross, params: {fast: 5, slow: 20}}\nsizer: {type: quantile_kelly}\n"
        "report: {tearsheet: false}\n"
    )
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert "sizer 'quantile_kelly' sizes from forecast bands, which signal 'sma_cross' does not give" in result.stderr
    assert "Traceback" not in result.output


def test_the_example_experiment_validates_and_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(EXPERIMENT)])
    assert result.exit_code == 0, result.output
    # the shipped experiment, shortened (fewer trees, later start, shorter folds) to keep the test fast
    exp = load_experiment(EXPERIMENT, ["signal.params.n_estimators=8", "data.params.start=2018-01-01",
                                       "walk_forward.train=400", "walk_forward.test=300", "report.tearsheet=false"])
    out = run_walk_forward(exp, tmp_path / "r", Console(file=io.StringIO()))
    weights = pd.read_parquet(out / "weights.parquet")
    w = weights.to_numpy(dtype=float)
    w = w[np.isfinite(w)]
    assert (w > 0).any() and w.max() <= 0.2 + 1e-12 and (weights.fillna(0).sum(axis=1) <= 1 + 1e-9).all()
    assert len(pd.read_csv(out / "folds.csv")) >= 2 and len(pd.read_csv(out / "orders.csv")) > 0
