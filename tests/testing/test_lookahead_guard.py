"""The look-ahead guard: planted leaks in a third-party signal are caught in every seeded trial, the warmup
contract catches path dependence, and `qf validate --lookahead` / `execution.check_lookahead` run the
checks on an experiment's real data with its real components.

The planted leaks are the kinds a quant writes by accident: a one-bar peek on entry days, a centred
smoothing, a full-sample normalisation. Each changes the signal on only a few dates, which is why five
evenly spaced probes (the old check) caught them in 1 to 18 of these 20 trials.
"""

from __future__ import annotations

import re
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qf.cli.main import app
from qf.components import RiskRule, SignalModel, Sizer
from qf.config.loader import load_experiment
from qf.lookahead import (
    Finding,
    LookaheadError,
    LookaheadWarning,
    change_positions,
    check_experiment,
    probe_positions,
)
from qf.testing import WarmupContractWarning, check_signal, check_sizer
from qf.testing.checks import month_ends
from qf.testing.contracts import (
    assert_risk_rule_no_lookahead,
    assert_signal_no_lookahead,
    assert_signal_warmup,
    assert_sizer_no_lookahead,
    assert_sizer_warmup,
    sample_bars,
)

ROOT = Path(__file__).resolve().parents[2]
TRIALS = range(20)
runner = CliRunner()


def trial_bars(seed: int):
    return sample_bars(n_symbols=4, n_bars=400, seed=seed)


class Pullback(SignalModel):
    """Honest: long while the close is above its 50-bar mean but below its 10-bar mean (a pullback)."""

    name = "pullback"

    @property
    def warmup(self) -> int:
        return 49

    def base(self, bars) -> pd.DataFrame:
        c = bars.close
        slow, fast = c.rolling(50).mean(), c.rolling(10).mean()
        return ((c > slow) & (c < fast)).astype(float).where(slow.notna())

    def compute(self, bars) -> pd.DataFrame:
        return self.base(bars)


class PeekOnEntry(Pullback):
    """Enters only when tomorrow's close is higher: a one-bar peek, on entry days only."""

    name = "peek_on_entry"

    def compute(self, bars) -> pd.DataFrame:
        base, c = self.base(bars), bars.close
        entry = (base == 1) & (base.shift(1) == 0)
        return base.mask(entry & ~(c.shift(-1) > c), 0.0)


class CentredSmoothing(Pullback):
    """Smooths the entries with a centred 3-bar window: one bar of the future on each side."""

    name = "centred_smoothing"

    def compute(self, bars) -> pd.DataFrame:
        base = self.base(bars)
        return (base.rolling(3, center=True, min_periods=1).mean() > 0.5).astype(float).where(base.notna())


class FullSampleZ(Pullback):
    """Trend strength z-scored with the mean and std of the whole sample."""

    name = "full_sample_z"

    def compute(self, bars) -> pd.DataFrame:
        slow = bars.close.rolling(50).mean()
        x = bars.close / slow - 1
        return ((x - x.mean()) / x.std() > 1.0).astype(float).where(slow.notna())


class FullSampleMoveFilter(Pullback):
    """Skips days with a move beyond 2 sigma, sigma measured over the whole sample."""

    name = "full_sample_move_filter"

    def compute(self, bars) -> pd.DataFrame:
        r = bars.close.pct_change(fill_method=None)
        return self.base(bars).mask(((r - r.mean()) / r.std()).abs() > 2.0, 0.0)


LEAKS = [PeekOnEntry, CentredSmoothing, FullSampleZ, FullSampleMoveFilter]


@pytest.mark.parametrize("cls", LEAKS, ids=lambda c: c.name)
def test_planted_leaks_are_caught_in_every_seeded_trial(cls: type[SignalModel]) -> None:
    caught = 0
    for seed in TRIALS:
        try:
            assert_signal_no_lookahead(cls(), trial_bars(seed))
        except AssertionError as exc:
            assert re.match(rf"signal '{cls.name}' looks ahead: on \d{{4}}-\d\d-\d\d S\d is ", str(exc))
            caught += 1
    assert caught == len(TRIALS)


