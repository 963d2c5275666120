"""Delistings, late listings and gaps, handled as a broker would, identically in both engines.

A symbol whose data ends before the others is delisted on its last bar: closed there at that bar's fill price
(``execution.on_delist: close``) or held at its last close (``hold_cash_value``), with a ``delisted`` event;
nothing fills on a bar a symbol did not trade (an order waits for its next real bar); positions are valued at
the last real price meanwhile. The hand-made cases check fills and cash to the cent; the real-shaped universe
(names that list late, delist early and have gaps) checks the rules on a full pipeline and the two engines
against each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars, validate
from qf.components import DataSource
from qf.components import Params as BaseParams
from qf.config.loader import LoadedExperiment, Source, build, load_experiment
from qf.config.schema import ExecutionSpec
from qf.engines.backtrader.strategy import run_backtrader
from qf.engines.kernels.risk import RiskStack
from qf.engines.result import EngineResult
from qf.engines.vectorbt import run_vectorbt
from qf.errors import ConfigError, DataError
from qf.parity import compare
from qf.pipeline import compute_targets
from qf_plugins.risk.stop_loss import StopLoss

TOL = 1e-9
FEES, SLIP = 0.001, 0.002
FILLS = ["next_open", "next_close", "close"]
ENGINES = {"vectorbt": run_vectorbt, "backtrader": run_backtrader}

# -- a hand-made universe: A trades every bar, D has a two-bar halt and is delisted after bar 8 -------------
IDX = pd.bdate_range("2021-01-04", periods=12)
A = np.arange(100.0, 112.0)
D = np.array([50.0, 51.0, 52.0, np.nan, np.nan, 55.0, 56.0, 57.0, 58.0, np.nan, np.nan, np.nan])
D_GAP, D_LAST = (3, 4), 8


def hand_bars() -> Bars:
    close = pd.DataFrame({"A": A, "D": D}, index=IDX)
    return validate(Bars(open=close - 0.5, high=close + 1.0, low=close - 1.5, close=close, source="hand"))


def fill_field(fill: str) -> str:
    return "open" if fill == "next_open" else "close"


def px(bars: Bars, fill: str, i: int, sym: str) -> float:
    """The raw fill price (before slippage) of ``sym`` at bar ``i`` under ``fill``."""
    return float(getattr(bars, fill_field(fill))[sym].iloc[i])


def run_both(bars: Bars, targets: pd.DataFrame, ex: ExecutionSpec,
             risk: RiskStack | list | None = None) -> dict[str, EngineResult]:
    return {name: run(bars, targets, risk, ex) for name, run in ENGINES.items()}


def one_rebalance(at: int, weights: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(weights, index=IDX[[at]])


def orders_of(res: EngineResult, sym: str) -> pd.DataFrame:
    return res.orders[res.orders["symbol"] == sym].reset_index(drop=True)


@pytest.mark.parametrize("fill", FILLS)
def test_delisted_position_is_closed_on_its_last_bar_to_the_cent(fill):
    bars = hand_bars()
    ex = ExecutionSpec(fill=fill, fees=FEES, slippage=SLIP, initial_cash=100_000.0)
    lag = 0 if fill == "close" else 1
    f = 6  # the fill bar of the one rebalance: both symbols trade there
    targets = one_rebalance(f - lag, {"A": 0.4, "D": 0.4})
    # by hand: 40 % of the cash each at the fill price, then D sold whole on its last bar at that bar's fill price
    cash = ex.initial_cash
    q_a = 0.4 * cash / px(bars, fill, f, "A")
    q_d = 0.4 * cash / px(bars, fill, f, "D")
    buy_a, buy_d = px(bars, fill, f, "A") * (1 + SLIP), px(bars, fill, f, "D") * (1 + SLIP)
    sell_d = px(bars, fill, D_LAST, "D") * (1 - SLIP)
    cash -= q_a * buy_a * (1 + FEES) + q_d * buy_d * (1 + FEES)
    cash += q_d * sell_d * (1 - FEES)
    final = cash + q_a * A[-1]
    for name, res in run_both(bars, targets, ex).items():
        d = orders_of(res, "D")
        assert d["side"].tolist() == ["buy", "sell"], name
        assert d["time"].tolist() == [IDX[f], IDX[D_LAST]], name
        assert d["quantity"].to_numpy() == pytest.approx([q_d, q_d], rel=1e-12), name
        assert d["price"].iloc[1] == pytest.approx(sell_d, rel=1e-14), name
        assert d["fee"].iloc[1] == pytest.approx(q_d * sell_d * FEES, rel=1e-12), name
        assert orders_of(res, "A")["quantity"].tolist() == pytest.approx([q_a], rel=1e-12), name
        assert res.equity.iloc[-1] == pytest.approx(final, rel=1e-12), name
        # nothing left of D: from its last bar on, the equity moves with A only
        tail = res.equity.iloc[D_LAST:].diff().dropna().to_numpy()
        assert tail == pytest.approx(np.full(len(tail), q_a), rel=1e-9), name
        assert res.events.to_dict("records") == [{"time": IDX[D_LAST], "event": "delisted", "symbol": "D"}], name


@pytest.mark.parametrize("fill", FILLS)
def test_hold_cash_value_keeps_the_position_at_its_last_close(fill):
    bars = hand_bars()
    ex = ExecutionSpec(fill=fill, fees=FEES, slippage=SLIP, on_delist="hold_cash_value")
    lag = 0 if fill == "close" else 1
    # a second rebalance after the delisting wants D gone: it cannot trade any more, so the target is ignored
    targets = pd.DataFrame({"A": [0.4, 0.4], "D": [0.4, 0.0]}, index=IDX[[6 - lag, 10 - lag]])
    q_a = 0.4 * ex.initial_cash / px(bars, fill, 6, "A")
    q_d = 0.4 * ex.initial_cash / px(bars, fill, 6, "D")
    cash = ex.initial_cash - (q_a * px(bars, fill, 6, "A") + q_d * px(bars, fill, 6, "D")) * (1 + SLIP) * (1 + FEES)
    for name, res in run_both(bars, targets, ex).items():
        assert orders_of(res, "D")["side"].tolist() == ["buy"], name
        # A rebalances back to 40 % at bar 10; D (worth its last close) stays in the book
        a = orders_of(res, "A")
        assert a["time"].tolist() == [IDX[6], IDX[10]], name
        before_10 = cash + q_a * A[9] + q_d * D[D_LAST]
        assert res.equity.iloc[9] == pytest.approx(before_10, rel=1e-12), name
        last = res.equity.iloc[-1] - res.equity.iloc[-2]
        q_a10 = q_a + (a["quantity"].iloc[1] if a["side"].iloc[1] == "buy" else -a["quantity"].iloc[1])
        assert last == pytest.approx(q_a10 * (A[-1] - A[-2]), rel=1e-9), name
        assert list(res.events["event"]) == ["delisted"], name


@pytest.mark.parametrize("fill", FILLS)
def test_an_order_on_a_bar_the_symbol_did_not_trade_waits_for_its_next_bar(fill):
    bars = hand_bars()
    ex = ExecutionSpec(fill=fill, fees=FEES, slippage=SLIP)
    lag = 0 if fill == "close" else 1
    f, g = D_GAP[0], D_GAP[-1] + 1  # the fill bar is D's first missing bar; D's next real bar is g
    targets = one_rebalance(f - lag, {"A": 0.4, "D": 0.4})
    q_a = 0.4 * ex.initial_cash / px(bars, fill, f, "A")
    cash = ex.initial_cash - q_a * px(bars, fill, f, "A") * (1 + SLIP) * (1 + FEES)
    # sized at g on the portfolio valued there, at g's fill price
    q_d = 0.4 * (cash + q_a * px(bars, fill, g, "A")) / px(bars, fill, g, "D")
    for name, res in run_both(bars, targets, ex).items():
        a, d = orders_of(res, "A"), orders_of(res, "D")
        assert a["time"].tolist() == [IDX[f]], name
        assert d["time"].iloc[0] == IDX[g], name
        assert d["quantity"].iloc[0] == pytest.approx(q_d, rel=1e-12), name
        assert d["price"].iloc[0] == pytest.approx(px(bars, fill, g, "D") * (1 + SLIP), rel=1e-14), name
        # the equity on the gap bars values D at nothing held yet and A at its close: no phantom price moves
        assert res.equity.iloc[f] == pytest.approx(cash + q_a * A[f], rel=1e-12), name


@pytest.mark.parametrize("fill", FILLS)
def test_a_newer_target_replaces_an_order_still_waiting(fill):
    bars = hand_bars()
    ex = ExecutionSpec(fill=fill)
    lag = 0 if fill == "close" else 1
    # decided for bar 3 (D halted) and again for bar 4 (still halted) with a smaller weight: only the second counts
    targets = pd.DataFrame({"A": [0.4, 0.4], "D": [0.4, 0.1]}, index=IDX[[3 - lag, 4 - lag]])
    for name, res in run_both(bars, targets, ex).items():
        d = orders_of(res, "D").query("side == 'buy'")
        assert len(d) == 1 and d["time"].iloc[0] == IDX[5], name
        a = orders_of(res, "A")
        signed = np.where(a["side"] == "buy", a["quantity"], -a["quantity"])
        value = ex.initial_cash - (signed * a["price"]).sum() + signed.sum() * px(bars, fill, 5, "A")
        assert d["quantity"].iloc[0] == pytest.approx(0.1 * value / px(bars, fill, 5, "D"), rel=1e-12), name


@pytest.mark.parametrize("fill", FILLS)
def test_a_window_that_ends_or_starts_inside_a_gap_is_no_delisting_or_listing(fill):
    # walk-forward and sweeps run on slices: a halt at the edge of a slice is still a halt
    lag = 0 if fill == "close" else 1
    ex = ExecutionSpec(fill=fill)
    head = hand_bars().iloc(slice(0, D_GAP[-1] + 1))  # ends on D's second missing bar
    for name, res in run_both(head, one_rebalance(D_GAP[0] - lag, {"A": 0.4, "D": 0.4}), ex).items():
        assert res.events.empty, name
        assert list(res.orders["symbol"]) == ["A"], name  # D's order is still waiting when the data ends
    tail = hand_bars().iloc(slice(D_GAP[0], None))  # starts on D's first missing bar
    targets = pd.DataFrame({"A": [0.4], "D": [0.4]}, index=tail.index[[0]])
    for name, res in run_both(tail, targets, ex).items():
        d = orders_of(res, "D")
        assert d["time"].iloc[0] == IDX[D_GAP[-1] + 1] and d["side"].iloc[0] == "buy", name


def test_targets_after_the_delisting_are_ignored():
    bars = hand_bars()
    ex = ExecutionSpec(fill="next_close")
    # a (buggy) sizer that keeps asking for D after its data ended
    targets = pd.DataFrame({"A": 0.3, "D": 0.3}, index=IDX[[5, 8, 9, 10]])
    for name, res in run_both(bars, targets, ex).items():
        d = orders_of(res, "D")
        assert d[["time", "side"]].values.tolist() == [[IDX[6], "buy"], [IDX[D_LAST], "sell"]], name
        assert np.isfinite(res.equity).all(), name


def test_a_stop_on_a_halted_symbol_fills_when_it_trades_again():
    idx = pd.bdate_range("2022-01-03", periods=10)
    s = np.array([100.0, 100.0, 80.0, np.nan, np.nan, 79.0, 78.0, 78.0, 78.0, 78.0])
    close = pd.DataFrame({"S": s, "T": np.linspace(50, 59, 10)}, index=idx)
    bars = validate(Bars(close=close, source="halt"))
    targets = pd.DataFrame({"S": [0.5], "T": [0.5]}, index=idx[[0]])
    for name, res in run_both(bars, targets, ExecutionSpec(fill="next_close"), [StopLoss({"pct": 0.1})]).items():
        s_orders = orders_of(res, "S")
        # decided at the close of bar 2 (-20 %), due at bar 3 (halted): sold at bar 5, the first real bar
        assert s_orders["side"].tolist() == ["buy", "sell"], name
        assert s_orders["time"].iloc[1] == idx[5], name
        assert s_orders["price"].iloc[1] == pytest.approx(79.0), name
        # one stop, not one per halted bar
        stops = res.events[res.events["event"] == "stop"]
        assert stops["time"].tolist() == [idx[3]], name


# -- bars: what validate() now accepts ----------------------------------------------------------------


def test_validate_keeps_a_delisting_and_records_inner_gaps():
    raw = pd.DataFrame({"A": A, "D": D, "L": [np.nan] * 4 + list(range(20, 28))}, index=IDX, dtype=float)
    bars = validate(Bars(close=raw, source="s"), max_gap=2)
    assert bars.close["D"].iloc[D_LAST + 1:].isna().all()  # delisted: not carried forward
    assert bars.close["D"].iloc[list(D_GAP)].tolist() == [52.0, 52.0]  # a gap: a flat bar for the signals
    assert bars.gaps is not None and bars.gaps.to_numpy().sum() == 2 and bars.gaps["D"].iloc[list(D_GAP)].all()
    traded = bars.traded()
    assert traded.sum(axis=0).tolist() == [12, 7, 8]
    # validating again (a data source that validates twice) keeps the gaps; slicing keeps them aligned
    assert validate(bars).gaps.equals(bars.gaps)
    assert bars.slice(IDX[4], IDX[6]).gaps["D"].tolist() == [True, False, False]
    assert bars.select(["A"]).traded().all()


def test_a_long_run_inside_a_life_is_still_an_error_but_a_long_delisting_is_not():
    inner = pd.DataFrame({"A": A, "D": [1.0] + [np.nan] * 5 + [2.0] * 6}, index=IDX)
    with pytest.raises(DataError, match="D has 5 missing bars in a row from 2021-01-05 to 2021-01-11"):
        validate(Bars(close=inner, source="s"), max_gap=3)
    # accepted when the user raises max_gap: the same no-fill handling as any gap
    assert validate(Bars(close=inner, source="s"), max_gap=5).gaps["D"].sum() == 5
    trailing = pd.DataFrame({"A": A, "D": [1.0, 2.0] + [np.nan] * 10}, index=IDX)
    assert validate(Bars(close=trailing, source="s"), max_gap=3).close["D"].notna().sum() == 2


def test_on_delist_is_checked_in_the_experiment_file(tmp_path: Path):
    path = tmp_path / "x.yaml"
    path.write_text("name: x\ndata: {type: sample, params: {dataset: sp500_20}}\nsignal: {type: constant}\n"
                    "sizer: {type: equal}\nexecution:\n  on_delist: sell\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert f"{path}:6:" in str(info.value) and "on_delist" in str(info.value)
    assert "'close'" in str(info.value) and "'hold_cash_value'" in str(info.value)


# -- a real-shaped universe through the whole pipeline, both engines -----------------------------------


def raw_universe(n: int = 260, seed: int = 21) -> dict[str, pd.DataFrame]:
    """OHLCV random walks for 6 names; LATE lists on bar 40, GONE delists after bar 150, HALT has gaps, BOTH
    lists late, halts and delists. Returns the raw frames (NaN where a name did not trade)."""
    rng = np.random.default_rng(seed)
    names = ["AAA", "BBB", "LATE", "GONE", "HALT", "BOTH"]
    idx = pd.bdate_range("2019-01-02", periods=n)
    rets = rng.normal(0.0004, 0.016, (n, len(names)))
    close = 40.0 * np.exp(np.cumsum(rets, axis=0))
    opn = np.r_[close[:1], close[:-1]] * np.exp(rng.normal(0, 0.006, close.shape))
    high = np.maximum(opn, close) * (1 + np.abs(rng.normal(0, 0.004, close.shape)))
    low = np.minimum(opn, close) * (1 - np.abs(rng.normal(0, 0.004, close.shape)))
    vol = rng.integers(1_000, 100_000, close.shape).astype(float)
    absent = np.zeros(close.shape, dtype=bool)
    absent[:40, 2] = True                   # LATE
    absent[151:, 3] = True                  # GONE: last bar 150
    absent[[60, 61, 62, 120, 200], 4] = True  # HALT: a three-bar halt and single missing days
    absent[:25, 5] = True                   # BOTH
    absent[[90, 91], 5] = True
    absent[231:, 5] = True                  # BOTH: last bar 230
    frames = {"open": opn, "high": high, "low": low, "close": close, "volume": vol}
    return {f: pd.DataFrame(np.where(absent, np.nan, a), index=idx, columns=names) for f, a in frames.items()}


class Universe(DataSource):
    """The real-shaped universe above as a data source."""

    name: ClassVar[str] = "delist_universe"

    class Params(BaseParams):
        seed: int = 21

    def load(self) -> Bars:
        return validate(Bars(**raw_universe(seed=self.params.seed), source="universe"))


class SkfolioDelisted(DataSource):
    """skfolio's real S&P 500 closes (2018-2019) reshaped: AAPL lists late, XOM and KO delist, JPM halts."""

    name: ClassVar[str] = "skfolio_delisted"

    def load(self) -> Bars:
        from skfolio.datasets import load_sp500_dataset

        close = load_sp500_dataset().loc["2018-01-01":"2019-12-31"].rename_axis(index=None, columns=None)
        close = close.astype(float)
        close.iloc[:60, close.columns.get_loc("AAPL")] = np.nan
        close.iloc[300:, close.columns.get_loc("XOM")] = np.nan
        close.iloc[[100, 101, 102, 250], close.columns.get_loc("JPM")] = np.nan
        close.iloc[[200, 201], close.columns.get_loc("KO")] = np.nan
        close.iloc[420:, close.columns.get_loc("KO")] = np.nan
        return validate(Bars(close=close, source="skfolio_delisted"))


