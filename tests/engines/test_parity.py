"""Parity: the same experiment gives the same result in the vectorbt and backtrader engines.

Every case runs real data shipped inside pip packages (skfolio's 20 large caps, close only; arch's S&P 500
and NASDAQ OHLCV) through both engines and requires the final equity to agree to 1e-9 relative and every
order to be matched (time, symbol, side, quantity). Histories are cut short to keep the suite fast.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars, validate
from qf.components import DataSource
from qf.components import Params as BaseParams
from qf.config.loader import LoadedExperiment, Source, build
from qf.engines.backtrader.strategy import run_backtrader
from qf.engines.result import EngineResult
from qf.engines.vectorbt import run_vectorbt
from qf.parity import ParityReport, compare
from qf.pipeline import compute_targets

TOL = 1e-9
COSTS = {"fees": 0.0005, "slippage": 0.0005, "min_order_value": 100.0}


class ArchPair(DataSource):
    """arch's S&P 500 and NASDAQ Composite daily OHLCV as one two-symbol source (a multi-asset OHLCV set)."""

    name: ClassVar[str] = "arch_pair"

    class Params(BaseParams):
        start: str = "2014-01-01"
        end: str = "2016-12-31"

    def load(self) -> Bars:
        from arch.data import nasdaq, sp500

        raw = {"SP500": sp500.load(), "NASDAQ": nasdaq.load()}
        fields = {f: pd.DataFrame({s: df[f.capitalize()] for s, df in raw.items()}).astype(float)
                  for f in ("open", "high", "low", "close", "volume")}
        bars = Bars(**fields, source="arch_pair")
        return validate(bars.slice(self.params.start, self.params.end))


class LateListings(DataSource):
    """skfolio's 20 large caps where some symbols are listed only part-way: NaN on their first bars."""

    name: ClassVar[str] = "late_listings"

    class Params(BaseParams):
        start: str = "2018-01-01"
        end: str = "2019-12-31"
        late: dict[str, int] = {"AAPL": 60, "XOM": 200, "MSFT": 201}

    def load(self) -> Bars:
        from skfolio.datasets import load_sp500_dataset

        close = load_sp500_dataset().loc[self.params.start:self.params.end].rename_axis(index=None, columns=None)
        close = close.astype(float)
        for sym, n in self.params.late.items():
            close.iloc[:n, close.columns.get_loc(sym)] = np.nan
        return validate(Bars(close=close, source="late_listings"))


def experiment(data: dict, signal: dict, sizer: dict, rebalance: dict, execution: dict,
               risk: list | None = None) -> LoadedExperiment:
    raw: dict[str, Any] = {"name": "parity_case", "data": data, "signal": signal, "sizer": sizer,
                           "rebalance": rebalance, "execution": execution, "risk": risk or []}
    return build(raw, Source("test.yaml"), None)


def sample(start: str, end: str, dataset: str = "sp500_20", **extra: Any) -> dict:
    return {"type": "sample", "params": {"dataset": dataset, "start": start, "end": end, **extra}}


def local(cls: type, **params: Any) -> dict:
    return {"type": f"{__name__}:{cls.__name__}", "params": params}


def both(exp: LoadedExperiment) -> tuple[EngineResult, EngineResult, ParityReport]:
    bars = exp.data.load()
    tg = compute_targets(exp, bars)
    a = run_vectorbt(bars, tg.targets, tg.risk, exp.spec.execution)
    b = run_backtrader(bars, tg.targets, tg.risk, exp.spec.execution, broker=exp.broker)
    return a, b, compare(a, b, TOL)


