"""The ``sample`` source on the real data bundled with skfolio and arch."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from qf.errors import DataError
from qf_plugins.data.sample import DATASETS, SampleSource, _load_frames


def load(**params) -> object:
    return SampleSource(params).load()


def test_sp500_20_is_the_skfolio_dataset():
    bars = load(dataset="sp500_20")
    assert bars.close.shape == (8313, 20)
    assert bars.fields == ("close",)
    assert bars.symbols == DATASETS["sp500_20"]["symbols"]
    assert bars.source == "sample:sp500_20"
    assert bars.meta["licence"] == "BSD-3-Clause"
    # a known value from skfolio's own docstring (first row)
    assert bars.close.iloc[0][["AAPL", "AMD", "XOM"]].tolist() == [0.264, 4.125, 4.068]
    assert bars.close.notna().all().all()


def test_sp500_20_is_the_default():
    assert SampleSource({}).params.dataset == "sp500_20"


def test_sp500_index():
    bars = load(dataset="sp500_index")
    assert bars.close.shape == (8313, 1)
    assert bars.symbols == ["SP500"]
    assert bars.index.equals(load(dataset="sp500_20").index)  # usable as sp500_20's benchmark


@pytest.mark.parametrize("dataset,symbol", [("arch_sp500", "SP500"), ("arch_nasdaq", "NASDAQ")])
def test_arch_index_ohlcv(dataset, symbol):
    bars = load(dataset=dataset)
    assert bars.fields == ("open", "high", "low", "close", "volume")
    assert bars.close.shape == (5031, 1)
    assert bars.symbols == [symbol]
    # the raw file has no bar that validate() would have had to fill or reject
    raw = _load_frames(dataset)
    for field in bars.fields:
        assert (bars.frames()[field].to_numpy() == raw[field].to_numpy()).all()
    assert (raw["high"] >= raw["low"]).all().all()


def test_arch_sp500_first_bar():
    first = {f: df.iloc[0, 0] for f, df in load(dataset="arch_sp500").frames().items()}
    assert first["open"] == pytest.approx(1229.229980)
    assert first["high"] == pytest.approx(1248.810059)
    assert first["volume"] == 877000000


def test_arch_nasdaq_zero_volume_days_are_documented_and_kept():
    bars = load(dataset="arch_nasdaq")
    zero = bars.volume.index[bars.volume["NASDAQ"] == 0]
    assert [f"{d:%Y-%m-%d}" for d in zero] == ["2015-05-12", "2018-01-09"]
    assert any("2015-05-12 and 2018-01-09" in q for q in DATASETS["arch_nasdaq"]["quirks"])
    assert bars.meta["quirks"] == DATASETS["arch_nasdaq"]["quirks"]
    # the sp500 file has no such day
    assert (load(dataset="arch_sp500").volume > 0).all().all()


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_datasets_table_matches_the_data(dataset):
    info = DATASETS[dataset]
    bars = load(dataset=dataset)
    assert list(bars.fields) == sorted(info["fields"], key=["open", "high", "low", "close", "volume"].index)
    assert bars.symbols == info["symbols"]
    assert len(bars.index) == info["rows"]
    assert f"{bars.index[0]:%Y-%m-%d}" == info["start"]
    assert f"{bars.index[-1]:%Y-%m-%d}" == info["end"]
    assert info["licence"] in ("BSD-3-Clause", "NCSA")
    assert {"description", "loader", "package", "quirks", "frequency", "adjusted"} <= set(info)


def test_symbol_selection_and_inclusive_dates():
    bars = load(symbols=["MSFT", "AAPL"], start="2020-01-02", end="2020-12-31")
    assert bars.symbols == ["MSFT", "AAPL"]
    assert f"{bars.index[0]:%Y-%m-%d}" == "2020-01-02"
    assert f"{bars.index[-1]:%Y-%m-%d}" == "2020-12-31"
    assert len(bars.index) == 253


def test_unknown_symbol_did_you_mean():
    with pytest.raises(DataError) as info:
        load(symbols=["AAPL", "MSTF"])
    assert str(info.value) == (
        "sample:sp500_20: unknown symbol(s) 'MSTF' (did you mean 'MSFT'?); available: "
        + ", ".join(DATASETS["sp500_20"]["symbols"])
    )


def test_empty_range():
    with pytest.raises(DataError) as info:
        load(dataset="arch_sp500", start="2019-01-01")
    assert str(info.value) == (
        "sample:arch_sp500: no bars from 2019-01-01 on (the data covers 1999-01-04 to 2018-12-31)"
    )


def test_dataset_typo_is_a_params_error():
    with pytest.raises(ValidationError) as info:
        SampleSource({"dataset": "sp500"})
    assert "Input should be 'sp500_20', 'sp500_index', 'arch_sp500' or 'arch_nasdaq'" in str(info.value)


def test_loads_are_cached_and_isolated():
    before = _load_frames.cache_info()
    first = load(dataset="sp500_index")
    first.close.iloc[0, 0] = -1.0  # a caller scribbling on its bars must not change the next load
    second = load(dataset="sp500_index")
    after = _load_frames.cache_info()
    assert after.hits >= before.hits + 2
    assert after.misses <= before.misses + 1
    assert second.close.iloc[0, 0] > 0
    assert isinstance(second.index, pd.DatetimeIndex) and second.index.name is None


def test_sample_files_read_without_importing_their_packages_equal_the_packages_loaders():
    """The source reads skfolio's and arch's csv.gz itself (importing those packages takes seconds); the frames
    are exactly what their own loaders return."""
    import subprocess
    import sys

    probe = ("import sys; from qf_plugins.data.sample import _load_frames; "
             "[_load_frames(d) for d in ('sp500_20', 'sp500_index', 'arch_sp500', 'arch_nasdaq')]; "
             "print(sorted(m for m in ('skfolio', 'arch', 'sklearn', 'statsmodels') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

    import pandas as pd
    from arch.data.nasdaq import load as arch_nasdaq
    from arch.data.sp500 import load as arch_sp500
    from skfolio.datasets import load_sp500_dataset, load_sp500_index

    from qf_plugins.data.sample import _arch_ohlcv, _skfolio_prices

    pd.testing.assert_frame_equal(_skfolio_prices("sp500_dataset.csv.gz"), load_sp500_dataset(), check_exact=True)
    pd.testing.assert_frame_equal(_skfolio_prices("sp500_index.csv.gz"), load_sp500_index(), check_exact=True)
    pd.testing.assert_frame_equal(_arch_ohlcv("sp500", "sp500.csv.gz"), arch_sp500(), check_exact=True)
    pd.testing.assert_frame_equal(_arch_ohlcv("nasdaq", "nasdaq.csv.gz"), arch_nasdaq(), check_exact=True)