def experiment(data: type, fill: str, signal: dict, sizer: dict, rebalance: dict,
               risk: list | None = None, **execution: Any) -> LoadedExperiment:
    raw: dict[str, Any] = {
        "name": "delisting_case", "data": {"type": f"{__name__}:{data.__name__}"}, "signal": signal,
        "sizer": sizer, "rebalance": rebalance, "risk": risk or [],
        "execution": {"fill": fill, "fees": 0.0005, "slippage": 0.0005, **execution},
    }
    return build(raw, Source("test.yaml"), None)


def parity(exp: LoadedExperiment) -> tuple[EngineResult, EngineResult, Bars]:
    bars = exp.data.load()
    tg = compute_targets(exp, bars)
    a = run_vectorbt(bars, tg.targets, tg.risk, exp.spec.execution)
    b = run_backtrader(bars, tg.targets, tg.risk, exp.spec.execution, broker=exp.broker)
    report = compare(a, b, TOL)
    assert report.orders_a > 20
    assert report.final_rel_diff <= TOL and report.max_rel_diff <= TOL, report
    assert report.ok and report.matched == report.orders_a == report.orders_b, report
    assert np.allclose(a.orders["price"], b.orders["price"], rtol=1e-12, atol=0)
    pd.testing.assert_frame_equal(a.events, b.events, check_dtype=False)
    return a, b, bars


