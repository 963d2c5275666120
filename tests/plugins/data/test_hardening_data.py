"""Data that used to be read wrongly without a word (issue 12, item 14), for both file formats.

Integer epoch dates are read in their unit (inferred or declared), not as nanoseconds after 1970; every other
case is refused with a message naming the file and the line (csv) or row (parquet), or symbol and date.
"""

from __future__ import annotations

import pandas as pd
import pytest

from qf.errors import DataError
from qf_plugins.data.common import printable
from qf_plugins.data.csv import CsvSource
from qf_plugins.data.parquet import ParquetSource

DAYS = pd.DatetimeIndex(["2020-01-02", "2020-01-03", "2020-01-06"])


def error(make, **params) -> str:
    """The message of the DataError raised by loading; ``make`` is a source class or the ``source`` fixture."""
    with pytest.raises(DataError) as info:
        (make(params) if isinstance(make, type) else make(**params)).load()
    return str(info.value)


def _epochs(unit: str) -> list[int]:
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    return [int(d.timestamp()) * per_second for d in DAYS]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_integer_epoch_dates_are_read_in_their_inferred_unit(write, source, unit):
    rows = "\n".join(f"{t},{10 + i}" for i, t in enumerate(_epochs(unit)))
    path = write("prices", "date,close\n" + rows)
    bars = source(path=str(path)).load()
    assert bars.index.equals(DAYS)
    assert bars.close.iloc[:, 0].tolist() == [10.0, 11.0, 12.0]


def test_declared_date_unit_wins_over_inference(write, source):
    # seconds of 2020 declared as milliseconds: the file's word is taken (18 days after 1970), not guessed
    rows = "\n".join(f"{t},{10 + i}" for i, t in enumerate(_epochs("s")))
    path = write("prices", "date,close\n" + rows)
    bars = source(path=str(path), date_unit="ms").load()
    assert bars.index[0] == pd.to_datetime(_epochs("s")[0], unit="ms")


def test_yyyymmdd_integers_are_dates(write, source):
    path = write("prices", "date,close\n20200102,10\n20200103,11\n20200106,12\n")
    assert source(path=str(path)).load().index.equals(DAYS)


def test_year_integers_are_dates_and_impossible_yyyymmdd_is_refused(write, source):
    path = write("years", "date,close\n2019,10\n2020,11\n")
    assert source(path=str(path)).load().index.tolist() == [pd.Timestamp("2019-01-01"), pd.Timestamp("2020-01-01")]
    path = write("prices", "date,close\n20200102,10\n20200230,11\n")
    assert error(source, path=str(path)) == f"{path}: {write.where(3)}: cannot parse date '20200230' as %Y%m%d"


def test_integers_too_small_for_epochs_are_refused(write, source):
    path = write("prices", "date,close\n1,10\n2,11\n")
    assert error(source, path=str(path)) == (
        f"{path}: {write.where(2)}: date 1 is an integer qf cannot place: not YYYYMMDD, and too small for epoch s "
        "like the rest of the column; set date_unit (s, ms, us, ns) or date_format"
    )


def test_mixed_epoch_units_are_refused(write, source):
    s, ms = _epochs("s")[0], _epochs("ms")[1]
    path = write("prices", f"date,close\n{s},10\n{ms},11\n")
    assert f"{write.where(2)}: date {s} is an integer qf cannot place" in error(source, path=str(path))


def test_date_unit_with_text_dates_is_refused(write, source):
    path = write("prices", "date,close\n2020-01-02,10\n")
    assert error(source, path=str(path), date_unit="s") == (
        f"{path}: {write.where(2)}: date '2020-01-02' is not an integer, but date_unit is 's'"
    )


def test_same_column_in_two_cases_is_refused(write, source):
    path = write("prices", "date,close,CLOSE\n2020-01-02,10,11\n")
    assert error(source, path=str(path)) == (
        f"{path}: columns 'close' and 'CLOSE' both name the close; map one with columns: {{close: <column name>}}"
    )
    # a mapping says which one is meant
    assert source(path=str(path), columns={"close": "CLOSE"}).load().close.iloc[0, 0] == 11.0


def test_future_dates_are_refused(write, source):
    path = write("prices", "date,close\n2020-01-02,10\n2100-01-04,11\n")
    assert error(source, path=str(path)) == (
        f"{path}: {write.where(3)}: date 2100-01-04 is in the future (read from '2100-01-04'); "
        "check date_format or date_unit"
    )


def test_absurd_prices_are_refused(write, source):
    path = write("prices", "date,symbol,close\n2020-01-02,AAA,10\n2020-01-03,AAA,1e308\n")
    assert error(source, path=str(path)) == (
        f"{path}: AAA has an implausibly large (over 1e+10) close (1e+308) on 2020-01-03"
    )


@pytest.mark.parametrize("marker", ["n/a", "NA", "NaN", "null", "#N/A", "None"])
def test_written_missing_markers_are_refused_not_filled(tmp_path, marker):
    path = tmp_path / "prices.csv"
    path.write_text(f"date,close\n2020-01-02,10\n2020-01-03,{marker}\n2020-01-06,11\n")
    assert error(CsvSource, path=str(path)) == (
        f"{path}: line 3: close ('close') is not a number: {marker!r}; leave the cell empty for a missing bar "
        "(short gaps are filled), or fix the price"
    )


def test_empty_cells_are_still_short_gaps(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("date,close\n2020-01-02,10\n2020-01-03,\n2020-01-06,11\n")
    assert CsvSource({"path": str(path)}).load().close.iloc[:, 0].tolist() == [10.0, 10.0, 11.0]


def test_symbol_na_is_a_ticker_not_a_missing_value(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("date,symbol,close\n2020-01-02,NA,10\n2020-01-03,NA,11\n")
    assert CsvSource({"path": str(path)}).load().symbols == ["NA"]


def test_control_bytes_are_escaped_in_messages(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_bytes(b"\x1b[2J\x00junk,\x07x\n\x01,\x02\n")
    message = error(CsvSource, path=str(path))
    assert "\x1b" not in message and "\x00" not in message and "\x07" not in message
    assert "available columns: \\x1b[2J\\x00junk, \\x07x" in message


def test_printable_escapes_only_what_a_terminal_would_act_on():
    assert printable("close") == "close"
    assert printable("Schlusskurs é") == "Schlusskurs é"
    assert printable("a\x1bb\x00c\n") == "a\\x1bb\\x00c\\n"


def test_parquet_datetime_columns_are_untouched(tmp_path):
    path = tmp_path / "p.parquet"
    pd.DataFrame({"date": DAYS, "close": [1.0, 2.0, 3.0]}).to_parquet(path)
    assert ParquetSource({"path": str(path)}).load().index.equals(DAYS)