def assert_parity(a: EngineResult, b: EngineResult, report: ParityReport) -> None:
    assert report.orders_a > 0, "a parity case that trades nothing proves nothing"
    assert report.final_rel_diff <= TOL, report
    assert report.first_divergence is None, report
    assert report.orders_equal, (report.unmatched_a.head(), report.unmatched_b.head())
    assert report.matched == report.orders_a == report.orders_b
    assert report.events_equal
    assert report.ok
    # the same bars, the same fees to the cent, and the fills at the same prices
    assert a.equity.index.equals(b.equity.index)
    assert b.fees_paid == pytest.approx(a.fees_paid, rel=1e-9)
    assert np.allclose(a.orders["price"], b.orders["price"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("fractional", [True, False], ids=["fractional", "integer"])
def test_buy_and_hold_20_assets(fractional):
    exp = experiment(sample("2016-01-01", "2019-12-31"), {"type": "constant"}, {"type": "equal"},
                     {"freq": "month_end"}, {"fill": "next_close", "fractional": fractional, **COSTS})
    a, b, report = both(exp)
    assert_parity(a, b, report)
    # every month end trades (the drift back to equal weight), and integer mode trades whole shares
    assert report.orders_a >= 20
    if not fractional:
        assert (b.orders["quantity"] == np.round(b.orders["quantity"])).all()


@pytest.mark.parametrize("fill", ["next_open", "next_close", "close"])
def test_sma_cross_single_asset_every_fill(fill):
    exp = experiment(sample("2010-01-01", "2016-12-31", dataset="arch_sp500"),
                     {"type": "sma_cross", "params": {"fast": 10, "slow": 40}}, {"type": "equal"},
                     {"freq": "daily"}, {"fill": fill, "fixed_fees": 1.0, **COSTS})
    a, b, report = both(exp)
    assert_parity(a, b, report)
    assert report.orders_a >= 20
    # each convention fills at its own price: the open of the next bar, the close of the next bar, or this close
    bars = exp.data.load()
    field = bars.open if fill == "next_open" else bars.close
    first = b.orders.iloc[0]
    expected = field.at[first.time, "SP500"] * (1 + COSTS["slippage"] * (1 if first.side == "buy" else -1))
    assert first.price == pytest.approx(expected, rel=1e-14)


def test_weekly_hrp_20_assets():
    exp = experiment(sample("2017-01-01", "2019-06-30"), {"type": "swing"},
                     {"type": "hrp", "params": {"window": 126}}, {"freq": "weekly"},
                     {"fill": "next_close", **COSTS}, risk=[{"type": "max_weight", "params": {"limit": 0.25}}])
    a, b, report = both(exp)
    assert_parity(a, b, report)
    assert b.orders["symbol"].nunique() >= 10


@pytest.mark.parametrize("fill,fractional", [("close", True), ("next_close", False)])
def test_drawdown_halt_and_stop_loss_trigger_alike(fill, fractional):
    # through the 2020 crash: the halt flattens, the stops close single names, both engines alike
    risk = [{"type": "drawdown_halt", "params": {"max_drawdown": 0.12, "cooldown_bars": 20}},
            {"type": "stop_loss", "params": {"pct": 0.1}}]
    exp = experiment(sample("2019-06-01", "2020-12-31"), {"type": "constant"}, {"type": "equal"},
                     {"freq": "month_end"}, {"fill": fill, "fractional": fractional, **COSTS}, risk=risk)
    a, b, report = both(exp)
    assert_parity(a, b, report)
    kinds = set(b.events["event"])
    assert kinds == {"flatten", "stop"}, b.events
    assert report.events_a == report.events_b > 0
    pd.testing.assert_frame_equal(a.events.reset_index(drop=True), b.events.reset_index(drop=True),
                                  check_dtype=False)


@pytest.mark.parametrize("fractional", [True, False], ids=["fractional", "integer"])
def test_next_open_multi_asset_ohlcv_with_daily_loss_limit(fractional):
    exp = experiment(local(ArchPair), {"type": "momentum", "params": {"lookback": 20, "skip": 0}},
                     {"type": "equal"}, {"freq": "weekly"},
                     {"fill": "next_open", "fractional": fractional, "fixed_fees": 2.0, **COSTS},
                     risk=[{"type": "daily_loss_limit", "params": {"limit": 0.02, "cooldown_bars": 3}}])
    a, b, report = both(exp)
    assert_parity(a, b, report)
    assert set(b.orders["symbol"]) == {"SP500", "NASDAQ"}
    assert "flatten" in set(b.events["event"])


def _reversals(orders: pd.DataFrame) -> int:
    """Orders that take a position from long to short (or back) in one go."""
    n = 0
    for _, g in orders.groupby("symbol"):
        pos = 0.0
        for r in g.itertuples():
            after = pos + (r.quantity if r.side == "buy" else -r.quantity)
            n += pos * after < 0
            pos = after
    return n


def test_long_short_reversals_pay_the_fixed_fee_once():
    exp = experiment(local(ArchPair, start="2011-01-01", end="2013-12-31"),
                     {"type": "momentum", "params": {"lookback": 10, "skip": 0}},
                     {"type": "equal", "params": {"allow_short": True}}, {"freq": "weekly"},
                     {"fill": "next_close", "fixed_fees": 5.0, **COSTS})
    a, b, report = both(exp)
    assert_parity(a, b, report)
    assert _reversals(b.orders) >= 5
    # one fixed fee per order, reversals included: the fees are exactly value * rate + fixed
    expected = b.orders["quantity"] * b.orders["price"] * COSTS["fees"] + 5.0
    assert np.allclose(b.orders["fee"], expected, rtol=1e-12)


def test_symbols_listed_part_way():
    exp = experiment(local(LateListings), {"type": "constant"}, {"type": "equal"}, {"freq": "month_end"},
                     {"fill": "next_close", **COSTS})
    a, b, report = both(exp)
    assert_parity(a, b, report)
    assert np.isfinite(b.equity).all()
    bars = exp.data.load()
    for sym in ("AAPL", "XOM", "MSFT"):
        first_trade = b.orders.loc[b.orders["symbol"] == sym, "time"].min()
        assert first_trade > bars.close[sym].first_valid_index()


def test_incremental_targets_give_the_same_orders():
    """The paper-trading path (pipeline re-run on the trailing window at each rebalance) trades alike."""
    exp = experiment(sample("2018-01-01", "2019-06-30", symbols=["AAPL", "JPM", "KO", "XOM", "WMT"]),
                     {"type": "momentum", "params": {"lookback": 60, "skip": 5}}, {"type": "inverse_vol"},
                     {"freq": "weekly"}, {"fill": "next_close", **COSTS},
                     risk=[{"type": "stop_loss", "params": {"pct": 0.05}}])
    bars = exp.data.load()
    tg = compute_targets(exp, bars)
    pre = run_backtrader(bars, tg.targets, tg.risk, exp.spec.execution, broker=exp.broker)
    inc = run_backtrader(bars, experiment=exp)
    assert inc.extra["mode"] == "incremental" and pre.extra["mode"] == "precomputed"
    report = compare(pre, inc, TOL)
    assert_parity(pre, inc, report)
    assert len(pre.events) > 0
    # and both agree with vectorbt
    assert compare(run_vectorbt(bars, tg.targets, tg.risk, exp.spec.execution), inc, TOL).ok