def test_the_honest_signal_passes() -> None:
    for seed in (0, 10):  # no false alarm (two trials: the honest signal changes often, so a check costs more)
        assert_signal_no_lookahead(Pullback(), trial_bars(seed))
        assert_signal_warmup(Pullback(), trial_bars(seed))


def test_the_named_date_and_symbol_really_leak() -> None:
    bars = trial_bars(3)
    with pytest.raises(AssertionError) as info:
        assert_signal_no_lookahead(PeekOnEntry(), bars)
    day, sym = re.search(r"on (\S+) (S\d)", str(info.value)).groups()
    t = pd.Timestamp(day)
    assert PeekOnEntry().compute(bars).at[t, sym] != PeekOnEntry().compute(bars.truncate(t)).at[t, sym]


# --- which dates are probed ---------------------------------------------------------------------------


def test_every_change_date_is_probed_on_a_short_history() -> None:
    bars = trial_bars(0)
    signal = Pullback().compute(bars)
    changes = change_positions(signal)
    assert 0 < len(changes) < 200
    probes = probe_positions(len(bars.index), changes, always=[49, 399])
    assert set(changes) <= set(probes) and {49, 399} <= set(probes)
    assert probes == probe_positions(len(bars.index), changes, always=[49, 399])  # seeded: the same every time


def test_probes_are_bounded_on_a_long_history() -> None:
    changes = np.arange(0, 10_000, 7)  # sparse changes, far more than the budget
    probes = probe_positions(10_000, changes, points=30, max_probes=120, always=[0, 9_999])
    assert len(probes) == 120 and {0, 9_999} <= set(probes)
    assert len(set(probes) & set(changes.tolist())) >= 120 - 30 - 2
    # a continuous score changes on every row: the change rows single nothing out, the random rows are kept
    assert len(probe_positions(500, range(500), points=10, always=[499])) == 11


def test_change_positions() -> None:
    frame = pd.DataFrame({"A": [np.nan, 0.0, 0.0, 1.0, 1.0], "B": [np.nan] * 4 + [1.0]})
    assert change_positions(frame).tolist() == [1, 3, 4]


# --- the warmup contract ------------------------------------------------------------------------------


class StickyTrend(SignalModel):
    """Path dependent: long after the close crosses above its 20-bar high band, until it falls below its
    20-bar mean. Its state at t depends on where the history starts, so warmup + 1 bars are not enough."""

    name = "sticky_trend"

    @property
    def warmup(self) -> int:
        return 20

    def compute(self, bars) -> pd.DataFrame:
        c = bars.close
        band = c.rolling(20).max().shift(1)
        mean = c.rolling(20).mean()
        state = pd.DataFrame(np.nan, index=c.index, columns=c.columns)
        state[(c > band).to_numpy()] = 1.0
        state[(c < mean).to_numpy()] = 0.0
        return state.ffill().fillna(0.0).where(band.notna())


def test_a_path_dependent_signal_breaks_the_warmup_contract() -> None:
    bars = trial_bars(0)
    assert_signal_no_lookahead(StickyTrend(), bars)  # it does not look ahead ...
    with pytest.raises(AssertionError) as info:  # ... but paper trading would decide differently
        assert_signal_warmup(StickyTrend(), bars)
    message = str(info.value)
    m = re.match(r"signal 'sticky_trend' breaks its warmup contract: on (\S+) (S\d) is (\S+) computed on the last "
                 r"21 bars .* but (\S+) with the full history", message)
    assert m, message
    t, sym = pd.Timestamp(m.group(1)), m.group(2)
    pos = bars.index.get_loc(t)
    window = StickyTrend().compute(bars.iloc(slice(pos - 20, pos + 1)))
    assert window.at[t, sym] != StickyTrend().compute(bars).at[t, sym]


