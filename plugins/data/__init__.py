"""Built-in data sources: bundled sample data, local csv/parquet files and yfinance downloads.

The ``alpaca`` source comes with the Alpaca plugin, :mod:`qf_plugins.alpaca`.
"""

from qf import hookimpl
from qf_plugins.data.csv import CsvSource
from qf_plugins.data.parquet import ParquetSource
from qf_plugins.data.sample import SampleSource
from qf_plugins.data.yfinance import YFinanceSource


@hookimpl
def qf_data_sources():
    return [SampleSource, CsvSource, ParquetSource, YFinanceSource]
