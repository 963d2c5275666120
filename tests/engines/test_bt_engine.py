"""The backtrader engine's parts: numpy feed, commission, slippage, cash fitting, fill timing, errors,
the parity report and the ``qf parity`` command."""

from __future__ import annotations

from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from qf.bars import Bars, validate
from qf.config.loader import Source, build
from qf.config.schema import ExecutionSpec
from qf.engines.backtrader.commission import QfCommission
from qf.engines.backtrader.feed import NumpyData, date_numbers, feeds_from_bars, ohlcv_array
from qf.engines.backtrader.strategy import fit_to_cash, run_backtrader
from qf.engines.result import ORDER_COLUMNS, EngineResult
from qf.engines.vectorbt import run_vectorbt
from qf.errors import QfError
from qf.parity import compare, match_orders


def arch_bars(n: int = 300, late: int = 0) -> Bars:
    """arch's S&P 500 and NASDAQ OHLCV (real data), the NASDAQ listed only from bar ``late`` on."""
    from arch.data import nasdaq, sp500

    raw = {"SP500": sp500.load().iloc[:n], "NASDAQ": nasdaq.load().iloc[:n]}
    fields = {f: pd.DataFrame({s: df[f.capitalize()] for s, df in raw.items()}).astype(float)
              for f in ("open", "high", "low", "close", "volume")}
    for f in fields.values():
        f.iloc[:late, 1] = np.nan
    return validate(Bars(**fields, source="arch"))


def line_values(data) -> list[tuple[float, ...]]:
    return [tuple(getattr(data.lines, n)[0] for n in ("datetime", "open", "high", "low", "close", "volume"))]


class Recorder(bt.Strategy):
    def __init__(self) -> None:
        self.rows: list[list[tuple[float, ...]]] = []

    def next(self) -> None:
        self.rows.append([v for d in self.datas for v in line_values(d)])


def record(feeds, preload: bool) -> list:
    cerebro = bt.Cerebro(stdstats=False, preload=preload, runonce=preload)
    for f in feeds:
        cerebro.adddata(f)
    cerebro.addstrategy(Recorder)
    return cerebro.run()[0].rows


@pytest.mark.parametrize("preload", [True, False], ids=["preload", "bar-by-bar"])
def test_numpy_feed_delivers_what_pandas_data_does(preload):
    bars = arch_bars(120, late=30)
    pandas_feeds = []
    for k, sym in enumerate(bars.symbols):
        frame = pd.DataFrame(ohlcv_array(bars, k), index=bars.index, columns=["open", "high", "low", "close", "volume"])
        pandas_feeds.append(bt.feeds.PandasData(dataname=frame, name=sym, openinterest=None))
    ours = record(feeds_from_bars(bars), preload)
    theirs = record(pandas_feeds, preload)
    assert len(ours) == len(theirs) == 120
    np.testing.assert_array_equal(np.array(ours), np.array(theirs))  # NaN == NaN here
    assert np.isnan(np.array(ours)[:30, 1, 4]).all() and not np.isnan(np.array(ours)[30:, 1, 4]).any()


def test_close_only_feed_has_flat_bars_and_no_volume():
    idx = pd.bdate_range("2024-01-01", periods=4)
    bars = validate(Bars(close=pd.DataFrame({"A": [1.0, 2.0, 3.0, 4.0]}, index=idx)))
    arr = ohlcv_array(bars, 0)
    assert (arr[:, :4] == bars.close.to_numpy()).all() and (arr[:, 4] == 0).all()
    assert date_numbers(idx)[0] == bt.date2num(idx[0].to_pydatetime())


def test_numpy_feed_rejects_a_misshapen_array():
    with pytest.raises(ValueError, match=r"\(3, 5\)"):
        NumpyData(dataname="X", datenums=np.arange(3.0), ohlcv=np.ones((3, 4)))


