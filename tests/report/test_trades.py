"""Round trips from fills (qf.report.trades) against vectorbt's exit-trade records on the same fills."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf.report.trades import TRADE_COLUMNS, exposure, round_trips, summary_line, trade_summary

IDX = pd.bdate_range("2024-01-01", periods=10)
# A: adds, a partial close, a full close, a long-to-short reversal in one order, a short still open;
# B: short first, a short-to-long reversal, two partial closes, a long-to-short reversal left open;
# C: one buy, never closed (no exit fee, valued at the last close)
CLOSE = pd.DataFrame({"A": [10, 11, 12, 11, 13, 14, 12, 11, 10, 9.5],
                      "B": [50, 49, 48, 50, 52, 51, 53, 55, 54, 56.0],
                      "C": [20, 21, 22, 23, 24, 25, 26, 27, 28, 29.0]}, index=IDX)
SIZE = pd.DataFrame({"A": [10, 5, -3, -12, 4, 0, 6, -20, 0, 3],
                     "B": [-4, 0, 2, 0, 5, -1.5, 0, -2.5, 0, 0.0],
                     "C": [0, 3, 0, 0, 0, 0, 0, 0, 0, 0.0]}, index=IDX)


def orders_of(pf, index, symbols) -> pd.DataFrame:
    """A vectorbt Portfolio's fills as qf's orders frame (what the engines write to orders.csv)."""
    rec = pf.orders.records
    return pd.DataFrame({"time": index[rec["idx"]], "symbol": np.asarray(symbols)[rec["col"]],
                         "side": np.where(rec["side"] == 0, "buy", "sell"), "quantity": rec["size"],
                         "price": rec["price"], "fee": rec["fees"]})


def assert_same_as_vectorbt(trades: pd.DataFrame, records: np.ndarray, index, symbols) -> None:
    assert len(trades) == len(records)
    got = trades.reset_index(drop=True)
    assert list(got["symbol"]) == [symbols[c] for c in records["col"]]
    assert list(got["direction"]) == ["long" if d == 0 else "short" for d in records["direction"]]
    assert list(got["status"]) == ["open" if s == 0 else "closed" for s in records["status"]]
    assert list(got["entry_time"]) == list(index[records["entry_idx"]])
    assert list(got["exit_time"]) == list(index[records["exit_idx"]])
    assert list(got["holding_bars"]) == list(records["exit_idx"] - records["entry_idx"])
    assert list(got["position_id"]) == list(records["parent_id"])
    for ours, theirs in (("quantity", "size"), ("entry_price", "entry_price"), ("exit_price", "exit_price"),
                         ("entry_fees", "entry_fees"), ("exit_fees", "exit_fees"), ("pnl", "pnl"),
                         ("return", "return")):
        np.testing.assert_allclose(got[ours].to_numpy(float), records[theirs], rtol=0, atol=1e-9, err_msg=ours)
    np.testing.assert_allclose(got["fees"], records["entry_fees"] + records["exit_fees"], rtol=0, atol=1e-9)


def test_round_trips_equal_vectorbt_exit_trades_on_the_same_fills():
    vbt = pytest.importorskip("vectorbt")
    pf = vbt.Portfolio.from_orders(CLOSE, SIZE, price=CLOSE, fees=0.001, fixed_fees=0.3, slippage=0.002,
                                   init_cash=1e6, freq="1D")
    orders = orders_of(pf, IDX, list(CLOSE.columns))
    # shuffled rows (orders.csv is sorted by time, side, symbol, not per symbol): the same round trips
    trades = round_trips(orders.sample(frac=1.0, random_state=3), CLOSE)
    assert list(trades.columns) == TRADE_COLUMNS
    assert_same_as_vectorbt(trades, pf.trades.records, IDX, list(CLOSE.columns))
    # every case is in there: adds, partial closes, both reversals, open longs and shorts
    assert set(trades["direction"]) == {"long", "short"}
    assert set(trades.loc[trades["status"] == "open", "symbol"]) == {"A", "B", "C"}
    # with open positions valued at the last close, the P&L adds up to each symbol's account change
    np.testing.assert_allclose(trades.groupby("symbol")["pnl"].sum().to_numpy(), pf.value().iloc[-1] - 1e6,
                               rtol=0, atol=1e-6)


def test_round_trips_equal_vectorbt_on_a_qf_engine_run():
    """The vectorbt engine's own Portfolio (partial rebalances of several symbols) against trades.csv's rows."""
    pytest.importorskip("vectorbt")
    from qf.config.schema import ExecutionSpec
    from qf.engines.vectorbt import run_vectorbt
    from qf.testing.contracts import sample_bars

    bars = sample_bars(n_symbols=3, n_bars=120, seed=4, unlisted=1)
    rng = np.random.default_rng(0)
    targets = pd.DataFrame(rng.uniform(0, 0.33, (len(bars.index), 3)), index=bars.index, columns=bars.symbols)
    targets.iloc[::7] = 0.0  # flat now and then: positions close and reopen
    res = run_vectorbt(bars, targets.iloc[::3], None, ExecutionSpec(fill="next_close", fees=0.001,
                                                                             slippage=0.001))
    pf = res.extra["portfolio"]
    trades = round_trips(res.orders, bars.close)
    assert len(trades) > 30
    assert_same_as_vectorbt(trades, pf.trades.records, bars.index, bars.symbols)


def test_long_to_short_reversal_in_one_order_splits_the_fee_by_quantity():
    orders = pd.DataFrame({"time": IDX[[0, 2, 4]], "symbol": "A", "side": ["buy", "sell", "buy"],
                           "quantity": [10.0, 25.0, 15.0], "price": [10.0, 12.0, 11.0], "fee": [1.0, 5.0, 3.0]})
    t = round_trips(orders, CLOSE)
    assert list(t["direction"]) == ["long", "short"] and list(t["status"]) == ["closed", "closed"]
    assert list(t["position_id"]) == [0, 1]
    long, short = t.iloc[0], t.iloc[1]
    # 10 of the 25 sold close the long (10/25 of the fee), the other 15 open the short (15/25 of it)
    assert long["exit_fees"] == pytest.approx(2.0) and long["pnl"] == pytest.approx(10 * 2.0 - 1.0 - 2.0)
    assert short["entry_time"] == IDX[2] and short["quantity"] == pytest.approx(15.0)
    assert short["entry_fees"] == pytest.approx(3.0)
    assert short["pnl"] == pytest.approx(15 * (12.0 - 11.0) - 3.0 - 3.0)
    assert short["holding_bars"] == 2 and short["return"] == pytest.approx(short["pnl"] / (15 * 12.0))


def test_open_position_is_valued_at_the_last_close_without_exit_fee():
    close = CLOSE.copy()
    close.loc[IDX[-2:], "C"] = np.nan  # a symbol whose data ended: its last real close values it
    orders = pd.DataFrame({"time": [IDX[1], IDX[3], IDX[5]], "symbol": "C", "side": ["buy", "buy", "sell"],
                           "quantity": [4.0, 4.0, 2.0], "price": [21.0, 23.0, 25.0], "fee": [0.4, 0.4, 0.2]})
    t = round_trips(orders, close)
    assert list(t["status"]) == ["closed", "open"]
    closed, still = t.iloc[0], t.iloc[1]
    assert closed["entry_price"] == pytest.approx(22.0) and closed["entry_time"] == IDX[1]  # average cost
    assert closed["entry_fees"] == pytest.approx(0.2) and closed["pnl"] == pytest.approx(2 * 3.0 - 0.2 - 0.2)
    assert still["quantity"] == pytest.approx(6.0) and still["exit_price"] == 27.0  # last real close
    assert still["exit_time"] == IDX[-1] and still["exit_fees"] == 0.0 and still["holding_bars"] == 8
    assert still["pnl"] == pytest.approx(6 * (27.0 - 22.0) - 0.6)


def test_summary_statistics_and_exposure():
    orders = pd.DataFrame({"time": IDX[[0, 1, 2, 3, 5, 6]], "symbol": ["A", "A", "B", "B", "A", "A"],
                           "side": ["buy", "sell", "buy", "sell", "buy", "sell"],
                           "quantity": [10.0, 10.0, 2.0, 2.0, 5.0, 5.0],
                           "price": [10.0, 12.0, 50.0, 45.0, 14.0, 13.0], "fee": 0.0})
    t = round_trips(orders, CLOSE)
    equity = pd.Series(1000.0, index=IDX)
    ex = exposure(orders, CLOSE, equity)
    # bar 0: 10 A at the close of 10 = 100 of 1000; bar 2: 2 B at 48
    assert ex["gross"].iloc[0] == pytest.approx(0.1) and ex["gross"].iloc[1] == 0.0
    assert ex["net"].iloc[2] == pytest.approx(0.096) and ex["gross"].iloc[4] == 0.0
    s = trade_summary(t, ex, eval_start=IDX[2])
    assert s["n_closed"] == 3 and s["n_open"] == 0 and s["win_rate"] == pytest.approx(1 / 3)
    assert s["profit_factor"] == pytest.approx(20.0 / 15.0)
    assert s["avg_win"] == pytest.approx(20.0) and s["avg_loss"] == pytest.approx(-7.5)
    assert s["expectancy"] == pytest.approx(5.0 / 3)
    assert s["best_trade"]["symbol"] == "A" and s["worst_trade"]["symbol"] == "B"
    assert s["pnl_by_symbol"] == pytest.approx({"A": 15.0, "B": -10.0})
    assert s["holding_bars_max"] == 1 and s["holding_bars_mean"] == pytest.approx(1.0)
    # averaged over the evaluation period only (bars 2..9): 0.096 on bar 2, 0.07 on bar 5
    assert s["gross_exposure_avg"] == pytest.approx((0.096 + 0.07) / 8)
    line = summary_line(s)
    assert "3 closed, 0 open" in line and "win rate 33.3%" in line and "profit factor 1.33" in line


def test_no_fills_and_no_losses():
    empty = round_trips(pd.DataFrame(columns=["time", "symbol", "side", "quantity", "price", "fee"]), CLOSE)
    assert list(empty.columns) == TRADE_COLUMNS and empty.empty
    s = trade_summary(empty, exposure(None, CLOSE, pd.Series(1.0, index=IDX)))
    assert s["n_trades"] == 0 and s["win_rate"] is None and s["profit_factor"] is None and s["best_trade"] is None
    assert s["gross_exposure_avg"] == 0.0
    assert "n/a" in summary_line(s)
    won = pd.DataFrame({"time": IDX[[0, 1]], "symbol": "A", "side": ["buy", "sell"], "quantity": 1.0,
                        "price": [10.0, 11.0], "fee": 0.0})
    assert trade_summary(round_trips(won, CLOSE))["profit_factor"] is None  # no loss: undefined, not infinite