def test_check_signal_warns_or_raises_on_a_broken_warmup_contract() -> None:
    bars = sample_bars(n_symbols=3, n_bars=200, seed=1)
    with pytest.warns(WarmupContractWarning, match="signal 'sticky_trend' breaks its warmup contract: on "):
        check_signal(StickyTrend(), bars)
    with pytest.raises(AssertionError, match="breaks its warmup contract"):
        check_signal(StickyTrend(), bars, warmup="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_signal(StickyTrend(), bars, warmup="skip")
        check_signal(Pullback(), bars, warmup="raise")


class ExpandingVol(Sizer):
    """Inverse volatility over all the history it is given: no look-ahead, but it never forgets its start."""

    name = "expanding_vol"

    @property
    def warmup(self) -> int:
        return 20

    def size(self, signal, bars, dates):
        inv = 1 / bars.close.pct_change(fill_method=None).expanding(20).std()
        w = inv.where(signal > 0, 0.0).fillna(0.0)
        return w.div(w.sum(axis=1).where(lambda s: s > 0), axis=0).fillna(0.0).reindex(dates)


def test_a_sizer_on_an_expanding_window_breaks_the_warmup_contract() -> None:
    bars = trial_bars(2)
    signal = Pullback().compute(bars)
    dates = month_ends(bars)
    assert_sizer_no_lookahead(ExpandingVol(), signal, bars, dates)
    with pytest.raises(AssertionError, match=r"sizer 'expanding_vol' breaks its warmup contract: on \S+ S\d is "):
        assert_sizer_warmup(ExpandingVol(), signal, bars, dates)
    with pytest.warns(WarmupContractWarning, match="sizer 'expanding_vol'"):
        check_sizer(ExpandingVol(), bars, signal=signal)


class NormaliseByLastRow(RiskRule):
    """Scales every row by the gross of the last row it is given: the future, for every row but the last."""

    name = "by_last_row"

    def apply(self, weights, bars):
        gross = float(weights.abs().sum(axis=1).iloc[-1]) or 1.0
        return weights / max(gross, 1.0)


def test_a_risk_rule_that_looks_ahead_is_caught() -> None:
    bars = trial_bars(4)
    dates = month_ends(bars)
    weights = pd.DataFrame(np.linspace(0.1, 0.9, len(dates))[:, None] * np.ones((1, 4)), index=dates,
                           columns=bars.symbols)
    with pytest.raises(AssertionError, match=r"risk 'by_last_row' looks ahead: on \S+ S\d is "):
        assert_risk_rule_no_lookahead(NormaliseByLastRow(), weights, bars)


# --- the experiment: qf validate --lookahead, execution.check_lookahead ---------------------------------


def _project(tmp_path: Path, signal: str, extra: str = "") -> Path:
    """A project folder with local components and an experiment using ``strategies/guard.py:<signal>``."""
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "guard.py").write_text(textwrap.dedent('''
        import numpy as np
        import pandas as pd

        from qf.components import RiskRule, SignalModel, Sizer


        class Trend(SignalModel):
            name = "guard_trend"

            @property
            def warmup(self):
                return 19

            def base(self, bars):
                mean = bars.close.rolling(20).mean()
                return (bars.close > mean).astype(float).where(mean.notna())

            def compute(self, bars):
                return self.base(bars)


        class PeekOnEntry(Trend):
            name = "guard_peek"

            def compute(self, bars):
                base, c = self.base(bars), bars.close
                entry = (base == 1) & (base.shift(1) == 0)
                return base.mask(entry & ~(c.shift(-1) > c), 0.0)


        class Sticky(Trend):
            name = "guard_sticky"

            @property
            def warmup(self):
                return 20

            def compute(self, bars):
                c = bars.close
                band, mean = c.rolling(20).max().shift(1), c.rolling(20).mean()
                state = pd.DataFrame(np.nan, index=c.index, columns=c.columns)
                state[(c > band).to_numpy()] = 1.0
                state[(c < mean).to_numpy()] = 0.0
                return state.ffill().fillna(0.0).where(band.notna())


        class Blend(Sizer):
            """Half the previous rebalance's weights, half today's: depends on the earlier rebalance dates."""

            name = "guard_blend"

            def size(self, signal, bars, dates):
                s = (signal.reindex(dates).fillna(0.0) > 0).astype(float)
                w = s.div(s.sum(axis=1).where(lambda n: n > 0), axis=0).fillna(0.0)
                return (0.5 * w + 0.5 * w.shift(1).fillna(0.0))


        class NextBarVol(Sizer):
            """Inverse volatility that includes the next bar's return: a sizer that looks ahead."""

            name = "guard_next_vol"

            def size(self, signal, bars, dates):
                ret = bars.close.pct_change(fill_method=None).shift(-1)
                inv = 1 / ret.rolling(10, min_periods=2).std()
                w = inv.where(signal > 0, 0.0).fillna(0.0)
                return w.div(w.sum(axis=1).where(lambda n: n > 0), axis=0).fillna(0.0).reindex(dates)


        class AverageGross(RiskRule):
            """Scales every date by the average gross exposure over all the dates it is given: the future."""

            name = "guard_average_gross"

            def apply(self, weights, bars):
                return weights / max(float(weights.abs().sum(axis=1).mean()), 0.1)
    '''))
    (tmp_path / "experiments").mkdir()
    path = tmp_path / "experiments" / "guard.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: guard
        data: {{type: sample, params: {{dataset: sp500_20, symbols: [AAPL, MSFT, JPM, XOM], start: "2020-01-01",
                                        end: "2020-12-31"}}}}
        signal: {{type: "strategies/guard.py:{signal}"}}
        sizer: {{type: equal}}
        rebalance: {{freq: weekly}}
        execution: {{fill: next_close}}
        report: {{dir: {tmp_path / "reports"}, tearsheet: false}}
        """) + extra)
    return path


def test_validate_lookahead_fails_on_a_leaking_local_component(tmp_path: Path) -> None:
    path = _project(tmp_path, "PeekOnEntry")
    result = runner.invoke(app, ["validate", "--lookahead", str(path)])
    assert result.exit_code == 1, result.output
    m = re.search(r"error: signal 'guard_peek' looks ahead: on (\S+) (\w+) is 0\.0 with data up to \1 but 1\.0 with "
                  r"the full history", result.output)
    assert m, result.output
    assert "Traceback" not in result.output and "warmup contract" not in result.output
    # the named date and symbol leak in the experiment's own data
    exp = load_experiment(path)
    bars = exp.data.load()
    t = pd.Timestamp(m.group(1))
    assert exp.signal.compute(bars).at[t, m.group(2)] == 1.0
    assert exp.signal.compute(bars.truncate(t)).at[t, m.group(2)] == 0.0


def test_validate_lookahead_passes_an_honest_local_component(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "--lookahead", str(_project(tmp_path, "Trend"))])
    assert result.exit_code == 0, result.output
    assert re.search(r"ok: no look-ahead and the warmup contract holds for signal 'guard_trend', sizer 'equal' "
                     r"\(\d+ probes on \d+ bars x 4 symbols\)", result.output)


def test_validate_lookahead_names_a_broken_warmup_contract(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "--lookahead", str(_project(tmp_path, "Sticky"))])
    assert result.exit_code == 1, result.output
    assert re.search(r"error: signal 'guard_sticky' breaks its warmup contract: on \S+ \w+ is \S+ computed on the "
                     r"last 21 bars", result.output), result.output


def test_validate_lookahead_on_the_shipped_sma_cross() -> None:
    short = ["--set", "data.params.start=2012-01-01", "--set", "data.params.end=2016-12-31"]
    result = runner.invoke(app, ["validate", "--lookahead", str(ROOT / "experiments" / "sma_cross.yaml"), *short])
    assert result.exit_code == 0, result.output
    assert "ok: no look-ahead and the warmup contract holds for signal 'sma_cross', sizer 'equal'" in result.output


def test_a_sizer_depending_on_earlier_rebalance_dates_is_named(tmp_path: Path) -> None:
    exp = load_experiment(_project(tmp_path, "Trend"), ["sizer.type=strategies/guard.py:Blend"])
    report = check_experiment(exp)
    assert [f.kind for f in report.findings] == ["path"]
    assert report.findings[0].message().startswith("sizer 'guard_blend' depends on earlier rebalance dates: on ")


def test_the_experiment_check_names_a_leaking_sizer_and_risk_rule(tmp_path: Path) -> None:
    path = _project(tmp_path, "Trend", "risk: [{type: \"strategies/guard.py:AverageGross\"}]\n")
    exp = load_experiment(path, ["sizer.type=strategies/guard.py:NextBarVol"])
    messages = sorted(f.message() for f in check_experiment(exp).findings)
    assert len(messages) == 2, messages
    assert re.match(r"risk 'guard_average_gross' looks ahead: on \S+ \w+ is ", messages[0])
    assert re.match(r"sizer 'guard_next_vol' looks ahead: on \S+ \w+ is ", messages[1])


def test_run_with_check_lookahead_refuses_a_leaking_signal(tmp_path: Path) -> None:
    path = _project(tmp_path, "PeekOnEntry", "")
    result = runner.invoke(app, ["run", str(path), "--set", "execution.check_lookahead=true"])
    assert result.exit_code == 1, result.output
    assert "error: signal 'guard_peek' looks ahead: on " in result.output
    assert not (tmp_path / "reports").exists()  # nothing was simulated or written
    assert load_experiment(path).spec.execution.check_lookahead is False  # the check is opt-in


def test_a_sweep_with_check_lookahead_refuses_a_leaking_signal_before_sweeping(tmp_path: Path) -> None:
    sweep = "sweep: {params: {rebalance.every: [5, 10]}}\n"
    path = _project(tmp_path, "PeekOnEntry", sweep.replace("rebalance.every", "execution.min_order_value"))
    result = runner.invoke(app, ["run", str(path), "--set", "execution.check_lookahead=true"])
    assert result.exit_code == 1, result.output
    assert "error: signal 'guard_peek' looks ahead: on " in result.output
    assert not (tmp_path / "reports").exists()


def test_run_with_check_lookahead_warns_on_a_broken_warmup_contract(tmp_path: Path) -> None:
    from qf.runner import run_experiment

    exp = load_experiment(_project(tmp_path, "Sticky"), ["execution.check_lookahead=true"])
    with pytest.warns(LookaheadWarning, match="signal 'guard_sticky' breaks its warmup contract"):
        outcome = run_experiment(exp, write=False)
    assert outcome.metrics["final_equity"] > 0


def test_a_component_that_crashes_on_a_short_history_is_named(tmp_path: Path) -> None:
    class Fragile(SignalModel):
        name = "fragile"

        def compute(self, bars):
            if len(bars.index) < 150:
                raise ValueError("needs 150 bars")
            return bars.close * 0.0

    exp = load_experiment(_project(tmp_path, "Trend"))
    exp.signal = Fragile()
    with pytest.raises(LookaheadError, match=r"look-ahead: signal 'fragile': the probe on \S+ failed: ValueError: "
                                             "needs 150 bars"):
        check_experiment(exp)


def test_finding_messages() -> None:
    f = Finding("signal 'x'", "lookahead", pd.Timestamp("2020-03-02"), "AAPL", 0.0, 1.0, 2)
    assert f.message() == ("signal 'x' looks ahead: on 2020-03-02 AAPL is 0.0 with data up to 2020-03-02 but 1.0 "
                           "with the full history (2 symbol(s) differ)")