def assert_no_fill_without_a_bar(res: EngineResult, raw: dict[str, pd.DataFrame], fill: str) -> None:
    prices = raw[fill_field(fill)]
    at = prices.stack(future_stack=True).reindex(pd.MultiIndex.from_frame(res.orders[["time", "symbol"]]))
    assert at.notna().all(), res.orders[at.isna().to_numpy()]


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("on_delist", ["close", "hold_cash_value"])
def test_real_shaped_universe_both_engines_agree_and_never_fill_on_a_missing_bar(fill, on_delist):
    exp = experiment(Universe, fill, {"type": "momentum", "params": {"lookback": 10, "skip": 0}},
                     {"type": "equal"}, {"every": 3}, risk=[{"type": "stop_loss", "params": {"pct": 0.08}}],
                     fixed_fees=1.0, on_delist=on_delist)
    a, b, bars = parity(exp)
    raw = raw_universe()
    for res in (a, b):
        assert_no_fill_without_a_bar(res, raw, fill)
        # a listing starts trading only once listed, and the delisted names stop
        assert res.orders.loc[res.orders["symbol"] == "LATE", "time"].min() >= bars.index[40]
        for sym, last in (("GONE", 150), ("BOTH", 230)):
            times = res.orders.loc[res.orders["symbol"] == sym, "time"]
            assert times.max() <= bars.index[last]
        delisted = res.events[res.events["event"] == "delisted"]
        assert delisted[["time", "symbol"]].values.tolist() == [[bars.index[150], "GONE"], [bars.index[230], "BOTH"]]
    held = a.extra["portfolio"].assets()
    if on_delist == "close":
        assert (held[["GONE", "BOTH"]].iloc[-1] == 0).all()
    else:
        assert (held[["GONE", "BOTH"]].iloc[-1] != 0).any()  # momentum held at least one of them to the end


@pytest.mark.parametrize("fill", ["next_close", "close"])
def test_real_prices_with_delistings_both_engines_and_incremental_agree(fill):
    exp = experiment(SkfolioDelisted, fill, {"type": "momentum", "params": {"lookback": 20, "skip": 0}},
                     {"type": "inverse_vol"}, {"every": 10},
                     risk=[{"type": "drawdown_halt", "params": {"max_drawdown": 0.08, "cooldown_bars": 10}}],
                     fractional=False)
    a, b, bars = parity(exp)
    assert {"XOM", "KO"} <= set(b.events.loc[b.events["event"] == "delisted", "symbol"])
    assert "flatten" in set(b.events["event"])
    if fill == "next_close":
        # the paper-trading path (pipeline re-run on the trailing window at each rebalance) trades alike
        inc = run_backtrader(bars, experiment=exp)
        assert compare(b, inc, TOL).ok
    sells = b.orders[(b.orders["symbol"] == "XOM") & (b.orders["side"] == "sell")]
    assert sells["time"].max() <= bars.index[299]
