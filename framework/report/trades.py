"""Round trips built from a run's fills, and the trade summary saved under ``trades`` in metrics.json.

**Matching convention** (vectorbt's *exit trades*, what ``Portfolio.trades`` returns by default; a test
holds the two equal to 1e-9 on the same fills): per symbol, fills are read in time order and every fill
that reduces a position closes one round trip against the position's **average cost**:

- an *add* (a buy into a long, a sell into a short) raises the size and the size-weighted entry price;
- a *partial close* is one round trip of the closed quantity, at the average entry price, carrying its
  share of the entry fees (the rest of the position keeps the rest) and all of that fill's fee;
- a *reversal* (long to short, or back, in one fill) closes the whole position at that fill's price and
  opens the other side with the remainder; the fill's fee is split between the two by quantity;
- a position still open at the last bar is one round trip with ``status`` ``open``, valued at the
  symbol's last close (forward-filled, as the engines value it) with no exit fee.

``entry_time`` is when the position was opened (adds do not move it), ``holding_bars`` counts bars from
there to the exit, ``pnl`` is net of entry and exit fees and ``return`` is ``pnl`` over the entry value
(quantity x average entry price). ``position_id`` numbers positions (flat to flat, or to a reversal), so
``trades.groupby("position_id")`` gives whole positions.

Example::

    trades = round_trips(result.orders, bars.close)
    summary = trade_summary(trades, exposure(result.orders, bars.close, result.equity))
    summary["win_rate"], summary["profit_factor"]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

TRADE_COLUMNS = ["symbol", "direction", "status", "entry_time", "exit_time", "quantity", "entry_price",
                 "exit_price", "entry_fees", "exit_fees", "fees", "pnl", "return", "holding_bars",
                 "position_id"]

# vectorbt's float tolerances (vectorbt.utils.math_): a fill "closes" a position when its size matches
# the open size to these, so fractional sizes that differ by rounding noise match the same way
_REL_TOL = 1e-9
_ABS_TOL = 1e-12


def _is_close(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= max(_REL_TOL * max(abs(a), abs(b)), _ABS_TOL)


def _trade(symbol: str, direction: str, status: str, size: float, entry_i: int, entry_price: float,
           entry_fees: float, exit_i: int, exit_price: float, exit_fees: float, pid: int) -> dict[str, Any]:
    # the same arithmetic as vectorbt's get_trade_stats_nb, so the two agree to rounding
    diff = size * exit_price - size * entry_price
    if _is_close(size * exit_price, size * entry_price):
        diff = 0.0
    if direction == "short":
        diff = -diff
    pnl = diff - entry_fees - exit_fees
    return {"symbol": symbol, "direction": direction, "status": status, "entry_i": entry_i, "exit_i": exit_i,
            "quantity": size, "entry_price": entry_price, "exit_price": exit_price, "entry_fees": entry_fees,
            "exit_fees": exit_fees, "fees": entry_fees + exit_fees, "pnl": pnl,
            "return": pnl / (size * entry_price), "position_id": pid}


def _symbol_trips(symbol: str, bar: np.ndarray, buy: np.ndarray, size: np.ndarray, price: np.ndarray,
                  fee: np.ndarray, last_i: int, last_close: float, pid: int) -> tuple[list[dict[str, Any]], int]:
    """The round trips of one symbol's fills (in time order); ``pid`` is the last position id used."""
    rows: list[dict[str, Any]] = []
    direction = ""  # "" when flat
    entry_i = 0
    qty = gross = fees = 0.0  # open quantity, its entry value and its entry fees
    for j in range(len(size)):
        s, p, f, i = float(size[j]), float(price[j]), float(fee[j]), int(bar[j])
        if not s > 0 or not p > 0:
            raise ValueError(f"{symbol}: a fill needs a positive quantity and price, got {s} at {p}")
        side = "long" if buy[j] else "short"
        if not direction:
            direction, entry_i, qty, gross, fees = side, i, 0.0, 0.0, 0.0
            pid += 1
        if side == direction:  # opened or added to
            qty += s
            gross += s * p
            fees += f
            continue
        avg = gross / qty
        if s < qty or _is_close(s, qty):  # a partial or full close
            closed = qty if _is_close(s, qty) else s
            rows.append(_trade(symbol, direction, "closed", closed, entry_i, avg, closed / qty * fees, i, p, f, pid))
            if _is_close(s, qty):
                direction = ""
            else:  # the rest of the position keeps its average cost and the rest of the entry fees
                keep = (qty - s) / qty
                qty, gross, fees = qty * keep, gross * keep, fees * keep
        else:  # a reversal: close all of it, open the other side with the remainder
            exit_fee = qty / s * f
            rows.append(_trade(symbol, direction, "closed", qty, entry_i, avg, fees, i, p, exit_fee, pid))
            direction, entry_i = side, i
            qty = s - qty
            gross, fees = qty * p, f - exit_fee
            pid += 1
    if direction and not _is_close(qty, 0.0) and qty > 0:
        rows.append(_trade(symbol, direction, "open", qty, entry_i, gross / qty, fees, last_i, last_close, 0.0, pid))
    return rows, pid


