"""ML features: past bars only, independent of older history, hand-checked values, warm-up rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars
from qf.testing.contracts import sample_bars
from qf_plugins.signals.ml.features import GROUPS, FeatureConfig, build_features, cross_rank, feature_names

# small windows so a short history has many feature rows
SMALL = FeatureConfig(return_horizons=(1, 3, 8), vol_windows=(3, 8), ma_windows=(4, 8), rsi_windows=(3,),
                      drawdown_window=10, volume_window=5)
BARS = sample_bars(n_symbols=6, n_bars=320, seed=11, unlisted=1)


def _assert_frames_equal(a: pd.DataFrame, b: pd.DataFrame, rtol: float = 0.0, atol: float = 0.0) -> None:
    assert a.index.equals(b.index), "different rows"
    assert list(a.columns) == list(b.columns)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("cfg", [SMALL, FeatureConfig()], ids=["small", "default"])
def test_truncating_history_never_changes_earlier_rows(cfg: FeatureConfig) -> None:
    """Features on bars up to t are exactly the full-history features up to t (row t included)."""
    full = build_features(BARS, cfg)
    dates = full.index.get_level_values(0)
    for pos in (cfg.warmup, 150, 200, 260, len(BARS.index) - 2):
        t = BARS.index[pos]
        part = build_features(BARS.truncate(t), cfg)
        assert part.index.get_level_values(0).max() == t
        _assert_frames_equal(part, full[dates <= t])


def test_a_feature_that_peeks_is_caught_by_the_truncation_check() -> None:
    """The check above can fail: a centered moving average (a classic leak) differs after truncation."""
    def leaky(bars: Bars) -> pd.DataFrame:
        return bars.close.rolling(5, center=True).mean()

    t = BARS.index[200]
    assert not np.allclose(leaky(BARS).loc[t], leaky(BARS.truncate(t)).loc[t], equal_nan=True)


def test_older_history_does_not_change_a_row_once_its_windows_are_full() -> None:
    """Fixed windows (no recursive averages): a train window and the full history agree on common rows."""
    full = build_features(BARS, SMALL)
    start = 60
    late = build_features(BARS.iloc(slice(start, None)), SMALL)
    first_full = BARS.index[start + SMALL.warmup]
    common = late[late.index.get_level_values(0) >= first_full]
    expected = full.loc[common.index]
    # rolling sums are updated incrementally, so values agree to rounding, not bit for bit
    _assert_frames_equal(common, expected, rtol=1e-9, atol=1e-12)


def test_hand_computed_values() -> None:
    idx = pd.bdate_range("2024-01-01", periods=12)
    a = [100, 101, 103, 102, 104, 107, 106, 108, 110, 109, 111, 115]
    b = [50, 50, 49, 48, 49, 47, 46, 47, 45, 44, 45, 44]
    bars = Bars(close=pd.DataFrame({"A": a, "B": b}, index=idx, dtype=float))
    cfg = FeatureConfig(groups=("returns", "rsi", "drawdown", "rank", "relative"), return_horizons=(1, 3),
                        vol_windows=(2, 3), ma_windows=(2, 3), rsi_windows=(3,), drawdown_window=4, volume_window=2)
    assert cfg.warmup == 4
    f = build_features(bars, cfg)
    # the first row is the 5th bar (4 bars of warm-up), for both symbols
    assert f.index[0] == (idx[4], "A") and f.index[1] == (idx[4], "B") and len(f) == 2 * 8
    t = idx[11]
    assert f.loc[(t, "A"), "ret_3"] == pytest.approx(np.log(115 / 110))
    assert f.loc[(t, "B"), "ret_1"] == pytest.approx(np.log(44 / 45))
    # RSI(3) of A over the last 3 moves (-1, +2, +4): gains 6, losses 1 -> (6 - 1) / 7 on the [-1, 1] scale
    assert f.loc[(t, "A"), "rsi_3"] == pytest.approx((2 + 4 - 1) / (2 + 4 + 1))
    # drawdown from the highest close of the last 4 bars (45, 44, 45, 44 for B)
    assert f.loc[(t, "B"), "dd_4"] == pytest.approx(44 / 45 - 1)
    assert f.loc[(t, "A"), "dd_4"] == 0.0
    # two symbols: the better 3-bar return ranks +1, the worse -1; relative strength is +/- half the gap
    assert (f.loc[(t, "A"), "rank_ret_3"], f.loc[(t, "B"), "rank_ret_3"]) == (1.0, -1.0)
    gap = np.log(115 / 110) - np.log(44 / 45)
    assert f.loc[(t, "A"), "rel_3"] == pytest.approx(gap / 2)
    assert f.loc[(t, "B"), "rel_3"] == pytest.approx(-gap / 2)
    # a 1-bar return is too noisy to rank: it is a feature but gets no rank
    assert "ret_1" in f.columns and "rank_ret_1" not in f.columns


def test_warm_up_and_late_listing() -> None:
    f = build_features(BARS, SMALL)
    close = BARS.close
    for sym in BARS.symbols:
        first_close = close[sym].first_valid_index()
        first_row = f.xs(sym, level="symbol").index[0]
        assert close.index.get_loc(first_row) - close.index.get_loc(first_close) == SMALL.warmup
    # a symbol in its warm-up is not part of anyone's cross-section: while S5 is not yet warm, the five
    # others rank among themselves from -1 to +1
    late = BARS.symbols[-1]
    first_late = f.xs(late, level="symbol").index[0]
    before = f[f.index.get_level_values(0) < first_late]
    assert late not in set(before.index.get_level_values(1))
    ranks = before["rank_ret_3"].groupby(level=0)
    assert (ranks.max() == 1.0).all() and (ranks.min() == -1.0).all() and (ranks.size() == 5).all()
    assert before["rel_8"].groupby(level=0).sum().abs().max() < 1e-12


def test_volume_features_only_when_the_data_has_volume() -> None:
    with_volume = build_features(BARS, SMALL)
    close_only = build_features(Bars(close=BARS.close, source="close-only"), SMALL)
    assert "volz_5" in with_volume.columns and "volz_5" not in close_only.columns
    assert list(close_only.columns) == [c for c in with_volume.columns if c != "volz_5"]
    assert feature_names(SMALL, has_volume=True) == list(with_volume.columns)
    assert feature_names(SMALL, has_volume=False) == list(close_only.columns)


def test_features_are_stationary_in_scale() -> None:
    """No price levels: the same path at 100x the price gives the same features."""
    scaled = Bars(close=BARS.close * 100.0, volume=BARS.volume, source="scaled")
    _assert_frames_equal(build_features(scaled, SMALL), build_features(BARS, SMALL), rtol=1e-9, atol=1e-12)


def test_cross_rank_scaling_and_ties() -> None:
    frame = pd.DataFrame([[1.0, 2.0, 3.0], [5.0, np.nan, 5.0], [np.nan, 7.0, np.nan], [np.nan] * 3])
    out = cross_rank(frame)
    np.testing.assert_allclose(out.to_numpy(), [[-1, 0, 1], [0, np.nan, 0], [np.nan, 0, np.nan], [np.nan] * 3])


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown feature group"):
        FeatureConfig(groups=("returns", "moon_phase"))
    with pytest.raises(ValueError, match="return_horizons"):
        FeatureConfig(return_horizons=(0, 5))
    assert FeatureConfig().warmup == 126 and set(FeatureConfig().groups) == set(GROUPS)
