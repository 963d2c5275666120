"""The ``yfinance`` source against a recorded download, never the network.

The fixture is a frame laid out exactly like yfinance 1.7's ``download(..., group_by="ticker")`` result:
columns ``(Ticker, Price)`` named ``["Ticker", "Price"]``, a tz-naive ``Date`` index that is the union of
the tickers' dates, and for a ticker that failed an all-NaN block that also has "Adj Close" (yfinance's
``utils.empty_df``). ``test_fixture_layout_matches_real_yfinance`` checks that claim by running the real
``yfinance.download`` with its per-ticker fetch replaced, so a yfinance upgrade that changes the layout
fails there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qf.errors import DataError
from qf_plugins.data.yfinance import YFinanceSource

# Daily bars as yfinance's Ticker.history(auto_adjust=True, actions=False) returns them.
HISTORY = {
    "AAPL": pd.DataFrame(
        {
            "Open": [174.77, 179.32, 176.89, 170.69],
            "High": [179.70, 179.98, 177.47, 172.76],
            "Low": [174.64, 176.20, 171.33, 168.06],
            "Close": [179.08, 176.80, 172.10, 169.23],
            "Volume": np.array([104487900, 99310400, 94537600, 96904000], dtype=np.int64),
        },
        index=pd.DatetimeIndex(["2022-01-03", "2022-01-04", "2022-01-05", "2022-01-06"], name="Date"),
    ),
    # MSFT misses 2022-01-05 here, as a ticker on another exchange's calendar would
    "MSFT": pd.DataFrame(
        {
            "Open": [328.50, 327.38, 322.71],
            "High": [330.10, 328.92, 323.33],
            "Low": [325.63, 320.26, 317.16],
            "Close": [327.55, 320.94, 318.24],
            "Volume": np.array([28865100, 32674300, 40054300], dtype=np.int64),
        },
        index=pd.DatetimeIndex(["2022-01-03", "2022-01-04", "2022-01-06"], name="Date"),
    ),
}


def _failed() -> pd.DataFrame:
    """What yfinance stores for a ticker whose fetch failed (``yfinance.utils.empty_df``)."""
    empty = pd.DataFrame(index=[], data={c: np.nan for c in ["Open", "High", "Low", "Close", "Adj Close", "Volume"]})
    empty.index.name = "Date"
    return empty


def download_frame(tickers: list[str]) -> pd.DataFrame:
    """The frame ``yfinance.download(tickers, group_by="ticker")`` returns (yfinance/multi.py, 1.7)."""
    dfs = {t: HISTORY[t].copy() if t in HISTORY else _failed() for t in tickers}
    idx = None
    for df in dfs.values():
        if not df.empty:
            idx = df.index if idx is None else idx.union(df.index)
    idx = pd.DatetimeIndex([]) if idx is None else idx
    dfs = {t: df.reindex(idx) for t, df in dfs.items()}
    return pd.concat(dfs.values(), axis=1, sort=True, keys=dfs.keys(), names=["Ticker", "Price"])


class FakeDownload:
    """Stands in for ``yfinance.download``: returns the recorded frame and remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict]] = []
        self.result: pd.DataFrame | None | Exception = None

    def __call__(self, tickers: list[str], **kwargs: object) -> pd.DataFrame | None:
        self.calls.append((list(tickers), kwargs))
        if isinstance(self.result, Exception):
            raise self.result
        if self.result is not None:
            return self.result
        return download_frame(list(tickers))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeDownload:
    import yfinance

    fake = FakeDownload()
    monkeypatch.setattr(yfinance, "download", fake)
    return fake


def source(tmp_path: Path, **params: object) -> YFinanceSource:
    params = {"symbols": ["AAPL", "MSFT"], "start": "2022-01-03", "end": "2022-01-06", **params}
    return YFinanceSource({"cache_dir": str(tmp_path / "cache"), **params})


