"""A paper session charges the experiment's cost model as the backtest does.

- a ``--broker sim`` replay under ``volume_share`` (participation cap, quadratic impact) and
  ``almgren_chriss`` (square-root impact) places the backtest's orders at the backtest's prices, with its
  ``participation_cap`` events, also when stopped and resumed in the middle;
- a live session computes the fill bar's costs from the bars before it: for a model that reads only those
  (``spread``'s high-low estimate, ``almgren_chriss``) the row equals the backtest's; through Alpaca (the
  emulator) its orders respect ``volume_share``'s cap on the last bar's volume.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from qf.bars import Bars, validate
from qf.components import DataSource
from qf.config.loader import Source, build, load_experiment
from qf.config.schema import ExecutionSpec
from qf.engines.backtrader.strategy import run_backtrader
from qf.engines.costs import cost_arrays
from qf.engines.kernels.risk import compose
from qf.paper.session import PaperOptions, run_paper, warmup_bars
from qf.paper.state import PaperState
from qf.paper.strategy import SessionArrays
from qf.pipeline import compute_targets


def thin_frames(n: int = 120, seed: int = 11) -> dict[str, pd.DataFrame]:
    """OHLCV random walks for 3 thinly traded names: a 100k account's orders are a large share of a bar."""
    rng = np.random.default_rng(seed)
    names = ["AAA", "BBB", "CCC"]
    idx = pd.bdate_range("2021-01-04", periods=n)
    close = 30.0 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, (n, len(names))), axis=0))
    opn = np.r_[close[:1], close[:-1]] * np.exp(rng.normal(0, 0.006, close.shape))
    frames = {"open": opn, "high": np.maximum(opn, close) * (1 + rng.uniform(0, 0.01, close.shape)),
              "low": np.minimum(opn, close) * (1 - rng.uniform(0, 0.01, close.shape)), "close": close,
              "volume": rng.uniform(2_000, 8_000, close.shape).round()}
    return {f: pd.DataFrame(a, index=idx, columns=names) for f, a in frames.items()}


class Thin(DataSource):
    """The universe above as a data source."""

    name: ClassVar[str] = "paper_thin"

    def load(self) -> Bars:
        return validate(Bars(**thin_frames(), source="thin"))


def _experiment(costs: dict[str, Any], fill: str, tmp_path) -> Any:
    return build({
        "name": "paper_costs", "data": {"type": f"{__name__}:Thin"},
        "signal": {"type": "momentum", "params": {"lookback": 8, "skip": 0}}, "sizer": {"type": "equal"},
        "rebalance": {"every": 3}, "risk": [{"type": "stop_loss", "params": {"pct": 0.06}}],
        "execution": {"engine": "backtrader", "fill": fill, "fees": 0.0005, "costs": costs},
        "report": {"dir": str(tmp_path / "reports"), "tearsheet": False},
    }, Source("test.yaml"), None)


