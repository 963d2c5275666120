"""qf.testing.contracts: each check passes good components and catches a deliberately broken one."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from qf.bars import validate
from qf.components import RiskRule, SignalModel, Sizer
from qf.testing.contracts import (
    assert_risk_rule_idempotent,
    assert_signal_no_lookahead,
    assert_signal_valid,
    assert_sizer_no_lookahead,
    assert_sizer_warmup,
    assert_weights_valid,
    sample_bars,
)

BARS = sample_bars(n_symbols=3, n_bars=120, seed=1)


class TrailingMean(SignalModel):
    """Honest: sign of the close against its trailing 10-bar mean."""

    name = "trailing_mean"

    @property
    def warmup(self) -> int:
        return 9

    def compute(self, bars):
        mean = bars.close.rolling(10).mean()
        return np.sign(bars.close - mean).where(mean.notna())


class Tomorrow(SignalModel):
    """Peeks at the next close."""

    name = "tomorrow"

    def compute(self, bars):
        return np.sign(bars.close.shift(-1) - bars.close).fillna(0.0)


class CenteredWindow(SignalModel):
    """A centered moving average: half its window is in the future."""

    name = "centered"

    def compute(self, bars):
        mean = bars.close.rolling(11, center=True, min_periods=1).mean()
        return np.sign(bars.close - mean)


class FullSampleZ(SignalModel):
    """Normalises with the mean and std of the whole sample."""

    name = "full_sample_z"

    def compute(self, bars):
        z = (bars.close - bars.close.mean()) / bars.close.std()
        return z.clip(-1, 1)


class BackFilled(SignalModel):
    """Fills its warm-up backwards with the first real value (a future value)."""

    name = "backfilled"

    def compute(self, bars):
        return TrailingMean().compute(bars).bfill()


@pytest.mark.parametrize("model", [Tomorrow(), CenteredWindow(), FullSampleZ(), BackFilled()], ids=lambda m: m.name)
def test_signal_lookahead_is_caught(model: SignalModel) -> None:
    with pytest.raises(AssertionError, match=rf"signal '{model.name}' looks ahead: on \d{{4}}-\d\d-\d\d S\d"):
        assert_signal_no_lookahead(model, BARS)


def test_honest_signal_passes_both_signal_checks() -> None:
    assert_signal_no_lookahead(TrailingMean(), BARS)
    assert assert_signal_valid(TrailingMean(), BARS).shape == BARS.close.shape


def test_lookahead_error_names_date_and_symbol() -> None:
    with pytest.raises(AssertionError) as info:
        assert_signal_no_lookahead(Tomorrow(), BARS, points=3)
    message = str(info.value)
    date = re.search(r"on (\d{4}-\d\d-\d\d) (S\d)", message)
    assert date and "with the full history" in message
    # the named date really is one where the truncated and full rows disagree
    t = pd.Timestamp(date.group(1))
    full = Tomorrow().compute(BARS).loc[t, date.group(2)]
    part = Tomorrow().compute(BARS.truncate(t)).loc[t, date.group(2)]
    assert full != part


class ClippedTooWide(SignalModel):
    name = "too_wide"

    def compute(self, bars):
        return bars.close / bars.close.iloc[0]


class Garbage(SignalModel):
    name = "garbage"

    def compute(self, bars):
        return bars.close.notna() * 0.0 + 1.0  # 1.0 even where the close is NaN


class LateNan(TrailingMean):
    name = "late_nan"

    @property
    def warmup(self) -> int:
        return 3  # understated: the model is NaN for 9 bars


def test_signal_valid_catches_range_unlisted_garbage_and_understated_warmup() -> None:
    late = sample_bars(n_symbols=3, n_bars=120, seed=1, unlisted=1)
    with pytest.raises(AssertionError, match=r"is outside \[-1, 1\]"):
        assert_signal_valid(ClippedTooWide(), BARS)
    with pytest.raises(AssertionError, match=r"S2 has no close on .* but its signal is 1.0; it must be NaN or 0"):
        assert_signal_valid(Garbage(), late)
    with pytest.raises(AssertionError, match=r"signal is NaN on .* the model's warmup is 3"):
        assert_signal_valid(LateNan(), BARS)


class LongAll(Sizer):
    name = "long_all"

    def size(self, signal, bars, dates):
        s = (signal.reindex(dates).fillna(0) > 0).astype(float)
        return s.div(s.sum(axis=1).replace(0, 1), axis=0)


class NextSignal(Sizer):
    """Sizes on the next bar's signal."""

    name = "next_signal"

    def size(self, signal, bars, dates):
        return LongAll().size(signal.shift(-1), bars, dates)


class FullSampleVol(Sizer):
    """Inverse volatility measured over the whole sample, future included."""

    name = "full_sample_vol"

    def size(self, signal, bars, dates):
        inv = 1 / bars.close.pct_change(fill_method=None).std()
        w = pd.DataFrame([inv.to_numpy()] * len(dates), index=dates, columns=bars.close.columns)
        return w.div(w.sum(axis=1), axis=0)


SIGNAL = TrailingMean().compute(BARS)


def test_sizer_lookahead_is_caught() -> None:
    dates = BARS.index[::7]
    assert_sizer_no_lookahead(LongAll(), SIGNAL, BARS, dates)
    for sizer in (NextSignal(), FullSampleVol()):
        with pytest.raises(AssertionError, match=rf"sizer '{sizer.name}' looks ahead: on \d{{4}}"):
            assert_sizer_no_lookahead(sizer, SIGNAL, BARS, BARS.index)


