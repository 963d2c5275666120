"""The one decision step (qf.engines.decision.DecisionStep) and the one builder of each result frame.

The backtest strategy, both paper strategies and the vectorbt engine build ``orders`` and ``risk_events``
through qf.engines.result; the paper session commits each bar's events in the order the backtest's
risk_events.csv lists them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

import qf
from qf.config.schema import ExecutionSpec
from qf.engines.decision import DecisionStep
from qf.engines.kernels.risk import RiskStack, compose
from qf.engines.kernels.step import EVENT_FLATTEN, EVENT_STOP
from qf.engines.result import EVENT_COLUMNS, ORDER_COLUMNS, orders_frame, risk_events_frame

SYMBOLS = ["MSFT", "AAPL", "BRK.B"]  # not in name order: frames sort by name, arrays keep column order
INDEX = pd.date_range("2024-01-01", periods=6, freq="B")


def no_rules() -> RiskStack:
    return compose([])


def step(rows: int = len(INDEX), **execution) -> DecisionStep:
    return DecisionStep(len(SYMBOLS), ExecutionSpec(**execution), no_rules(), rows=rows)


def test_bar_events_are_the_frame_rows_of_that_bar():
    s = step()
    s.events[1, :] = EVENT_FLATTEN
    s.events[3, 0] = EVENT_STOP
    s.events[3, 1] = EVENT_STOP
    s.capped_at[3, 2] = True
    s.capped_at[4, 0] = True
    delisted_at = np.array([-1, 3, -1])
    frame = s.events_frame(INDEX, SYMBOLS, delisted_at)
    assert list(frame.columns) == EVENT_COLUMNS
    assert [tuple(r) for r in frame.itertuples(index=False)] == [
        (INDEX[1], "flatten", ""),
        (INDEX[3], "delisted", "AAPL"),
        (INDEX[3], "participation_cap", "BRK.B"),
        (INDEX[3], "stop", "AAPL"),
        (INDEX[3], "stop", "MSFT"),
        (INDEX[4], "participation_cap", "MSFT"),
    ]
    for i, t in enumerate(INDEX):
        rows = frame[frame["time"] == t]
        assert s.bar_events(i, SYMBOLS, delisted_at) == list(zip(rows["event"], rows["symbol"], strict=True))
    assert s.bar_events(50, SYMBOLS, delisted_at) == []  # a row the step has not reached


def test_no_event_is_an_empty_frame_with_the_columns():
    frame = risk_events_frame(np.zeros((3, 2), dtype=np.int8), INDEX[:3], SYMBOLS[:2], np.array([-1, -1]))
    assert frame.empty and list(frame.columns) == EVENT_COLUMNS


def test_book_fill_tracks_the_average_entry_price_and_builds_orders():
    s = step()
    s.book_fill(0, 1, "buy", 10.0, 100.0, 1.0)
    s.book_fill(2, 1, "buy", 10.0, 110.0, 1.0)
    assert s.avg_price[1] == 105.0 and s.filled_pos[1] == 20.0
    s.book_fill(3, 1, "sell", 30.0, 120.0, 1.5)  # a reversal: the short opens at the fill's price
    assert s.filled_pos[1] == -10.0 and s.avg_price[1] == 120.0
    s.book_fill(3, 0, "buy", 5.0, 50.0, 0.5)
    s.book_fill(4, 1, "buy", 10.0, 118.0, 1.0)  # flat again: no entry price
    assert s.filled_pos[1] == 0.0 and np.isnan(s.avg_price[1])
    orders = s.orders_frame(INDEX, SYMBOLS)
    assert list(orders.columns) == ORDER_COLUMNS
    # by time, then buy before sell, then symbol
    assert list(zip(orders["time"], orders["side"], orders["symbol"], strict=True)) == [
        (INDEX[0], "buy", "AAPL"), (INDEX[2], "buy", "AAPL"), (INDEX[3], "buy", "MSFT"),
        (INDEX[3], "sell", "AAPL"), (INDEX[4], "buy", "AAPL")]
    assert orders["quantity"].tolist() == [10.0, 10.0, 5.0, 30.0, 10.0]
    assert orders["fee"].tolist() == [1.0, 1.0, 0.5, 1.5, 1.0]


def test_orders_frame_sorts_like_the_engines_did():
    # what vectorbt's and backtrader's runs built before they shared the builder: a stable sort by
    # time, side, symbol on string columns
    rng = np.random.default_rng(7)
    cells = [(b, k) for b in range(len(INDEX)) for k in range(len(SYMBOLS))]
    picked = rng.permutation(len(cells))[:12]
    bar = np.array([cells[j][0] for j in picked])
    col = np.array([cells[j][1] for j in picked])
    side = rng.integers(0, 2, len(bar))
    qty, price, fee = rng.random(len(bar)) * 10, 100 + rng.random(len(bar)), rng.random(len(bar))
    want = pd.DataFrame({
        "time": INDEX[bar], "symbol": np.asarray(SYMBOLS)[col], "side": np.where(side == 0, "buy", "sell"),
        "quantity": qty, "price": price, "fee": fee,
    }, columns=ORDER_COLUMNS).sort_values(["time", "side", "symbol"], kind="mergesort", ignore_index=True)
    got = orders_frame(bar, col, side, qty, price, fee, INDEX, SYMBOLS)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    cat = orders_frame(bar, col, side, qty, price, fee, INDEX, SYMBOLS, categorical=True)
    assert isinstance(cat["symbol"].dtype, pd.CategoricalDtype)
    pd.testing.assert_frame_equal(cat.astype({c: want[c].dtype for c in ("symbol", "side")}), want, check_exact=True)


def test_decide_sizes_a_rebalance_and_grows_its_rows():
    s = step(rows=0, fees=0.0, slippage=0.0)
    T, N = 4, len(SYMBOLS)
    close = np.full((T, N), 100.0)
    targets = np.full((T, N), np.nan)
    targets[2] = [0.5, 0.25, 0.0]
    sizes = s.decide(2, 0, 10_000.0, np.zeros(N), close, close, targets, np.zeros((T, 0, N)))
    np.testing.assert_allclose(sizes, [50.0, 25.0, 0.0])
    assert s.events.shape[0] >= 3 and s.capped_at.shape[0] >= 3 and not s.events.any()


def test_the_paper_layer_and_the_engines_import_backtrader_only_in_engines_backtrader():
    root = Path(qf.__file__).parent
    offenders = []
    for path in [*root.glob("paper/*.py"), *root.glob("engines/*.py"), *root.glob("engines/kernels/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] == "backtrader"]
    assert offenders == []
