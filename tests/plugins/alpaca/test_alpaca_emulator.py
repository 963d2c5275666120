"""The loopback Alpaca emulator, exercised with the real, unmodified alpaca-py clients.

Every payload is checked twice: by alpaca-py's pydantic models (what the SDK actually parses) and by
the pinned OpenAPI specs in tests/fixtures/alpaca_openapi (what Alpaca documents).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.models import BarSet
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Calendar, Clock, ClosePositionResponse, Order, Position, TradeAccount, TradeUpdate
from alpaca.trading.requests import (
    CancelOrderResponse,
    ClosePositionRequest,
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    StopLossRequest,
    TakeProfitRequest,
)
from alpaca.trading.stream import TradingStream
from openapi_schema_validator import OAS30Validator

from qf.testing.waiting import wait_for
from qf_plugins.alpaca.emulator import AlpacaEmulator, ManualClock
from qf_plugins.alpaca.emulator.cli import serve
from qf_plugins.alpaca.emulator.faults import FaultPlan

KEY = "PKTESTKEY1234567890"
SECRET = "sk-test-secret-abcdefghijklmnopqrstuvwxyz"
REFERENCE = Path(__file__).resolve().parents[2] / "fixtures" / "alpaca_openapi"


def _spec(name: str) -> dict[str, Any]:
    return json.loads((REFERENCE / name).read_text())


@pytest.fixture(scope="module")
def trading_spec() -> dict[str, Any]:
    return _spec("alpaca-trading-api.openapi.json")


@pytest.fixture(scope="module")
def data_spec() -> dict[str, Any]:
    return _spec("alpaca-market-data-api.openapi.json")


def oas_check(spec: dict[str, Any], schema: str, instance: Any) -> None:
    root = {"$ref": f"#/components/schemas/{schema}", "components": spec["components"]}
    OAS30Validator(root, format_checker=OAS30Validator.FORMAT_CHECKER).validate(instance)


@pytest.fixture
def emu() -> Iterator[AlpacaEmulator]:
    emulator = AlpacaEmulator(api_key=KEY, secret_key=SECRET, fill_mode="scripted", seed=3)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


def trading(emu: AlpacaEmulator, raw: bool = False) -> TradingClient:
    client = TradingClient(KEY, SECRET, raw_data=raw, url_override=emu.rest_url)
    client._retry_wait = 0.01  # the SDK's 3 s sleeps would dominate the suite
    return client


def market(symbol: str = "AAPL", qty: float = 10, side: str = "buy", **kw: Any) -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=OrderSide(side), time_in_force=TimeInForce.DAY, **kw)


# ---------------------------------------------------------------------------------- payloads


def test_payloads_validate_against_sdk_models_and_openapi(emu: AlpacaEmulator, trading_spec: dict) -> None:
    raw = trading(emu, raw=True)
    emu.set_quote("AAPL", 100, 100.02)
    body = raw.submit_order(LimitOrderRequest(
        symbol="AAPL", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=101,
        order_class="bracket", take_profit=TakeProfitRequest(limit_price=110),
        stop_loss=StopLossRequest(stop_price=95), client_order_id="bracket-1"))
    order = Order(**body)
    assert order.legs is not None and len(order.legs) == 2
    oas_check(trading_spec, "Order", body)
    for leg in body["legs"]:
        oas_check(trading_spec, "OrderLeg", leg)
    emu.fill(body["id"], 10, 100.5)
    account = raw.get_account()
    TradeAccount(**account)
    oas_check(trading_spec, "Account", account)
    assert "pattern_day_trader" not in account  # retired 2026-07-06 (docs/alpaca.md, *The emulator*)
    positions = raw.get_all_positions()
    assert [Position(**p).symbol for p in positions] == ["AAPL"]
    for p in positions:
        oas_check(trading_spec, "Position", p)
    clock = raw.get_clock()
    Clock(**clock)
    oas_check(trading_spec, "legacy_clock", clock)
    calendar = raw.get_calendar()
    assert calendar and all(Calendar(**c).open.hour == 9 for c in calendar)
    oas_check(trading_spec, "legacy_calendar_day", calendar[0])
    asset = raw.get_asset("BRK.A")
    assert asset["fractionable"] is False
    oas_check(trading_spec, "Assets", asset)
    assert trading(emu).get_asset("AAPL").fractionable is True
    for o in raw.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, nested=True)):
        Order(**o)
        oas_check(trading_spec, "Order", o)
    events = [TradeUpdate(**m["data"]) for m in emu.state.events]
    assert {e.event for e in events} >= {"new", "fill"}


def test_bars_payload_parses_with_sdk_and_openapi(emu: AlpacaEmulator, data_spec: dict) -> None:
    client = StockHistoricalDataClient(KEY, SECRET, url_override=emu.rest_url)
    request = StockBarsRequest(symbol_or_symbols=["AAPL", "MSFT"], timeframe=TimeFrame.Day,
                               start=datetime(2024, 1, 1), end=datetime(2024, 1, 31))
    bars = client.get_stock_bars(request)
    assert isinstance(bars, BarSet) and len(bars.data["AAPL"]) == 22 and len(bars.data["MSFT"]) == 22
    page = requests.get(f"{emu.rest_url}/v2/stocks/bars", params={
        "symbols": "AAPL", "timeframe": "1Day", "start": "2024-01-01T00:00:00Z", "end": "2024-01-10T00:00:00Z"},
        headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}, timeout=5).json()
    oas_check(data_spec, "stock_bars_resp", page)
    assert page["bars"]["AAPL"][0]["t"] == "2024-01-01T05:00:00Z"  # midnight New York, like Alpaca


def test_extra_fields_are_tolerated_by_the_sdk(trading_spec: dict) -> None:
    with AlpacaEmulator(api_key=KEY, secret_key=SECRET, fill_mode="scripted",
                        extra_order_fields={"subtag": None, "source": "emulator", "new_thing": {"x": 1}}) as emu:
        order = trading(emu).submit_order(market())
        assert order.symbol == "AAPL"
        raw = trading(emu, raw=True).get_order_by_id(str(order.id))
        assert raw["new_thing"] == {"x": 1}
        oas_check(trading_spec, "Order", raw)


# ---------------------------------------------------------------------------------- orders API


def test_get_orders_filters_paging_and_limits(emu: AlpacaEmulator) -> None:
    client = trading(emu)
    ids = [str(client.submit_order(market(qty=1, client_order_id=f"o-{i}")).id) for i in range(6)]
    client.submit_order(market(symbol="MSFT", qty=1, client_order_id="m-0"))
    emu.fill(ids[0], 1, 100)
    client.cancel_order_by_id(ids[1])
    assert len(client.get_orders()) == 5  # default status=open
    assert {str(o.id) for o in client.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED))} == set(ids[:2])
    assert len(client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=3))) == 3
    msft = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, symbols=["MSFT"]))
    assert [o.client_order_id for o in msft] == ["m-0"]
    every = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, direction="asc"))
    assert [o.client_order_id for o in every][:2] == ["o-0", "o-1"]
    pivot = every[3].submitted_at
    older = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, until=pivot))
    newer = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, after=pivot))
    assert len(older) == 3 and len(newer) == 3  # both bounds exclusive
    assert [o.side for o in client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, side="sell"))] == []
    with pytest.raises(APIError) as err:
        client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=501))
    assert err.value.status_code == 422


def test_client_order_id_lookup_uniqueness_and_length(emu: AlpacaEmulator) -> None:
    client = trading(emu)
    order = client.submit_order(market(client_order_id="dup-1"))
    assert client.get_order_by_client_id("dup-1").id == order.id
    with pytest.raises(APIError) as missing:
        client.get_order_by_client_id("nope")
    assert missing.value.status_code == 404
    client.cancel_order_by_id(order.id)
    with pytest.raises(APIError) as dup:  # still "must be unique" after a cancel (alpaca-py #260)
        client.submit_order(market(client_order_id="dup-1"))
    assert dup.value.status_code == 422 and "unique" in dup.value.message
    with pytest.raises(APIError) as too_long:
        client.submit_order(market(client_order_id="x" * 129))
    assert too_long.value.status_code == 422


def test_cancel_semantics_single_all_and_nested_brackets(emu: AlpacaEmulator) -> None:
    client, raw = trading(emu), trading(emu, raw=True)
    a = client.submit_order(market(client_order_id="a"))
    assert client.cancel_order_by_id(a.id) is None  # 204 with an empty body
    with pytest.raises(APIError) as again:
        client.cancel_order_by_id(a.id)
    assert again.value.status_code == 422
    with pytest.raises(APIError) as unknown:
        client.cancel_order_by_id("00000000-0000-4000-8000-000000000000")
    assert unknown.value.status_code == 404
    bracket = client.submit_order(LimitOrderRequest(
        symbol="AAPL", qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=100,
        order_class="bracket", take_profit=TakeProfitRequest(limit_price=120),
        stop_loss=StopLossRequest(stop_price=90)))
    assert [leg.status for leg in bracket.legs] == ["held", "held"]
    nested = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, nested=True))
    assert len(nested) == 1 and len(nested[0].legs) == 2
    flat = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    assert len(flat) == 3 and all(o.legs is None for o in flat)
    client.submit_order(market(client_order_id="b"))
    result = raw.cancel_orders()
    assert {r["status"] for r in result} == {200} and len(result) == 4  # parent, 2 legs, "b"
    assert [CancelOrderResponse(**r).status for r in result] == [200] * 4
    assert client.get_orders() == []
    status = requests.delete(f"{emu.rest_url}/v2/orders", headers={"APCA-API-KEY-ID": KEY,
                             "APCA-API-SECRET-KEY": SECRET}, timeout=5).status_code
    assert status == 207


def test_positions_close_and_close_all_207(emu: AlpacaEmulator, trading_spec: dict) -> None:
    client, raw = trading(emu), trading(emu, raw=True)
    emu.set_quote("AAPL", 100, 100.02)
    emu.set_quote("MSFT", 50, 50.02)
    emu.fill(str(client.submit_order(market(qty=10)).id), price=100)
    emu.fill(str(client.submit_order(market(symbol="MSFT", qty=4)).id), price=50)
    assert client.get_open_position("AAPL").qty == "10"
    partial = client.close_position("AAPL", ClosePositionRequest(qty="4"))
    assert partial.side == "sell" and float(partial.qty) == 4
    emu.fill(str(partial.id))
    assert client.get_open_position("AAPL").qty == "6"
    client.submit_order(LimitOrderRequest(symbol="MSFT", qty=1, side=OrderSide.BUY,
                                          time_in_force=TimeInForce.DAY, limit_price=1))
    results = raw.close_all_positions(cancel_orders=True)
    assert sorted(r["symbol"] for r in results) == ["AAPL", "MSFT"]
    for r in results:
        assert r["status"] == 200 and "body" in r
        oas_check(trading_spec, "PositionClosedReponse", r)
        ClosePositionResponse(**r)
    assert emu.requests[-1].query == {"cancel_orders": "True"}  # the SDK capitalises booleans
    assert client.get_orders() != [] and all(o.side == "sell" for o in client.get_orders())
    with pytest.raises(APIError) as none:
        client.get_open_position("TSLA")
    assert none.value.status_code == 404


def test_close_all_reports_failures_with_a_body(emu: AlpacaEmulator) -> None:
    emu.state.set_position("AAPL", 5, 100)
    client = trading(emu)
    client.submit_order(LimitOrderRequest(symbol="AAPL", qty=5, side=OrderSide.SELL,
                                          time_in_force=TimeInForce.DAY, limit_price=500))
    results = client.close_all_positions(cancel_orders=False)  # shares are held by the open sell
    assert results[0].status == 403 and results[0].body.code == 40310000


def test_paper_fill_semantics_random_mode_is_seeded() -> None:
    def run() -> list[str]:
        with AlpacaEmulator(api_key=KEY, secret_key=SECRET, seed=11, partial_fill_prob=0.5) as emu:
            emu.set_quote("AAPL", 100, 100.02)
            client = trading(emu)
            ids = [str(client.submit_order(market(qty=10)).id) for _ in range(6)]
            wait_for(lambda: all(client.get_order_by_id(i).status == "filled" for i in ids), 5)
            # the seed fixes each order's fill sequence; how orders interleave depends on thread timing
            per_order: dict[str, list[str]] = {i: [] for i in ids}
            for m in emu.state.events:
                if m["data"]["event"] in ("fill", "partial_fill"):
                    per_order[str(m["data"]["order"]["id"])].append(m["data"]["event"] + ":" + m["data"].get("qty", ""))
            return [per_order[i] for i in ids]
    first = run()
    assert first == run()
    assert any(e.startswith("partial_fill") for seq in first for e in seq)


def test_limit_and_stop_orders_fill_only_when_marketable(emu: AlpacaEmulator) -> None:
    emu.state.fill_mode = "random"
    emu.state.partial_fill_prob = 0.0
    emu.set_quote("AAPL", 100, 100.02)
    client = trading(emu)
    limit = client.submit_order(LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                  time_in_force=TimeInForce.DAY, limit_price=99))
    time.sleep(0.1)
    assert client.get_order_by_id(limit.id).status == "new"
    emu.set_quote("AAPL", 98.9, 98.95)
    wait_for(lambda: client.get_order_by_id(limit.id).status == "filled")
    assert float(client.get_order_by_id(limit.id).filled_avg_price) == 98.95


def test_market_closed_and_opg_cls_windows() -> None:
    clock = ManualClock("2024-01-09T13:00:00Z")  # Tuesday 08:00 New York
    with AlpacaEmulator(api_key=KEY, secret_key=SECRET, clock=clock, market_open=None,
                        partial_fill_prob=0.0) as emu:
        emu.set_quote("AAPL", 100, 100.02)
        client = trading(emu)
        assert client.get_clock().is_open is False
        day = client.submit_order(market(qty=1))
        opg = client.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                     time_in_force=TimeInForce.OPG))
        assert day.status == opg.status == "accepted"
        emu.set_clock("2024-01-09T14:31:00Z")
        wait_for(lambda: client.get_order_by_id(day.id).status == "filled")
        assert client.get_order_by_id(opg.id).status == "filled"
        with pytest.raises(APIError) as late_opg:
            client.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                   time_in_force=TimeInForce.OPG))
        assert late_opg.value.status_code == 422
        cls = client.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                     time_in_force=TimeInForce.CLS))
        resting = client.submit_order(LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                        time_in_force=TimeInForce.DAY, limit_price=1))
        emu.set_clock("2024-01-09T20:52:00Z")  # 15:52, inside the CLS rejection window
        with pytest.raises(APIError):
            client.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                   time_in_force=TimeInForce.CLS))
        emu.set_clock("2024-01-09T21:00:01Z")  # the close: CLS fills, DAY orders expire
        wait_for(lambda: client.get_order_by_id(cls.id).status == "filled")
        wait_for(lambda: client.get_order_by_id(resting.id).status == "expired")


def test_fractional_and_notional_rules(emu: AlpacaEmulator) -> None:
    client = trading(emu)
    emu.set_quote("AAPL", 100, 100.02)
    assert client.submit_order(market(qty=1.5)).qty == "1.5"
    notional = client.submit_order(MarketOrderRequest(symbol="AAPL", notional=150, side=OrderSide.BUY,
                                                      time_in_force=TimeInForce.DAY))
    assert notional.qty is None and notional.notional == "150"
    filled = emu.fill(str(notional.id), price=100)
    assert filled["filled_qty"] == "1.5"
    for bad in (market(symbol="BRK.A", qty=1.5),
                MarketOrderRequest(symbol="BRK.A", notional=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)):
        with pytest.raises(APIError) as err:
            client.submit_order(bad)
        assert err.value.status_code == 403 and "fractionable" in err.value.message
    with pytest.raises(APIError) as gtc:
        client.submit_order(MarketOrderRequest(symbol="AAPL", qty=0.5, side=OrderSide.BUY,
                                               time_in_force=TimeInForce.GTC))
    assert gtc.value.status_code == 422
    with pytest.raises(APIError) as decimals:
        client.submit_order(market(qty=0.0000000001))
    assert decimals.value.status_code == 422
    emu.state.fractional_order_types = frozenset({"market"})
    with pytest.raises(APIError):
        client.submit_order(LimitOrderRequest(symbol="AAPL", qty=0.5, side=OrderSide.BUY,
                                              time_in_force=TimeInForce.DAY, limit_price=99))


def test_bracket_legs_held_then_one_fills_and_the_other_cancels(emu: AlpacaEmulator) -> None:
    client = trading(emu)
    emu.state.fill_mode = "random"
    emu.state.partial_fill_prob = 0.0
    emu.set_quote("AAPL", 100, 100.02)
    parent = client.submit_order(market(qty=10, order_class="bracket", take_profit=TakeProfitRequest(limit_price=105),
                                        stop_loss=StopLossRequest(stop_price=95)))
    wait_for(lambda: client.get_order_by_id(parent.id).status == "filled")
    legs = {leg.type: leg for leg in client.get_order_by_client_id(parent.client_order_id).legs}
    assert {leg.status for leg in legs.values()} == {"new"}
    emu.set_quote("AAPL", 94.5, 94.6)
    wait_for(lambda: client.get_order_by_id(legs["stop"].id).status == "filled")
    assert client.get_order_by_id(legs["limit"].id).status == "canceled"
    assert client.get_all_positions() == []


def test_partial_take_profit_resizes_the_stop_and_short_rules(emu: AlpacaEmulator) -> None:
    client = trading(emu)
    emu.set_quote("AAPL", 100, 100.02)
    parent = client.submit_order(market(qty=10, order_class="bracket", take_profit=TakeProfitRequest(limit_price=105),
                                        stop_loss=StopLossRequest(stop_price=95)))
    emu.fill(str(parent.id), 10, 100)
    legs = {leg.type: leg for leg in client.get_order_by_id(parent.id, GetOrderByIdRequest(nested=True)).legs}
    emu.fill(str(legs["limit"].id), 4, 105)
    assert client.get_order_by_id(legs["stop"].id).qty == "6"
    assert client.get_open_position("AAPL").qty == "6"
    # shorting: allowed on a shortable asset with no position, refused on a non-shortable one
    short = client.submit_order(market(symbol="TSLA", qty=3, side="sell"))
    emu.fill(str(short.id), price=200)
    assert client.get_open_position("TSLA").side == "short"
    with pytest.raises(APIError) as err:
        client.submit_order(market(symbol="BRK.A", qty=1, side="sell"))
    assert err.value.status_code == 403 and "insufficient qty" in err.value.message


def test_generic_reject_rule_replaces_pdt(emu: AlpacaEmulator) -> None:
    from qf_plugins.alpaca.emulator import ApiError

    emu.state.reject_rule = lambda p: ApiError(403, 40310100, "trade denied by rule") if p["symbol"] == "TSLA" else None
    client = trading(emu)
    with pytest.raises(APIError) as err:
        client.submit_order(market(symbol="TSLA"))
    assert err.value.status_code == 403 and err.value.code == 40310100
    client.submit_order(market(symbol="AAPL"))


# ---------------------------------------------------------------------------------- transport


def test_auth_errors_and_forbidden_body_breaks_sdk_code(emu: AlpacaEmulator) -> None:
    bad = TradingClient(KEY, "wrong", url_override=emu.rest_url)
    with pytest.raises(APIError) as err:
        bad.get_account()
    assert err.value.status_code == 403
    with pytest.raises(KeyError):
        _ = err.value.code  # {"message": "forbidden."} has no code (Alpaca-API #228)
    response = requests.get(f"{emu.rest_url}/v2/account", timeout=5)
    assert response.status_code == 401
    assert all(r.headers.get("APCA-API-SECRET-KEY") in (None, "***") for r in emu.requests)


def test_rate_limit_headers_and_enforcement() -> None:
    with AlpacaEmulator(api_key=KEY, secret_key=SECRET, rate_limit=5, rate_window=30.0) as emu:
        headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
        statuses = []
        for _ in range(7):
            r = requests.get(f"{emu.rest_url}/v2/clock", headers=headers, timeout=5)
            statuses.append(r.status_code)
            assert r.headers["X-Ratelimit-Limit"] == "5"
            assert int(r.headers["X-Ratelimit-Reset"]) >= int(time.time())
        assert statuses == [200] * 5 + [429] * 2
        assert r.headers["X-Ratelimit-Remaining"] == "0" and r.json()["code"] == 42910000
        # the SDK retries 429 (with our tiny wait) and gives up with APIError(429)
        client = trading(emu)
        with pytest.raises(APIError) as err:
            client.get_clock()
        assert err.value.status_code == 429
        assert emu.rest.limiter.rejected == 2 + 4  # 1 try + 3 SDK retries
        # market data has its own budget
        StockHistoricalDataClient(KEY, SECRET, url_override=emu.rest_url).get_stock_bars(
            StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, start=datetime(2024, 1, 2),
                             end=datetime(2024, 1, 5)))


def test_sdk_retries_post_on_504_which_duplicates_without_client_ids(emu: AlpacaEmulator) -> None:
    """Why the plugin switches the SDK's retry off: 504 after the order landed -> a second order."""
    emu.faults.status("POST", "/v2/orders", 504, apply=True)
    client = trading(emu)
    client.submit_order(market())
    assert len(emu.orders()) == 2
    emu.faults.status("POST", "/v2/orders", 504, apply=True)
    with pytest.raises(APIError) as err:
        client.submit_order(market(client_order_id="once"))  # the retry hits "must be unique"
    assert err.value.status_code == 422
    assert [o["client_order_id"] for o in emu.orders()].count("once") == 1


