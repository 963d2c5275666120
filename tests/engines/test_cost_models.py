"""Cost models in both engines: hand-computed fills, the participation cap, parity, YAML errors, the example."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qf.bars import Bars
from qf.cli.main import app
from qf.config.schema import ExecutionSpec
from qf.engines.backtrader.strategy import run_backtrader
from qf.engines.vectorbt import run_vectorbt

ROOT = Path(__file__).resolve().parents[2]
ENGINES = [run_vectorbt, run_backtrader]
IDX = pd.bdate_range("2021-01-04", periods=4)


def _bars(close: list[float], volume: list[float]) -> Bars:
    return Bars(close=pd.DataFrame({"A": close}, index=IDX), volume=pd.DataFrame({"A": volume}, index=IDX),
                source="test")


def _ex(costs: dict | None, **kw) -> ExecutionSpec:
    return ExecutionSpec.model_validate({"fill": "next_close", "initial_cash": 1000.0, "costs": costs, **kw})


def _targets(weight: float = 0.5) -> pd.DataFrame:
    return pd.DataFrame({"A": [weight]}, index=IDX[:1])


@pytest.mark.parametrize("run", ENGINES)
def test_spread_charges_half_the_quoted_spread(run):
    bars = _bars([100.0, 100.0, 110.0, 110.0], [1e6] * 4)
    res = run(bars, _targets(), None, _ex({"type": "spread", "params": {"bps": 20}}, fees=0.001))
    o = res.orders.iloc[0]
    # 0.5 * 1000 / 100 = 5 shares at the ask 100 * (1 + 10 bp), commission 0.1 % of that value
    assert (o.side, o.quantity) == ("buy", 5.0)
    assert o.price == pytest.approx(100.1, abs=1e-12)
    assert o.fee == pytest.approx(500.5 * 0.001, abs=1e-12)
    assert res.equity.iloc[1] == pytest.approx(1000 - 500.5 - 0.5005 + 500.0, abs=1e-9)


@pytest.mark.parametrize("run", ENGINES)
def test_fixed_model_is_the_slippage_shorthand(run):
    bars = _bars([100.0, 100.0, 110.0, 110.0], [1e6] * 4)
    short = run(bars, _targets(), None, _ex(None, slippage=0.002))
    model = run(bars, _targets(), None, _ex({"type": "fixed", "params": {"slippage": 0.002}}))
    assert short.orders.iloc[0].price == pytest.approx(100.2, abs=1e-12)
    pd.testing.assert_frame_equal(short.orders, model.orders)


@pytest.mark.parametrize("run", ENGINES)
def test_volume_share_clips_carries_and_notes_the_cap(run):
    bars = _bars([100.0, 100.0, 100.0, 100.0], [1000.0, 100.0, 1000.0, 1000.0])
    costs = {"type": "volume_share", "params": {"price_impact": 0.1, "max_participation": 0.02}}
    res = run(bars, _targets(), None, _ex(costs))
    o = res.orders
    assert len(o) == 2
    # bar 1: the target is 5 shares, the bar traded 100: 2 % of it is 2 shares, slippage 0.1 * (2/100)^2
    assert o.quantity[0] == pytest.approx(2.0, abs=1e-12)
    assert o.price[0] == pytest.approx(100 * (1 + 0.1 * (2 / 100) ** 2), abs=1e-12)
    # bar 2: the rest of the carried target, at the value after bar 1's slippage
    value = 1000 - 2 * o.price[0] + 2 * 100.0
    rest = 0.5 * value / 100.0 - 2.0
    assert o.quantity[1] == pytest.approx(rest, abs=1e-9)
    assert o.price[1] == pytest.approx(100 * (1 + 0.1 * (rest / 1000) ** 2), abs=1e-12)
    ev = res.events
    assert list(ev.event) == ["participation_cap"] and ev.time[0] == IDX[1] and ev.symbol[0] == "A"


@pytest.mark.parametrize("run", ENGINES)
def test_volume_share_trades_nothing_on_a_bar_without_volume(run):
    bars = _bars([100.0, 100.0, 100.0, 100.0], [1000.0, 0.0, 1000.0, 1000.0])
    res = run(bars, _targets(), None, _ex({"type": "volume_share", "params": {"max_participation": 0.5}}))
    assert list(res.orders.time) == [IDX[2]] and res.orders.quantity[0] == pytest.approx(5.0)
    assert list(res.events.event) == ["participation_cap"] and res.events.time[0] == IDX[1]


@pytest.mark.parametrize("run", ENGINES)
def test_almgren_chriss_square_root_impact_by_hand(run):
    close = [100.0, 102.0, 99.0, 101.0]
    volume = [1000.0, 3000.0, 2000.0, 500.0]
    bars = _bars(close, volume)
    targets = pd.DataFrame({"A": [0.5]}, index=IDX[2:3])  # filled at bar 3
    costs = {"type": "almgren_chriss", "params": {"eta": 0.2, "exponent": 0.5, "window": 3}}
    res = run(bars, targets, None, _ex(costs))
    o = res.orders.iloc[0]
    # sigma and ADV over the 3 bars before the fill bar (0, 1, 2): two log returns, three volumes
    r = [math.log(102 / 100), math.log(99 / 102)]
    m = sum(r) / 2
    sigma = math.sqrt(sum((x - m) ** 2 for x in r) / 1)
    adv = (1000 + 3000 + 2000) / 3
    q = 0.5 * 1000 / 101.0
    assert o.quantity == pytest.approx(q, abs=1e-12)
    assert o.price == pytest.approx(101.0 * (1 + 0.2 * sigma * math.sqrt(q / adv)), abs=1e-10)


@pytest.mark.parametrize("run", ENGINES)
def test_impact_buys_scaled_to_the_cash_by_bisection(run):
    # a full-weight buy cannot pay its own impact: the planner finds the largest affordable size
    bars = _bars([100.0, 100.0, 100.0, 100.0], [10.0] * 4)
    res = run(bars, _targets(1.0), None, _ex({"type": "volume_share", "params": {
        "price_impact": 0.1, "max_participation": 1.0}}))
    o = res.orders.iloc[0]
    spent = o.quantity * o.price
    assert o.price == pytest.approx(100 * (1 + 0.1 * (o.quantity / 10) ** 2), abs=1e-12)
    assert spent <= 1000.0 and spent == pytest.approx(1000.0, rel=1e-9)
    assert o.quantity < 10.0


def _random_bars(seed: int = 3, T: int = 80, N: int = 3) -> tuple[Bars, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2020-01-01", periods=T)
    cols = [f"S{k}" for k in range(N)]
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0)), index=idx, columns=cols)
    opn = close.shift(1).fillna(close.iloc[0]) * np.exp(rng.normal(0, 0.005, (T, N)))
    vol = pd.DataFrame(rng.uniform(50, 400, (T, N)), index=idx, columns=cols)
    hi = np.maximum(opn, close) * 1.01
    lo = np.minimum(opn, close) * 0.99
    bars = Bars(close=close, open=opn, high=hi, low=lo, volume=vol, source="random")
    w = rng.uniform(0, 1, (T // 5, N))
    w = w / w.sum(axis=1, keepdims=True) * rng.choice([0.5, 1.0, 0.0], size=(T // 5, 1))
    return bars, pd.DataFrame(w, index=idx[::5][: T // 5], columns=cols)


@pytest.mark.parametrize("costs", [
    {"type": "fixed", "params": {"slippage": 0.001}},
    {"type": "spread", "params": {"bps": 15}},
    {"type": "spread", "params": {"estimate": "corwin_schultz", "window": 5}},
    {"type": "volume_share", "params": {"price_impact": 0.2, "max_participation": 0.05}},
    {"type": "almgren_chriss", "params": {"eta": 0.3, "window": 10}},
])
@pytest.mark.parametrize(("fractional", "fill"), [(True, "next_open"), (False, "next_open"), (False, "close")])
def test_engines_agree_under_every_cost_model(costs, fractional, fill):
    bars, targets = _random_bars()
    ex = ExecutionSpec.model_validate({"fill": fill, "initial_cash": 100_000.0, "fees": 0.0005,
                                       "fixed_fees": 1.0, "costs": costs, "fractional": fractional})
    a = run_vectorbt(bars, targets, None, ex)
    b = run_backtrader(bars, targets, None, ex)
    assert len(a.orders) > 10
    assert np.max(np.abs(a.equity.to_numpy() - b.equity.to_numpy())) <= 1e-9 * 100_000
    for col in ("quantity", "price", "fee"):
        np.testing.assert_allclose(a.orders[col].to_numpy(), b.orders[col].to_numpy(), rtol=1e-9, atol=1e-9)
    pd.testing.assert_frame_equal(a.events, b.events)
    if costs["type"] == "volume_share":
        assert (a.events.event == "participation_cap").sum() > 0
    if costs["type"] != "fixed":  # the model really charged something beyond a constant
        base = run_vectorbt(bars, targets, None, ex.model_copy(update={"costs": None}))
        assert a.equity.iloc[-1] < base.equity.iloc[-1]


runner = CliRunner()


@pytest.mark.parametrize(("params", "needle"), [
    ("{max_participation: 0}", "max_participation"),
    ("{price_impact: -1}", "price_impact"),
    ("{bogus: 1}", "bogus"),
])
def test_bad_cost_params_name_the_line_and_exit_2(tmp_path, params, needle):
    src = (ROOT / "experiments" / "volume_share.yaml").read_text()
    lines = src.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("params: {max_participation"))
    lines[at] = lines[at].split("params:")[0] + f"params: {params}"
    path = tmp_path / "bad.yaml"
    path.write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 2, res.output
    assert f"bad.yaml:{at + 1}" in res.stderr and needle in res.stderr
    assert "Traceback" not in res.output + res.stderr


def test_unknown_cost_model_and_double_slippage_are_errors(tmp_path):
    src = (ROOT / "experiments" / "volume_share.yaml").read_text()
    path = tmp_path / "bad.yaml"
    path.write_text(src.replace("type: volume_share", "type: volume_shar"))
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "did you mean 'volume_share'" in res.stderr
    res = runner.invoke(app, ["validate", str(ROOT / "experiments" / "volume_share.yaml"),
                              "--set", "execution.slippage=0.001"])
    assert res.exit_code == 2 and "give the slippage once" in res.stderr


def test_volume_share_example_validates_and_runs(tmp_path):
    path = ROOT / "experiments" / "volume_share.yaml"
    assert runner.invoke(app, ["validate", str(path)]).exit_code == 0
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output + res.stderr
    events = pd.read_csv(next((tmp_path / "r").rglob("risk_events.csv")))
    orders = pd.read_csv(next((tmp_path / "r").rglob("orders.csv")))
    assert (events.event == "participation_cap").sum() > 0 and len(orders) > 0
