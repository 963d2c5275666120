"""Drift (qf.paper.drift): PSI and KS against hand computations and scipy, the per-bar monitor (events, refits,
resume) on synthetic bars, and a ``qf paper --broker sim`` session writing drift.csv / drift.html."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qf.bars import Bars
from qf.components import SignalModel
from qf.config.schema import DriftSpec
from qf.errors import QfError
from qf.features import FeatureSource
from qf.paper.drift import (
    PSI_FLOOR,
    DriftMonitor,
    drift_events,
    ks,
    psi,
    psi_edges,
    read_rows,
    with_drift_events,
    write_drift_report,
)

# -- PSI and KS -------------------------------------------------------------------------------------------


def test_psi_hand_computed_quartiles() -> None:
    ref = np.arange(100.0)
    assert psi_edges(ref, 4).tolist() == [24.75, 49.5, 74.25]
    cur = np.r_[np.zeros(50), np.full(50, 99.0)]  # half in the first quartile bin, half in the last
    by_hand = 2 * (0.5 - 0.25) * math.log(0.5 / 0.25) + 2 * (PSI_FLOOR - 0.25) * math.log(PSI_FLOOR / 0.25)
    assert psi(ref, cur, bins=4) == pytest.approx(by_hand, abs=1e-12)
    assert psi(ref, ref, bins=4) == pytest.approx(0.0, abs=1e-15)


def test_psi_two_bins_by_hand() -> None:
    # reference median 1.5: bins (-inf, 1.5], (1.5, inf) hold 50/50; the current sample 60/40
    ref = np.array([1.0, 2.0])
    cur = np.array([0.0, 1.0, 1.0, 0.5, 1.2, 2.0, 3.0, 5.0, 9.0, 1.4])
    by_hand = (0.6 - 0.5) * math.log(0.6 / 0.5) + (0.4 - 0.5) * math.log(0.4 / 0.5)
    assert psi(ref, cur, bins=2) == pytest.approx(by_hand, abs=1e-15)


def test_psi_matches_the_analytic_value_of_two_normals() -> None:
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(size=400_000), rng.normal(0.5, 1.0, size=400_000)
    inner = stats.norm.ppf(np.arange(1, 10) / 10)  # the reference's true deciles
    p_cur = np.diff(np.r_[0.0, stats.norm.cdf(inner - 0.5), 1.0])
    analytic = float(np.sum((p_cur - 0.1) * np.log(p_cur / 0.1)))
    assert analytic == pytest.approx(0.2377, abs=1e-4)  # binned; the continuous value is mu^2 = 0.25
    assert psi(ref, cur) == pytest.approx(analytic, abs=5e-3)  # sampling noise of the tail deciles: ~4e-3
    assert psi(ref, rng.normal(size=400_000)) < 1e-3


def test_ks_matches_scipy_and_a_hand_computed_statistic() -> None:
    stat, p = ks(np.array([1.0, 2.0, 3.0]), np.array([2.5, 3.5]))
    assert stat == pytest.approx(2 / 3)  # at x=2: F_ref = 2/3, F_cur = 0
    ref_res = stats.ks_2samp([1.0, 2.0, 3.0], [2.5, 3.5])
    assert (stat, p) == (ref_res.statistic, ref_res.pvalue)
    rng = np.random.default_rng(2)
    a, b = rng.standard_t(4, size=3000), rng.normal(0.1, 1.2, size=700)
    with_nan = np.r_[a, np.nan, np.inf]
    assert ks(with_nan, b) == (stats.ks_2samp(a, b).statistic, stats.ks_2samp(a, b).pvalue)
    assert all(math.isnan(x) for x in ks(np.array([np.nan]), b))


# -- the monitor on synthetic bars -------------------------------------------------------------------------


class ZScore(SignalModel):
    """Trainable test signal: today's return over the fitted return std, clipped; also exposes the return."""

    name = "zscore_test"

    def __init__(self) -> None:
        super().__init__({})
        self.scale = 0.01
        self.fits: list[pd.DatetimeIndex] = []

    def fit(self, train_bars: Bars) -> ZScore:
        self.scale = float(np.nanstd(train_bars.close.pct_change().to_numpy()))
        self.fits.append(train_bars.index)
        return self

    def features(self, bars: Bars) -> pd.DataFrame:
        return bars.close.pct_change().stack(future_stack=True).to_frame("ret_1")

    def compute(self, bars: Bars) -> pd.DataFrame:
        return (bars.close.pct_change() / (3 * self.scale)).clip(-1, 1)

    def evaluate(self, bars: Bars, test: slice) -> dict[str, float]:
        return {}

    def save(self, directory: str | Path) -> Path:
        return Path(directory)

    @classmethod
    def summarize(cls, fitted: list, directory: str | Path) -> None:
        return None