def test_commission_is_rate_times_value_plus_fixed_once_per_order():
    comm = QfCommission(commission=0.001, fixed=1.0)
    assert comm.getcommission(10, 50.0) == pytest.approx(1.5)
    assert comm.getcommission(-10, 50.0) == pytest.approx(1.5)

    class Flip(bt.Strategy):
        def next(self) -> None:
            if len(self) == 1:
                self.buy(size=10)
            elif len(self) == 3:
                self.sell(size=25)  # long 10 -> short 15: two legs, one order, one fixed fee

        def notify_order(self, order) -> None:
            if order.status == order.Completed:
                self.fills.append((order.executed.size, order.executed.price, order.executed.comm))

    idx = pd.bdate_range("2024-01-01", periods=6)
    px = np.array([100.0, 101.0, 102.0, 103.0, 104.0, 105.0])
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(NumpyData(dataname="X", datenums=date_numbers(idx), ohlcv=np.column_stack([px] * 4 + [px * 0])))
    cerebro.broker.setcash(10_000.0)
    cerebro.broker.addcommissioninfo(QfCommission(commission=0.001, fixed=1.0))
    Flip.fills = []
    cerebro.addstrategy(Flip)
    cerebro.run()
    (s1, p1, c1), (s2, p2, c2) = Flip.fills
    assert (s1, s2) == (10, -25)
    assert c1 == pytest.approx(10 * p1 * 0.001 + 1.0, rel=1e-15)
    assert c2 == pytest.approx(25 * p2 * 0.001 + 1.0, rel=1e-15)


def tiny(close: list[float], **fields: list[float]) -> Bars:
    idx = pd.bdate_range("2024-01-01", periods=len(close))
    frames = {"close": pd.DataFrame({"A": close}, index=idx)}
    frames |= {k: pd.DataFrame({"A": v}, index=idx) for k, v in fields.items()}
    return validate(Bars(**frames, source="tiny"))


def test_slippage_is_not_capped_to_the_bar_range():
    # close-only bars have high == low == close, so a capped slippage would fill at the close itself
    bars = tiny([100.0, 100.0, 110.0, 120.0, 120.0])
    targets = pd.DataFrame({"A": [1.0, 0.0]}, index=bars.index[[0, 2]])
    ex = ExecutionSpec(fill="next_close", slippage=0.01, initial_cash=10_000.0)
    res = run_backtrader(bars, targets, None, ex)
    buy, sell = res.orders.itertuples(index=False)
    assert (buy.side, sell.side) == ("buy", "sell")
    assert buy.price == 100.0 * 1.01 and sell.price == 120.0 * 0.99
    assert buy.time == bars.index[1] and sell.time == bars.index[3]


@pytest.mark.parametrize("fill", ["next_open", "next_close", "close"])
def test_fill_timing_and_the_last_bar(fill):
    bars = tiny([10.0, 11.0, 12.0, 13.0], open=[9.5, 10.5, 11.5, 12.5], high=[10.5, 11.5, 12.5, 13.5],
                low=[9.0, 10.0, 11.0, 12.0])
    targets = pd.DataFrame({"A": [0.5, 1.0]}, index=bars.index[[1, 3]])  # decisions at bar 1 and the last bar
    ex = ExecutionSpec(fill=fill, initial_cash=1_000.0)
    res = run_backtrader(bars, targets, None, ex)
    ref = run_vectorbt(bars, targets, None, ex)
    assert compare(ref, res).ok
    if fill == "close":
        # decided and filled at the close of the same bar; the last bar's decision fills too
        assert list(res.orders["time"]) == [bars.index[1], bars.index[3]]
        assert list(res.orders["price"]) == [11.0, 13.0]
    else:
        # the next bar's open or close; a decision on the last bar has no next bar, so no fill
        assert list(res.orders["time"]) == [bars.index[2]]
        assert res.orders["price"].iloc[0] == (11.5 if fill == "next_open" else 12.0)
    assert res.orders["quantity"].iloc[0] == pytest.approx(500.0 / res.orders["price"].iloc[0])
    assert res.equity.iloc[0] == 1_000.0


def test_fractional_and_integer_quantities():
    bars = tiny([33.0, 34.0, 35.0])
    targets = pd.DataFrame({"A": [1.0]}, index=bars.index[[0]])
    frac = run_backtrader(bars, targets, None, ExecutionSpec(fill="close", initial_cash=1_000.0))
    whole = run_backtrader(bars, targets, None,
                           ExecutionSpec(fill="close", initial_cash=1_000.0, fractional=False))
    assert frac.orders["quantity"].iloc[0] == pytest.approx(1_000.0 / 33.0, rel=1e-11)
    assert whole.orders["quantity"].iloc[0] == 30.0
    assert whole.equity.iloc[0] == pytest.approx(1_000.0)


