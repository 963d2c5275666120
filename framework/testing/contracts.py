"""Generic contract checks for qf components, and synthetic bars to run them on.

Every check raises ``AssertionError`` with a message naming the component, the date and the symbol, so a
failing test says what broke without a debugger. They work on any component, built-in or third-party::

    from qf.testing.contracts import (
        assert_risk_rule_idempotent, assert_signal_no_lookahead, assert_signal_valid,
        assert_sizer_no_lookahead, assert_weights_valid, sample_bars,
    )

    bars = sample_bars(n_symbols=4, n_bars=300)
    model = MySignal({"window": 20})
    assert_signal_valid(model, bars)
    assert_signal_no_lookahead(model, bars)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from qf.bars import Bars, validate

TOL = 1e-9

__all__ = [
    "TOL",
    "assert_risk_rule_idempotent",
    "assert_signal_no_lookahead",
    "assert_signal_valid",
    "assert_sizer_no_lookahead",
    "assert_weights_valid",
    "sample_bars",
]


def sample_bars(
    n_symbols: int = 5,
    n_bars: int = 600,
    seed: int = 0,
    ohlc: bool = True,
    *,
    unlisted: int = 0,
    start: str = "2015-01-02",
) -> Bars:
    """Realistic synthetic daily OHLCV: correlated GBM closes, consistent open/high/low, volume.

    Each symbol has its own drift (-5%..15% a year) and volatility (15%..45% a year) and loads on a common
    market factor, so correlations look like equities (HRP and vol-targeting have something to work on).
    ``low <= open, close <= high`` holds on every bar. The last ``unlisted`` symbols start trading part-way
    through (NaN before, like a later IPO), to test that components leave not-yet-listed symbols alone.
    The result has passed :func:`qf.bars.validate`.

    Example::

        bars = sample_bars(n_symbols=3, n_bars=250, seed=1, unlisted=1)
        bars.close.shape          # (250, 3)
        bars.close["S2"].isna().iloc[0]   # True: S2 lists later
    """
    if n_symbols < 1 or n_bars < 2:
        raise ValueError("sample_bars needs n_symbols >= 1 and n_bars >= 2")
    if not 0 <= unlisted < n_symbols:
        raise ValueError("unlisted must be between 0 and n_symbols - 1 (at least one symbol trades from the start)")
    rng = np.random.default_rng(seed)
    index = pd.bdate_range(start, periods=n_bars)
    symbols = [f"S{i}" for i in range(n_symbols)]
    mu = rng.uniform(-0.05, 0.15, n_symbols) / 252
    sigma = rng.uniform(0.15, 0.45, n_symbols) / np.sqrt(252)
    beta = rng.uniform(0.3, 0.8, n_symbols)
    market = rng.standard_normal((n_bars, 1))
    noise = rng.standard_normal((n_bars, n_symbols))
    z = beta * market + np.sqrt(1 - beta**2) * noise
    log_ret = mu - 0.5 * sigma**2 + sigma * z
    log_ret[0] = 0.0
    close = 100.0 * np.exp(np.cumsum(log_ret, axis=0))
    frames: dict[str, pd.DataFrame] = {}
    if ohlc:
        # overnight gap from the previous close, then an intraday range that always brackets open and close
        gap = 0.3 * sigma * rng.standard_normal((n_bars, n_symbols))
        prev = np.vstack([close[:1], close[:-1]])
        open_ = prev * np.exp(gap)
        open_[0] = close[0]
        wick_hi = np.abs(0.5 * sigma * rng.standard_normal((n_bars, n_symbols)))
        wick_lo = np.abs(0.5 * sigma * rng.standard_normal((n_bars, n_symbols)))
        frames["open"] = open_
        frames["high"] = np.maximum(open_, close) * np.exp(wick_hi)
        frames["low"] = np.minimum(open_, close) * np.exp(-wick_lo)
        frames["volume"] = np.round(rng.lognormal(np.log(1e6), 0.5, (n_bars, n_symbols)))
    frames["close"] = close
    listed = np.ones((n_bars, n_symbols), dtype=bool)
    for k in range(unlisted):
        col = n_symbols - 1 - k
        listed[: n_bars // 3 + k * max(n_bars // 10, 1), col] = False
    out = {
        name: pd.DataFrame(np.where(listed, arr, np.nan), index=index, columns=symbols) for name, arr in frames.items()
    }
    return validate(Bars(**out, source="sample"))


def _who(component: Any) -> str:
    name = getattr(component, "name", "") or type(component).__name__
    return f"{getattr(component, 'kind', '') or 'component'} {name!r}".strip()


def _probe_positions(n: int, points: int, extra: int | None = None) -> list[int]:
    """Row positions to test: spread over the whole history (warm-up included, since a backward fill
    shows there), always the last row, plus ``extra`` (the first row after the warm-up)."""
    if n == 0:
        return []
    pos = set(np.linspace(0, n - 1, max(points, 1) + 1)[1:].round().astype(int).tolist())
    if extra is not None and 0 <= extra < n:
        pos.add(int(extra))
    return sorted(pos)


def _fmt_date(ts: Any) -> str:
    ts = pd.Timestamp(ts)
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()


def _mismatch(a: np.ndarray, b: np.ndarray, tol: float) -> np.ndarray:
    """Element-wise: True where a and b differ (NaN equals NaN; tolerance absolute plus relative)."""
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    with np.errstate(invalid="ignore"):
        far = np.abs(a - b) > tol * (1.0 + np.maximum(np.abs(a), np.abs(b)))
    return (nan_a != nan_b) | (~nan_a & ~nan_b & far)


def _check_frame(frame: Any, index: pd.Index, columns: Sequence[Any], who: str, what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise AssertionError(f"{who}: {what} must be a DataFrame, got {type(frame).__name__}")
    if not frame.index.equals(pd.Index(index)):
        raise AssertionError(
            f"{who}: {what} index differs from the expected dates "
            f"({len(frame.index)} rows vs {len(index)}; first {_first_diff(frame.index, index)})"
        )
    if [str(c) for c in frame.columns] != [str(c) for c in columns]:
        raise AssertionError(f"{who}: {what} columns {list(frame.columns)} differ from {list(columns)}")


def _first_diff(a: pd.Index, b: pd.Index) -> str:
    for x, y in zip(a, b, strict=False):
        if x != y:
            return f"difference: {x} vs {y}"
    return "difference: length"


def _assert_row_equal(full: pd.Series, part: pd.Series, who: str, when: Any, tol: float) -> None:
    a = full.to_numpy(dtype=float)
    b = part.reindex(full.index).to_numpy(dtype=float)
    bad = _mismatch(a, b, tol)
    if bad.any():
        k = int(np.argmax(bad))
        raise AssertionError(
            f"{who} looks ahead: on {_fmt_date(when)} {full.index[k]} is {float(b[k])!r} with data up to "
            f"{_fmt_date(when)} but {float(a[k])!r} with the full history ({int(bad.sum())} symbol(s) differ)"
        )


def assert_signal_valid(model: Any, bars: Bars) -> pd.DataFrame:
    """Check a signal model's output contract on ``bars`` and return the signal.

    The signal has the index and columns of ``bars.close``; values are in [-1, 1]; a symbol with no close
    yet (not listed) is NaN or 0; and no value is NaN after a symbol's first ``model.warmup`` bars.

    Example::

        signal = assert_signal_valid(SmaCross({"fast": 5, "slow": 20}), sample_bars())
    """
    who = _who(model)
    signal = model.compute(bars)
    _check_frame(signal, bars.index, bars.close.columns, who, "signal")
    values = signal.to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        out = ~np.isnan(values) & ((values < -1 - TOL) | (values > 1 + TOL))
    if out.any():
        r, c = np.argwhere(out)[0]
        raise AssertionError(
            f"{who}: signal {float(values[r, c])!r} on {_fmt_date(signal.index[r])} for {signal.columns[c]} "
            "is outside [-1, 1]"
        )
    close = bars.close.to_numpy(dtype=float)
    garbage = np.isnan(close) & ~np.isnan(values) & (values != 0)
    if garbage.any():
        r, c = np.argwhere(garbage)[0]
        raise AssertionError(
            f"{who}: {signal.columns[c]} has no close on {_fmt_date(signal.index[r])} (not listed yet) "
            f"but its signal is {float(values[r, c])!r}; it must be NaN or 0"
        )
    warmup = int(getattr(model, "warmup", 0))
    listed = ~np.isnan(close)
    bars_since_listing = np.cumsum(listed, axis=0)  # 1 on the first listed bar
    late_nan = listed & (bars_since_listing > warmup) & np.isnan(values)
    if late_nan.any():
        r, c = np.argwhere(late_nan)[0]
        raise AssertionError(
            f"{who}: signal is NaN on {_fmt_date(signal.index[r])} for {signal.columns[c]}, "
            f"{int(bars_since_listing[r, c]) - 1} bars after it listed, but the model's warmup is {warmup}"
        )
    return signal


def assert_signal_no_lookahead(model: Any, bars: Bars, points: int = 5, tol: float = TOL) -> None:
    """Row t of the signal must be the same whether the model sees the full history or bars up to t.

    For ``points`` dates spread over the history (and the first row after the warm-up) the model is run
    on ``bars.truncate(t)``; row t is compared to the full-history row t, NaN-aware, within ``tol``.
    Centered windows, backward fills and full-sample normalisation all fail this.

    Example::

        assert_signal_no_lookahead(Momentum({"lookback": 60}), sample_bars(), points=8)
    """
    who = _who(model)
    full = model.compute(bars)
    _check_frame(full, bars.index, bars.close.columns, who, "signal")
    warmup = int(getattr(model, "warmup", 0))
    for pos in _probe_positions(len(bars.index), points, warmup):
        t = bars.index[pos]
        part = model.compute(bars.truncate(t))
        if not isinstance(part, pd.DataFrame) or t not in part.index:
            raise AssertionError(f"{who}: the signal computed on bars up to {_fmt_date(t)} has no row for that date")
        _assert_row_equal(full.loc[t], part.loc[t], who, t, tol)


def assert_sizer_no_lookahead(
    sizer: Any,
    signal: pd.DataFrame,
    bars: Bars,
    dates: pd.DatetimeIndex,
    points: int = 5,
    tol: float = TOL,
) -> None:
    """The weights for date t must be the same whether the sizer sees everything or data up to t.

    For ``points`` rebalance dates spread over ``dates`` the sizer is run on ``signal.loc[:t]``,
    ``bars.truncate(t)`` and the rebalance dates up to t; the row for t must equal the full run's.

    Example::

        dates = bars.index[::21]
        assert_sizer_no_lookahead(Hrp({"window": 60}), signal, bars, dates)
    """
    who = _who(sizer)
    dates = pd.DatetimeIndex(dates)
    full = sizer.size(signal, bars, dates)
    _check_frame(full, dates, bars.close.columns, who, "weights")
    for pos in _probe_positions(len(dates), points):
        t = dates[pos]
        part = sizer.size(signal.loc[:t], bars.truncate(t), dates[dates <= t])
        if not isinstance(part, pd.DataFrame) or t not in part.index:
            raise AssertionError(f"{who}: the weights computed on data up to {_fmt_date(t)} have no row for it")
        _assert_row_equal(full.loc[t], part.loc[t], who, t, tol)


def assert_weights_valid(weights: pd.DataFrame, dates: pd.DatetimeIndex, symbols: Sequence[str]) -> None:
    """A sizer's output: indexed exactly by ``dates``, one column per symbol in order, every value finite.

    Example::

        w = sizer.size(signal, bars, dates)
        assert_weights_valid(w, dates, bars.symbols)
    """
    _check_frame(weights, pd.DatetimeIndex(dates), list(symbols), "weights", "weights")
    values = weights.to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise AssertionError(
            f"weights: {weights.columns[c]} on {_fmt_date(weights.index[r])} is {float(values[r, c])!r}; "
            "every weight must be finite (0 for no position)"
        )


def assert_risk_rule_idempotent(rule: Any, weights: pd.DataFrame, bars: Bars, tol: float = TOL) -> None:
    """A stateless rule applied twice must give what it gives once, and must not modify its input.

    Example::

        assert_risk_rule_idempotent(MaxWeight({"limit": 0.2, "redistribute": True}), weights, bars)
    """
    who = _who(rule)
    before = weights.copy()
    once = rule.apply(weights, bars)
    _check_frame(once, weights.index, weights.columns, who, "output")
    if _mismatch(before.to_numpy(dtype=float), weights.to_numpy(dtype=float), 0.0).any():
        raise AssertionError(f"{who}: apply() modified the weights passed in; it must return a new frame")
    twice = rule.apply(once, bars)
    _check_frame(twice, weights.index, weights.columns, who, "output")
    a, b = once.to_numpy(dtype=float), twice.to_numpy(dtype=float)
    bad = _mismatch(a, b, tol)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise AssertionError(
            f"{who} is not idempotent: on {_fmt_date(once.index[r])} {once.columns[c]} is {float(a[r, c])!r} after one "
            f"pass and {float(b[r, c])!r} after two"
        )
