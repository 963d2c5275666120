"""qf's SMA-cross sweep must reproduce a plain vectorbt run to 1e-9 on every metric."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import vectorbt as vbt

from qf.research.grid import expand_grid
from qf.research.sma_sweep import (
    METRICS,
    rolling_mean,
    run_sma_sweep,
    run_sma_sweep_vectorbt,
    sma_sweep_arrays,
)

TOL = 1e-9
# vectorbt's own MA cache passes reflected lists to numba, which warns on every compile
pytestmark = pytest.mark.filterwarnings("ignore::numba.NumbaPendingDeprecationWarning")
COSTS = {"fees": 0.001, "slippage": 0.0005, "init_cash": 10_000.0}


def _gbm(n_bars: int, n_symbols: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    vol = rng.uniform(0.01, 0.03, size=n_symbols)
    log_ret = rng.normal(0.0003, 1.0, size=(n_bars, n_symbols)) * vol
    index = pd.date_range("2018-01-01", periods=n_bars, freq="B")
    columns = ["AAA", "BBB", "CCC"][:n_symbols]
    return pd.DataFrame(100 * np.exp(np.cumsum(log_ret, axis=0)), index=index, columns=columns)


@pytest.fixture(scope="module")
def close() -> pd.DataFrame:
    return _gbm(756, 3, seed=11)


@pytest.fixture(scope="module")
def combos() -> tuple[np.ndarray, np.ndarray]:
    grid = expand_grid(
        {"signal.params.fast": {"range": [5, 50, 1]}, "signal.params.slow": {"range": [20, 200, 5]}},
        "fast < slow",
    )
    rows = np.random.default_rng(0).choice(len(grid), size=40, replace=False)
    fast = grid["signal.params.fast"].to_numpy()[rows].tolist()
    slow = grid["signal.params.slow"].to_numpy()[rows].tolist()
    # edge cases: very short windows, equal windows (never crosses), a window longer than the data
    fast += [2, 30, 5, 1]
    slow += [3, 30, 800, 2]
    return np.array(fast), np.array(slow)


def _assert_tables_match(ours: pd.DataFrame, ref: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(ours[["symbol", "fast", "slow"]], ref[["symbol", "fast", "slow"]])
    for name in METRICS:
        a, b = ours[name].to_numpy(np.float64), ref[name].to_numpy(np.float64)
        np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b), err_msg=name)
        np.testing.assert_array_equal(a[~np.isfinite(a)], b[~np.isfinite(b)], err_msg=name)
        finite = np.isfinite(a)
        np.testing.assert_allclose(a[finite], b[finite], rtol=0, atol=TOL, err_msg=name)


def test_matches_vectorbt_on_sampled_combos(close: pd.DataFrame, combos: tuple[np.ndarray, np.ndarray]) -> None:
    fast, slow = combos
    ours = run_sma_sweep(close, fast, slow, **COSTS)
    ref = run_sma_sweep_vectorbt(close, fast, slow, **COSTS)
    _assert_tables_match(ours, ref)
    # the sample exercises trading and never-trading combos alike
    assert (ours["n_trades"] >= 2).mean() > 0.7
    never = ours[ours["n_trades"] == 0]
    assert len(never) >= 3 * 2  # (30, 30) and (5, 800) on every symbol
    assert np.isinf(never["sharpe"]).all() and (never["total_return"] == 0).all()


def test_matches_direct_vectorbt_per_combo(close: pd.DataFrame) -> None:
    # Independent of run_sma_sweep_vectorbt's reshaping: one vectorbt portfolio per combo, over two
    # symbols (two columns keep the numba signature of the other tests: vectorbt's
    # simulate_from_signals_nb is not disk-cached, so every new signature costs a compile).
    fast, slow = np.array([5, 12, 21]), np.array([20, 40, 60])
    px = close[["AAA", "BBB"]]
    ours = run_sma_sweep(px, fast, slow, fees=0.002, slippage=0.001, init_cash=1_000.0).set_index(
        ["symbol", "fast", "slow"]
    )
    for f, s in zip(fast, slow, strict=True):
        fast_ma = vbt.MA.run(px, window=int(f)).ma.droplevel(0, axis=1)
        slow_ma = vbt.MA.run(px, window=int(s)).ma.droplevel(0, axis=1)
        pf = vbt.Portfolio.from_signals(
            px, fast_ma.vbt.crossed_above(slow_ma), fast_ma.vbt.crossed_below(slow_ma),
            init_cash=1_000.0, fees=0.002, slippage=0.001, size=np.inf, direction="longonly",
            accumulate=False, freq="1D",
        )
        expected = pd.DataFrame(
            {
                "total_return": pf.total_return(),
                "final_value": pf.final_value(),
                "sharpe": pf.get_returns_acc(year_freq="252 days").sharpe_ratio(),
                "max_drawdown": pf.max_drawdown(),
                "n_trades": pf.trades.count(),
            }
        )
        for symbol in px.columns:
            got = ours.loc[(symbol, f, s)]
            for name in METRICS:
                assert got[name] == pytest.approx(expected.loc[symbol, name], rel=0, abs=TOL), (symbol, f, s, name)


def test_ties_plateaus_and_zero_costs_match_vectorbt() -> None:
    # Integer prices make rolling sums exact, so the MAs are exactly equal on plateaus; this drives
    # vectorbt's crossover state machine through its equality branches (below -> equal -> above
    # fires, above -> equal -> above re-fires only after an earlier 'below').
    pieces = [
        np.full(30, 100.0), np.arange(100.0, 80.0, -1.0), np.full(40, 80.0), np.arange(80.0, 110.0),
        np.full(35, 110.0), np.arange(110.0, 125.0), np.full(25, 125.0), np.arange(125.0, 90.0, -1.0),
        np.tile([90.0, 91.0, 90.0, 92.0], 15), np.full(30, 92.0), np.arange(92.0, 130.0),
    ]
    px = pd.DataFrame({"PLATEAU": np.concatenate(pieces)})
    fast = np.array([2, 3, 5, 5, 8, 10, 4])
    slow = np.array([5, 8, 10, 20, 21, 30, 12])
    for costs in ({"fees": 0.0, "slippage": 0.0, "init_cash": 100.0}, COSTS):
        ours = run_sma_sweep(px, fast, slow, **costs)
        _assert_tables_match(ours, run_sma_sweep_vectorbt(px, fast, slow, **costs))
        assert (ours["n_trades"] > 0).all()


def test_rolling_mean_is_vectorbt_ma() -> None:
    a = np.random.default_rng(2).normal(100, 5, 300)
    a[[10, 11, 150]] = np.nan  # vectorbt's NaN-aware window counts
    for window in (1, 2, 7, 50, 299, 300, 301):
        expected = vbt.MA.run(pd.Series(a), window=window).ma.to_numpy()
        np.testing.assert_array_equal(rolling_mean(a, window), expected)
    with pytest.raises(ValueError, match="window"):
        rolling_mean(a, 0)


def test_parallelism_and_chunking_do_not_change_results(close: pd.DataFrame, combos) -> None:
    fast, slow = combos
    base = run_sma_sweep(close, fast, slow, n_jobs=1, **COSTS)
    pd.testing.assert_frame_equal(run_sma_sweep(close, fast, slow, n_jobs=-1, **COSTS), base)
    # a budget below one asset's MA table forces one asset per block
    pd.testing.assert_frame_equal(run_sma_sweep(close, fast, slow, chunk_bytes=1, **COSTS), base)


def test_table_layout_and_array_api(close: pd.DataFrame) -> None:
    fast, slow = [5, 10], [20, 30]
    table = run_sma_sweep(close, fast, slow, **COSTS)
    assert list(table.columns) == ["symbol", "fast", "slow", *METRICS]
    assert table["symbol"].tolist() == ["AAA", "AAA", "BBB", "BBB", "CCC", "CCC"]
    assert table["fast"].tolist() == [5, 10] * 3 and table["slow"].tolist() == [20, 30] * 3
    assert table["n_trades"].dtype == np.int64
    arr = sma_sweep_arrays(close.to_numpy().T, fast, slow, **COSTS)
    assert arr.shape == (3, 2, len(METRICS))
    np.testing.assert_array_equal(arr.reshape(6, -1), table[list(METRICS)].to_numpy(np.float64))
    # a Series is one symbol; periods_per_year only rescales the Sharpe ratio
    single = run_sma_sweep(close["BBB"], fast, slow, periods_per_year=365, **COSTS)
    assert single["symbol"].tolist() == ["BBB", "BBB"]
    np.testing.assert_allclose(
        single["sharpe"].to_numpy(), table["sharpe"].to_numpy()[2:4] * np.sqrt(365 / 252), rtol=1e-12
    )


def test_issue_grid_runs_per_symbol(close: pd.DataFrame) -> None:
    grid = expand_grid(
        {"signal.params.fast": {"range": [5, 50, 1]}, "signal.params.slow": {"range": [20, 200, 5]}},
        "fast < slow",
    )
    table = run_sma_sweep(close, grid["signal.params.fast"], grid["signal.params.slow"], **COSTS)
    assert len(table) == 3 * 1590
    assert table[list(METRICS)].notna().all().all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fast": [5, 6], "slow": [20]}, "pair up"),
        ({"fast": [0], "slow": [20]}, "fast windows must be >= 1"),
        ({"fast": [5.5], "slow": [20]}, "integers"),
        ({"fast": [], "slow": []}, "non-empty"),
        ({"fast": [5], "slow": [20], "fees": float("nan")}, "fees"),
        ({"fast": [5], "slow": [20], "slippage": -0.1}, "slippage"),
        ({"fast": [5], "slow": [20], "init_cash": 0.0}, "init_cash"),
        ({"fast": [5], "slow": [20], "n_jobs": 0}, "n_jobs"),
    ],
)
def test_invalid_arguments(close: pd.DataFrame, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_sma_sweep(close, **kwargs)


def test_rejects_incomplete_prices(close: pd.DataFrame) -> None:
    bad = close.copy()
    bad.iloc[5, 1] = np.nan
    with pytest.raises(ValueError, match="'BBB'"):
        run_sma_sweep(bad, [5], [20])
    with pytest.raises(TypeError, match="DataFrame"):
        run_sma_sweep(close.to_numpy(), [5], [20])  # type: ignore[arg-type]
