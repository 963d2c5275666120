"""qf.testing.FakeLiveBroker: an in-memory LiveBroker (fills, partial fills, rejections, restarts)."""

from __future__ import annotations

import json
from pathlib import Path

import backtrader as bt
import pandas as pd
import pytest
import yaml

from qf import hookimpl
from qf.components import DataSource, LiveBroker, LiveDataSource, Params
from qf.config.loader import load_experiment
from qf.config.schema import ExecutionSpec
from qf.errors import QfError
from qf.paper.feed import ReplaySource
from qf.paper.session import PaperOptions, run_paper
from qf.testing import FakeData, FakeLiveBroker, FakeLiveBrokerComponent, registry_with, sample_bars
from qf.testing.fake_broker import STATE_FILE

REF = "20240105_AAPL"


def statuses(broker: FakeLiveBroker) -> list[tuple[str, float]]:
    out = []
    while (n := broker.get_notification()) is not None:
        out.append((n.getstatusname(), n.executed.size))
    return out


@pytest.fixture
def aapl() -> FakeData:
    return FakeData("AAPL", 100.0, "2024-01-05")


def connected(cash: float = 10_000.0, **kwargs) -> FakeLiveBroker:
    broker = FakeLiveBroker(cash, **kwargs)
    broker.connect()
    return broker


def test_it_is_a_backtrader_live_broker_and_the_component_creates_it(tmp_path):
    broker = FakeLiveBrokerComponent({"partial": 0.5}).create(ExecutionSpec(initial_cash=25_000), state_dir=tmp_path)
    assert isinstance(broker, FakeLiveBroker) and isinstance(broker, bt.BrokerBase)
    assert isinstance(broker, LiveBroker)
    broker.connect()
    assert broker.getcash() == 25_000 and broker.partial == 0.5 and broker.state_file == tmp_path / STATE_FILE
    assert FakeLiveBrokerComponent({"cash": 7.0}).create(ExecutionSpec()).startingcash == 7.0


def test_a_market_buy_fills_at_the_given_price_on_the_next_loop(aapl):
    broker = connected()
    broker.set_prices({"AAPL": 101.5}, time="2024-01-08 09:30")
    order = broker.buy(None, aapl, 10, qf_ref=REF)
    assert order.status == order.Accepted and broker.ref_status(REF) == "open" and broker.open_refs() == [REF]
    assert broker.buying_power() == pytest.approx(10_000 - 1_015)  # the working buy commits its cost
    called = []
    broker.listeners.append(lambda: called.append(1))
    broker.next()
    assert called == [1] and broker.ref_status(REF) == "done" and broker.open_refs() == []
    assert broker.position_of("AAPL") == (0.0, 0.0)  # the strategy's view changes at sync, as with a real broker
    broker.sync()
    assert broker.position_of("AAPL") == (10.0, 101.5) and broker.getcash() == pytest.approx(8_985.0)
    assert broker.getvalue() == pytest.approx(10_000.0)
    assert statuses(broker) == [("Submitted", 0), ("Accepted", 0), ("Completed", 10.0)]
    fills = broker.fills_frame()
    assert fills.to_dict("records") == [{"time": pd.Timestamp("2024-01-08 09:30"), "symbol": "AAPL", "side": "buy",
                                         "quantity": 10.0, "price": 101.5, "fee": 0.0}]


def test_partial_fills_reach_the_backtrader_order(aapl):
    broker = connected(partial=0.25)
    order = broker.buy(None, aapl, 8, qf_ref=REF)  # no set price: the data's close
    broker.next()
    assert order.status == order.Partial and order.executed.size == 2 and broker.ref_status(REF) == "open"
    assert broker.view().open_orders[0].filled == 2.0
    for _ in range(3):
        broker.next()
    assert order.status == order.Completed and order.executed.size == 8 and order.executed.price == 100.0
    assert [s for s, _ in statuses(broker)] == ["Submitted", "Accepted", "Partial", "Partial", "Partial",
                                                 "Completed"]
    assert len(broker.fills_frame()) == 4
    broker.next()  # nothing left: no fifth fill
    assert len(broker.fills_frame()) == 4 and broker.positions == {"AAPL": (8.0, 100.0)}


