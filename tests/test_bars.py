"""The bars contract: :func:`qf.bars.validate` and the :class:`qf.bars.Bars` helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars, validate
from qf.errors import DataError

IDX = pd.bdate_range("2020-01-01", periods=5)  # Wed 1 Jan .. Tue 7 Jan 2020


def frame(**cols: list) -> pd.DataFrame:
    return pd.DataFrame({k: [np.nan if v is None else v for v in vals] for k, vals in cols.items()}, index=IDX)


def ohlcv(close: list | None = None) -> dict[str, pd.DataFrame]:
    c = close or [10.0, 11.0, 12.0, 11.0, 10.0]
    return {
        "open": frame(A=c),
        "high": frame(A=[None if x is None else x + 1 for x in c]),
        "low": frame(A=[None if x is None else x - 1 for x in c]),
        "close": frame(A=c),
        "volume": frame(A=[None if x is None else 100.0 for x in c]),
    }


def fails(bars: Bars, max_gap: int = 3) -> str:
    with pytest.raises(DataError) as info:
        validate(bars, max_gap=max_gap)
    return str(info.value)


# -- valid data ------------------------------------------------------------------------------------


def test_valid_bars_pass_unchanged_as_float():
    raw = ohlcv()
    raw["volume"] = raw["volume"].astype("int64")
    bars = validate(Bars(**raw, source="s"))
    assert bars.fields == ("open", "high", "low", "close", "volume")
    for name, df in bars.frames().items():
        assert df.dtypes.eq("float64").all()
        assert df.index.equals(IDX)
        np.testing.assert_array_equal(df.to_numpy(), raw[name].to_numpy())


def test_close_only_is_enough():
    assert validate(Bars(close=frame(A=[1.0, 2.0, 3.0, 4.0, 5.0]))).fields == ("close",)


def test_string_dates_and_number_like_columns_are_normalised():
    close = pd.DataFrame({1: ["1.5", "2", "3"]}, index=["2020-01-01", "2020-01-02", "2020-01-03"])
    bars = validate(Bars(close=close))
    assert isinstance(bars.index, pd.DatetimeIndex)
    assert bars.symbols == ["1"]
    assert bars.close["1"].tolist() == [1.5, 2.0, 3.0]


def test_utc_index_becomes_naive():
    close = frame(A=[1.0, 2.0, 3.0, 4.0, 5.0]).tz_localize("UTC")
    assert validate(Bars(close=close)).index.tz is None


def test_leading_missing_values_mean_not_yet_listed():
    bars = validate(Bars(close=pd.DataFrame({"A": [1.0, 2, 3, 4, 5], "B": [None, None, 7.0, 8, 9]}, index=IDX)))
    assert bars.close["B"].isna().tolist() == [True, True, False, False, False]


def test_short_gap_is_a_flat_bar_at_the_last_close_without_volume():
    bars = validate(Bars(**ohlcv([10.0, None, None, 13.0, 12.0])), max_gap=2)
    day = IDX[2]
    assert {f: getattr(bars, f).at[day, "A"] for f in bars.fields} == {
        "open": 10.0,
        "high": 10.0,
        "low": 10.0,
        "close": 10.0,
        "volume": 0.0,
    }
    assert bars.close["A"].tolist() == [10.0, 10.0, 10.0, 13.0, 12.0]


# -- the contract's errors -------------------------------------------------------------------------


def test_empty():
    assert fails(Bars(close=frame(A=[1.0] * 5).iloc[:0], source="s")) == "s: no data (empty result)"
    assert fails(Bars(close=pd.DataFrame(index=IDX), source="s")) == "s: no data (empty result)"


def test_index_not_dates():
    assert fails(Bars(close=pd.DataFrame({"A": [1.0]}, index=["soon"]), source="s")).startswith(
        "s: the index is not made of dates ("
    )


def test_duplicate_dates():
    close = pd.DataFrame({"A": [1.0, 2, 3, 4]}, index=pd.to_datetime(["2020-01-01", "2020-01-02"] * 2))
    assert fails(Bars(close=close, source="s")) == "s: duplicate date 2020-01-01 (2 duplicate row(s))"


def test_unsorted_dates():
    close = pd.DataFrame({"A": [1.0, 2, 3]}, index=pd.to_datetime(["2020-01-01", "2020-01-03", "2020-01-02"]))
    assert fails(Bars(close=close, source="s")) == "s: dates are not sorted: 2020-01-02 comes after 2020-01-03"


def test_intraday_dates_are_shown_with_their_time():
    idx = pd.to_datetime(["2020-01-01 10:00", "2020-01-01 09:30"])
    assert fails(Bars(close=pd.DataFrame({"A": [1.0, 2]}, index=idx), source="s")) == (
        "s: dates are not sorted: 2020-01-01T09:30:00 comes after 2020-01-01T10:00:00"
    )


def test_duplicate_symbols():
    close = pd.DataFrame([[1.0, 2.0]] * 5, index=IDX, columns=["A", "A"])
    assert fails(Bars(close=close, source="s")) == "s: duplicate symbol columns"


def test_fields_must_share_symbols_and_dates():
    raw = ohlcv()
    raw["open"] = raw["open"].rename(columns={"A": "B"})
    assert fails(Bars(**raw, source="s")) == "s: field 'open' does not have the same dates and symbols as close"
    raw = ohlcv()
    raw["volume"] = raw["volume"].iloc[:3]
    assert fails(Bars(**raw, source="s")) == "s: field 'volume' does not have the same dates and symbols as close"


def test_non_numeric_value():
    close = frame(A=[1.0, 2.0, "abc", 4.0, 5.0])
    assert fails(Bars(close=close, source="s")) == "s: A close has a non-numeric value on 2020-01-03"


def test_gap_longer_than_max_gap():
    bars = Bars(close=frame(A=[1.0, None, None, None, 5.0]), source="s")
    assert fails(bars, max_gap=2) == (
        "s: A has 3 missing bars in a row from 2020-01-02 to 2020-01-06 "
        "(at most 2 are filled; raise max_gap or fix the data)"
    )
    assert validate(bars, max_gap=3).close["A"].tolist() == [1.0, 1.0, 1.0, 1.0, 5.0]


def test_longest_gap_is_reported_and_max_gap_zero_fills_nothing():
    # the runs are inside the symbol's life: missing values after its last price are a delisting, not a gap
    idx = pd.bdate_range("2020-01-01", periods=7)
    bars = Bars(close=pd.DataFrame({"A": [1.0, None, 3.0, None, None, 6.0, 7.0]}, index=idx), source="s")
    assert fails(bars, max_gap=1) == (
        "s: A has 2 missing bars in a row from 2020-01-06 to 2020-01-07 "
        "(at most 1 are filled; raise max_gap or fix the data)"
    )
    assert fails(bars, max_gap=0).startswith("s: A has 2 missing bars in a row")


def test_no_prices_at_all():
    close = pd.DataFrame({"A": [1.0] * 5, "B": [np.nan] * 5}, index=IDX)
    assert fails(Bars(close=close, source="s")) == "s: B has no prices at all"


@pytest.mark.parametrize("field", ["open", "high", "low", "close"])
def test_non_positive_price(field):
    raw = ohlcv()
    raw[field].iloc[3, 0] = 0.0
    # positivity is checked before the high/low bracket, so a zero high is reported as such
    assert fails(Bars(**raw, source="s")) == f"s: A has a non-positive {field} (0) on 2020-01-06"


def test_negative_volume():
    raw = ohlcv()
    raw["volume"].iloc[1, 0] = -5.0
    assert fails(Bars(**raw, source="s")) == "s: A has negative volume on 2020-01-02"


def test_high_below_low():
    raw = ohlcv()
    raw["high"].iloc[2, 0], raw["low"].iloc[2, 0] = 11.0, 13.0
    assert fails(Bars(**raw, source="s")) == (
        "s: A on 2020-01-03: high 11 / low 13 do not bracket the bar (high < low, or open/close outside the range)"
    )


def test_close_outside_high_low():
    raw = ohlcv()
    raw["close"].iloc[4, 0] = 12.5  # high is 11
    assert fails(Bars(**raw, source="s")) == (
        "s: A on 2020-01-07: high 11 / low 9 do not bracket the bar (high < low, or open/close outside the range)"
    )


def test_close_without_open():
    raw = ohlcv()
    raw["open"].iloc[1, 0] = np.nan
    assert fails(Bars(**raw, source="s")) == "s: A has close but no open on 2020-01-02"


# -- Bars helpers ----------------------------------------------------------------------------------


def test_select_truncate_require():
    bars = validate(Bars(close=pd.DataFrame({"AAPL": [1.0] * 5, "MSFT": [2.0] * 5}, index=IDX), source="s"))
    assert bars.select(["MSFT"]).symbols == ["MSFT"]
    with pytest.raises(DataError, match=r"^s: unknown symbol\(s\) 'MSTF' \(did you mean 'MSFT'\?\); available: AAPL"):
        bars.select(["MSTF"])
    assert len(bars.truncate(IDX[1]).index) == 2
    assert len(bars.slice(IDX[1], IDX[2]).index) == 2
    with pytest.raises(DataError, match="^sma needs open, volume but s provides only close$"):
        bars.require(["open", "volume"], "sma")


# -- bugs reported to the lead (see the module docstring) -----------------------------------------


def test_field_with_other_dates_of_the_same_length_is_rejected():
    raw = ohlcv()
    raw["open"] = raw["open"].iloc[::-1]  # same dates, reversed: open of 7 Jan would land on 1 Jan
    assert fails(Bars(**raw, source="s")) == "s: field 'open' does not have the same dates and symbols as close"


def test_infinite_price_is_rejected():
    assert fails(Bars(close=frame(A=[1.0, np.inf, 3.0, 4.0, 5.0]), source="s")) == (
        "s: A has an infinite close (inf) on 2020-01-02"
    )


def test_missing_date_in_index_is_a_data_error():
    close = pd.DataFrame({"A": [1.0, 2.0, 3.0]}, index=pd.DatetimeIndex(["2020-01-01", pd.NaT, "2020-01-03"]))
    assert fails(Bars(close=close, source="s")) == "s: missing date (NaT) in row 2 of the index"


def test_missing_volume_where_close_exists_is_rejected():
    raw = ohlcv()
    raw["volume"].iloc[2, 0] = np.nan
    assert fails(Bars(**raw, source="s")) == "s: A has close but no volume on 2020-01-03"


def test_tz_aware_daily_bars_keep_their_dates():
    close = frame(A=[1.0, 2.0, 3.0, 4.0, 5.0]).tz_localize("Asia/Tokyo")  # midnight Tokyo = 15:00 UTC the day before
    assert list(validate(Bars(close=close)).index) == list(IDX)