def test_download_becomes_validated_bars(fake, tmp_path):
    bars = source(tmp_path).load()
    assert bars.fields == ("open", "high", "low", "close", "volume")
    assert bars.symbols == ["AAPL", "MSFT"]
    assert list(bars.index) == list(pd.bdate_range("2022-01-03", "2022-01-06"))
    assert bars.close["AAPL"].tolist() == [179.08, 176.80, 172.10, 169.23]
    # MSFT's missing day is a one-bar gap: a flat bar at the last close, no volume
    assert bars.close.loc["2022-01-05", "MSFT"] == 320.94
    assert bars.volume.loc["2022-01-05", "MSFT"] == 0.0
    assert bars.source == "yfinance"
    ((tickers, kwargs),) = fake.calls
    assert sorted(tickers) == ["AAPL", "MSFT"]
    assert kwargs == {
        "start": "2022-01-03",
        "end": "2022-01-07",  # yfinance's end is exclusive, ours inclusive
        "auto_adjust": True,
        "group_by": "ticker",
        "progress": False,
        "threads": False,
        "multi_level_index": True,
    }


def test_cache_hit_makes_no_second_call(fake, tmp_path):
    first = source(tmp_path).load()
    assert first.meta["cache_hit"] is False
    assert Path(first.meta["cache"]).is_file()
    # the same request, symbols in another order and lower case: served from the cache
    second = source(tmp_path, symbols=["msft", "aapl"]).load()
    assert len(fake.calls) == 1
    assert second.meta["cache_hit"] is True
    assert second.symbols == ["MSFT", "AAPL"]
    for field in first.fields:
        pd.testing.assert_frame_equal(getattr(second, field)[["AAPL", "MSFT"]], getattr(first, field), check_freq=False)


@pytest.mark.parametrize(
    "change", [{"end": "2022-01-05"}, {"start": "2022-01-04"}, {"auto_adjust": False}, {"symbols": ["AAPL"]}]
)
def test_cache_miss_on_another_request(fake, tmp_path, change):
    source(tmp_path).load()
    bars = source(tmp_path, **change).load()
    assert len(fake.calls) == 2
    assert bars.meta["cache_hit"] is False
    assert source(tmp_path).cache_path() != source(tmp_path, **change).cache_path()


def test_refresh_downloads_again(fake, tmp_path):
    source(tmp_path).load()
    source(tmp_path, refresh=True).load()
    assert len(fake.calls) == 2


def test_open_range(fake, tmp_path, monkeypatch):
    src = source(tmp_path, start=None, end=None)
    src.load()
    ((_, kwargs),) = fake.calls
    assert kwargs["period"] == "max" and kwargs["start"] is None
    # an open end is today, so the cache key changes every day
    assert str(pd.Timestamp.today().date() + pd.Timedelta(days=1)) == kwargs["end"]


def test_empty_download(fake, tmp_path):
    fake.result = pd.DataFrame()
    with pytest.raises(DataError) as info:
        source(tmp_path).load()
    assert str(info.value) == (
        "yfinance: no data for AAPL, MSFT from 2022-01-03 to 2022-01-06 "
        "(no network, misspelled tickers, or no trading days in the range?)"
    )
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_all_tickers_failed(fake, tmp_path):
    # what yfinance really returns when every fetch failed: all-NaN blocks over an empty index
    with pytest.raises(DataError) as info:
        source(tmp_path, symbols=["XXXX", "YYYY"]).load()
    assert str(info.value) == (
        "yfinance: no data for XXXX, YYYY from 2022-01-03 to 2022-01-06 "
        "(no network, misspelled tickers, or no trading days in the range?)"
    )


def test_ticker_missing_from_the_result(fake, tmp_path):
    with pytest.raises(DataError) as info:
        source(tmp_path, symbols=["AAPL", "APPL", "MSFT"]).load()
    assert str(info.value) == (
        "yfinance: no data for APPL from 2022-01-03 to 2022-01-06 (misspelled or delisted ticker?); "
        "got data for AAPL, MSFT"
    )
    assert not any((tmp_path / "cache").glob("*.parquet"))