def test_weights_valid() -> None:
    dates = BARS.index[::10]
    good = LongAll().size(SIGNAL, BARS, dates)
    assert_weights_valid(good, dates, BARS.symbols)
    bad = good.copy()
    bad.iloc[2, 1] = np.nan
    with pytest.raises(AssertionError, match=r"S1 on \d{4}-\d\d-\d\d is nan; every weight must be finite"):
        assert_weights_valid(bad, dates, BARS.symbols)
    with pytest.raises(AssertionError, match="index differs"):
        assert_weights_valid(good.iloc[1:], dates, BARS.symbols)
    with pytest.raises(AssertionError, match="columns"):
        assert_weights_valid(good[["S1", "S0", "S2"]], dates, BARS.symbols)


class Halve(RiskRule):
    name = "halve"

    def apply(self, weights, bars):
        return weights * 0.5


class InPlace(RiskRule):
    name = "in_place"

    def apply(self, weights, bars):
        weights[weights < 0] = 0.0
        return weights


class Clip(RiskRule):
    name = "clip"

    def apply(self, weights, bars):
        return weights.clip(-0.2, 0.2)


def test_risk_rule_idempotence_and_input_mutation_are_caught() -> None:
    w = pd.DataFrame(np.random.default_rng(0).normal(0, 0.3, (5, 3)), index=BARS.index[:5], columns=BARS.symbols)
    assert_risk_rule_idempotent(Clip(), w, BARS)
    with pytest.raises(AssertionError, match="risk 'halve' is not idempotent: on .* after one pass and .* after two"):
        assert_risk_rule_idempotent(Halve(), w, BARS)
    with pytest.raises(AssertionError, match="modified the weights passed in"):
        assert_risk_rule_idempotent(InPlace(), w, BARS)


def test_sample_bars_are_realistic_and_deterministic() -> None:
    bars = sample_bars(n_symbols=4, n_bars=300, seed=9, unlisted=1)
    assert bars.fields == ("open", "high", "low", "close", "volume")
    assert bars.close.shape == (300, 4) and bars.symbols == ["S0", "S1", "S2", "S3"]
    assert validate(bars).close.equals(bars.close)
    listed = bars.close.notna()
    assert not listed["S3"].iloc[0] and listed["S3"].iloc[-1] and listed.iloc[:, :3].all().all()
    for field in ("open", "high", "low", "volume"):
        assert (getattr(bars, field).notna() == listed).all().all()
    hi, lo = bars.high.to_numpy(), bars.low.to_numpy()
    for field in ("open", "close"):
        v = getattr(bars, field).to_numpy()
        ok = np.isnan(v) | ((lo <= v) & (v <= hi))
        assert ok.all()
    ret = bars.close.pct_change(fill_method=None)
    ann_vol = ret.std() * np.sqrt(252)
    assert ((ann_vol > 0.1) & (ann_vol < 0.6)).all()  # equity-like volatility
    assert ret.corr().to_numpy()[np.triu_indices(4, 1)].mean() > 0.1  # a common market factor
    assert sample_bars(seed=9).close.equals(sample_bars(seed=9).close)
    assert not sample_bars(seed=9).close.equals(sample_bars(seed=10).close)
    assert sample_bars(ohlc=False).fields == ("close",)
    with pytest.raises(ValueError, match="unlisted"):
        sample_bars(n_symbols=2, unlisted=2)


class OneDayPeek(TrailingMean):
    """Leaks on one date only: the row of the 60th bar takes the next close's direction."""

    name = "one_day_peek"

    def compute(self, bars):
        out = super().compute(bars)
        if len(bars.index) > 60:
            out.iloc[59] = np.sign(bars.close.iloc[60] - bars.close.iloc[59])
        return out


def test_a_leak_on_a_single_change_date_is_found() -> None:
    # five evenly spaced probes missed a leak on one date unless it happened to be one of them
    leak_changes_the_row = (OneDayPeek().compute(BARS).iloc[59] != TrailingMean().compute(BARS).iloc[59]).any()
    assert leak_changes_the_row
    with pytest.raises(AssertionError, match=rf"looks ahead: on {BARS.index[59]:%Y-%m-%d} S\d"):
        assert_signal_no_lookahead(OneDayPeek(), BARS, points=0)


def test_sizer_check_accepts_a_signal_given_on_the_rebalance_dates_only() -> None:
    dates = BARS.index[::7]
    assert_sizer_no_lookahead(LongAll(), SIGNAL.loc[dates], BARS, dates)
    assert_sizer_warmup(LongAll(), SIGNAL.loc[dates], BARS, dates)


def test_check_risk_rule_catches_a_rule_that_looks_ahead() -> None:
    from qf.testing import check_risk_rule

    class ShrinkToLastRow(RiskRule):
        name = "shrink_to_last"

        def apply(self, weights, bars):
            return weights * 0.0 + weights.iloc[-1].to_numpy()

    with pytest.raises(AssertionError, match=r"risk 'shrink_to_last' looks ahead: on \d{4}-\d\d-\d\d S\d"):
        check_risk_rule(ShrinkToLastRow(), sample_bars(n_symbols=3, n_bars=200, seed=2))