def test_manual_fills_and_average_price(aapl):
    broker = connected(fill="manual")
    broker.buy(None, aapl, 10, qf_ref=REF)
    broker.next()
    assert broker.ref_status(REF) == "open"  # manual: nothing fills by itself
    broker.fill(REF, 4, price=100.0)
    broker.fill(REF, price=110.0)  # the rest
    assert broker.orders[f"fake-{REF}-1"].avg_price == pytest.approx(106.0)
    assert broker.positions["AAPL"] == (10.0, pytest.approx(106.0))
    with pytest.raises(ValueError, match="no working order"):
        broker.fill(REF)


def test_rejections_are_recorded_and_a_retry_gets_a_new_attempt(aapl):
    broker = connected(1_000.0, rejections={"MSFT": "asset is not tradable"})
    msft = broker.buy(None, FakeData("MSFT", 10.0), 1, qf_ref="20240105_MSFT")
    assert msft.status == msft.Rejected and broker.ref_status("20240105_MSFT") == "rejected"
    assert broker.orders["fake-20240105_MSFT-1"].reason == "asset is not tradable"
    too_big = broker.buy(None, aapl, 11, qf_ref=REF)  # 1,100 > 1,000 of buying power
    assert too_big.status == too_big.Rejected and "insufficient buying power" in broker.orders[f"fake-{REF}-1"].reason
    short = broker.sell(None, aapl, 1, qf_ref="20240105_AAPL_s")
    assert short.status == short.Rejected and "short" in broker.orders["fake-20240105_AAPL_s-1"].reason
    retry = broker.buy(None, aapl, 5, qf_ref=REF)
    assert retry.status == retry.Accepted and retry.info.qf_cid == f"fake-{REF}-2"
    broker.next()
    broker.sync()
    assert broker.position_of("AAPL") == (5.0, 100.0) and broker.ref_status(REF) == "done"


def test_a_restart_does_not_send_an_order_twice(tmp_path, aapl):
    first = connected(state_dir=tmp_path, fill="manual")
    first.buy(None, aapl, 10, qf_ref=REF)
    first.fill(REF, 3)
    # a crash: no disconnect, the process is gone; only the state folder remains
    second = connected(1.0, state_dir=tmp_path, fill="manual")  # the cash argument is ignored: the account persists
    assert second.ref_status(REF) == "open" and second.open_refs() == [REF]
    assert second.position_of("AAPL") == (3.0, 100.0) and second.getcash() == pytest.approx(9_700.0)
    again = second.buy(None, aapl, 10, qf_ref=REF)  # a restarted strategy that sends its decision again
    assert list(second.orders) == [f"fake-{REF}-1"] and again.info.qf_cid == f"fake-{REF}-1"
    second.fill(REF)
    second.sync()
    assert second.position_of("AAPL") == (10.0, 100.0) and again.status == again.Completed
    assert again.executed.size == 7  # the execution this process saw
    third = connected(state_dir=tmp_path)
    late = third.buy(None, aapl, 10, qf_ref=REF)  # the order filled meanwhile: refused, nothing changes
    assert late.status == late.Rejected and late.info.qf_duplicate and third.ref_status(REF) == "done"
    third.next()
    third.sync()
    assert third.position_of("AAPL") == (10.0, 100.0) and len(third.fills_frame()) == 2
    assert json.loads((tmp_path / STATE_FILE).read_text())["positions"] == {"AAPL": [10.0, 100.0]}


def test_kill_switch_persists_its_halt_and_closes_everything(tmp_path, aapl):
    broker = connected(state_dir=tmp_path)
    broker.buy(None, aapl, 10, qf_ref=REF)
    broker.next()
    working = broker.buy(None, FakeData("KO", 50.0), 2, qf_ref="20240105_KO")
    broker.set_prices({"AAPL": 90.0})
    broker.kill_switch("drawdown 10%", decision=pd.Timestamp("2024-01-05"))
    assert working.status == working.Canceled and broker.halted() == (True, "drawdown 10%")
    assert broker.positions == {} and broker.position_of("AAPL") == (0.0, 0.0)
    assert "fake-kill-20240105-AAPL-1" in broker.orders and broker.getcash() == pytest.approx(9_900.0)
    restarted = connected(state_dir=tmp_path)
    assert restarted.halted() == (True, "drawdown 10%")
    refused = restarted.buy(None, aapl, 1, qf_ref="20240108_AAPL")
    assert refused.status == refused.Rejected
    restarted.resume()
    assert connected(state_dir=tmp_path).halted() == (False, None)


