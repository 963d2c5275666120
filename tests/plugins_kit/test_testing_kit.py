"""qf.testing for plugin authors: the fixtures, the one-line contract checks and the fake broker.

Each check is shown to pass on a correct component and to fail, with a message naming the component and
what broke, on a component that breaks exactly one rule.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import qf.testing
from qf import hookimpl
from qf.bars import Bars
from qf.components import Broker, DataSource, RiskRule, SignalModel, Sizer, StatefulRiskRule
from qf.config.schema import ExecutionSpec
from qf.registry import BUILTIN_MODULES, loaded
from qf.testing import (
    FakeBroker,
    check_broker,
    check_data_source,
    check_risk_rule,
    check_signal,
    check_sizer,
    month_ends,
    probe_weights,
    sample_bars,
)

BARS = sample_bars(n_symbols=4, n_bars=300, seed=5, unlisted=1)

# --- fixtures -----------------------------------------------------------------------------------------


def test_fixture_bars_and_dates(qf_bars, qf_rebalance_dates):
    assert qf_bars.close.shape == (600, 5) and qf_bars.fields == ("open", "high", "low", "close", "volume")
    assert qf_bars.close["S4"].isna().iloc[0] and qf_bars.close["S4"].notna().iloc[-1]  # lists late
    assert qf_rebalance_dates.equals(month_ends(qf_bars)) and len(qf_rebalance_dates) == 28
    assert (qf_rebalance_dates.to_period("M").value_counts() == 1).all()


def test_fixture_real_bars(qf_real_bars):
    assert "AAPL" in qf_real_bars.symbols and qf_real_bars.index[0] >= pd.Timestamp("2015-01-01")
    assert qf_real_bars.index[-1].year == 2022


def test_fixture_plugin_manager_has_builtins_but_no_entry_points(qf_plugin_manager):
    assert list(loaded(qf_plugin_manager)) == [f"qf_{m.split('.')[-1]}" for m in BUILTIN_MODULES]
    assert {qf_plugin_manager.get_name(p) for p in qf_plugin_manager.get_plugins()} == set(loaded(qf_plugin_manager))


class _Extra(SignalModel):
    name = "kit_extra"

    def compute(self, bars: Bars) -> pd.DataFrame:
        return bars.close * 0.0


class _ExtraPlugin:
    @hookimpl
    def qf_signal_models(self):
        return [_Extra]


_EXTRA = _ExtraPlugin()


def test_fixture_register_adds_plugins_for_one_test(qf_register, qf_plugin_manager):
    reg = qf_register(_EXTRA)
    assert reg.get("signal", "kit_extra").cls is _Extra and "sma_cross" in reg.names("signal")
    assert qf_register(_EXTRA).names("signal") == reg.names("signal")  # registering again is harmless
    assert qf_plugin_manager.is_registered(_EXTRA)


def test_fixture_register_leaves_nothing_behind(qf_register, qf_plugin_manager):
    assert not qf_plugin_manager.is_registered(_EXTRA)
    assert "kit_extra" not in qf_register().names("signal")


def test_fixture_installed_registry_sees_the_entry_points(qf_installed_registry):
    assert qf_installed_registry.get("signal", "sma_cross").provider == "qf_signals"


def test_fixture_installed_registry_honours_the_blocklist(monkeypatch, request):
    from qf.registry import get_registry

    cached = get_registry()
    monkeypatch.setenv("QF_PLUGINS_BLOCK", "qf_signals")
    reg = request.getfixturevalue("qf_installed_registry")  # built now, with the blocklist set
    assert reg.names("signal") == [] and "equal" in reg.names("sizer")
    assert get_registry() is cached  # the process-wide registry is left alone


def test_fixture_fake_broker_is_fresh(qf_fake_broker):
    assert (qf_fake_broker.cash, qf_fake_broker.positions, qf_fake_broker.orders) == (100_000.0, {}, [])
    assert qf_fake_broker.buy("S0", 1).reason == "no price for S0"


def test_everything_is_exported_from_qf_testing():
    assert set(qf.testing.__all__) == set(qf.testing._EXPORTS)
    for name in qf.testing.__all__:
        assert getattr(qf.testing, name) is not None


def test_loading_the_pytest_plugin_stays_cheap():
    # pytest loads qf.testing.fixtures in every session of an environment with qf installed
    code = ("import sys, qf.testing.fixtures; leaked = sorted({'pandas', 'pydantic', 'numpy'} & set(sys.modules)); "
            "sys.exit(f'imported {leaked}' if leaked else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


# --- check_signal -------------------------------------------------------------------------------------


class Trend(SignalModel):
    name = "kit_trend"

    @property
    def warmup(self) -> int:
        return 19

    def compute(self, bars: Bars) -> pd.DataFrame:
        mean = bars.close.rolling(20, min_periods=20).mean()
        return np.sign(bars.close - mean)


class PeekingTrend(Trend):
    name = "kit_peek"

    def compute(self, bars: Bars) -> pd.DataFrame:
        mean = bars.close.rolling(20, min_periods=1, center=True).mean()
        return np.sign(bars.close - mean)


class Loud(Trend):
    name = "kit_loud"

    def compute(self, bars: Bars) -> pd.DataFrame:
        return super().compute(bars).abs() * 2.0


class SlowStart(Trend):
    name = "kit_slow"

    @property
    def warmup(self) -> int:
        return 5  # but the first 19 rows are NaN


class ReadsHighSecretly(Trend):
    name = "kit_high"  # fields stays ("close",)

    def compute(self, bars: Bars) -> pd.DataFrame:
        return np.sign(bars.close - bars.high.rolling(20, min_periods=20).mean())


def test_check_signal_passes_a_correct_model():
    signal = check_signal(Trend(), BARS)
    assert signal.shape == BARS.close.shape


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (PeekingTrend(), "signal 'kit_peek' looks ahead: on "),
        (Loud(), "signal 'kit_loud': signal 2.0 on "),
        (SlowStart(), "signal 'kit_slow': signal is NaN on "),
        (ReadsHighSecretly(), "signal 'kit_high' fails on bars holding only its declared fields ('close',)"),
    ],
    ids=["look-ahead", "out-of-range", "late-nan", "undeclared-field"],
)
def test_check_signal_catches(model: SignalModel, message: str):
    with pytest.raises(AssertionError, match=re.escape(message)):
        check_signal(model, BARS)


def test_check_signal_refuses_a_model_whose_fields_the_bars_lack():
    class NeedsVolume(Trend):
        name = "kit_volume"
        fields = ("close", "volume")

    from qf.errors import DataError

    close_only = sample_bars(n_bars=100, ohlc=False)
    with pytest.raises(DataError, match="needs volume"):
        check_signal(NeedsVolume(), close_only)


# --- check_sizer --------------------------------------------------------------------------------------


class Even(Sizer):
    name = "kit_even"

    def size(self, signal, bars, dates):
        s = (signal.reindex(dates).fillna(0.0) > 0) & bars.close.reindex(dates).notna()
        return s.astype(float).div(s.sum(axis=1).where(lambda n: n > 0), axis=0).fillna(0.0)


class EveryDay(Even):
    name = "kit_every_day"

    def size(self, signal, bars, dates):
        return super().size(signal, bars, bars.index)  # ignores the rebalance dates


class PeekingSizer(Even):
    name = "kit_peeking_sizer"

    def size(self, signal, bars, dates):
        w = super().size(signal, bars, dates)
        return w * float(bars.close.iloc[-1].mean() > 0) * len(bars.index) / 300


class BuysTheUnlisted(Even):
    name = "kit_unlisted"

    def size(self, signal, bars, dates):
        return super().size(signal, bars, dates) * 0.0 + 0.25


def test_check_sizer_passes_a_correct_sizer():
    weights = check_sizer(Even(), BARS)
    assert weights.index.equals(month_ends(BARS))


@pytest.mark.parametrize(
    ("sizer", "message"),
    [
        (EveryDay(), "weights index differs from the expected dates"),
        (PeekingSizer(), "sizer 'kit_peeking_sizer' looks ahead"),
        (BuysTheUnlisted(), "sizer 'kit_unlisted': S3 is not listed yet on "),
    ],
    ids=["wrong-dates", "look-ahead", "unlisted"],
)
def test_check_sizer_catches(sizer: Sizer, message: str):
    with pytest.raises(AssertionError, match=message):
        check_sizer(sizer, BARS)


# --- check_risk_rule ----------------------------------------------------------------------------------


class Cap(RiskRule):
    name = "kit_cap"

    def apply(self, weights, bars):
        return weights.clip(-0.3, 0.3)


class Halves(RiskRule):
    name = "kit_halves"

    def apply(self, weights, bars):
        return weights * 0.5


class InPlace(RiskRule):
    name = "kit_in_place"

    def apply(self, weights, bars):
        weights[weights > 0.3] = 0.3
        return weights


class FillsHolds(RiskRule):
    name = "kit_fills_holds"

    def apply(self, weights, bars):
        return weights.fillna(0.0)


class Lazy(StatefulRiskRule):
    name = "kit_lazy"


class Halt(StatefulRiskRule):
    name = "kit_halt"
    state_size = 1  # [the previous bar's equity]

    @staticmethod
    def step(equity, close, position, avg_price, inputs, params, state, symbol_state, exits):  # pragma: no cover
        prev = state[0]
        state[0] = equity
        return 1 if prev > 0 and equity / prev - 1.0 <= -0.03 else 0


def test_check_risk_rule_passes_correct_rules():
    out = check_risk_rule(Cap(), BARS)
    weights = probe_weights(BARS)
    assert out.isna().equals(weights.isna()) and weights.abs().max().max() > 0.3 >= out.abs().max().max()
    assert check_risk_rule(Halt(), BARS).equals(weights)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (Halves(), "risk 'kit_halves' is not idempotent"),
        (InPlace(), "risk 'kit_in_place': apply\\(\\) modified the weights passed in"),
        (FillsHolds(), "a hold \\(NaN\\) must stay a hold"),
        (Lazy(), "risk 'kit_lazy': defines no step\\(\\), so the rule would never act"),
    ],
    ids=["not-idempotent", "modifies-input", "fills-holds", "stateful-does-nothing"],
)
def test_check_risk_rule_catches(rule: RiskRule, message: str):
    with pytest.raises(AssertionError, match=message):
        check_risk_rule(rule, BARS)


# --- check_data_source and check_broker ---------------------------------------------------------------


class Frames(DataSource):
    name = "kit_frames"
    validated = True

    def load(self) -> Bars:
        close = BARS.close.iloc[::-1] if not self.validated else BARS.close
        bars = Bars(close=close, source="kit")
        if self.validated:
            from qf.bars import validate

            return validate(bars)
        return bars


class Unvalidated(Frames):
    name = "kit_unvalidated"
    validated = False


class Sim(Broker):
    name = "kit_sim"
    cash_offset = 0.0

    def create(self, execution):
        import backtrader as bt

        broker = bt.brokers.BackBroker()
        broker.setcash(execution.initial_cash + self.cash_offset)
        return broker


class Rich(Sim):
    name = "kit_rich"
    cash_offset = 1.0


class NotBacktrader(Broker):
    name = "kit_not_bt"

    def create(self, execution):
        return FakeBroker(cash=execution.initial_cash)


def test_check_data_source():
    assert check_data_source(Frames()).symbols == BARS.symbols
    with pytest.raises(AssertionError, match="returned bars that fail qf.bars.validate .kit: dates are not sorted"):
        check_data_source(Unvalidated())


def test_check_broker():
    assert check_broker(Sim(), ExecutionSpec(initial_cash=1234.5)).getcash() == 1234.5
    with pytest.raises(AssertionError, match="starts with 100,001.00 in cash, not execution.initial_cash 100,000.00"):
        check_broker(Rich())
    with pytest.raises(AssertionError, match="must return a backtrader BackBroker for backtests, got FakeBroker"):
        check_broker(NotBacktrader())


def test_checks_refuse_the_wrong_kind_of_component():
    with pytest.raises(AssertionError, match="expected an instance of qf.components.Sizer"):
        check_sizer(Trend(), BARS)


# --- FakeBroker ---------------------------------------------------------------------------------------


def test_fake_broker_fills_at_the_price_with_fees_and_keeps_the_books():
    broker = FakeBroker(cash=10_000, fee_rate=0.001, fixed_fee=1.0, prices={"A": 100.0, "B": 20.0})
    first = broker.buy("A", 10)
    assert (first.status, first.price, first.fee, first.value) == ("filled", 100.0, 2.0, 1000.0)
    broker.buy("A", 10, price=110.0)  # an explicit price overrides the current one
    assert broker.position("A") == 20 and broker.avg_price("A") == pytest.approx(105.0)
    assert broker.cash == pytest.approx(10_000 - 1000 - 2.0 - 1100 - 2.1)
    broker.sell("A", 5)  # reducing keeps the entry price
    assert broker.avg_price("A") == pytest.approx(105.0) and broker.position("A") == 15
    assert broker.equity == pytest.approx(broker.cash + 15 * 100.0)
    assert broker.fees_paid == pytest.approx(2.0 + 2.1 + 1.5)
    assert [o.ref for o in broker.orders] == [1, 2, 3]


def test_fake_broker_rejects_honestly_and_changes_nothing():
    broker = FakeBroker(cash=1_000, prices={"A": 100.0}, fractional=False)
    before = (broker.cash, broker.positions)
    rejected = [
        broker.buy("A", 11),  # 1,100 > 1,000
        broker.sell("A", 1),  # no position: would go short
        broker.buy("A", 1.5),  # fractional
        broker.buy("Z", 1),  # no price
    ]
    assert [o.status for o in rejected] == ["rejected"] * 4
    assert rejected[0].reason == "insufficient cash for 11 A: needs 1,100.00, has 1,000.00"
    assert rejected[1].reason == "would open a short of 1 A (short selling is off)"
    assert (broker.cash, broker.positions, broker.fills) == (*before, [])
    assert broker.buy("A", 10).filled and broker.cash == 0.0  # spending exactly all the cash is fine


def test_fake_broker_shorts_and_reversals_when_allowed():
    broker = FakeBroker(cash=1_000, prices={"A": 10.0}, allow_short=True)
    broker.sell("A", 5)
    assert broker.position("A") == -5 and broker.avg_price("A") == 10.0 and broker.cash == 1_050.0
    broker.set_prices({"A": 12.0})
    broker.buy("A", 8)  # covers 5 at 12 and goes long 3 at 12
    assert broker.position("A") == 3 and broker.avg_price("A") == 12.0
    broker.sell("A", 3)
    assert broker.positions == {} and broker.avg_price("A") is None
    assert broker.equity == pytest.approx(1_000 + 5 * 10 - 5 * 12)


def test_fake_broker_target_weights_sell_first_and_notify_listeners():
    broker = FakeBroker(cash=10_000, prices={"A": 10.0, "B": 50.0, "C": 20.0})
    seen: list[str] = []
    broker.on_fill.append(lambda order: seen.append(f"{order.side} {order.quantity:g} {order.symbol}"))
    broker.order_target_weights({"A": 0.6, "B": 0.4})
    assert seen == ["buy 600 A", "buy 80 B"]
    orders = broker.order_target_weights(pd.Series({"A": 0.2, "B": float("nan"), "C": 0.5}))
    assert [(o.side, o.symbol, o.quantity) for o in orders] == [("sell", "A", 400.0), ("buy", "C", 250.0)]
    assert broker.position("B") == 80  # NaN = hold


def test_fake_broker_refuses_to_make_things_up():
    broker = FakeBroker(cash=1_000, prices={"A": 10.0})
    broker.buy("A", 1)
    broker.set_prices({"A": float("nan")}, time="2024-01-05")  # A stops trading
    assert broker.time == pd.Timestamp("2024-01-05")
    with pytest.raises(ValueError, match="cannot value the position in A"):
        _ = broker.equity
    with pytest.raises(ValueError, match="side must be"):
        broker.submit("A", "hold", 1)  # type: ignore[arg-type]
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(ValueError, match="quantity must be a positive finite number"):
            broker.buy("A", bad)
    with pytest.raises(ValueError, match="price of B must be a positive finite number"):
        broker.set_prices({"B": -3.0})
    with pytest.raises(ValueError, match="cannot size an order for A: it has no price"):
        FakeBroker(prices={"B": 1.0}).order_target_weights({"A": 0.5})