def _bar_positions(index: pd.DatetimeIndex, times: pd.Series) -> np.ndarray:
    """Each time's bar: the last bar at or before it (a live fill between bars belongs to the bar before)."""
    t = pd.DatetimeIndex(pd.to_datetime(times))
    if index.tz is not None and t.tz is None:
        t = t.tz_localize(index.tz)
    elif index.tz is None and t.tz is not None:
        t = t.tz_convert(None)
    return np.maximum(index.searchsorted(t, side="right") - 1, 0)


def round_trips(orders: pd.DataFrame, close: pd.DataFrame) -> pd.DataFrame:
    """Round trips per symbol from fills (``time, symbol, side, quantity, price, fee``; see the module
    docstring for the convention), one row per closing fill plus one per position still open.

    ``close`` is the bars' close (time x symbol): its index counts holding bars and its last valid price
    values open positions. Rows come symbol by symbol (in ``close``'s column order), in time order.

    Example::

        orders = pd.DataFrame({"time": idx[[0, 2]], "symbol": "A", "side": ["buy", "sell"],
                               "quantity": 10.0, "price": [100.0, 110.0], "fee": 0.5})
        round_trips(orders, close)[["direction", "pnl", "holding_bars"]]   # long, 99.0, 2
    """
    if orders is None or len(orders) == 0:
        return pd.DataFrame(columns=TRADE_COLUMNS)
    index = pd.DatetimeIndex(close.index)
    last_close = close.ffill().iloc[-1] if len(close) else pd.Series(dtype=float)
    bars = _bar_positions(index, orders["time"])
    frame = orders.assign(_bar=bars, _t=pd.to_datetime(orders["time"]))
    # stable: fills of one bar keep the order they were booked in
    frame = frame.sort_values("_t", kind="mergesort")
    symbols = [s for s in close.columns if s in set(frame["symbol"])]
    symbols += sorted(set(frame["symbol"]) - set(symbols))
    rows: list[dict[str, Any]] = []
    pid = -1
    last_i = len(index) - 1
    for sym in symbols:
        f = frame[frame["symbol"] == sym]
        trips, pid = _symbol_trips(sym, f["_bar"].to_numpy(), (f["side"] == "buy").to_numpy(),
                                   f["quantity"].to_numpy(dtype=float), f["price"].to_numpy(dtype=float),
                                   f["fee"].to_numpy(dtype=float), last_i, float(last_close.get(sym, np.nan)), pid)
        rows += trips
    out = pd.DataFrame(rows)
    out["entry_time"] = index[out.pop("entry_i").to_numpy()]
    exit_i = out.pop("exit_i").to_numpy()
    out["exit_time"] = index[exit_i]
    out["holding_bars"] = exit_i - index.get_indexer(out["entry_time"])
    return out[TRADE_COLUMNS]


def exposure(orders: pd.DataFrame, close: pd.DataFrame, equity: pd.Series) -> pd.DataFrame:
    """Gross and net exposure at each bar's close, as fractions of equity (``gross``, ``net`` columns).

    Positions are rebuilt from the fills and valued at the forward-filled close, as the engines value
    them: 0.5 gross, 0.5 net is half the account long; 1.0 gross, 0.0 net a hedged book.

    Example::

        exposure(result.orders, bars.close, result.equity)["gross"].mean()
    """
    index = pd.DatetimeIndex(close.index)
    if orders is None or len(orders) == 0:
        return pd.DataFrame({"gross": 0.0, "net": 0.0}, index=index)
    signed = np.where(orders["side"] == "buy", 1.0, -1.0) * orders["quantity"].to_numpy(dtype=float)
    flows = pd.DataFrame({"bar": _bar_positions(index, orders["time"]), "symbol": orders["symbol"].to_numpy(),
                          "qty": signed}).pivot_table(index="bar", columns="symbol", values="qty", aggfunc="sum")
    held = flows.reindex(range(len(index)), fill_value=0.0).fillna(0.0).cumsum()
    held.index = index
    value = held * close.ffill().reindex(columns=held.columns).fillna(0.0)
    eq = equity.reindex(index).to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        gross = value.abs().sum(axis=1).to_numpy() / eq
        net = value.sum(axis=1).to_numpy() / eq
    return pd.DataFrame({"gross": gross, "net": net}, index=index)


def _num(v: Any) -> float | None:
    """A finite float, or None (JSON null) for what is undefined (no trades, no losses)."""
    v = float(v)
    return v if math.isfinite(v) else None


