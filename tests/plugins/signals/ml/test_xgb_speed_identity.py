"""The fast walk-forward path of the xgboost model gives the same models and numbers as the plain one.

The fast path (issue 13, goal 6) builds the full history's features once and slices every fold's
history from it, and fits the folds' models on a thread pool. The plain path (``workers=1``, no shared
features) is the reference: fitted boosters, out-of-sample predictions, folds.csv, orders and equity
must be bit for bit the same.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from qf.bars import Bars
from qf.config.loader import load_experiment
from qf.research.folds import walk_forward_splits
from qf.research.walk_forward import run_walk_forward
from qf.testing.contracts import sample_bars
from qf_plugins.signals import xgb as xgb_module
from qf_plugins.signals.ml import features as features_module
from qf_plugins.signals.ml.features import FeatureConfig, HistoryFeatures, build_features
from qf_plugins.signals.xgb import XGBoostSignal

YAML = """
name: xgb_speed_test
data: {type: csv, params: {path: prices.csv}}
signal:
  type: xgboost
  params: {n_estimators: 15, max_depth: 2, learning_rate: 0.2, top_n: 2, seed: 3, min_confidence: 0.02}
sizer: {type: equal}
risk: [{type: max_weight, params: {limit: 0.5}}]
rebalance: {freq: weekly}
execution: {fill: next_close, fees: 0.0005, slippage: 0.0005}
walk_forward: {train: 300, test: 80, purge: 5, embargo: 5}
report: {tearsheet: false}
"""
BARS = sample_bars(n_symbols=5, n_bars=620, seed=11)
FOLDS = walk_forward_splits(len(BARS.index), 300, 80, purge=5, embargo=5, allow_partial=True)
N_FOLDS = len(FOLDS)


def _late_listing(bars: Bars) -> Bars:
    """The same bars with one symbol listed 200 bars late (NaN before): warm-up masks differ by symbol."""
    close, volume = bars.close.copy(), bars.volume.copy()
    close.iloc[:200, 1] = np.nan
    volume.iloc[:200, 1] = np.nan
    return Bars(close=close, volume=volume, source="late")


def _write(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    long = pd.concat({f: getattr(BARS, f).stack() for f in ("close", "volume")}, axis=1)
    long.index.names = ["date", "symbol"]
    long.reset_index().to_csv(folder / "prices.csv", index=False)
    (folder / "xgb_speed_test.yaml").write_text(YAML)
    return folder / "xgb_speed_test.yaml"


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(plain, fast) report folders of the same experiment."""
    root = tmp_path_factory.mktemp("speed")
    path = _write(root)
    mp = pytest.MonkeyPatch()
    try:
        # the plain path: every fold after the other, every fold building its own history's features
        # (a no-op share_history: the model stays a HistorySharing, but keeps nothing and is told nothing)
        mp.setattr(XGBoostSignal, "share_history", lambda self, bars, shared: self)
        plain = run_walk_forward(load_experiment(path), root / "plain", Console(file=io.StringIO()), workers=1)
    finally:
        mp.undo()
    fast = run_walk_forward(load_experiment(path), root / "fast", Console(file=io.StringIO()), workers=2)
    return plain, fast


@pytest.mark.parametrize("bars", [BARS, _late_listing(BARS)], ids=["listed", "late_listing"])
def test_prefix_features_are_the_full_build_sliced_bit_for_bit(bars: Bars) -> None:
    cfg = FeatureConfig()
    shared = HistoryFeatures(bars, cfg)
    for stop in (0, 1, cfg.warmup, cfg.warmup + 1, 300, 455, len(bars.index) - 1, len(bars.index)):
        prefix = bars.iloc(slice(0, stop))
        got = shared.for_prefix(prefix)
        assert got is not None
        pd.testing.assert_frame_equal(got, build_features(prefix, cfg), check_exact=True)


def test_only_true_prefixes_are_served() -> None:
    shared = HistoryFeatures(BARS, FeatureConfig())
    # a train window that starts later is no prefix: rolling sums carry rounding from where they start,
    # so its features are built on the window itself (that is what the fold's model was trained on)
    assert shared.for_prefix(BARS.iloc(slice(5, 400))) is None
    changed = BARS.close.copy()
    changed.iloc[100, 2] *= 1.01
    assert shared.for_prefix(Bars(close=changed.iloc[:300], volume=BARS.volume.iloc[:300], source="x")) is None
    assert shared.for_prefix(Bars(close=BARS.close.iloc[:300], volume=None, source="x")) is None
    assert shared.for_prefix(BARS.select(BARS.symbols[:3]).iloc(slice(0, 300))) is None
    assert shared.for_prefix(BARS.iloc(slice(0, 300))) is not None