def _bars(n: int = 300, shift: int = 200) -> Bars:
    """Three symbols whose daily volatility triples at bar ``shift``."""
    rng = np.random.default_rng(3)
    vol = np.where(np.arange(n) < shift, 0.01, 0.03)[:, None]
    rets = rng.normal(0.0, 1.0, size=(n, 3)) * vol
    idx = pd.bdate_range("2020-01-01", periods=n)
    return Bars(close=pd.DataFrame(100 * np.exp(np.cumsum(rets, axis=0)), index=idx, columns=["A", "B", "C"]),
                source="synthetic")


def _exp(signal: SignalModel, spec: DriftSpec) -> SimpleNamespace:
    return SimpleNamespace(signal=signal, name="t", spec=SimpleNamespace(paper=SimpleNamespace(drift=spec)))


def test_monitor_per_bar_values_events_and_resume(tmp_path: Path) -> None:
    bars = _bars()
    spec = DriftSpec(window=20, reference_bars=100, reference_end=bars.index[149].date(), bins=5)
    signal = ZScore()
    assert isinstance(signal, FeatureSource)
    one = DriftMonitor(_exp(signal, spec), spec, tmp_path / "a", bars.iloc(slice(0, 150)), replay=bars)
    messages = {t: one.on_bar(t) for t in bars.index[140:]}
    rows = read_rows(tmp_path / "a")
    # nothing before the reference end + window; then one row per bar and variable
    assert rows["time"].min() == bars.index[169]
    assert set(rows["variable"]) == {"signal", "ret_1"}
    assert len(rows) == 2 * (len(bars.index) - 169)
    # the row of bar 180 by hand: reference = bars 50..149, current = bars 161..180, all symbols pooled
    sig = (bars.close.pct_change() / 0.03).clip(-1, 1).to_numpy()
    ref, cur = sig[50:150].reshape(-1), sig[161:181].reshape(-1)
    row = rows[(rows["time"] == bars.index[180]) & (rows["variable"] == "signal")].iloc[0]
    assert row["psi"] == pytest.approx(psi(ref, cur, bins=5), abs=1e-12)
    assert row["ks_stat"] == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)
    assert row["ks_pvalue"] == pytest.approx(stats.ks_2samp(ref, cur).pvalue, rel=1e-9)
    assert (row["n_reference"], row["n_current"]) == (300, 60)
    # the volatility shift at bar 200 is caught: an event on the first drifting bar of each variable
    events = drift_events(tmp_path / "a")
    sig_rows = rows[rows["variable"] == "signal"].reset_index(drop=True)
    starts = sig_rows["time"][sig_rows["drift"] & ~sig_rows["drift"].shift(fill_value=False)]
    assert list(events.loc[events["symbol"] == "signal", "time"]) == list(starts)
    first = starts.iloc[0]
    assert bars.index[200] <= first <= bars.index[219]
    assert messages[first].startswith("drift:")
    assert not any(messages[t] for t in bars.index[140:200])
    # resumed half-way (a new process on the same state folder) gives the same rows and events
    two = DriftMonitor(_exp(ZScore(), spec), spec, tmp_path / "b", bars.iloc(slice(0, 150)), replay=bars)
    for t in bars.index[140:230]:
        two.on_bar(t)
    again = DriftMonitor(_exp(ZScore(), spec), spec, tmp_path / "b", bars.iloc(slice(0, 150)), replay=bars)
    for t in bars.index[200:]:  # bars already measured are skipped
        again.on_bar(t)
    pd.testing.assert_frame_equal(read_rows(tmp_path / "b"), rows)
    pd.testing.assert_frame_equal(drift_events(tmp_path / "b"), events)
    merged = with_drift_events(pd.DataFrame({"time": [bars.index[205]], "event": ["stop"], "symbol": ["A"]}),
                               tmp_path / "a")
    assert merged["time"].is_monotonic_increasing and "stop" in set(merged["event"])
    # the report: drift.csv, drift.html and a summary on the tear sheet
    report = tmp_path / "report"
    report.mkdir()
    (report / "tearsheet.html").write_text('<div class="container">\n<h1>x</h1>\n</div>\n</body>')
    assert write_drift_report(tmp_path / "a", report, bars.index[250], spec)
    pd.testing.assert_frame_equal(read_rows(report), rows[rows["time"] <= bars.index[250]].reset_index(drop=True))
    sheet = (report / "tearsheet.html").read_text()
    assert '<div id="drift"' in sheet and 'href="drift.html"' in sheet
    assert "PSI per bar" in (report / "drift.html").read_text()


