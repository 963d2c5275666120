"""Historical bars through ``load_alpaca_bars`` and the real SDK (docs/alpaca.md, *Scenarios the tests hold the
session to*, scenario 13)."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
from alpaca.data.historical import StockHistoricalDataClient

from qf_plugins.alpaca.bars import (
    FIELDS,
    AlpacaDataPermissionError,
    AlpacaNoDataError,
    load_alpaca_bars,
)
from qf_plugins.alpaca.client import AlpacaConfig, build_data_client
from qf_plugins.alpaca.emulator import AlpacaEmulator

KEY = "PKDATA00000000000001"
SECRET = "data-secret-0123456789abcdefghijklmnopqrstu"


@pytest.fixture
def emu() -> Iterator[AlpacaEmulator]:
    with AlpacaEmulator(api_key=KEY, secret_key=SECRET, seed=9) as emulator:
        yield emulator


@pytest.fixture
def client(emu: AlpacaEmulator) -> StockHistoricalDataClient:
    cfg = AlpacaConfig(KEY, SECRET, data_url=emu.rest_url, timeout=2.0, data_retry_wait=0.01)
    return build_data_client(cfg)


def bar_requests(emu: AlpacaEmulator) -> list:
    return [r for r in emu.requests if r.path == "/v2/stocks/bars"]


def test_three_page_multi_symbol_paging(emu: AlpacaEmulator, client: StockHistoricalDataClient) -> None:
    emu.state.bars.page_size = 7  # 2 symbols x 10 sessions = 20 bars -> pages of 7, 7, 6
    frames = load_alpaca_bars(["MSFT", "AAPL"], "2024-01-02", "2024-01-15", client=client)
    assert set(frames) == set(FIELDS)
    close = frames["close"]
    assert list(close.columns) == ["MSFT", "AAPL"]  # caller's order, not the API's
    assert len(close) == 10 and close.notna().all().all()
    assert close.index.tz is None and (close.index == close.index.normalize()).all()
    assert close.index[0] == pd.Timestamp("2024-01-02") and close.index[-1] == pd.Timestamp("2024-01-15")
    assert all(f.dtypes.eq("float64").all() for f in frames.values())
    assert (frames["high"] >= frames["low"]).all().all() and (frames["volume"] > 0).all().all()
    pages = bar_requests(emu)
    assert len(pages) == 3
    assert [("page_token" in p.query) for p in pages] == [False, True, True]
    assert {p.query["feed"] for p in pages} == {"iex"}
    # the SDK's own pager over the same pages agrees bar for bar
    from alpaca.data.requests import StockBarsRequest
    from alpaca.data.timeframe import TimeFrame

    sdk = client.get_stock_bars(StockBarsRequest(
        symbol_or_symbols=["MSFT", "AAPL"], timeframe=TimeFrame.Day,
        start=pd.Timestamp("2024-01-02"), end=pd.Timestamp("2024-01-15 23:59")))
    assert [b.close for b in sdk.data["AAPL"]] == close["AAPL"].tolist()


def test_stored_bars_and_missing_symbol_column(emu: AlpacaEmulator, client: StockHistoricalDataClient) -> None:
    emu.state.bars.synthetic = False
    emu.set_bars("AAPL", [
        {"t": "2024-03-01T05:00:00Z", "o": 10, "h": 11, "l": 9, "c": 10.5, "v": 100, "n": 5, "vw": 10.2},
        {"t": "2024-03-04T05:00:00Z", "o": 10.5, "h": 12, "l": 10, "c": 11.5, "v": 150, "n": 6, "vw": 11.1},
    ])
    frames = load_alpaca_bars(["AAPL", "ZZZZ"], "2024-03-01", "2024-03-04", client=client)
    assert frames["close"]["AAPL"].tolist() == [10.5, 11.5]
    assert frames["close"]["ZZZZ"].isna().all()
    assert frames["volume"]["AAPL"].tolist() == [100.0, 150.0]


def test_empty_and_null_bars(emu: AlpacaEmulator, client: StockHistoricalDataClient) -> None:
    emu.state.bars.mode = "empty"
    with pytest.raises(AlpacaNoDataError, match="no bars"):
        load_alpaca_bars(["AAPL"], "2024-01-02", "2024-01-05", client=client)
    frames = load_alpaca_bars(["AAPL", "MSFT"], "2024-01-02", "2024-01-05", client=client, on_empty="empty")
    assert all(f.empty and list(f.columns) == ["AAPL", "MSFT"] for f in frames.values())
    emu.state.bars.mode = "null"
    with pytest.raises(AlpacaNoDataError, match="null"):
        load_alpaca_bars(["AAPL"], "2024-01-02", "2024-01-05", client=client)
    with pytest.raises((AttributeError, TypeError)):  # what the SDK alone does with "bars": null
        from alpaca.data.requests import StockBarsRequest
        from alpaca.data.timeframe import TimeFrame

        client.get_stock_bars(StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Day))


def test_sip_forbidden_is_a_clear_error(emu: AlpacaEmulator, client: StockHistoricalDataClient) -> None:
    emu.state.bars.sip_forbidden = True
    with pytest.raises(AlpacaDataPermissionError, match="feed='iex'"):
        load_alpaca_bars(["AAPL"], "2024-01-02", "2024-01-05", feed="sip", client=client)
    assert not load_alpaca_bars(["AAPL"], "2024-01-02", "2024-01-05", feed="iex", client=client)["close"].empty


def test_missing_n_and_vw_are_tolerated(emu: AlpacaEmulator, client: StockHistoricalDataClient) -> None:
    emu.state.bars.omit_fields = {"n", "vw"}
    frames = load_alpaca_bars("AAPL", "2024-01-02", "2024-01-05", client=client)
    assert len(frames["open"]) == 4


def test_intraday_index_and_retry_on_429(emu: AlpacaEmulator, client: StockHistoricalDataClient) -> None:
    emu.faults.rate_limited("GET", "/v2/stocks/bars", reset_in=0.05)
    frames = load_alpaca_bars(["AAPL"], "2024-01-02T14:30:00Z", "2024-01-02T15:30:00Z", timeframe="15Min",
                              client=client)
    index = frames["close"].index
    assert index[0] == pd.Timestamp("2024-01-02 09:30") and len(index) == 5  # New York wall time
    assert [r.status for r in bar_requests(emu)] == [429, 200]  # data GETs keep the SDK retry


def test_default_client_from_environment(emu: AlpacaEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET)
    monkeypatch.setenv("ALPACA_DATA_URL", emu.rest_url)
    frames = load_alpaca_bars(["AAPL"], "2024-01-02", "2024-01-03")
    assert len(frames["close"]) == 2


def test_argument_validation() -> None:
    with pytest.raises(ValueError, match="timeframe"):
        load_alpaca_bars(["AAPL"], "2024-01-02", "2024-01-03", timeframe="daily", client=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="after"):
        load_alpaca_bars(["AAPL"], "2024-02-02", "2024-01-03", client=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="symbols"):
        load_alpaca_bars([], "2024-01-02", "2024-01-03", client=object())  # type: ignore[arg-type]
