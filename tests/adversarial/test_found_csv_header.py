"""Found by adversarial testing: a CSV header that repeats a column name qf reads.

pandas renames the second ``close`` to ``close.1`` and qf used to read the first one without a word (a
file with ``close,close`` of different prices gave a full report on whichever came first).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qf.errors import DataError
from qf_plugins.data.csv import CsvSource


def _load(tmp_path: Path, text: str, **params: object):
    path = tmp_path / "prices.csv"
    path.write_text(text)
    return CsvSource({"path": str(path), **params}).load()


def test_a_repeated_close_column_is_refused_naming_line_1(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        _load(tmp_path, "date,symbol,close,close\n2020-01-02,AAA,10,20\n2020-01-03,AAA,11,21\n")
    assert str(info.value) == (
        f"{tmp_path / 'prices.csv'}: line 1: column 'close' appears 2 times in the header; "
        "rename or remove the extra one"
    )


def test_a_repeated_mapped_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="column 'Px' appears 2 times"):
        _load(tmp_path, "date,symbol,Px,Px\n2020-01-02,AAA,10,20\n", columns={"close": "Px"})


def test_a_repeated_column_qf_does_not_read_is_allowed(tmp_path: Path) -> None:
    bars = _load(tmp_path, "date,symbol,close,note,note\n2020-01-02,AAA,10,a,b\n2020-01-03,AAA,11,c,d\n")
    assert bars.close["AAA"].tolist() == [10.0, 11.0]
