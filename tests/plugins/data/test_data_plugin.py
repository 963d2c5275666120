"""The data plugin as a plugin: registration, documented YAML examples, params shared by all sources."""

from __future__ import annotations

import re

import pytest
import yaml
from pydantic import ValidationError

import qf_plugins.data as data_plugin
from qf.components import DataSource, Params
from qf.registry import Registry, new_plugin_manager
from qf_plugins.data.common import SourceParams
from qf_plugins.data.csv import CsvSource
from qf_plugins.data.parquet import ParquetSource
from qf_plugins.data.sample import SampleSource
from qf_plugins.data.yfinance import YFinanceSource

SOURCES = [SampleSource, CsvSource, ParquetSource, YFinanceSource]


def test_hook_registers_every_source():
    pm = new_plugin_manager()
    pm.register(data_plugin, name="qf_data")
    reg = Registry(pm)
    assert reg.names("data") == ["csv", "parquet", "sample", "yfinance"]  # alpaca: the qf_plugins.alpaca plugin
    assert [reg.get("data", c.name).cls for c in SOURCES] == SOURCES


@pytest.mark.parametrize("cls", SOURCES, ids=lambda c: c.name)
def test_docstring_yaml_example_is_valid(cls):
    assert issubclass(cls, DataSource) and issubclass(cls.Params, SourceParams)
    match = re.search(r"Example \(YAML\)::\n\n(.*?)(?:\n\s*\n|\Z)", cls.__doc__ or "", re.S)
    assert match, f"{cls.__name__} has no YAML example"
    example = yaml.safe_load(match.group(1))["data"]
    assert example.pop("type") == cls.name
    assert isinstance(cls(example).params, Params)  # validates, with extra="forbid"


@pytest.mark.parametrize("cls", SOURCES, ids=lambda c: c.name)
def test_common_params(cls):
    base = {"path": "x"} if cls in (CsvSource, ParquetSource) else {}
    base |= {"symbols": ["A"]}
    assert cls({**base, "start": "2020-01-01", "end": "2020-01-01"}).params.max_gap == 3
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        cls({**base, "strat": "2020-01-01"})
    with pytest.raises(ValidationError, match="start 2021-01-01 is after end 2020-01-01"):
        cls({**base, "start": "2021-01-01", "end": "2020-01-01"})
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        cls({**base, "max_gap": -1})
    with pytest.raises(ValidationError, match="Input should be a valid date"):
        cls({**base, "start": "2020-13-01"})
    with pytest.raises(ValidationError, match="symbol 'A' is listed twice"):
        cls({**base, "symbols": ["A", "A"]})
