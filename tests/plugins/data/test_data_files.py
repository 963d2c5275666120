"""The csv and parquet sources on small files: layouts, column mapping, and a corpus of broken files.

Most tests run once per format (the ``write`` fixture is parametrized): csv errors point at lines
(header = line 1), parquet errors at rows (1 = first data row).
"""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from qf.bars import FIELDS
from qf.errors import DataError
from qf_plugins.data.csv import CsvSource
from qf_plugins.data.parquet import ParquetSource

LONG = """
date,symbol,open,high,low,close,volume
2020-01-02,AAA,10,11,9,10.5,100
2020-01-02,BBB,20,21,19,20.5,200
2020-01-03,AAA,10.5,12,10,11,150
2020-01-03,BBB,20.5,22,20,21,250
2020-01-06,AAA,11,12,10.5,11.5,120
2020-01-06,BBB,21,22,20.5,21.5,220
"""

AAA = """
date,open,high,low,close,volume
2020-01-02,10,11,9,10.5,100
2020-01-03,10.5,12,10,11,150
2020-01-06,11,12,10.5,11.5,120
"""

# no row for 2020-01-03: a one-bar gap against AAA's dates
BBB = """
date,open,high,low,close,volume
2020-01-02,20,21,19,20.5,200
2020-01-06,21,22,20.5,21.5,220
2020-01-07,21.5,23,21,22,230
"""


def days(*dates: str) -> list[pd.Timestamp]:
    return list(pd.to_datetime(list(dates)))


def error(make, **params) -> str:
    """The message of the DataError that loading raises; ``make`` is a source class or the ``source`` fixture."""
    src = make(params) if isinstance(make, type) else make(**params)
    with pytest.raises(DataError) as info:
        src.load()
    return str(info.value)


# -- layouts ---------------------------------------------------------------------------------------


def test_long_file_becomes_wide_frames(write, source):
    path = write("prices", LONG)
    bars = source(path=str(path)).load()
    assert bars.fields == FIELDS
    assert bars.symbols == ["AAA", "BBB"]
    assert list(bars.index) == days("2020-01-02", "2020-01-03", "2020-01-06")
    assert bars.close.loc["2020-01-03", "BBB"] == 21.0
    assert bars.high.loc["2020-01-06", "AAA"] == 12.0
    assert bars.volume["AAA"].tolist() == [100.0, 150.0, 120.0]
    assert bars.source == str(path)
    assert all(df.dtypes.eq("float64").all() for df in bars.frames().values())


def test_one_file_per_symbol_in_a_directory(write, source):
    write("daily/AAA", AAA)
    write("daily/BBB", BBB)
    bars = source(path=str(write.root / "daily")).load()
    assert bars.symbols == ["AAA", "BBB"]
    assert list(bars.index) == days("2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07")
    # BBB has no 2020-01-03 row: a one-bar gap, filled as a flat bar at the last close with no volume
    gap = {f: getattr(bars, f).loc["2020-01-03", "BBB"] for f in FIELDS}
    assert gap == {"open": 20.5, "high": 20.5, "low": 20.5, "close": 20.5, "volume": 0.0}
    assert bars.close.loc["2020-01-06", "BBB"] == 21.5


def test_glob_pattern_with_symbol_selection_keeps_the_order_asked_for(write, source):
    write("daily/AAA", AAA)
    write("daily/BBB", BBB)
    write("daily/CCC", AAA)
    bars = source(path=str(write.root / "daily" / f"*{write.suffix}"), symbols=["CCC", "AAA"]).load()
    assert bars.symbols == ["CCC", "AAA"]
    assert list(bars.index) == days("2020-01-02", "2020-01-03", "2020-01-06")


def test_single_file_without_symbol_column_is_named_after_the_file(write, source):
    path = write("AAA", AAA)
    bars = source(path=str(path)).load()
    assert bars.symbols == ["AAA"]
    assert bars.close["AAA"].tolist() == [10.5, 11.0, 11.5]