def test_retrain_on_drift_refits_on_the_trailing_window_only(tmp_path: Path) -> None:
    bars = _bars()
    spec = DriftSpec(window=20, bins=5, reference_bars=100, reference_end=bars.index[149].date(), retrain_on_drift=True,
                     retrain_bars=60, retrain_cooldown=30, features=False)
    signal = ZScore()
    monitor = DriftMonitor(_exp(signal, spec), spec, tmp_path, bars.iloc(slice(0, 150)), replay=bars)
    for t in bars.index[150:]:
        monitor.on_bar(t)
    events = drift_events(tmp_path)
    refits = list(events.loc[events["event"] == "retrain", "time"])
    assert refits and len(signal.fits) == len(refits)
    for when, window in zip(refits, signal.fits, strict=True):
        assert window[-1] == when and len(window) == 60  # bars up to the drift bar, never after it
    assert all(b - a >= pd.Timedelta(days=30) for a, b in zip(refits, refits[1:], strict=False))
    # the refit learnt the window's volatility, and the reference is now the training window
    last = bars.close.loc[signal.fits[-1]]
    assert signal.scale == pytest.approx(float(np.nanstd(last.pct_change().to_numpy())), rel=1e-12)
    assert monitor.ref_end == refits[-1] and len(monitor.reference["signal"]) == 60 * 3
    # a resumed monitor redoes the last refit from its recorded window
    again_signal = ZScore()
    DriftMonitor(_exp(again_signal, spec), spec, tmp_path, bars.iloc(slice(0, 150)), replay=bars)
    assert again_signal.fits[-1].equals(signal.fits[-1]) and again_signal.scale == signal.scale


def test_monitor_refuses_what_it_cannot_measure(tmp_path: Path) -> None:
    bars = _bars()
    spec = DriftSpec(window=10)
    with pytest.raises(QfError, match="reference window .* fewer than 50"):
        DriftMonitor(_exp(ZScore(), spec), spec, tmp_path / "a", bars.iloc(slice(0, 5)), replay=bars)

    class Plain(SignalModel):
        name = "plain"

        def compute(self, bars: Bars) -> pd.DataFrame:
            return bars.close * 0.0

    retrain = DriftSpec(retrain_on_drift=True)
    with pytest.raises(QfError, match="not trainable"):
        DriftMonitor(_exp(Plain({}), retrain), retrain, tmp_path / "b", bars.iloc(slice(0, 200)), replay=bars)


# -- a replayed paper session ------------------------------------------------------------------------------