def test_full_investment_without_costs_is_never_refused():
    # weights summing to 1 without fees or slippage: the buys spend the cash to the last cent, where
    # backtrader's cash check and the planner's arithmetic can disagree in the last bits
    from skfolio.datasets import load_sp500_dataset

    close = load_sp500_dataset().iloc[-300:].rename_axis(index=None, columns=None)
    bars = validate(Bars(close=close, source="skfolio"))
    w = pd.DataFrame(1.0 / 20, index=bars.index[::5], columns=bars.symbols)
    ex = ExecutionSpec(fill="close")
    res = run_backtrader(bars, w, None, ex)
    assert compare(run_vectorbt(bars, w, None, ex), res).ok
    assert len(res.orders) >= 20 * 50


def test_fit_to_cash_trims_only_rounding_shortfalls():
    prices = np.array([100.0])
    held = [(0.0, 0.0)]
    order = np.array([0])
    sizes = np.array([1.0 + 1e-15])  # costs a hair more than the 100.0 of cash
    fit_to_cash(sizes, order, 100.0, prices, held, 0.0, 0.0, 0.0, False, tolerance=1e-7)
    assert sizes[0] < 1.0 + 1e-15 and 100.0 - sizes[0] * 100.0 >= 0 and sizes[0] == pytest.approx(1.0, rel=1e-13)
    sizes = np.array([1.0])
    fit_to_cash(sizes, order, 99.999999999999, prices, held, 0.0, 0.0, 0.0, True, tolerance=1e-7)
    assert sizes[0] == 0.0  # integer mode gives up a whole share
    sizes = np.array([2.0])
    with pytest.raises(QfError, match="planner bug"):
        fit_to_cash(sizes, order, 100.0, prices, held, 0.0, 0.0, 0.0, False, tolerance=1e-7)
    # a sale's proceeds fund the buy that follows it
    sizes = np.array([-1.0, 2.0])
    fit_to_cash(sizes, np.array([0, 1]), 0.0, np.array([200.0, 100.0]), [(1.0, 150.0), (0.0, 0.0)], 0.0, 0.0, 0.0,
                False, tolerance=1e-7)
    assert list(sizes) == [-1.0, 2.0]


def test_usage_errors_are_qf_errors():
    bars = tiny([1.0, 2.0, 3.0])
    targets = pd.DataFrame({"A": [1.0]}, index=bars.index[[0]])
    with pytest.raises(QfError, match="targets or an experiment"):
        run_backtrader(bars)
    with pytest.raises(QfError, match="open prices"):
        run_backtrader(bars, targets, None, ExecutionSpec(fill="next_open"))

    class Odd:
        def create(self, execution):
            return object()

    with pytest.raises(QfError, match="simulated broker"):
        run_backtrader(bars, targets, None, ExecutionSpec(fill="close"), broker=Odd())

    class Rich:
        def create(self, execution):
            b = bt.brokers.BackBroker()
            b.setcash(5.0)
            return b

    with pytest.raises(QfError, match="initial_cash"):
        run_backtrader(bars, targets, None, ExecutionSpec(fill="close"), broker=Rich())


def result(equity: list[float], orders: list[tuple]) -> EngineResult:
    idx = pd.bdate_range("2024-01-01", periods=len(equity))
    o = pd.DataFrame([(idx[t], *rest) for t, *rest in orders], columns=ORDER_COLUMNS)
    return EngineResult("x", pd.Series(equity, index=idx, dtype=float), o)


def test_compare_finds_divergence_and_unmatched_orders():
    base = [(1, "A", "buy", 10.0, 100.0, 1.0), (2, "B", "sell", 5.0, 50.0, 0.5)]
    a = result([100.0, 100.0, 101.0, 102.0], base)
    same = compare(a, result([100.0, 100.0, 101.0, 102.0 * (1 + 1e-12)], base))
    assert same.ok and same.first_divergence is None and same.matched == 2
    off = compare(a, result([100.0, 100.0, 101.5, 102.5], base[:1] + [(2, "B", "sell", 6.0, 50.0, 0.5)]))
    assert not off.ok
    assert off.first_divergence == a.equity.index[2]
    assert off.final_rel_diff == pytest.approx(0.5 / 102.5)
    assert off.matched == 1 and len(off.unmatched_a) == 1 and off.unmatched_b["quantity"].iloc[0] == 6.0