def test_long_layout_over_several_files(write, source):
    write("years/2019", "date,symbol,close\n2019-12-30,AAA,1\n2019-12-31,AAA,2\n")
    write("years/2020", "date,symbol,close\n2020-01-02,AAA,3\n2020-01-03,AAA,4\n")
    bars = source(path=str(write.root / "years"), layout="long").load()
    assert bars.close["AAA"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_start_and_end_are_inclusive(write, source):
    path = write("prices", LONG)
    bars = source(path=str(path), start="2020-01-03", end="2020-01-06").load()
    assert list(bars.index) == days("2020-01-03", "2020-01-06")


def test_symbols_selection_in_long_file(write, source):
    path = write("prices", LONG)
    bars = source(path=str(path), symbols=["BBB"]).load()
    assert bars.symbols == ["BBB"]
    assert bars.close["BBB"].tolist() == [20.5, 21.0, 21.5]


def test_only_the_requested_symbols_are_parsed(write, source):
    # a broken value in a symbol the experiment does not use must not stop it
    path = write("prices", LONG.replace("2020-01-03,BBB,20.5,22,20,21,", "2020-01-03,BBB,20.5,22,20,oops,"))
    assert source(path=str(path), symbols=["AAA"]).load().symbols == ["AAA"]


def test_fields_limits_what_is_loaded(write, source):
    path = write("prices", LONG)
    bars = source(path=str(path), fields=["volume"]).load()
    assert bars.fields == ("close", "volume")


# -- column mapping and parsing options --------------------------------------------------------------


def test_column_mapping(write, source):
    path = write(
        "export",
        """
        Date,ticker,Open,High,Low,Close,Adj Close,Volume
        2020-01-02,AAA,10,11,9,10.5,5.25,100
        2020-01-03,AAA,10.5,12,10,11,5.5,150
        """,
    )
    bars = source(
        path=str(path), columns={"date": "Date", "symbol": "ticker", "close": "Adj Close"}, fields=["close", "volume"]
    ).load()
    assert bars.fields == ("close", "volume")
    assert bars.close["AAA"].tolist() == [5.25, 5.5]
    assert bars.volume["AAA"].tolist() == [100.0, 150.0]


def test_adjusted_close_with_raw_ohlc_is_caught(write, source):
    # the classic mistake: adjusted close mapped next to unadjusted open/high/low
    path = write("export", "Date,ticker,High,Low,Close,Adj Close\n2020-01-02,AAA,11,9,10.5,5.25\n")
    msg = error(source, path=str(path), columns={"close": "Adj Close"})
    assert msg == (
        f"{path}: AAA on 2020-01-02: high 11 / low 9 do not bracket the bar "
        "(high < low, or open/close outside the range)"
    )


def test_usual_header_spellings_are_recognised_in_any_case(write, source):
    path = write("prices", "DATETIME,Ticker,CLOSE,Volume\n2020-01-02,AAA,1.5,10\n2020-01-03,AAA,1.6,11\n")
    bars = source(path=str(path)).load()
    assert bars.fields == ("close", "volume")
    assert bars.close["AAA"].tolist() == [1.5, 1.6]


def test_date_format(write, source):
    path = write("prices", "date,symbol,close\n02/01/2020,AAA,1\n03/01/2020,AAA,2\n13/01/2020,AAA,3\n")
    bars = source(path=str(path), date_format="%d/%m/%Y", max_gap=10).load()
    assert list(bars.index) == days("2020-01-02", "2020-01-03", "2020-01-13")


def test_numeric_looking_tickers_stay_text(tmp_path):
    path = tmp_path / "hk.csv"
    path.write_text("date,symbol,close\n2020-01-02,0700,400\n2020-01-02,0005,70\n")
    assert CsvSource({"path": str(path)}).load().symbols == ["0005", "0700"]


def test_csv_delimiter_and_compression(tmp_path):
    path = tmp_path / "prices.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("date;symbol;close\n2020-01-02;AAA;1.5\n2020-01-03;AAA;1.75\n")
    bars = CsvSource({"path": str(path), "delimiter": ";"}).load()
    assert bars.close["AAA"].tolist() == [1.5, 1.75]


def test_compressed_per_symbol_file_is_named_without_both_extensions(tmp_path):
    (tmp_path / "d").mkdir()
    with gzip.open(tmp_path / "d" / "AAA.csv.gz", "wt") as fh:
        fh.write("date,close\n2020-01-02,1\n")
    assert CsvSource({"path": str(tmp_path / "d")}).load().symbols == ["AAA"]


def test_parquet_with_dates_in_the_index(tmp_path):
    frame = pd.DataFrame(
        {"close": [1.0, 2.0], "volume": [10, 20]}, index=pd.DatetimeIndex(["2020-01-02", "2020-01-03"], name="Date")
    )
    frame.to_parquet(tmp_path / "AAA.parquet")
    bars = ParquetSource({"path": str(tmp_path / "AAA.parquet")}).load()
    assert list(bars.index) == days("2020-01-02", "2020-01-03")
    assert bars.volume["AAA"].tolist() == [10.0, 20.0]


def test_parquet_with_typed_columns(tmp_path):
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2020-01-02", "2020-01-03"]),
            "symbol": pd.Categorical(["AAA", "AAA"]),
            "close": np.array([1.0, 2.0], dtype="float32"),
        }
    )
    frame.to_parquet(tmp_path / "long.parquet")
    bars = ParquetSource({"path": str(tmp_path / "long.parquet")}).load()
    assert bars.close["AAA"].tolist() == [1.0, 2.0]


