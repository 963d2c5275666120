"""Fixtures for the data-source tests: no network, and writers for small csv/parquet files."""

from __future__ import annotations

import contextlib
import io
import socket
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test: data tests must never download."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access in a data test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _csv_to_frame(text: str) -> pd.DataFrame:
    """CSV text -> the frame a parquet writer would have been given: numbers where they parse, else text."""
    frame = pd.read_csv(io.StringIO(text), dtype=str)
    for col in frame.columns:
        with contextlib.suppress(ValueError, TypeError):
            frame[col] = pd.to_numeric(frame[col])
    return frame


class Writer:
    """Writes test tables as csv (the exact text, so line numbers are known) or parquet."""

    def __init__(self, root: Path, fmt: str) -> None:
        self.root = root
        self.fmt = fmt
        self.suffix = ".csv" if fmt == "csv" else ".parquet"

    def __call__(self, name: str, text: str) -> Path:
        """Write ``text`` (csv) to ``root/name`` + suffix; ``name`` may contain a folder."""
        path = self.root / f"{name}{self.suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "\n".join(line.strip() for line in text.strip().splitlines()) + "\n"
        if self.fmt == "csv":
            path.write_text(text)
        else:
            _csv_to_frame(text).to_parquet(path, index=False)
        return path

    def where(self, line: int) -> str:
        """How an error points at the row written on csv line ``line`` (header = line 1, no blanks)."""
        return f"line {line}" if self.fmt == "csv" else f"row {line - 1}"


@pytest.fixture(params=["csv", "parquet"])
def write(request: pytest.FixtureRequest, tmp_path: Path) -> Writer:
    """A writer for each file format, so one test covers both sources."""
    return Writer(tmp_path, request.param)


@pytest.fixture
def source(write: Writer) -> Callable[..., object]:
    """The source class matching the writer's format, built from keyword params."""
    from qf_plugins.data.csv import CsvSource
    from qf_plugins.data.parquet import ParquetSource

    cls = CsvSource if write.fmt == "csv" else ParquetSource

    def make(**params: object) -> CsvSource | ParquetSource:
        return cls(params)

    return make