def _trade_ref(row: pd.Series) -> dict[str, Any]:
    return {"symbol": row["symbol"], "direction": row["direction"], "entry_time": str(row["entry_time"]),
            "exit_time": str(row["exit_time"]), "pnl": float(row["pnl"]), "return": float(row["return"])}


def trade_summary(trades: pd.DataFrame, exposure_frame: pd.DataFrame | None = None,
                  eval_start: Any = None) -> dict[str, Any]:
    """The trade statistics of a run (metrics.json's ``trades`` key).

    Win rate, profit factor, average win/loss, expectancy, holding periods and best/worst trade are over
    **closed** round trips; ``pnl_by_symbol`` (each symbol's contribution, open positions at their last
    close included) adds up to ``total_pnl``. Exposure averages run over the evaluation period (from
    ``eval_start``) when given. What is undefined (no closed trade, no loss) is None.

    Example::

        s = trade_summary(round_trips(orders, close))
        f"{s['win_rate']:.1%} of {s['n_closed']} trades won"
    """
    closed = trades[trades["status"] == "closed"]
    pnl = closed["pnl"].astype(float)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    hold = closed["holding_bars"].astype(float)
    n = len(closed)
    out: dict[str, Any] = {
        "n_trades": int(len(trades)),
        "n_closed": int(n),
        "n_open": int(len(trades) - n),
        "n_positions": int(trades["position_id"].nunique()),
        "win_rate": _num(len(wins) / n) if n else None,
        "profit_factor": _num(wins.sum() / -losses.sum()) if len(losses) else None,
        "avg_win": _num(wins.mean()) if len(wins) else None,
        "avg_loss": _num(losses.mean()) if len(losses) else None,
        "expectancy": _num(pnl.mean()) if n else None,
        "expectancy_return": _num(closed["return"].astype(float).mean()) if n else None,
        "holding_bars_mean": _num(hold.mean()) if n else None,
        "holding_bars_median": _num(hold.median()) if n else None,
        "holding_bars_p90": _num(hold.quantile(0.9)) if n else None,
        "holding_bars_max": int(hold.max()) if n else None,
        "best_trade": _trade_ref(closed.loc[pnl.idxmax()]) if n else None,
        "worst_trade": _trade_ref(closed.loc[pnl.idxmin()]) if n else None,
        "realized_pnl": float(pnl.sum()),
        "open_pnl": float(trades.loc[trades["status"] == "open", "pnl"].sum()),
        "total_pnl": float(trades["pnl"].sum()),
        "fees": float(trades["fees"].sum()),
        "pnl_by_symbol": {str(k): float(v) for k, v in
                          trades.groupby("symbol", sort=False)["pnl"].sum().sort_values(ascending=False).items()},
    }
    if exposure_frame is not None:
        ex = exposure_frame if eval_start is None else exposure_frame.loc[pd.Timestamp(eval_start):]
        out["gross_exposure_avg"] = _num(ex["gross"].mean()) if len(ex) else None
        out["net_exposure_avg"] = _num(ex["net"].mean()) if len(ex) else None
    return out


def summary_line(summary: dict[str, Any]) -> str:
    """One line of the trade summary for the CLI, e.g.
    ``trades: 412 closed, 3 open; win rate 54.1%, profit factor 1.32, expectancy 12.34, held 6.2 bars on average``.

    Example::

        summary_line(metrics["trades"])
    """
    def f(key: str, spec: str) -> str:
        v = summary.get(key)
        return "n/a" if v is None else format(v, spec)

    return (f"trades: {summary.get('n_closed', 0)} closed, {summary.get('n_open', 0)} open; "
            f"win rate {f('win_rate', '.1%')}, profit factor {f('profit_factor', '.2f')}, "
            f"expectancy {f('expectancy', ',.2f')}, held {f('holding_bars_mean', '.1f')} bars on average")


def run_trades(outcome: Any) -> pd.DataFrame:
    """The round trips of a run (a :class:`qf.runner.RunOutcome`), computed once per run.

    The frame is kept in ``outcome.result.extra["trades"]`` and its summary put into
    ``outcome.metrics["trades"]`` (what metrics.json, the CLI and ``qf.run(...).metrics`` show), so the
    report writer and the Python API share one computation.

    Example::

        trades = run_trades(outcome)
        outcome.metrics["trades"]["win_rate"]
    """
    res = outcome.result
    close = outcome.bars.close
    if len(res.equity) and len(close) and res.equity.index[0] > close.index[0]:
        close = close.loc[res.equity.index[0]:]  # walk-forward: the account trades the out-of-sample bars only
    trades = res.extra.get("trades")
    if trades is None:
        trades = res.extra["trades"] = round_trips(res.orders, close)
    if "trades" not in outcome.metrics:
        outcome.metrics["trades"] = trade_summary(trades, exposure(res.orders, close, res.equity),
                                                  outcome.metrics.get("eval_start"))
    return trades