def test_fold_histories_build_their_features_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lengths: list[tuple[int, pd.Timestamp]] = []
    real = features_module.build_features

    def counting(bars: Bars, cfg: FeatureConfig | None = None) -> pd.DataFrame:
        lengths.append((len(bars.index), bars.index[0]))
        return real(bars, cfg)

    monkeypatch.setattr(features_module, "build_features", counting)
    monkeypatch.setattr(xgb_module, "build_features", counting)
    run_walk_forward(load_experiment(_write(tmp_path)), tmp_path / "r", Console(file=io.StringIO()), workers=1)
    # fold 0's train window also starts on the first bar
    from_start = [n for n, first in lengths if first == BARS.index[0] and n != FOLDS[0].n_train]
    assert from_start == [len(BARS.index)]  # one full-history build, no history rebuilt per fold
    assert len(lengths) == N_FOLDS + 1 + 1  # each fold's train window, the final model's, the full history


def test_fast_path_fits_the_same_boosters(reports: tuple[Path, Path]) -> None:
    plain, fast = reports
    names = sorted(p.name for p in (plain / "models").iterdir())
    assert names == sorted(p.name for p in (fast / "models").iterdir()) == \
        sorted(["final", *(f"fold_{k}" for k in range(N_FOLDS))])
    for name in names:
        assert (plain / "models" / name / "model.json").read_bytes() == \
            (fast / "models" / name / "model.json").read_bytes(), name
        assert (plain / "models" / name / "meta.json").read_text() == (fast / "models" / name / "meta.json").read_text()


def test_fast_path_predictions_and_folds_are_identical(reports: tuple[Path, Path]) -> None:
    plain, fast = reports
    pd.testing.assert_frame_equal(pd.read_parquet(plain / "oos_predictions.parquet"),
                                  pd.read_parquet(fast / "oos_predictions.parquet"), check_exact=True)
    a, b = pd.read_csv(plain / "folds.csv"), pd.read_csv(fast / "folds.csv")
    assert len(a) == N_FOLDS >= 3
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for f in ("importances.csv", "calibration.csv", "orders.csv", "metrics.json"):
        assert (plain / f).read_text() == (fast / f).read_text(), f


def test_fast_path_trades_the_same_equity(reports: tuple[Path, Path]) -> None:
    plain, fast = reports
    for f in ("equity.parquet", "weights.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(plain / f), pd.read_parquet(fast / f), check_exact=True)


@pytest.mark.parametrize(("cores", "n_jobs", "expected"), [(2, 1, 2), (2, 2, 1), (8, 2, 4), (8, 3, 2), (1, 4, 1)])
def test_fold_threads_times_fit_threads_stay_within_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              cores: int, n_jobs: int, expected: int) -> None:
    from qf.research import walk_forward as wf_module

    exp = load_experiment(_write(tmp_path), overrides=[f"signal.params.n_jobs={n_jobs}"])
    monkeypatch.setattr(wf_module.os, "cpu_count", lambda: cores)
    assert wf_module._fold_workers(exp, None, N_FOLDS, None) == min(expected, N_FOLDS)
    assert wf_module._fold_workers(exp, None, N_FOLDS, 3) == 3  # an explicit count is taken as given


def _cross_rank_pandas(frame: pd.DataFrame) -> pd.DataFrame:
    # the frame-at-a-time pandas formula the batched numpy version replaced
    count = frame.notna().sum(axis=1)
    rank = frame.rank(axis=1, method="average")
    scaled = (rank - 1.0).div((count - 1).where(count > 1), axis=0) * 2.0 - 1.0
    return scaled.mask(frame.notna() & (count == 1).to_numpy()[:, None], 0.0)


def _rsi_pandas(close: pd.DataFrame, window: int) -> pd.DataFrame:
    delta = close.diff()
    gain = delta.clip(lower=0).rolling(window, min_periods=window).sum()
    loss = (-delta).clip(lower=0).rolling(window, min_periods=window).sum()
    total = gain + loss
    flat = total <= 1e-12 * close.abs()
    return ((gain - loss) / total.mask(flat)).mask(flat & total.notna(), 0.0).clip(-1.0, 1.0)


def test_batched_ranks_and_rsi_are_the_pandas_formulas_bit_for_bit() -> None:
    rng = np.random.default_rng(4)
    values = np.round(rng.normal(size=(300, 6)), 1)  # rounded: ties
    values[rng.random(values.shape) < 0.3] = np.nan  # rows with 0, 1 or several values
    values[:5, 1:] = np.nan
    frame = pd.DataFrame(values, columns=list("ABCDEF"))
    assert features_module.cross_rank(frame).to_numpy().tobytes() == _cross_rank_pandas(frame).to_numpy().tobytes()
    close = _late_listing(BARS).close.copy()
    close.iloc[300:320, 2] = close.iloc[299, 2]  # a flat stretch: RSI 0
    for w in (3, 14):
        assert features_module._rolling_rsi(close, w).to_numpy().tobytes() == \
            _rsi_pandas(close, w).to_numpy().tobytes()
    feats = build_features(_late_listing(BARS), FeatureConfig())
    warm = features_module.warm_mask(_late_listing(BARS).close, FeatureConfig().warmup)
    ret = np.log(_late_listing(BARS).close).diff(21)
    expected = _cross_rank_pandas(ret.where(warm)).stack()
    np.testing.assert_array_equal(feats["rank_ret_21"].to_numpy(), expected.loc[feats.index].to_numpy())
