"""Every built-in signal and sizer declares truthfully how much history its live row needs.

``history`` (see :func:`qf.components.history_of`) is what a paper session loads: row t computed on the
trailing ``history`` bars must equal the full-history row t, and ``None`` says "the whole history" (a
path-dependent state). These tests hold the declarations to the contract checker both ways: the
declared window passes, and for the components that declare more than ``warmup + 1`` the default
window really is too short (so the declaration is needed, not decorative).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from qf.components import SignalModel, UsesForecastBands, history_of
from qf.registry import get_registry
from qf.testing.contracts import assert_signal_warmup, assert_sizer_warmup, sample_bars
from qf_plugins.signals._indicators import rsi, rsi_history
from qf_plugins.signals.breakout import Breakout
from qf_plugins.signals.mean_reversion import MeanReversion
from qf_plugins.signals.swing import Swing

REGISTRY = get_registry()
BARS = sample_bars(n_symbols=4, n_bars=700, seed=11, unlisted=1)
# xgboost and meta_label need a fit first (meta_label declares history None: a trade's decision is taken at its
# entry bar; its walk-forward leakage test covers it); regime_switch needs its per-regime signals configured
# (its own tests cover it)
NOT_HERE = {"xgboost", "meta_label", "regime_switch"}
# every built-in signal with its defaults, plus the modes whose history differs
SIGNALS = {name: REGISTRY.get("signal", name).cls({}) for name in REGISTRY.names("signal") if name not in NOT_HERE}
SIGNALS |= {
    "mean_reversion rsi": MeanReversion({"mode": "rsi", "window": 14, "entry": 35}),
    "mean_reversion rsi exit": MeanReversion({"mode": "rsi", "window": 14, "entry": 35, "exit": 55}),
    "mean_reversion zscore exit": MeanReversion({"mode": "zscore", "window": 20, "entry": -1.5, "exit": 0.0}),
    "swing short": Swing({"trend": 50, "lookback": 20, "rsi_window": 3, "max_hold": 5}),
    "breakout 10": Breakout({"window": 10, "exit_window": 5}),
}
# what each component must declare: None = the whole history, "warmup" = warmup + 1, an int = that many bars
EXPECTED: dict[str, int | str | None] = {
    "swing": None, "swing short": None, "breakout": None, "breakout 10": None,
    "mean_reversion": "warmup", "mean_reversion rsi": rsi_history(14),
    "mean_reversion rsi exit": None, "mean_reversion zscore exit": None, "regime": None,
}


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_declared_history_passes_the_warmup_contract(name: str) -> None:
    model = SIGNALS[name]
    h = history_of(model)
    want = EXPECTED.get(name, "warmup")
    assert h == (model.warmup + 1 if want == "warmup" else want), name
    if h is not None and h >= len(BARS.index) - 50:
        pytest.fail(f"{name}: a history of {h} bars leaves too few probes on {len(BARS.index)} bars")
    assert_signal_warmup(model, BARS, points=12)  # the declared window (nothing to check for None)


@pytest.mark.parametrize("name", [n for n, h in EXPECTED.items() if h != "warmup"])
def test_warmup_plus_one_is_really_too_short_for_them(name: str) -> None:
    model = SIGNALS[name]
    with pytest.raises(AssertionError, match="breaks its warmup contract"):
        assert_signal_warmup(model, BARS, points=40, warmup=int(model.warmup))


class _TrailingBands:
    warmup = 5

    def forecast_bands(self, bars):
        r = bars.close.pct_change(5, fill_method=None)
        return {0.25: r - 0.02, 0.5: r, 0.75: r + 0.02}


@pytest.mark.parametrize("name", REGISTRY.names("sizer"))
def test_builtin_sizers_keep_the_default_history(name: str) -> None:
    sizer = REGISTRY.get("sizer", name).cls({})
    if isinstance(sizer, UsesForecastBands):  # quantile_kelly: bands of the last 5 bars' return +- 2 %
        sizer.use_forecast_bands(_TrailingBands())
    signal = REGISTRY.get("signal", "sma_cross").cls({"fast": 10, "slow": 30}).compute(BARS)
    assert history_of(sizer) == int(sizer.warmup) + 1
    assert_sizer_warmup(sizer, signal, BARS, BARS.index[::42], points=3)


def test_rsi_history_bounds_the_start_below_1e_12() -> None:
    for window in (2, 3, 14, 50):
        h = rsi_history(window)
        assert (1 - 1 / window) ** (h - 2) < 1e-12 <= (1 - 1 / window) ** (h - 3)
    close = BARS.close.iloc[:, :3]
    full = rsi(close, 14)
    h = rsi_history(14)
    for t in (h + 10, 500, len(close) - 1):
        part = rsi(close.iloc[t - h + 1:t + 1], 14)
        assert np.nanmax(np.abs(part.iloc[-1] - full.iloc[t])) < 1e-9
    # half that window is visibly different: the recursion has not forgotten its start
    part = rsi(close.iloc[500 - h // 8:501], 14)
    assert np.nanmax(np.abs(part.iloc[-1] - full.iloc[500])) > 1e-6


def test_history_of_reads_any_component_and_refuses_nonsense() -> None:
    class Plain:  # a third-party component that does not subclass SignalModel
        warmup = 9

    class Declared(SignalModel):
        name = "declared"
        history = 40

    assert history_of(Plain()) == 10 and history_of(Declared()) == 40 and history_of(object()) == 1
    for bad in (0, 2.5, True, "10"):
        obj = Plain()
        obj.history = bad  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="history must be a whole number of bars >= 1 or None"):
            history_of(obj)
    assert math.isfinite(rsi_history(14))


@pytest.mark.parametrize(("signal", "note"), [
    ({"type": "mean_reversion", "params": {"mode": "rsi", "window": 14, "entry": 40}}, False),
    ({"type": "swing", "params": {"trend": 50, "lookback": 20}}, True),
])
def test_validate_lookahead_checks_the_declared_window(signal, note):
    from qf.config.loader import Source, build
    from qf.lookahead import check_experiment

    exp = build({
        "name": "history_check", "signal": signal, "sizer": {"type": "equal"}, "rebalance": {"every": 5},
        "data": {"type": "sample", "params": {"dataset": "sp500_20", "symbols": ["AAPL", "JPM", "XOM"],
                                              "start": "2013-01-01", "end": "2016-12-31"}},
    }, Source("test.yaml"), None)
    report = check_experiment(exp, points=10, max_probes=40)
    assert report.ok, [f.message() for f in report.findings]
    assert any("declares history None (path-dependent)" in n for n in report.notes) == note
    if not note:  # the same experiment checked on warmup + 1 bars, as before the declaration, breaks
        class Undeclared(MeanReversion):
            @property
            def history(self) -> int:
                return self.warmup + 1

        import dataclasses

        plain = dataclasses.replace(exp, signal=Undeclared(signal["params"]))
        broken = check_experiment(plain, points=10, max_probes=40)
        assert [f.kind for f in broken.findings] == ["warmup"], [f.message() for f in broken.findings]