def test_ticker_absent_from_the_columns(fake, tmp_path):
    fake.result = download_frame(["AAPL"])
    with pytest.raises(DataError) as info:
        source(tmp_path).load()
    assert str(info.value) == (
        "yfinance: no data for MSFT from 2022-01-03 to 2022-01-06 (misspelled or delisted ticker?); got data for AAPL"
    )


def test_download_exception_is_a_data_error(fake, tmp_path):
    fake.result = ConnectionError("Failed to resolve query1.finance.yahoo.com")
    with pytest.raises(DataError) as info:
        source(tmp_path).load()
    assert str(info.value) == (
        "yfinance: download of AAPL, MSFT failed: ConnectionError: Failed to resolve query1.finance.yahoo.com"
    )


def test_bad_data_in_the_download_is_caught(fake, tmp_path):
    frame = download_frame(["AAPL", "MSFT"])
    frame.loc["2022-01-04", ("MSFT", "Low")] = 400.0
    fake.result = frame
    with pytest.raises(DataError) as info:
        source(tmp_path).load()
    assert str(info.value) == (
        "yfinance: MSFT on 2022-01-04: high 328.92 / low 400 do not bracket the bar "
        "(high < low, or open/close outside the range)"
    )


def test_unreadable_cache_is_downloaded_again(fake, tmp_path):
    src = source(tmp_path)
    src.load()
    src.cache_path().write_bytes(b"not parquet")
    with pytest.warns(UserWarning, match="ignoring unreadable cache file"):
        bars = source(tmp_path).load()
    assert len(fake.calls) == 2
    assert bars.meta["cache_hit"] is False
    assert source(tmp_path).load().meta["cache_hit"] is True  # rewritten


def test_unwritable_cache_still_returns_the_data(fake, tmp_path):
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="could not write the cache file"):
        bars = source(tmp_path).load()
    assert bars.symbols == ["AAPL", "MSFT"]


def test_relative_cache_dir_resolves_against_base_dir(fake, tmp_path):
    src = YFinanceSource({"symbols": ["AAPL"], "start": "2022-01-03", "end": "2022-01-06", "cache_dir": "cache"})
    src.resolve_paths(tmp_path / "exp")
    assert src.cache_path().parent == tmp_path / "exp" / "cache"
    src.load()
    assert len(list((tmp_path / "exp" / "cache").glob("AAPL_*.parquet"))) == 1


def test_symbols_are_required():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="symbols\n  Field required"):
        YFinanceSource({})


def test_fixture_layout_matches_real_yfinance(monkeypatch):
    """Run the real yfinance.download with only the per-ticker fetch faked (no network: see conftest)."""
    import yfinance
    import yfinance.multi

    class FakeTicker:
        def __init__(self, ticker: str) -> None:
            self.ticker = ticker
            self._price_history = None

        def history(self, **kwargs: object) -> pd.DataFrame:
            if self.ticker not in HISTORY:
                raise ValueError(f"{self.ticker}: no price data found")
            return HISTORY[self.ticker].copy()

    monkeypatch.setattr(yfinance.multi, "Ticker", FakeTicker)
    real = yfinance.download(
        ["AAPL", "MSFT", "XXXX"],
        start="2022-01-03",
        end="2022-01-07",
        auto_adjust=True,
        group_by="ticker",
        progress=False,
        threads=False,
        multi_level_index=True,
    )
    ours = download_frame(["AAPL", "MSFT", "XXXX"])
    assert real.columns.names == ours.columns.names == ["Ticker", "Price"]
    assert sorted(real.columns) == sorted(ours.columns)
    assert real.index.equals(ours.index) and real.index.name == "Date" and real.index.tz is None
    pd.testing.assert_frame_equal(real[sorted(real.columns)], ours[sorted(ours.columns)])