def test_paper_replay_writes_drift_and_raises_events(sample_experiment, tmp_path: Path) -> None:
    from qf.config.loader import load_experiment
    from qf.paper.session import PaperOptions, run_paper
    from qf.pipeline import compute_signal

    path = sample_experiment("drift_replay", paper={"drift": {"window": 10, "reference_bars": 100,
                                                              "reference_end": "2016-08-31", "psi_threshold": 0.05}},
                             risk=[])
    exp = load_experiment(path)
    outcome = run_paper(exp, PaperOptions(broker="sim", state_dir=tmp_path / "state"))
    assert outcome.status == "done"
    report = outcome.report_dir
    rows = read_rows(report)
    assert (report / "drift.html").is_file() and len(rows)
    assert set(rows["variable"]) == {"signal"}  # sma_cross exposes no features: its output is measured
    bars = exp.data.load()
    sig = compute_signal(exp, bars).to_numpy()
    end = int(bars.index.get_loc(pd.Timestamp("2016-08-31")))
    last = rows.iloc[-1]
    ref, cur = sig[end - 99:end + 1].reshape(-1), sig[len(sig) - 10:].reshape(-1)
    assert last["time"] == bars.index[-1]
    assert last["psi"] == pytest.approx(psi(ref, cur), abs=1e-12)
    starts = rows["time"][rows["drift"] & ~rows["drift"].shift(fill_value=False)]
    risk = pd.read_csv(report / "risk_events.csv", parse_dates=["time"])
    assert list(risk.loc[risk["event"] == "drift", "time"]) == list(starts)
    assert list(outcome.events.loc[outcome.events["event"] == "drift", "time"]) == list(starts)


def test_live_monitor_measures_the_bars_it_sees_like_a_replay(tmp_path: Path) -> None:
    """A live session has no replay: the monitor records the bars its source hands out and recomputes the
    variables on history + those bars at each bar; the rows equal the replay's."""
    from qf.paper.feed import LiveBar

    bars = _bars(260)
    spec = DriftSpec(window=20, bins=5, reference_bars=100)
    history = bars.iloc(slice(0, 150))

    class Source:
        def __init__(self) -> None:
            self.k = 150

        def poll(self, timeout: float) -> list[LiveBar] | None:
            if self.k >= len(bars.index):
                return None
            bar = LiveBar(bars.index[self.k], {"close": bars.close.iloc[self.k].to_numpy()})
            self.k += 1
            return [bar]

        def is_decision(self, *args: object) -> bool:
            return True

    live = DriftMonitor(_exp(ZScore(), spec), spec, tmp_path / "live", history)
    source = live.watch(Source())
    assert source.is_decision() is True  # everything else reaches the wrapped source
    seen = []
    update = live.wrap(lambda view: seen.append(view.message))
    while (new := source.poll(0.0)) is not None:
        for b in new:
            update(SimpleNamespace(event="bar", time=b.time, message=""))
    replay = DriftMonitor(_exp(ZScore(), spec), spec, tmp_path / "replay", history, replay=bars)
    for t in bars.index[150:]:
        replay.on_bar(t)
    assert len(seen) == 110 and any(seen)  # the view got every bar, with the drift messages
    pd.testing.assert_frame_equal(read_rows(tmp_path / "live"), read_rows(tmp_path / "replay"))
    pd.testing.assert_frame_equal(drift_events(tmp_path / "live"), drift_events(tmp_path / "replay"))


def test_xgboost_exposes_its_feature_matrix() -> None:
    from qf.paper.drift import measure_variables
    from qf.testing.contracts import sample_bars
    from qf_plugins.signals.xgb import XGBoostSignal

    bars = sample_bars(n_symbols=4, n_bars=400, seed=5)
    model = XGBoostSignal({"n_estimators": 20, "max_depth": 2, "seed": 3, "features": ["returns", "volatility"]})
    assert isinstance(model, FeatureSource)
    model.fit(bars.iloc(slice(0, 300)))
    feats = model.features(bars)
    assert list(feats.columns) == model.fitted.features and feats.index.nlevels == 2
    names = [v.name for v in measure_variables(_exp(model, DriftSpec()), bars)]
    assert names == ["signal", *model.fitted.features]
    # row t of a feature uses bars up to t only
    short = model.features(bars.iloc(slice(0, 350)))
    pd.testing.assert_frame_equal(short, feats.loc[short.index])
