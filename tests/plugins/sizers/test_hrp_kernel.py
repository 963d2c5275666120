"""qf's HRP kernel against riskfolio-lib's HCPortfolio HRP on real data (skfolio's 20 S&P 500 stocks).

Each covered configuration is compared on 30 distinct 252-day windows (240 windows in all, spread over
1990-2022, none shared between configurations) to keep the suite fast; ``benchmarks/hrp.py`` runs the
full sweep (every configuration on >= 200 windows) and times both.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.cluster import hierarchy

from qf_plugins.data.sample import SampleSource
from qf_plugins.sizers import hrp_kernel
from qf_plugins.sizers.hrp import Hrp, riskfolio_hrp_weights, uses_kernel
from qf_plugins.sizers.hrp_kernel import (
    KERNEL_CODEPENDENCE,
    KERNEL_LINKAGE,
    hrp_weights_kernel,
    kernel_covers,
)

WINDOW = 252
PER_CONFIG = 30
CONFIGS = sorted(itertools.product(sorted(KERNEL_CODEPENDENCE), sorted(KERNEL_LINKAGE)))


@pytest.fixture(scope="module")
def returns() -> pd.DataFrame:
    bars = SampleSource({"dataset": "sp500_20"}).load()
    return bars.close.pct_change(fill_method=None).iloc[1:]


def _window_ends(n_rows: int, config_no: int) -> list[int]:
    # interleaved so every configuration sees the whole history and no window is used twice
    step = (n_rows - WINDOW) // (PER_CONFIG * len(CONFIGS))
    return [WINDOW + (config_no + len(CONFIGS) * j) * step for j in range(PER_CONFIG)]


def test_the_configurations_cover_the_issue_minimum() -> None:
    assert len(CONFIGS) * PER_CONFIG >= 200
    for cod, link in itertools.product(["pearson", "spearman"], ["single", "average", "complete", "ward"]):
        assert kernel_covers(cod, link, "MV")


@pytest.mark.parametrize(("codependence", "linkage"), CONFIGS)
def test_kernel_equals_riskfolio_on_real_windows(returns: pd.DataFrame, codependence: str, linkage: str) -> None:
    worst = 0.0
    orders = set()
    for end in _window_ends(len(returns), CONFIGS.index((codependence, linkage))):
        frame = returns.iloc[end - WINDOW : end]
        assert frame.notna().all().all()
        expected = riskfolio_hrp_weights(frame, codependence, linkage, "MV").to_numpy()
        got = hrp_weights_kernel(frame.to_numpy(), codependence, linkage)
        worst = max(worst, float(np.abs(got - expected).max()))
        orders.add(tuple(np.argsort(expected)))
    assert worst <= 1e-12
    assert len(orders) > PER_CONFIG // 2  # the windows really differ, not one solve repeated


@pytest.mark.parametrize("codependence", sorted(KERNEL_CODEPENDENCE))
def test_codependence_is_bit_identical_to_dataframe_corr(returns: pd.DataFrame, codependence: str) -> None:
    # riskfolio clusters on DataFrame.corr; an exact tie between two distances must break the same way,
    # so the kernel's correlations must not differ even in the last bit
    frames = [returns.iloc[e - WINDOW : e] for e in range(WINDOW, len(returns), 400)]
    # rounded returns have many ties, which exercise Spearman's average ranks
    frames += [f.round(3) for f in frames[:5]]
    for frame in frames:
        x = np.ascontiguousarray(frame.to_numpy())
        got = (hrp_kernel._pearson_nb(x) if codependence == "pearson"
               else hrp_kernel._spearman_nb(x, np.argsort(x, axis=0)))
        np.testing.assert_array_equal(got, frame.corr(method=codependence).to_numpy())


@pytest.mark.parametrize("method", ["single", "complete", "average", "weighted", "ward", "centroid", "median"])
def test_optimal_leaf_order_equals_scipys_including_ties(method: str) -> None:
    rng = np.random.default_rng(11)
    for trial in range(60):
        n = int(rng.integers(2, 25))
        d = rng.random(n * (n - 1) // 2)
        if trial % 2:
            d = np.round(d, 1) + 0.05  # many exact ties in distances and in the float32 path sums
        z = hierarchy.linkage(d, method=method)
        want = hierarchy.leaves_list(hierarchy.optimal_leaf_ordering(z, d))
        np.testing.assert_array_equal(hrp_kernel._optimal_leaf_order_nb(z, d, n), want)


def test_two_assets_and_weights_follow_the_column_order(returns: pd.DataFrame) -> None:
    frame = returns.iloc[-WINDOW:, [3, 0, 7]]
    np.testing.assert_allclose(hrp_weights_kernel(frame.to_numpy()),
                               riskfolio_hrp_weights(frame, "pearson", "single", "MV").to_numpy(), atol=1e-12)
    pair = returns.iloc[-WINDOW:, [5, 2]]
    w = hrp_weights_kernel(pair.to_numpy(), "spearman", "ward")
    var = pair.var().to_numpy()
    np.testing.assert_allclose(w, (1 / var) / (1 / var).sum(), rtol=1e-12)  # two assets: inverse variance


@pytest.mark.parametrize(
    ("args", "message"),
    [((np.ones((10, 1)),), "at least 2 rows and 2 columns"),
     ((np.full((10, 3), np.nan),), "must be finite"),
     ((np.c_[np.linspace(0, 1, 10), np.ones(10)],), "no variance"),
     ((np.eye(5), "kendall"), "codependence 'kendall' is not covered"),
     ((np.eye(5), "pearson", "DBHT"), "linkage 'DBHT' is not covered")],
)
def test_bad_input_is_refused(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hrp_weights_kernel(*args)


def test_the_sizer_takes_the_kernel_only_where_it_is_exact(monkeypatch: pytest.MonkeyPatch,
                                                          returns: pd.DataFrame) -> None:
    import qf_plugins.sizers.hrp as hrp_module

    assert Hrp({}).path == "kernel" and Hrp({}).info == {"hrp_path": "kernel"}
    assert Hrp({"linkage": "ward", "codependence": "spearman"}).path == "kernel"
    for params in ({"codependence": "kendall"}, {"linkage": "weighted"}, {"rm": "CVaR"}, {"backend": "riskfolio"}):
        assert Hrp(params).path == "riskfolio", params
    assert not uses_kernel("pearson", "single", "vol")

    bars = SampleSource({"dataset": "sp500_20", "start": "2015-01-01", "end": "2016-12-31"}).load()
    signal = pd.DataFrame(1.0, index=bars.index, columns=bars.close.columns)
    dates = bars.index[[260, 300, 350, 400, 450, 500]]
    reference = Hrp({"backend": "riskfolio"}).size(signal, bars, dates)

    def no_riskfolio(*_: object) -> pd.Series:
        raise AssertionError("riskfolio called on a configuration the kernel covers")

    monkeypatch.setattr(hrp_module, "riskfolio_hrp_weights", no_riskfolio)
    fast = Hrp({}).size(signal, bars, dates)
    np.testing.assert_allclose(fast.to_numpy(), reference.to_numpy(), atol=1e-12, rtol=0)
    assert (fast.to_numpy() > 0).all()
    with pytest.raises(AssertionError, match="riskfolio called"):
        Hrp({"backend": "riskfolio"}).size(signal, bars, dates[:1])
