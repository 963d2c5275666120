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
from qf.components import history_of
from qf.lookahead import (
    MAX_PROBES,
    RANDOM_PROBES,
    TOL,
    Finding,
    change_positions,
    mismatch,
    probe_positions,
    rule_lookahead_at,
    signal_lookahead_at,
    signal_warmup_at,
    sizer_lookahead_at,
    sizer_warmup_at,
)
from qf.lookahead import fmt_date as _fmt_date
from qf.lookahead import who as _who

__all__ = [
    "TOL",
    "assert_risk_rule_idempotent",
    "assert_risk_rule_no_lookahead",
    "assert_signal_no_lookahead",
    "assert_signal_valid",
    "assert_signal_warmup",
    "assert_sizer_no_lookahead",
    "assert_sizer_warmup",
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


def _raise(finding: Finding | None) -> None:
    if finding is not None:
        raise AssertionError(finding.message())


def assert_signal_no_lookahead(
    model: Any,
    bars: Bars,
    points: int = RANDOM_PROBES,
    tol: float = TOL,
    *,
    seed: int = 0,
    max_probes: int = MAX_PROBES,
) -> None:
    """Row t of the signal must be the same whether the model sees the full history or bars up to t.

    The model is re-run on the bars up to t for every date where its full-history signal changes (an
    entry or exit: where a one-bar peek shows), ``points`` seeded random dates, the first row after the
    warm-up and the last row; at most ``max_probes`` re-runs (change dates beyond that are sampled,
    seeded). Row t is compared to the full-history row t, NaN-aware, within ``tol``. Peeking at the next
    bar, centred windows, backward fills and full-sample normalisation all fail this.

    Example::

        assert_signal_no_lookahead(Momentum({"lookback": 60}), sample_bars(), points=8)
    """
    who = _who(model)
    full = model.compute(bars)
    _check_frame(full, bars.index, bars.close.columns, who, "signal")
    n = len(bars.index)
    for pos in probe_positions(n, change_positions(full, tol), points=points, max_probes=max_probes, seed=seed,
                               always=[int(getattr(model, "warmup", 0)), n - 1]):
        _raise(signal_lookahead_at(model, bars, full, pos, tol))


def _live_rows(component: Any, warmup: int | None) -> int | None:
    """Bars before t in the live window: ``warmup`` when given, else the declared history minus t itself."""
    if warmup is not None:
        return int(warmup)
    h = history_of(component)
    return None if h is None else h - 1


def assert_signal_warmup(
    model: Any,
    bars: Bars,
    points: int = RANDOM_PROBES,
    tol: float = TOL,
    *,
    warmup: int | None = None,
    seed: int = 0,
    max_probes: int = MAX_PROBES,
) -> None:
    """The ``warmup`` contract: row t computed on the trailing bars a paper session loads (the model's
    ``history``, ``warmup + 1`` unless it declares more) must equal the full-history row t, or paper
    trading decides differently from the backtest.

    The window is ``warmup + 1`` bars when ``warmup`` is given, else :func:`qf.components.history_of`;
    a model declaring ``history = None`` (path-dependent: paper trading loads the whole available
    history) has no trailing window to check. Probed like :func:`assert_signal_no_lookahead`, on dates
    with a full window. Trailing rolling windows pass; a state machine or a recursive average that never
    forgets its start (``ewm(adjust=False)``) fails unless its declared history is long enough.

    Example::

        assert_signal_warmup(SmaCross({"fast": 5, "slow": 20}), sample_bars())
    """
    who = _who(model)
    warm = _live_rows(model, warmup)
    if warm is None:
        return
    full = model.compute(bars)
    _check_frame(full, bars.index, bars.close.columns, who, "signal")
    n = len(bars.index)
    for pos in probe_positions(n, change_positions(full, tol), points=points, max_probes=max_probes, seed=seed,
                               always=[warm, n - 1], start=warm):
        _raise(signal_warmup_at(model, bars, full, pos, warm, tol)[0])


def _sizer_probes(signal: pd.DataFrame, full: pd.DataFrame, dates: pd.DatetimeIndex, bars: Bars, start_bar: int,
                  points: int, tol: float, seed: int, max_probes: int) -> list[int]:
    """Rebalance dates to probe: where the weights change, where the signal changed since the previous
    rebalance date, random ones, the first one from bar ``start_bar`` on and the last."""
    changes = set(change_positions(full, tol)) | set(change_positions(signal.reindex(dates), tol))
    first = int(np.searchsorted(bars.index.get_indexer(dates), start_bar))
    start = first if start_bar > 0 else 0
    return probe_positions(len(dates), changes, points=points, max_probes=max_probes, seed=seed,
                           always=[first, len(dates) - 1], start=start)


def assert_sizer_no_lookahead(
    sizer: Any,
    signal: pd.DataFrame,
    bars: Bars,
    dates: pd.DatetimeIndex,
    points: int = RANDOM_PROBES,
    tol: float = TOL,
    *,
    seed: int = 0,
    max_probes: int = MAX_PROBES,
) -> None:
    """The weights for date t must be the same whether the sizer sees everything or data up to t.

    The sizer is run on ``signal.loc[:t]``, ``bars.truncate(t)`` and the rebalance dates up to t for
    every rebalance date where the weights change or the signal changed since the previous one, plus
    ``points`` seeded random rebalance dates and the last (at most ``max_probes`` runs); the row for t
    must equal the full run's.

    Example::

        dates = bars.index[::21]
        assert_sizer_no_lookahead(Hrp({"window": 60}), signal, bars, dates)
    """
    who = _who(sizer)
    dates = pd.DatetimeIndex(dates)
    full = sizer.size(signal, bars, dates)
    _check_frame(full, dates, bars.close.columns, who, "weights")
    for k in _sizer_probes(signal, full, dates, bars, 0, points, tol, seed, max_probes):
        _raise(sizer_lookahead_at(sizer, signal, bars, dates, full, k, tol))


def assert_sizer_warmup(
    sizer: Any,
    signal: pd.DataFrame,
    bars: Bars,
    dates: pd.DatetimeIndex,
    points: int = RANDOM_PROBES,
    tol: float = TOL,
    *,
    warmup: int | None = None,
    seed: int = 0,
    max_probes: int = MAX_PROBES,
) -> None:
    """The ``warmup`` contract for sizers: the weights for date t computed from the trailing bars a
    paper session loads (the sizer's ``history``, ``warmup + 1`` unless it declares more) and the signal
    over them, for date t alone, as paper trading computes them, must equal the full run's weights for t.

    The window is ``warmup + 1`` bars when ``warmup`` is given, else :func:`qf.components.history_of`
    (nothing to check for ``None``). Probed like :func:`assert_sizer_no_lookahead`, on the rebalance
    dates with a full window.

    Example::

        assert_sizer_warmup(InverseVol({"window": 20}), signal, bars, bars.index[::21])
    """
    who = _who(sizer)
    warm = _live_rows(sizer, warmup)
    if warm is None:
        return
    dates = pd.DatetimeIndex(dates)
    full = sizer.size(signal, bars, dates)
    _check_frame(full, dates, bars.close.columns, who, "weights")
    pos = bars.index.get_indexer(dates)
    for k in _sizer_probes(signal, full, dates, bars, warm, points, tol, seed, max_probes):
        if pos[k] >= warm:
            _raise(sizer_warmup_at(sizer, signal, bars, full, dates[k], warm, tol)[0])


def assert_risk_rule_no_lookahead(
    rule: Any,
    weights: pd.DataFrame,
    bars: Bars,
    points: int = RANDOM_PROBES,
    tol: float = TOL,
    *,
    seed: int = 0,
    max_probes: int = MAX_PROBES,
) -> None:
    """A stateless rule's output for date t must be the same whether it sees every row of ``weights``
    (and all bars) or only those up to t. Probed at the dates where its output changes, ``points``
    seeded random dates and the last.

    Example::

        assert_risk_rule_no_lookahead(MaxWeight({"limit": 0.2}), weights, bars)
    """
    who = _who(rule)
    full = rule.apply(weights, bars)
    _check_frame(full, weights.index, weights.columns, who, "output")
    m = len(weights.index)
    for k in probe_positions(m, change_positions(full, tol), points=points, max_probes=max_probes, seed=seed,
                             always=[m - 1]):
        _raise(rule_lookahead_at(rule, weights, bars, full, k, tol))


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
    if mismatch(before.to_numpy(dtype=float), weights.to_numpy(dtype=float), 0.0).any():
        raise AssertionError(f"{who}: apply() modified the weights passed in; it must return a new frame")
    twice = rule.apply(once, bars)
    _check_frame(twice, weights.index, weights.columns, who, "output")
    a, b = once.to_numpy(dtype=float), twice.to_numpy(dtype=float)
    bad = mismatch(a, b, tol)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise AssertionError(
            f"{who} is not idempotent: on {_fmt_date(once.index[r])} {once.columns[c]} is {float(a[r, c])!r} after one "
            f"pass and {float(b[r, c])!r} after two"
        )