def test_relative_path_resolves_against_base_dir(write, source, monkeypatch, tmp_path):
    write("exp/data/prices", LONG)
    monkeypatch.chdir(tmp_path.parent)  # the cwd must not matter once base_dir is set
    src = source(path=f"data/prices{write.suffix}").resolve_paths(tmp_path / "exp")
    assert src.load().symbols == ["AAA", "BBB"]


def test_relative_path_without_base_dir_uses_the_cwd(write, source, monkeypatch):
    write("prices", LONG)
    monkeypatch.chdir(write.root)
    assert source(path=f"prices{write.suffix}").load().symbols == ["AAA", "BBB"]


# -- the corpus of broken files: each asserts the exact message --------------------------------------


def test_missing_file(tmp_path):
    assert error(CsvSource, path=str(tmp_path / "nope.csv")) == f"csv: no such file or directory: {tmp_path}/nope.csv"


def test_missing_file_says_where_relative_paths_resolve(tmp_path):
    with pytest.raises(DataError) as info:
        CsvSource({"path": "data/nope.csv"}, base_dir=tmp_path).load()
    assert str(info.value) == (
        f"csv: no such file or directory: {tmp_path}/data/nope.csv (relative paths resolve against {tmp_path})"
    )


def test_glob_without_match_and_empty_directory(tmp_path):
    assert error(CsvSource, path=str(tmp_path / "*.csv")) == f"csv: no files match {tmp_path}/*.csv"
    (tmp_path / "empty").mkdir()
    assert error(ParquetSource, path=str(tmp_path / "empty")) == (
        f"parquet: no *.parquet / *.pq files in {tmp_path}/empty"
    )


def test_unsorted_dates(write, source):
    path = write("AAA", "date,close\n2020-01-02,1\n2020-01-06,2\n2020-01-03,3\n")
    assert error(source, path=str(path)) == (
        f"{path}: AAA: dates are not sorted: 2020-01-03 ({write.where(4)}) comes after 2020-01-06 "
        f"({write.where(3)}); sort the rows by date, or check date_format"
    )


def test_unsorted_dates_in_a_long_file(write, source):
    path = write("prices", "date,symbol,close\n2020-01-03,AAA,1\n2020-01-03,BBB,1\n2020-01-02,BBB,2\n")
    assert error(source, path=str(path)) == (
        f"{path}: BBB: dates are not sorted: 2020-01-02 ({write.where(4)}) comes after 2020-01-03 "
        f"({write.where(3)}); sort the rows by date, or check date_format"
    )