def test_cancel_open_and_flatten(aapl):
    broker = connected(fill="manual")
    broker.buy(None, aapl, 10, qf_ref=REF)
    broker.fill(REF, 6)
    broker.cancel_open(timeout=1.0)
    assert broker.open_refs() == [] and broker.ref_status(REF) == "done"
    assert broker.orders[f"fake-{REF}-1"].status == "canceled"
    broker.set_prices({"AAPL": 120.0}, time="2024-01-09")
    assert broker.flatten(timeout=1.0) == 1
    assert broker.positions == {} and broker.getcash() == pytest.approx(10_000 + 6 * 20.0)
    assert broker.fills_frame()["side"].tolist() == ["buy", "sell"]


def test_it_refuses_to_trade_before_connect(aapl):
    broker = FakeLiveBroker()
    with pytest.raises(QfError, match="not connected"):
        broker.buy(None, aapl, 1, qf_ref=REF)
    with pytest.raises(QfError, match="not connected"):
        broker.ref_status(REF)
    with pytest.raises(ValueError, match="partial"):
        FakeLiveBroker(partial=0.0)


def test_a_damaged_state_file_is_one_clear_error(tmp_path):
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(QfError, match=f"{STATE_FILE}: not a fake live broker state"):
        FakeLiveBroker(state_dir=tmp_path).connect()


class _BuyOnce(bt.Strategy):
    def next(self):
        if len(self) == 2:
            self.buy(data=self.datas[0], size=5, qf_ref="20240103_X")


def test_cerebro_drives_it():
    idx = pd.bdate_range("2024-01-01", periods=5)
    close = [10.0, 11.0, 12.0, 13.0, 14.0]
    frame = pd.DataFrame({"open": [c - 0.5 for c in close], "high": 15.0, "low": 9.0, "close": close,
                          "volume": 1e6}, index=idx)
    broker = connected(1_000.0)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.setbroker(broker)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame), name="X")
    cerebro.addstrategy(_BuyOnce)
    cerebro.run()
    broker.sync()
    # sent at the second bar's close (11), filled at the next bar's open (11.5), as a market order after the close
    assert broker.position_of("X") == (5.0, 11.5) and broker.getcash() == pytest.approx(942.5)
    assert broker.fills_frame()["time"].tolist() == [pd.Timestamp("2024-01-03")]


# -- a paper session on the fake ----------------------------------------------------------------------------

class _ReplayLive(DataSource):
    """Synthetic OHLC bars that stream through a ReplaySource: a live data source without a network."""

    name = "replay_live"

    class Params(Params):
        symbols: list[str] = ["S0", "S1", "S2", "S3"]

    def load(self):
        return sample_bars(n_symbols=4, n_bars=90, seed=3)

    def live_source(self, min_history: int | None = 1, **options):
        return ReplaySource(self.load(), start=30 if min_history is None else min_history, speed=0.0)


class _Plugin:
    @hookimpl
    def qf_data_sources(self):
        return [_ReplayLive]

    @hookimpl
    def qf_brokers(self):
        return [FakeLiveBrokerComponent]


def _paper(folder: Path, state: Path, max_bars: int):
    doc = {"name": "fake_paper", "report": {"dir": str(folder / "reports"), "tearsheet": False},
           "data": {"type": "replay_live"}, "signal": {"type": "sma_cross", "params": {"fast": 5, "slow": 20}},
           "sizer": {"type": "inverse_vol", "params": {"window": 10}}, "rebalance": {"every": 3},
           "broker": {"type": "fake_live"}, "execution": {"engine": "backtrader", "fill": "next_open"}}
    path = folder / "fake_paper.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    exp = load_experiment(path, registry=registry_with(_Plugin()))
    run_paper(exp, PaperOptions(state_dir=state, max_bars=max_bars, order_timeout=2.0, write_report=False))
    return json.loads((state / STATE_FILE).read_text())


def test_a_paper_session_trades_on_it_and_a_restart_changes_nothing(tmp_path):
    assert isinstance(_ReplayLive({}), LiveDataSource)
    whole = _paper(tmp_path, tmp_path / "whole", 40)
    _paper(tmp_path, tmp_path / "split", 25)
    split = _paper(tmp_path, tmp_path / "split", 15)  # a second process resumes the same session
    refs = [o["ref"] for o in split["orders"]]
    assert len(refs) > 4 and len(set(refs)) == len(refs)  # one order per decision and symbol, none sent twice
    assert [o["client_order_id"] for o in split["orders"]] == [o["client_order_id"] for o in whole["orders"]]
    assert split["positions"] == pytest.approx(whole["positions"]) and split["cash"] == pytest.approx(whole["cash"])
