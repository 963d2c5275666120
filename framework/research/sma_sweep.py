"""SMA-crossover parameter sweeps that reproduce vectorbt exactly, without its memory bill.

The reference semantics are those of one plain vectorbt run::

    fast_ma = vbt.MA.run(close, window=fast, short_name="fast")
    slow_ma = vbt.MA.run(close, window=slow, short_name="slow")
    pf = vbt.Portfolio.from_signals(
        close, fast_ma.ma_crossed_above(slow_ma), fast_ma.ma_crossed_below(slow_ma),
        init_cash=init_cash, fees=fees, slippage=slippage, size=np.inf,
        direction="longonly", accumulate=False, freq="1D",
    )

and the metrics ``pf.total_return()``, ``pf.final_value()``,
``pf.get_returns_acc(year_freq=f"{periods_per_year} days").sharpe_ratio()``,
``pf.max_drawdown()`` and ``pf.trades.count()``.

How the sweep stays fast and small:

* every distinct MA window is computed once per asset (the table of MAs is tiny: windows x bars);
* each (asset, combo) pair is simulated by one numba function that streams over the bars and reduces
  straight to the five metrics, so no signal, order, cash or equity matrix is ever materialised;
* pairs run in parallel with ``prange`` (or across processes through an executor), and assets are
  processed in blocks so the MA table stays under a memory budget.

The kernels port vectorbt's arithmetic operation by operation (the same rolling-mean recurrence, the
same tolerance-snapping ``add_nb``, the same two-pass variance), so results match vectorbt to the last
few ulps rather than "approximately". The port follows vectorbt 0.2x / 1.x as installed; if vectorbt
changes its order execution maths, ``tests/research/test_sma_sweep.py`` is the tripwire.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
import pandas as pd
from numba import njit, prange

if TYPE_CHECKING:
    from qf.research.executors import Executor

__all__ = [
    "METRICS",
    "rolling_mean",
    "run_sma_sweep",
    "run_sma_sweep_vectorbt",
    "sma_sweep_arrays",
]

METRICS: tuple[str, ...] = ("total_return", "final_value", "sharpe", "max_drawdown", "n_trades")
"""Metric columns produced per (symbol, combo), in this order."""

_N_METRICS = len(METRICS)
# vectorbt's tolerances in vectorbt.utils.math_ (rel_tol, abs_tol); copied so snapping matches.
_REL_TOL = 1e-9
_ABS_TOL = 1e-12
_DEFAULT_CHUNK_BYTES = 256 * 1024 * 1024


# --------------------------------------------------------------------------------------------------
# Numba kernels. Module-level and cache=True so process-pool / Ray workers load them from disk.
# --------------------------------------------------------------------------------------------------


@njit(cache=True)
def _is_close_nb(a: float, b: float) -> bool:
    if np.isnan(a) or np.isnan(b):
        return False
    if np.isinf(a) or np.isinf(b):
        return False
    if a == b:
        return True
    return abs(a - b) <= max(_REL_TOL * max(abs(a), abs(b)), _ABS_TOL)


@njit(cache=True)
def _add_nb(a: float, b: float) -> float:
    # vectorbt snaps sums that are zero up to tolerance to exactly 0.0; cash and position go
    # through this on every order, so skipping it would leave 1e-13 residues vectorbt does not have.
    if np.sign(a) != np.sign(b):
        is_zero = _is_close_nb(abs(a), abs(b))
    else:
        is_zero = _is_close_nb(a + b, 0.0)
    if is_zero:
        return 0.0
    return a + b


@njit(cache=True)
def _rolling_mean_into_nb(a: np.ndarray, window: int, out: np.ndarray) -> None:
    # Same cumulative-sum recurrence as vectorbt.generic.nb.rolling_mean_1d_nb(minp=window): the
    # crossover signals compare two MAs for strict inequality, so the MAs must be bit-identical.
    n = a.shape[0]
    cumsum_arr = np.zeros(n, dtype=np.float64)
    nancnt_arr = np.zeros(n, dtype=np.float64)
    cumsum = 0.0
    nancnt = 0.0
    for i in range(n):
        if np.isnan(a[i]):
            nancnt = nancnt + 1
        else:
            cumsum = cumsum + a[i]
        nancnt_arr[i] = nancnt
        cumsum_arr[i] = cumsum
        if i < window:
            window_len = i + 1 - nancnt
            window_cumsum = cumsum
        else:
            window_len = window - (nancnt - nancnt_arr[i - window])
            window_cumsum = cumsum - cumsum_arr[i - window]
        if window_len < window:
            out[i] = np.nan
        else:
            out[i] = window_cumsum / window_len


@njit(parallel=True, cache=True)
def _ma_table_nb(close2d: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """MAs of every asset row for every window: shape (n_assets, n_windows, n_bars)."""
    n_assets, n_bars = close2d.shape
    n_windows = windows.shape[0]
    out = np.empty((n_assets, n_windows, n_bars), dtype=np.float64)
    for k in prange(n_assets * n_windows):
        a = k // n_windows
        w = k % n_windows
        _rolling_mean_into_nb(close2d[a], windows[w], out[a, w])
    return out


@njit(cache=True)
def _sma_cross_pass_nb(
    close: np.ndarray,
    fast: np.ndarray,
    slow: np.ndarray,
    init_cash: float,
    fees: float,
    slippage: float,
    rets: np.ndarray,
    out: np.ndarray,
) -> tuple[float, int]:
    """Simulate one long-only all-in/all-out MA-cross column in a single pass over the bars.

    Writes every metric except the Sharpe ratio into ``out`` and the bar returns into ``rets``, and
    returns (sum, count) of the returns; the Sharpe's second (variance) pass is done by the caller.
    Returns are never NaN here (values are finite and positive), so ``count`` is the bar count.

    Three ledgers are kept because vectorbt computes its outputs along three different arithmetic
    paths: the simulator state (orders), the cash/asset series rebuilt from order records (value and
    returns), and the total-profit reduction over order records (total return and final value).
    """
    n = close.shape[0]
    # crossed_above(fast, slow) and crossed_above(slow, fast) state machines (wait=0)
    en_below = False
    en_ago = -1
    ex_below = False
    ex_ago = -1
    # simulator state
    sim_cash = init_cash
    sim_pos = 0.0
    # series rebuilt from order records (vectorbt cash_nb / assets_nb)
    cash_v = init_cash
    pos_v = 0.0
    # reduction over order records (vectorbt total_profit_nb)
    tp_cash = 0.0
    tp_pos = 0.0
    n_orders = 0
    n_buys = 0

    prev_value = init_cash
    ret_sum = 0.0
    ret_cnt = 0
    cumprod = 1.0
    # drawdown_1d_nb takes min over bars of cum / expanding_max(cum) - 1. Within one drawdown episode
    # (the max unchanged) x -> x / max - 1 is monotone in floating point too, so its minimum is reached
    # at the episode's lowest cum: tracking that trough and dividing once per episode gives the
    # identical number without a division per bar. (The expanding max starts at NaN in vectorbt;
    # returns are never NaN here, so -inf is equivalent.)
    max_cum = -np.inf
    trough = np.inf
    min_dd = np.inf

    i = 0
    while i < n:
        f = fast[i]
        s = slow[i]
        is_entry = False
        is_exit = False
        if np.isnan(f) or np.isnan(s):
            en_ago = -1
            en_below = False
            ex_ago = -1
            ex_below = False
        elif f > s:
            if en_below:
                en_ago += 1
                is_entry = en_ago == 0
            ex_ago = -1
            ex_below = True
        elif f == s:
            en_ago = -1
            ex_ago = -1
        else:
            en_ago = -1
            en_below = True
            if ex_below:
                ex_ago += 1
                is_exit = ex_ago == 0

        # A 'below' bar can only be an exit and an 'above' bar only an entry, so vectorbt's signal
        # conflict resolution never triggers; entries while long / exits while flat are no-ops
        # (accumulate=False, long-only).
        filled = False
        o_size = 0.0
        o_price = 0.0
        o_fees = 0.0
        is_buy = False
        if (is_entry and sim_pos == 0.0) or (is_exit and sim_pos > 0.0):
            price = close[i]
            last_pos = sim_pos
            # execute_order_nb snaps state near zero even when the order is then rejected
            if _is_close_nb(sim_cash, 0.0):
                sim_cash = 0.0
            if _is_close_nb(sim_pos, 0.0):
                sim_pos = 0.0
            if is_entry:
                # buy_nb with size=np.inf: never enough cash for an infinite size, so vectorbt always
                # takes its "insufficient cash" branch and spends exactly the whole balance.
                adj_price = price * (1.0 + slippage)
                cash_limit = sim_cash
                if cash_limit != 0.0:
                    max_req_cash = _add_nb(cash_limit, -0.0) / (1.0 + fees)
                    if max_req_cash > 0.0:
                        # final_size > 0 here, so vectorbt's min_size=0 check cannot reject it
                        final_size = max_req_cash / adj_price
                        o_size = final_size
                        o_price = adj_price
                        o_fees = cash_limit - max_req_cash
                        sim_cash = _add_nb(sim_cash, -cash_limit)
                        sim_pos = _add_nb(sim_pos, final_size)
                        filled = True
                        is_buy = True
            else:
                # sell_nb closing the whole long position (size = |last position|)
                adj_price = price * (1.0 - slippage)
                size_limit = min(sim_pos, abs(last_pos))
                if sim_pos != 0.0 and not _is_close_nb(size_limit, 0.0):
                    acq_cash = size_limit * adj_price
                    fees_paid = acq_cash * fees + 0.0
                    final_acq_cash = _add_nb(acq_cash, -fees_paid)
                    if final_acq_cash >= 0.0:
                        o_size = size_limit
                        o_price = adj_price
                        o_fees = fees_paid
                        sim_cash = sim_cash + final_acq_cash
                        sim_pos = _add_nb(sim_pos, -size_limit)
                        filled = True

        if filled:
            n_orders += 1
            if is_buy:
                n_buys += 1
                signed = o_size
                tp_pos = _add_nb(tp_pos, o_size)
                tp_cash = _add_nb(tp_cash, -(o_size * o_price + o_fees))
            else:
                signed = -o_size
                tp_pos = _add_nb(tp_pos, -o_size)
                tp_cash = _add_nb(tp_cash, o_size * o_price - o_fees)
            cash_flow = _add_nb(0.0, -signed * o_price - o_fees)
            asset_flow = _add_nb(0.0, signed)
            cash_v = _add_nb(cash_v, cash_flow)
            pos_v = _add_nb(pos_v, asset_flow)
        else:
            # add_nb(x, 0.0) on a no-order bar only snaps |x| <= abs_tol to zero
            if cash_v != 0.0 and abs(cash_v) <= _ABS_TOL:
                cash_v = 0.0
            if pos_v != 0.0 and abs(pos_v) <= _ABS_TOL:
                pos_v = 0.0

        if pos_v != 0.0:
            value = cash_v + pos_v * close[i]
        else:
            value = cash_v + 0.0

        # returns_nb / get_return_nb
        if prev_value == 0.0:
            if value == 0.0:
                r = 0.0
            else:
                r = np.inf * np.sign(value)
        else:
            r = (value - prev_value) / prev_value
            if prev_value < 0.0:
                r *= -1.0
        prev_value = value
        rets[i] = r
        if not np.isnan(r):
            ret_sum += r
            ret_cnt += 1
            # drawdown_1d_nb: cumulative returns from 100, expanding max, min of ratio - 1. A flat
            # bar (r == 0) leaves cumprod, the max and the drawdown unchanged, so it is skipped.
            if r != 0.0 or i == 0:
                cumprod *= r + 1.0
                cum = cumprod * 100.0
                if cum > max_cum:
                    if trough < np.inf:
                        min_dd = min(min_dd, trough / max_cum - 1.0)
                    max_cum = cum
                    trough = cum
                else:
                    trough = min(trough, cum)
        i += 1

        # Fast path while flat: value stays equal to cash, so every return is exactly 0.0 and adds
        # nothing to the sums or the drawdown; only the two crossover state machines must advance.
        # It stops *before* a bar that fires an entry, which the general path above then handles.
        # (A cash balance within abs_tol of zero would be snapped on the next bar; leave that rare
        # case to the general path.)
        if pos_v == 0.0 and sim_pos == 0.0 and (cash_v == 0.0 or abs(cash_v) > _ABS_TOL):
            while i < n:
                f = fast[i]
                s = slow[i]
                if np.isnan(f) or np.isnan(s):
                    en_ago = -1
                    en_below = False
                    ex_ago = -1
                    ex_below = False
                elif f > s:
                    if en_below:
                        if en_ago == -1:
                            break
                        en_ago += 1
                    ex_ago = -1
                    ex_below = True
                elif f == s:
                    en_ago = -1
                    ex_ago = -1
                else:
                    en_ago = -1
                    en_below = True
                    if ex_below:
                        ex_ago += 1
                rets[i] = 0.0
                ret_cnt += 1
                i += 1
        # Fast path while long with a settled ledger (no order on the previous bar to snap): the same
        # value/return/drawdown arithmetic as the general path, minus the order and sign branches.
        # It stops before a bar that fires an exit; entries while long are no-ops.
        elif (
            pos_v > 0.0
            and sim_pos > 0.0
            and prev_value > 0.0
            and (cash_v == 0.0 or cash_v > _ABS_TOL)
            and pos_v > _ABS_TOL
        ):
            while i < n:
                f = fast[i]
                s = slow[i]
                if np.isnan(f) or np.isnan(s):
                    en_ago = -1
                    en_below = False
                    ex_ago = -1
                    ex_below = False
                elif f > s:
                    if en_below:
                        en_ago += 1
                    ex_ago = -1
                    ex_below = True
                elif f == s:
                    en_ago = -1
                    ex_ago = -1
                else:
                    en_ago = -1
                    en_below = True
                    if ex_below:
                        if ex_ago == -1:
                            break
                        ex_ago += 1
                value = cash_v + pos_v * close[i]
                r = (value - prev_value) / prev_value
                prev_value = value
                rets[i] = r
                ret_sum += r
                ret_cnt += 1
                if r != 0.0:
                    cumprod *= r + 1.0
                    cum = cumprod * 100.0
                    if cum > max_cum:
                        min_dd = min(min_dd, trough / max_cum - 1.0)
                        max_cum = cum
                        trough = cum
                    else:
                        trough = min(trough, cum)
                i += 1

    if trough < np.inf:
        min_dd = min(min_dd, trough / max_cum - 1.0)

    if n_orders == 0:
        total_profit = 0.0
    else:
        total_profit = tp_cash + tp_pos * close[n - 1]
    out[0] = total_profit / init_cash
    out[1] = total_profit + init_cash
    out[3] = min_dd
    out[4] = n_buys
    return ret_sum, ret_cnt


@njit(cache=True)
def _sharpe_nb(ret_sum: float, cnt: int, ssd: float, n: int, ann_factor: float) -> float:
    """sharpe_ratio_1d_nb(ddof=1) from nanmean's sum and nanvar's sum of squared deviations."""
    if n < 2:
        return np.nan
    mean = ret_sum / cnt
    rcount = max(cnt - 1, 0)
    if rcount == 0:
        std = np.nan
    else:
        # nanstd_1d_nb: sqrt(nanvar * cnt / rcount), operation order kept for identical rounding
        std = np.sqrt(ssd / cnt * cnt / rcount)
    if std == 0.0:
        return np.inf
    return mean / std * np.sqrt(ann_factor)


@njit(parallel=True, cache=True)
def _sweep_block_nb(
    close2d: np.ndarray,
    ma: np.ndarray,
    fast_pos: np.ndarray,
    slow_pos: np.ndarray,
    init_cash: float,
    fees: float,
    slippage: float,
    ann_factor: float,
    out: np.ndarray,
) -> None:
    """Metrics for every (asset row, combo) pair; ``out`` has shape (n_assets, n_combos, n_metrics).

    Combos are processed four at a time: the variance pass of the Sharpe ratio is one long chain of
    dependent additions per combo (its order is fixed by vectorbt's nanvar, so it cannot be split),
    and running four independent chains in one loop hides most of the addition latency.
    """
    n_assets, n_bars = close2d.shape
    n_combos = fast_pos.shape[0]
    n_groups = (n_combos + 3) // 4
    for k in prange(n_assets * n_groups):
        a = k // n_groups
        first = (k % n_groups) * 4
        rets = np.empty((4, n_bars), dtype=np.float64)
        sums = np.zeros(4, dtype=np.float64)
        cnts = np.ones(4, dtype=np.int64)
        for j in range(4):
            c = first + j
            if c >= n_combos:
                rets[j, :] = 0.0  # padding slot of the last group: computed, then discarded
            else:
                sums[j], cnts[j] = _sma_cross_pass_nb(
                    close2d[a],
                    ma[a, fast_pos[c]],
                    ma[a, slow_pos[c]],
                    init_cash,
                    fees,
                    slippage,
                    rets[j],
                    out[a, c],
                )
        m0 = sums[0] / cnts[0]
        m1 = sums[1] / cnts[1]
        m2 = sums[2] / cnts[2]
        m3 = sums[3] / cnts[3]
        r0 = rets[0]
        r1 = rets[1]
        r2 = rets[2]
        r3 = rets[3]
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for i in range(n_bars):
            d0 = r0[i] - m0
            s0 += d0 * d0
            d1 = r1[i] - m1
            s1 += d1 * d1
            d2 = r2[i] - m2
            s2 += d2 * d2
            d3 = r3[i] - m3
            s3 += d3 * d3
        for j in range(4):
            c = first + j
            if c < n_combos:
                ssd = s0 if j == 0 else (s1 if j == 1 else (s2 if j == 2 else s3))
                out[a, c, 2] = _sharpe_nb(sums[j], cnts[j], ssd, n_bars, ann_factor)


# --------------------------------------------------------------------------------------------------
# Python API
# --------------------------------------------------------------------------------------------------


def rolling_mean(a: np.ndarray | Sequence[float], window: int) -> np.ndarray:
    """Simple moving average, bit-identical to ``vbt.MA.run(a, window).ma``.

    NaN until ``window`` valid values are in the window (vectorbt's ``minp=window``).

    Example:
        >>> rolling_mean([1.0, 2.0, 3.0, 4.0], 2)
        array([nan, 1.5, 2.5, 3.5])
    """
    arr = np.ascontiguousarray(a, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"rolling_mean expects a 1-d array, got shape {arr.shape}")
    if int(window) < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out = np.empty_like(arr)
    _rolling_mean_into_nb(arr, int(window), out)
    return out


def _validate_windows(fast: Any, slow: Any) -> tuple[np.ndarray, np.ndarray]:
    fast_arr = np.asarray(fast)
    slow_arr = np.asarray(slow)
    for name, arr in (("fast", fast_arr), ("slow", slow_arr)):
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-d array of windows, got shape {arr.shape}")
        if not np.all(np.isfinite(arr.astype(np.float64))) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name} windows must be integers")
        if np.any(arr < 1):
            raise ValueError(f"{name} windows must be >= 1, got min {arr.min()}")
    if fast_arr.shape != slow_arr.shape:
        raise ValueError(
            f"fast and slow must pair up one-to-one (one entry per combo): "
            f"got {fast_arr.size} fast and {slow_arr.size} slow windows"
        )
    return fast_arr.astype(np.int64), slow_arr.astype(np.int64)


def _validate_close(close: pd.DataFrame | pd.Series) -> pd.DataFrame:
    if isinstance(close, pd.Series):
        close = close.to_frame(name=close.name if close.name is not None else 0)
    if not isinstance(close, pd.DataFrame):
        raise TypeError(f"close must be a pandas DataFrame (bars x symbols), got {type(close).__name__}")
    if close.shape[0] < 2 or close.shape[1] < 1:
        raise ValueError(f"close needs at least 2 bars and 1 symbol, got shape {close.shape}")
    values = close.to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        col = close.columns[int(np.argmax(bad.any(axis=0)))]
        raise ValueError(
            f"close column {col!r} has missing, non-finite or non-positive prices; the sweep needs a "
            "complete price history per column (trim leading NaNs per symbol and sweep it separately)"
        )
    return close


def _validate_costs(fees: float, slippage: float, init_cash: float, periods_per_year: float) -> None:
    if not math.isfinite(fees) or fees <= -1:
        raise ValueError(f"fees must be finite and > -1, got {fees}")
    if not math.isfinite(slippage) or not 0 <= slippage < 1:
        raise ValueError(f"slippage must be in [0, 1), got {slippage}")
    if not math.isfinite(init_cash) or init_cash <= 0:
        raise ValueError(f"init_cash must be finite and > 0, got {init_cash}")
    if not math.isfinite(periods_per_year) or periods_per_year <= 0:
        raise ValueError(f"periods_per_year must be finite and > 0, got {periods_per_year}")


def _resolve_threads(n_jobs: int | None) -> int:
    max_threads = numba.config.NUMBA_NUM_THREADS
    if n_jobs is None or n_jobs == -1:
        return max_threads
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1 or -1 (all cores), got {n_jobs}")
    return min(int(n_jobs), max_threads)


def _asset_blocks(n_assets: int, n_windows: int, n_bars: int, chunk_bytes: int) -> list[tuple[int, int]]:
    per_asset = max(n_windows * n_bars * 8, 1)
    size = max(1, min(n_assets, chunk_bytes // per_asset))
    return [(start, min(start + size, n_assets)) for start in range(0, n_assets, size)]


def _sweep_rows(
    close2d: np.ndarray,
    windows: np.ndarray,
    fast_pos: np.ndarray,
    slow_pos: np.ndarray,
    params: tuple[float, float, float, float],
) -> np.ndarray:
    init_cash, fees, slippage, ann_factor = params
    ma = _ma_table_nb(close2d, windows)
    out = np.empty((close2d.shape[0], fast_pos.shape[0], _N_METRICS), dtype=np.float64)
    _sweep_block_nb(close2d, ma, fast_pos, slow_pos, init_cash, fees, slippage, ann_factor, out)
    return out


def _sweep_task(
    chunk: tuple[int, int, tuple[float, float, float, float]],
    close2d: np.ndarray,
    windows: np.ndarray,
    fast_pos: np.ndarray,
    slow_pos: np.ndarray,
) -> np.ndarray:
    """Executor work item: one block of asset rows. Module-level so it pickles by reference."""
    start, stop, params = chunk
    # Each worker process is one of n_jobs; letting numba fan out again would oversubscribe cores.
    numba.set_num_threads(1)
    # Shared arrays arrive read-only (memory map / object store) and numba types read-only arrays
    # separately; copying these small inputs keeps the in-process signatures, so the on-disk cache
    # is reused rather than every worker compiling new specialisations.
    block = np.array(close2d[start:stop], dtype=np.float64, order="C")
    return _sweep_rows(block, np.array(windows), np.array(fast_pos), np.array(slow_pos), params)


def sma_sweep_arrays(
    close2d: np.ndarray,
    fast: np.ndarray | Sequence[int],
    slow: np.ndarray | Sequence[int],
    *,
    fees: float = 0.0,
    slippage: float = 0.0,
    init_cash: float = 10_000.0,
    periods_per_year: float = 252.0,
    n_jobs: int | None = -1,
    chunk_bytes: int = _DEFAULT_CHUNK_BYTES,
    executor: Executor | None = None,
) -> np.ndarray:
    """Array-level sweep: metrics of shape ``(n_assets, n_combos, len(METRICS))``.

    Args:
        close2d: prices with one **row per asset** (``n_assets x n_bars``), finite and > 0.
        fast, slow: paired windows, one entry per combination.
        fees, slippage, init_cash: as in ``vbt.Portfolio.from_signals``.
        periods_per_year: Sharpe annualisation (bars per year; vectorbt's ``year_freq / freq``).
        n_jobs: numba threads for the in-process path (-1 = all).
        chunk_bytes: budget for one block's MA table; assets are processed in blocks that fit.
        executor: optional ``LocalExecutor``/``RayExecutor``; blocks are then spread over its workers.

    Example:
        >>> px = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, (1, 300)), axis=1))
        >>> sma_sweep_arrays(px, [5, 10], [20, 30]).shape
        (1, 2, 5)
    """
    # C-contiguous and writeable: numba compiles (and caches) one specialisation per array layout and
    # read-only flag, and pandas hands out read-only views under copy-on-write.
    close2d = np.require(close2d, dtype=np.float64, requirements=["C", "W"])
    if close2d.ndim != 2:
        raise ValueError(f"close2d must be 2-d (assets x bars), got shape {close2d.shape}")
    if not np.all(np.isfinite(close2d) & (close2d > 0)):
        raise ValueError("close2d must be finite and > 0 everywhere")
    fast_arr, slow_arr = _validate_windows(fast, slow)
    _validate_costs(fees, slippage, init_cash, periods_per_year)

    windows = np.unique(np.concatenate([fast_arr, slow_arr]))
    fast_pos = np.searchsorted(windows, fast_arr).astype(np.int64)
    slow_pos = np.searchsorted(windows, slow_arr).astype(np.int64)
    params = (float(init_cash), float(fees), float(slippage), float(periods_per_year))
    n_assets, n_bars = close2d.shape

    if executor is not None:
        # Smaller blocks than the memory budget alone would give, so every worker gets work.
        blocks = _asset_blocks(n_assets, len(windows), n_bars, chunk_bytes)
        if len(blocks) < 4 * max(executor.n_workers, 1):
            blocks = [(a, a + 1) for a in range(n_assets)]
        chunks = [(start, stop, params) for start, stop in blocks]
        shared = {"close2d": close2d, "windows": windows, "fast_pos": fast_pos, "slow_pos": slow_pos}
        parts = executor.map(_sweep_task, chunks, shared=shared)
        return np.concatenate(parts, axis=0)

    threads = _resolve_threads(n_jobs)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        parts = [
            _sweep_rows(close2d[start:stop], windows, fast_pos, slow_pos, params)
            for start, stop in _asset_blocks(n_assets, len(windows), n_bars, chunk_bytes)
        ]
    finally:
        numba.set_num_threads(previous)
    return np.concatenate(parts, axis=0)


def _to_table(
    symbols: Sequence[Any], fast: np.ndarray, slow: np.ndarray, metrics: np.ndarray
) -> pd.DataFrame:
    n_assets, n_combos = metrics.shape[:2]
    flat = metrics.reshape(n_assets * n_combos, _N_METRICS)
    table = pd.DataFrame(
        {
            "symbol": np.repeat(np.asarray(symbols, dtype=object), n_combos),
            "fast": np.tile(fast, n_assets),
            "slow": np.tile(slow, n_assets),
        }
    )
    for j, name in enumerate(METRICS):
        table[name] = flat[:, j]
    table["n_trades"] = table["n_trades"].astype(np.int64)
    return table


def run_sma_sweep(
    close: pd.DataFrame | pd.Series,
    fast: np.ndarray | Sequence[int],
    slow: np.ndarray | Sequence[int],
    fees: float = 0.0,
    slippage: float = 0.0,
    init_cash: float = 10_000.0,
    n_jobs: int | None = -1,
    *,
    periods_per_year: float = 252.0,
    chunk_bytes: int = _DEFAULT_CHUNK_BYTES,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Sweep paired (fast, slow) SMA-cross windows over every column of ``close``.

    Equivalent to one plain vectorbt ``from_signals`` run over all combos (see the module docstring
    and ``run_sma_sweep_vectorbt``), at a fraction of the time and memory.

    Args:
        close: bars x symbols prices (a Series is one symbol), complete and > 0.
        fast, slow: paired windows, one entry per combination (e.g. two columns of a grid).
        fees, slippage: proportional costs per order as in vectorbt.
        init_cash: starting cash of each (symbol, combo) portfolio.
        n_jobs: numba threads (-1 = all cores). Ignored when ``executor`` is given.
        periods_per_year: Sharpe annualisation; 252 reproduces ``year_freq="252 days"`` at ``freq="1D"``.
        chunk_bytes: memory budget of one block's MA table (assets are processed in blocks).
        executor: optional ``LocalExecutor``/``RayExecutor`` to spread asset blocks over processes.

    Returns:
        One row per (symbol, combo), symbol-major in ``close.columns`` order and then combo order:
        ``symbol, fast, slow`` followed by ``METRICS``. ``max_drawdown`` is negative (vectorbt's
        sign); ``sharpe`` is ``inf`` for a combo that never trades (vectorbt: zero return std);
        ``n_trades`` counts trades including one still open at the end (``pf.trades.count()``).

    Example:
        >>> idx = pd.date_range("2020-01-01", periods=300, freq="D")
        >>> px = pd.DataFrame({"A": 100 + np.sin(np.arange(300) / 9) * 5}, index=idx)
        >>> table = run_sma_sweep(px, fast=[5, 10], slow=[20, 30], fees=0.001)
        >>> list(table.columns)
        ['symbol', 'fast', 'slow', 'total_return', 'final_value', 'sharpe', 'max_drawdown', 'n_trades']
    """
    frame = _validate_close(close)
    fast_arr, slow_arr = _validate_windows(fast, slow)
    close2d = np.ascontiguousarray(frame.to_numpy(dtype=np.float64).T)
    metrics = sma_sweep_arrays(
        close2d,
        fast_arr,
        slow_arr,
        fees=float(fees),
        slippage=float(slippage),
        init_cash=float(init_cash),
        periods_per_year=float(periods_per_year),
        n_jobs=n_jobs,
        chunk_bytes=chunk_bytes,
        executor=executor,
    )
    return _to_table(list(frame.columns), fast_arr, slow_arr, metrics)