def test_small_rebalancing_trades_match_on_their_worth():
    # a trim is the difference of two close position sizes: a relative error of 1e-8 in it is worth
    # far less than 1e-9 of the equity, so it matches; a large relative error in a large order does not
    a = pd.DataFrame([(pd.Timestamp("2024-01-02"), "A", "sell", 0.001, 100.0, 0.0)], columns=ORDER_COLUMNS)
    b = a.assign(quantity=0.001 * (1 + 1e-8))
    equity = pd.Series([1e6], index=[pd.Timestamp("2024-01-02")])
    assert len(match_orders(a, b, 1e-9)[0]) == 0
    assert len(match_orders(a, b, 1e-9, equity)[0]) == 1
    assert len(match_orders(a, a.assign(quantity=10.0), 1e-9, equity)[0]) == 0


def write_experiment(tmp_path: Path, **execution) -> Path:
    raw = {
        "name": "parity_cli",
        "data": {"type": "sample", "params": {"dataset": "sp500_20", "symbols": ["AAPL", "KO", "XOM"],
                                               "start": "2019-01-01", "end": "2019-12-31"}},
        "signal": {"type": "constant"},
        "sizer": {"type": "equal"},
        "rebalance": {"freq": "month_end"},
        "execution": {"fill": "next_close", "fees": 0.001, **execution},
        "report": {"dir": str(tmp_path / "reports"), "tearsheet": False},
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def cli() -> typer.Typer:
    from qf.cli.parity import parity

    app = typer.Typer()
    app.command()(parity)
    app.command("noop")(lambda: None)  # two commands: typer then takes the command name as in `qf parity`
    return app


def test_parity_command_agrees_and_exits_zero(tmp_path):
    res = CliRunner().invoke(cli(), ["parity", str(write_experiment(tmp_path)), "--set", "execution.slippage=0.001"])
    assert res.exit_code == 0, res.output
    assert "final equity" in res.output and "the engines agree" in res.output
    assert not (tmp_path / "reports").exists()  # nothing written


def test_parity_command_exits_one_when_the_engines_differ(tmp_path, monkeypatch):
    import qf.runner

    real = qf.runner.run_experiment

    def skewed(exp, engine=None, write=True, **kw):
        outcome = real(exp, engine=engine, write=write, **kw)
        if engine == "backtrader":
            outcome.result.equity = outcome.result.equity * (1 + 1e-6)
        return outcome

    monkeypatch.setattr(qf.runner, "run_experiment", skewed)
    res = CliRunner().invoke(cli(), ["parity", str(write_experiment(tmp_path)), "--tolerance", "1e-9"])
    assert res.exit_code == 1, res.output
    assert "differ" in res.output


def test_parity_command_reports_user_errors_with_exit_two(tmp_path):
    res = CliRunner().invoke(cli(), ["parity", str(write_experiment(tmp_path)), "--set", "execution.fill=soon"])
    assert res.exit_code == 2
    assert "execution.fill" in res.output


def test_run_with_the_backtrader_engine_writes_the_report(tmp_path):
    from qf.config.loader import load_experiment
    from qf.runner import run_experiment

    exp = load_experiment(write_experiment(tmp_path, engine="backtrader"))
    outcome = run_experiment(exp, out=tmp_path / "run")
    assert outcome.result.engine == "backtrader"
    orders = pd.read_csv(tmp_path / "run" / "orders.csv")
    assert list(orders.columns) == ORDER_COLUMNS and len(orders) >= 3
    assert (tmp_path / "run" / "equity.parquet").exists() and (tmp_path / "run" / "risk_events.csv").exists()


def test_default_broker_matches_the_sim_plugin():
    exp = build({"name": "b", "data": {"type": "sample", "params": {"dataset": "sp500_20", "symbols": ["KO", "PG"],
                                                                     "start": "2019-01-01", "end": "2019-06-30"}},
                 "signal": {"type": "constant"}, "sizer": {"type": "equal"}, "rebalance": {"freq": "weekly"},
                 "execution": {"fill": "close", "fees": 0.001, "fixed_fees": 1.0}}, Source("t.yaml"), None)
    from qf.pipeline import compute_targets

    bars = exp.data.load()
    tg = compute_targets(exp, bars)
    plugin = run_backtrader(bars, tg.targets, tg.risk, exp.spec.execution, broker=exp.broker)
    default = run_backtrader(bars, tg.targets, tg.risk, exp.spec.execution)
    pd.testing.assert_frame_equal(plugin.orders, default.orders)
    pd.testing.assert_series_equal(plugin.equity, default.equity)