def test_wrongly_guessed_day_month_order_shows_as_unsorted(tmp_path):
    # day-first dates (11 Jan, 12 Jan, 1 Feb) that all parse month-first: Nov 1, Dec 1, Jan 2
    path = tmp_path / "AAA.csv"
    path.write_text("date,close\n11/01/2020,1\n12/01/2020,2\n01/02/2020,3\n")
    assert error(CsvSource, path=str(path)) == (
        f"{path}: AAA: dates are not sorted: 2020-01-02 (line 4) comes after 2020-12-01 (line 3); "
        "sort the rows by date, or check date_format"
    )
    assert CsvSource({"path": str(path), "date_format": "%d/%m/%Y", "max_gap": 20}).load().close.shape == (3, 1)


def test_duplicate_dates(write, source):
    path = write("AAA", "date,close\n2020-01-02,1\n2020-01-03,2\n2020-01-03,2\n2020-01-06,3\n")
    assert error(source, path=str(path)) == (
        f"{path}: duplicate rows for AAA on 2020-01-03 ({write.where(3)} and {write.where(4)}); "
        "1 (date, symbol) pair(s) appear more than once"
    )


def test_duplicate_date_symbol_rows(write, source):
    text = LONG + "2020-01-03,BBB,20.5,22,20,21,250\n2020-01-06,AAA,11,12,10.5,11.5,120\n"
    path = write("prices", text)
    assert error(source, path=str(path)) == (
        f"{path}: duplicate rows for BBB on 2020-01-03 ({write.where(5)} and {write.where(8)}); "
        "2 (date, symbol) pair(s) appear more than once"
    )


def test_duplicate_rows_across_files_name_the_files(write, source):
    write("years/a", "date,symbol,close\n2020-01-02,AAA,1\n2020-01-03,AAA,2\n")
    write("years/b", "date,symbol,close\n2020-01-03,AAA,2\n")
    n = "line" if write.fmt == "csv" else "row"
    second, first = (3, 2) if write.fmt == "csv" else (2, 1)
    assert error(source, path=str(write.root / "years"), layout="long") == (
        f"{write.root}/years: duplicate rows for AAA on 2020-01-03 (a{write.suffix} {n} {second} and "
        f"b{write.suffix} {n} {first}); 1 (date, symbol) pair(s) appear more than once"
    )


NAN_RUN = """
date,symbol,close
2020-01-01,AAA,1
2020-01-02,AAA,
2020-01-03,AAA,
2020-01-06,AAA,
2020-01-07,AAA,
2020-01-08,AAA,2
"""


def test_nan_run_longer_than_max_gap(write, source):
    path = write("prices", NAN_RUN)
    assert error(source, path=str(path)) == (
        f"{path}: AAA has 4 missing bars in a row from 2020-01-02 to 2020-01-07 "
        "(at most 3 are filled; raise max_gap or fix the data)"
    )
    bars = source(path=str(path), max_gap=4).load()
    assert bars.close["AAA"].tolist() == [1.0, 1.0, 1.0, 1.0, 1.0, 2.0]


def test_short_gap_is_filled(write, source):
    path = write("prices", "date,symbol,close,volume\n2020-01-02,AAA,1,5\n2020-01-03,AAA,,\n2020-01-06,AAA,2,7\n")
    bars = source(path=str(path)).load()
    assert bars.close["AAA"].tolist() == [1.0, 1.0, 2.0]
    assert bars.volume["AAA"].tolist() == [5.0, 0.0, 7.0]


def test_non_positive_price(write, source):
    path = write("prices", LONG.replace("2020-01-03,BBB,20.5,22,20,21,", "2020-01-03,BBB,20.5,22,20,0,"))
    assert error(source, path=str(path), fields=["close"]) == f"{path}: BBB has a non-positive close (0) on 2020-01-03"


def test_negative_price_in_ohlc(write, source):
    path = write("prices", LONG.replace("2020-01-06,AAA,11,12,10.5,", "2020-01-06,AAA,11,12,-1,"))
    assert error(source, path=str(path)) == f"{path}: AAA has a non-positive low (-1) on 2020-01-06"


def test_high_below_low(write, source):
    path = write("prices", LONG.replace("2020-01-03,AAA,10.5,12,10,11,", "2020-01-03,AAA,10.5,9,12,11,"))
    assert error(source, path=str(path)) == (
        f"{path}: AAA on 2020-01-03: high 9 / low 12 do not bracket the bar "
        "(high < low, or open/close outside the range)"
    )


