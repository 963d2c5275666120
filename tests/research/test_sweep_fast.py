"""The fast sweep path: every row equals ``qf run`` of its combination, for every built-in signal and sizer.

Sweeps evaluate combinations without building a ``vbt.Portfolio`` (:mod:`qf.engines.batch`) and reuse a
signal across combinations with the same signal params; neither may change a single number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from qf.config.loader import load_experiment
from qf.engines.batch import fill_order_nb, run_vectorbt_light, sweep_metrics
from qf.engines.vectorbt import run_vectorbt
from qf.pipeline import compute_targets
from qf.report.metrics import compute_metrics, evaluation_start
from qf.research import sweep as research_run
from qf.research.sweep import METRICS, PERIOD, combo_experiment, evaluate_grid, grid_of, simulate
from qf.runner import run_experiment

BASE = {
    "name": "fast_sweep",
    # six symbols, two years: small, but with trades, warm-ups and a full equal-weight book
    "data": {"type": "sample", "params": {"dataset": "sp500_20", "start": "2019-01-01", "end": "2020-12-31",
                                          "symbols": ["AAPL", "KO", "MSFT", "PFE", "WMT", "XOM"]}},
    "signal": {"type": "sma_cross", "params": {"fast": 10, "slow": 40}},
    "sizer": {"type": "equal"},
    "rebalance": {"freq": "daily"},
    "execution": {"fill": "next_close", "fees": 0.0005, "slippage": 0.0002, "initial_cash": 100000},
}


def _exp(tmp_path: Path, sweep: dict, **sections):
    doc = {**BASE, **sections, "sweep": {"metric": "sharpe", **sweep}}
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_experiment(p)


def _assert_rows_equal_single_runs(exp) -> pd.DataFrame:
    bars = exp.data.load()
    grid = grid_of(exp)
    table = evaluate_grid(exp, bars, grid)
    assert len(table) == len(grid)
    for i, combo in enumerate(grid.to_dict("records")):
        single = run_experiment(combo_experiment(exp.raw, exp.path, combo), write=False).metrics
        row = table.iloc[i]
        for k in METRICS:
            assert abs(float(row[k]) - float(single[k])) <= 1e-12 * max(1.0, abs(float(single[k]))), (combo, k)
        for k in PERIOD:
            assert row[k] == single[k], (combo, k)
    return table


SIGNALS = [
    ("sma_cross", {"signal.params.fast": [5, 10], "signal.params.slow": [30]}),
    ("constant", {"signal.params.value": [0.5, 1.0]}),
    ("breakout", {"signal.params.window": [10, 20]}),
    ("mean_reversion", {"signal.params.window": [10, 20]}),
    ("momentum", {"signal.params.lookback": [20, 60], "signal.params.skip": [5]}),
    ("swing", {"signal.params.trend": [50, 100], "signal.params.lookback": [20]}),
    ("regime", {"signal.params.kind": ["volatility", "trend"]}),
    ("regime_switch", {"signal.params.regime.vol_window": [10, 20]}),
    ("ensemble", {"signal.params.members.0.weight": [1, 2]}),
]


@pytest.mark.parametrize(("kind", "params"), SIGNALS, ids=[s[0] for s in SIGNALS])
def test_rows_equal_single_runs_for_each_signal(tmp_path, kind, params):
    fixed = {"sma_cross": {"fast": 10, "slow": 40},
             "ensemble": {"members": [{"type": "sma_cross", "params": {"fast": 10, "slow": 40}},
                                      {"type": "momentum", "params": {"lookback": 20, "skip": 5}}]}}.get(kind, {})
    extra = {}
    if kind == "breakout":  # needs highs and lows: the OHLC sample
        extra["data"] = {"type": "sample", "params": {"dataset": "arch_sp500", "start": "2015-01-01",
                                                      "end": "2017-12-31"}}
    _assert_rows_equal_single_runs(_exp(tmp_path, {"params": params}, signal={"type": kind, "params": fixed},
                                        **extra))


SIZERS = [
    ("equal", {"sizer.params.gross": [0.5, 1.0]}),
    ("inverse_vol", {"sizer.params.window": [20, 40]}),
    ("kelly", {"sizer.params.window": [20, 60]}),
    ("vol_target", {"sizer.params.target": [0.1, 0.2]}),
    ("hrp", {"sizer.params.window": [20, 40]}),
    ("black_litterman", {"sizer.params.confidence": [0.3, 0.7]}),
]


@pytest.mark.parametrize(("kind", "params"), SIZERS, ids=[s[0] for s in SIZERS])
def test_rows_equal_single_runs_for_each_sizer(tmp_path, kind, params):
    # monthly rebalancing keeps HRP's per-date solves few; the sizer sweep also exercises the signal cache
    _assert_rows_equal_single_runs(_exp(tmp_path, {"params": params}, sizer={"type": kind},
                                        rebalance={"freq": "month_end"}))


def test_stateful_risk_and_integer_shares(tmp_path):
    # stops and halts run inside the kernel; integer shares and a minimum order value change the sizing
    exp = _exp(tmp_path, {"params": {"risk.0.params.pct": [0.03, 0.08]}},
               risk=[{"type": "stop_loss", "params": {"pct": 0.05}}],
               execution={**BASE["execution"], "fractional": False, "min_order_value": 500, "fill": "close"})
    table = _assert_rows_equal_single_runs(exp)
    assert table["n_orders"].nunique() == 2  # the stop distance mattered


def test_light_result_is_the_portfolio_result(tmp_path):
    # the equity without vbt.Portfolio is vectorbt's own, bit for bit, and so are the fills
    exp = _exp(tmp_path, {"params": {"signal.params.fast": [5]}},
               risk=[{"type": "stop_loss", "params": {"pct": 0.04}}])
    bars = exp.data.load()
    t = compute_targets(exp, bars)
    full = run_vectorbt(bars, t.targets, t.risk, exp.spec.execution)
    light = run_vectorbt_light(bars, t.targets, t.risk, exp.spec.execution)
    assert "portfolio" not in light.extra
    np.testing.assert_array_equal(light.equity.to_numpy(), full.equity.to_numpy())
    assert light.equity.index.equals(full.equity.index)
    pd.testing.assert_frame_equal(light.orders.astype({"symbol": str, "side": str}), full.orders, check_dtype=False)
    pd.testing.assert_frame_equal(light.events, full.events)
    assert (light.events["event"] == "stop").any()


def test_signal_cache_hits_do_not_change_results(tmp_path, monkeypatch):
    # a sizer sweep: every combination has the same signal, so all but the first reuse it
    exp = _exp(tmp_path, {"params": {"sizer.params.gross": [0.5, 0.8, 1.0]}})
    bars = exp.data.load()
    calls = []
    real = research_run.compute_signal
    monkeypatch.setattr(research_run, "compute_signal", lambda e, b: calls.append(1) or real(e, b))
    combos = grid_of(exp).to_dict("records")
    cache: research_run.SignalCache = {}
    cached = [simulate(combo_experiment(exp.raw, exp.path, c), bars, light=True, signal_cache=cache)[2]
              for c in combos]
    assert len(calls) == 1
    fresh = [simulate(combo_experiment(exp.raw, exp.path, c), bars)[2] for c in combos]
    for a, b in zip(cached, fresh, strict=True):
        assert {k: a[k] for k in (*METRICS, *PERIOD)} == {k: b[k] for k in (*METRICS, *PERIOD)}


def test_chunks_group_combinations_by_signal():
    combos = [{"signal.params.fast": f, "sizer.params.gross": g} for g in (0.5, 1.0) for f in (5, 10)]
    order = research_run._by_signal(combos)
    assert sorted(order) == list(range(4))
    assert [combos[i]["signal.params.fast"] for i in order] == [5, 5, 10, 10]


def test_backtrader_sweep_still_equals_single_runs(tmp_path):
    exp = _exp(tmp_path, {"params": {"signal.params.fast": [5, 10]}},
               execution={**BASE["execution"], "engine": "backtrader"},
               data={"type": "sample", "params": {"dataset": "sp500_20", "start": "2020-01-01",
                                                  "end": "2020-12-31", "symbols": ["AAPL", "KO", "MSFT"]}})
    _assert_rows_equal_single_runs(exp)


def test_pooled_sweep_equals_single_runs(tmp_path):
    # 42 combinations go to two worker processes (forked from this warm one on Linux), the first chunk here
    grid = {"signal.params.fast": list(range(3, 10)), "signal.params.slow": list(range(20, 32, 2))}
    exp = _exp(tmp_path, {"params": grid},
               execution={**BASE["execution"], "executor": {"kind": "local", "n_jobs": 2}},
               data={"type": "sample", "params": {"dataset": "sp500_20", "start": "2020-01-01",
                                                  "end": "2020-12-31", "symbols": ["AAPL", "KO", "MSFT"]}})
    assert len(grid_of(exp)) == 42
    _assert_rows_equal_single_runs(exp)


def _kernel_case(tmp_path, **sections):
    exp = _exp(tmp_path, {"params": {"signal.params.fast": [5]}}, **sections)
    bars = exp.data.load()
    t = compute_targets(exp, bars)
    return exp, bars, t, evaluation_start(exp, bars.index, t.targets)


KERNEL_CASES = {
    # long/short books (debt and free cash move), fixed fees, integer shares with a minimum order value,
    # a same-bar fill, stops and a drawdown halt: every branch of fill_order_nb the built-ins can reach
    "short_book": {"signal": {"type": "sma_cross", "params": {"fast": 10, "slow": 40, "short": True}},
                   "sizer": {"type": "equal", "params": {"allow_short": True}}},
    "fixed_fees_integer": {"execution": {**BASE["execution"], "fixed_fees": 1.0, "fractional": False,
                                         "min_order_value": 200, "fill": "close"}},
    "stops_and_halt": {"risk": [{"type": "stop_loss", "params": {"pct": 0.04}},
                                {"type": "drawdown_halt", "params": {"max_drawdown": 0.08}}]},
}


@pytest.mark.parametrize("case", list(KERNEL_CASES))
def test_sweep_kernel_equals_the_reference_path(tmp_path, case):
    # the fused kernel's equity is Portfolio.value()'s bit for bit and its metrics are compute_metrics'
    exp, bars, t, start = _kernel_case(tmp_path, **KERNEL_CASES[case])
    ex = exp.spec.execution
    ref = run_vectorbt_light(bars, t.targets, t.risk, ex)
    m, equity = sweep_metrics(bars, t.targets, t.risk, ex, start)
    np.testing.assert_array_equal(equity, ref.equity.to_numpy())
    # and both are vbt.Portfolio.value() (short positions included: its assets in both directions)
    np.testing.assert_array_equal(equity, run_vectorbt(bars, t.targets, t.risk, ex).equity.to_numpy())
    want = compute_metrics(ref, ex.initial_cash, eval_start=start)
    assert m["n_orders"] > 0 and set(m) == set(want)
    for k, v in want.items():
        if k in ("fees_paid", "turnover"):  # summed in another order: a few ulps
            assert abs(m[k] - v) <= 1e-12 * max(1.0, abs(v)), k
        else:
            assert m[k] == v, k


def test_fill_order_nb_is_process_order_nb():
    # the port of vectorbt's order execution, on buys and sells that open, add, reduce, close and flip,
    # long and short, with and without fixed fees, against vectorbt's own process_order_nb
    from vectorbt.portfolio.enums import ProcessOrderState, log_dt, order_dt
    from vectorbt.portfolio.nb import order_nb, process_order_nb

    rng = np.random.default_rng(7)
    records, logs = np.empty(1, dtype=order_dt), np.empty(0, dtype=log_dt)
    n = 0
    for _ in range(3000):
        cash = float(rng.choice([0.0, 1e-13, rng.uniform(0, 1e5)]))
        position = float(rng.choice([0.0, rng.uniform(-50, 50)]))
        debt = abs(position) * 90.0 if position < 0 else 0.0
        free_cash = cash - 2 * debt if position < 0 else cash
        size = float(rng.choice([rng.uniform(-60, 60), -position if position else 1.0, 1e-13]))
        price, fees = float(rng.uniform(10, 200)), float(rng.choice([0.0, 0.0005, 0.01]))
        fixed, slip = float(rng.choice([0.0, 1.0])), float(rng.choice([0.0, 0.0002]))
        got = fill_order_nb(cash, position, debt, free_cash, size, price, fees, fixed, slip)
        o = order_nb(size=size, price=price, fees=fees, fixed_fees=fixed, slippage=slip, allow_partial=False,
                     raise_reject=True)
        try:
            state = ProcessOrderState(cash, position, debt, free_cash, price, cash, 0, 0)
            res, after = process_order_nb(0, 0, 0, state, False, o, records, logs)
        except Exception:  # vectorbt rejects or refuses it: the kernel hands it back to the reference path
            assert got[0] == -1
            continue
        assert got[0] == res.status
        assert got[5:] == (after.cash, after.position, after.debt, after.free_cash)
        if res.status == 0:
            n += 1
            assert got[1:5] == (res.size, res.price, res.fees, res.side)
    assert n > 1000


def test_indicators_are_shared_and_forgotten_with_their_bars():
    import gc

    from qf_plugins.signals import _indicators as ind

    close = pd.DataFrame(np.linspace(1.0, 2.0, 300).reshape(100, 3), columns=list("ABC"))
    first = ind.sma(close, 7)
    assert ind.sma(close, 7) is first  # computed once, shared
    pd.testing.assert_frame_equal(first, close.rolling(7, min_periods=7).mean())
    pd.testing.assert_frame_equal(ind.zscore(close, 5), ind._zscore(close, 5))
    pd.testing.assert_frame_equal(ind.rsi(close, 5), ind._rsi(close, 5))
    key = ("sma", id(close), 7)
    assert key in ind._MEMO
    del close, first
    gc.collect()
    assert key not in ind._MEMO


def test_a_plugin_without_a_fast_path_still_sweeps(tmp_path):
    # a third-party signal (a local class, no shared indicators, no array code) goes through the same path
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "mine.py").write_text(
        "import pandas as pd\n"
        "from qf.components import Params, SignalModel\n"
        "class Mine(SignalModel):\n"
        "    name = 'mine'\n"
        "    class Params(Params):\n"
        "        window: int = 10\n"
        "    def compute(self, bars):\n"
        "        c = bars.close\n"
        "        return (c > c.rolling(self.params.window).mean()).astype(float).where(c.notna())\n")
    _assert_rows_equal_single_runs(_exp(tmp_path, {"params": {"signal.params.window": [5, 15]}},
                                        signal={"type": "strategies/mine.py:Mine"}))