def run_sma_sweep_vectorbt(
    close: pd.DataFrame | pd.Series,
    fast: np.ndarray | Sequence[int],
    slow: np.ndarray | Sequence[int],
    fees: float = 0.0,
    slippage: float = 0.0,
    init_cash: float = 10_000.0,
    *,
    periods_per_year: int = 252,
    combos_per_run: int | None = None,
) -> pd.DataFrame:
    """The same sweep done the plain vectorbt way: the reference ``run_sma_sweep`` must reproduce.

    One ``vbt.MA.run`` per side, ``ma_crossed_above``/``ma_crossed_below`` and one
    ``Portfolio.from_signals`` over every (combo, symbol) column. Memory grows with
    bars x combos x symbols (several GB for the full 31,800-combo benchmark); ``combos_per_run``
    splits the combos into several plain runs when that is too much.

    Example:
        >>> idx = pd.date_range("2020-01-01", periods=300, freq="D")
        >>> px = pd.DataFrame({"A": 100 + np.sin(np.arange(300) / 9) * 5}, index=idx)
        >>> ref = run_sma_sweep_vectorbt(px, fast=[5], slow=[20])  # doctest: +SKIP
    """
    import vectorbt as vbt  # heavy import, only the reference path needs it

    frame = _validate_close(close)
    fast_arr, slow_arr = _validate_windows(fast, slow)
    _validate_costs(fees, slippage, init_cash, periods_per_year)
    n_combos = fast_arr.size
    step = n_combos if combos_per_run is None else max(1, int(combos_per_run))
    # vectorbt needs a frequency for annualisation; the index itself does not matter for the metrics
    frame = frame.set_axis(pd.date_range("2000-01-01", periods=len(frame), freq="D"), axis=0)
    n_symbols = frame.shape[1]

    pieces = []
    for start in range(0, n_combos, step):
        f = fast_arr[start : start + step]
        s = slow_arr[start : start + step]
        fast_ma = vbt.MA.run(frame, window=f, short_name="fast")
        slow_ma = vbt.MA.run(frame, window=s, short_name="slow")
        entries = fast_ma.ma_crossed_above(slow_ma)
        exits = fast_ma.ma_crossed_below(slow_ma)
        del fast_ma, slow_ma  # bars x columns each; not needed once the signals exist
        pf = vbt.Portfolio.from_signals(
            frame,
            entries,
            exits,
            init_cash=init_cash,
            fees=fees,
            slippage=slippage,
            size=np.inf,
            direction="longonly",
            accumulate=False,
            freq="1D",
        )
        del entries, exits
        # The returns accessor pf.get_returns_acc() would build, minus its benchmark returns (another
        # bars x columns array nothing here uses): same numba functions, so identical Sharpe and
        # max drawdown to pf.get_returns_acc(year_freq=...).sharpe_ratio() and pf.max_drawdown().
        acc = pf.returns().vbt.returns(freq="1D", year_freq=f"{periods_per_year} days")
        block = np.column_stack(
            [
                np.asarray(pf.total_return(), dtype=np.float64),
                np.asarray(pf.final_value(), dtype=np.float64),
                np.asarray(acc.sharpe_ratio(), dtype=np.float64),
                np.asarray(acc.max_drawdown(), dtype=np.float64),
                np.asarray(pf.trades.count(), dtype=np.float64),
            ]
        )
        # vectorbt's columns are combo-major (combo, symbol); ours are symbol-major
        pieces.append(block.reshape(len(f), n_symbols, _N_METRICS).transpose(1, 0, 2))
        del pf, acc
    metrics = np.concatenate(pieces, axis=1)
    return _to_table(list(frame.columns), fast_arr, slow_arr, metrics)