def test_missing_column(write, source):
    path = write("prices", "date,symbol,price\n2020-01-02,AAA,1\n")
    assert error(source, path=str(path)) == (
        f"{path}: no 'close' column; available columns: date, symbol, price "
        "(map one with columns: {close: <column name>})"
    )


def test_missing_mapped_column(write, source):
    path = write("prices", LONG)
    assert error(source, path=str(path), columns={"close": "Adj Close"}) == (
        f"{path}: column 'Adj Close' (mapped to close) not found; "
        "available columns: date, symbol, open, high, low, close, volume"
    )


def test_missing_mapped_symbol_column_is_not_mistaken_for_a_per_symbol_file(write, source):
    path = write("prices", "date,Symbol,close\n2020-01-02,AAA,1\n")
    assert error(source, path=str(path), columns={"symbol": "ticker"}) == (
        f"{path}: column 'ticker' (mapped to symbol) not found; available columns: date, Symbol, close"
    )


def test_missing_symbol_column_in_long_layout(write, source):
    path = write("prices", "date,close\n2020-01-02,1\n")
    assert error(source, path=str(path), layout="long") == (
        f"{path}: no 'symbol' column; available columns: date, close (map one with columns: {{symbol: <column name>}})"
    )


def test_requested_field_missing(write, source):
    path = write("AAA", "date,close\n2020-01-02,1\n")
    assert error(source, path=str(path), fields=["volume"]) == (
        f"{path}: no 'volume' column; available columns: date, close (map one with columns: {{volume: <column name>}})"
    )


def test_per_symbol_files_with_different_fields(write, source):
    write("daily/AAA", "date,close,volume\n2020-01-02,1,10\n")
    b = write("daily/BBB", "date,close\n2020-01-02,1\n")
    assert error(source, path=str(write.root / "daily")) == (
        f"{b}: no 'volume' column, but AAA{write.suffix} has one; available columns: date, close "
        "(map it with columns:, or list the fields to load with fields:)"
    )
    assert source(path=str(write.root / "daily"), fields=["close"]).load().symbols == ["AAA", "BBB"]


def test_two_files_for_one_symbol(tmp_path):
    (tmp_path / "AAA.csv").write_text("date,close\n2020-01-02,1\n")
    with gzip.open(tmp_path / "AAA.csv.gz", "wt") as fh:
        fh.write("date,close\n2020-01-02,1\n")
    assert error(CsvSource, path=str(tmp_path)) == f"{tmp_path}: two files for symbol 'AAA': AAA.csv and AAA.csv.gz"


def test_empty_result_after_date_filter(write, source):
    path = write("prices", LONG)
    assert error(source, path=str(path), start="2021-01-01", end="2021-12-31") == (
        f"{path}: no bars between 2021-01-01 and 2021-12-31 (the data covers 2020-01-02 to 2020-01-06)"
    )
    assert error(source, path=str(path), end="2019-12-31") == (
        f"{path}: no bars up to 2019-12-31 (the data covers 2020-01-02 to 2020-01-06)"
    )


def test_one_symbol_empty_after_date_filter(write, source):
    write("daily/AAA", AAA)
    write("daily/BBB", BBB)
    assert error(source, path=str(write.root / "daily"), start="2020-01-07") == (
        f"{write.root}/daily: AAA: no bars from 2020-01-07 on (the data covers 2020-01-02 to 2020-01-06)"
    )


def test_unknown_symbol_with_did_you_mean(write, source):
    path = write("prices", LONG)
    assert error(source, path=str(path), symbols=["AAA", "BBC"]) == (
        f"{path}: unknown symbol(s) 'BBC' (did you mean 'BBB'?); available: AAA, BBB"
    )
    write("daily/MSFT", AAA)
    write("daily/AAPL", AAA)
    assert error(source, path=str(write.root / "daily"), symbols=["MSTF", "XYZ"]) == (
        f"{write.root}/daily: unknown symbol(s) 'MSTF' (did you mean 'MSFT'?), 'XYZ'; available: AAPL, MSFT"
    )