def test_faults_hang_drop_non_json_and_skip(emu: AlpacaEmulator) -> None:
    plan: FaultPlan = emu.faults
    session = requests.Session()
    session.headers.update({"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET})
    url = f"{emu.rest_url}/v2/clock"
    plan.hang("GET", "/v2/clock", 1.0, apply=False)
    with pytest.raises(requests.ReadTimeout):
        session.get(url, timeout=0.2)
    plan.drop("GET", "/v2/clock")
    with pytest.raises(requests.ConnectionError):
        session.get(url, timeout=2)
    plan.non_json("GET", "/v2/clock", 502, skip=1)
    assert session.get(url, timeout=2).status_code == 200  # skipped once
    bad = session.get(url, timeout=2)
    assert bad.status_code == 502 and bad.headers["Content-Type"].startswith("text/html")
    assert session.get(url, timeout=2).status_code == 200  # times=1 exhausted
    assert [r.fault for r in emu.requests if r.fault] == ["delay 1.0", "drop after apply", "status 502"]


@pytest.mark.parametrize("unique", [True, False])
def test_accept_after_delay_and_servers_without_unique_ids(unique: bool) -> None:
    with AlpacaEmulator(api_key=KEY, secret_key=SECRET, fill_mode="scripted",
                        unique_client_order_ids=unique) as emu:
        client = TradingClient(KEY, SECRET, url_override=emu.rest_url)
        client._retry = 0
        client._session.mount("http://", TimeoutAdapter(0.2))
        emu.faults.accept_after("POST", "/v2/orders", 1.0)
        started = time.monotonic()
        with pytest.raises(requests.ReadTimeout):  # the client gives up ...
            client.submit_order(market(client_order_id="late-1"))
        with pytest.raises(APIError) as missing:  # ... and the broker does not know the order yet
            client.get_order_by_client_id("late-1")
        assert missing.value.status_code == 404 and emu.orders() == []
        second = client.submit_order(market(client_order_id="late-1"))  # not a duplicate yet: nothing there
        first = wait_for(lambda: [r for r in emu.requests if r.method == "POST"][0].status, timeout=5)
        assert time.monotonic() - started >= 1.0
        # the late POST lands: refused as a duplicate by Alpaca, a second order on a lax server
        assert first == (422 if unique else 200)
        assert len(emu.orders()) == (1 if unique else 2)
        assert client.get_order_by_client_id("late-1").id == second.id  # a lookup returns the first order
        assert emu.faults.faults[0].hits == 1


class TimeoutAdapter(requests.adapters.HTTPAdapter):
    """A default timeout for the raw SDK client (the plugin's own adapter does this for qf)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__()

    def send(self, request: Any, **kwargs: Any) -> Any:
        kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def test_bars_paging_modes_and_sip(emu: AlpacaEmulator) -> None:
    emu.state.bars.page_size = 4
    client = StockHistoricalDataClient(KEY, SECRET, url_override=emu.rest_url)
    client._retry_wait = 0.01
    request = StockBarsRequest(symbol_or_symbols=["MSFT", "AAPL"], timeframe=TimeFrame.Day,
                               start=datetime(2024, 1, 2), end=datetime(2024, 1, 6))
    bars = client.get_stock_bars(request)
    assert len(bars.data["AAPL"]) == len(bars.data["MSFT"]) == 4
    pages = [r for r in emu.requests if r.path == "/v2/stocks/bars"]
    assert len(pages) == 2 and "page_token" not in pages[0].query and pages[1].query["page_token"]
    assert pages[0].query["limit"] == "10000"  # the SDK always sends limit
    emu.state.bars.mode = "empty"
    assert client.get_stock_bars(request).data == {}
    emu.state.bars.mode = "null"
    with pytest.raises((AttributeError, TypeError)):
        client.get_stock_bars(request)  # alpaca-py cannot handle "bars": null
    emu.state.bars.mode = "normal"
    emu.state.bars.omit_fields = {"n", "vw"}
    with pytest.raises(ValueError):
        client.get_stock_bars(request)  # Bar requires n and vw
    emu.state.bars.sip_forbidden = True
    with pytest.raises(APIError) as err:
        client.get_stock_bars(StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, feed="sip",
                                               start=datetime(2024, 1, 2), end=datetime(2024, 1, 6)))
    assert err.value.status_code == 403


def test_stored_bars_and_intraday_synthetic(emu: AlpacaEmulator) -> None:
    emu.set_bars("XYZ", [{"timestamp": datetime(2024, 1, 2, 5, tzinfo=UTC), "open": 1, "high": 2, "low": 0.5,
                          "close": 1.5, "volume": 100}])
    client = StockHistoricalDataClient(KEY, SECRET, url_override=emu.rest_url, raw_data=True)
    raw = client.get_stock_bars(StockBarsRequest(symbol_or_symbols="XYZ", timeframe=TimeFrame.Day,
                                                 start=datetime(2024, 1, 1), end=datetime(2024, 1, 3)))
    assert raw == {"XYZ": [{"t": "2024-01-02T05:00:00Z", "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 100,
                            "n": None, "vw": None}]}
    minutes = client.get_stock_bars(StockBarsRequest(
        symbol_or_symbols="AAPL", timeframe=TimeFrame.Minute, start=datetime(2024, 1, 2, 14, 30),
        end=datetime(2024, 1, 2, 21, 0)))
    assert len(minutes["AAPL"]) == 390  # one regular session


# ---------------------------------------------------------------------------------- stream


def _run_stream(emu: AlpacaEmulator, **kw: Any) -> tuple[TradingStream, threading.Thread, list]:
    received: list = []
    stream = TradingStream(KEY, kw.pop("secret", SECRET), raw_data=True, url_override=emu.ws_url)
    stream._reconnect_min_backoff = 0.05

    async def handler(message: Any) -> None:
        received.append(message)

    stream.subscribe_trade_updates(handler)
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    return stream, thread, received


def _stop_stream(stream: TradingStream, thread: threading.Thread) -> None:
    wait_for(lambda: stream._loop is not None)
    asyncio.run_coroutine_threadsafe(stream.stop_ws(), stream._loop).result(5)
    if stream._ws is not None:  # wake _consume without its 5 s poll
        asyncio.run_coroutine_threadsafe(stream._ws.close(), stream._loop).result(5)
    thread.join(10)


def test_stream_protocol_events_binary_frames_and_single_connection(emu: AlpacaEmulator) -> None:
    stream, thread, received = _run_stream(emu)
    try:
        wait_for(lambda: emu.stream.connected)
        order = trading(emu).submit_order(market(client_order_id="s-1"))
        emu.fill(str(order.id), 4, 100)
        wait_for(lambda: len(received) >= 2)
        assert [m["data"]["event"] for m in received][:2] == ["new", "partial_fill"]
        assert all(m["stream"] == "trade_updates" for m in received)
        update = TradeUpdate(**received[1]["data"])
        assert update.qty == 4 and update.price == 100 and update.position_qty == 4
        assert emu.stream.binary
        # a second trade_updates connection for the account is refused with HTTP 429 (alpaca-py #740)
        second = TradingStream(KEY, SECRET, raw_data=True, url_override=emu.ws_url)
        with pytest.raises(Exception, match="429"):
            asyncio.run(second._connect())
        assert emu.stream.stats["rejected_429"] == 1
        # drop: the SDK reconnects by itself, events in the gap are lost (no replay)
        emu.stream.drop()
        emu.fill(str(order.id), 1, 100)
        wait_for(lambda: emu.stream.stats["listening"] == 2)
        emu.fill(str(order.id), 1, 100)
        wait_for(lambda: len(received) == 3)
        assert received[2]["data"]["order"]["filled_qty"] == "6"
        assert len(emu.stream.dropped) == 1
        # injected raw messages, hold/release reordering and drop_next
        emu.stream.hold()
        emu.fill(str(order.id), 1, 101)
        emu.fill(str(order.id), 1, 102)
        emu.stream.release(order=[1, 0, 1])
        wait_for(lambda: len(received) == 6)
        assert [m["data"]["order"]["filled_qty"] for m in received[3:]] == ["8", "7", "8"]
        emu.stream.drop_next(1)
        emu.fill(str(order.id), 1, 102)
        emu.stream.inject({"stream": "trade_updates", "data": {"event": "brand_new_event", "order": {}}})
        wait_for(lambda: len(received) == 7)
        assert received[6]["data"]["event"] == "brand_new_event"
    finally:
        _stop_stream(stream, thread)


def test_stream_refuses_bad_keys_and_unauthorized_mode(emu: AlpacaEmulator) -> None:
    stream, thread, _ = _run_stream(emu, secret="wrong")
    try:
        wait_for(lambda: emu.stream.stats["unauthorized"] >= 1)
        assert not emu.stream.connected
    finally:
        _stop_stream(stream, thread)
    emu.stream.auth_unauthorized = True
    stream, thread, _ = _run_stream(emu)
    try:
        wait_for(lambda: emu.stream.stats["unauthorized"] >= 2)
        assert emu.stream.stats["authorized"] == 0
    finally:
        _stop_stream(stream, thread)


# ---------------------------------------------------------------------------------- misc


def test_request_log_clock_and_context_manager(emu: AlpacaEmulator) -> None:
    client = trading(emu)
    client.get_clock()
    record = emu.requests[-1]
    assert (record.method, record.path, record.status) == ("GET", "/v2/clock", 200)
    assert record.headers["APCA-API-SECRET-KEY"] == "***"
    assert SECRET not in repr(emu) and KEY in repr(emu)
    with pytest.raises(TypeError):
        emu.set_clock("2024-01-01T00:00:00Z")  # a wall clock cannot be moved


def test_manual_clock_drives_timestamps_and_market_hours() -> None:
    clock = ManualClock("2024-01-06T15:00:00Z")  # Saturday
    with AlpacaEmulator(api_key=KEY, secret_key=SECRET, clock=clock, market_open=None) as emu:
        c = trading(emu).get_clock()
        assert not c.is_open and c.next_open.date().isoformat() == "2024-01-08"
        order = trading(emu).submit_order(market())
        assert order.created_at.date().isoformat() == "2024-01-06" and order.status == "accepted"
        clock.advance(days=2)
        assert trading(emu).get_clock().is_open
        cal = trading(emu, raw=True).get_calendar()
        assert cal[0]["date"] == "2024-01-08"


def test_cli_serve_prints_urls_and_stops() -> None:
    stop = threading.Event()
    lines: list[str] = []
    import contextlib
    import io

    buffer = io.StringIO()

    def run() -> None:
        with contextlib.redirect_stdout(buffer):
            serve("127.0.0.1", 0, 0, seed=1, stop=stop)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for(lambda: "Ctrl-C" in buffer.getvalue())
        lines = buffer.getvalue().splitlines()
        rest = next(line.split()[-1] for line in lines if line.startswith("Alpaca emulator REST"))
        client = TradingClient("anything", "goes", url_override=rest)
        assert client.get_account().status == "ACTIVE"
    finally:
        stop.set()
        thread.join(10)
    assert any(line.strip().startswith("Alpaca emulator stream") and "ws://" in line for line in lines)


def test_emulator_timestamps_are_monotonic_even_on_a_frozen_clock() -> None:
    clock = ManualClock("2024-01-09T15:00:00Z")
    with AlpacaEmulator(api_key=KEY, secret_key=SECRET, clock=clock, fill_mode="scripted") as emu:
        client = trading(emu)
        stamps = [client.submit_order(market(qty=1)).submitted_at for _ in range(5)]
        assert stamps == sorted(stamps) and len(set(stamps)) == 5
        assert stamps[-1] - stamps[0] < timedelta(seconds=1)