@pytest.mark.parametrize(("costs", "fill"), [
    ({"type": "volume_share", "params": {"price_impact": 0.1, "max_participation": 0.2}}, "next_open"),
    ({"type": "almgren_chriss", "params": {"eta": 0.5, "window": 10}}, "next_close"),
])
def test_a_sim_replay_charges_the_backtests_cost_model(costs, fill, tmp_path):
    exp = _experiment(costs, fill, tmp_path)
    bars = exp.data.load()
    tg = compute_targets(exp, bars)
    want = run_backtrader(bars, tg.targets, tg.risk, exp.spec.execution, broker=exp.broker)
    start = bars.index[warmup_bars(exp)]
    # stopped in the middle and resumed: the carried rest of a clipped order survives the restart
    first = run_paper(exp, PaperOptions(broker="sim", state_dir=tmp_path / "state", write_report=False,
                                        max_bars=40))
    assert first.status == "stopped"
    out = run_paper(exp, PaperOptions(broker="sim", state_dir=tmp_path / "state", write_report=False))
    assert out.status == "done"
    got = out.orders.reset_index(drop=True)
    expected = want.orders[want.orders["time"] >= start].reset_index(drop=True)
    assert len(got) == len(expected) > 30
    pd.testing.assert_frame_equal(got[["time", "symbol", "side"]], expected[["time", "symbol", "side"]])
    for col in ("quantity", "price", "fee"):
        np.testing.assert_allclose(got[col].to_numpy(), expected[col].to_numpy(), rtol=1e-9, atol=0)
    np.testing.assert_allclose(out.equity.to_numpy(), want.equity.loc[start:].to_numpy(), rtol=1e-9)
    pd.testing.assert_frame_equal(out.events.sort_values(["time", "event", "symbol"], ignore_index=True),
                                  want.events[want.events["time"] >= start].reset_index(drop=True))
    # the model was charged: fills away from the bar's price, by a size-dependent amount
    ref = thin_frames()["open" if fill == "next_open" else "close"].stack()
    at = ref.reindex(pd.MultiIndex.from_frame(got[["time", "symbol"]])).to_numpy()
    slip = np.where(got["side"] == "buy", got["price"] / at - 1.0, 1.0 - got["price"] / at)
    assert (slip > 0).mean() > 0.8 and slip.max() > 1e-3 and np.unique(slip.round(8)).size > 10
    if costs["type"] == "volume_share":
        assert (out.events["event"] == "participation_cap").sum() > 5


@pytest.mark.parametrize("costs", [
    {"type": "almgren_chriss", "params": {"window": 10}},
    {"type": "spread", "params": {"estimate": "corwin_schultz", "window": 5}},
    {"type": "volume_share", "params": {"max_participation": 0.1}},
])
def test_a_live_session_costs_the_fill_from_the_bars_before_it(costs):
    bars = validate(Bars(**thin_frames(), source="thin"))
    ex = ExecutionSpec.model_validate({"fill": "next_open", "costs": costs})
    whole = cost_arrays(bars, ex)
    history = bars.iloc(slice(0, 30))
    a = SessionArrays(history, ex, compose([]))
    for d in (29, 30, 45):
        while a.n <= d:
            t = bars.index[a.n]
            a.append(t, {f: getattr(bars, f).loc[t].to_numpy() for f in bars.fields})
        c = a.fill_costs(d, ex)
        assert c.slippage.shape == c.impact.shape == c.max_qty.shape == (1, 3)
        if costs["type"] == "volume_share":
            # the fill bar's volume is not known yet: the decision bar's is the estimate
            np.testing.assert_allclose(c.max_qty[0], whole.max_qty[d], rtol=1e-15)
            np.testing.assert_allclose(c.impact[0], whole.impact[d], rtol=1e-15)
        else:
            for name in ("slippage", "impact", "max_qty"):
                np.testing.assert_allclose(getattr(c, name)[0], getattr(whole, name)[d + 1], rtol=1e-12)
            assert (c.impact[0] > 0).any() or (c.slippage[0] > 0).any()


def test_a_live_session_caps_its_orders_at_the_models_participation(alpaca, alpaca_experiment, tmp_path):
    symbols = ["AAPL", "MSFT", "SPY"]
    alpaca.store_bars(symbols, lambda d: 100.0)  # 1,000 shares traded on every bar
    path = alpaca_experiment(execution={"engine": "backtrader", "fill": "next_open", "fees": 0.0, "costs": {
        "type": "volume_share", "params": {"price_impact": 0.1, "max_participation": 0.05}}})
    state_dir = tmp_path / "state"
    out = run_paper(load_experiment(path), PaperOptions(state_dir=state_dir, write_report=False, max_bars=1))
    assert out.status == "stopped"
    # 30 % of 100k at 100 is 300 shares; the model allows 5 % of the last bar's 1,000
    planned = PaperState(state_dir / "paper.sqlite").planned()
    assert sorted((o.symbol, o.side, o.quantity) for o in planned) == [(s, "buy", 50.0) for s in symbols]
    assert sorted(out.events["event"]) == ["participation_cap"] * 3
    assert sorted(out.events["symbol"]) == symbols