def test_non_numeric_price(write, source):
    path = write("prices", LONG.replace("2020-01-03,BBB,20.5,22,20,21,", "2020-01-03,BBB,20.5,22,20,n/a?,"))
    assert error(source, path=str(path)) == f"{path}: {write.where(5)}: close ('close') is not a number: 'n/a?'"


def test_non_numeric_line_number_counts_blank_lines(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("Date,Ticker,Close\n2020-01-02,AAA,1\n\n2020-01-03,AAA,1.5.1\n2020-01-06,AAA,x\n")
    assert error(CsvSource, path=str(path)) == (
        f"{path}: line 4: close ('Close') is not a number: '1.5.1' (2 such values in this column)"
    )


def test_decimal_comma_is_not_silently_truncated(tmp_path):
    # "1,5" in a comma-separated file is an extra field: it must fail, not load as 1.0
    path = tmp_path / "prices.csv"
    path.write_text("Date,Ticker,Close\n2020-01-02,AAA,1\n\n2020-01-03,AAA,1,5\n")
    assert error(CsvSource, path=str(path)) == (
        f"{path}: not a readable CSV file: Error tokenizing data. C error: Expected 3 fields in line 4, saw 4"
    )
    path.write_text("Date,Ticker,Close\n2020-01-02,AAA,1,5\n2020-01-03,AAA,2,5\n")
    assert error(CsvSource, path=str(path)) == (
        f"{path}: line 2 has more fields than the header's 3 columns; check the delimiter and decimal commas"
    )


def test_bad_date(write, source):
    path = write("prices", "date,symbol,close\n2020-01-02,AAA,1\n2020-01-32,AAA,2\n")
    assert error(source, path=str(path)) == (
        f"{path}: {write.where(3)}: cannot parse date '2020-01-32' (set date_format, e.g. '%d/%m/%Y')"
    )


def test_bad_date_with_format(write, source):
    path = write("prices", "date,symbol,close\n02/01/2020,AAA,1\n2020-01-03,AAA,2\n2020-01-06,AAA,2\n")
    assert error(source, path=str(path), date_format="%d/%m/%Y") == (
        f"{path}: {write.where(3)}: cannot parse date '2020-01-03' with date_format '%d/%m/%Y' (2 bad dates in all)"
    )


def test_missing_date_and_missing_symbol(write, source):
    path = write("prices", "date,symbol,close\n2020-01-02,AAA,1\n,AAA,2\n")
    assert error(source, path=str(path)) == f"{path}: {write.where(3)}: missing date"
    path = write("prices", "date,symbol,close\n2020-01-02,AAA,1\n2020-01-03,,2\n")
    assert error(source, path=str(path)) == f"{path}: {write.where(3)}: no symbol"


def test_empty_and_header_only_files(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    assert error(CsvSource, path=str(tmp_path / "empty.csv")) == f"{tmp_path}/empty.csv: the file is empty"
    (tmp_path / "header.csv").write_text("date,symbol,close\n")
    assert error(CsvSource, path=str(tmp_path / "header.csv")) == f"{tmp_path}/header.csv: no data rows"


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "AAA.parquet"
    path.write_text("date,close\n2020-01-02,1\n")
    assert error(ParquetSource, path=str(path)).startswith(f"{path}: not a readable parquet file: ")


# -- params ----------------------------------------------------------------------------------------


def test_params_are_checked_before_loading():
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        CsvSource({"path": "x.csv", "colums": {}})
    with pytest.raises(ValidationError, match="Input should be 'date', 'symbol', 'open'"):
        CsvSource({"path": "x.csv", "columns": {"adj_close": "Adj Close"}})
    with pytest.raises(ValidationError, match="start 2021-01-01 is after end 2020-01-01"):
        ParquetSource({"path": "x.parquet", "start": "2021-01-01", "end": "2020-01-01"})
    with pytest.raises(ValidationError, match="symbol 'AAA' is listed twice"):
        CsvSource({"path": "x.csv", "symbols": ["AAA", "AAA"]})
    assert CsvSource({"path": "x.csv", "fields": ["volume"]}).params.fields == ["close", "volume"]
