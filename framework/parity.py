"""Engine parity: does the same experiment give the same result in two engines?

:func:`compare` lines up two :class:`qf.engines.result.EngineResult` objects: final equity, the equity path
bar by bar, the orders (matched on time, symbol and side, with quantities equal within the tolerance)
and the risk events. :func:`run_parity` runs an experiment in both engines and compares them inside one
:func:`qf.runner.lifecycle` (kind ``parity``); ``qf parity EXP.yaml`` uses it and prints the report.

Example::

    report = run_parity(exp)          # or, by hand:
    a = run_experiment(exp, engine="vectorbt", write=False).result
    b = run_experiment(exp, engine="backtrader", write=False).result
    report = compare(a, b)
    report.ok, report.final_rel_diff, report.first_divergence
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from qf import runner
from qf.config.loader import LoadedExperiment
from qf.engines.result import ORDER_COLUMNS, EngineResult
from qf.runner import lifecycle

ENGINES = ("vectorbt", "backtrader")

KEY = ["time", "symbol", "side"]


@dataclass
class ParityReport:
    """What :func:`compare` found. ``ok`` is True when everything agrees within ``tolerance``.

    Example::

        report = compare(vbt_result, bt_result, tolerance=1e-9)
        if not report.ok:
            print(report.first_divergence, report.unmatched_a.head())
    """

    engine_a: str
    engine_b: str
    tolerance: float
    final_a: float
    final_b: float
    final_rel_diff: float
    max_rel_diff: float
    first_divergence: pd.Timestamp | None
    orders_a: int
    orders_b: int
    matched: int
    max_order_diff: float  # largest quantity difference among matched orders, as match_orders measures it
    unmatched_a: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ORDER_COLUMNS))
    unmatched_b: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ORDER_COLUMNS))
    events_a: int = 0
    events_b: int = 0
    events_equal: bool = True
    fees_a: float = 0.0
    fees_b: float = 0.0

    @property
    def orders_equal(self) -> bool:
        return self.unmatched_a.empty and self.unmatched_b.empty

    @property
    def ok(self) -> bool:
        """Final equity within tolerance, every order matched, the same risk events."""
        return bool(self.final_rel_diff <= self.tolerance and self.orders_equal and self.events_equal)


def _rel(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300)
    out = np.abs(a - b) / scale
    both_nan = np.isnan(a) & np.isnan(b)
    out = np.where(both_nan, 0.0, out)
    return np.where(np.isnan(out), np.inf, out)  # missing on one side only: a divergence


def match_orders(a: pd.DataFrame, b: pd.DataFrame, tolerance: float,
                 equity: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Pair orders with the same time, symbol and side whose quantities agree within ``tolerance``;
    returns ``(matched, unmatched_a, unmatched_b)`` (``matched`` holds both sides and their ``difference``).
    Several orders under one key pair up in order of quantity.

    Quantities agree when their relative difference is within ``tolerance``, or, given the ``equity``
    series, when the difference is worth at most ``tolerance`` of the equity at that bar. The second
    test matters for small rebalancing trades: such a trade is the difference of two nearly equal
    position sizes, so rounding far below the tolerance in equity is a large relative error in it.

    Example::

        matched, only_a, only_b = match_orders(res_a.orders, res_b.orders, 1e-9, res_a.equity)
    """
    def keyed(df: pd.DataFrame) -> pd.DataFrame:
        # an engine with no order gives empty columns of another dtype (float symbol): merge would refuse
        df = df.reset_index(drop=True).astype({"symbol": object, "side": object})
        df["time"] = pd.to_datetime(df["time"])
        df = df.sort_values([*KEY, "quantity"], kind="mergesort")
        return df.assign(_n=df.groupby(KEY, sort=False).cumcount())

    ka, kb = keyed(a), keyed(b)
    both = ka.merge(kb, on=[*KEY, "_n"], how="outer", suffixes=("_a", "_b"), indicator=True)
    paired = both["_merge"] == "both"
    qa, qb = both["quantity_a"].to_numpy(dtype=float), both["quantity_b"].to_numpy(dtype=float)
    diff = _rel(qa, qb)
    if equity is not None:
        worth = np.abs(qa - qb) * both["price_a"].to_numpy(dtype=float)
        scale = np.abs(equity.reindex(pd.DatetimeIndex(both["time"])).to_numpy(dtype=float))
        diff = np.fmin(diff, worth / np.maximum(scale, 1e-300))
    close = paired.to_numpy() & (diff <= tolerance)
    matched = both[close].assign(difference=diff[close])
    bad_a = both[(both["_merge"] != "right_only") & ~close]
    bad_b = both[(both["_merge"] != "left_only") & ~close]

    def side(df: pd.DataFrame, suffix: str) -> pd.DataFrame:
        cols = {f"{c}{suffix}": c for c in ("quantity", "price", "fee")}
        return df[[*KEY, *cols]].rename(columns=cols)[ORDER_COLUMNS].reset_index(drop=True)

    return matched, side(bad_a, "_a"), side(bad_b, "_b")


def compare(result_a: EngineResult, result_b: EngineResult, tolerance: float = 1e-9) -> ParityReport:
    """Compare two engine results; see :class:`ParityReport`.

    Equity is compared bar by bar as a relative difference; ``first_divergence`` is the first bar where it
    exceeds ``tolerance`` (None when it never does). Orders are matched by :func:`match_orders` against
    ``result_a``'s equity.

    Example::

        compare(run_vectorbt(bars, t, r, ex), run_backtrader(bars, t, r, ex)).ok   # True
    """
    ea, eb = result_a.equity.astype(float), result_b.equity.astype(float)
    idx = ea.index.union(eb.index)
    ra, rb = ea.reindex(idx), eb.reindex(idx)
    rel = _rel(ra.to_numpy(), rb.to_numpy())
    over = np.flatnonzero(rel > tolerance)
    final_a = float(ea.iloc[-1]) if len(ea) else float("nan")
    final_b = float(eb.iloc[-1]) if len(eb) else float("nan")
    matched, only_a, only_b = match_orders(result_a.orders, result_b.orders, tolerance, ea)

    def norm_events(df: pd.DataFrame) -> pd.DataFrame:
        cols = ["time", "event", "symbol"]
        return df[cols].astype({"event": str, "symbol": str}).sort_values(cols, ignore_index=True)

    ev_a, ev_b = norm_events(result_a.events), norm_events(result_b.events)
    events_equal = len(ev_a) == len(ev_b) and bool((ev_a.to_numpy() == ev_b.to_numpy()).all())
    return ParityReport(
        engine_a=result_a.engine,
        engine_b=result_b.engine,
        tolerance=tolerance,
        final_a=final_a,
        final_b=final_b,
        final_rel_diff=float(_rel(final_a, final_b)),
        max_rel_diff=float(rel.max()) if len(rel) else 0.0,
        first_divergence=idx[over[0]] if len(over) else None,
        orders_a=len(result_a.orders),
        orders_b=len(result_b.orders),
        matched=len(matched),
        max_order_diff=float(matched["difference"].max()) if len(matched) else 0.0,
        unmatched_a=only_a,
        unmatched_b=only_b,
        events_a=len(ev_a),
        events_b=len(ev_b),
        events_equal=events_equal,
        fees_a=result_a.fees_paid,
        fees_b=result_b.fees_paid,
    )


def run_parity(exp: LoadedExperiment, tolerance: float = 1e-9,
               progress: Callable[[str], AbstractContextManager[Any]] = lambda _: nullcontext()) -> ParityReport:
    """Run ``exp`` in vectorbt and in backtrader (nothing written) and :func:`compare` them.

    The lifecycle hooks fire once for the pair (kind ``parity``; their ``result.outcome`` is the
    :class:`ParityReport`, ``result.metrics`` its headline figures). ``progress(engine)`` returns a
    context manager held while that engine runs (e.g. a console status line).

    Example::

        report = run_parity(load_experiment("experiments/sma_cross.yaml"), tolerance=1e-9)
        report.ok
    """
    with lifecycle(exp, "parity") as run:
        results = []
        for engine in ENGINES:
            with progress(engine):
                # looked up on the module at call time: tests skew one engine's run through it
                results.append(runner.run_experiment(exp, engine=engine, write=False).result)
        report = compare(results[0], results[1], tolerance)
        run.outcome = report
        run.metrics = {"ok": report.ok, "final_rel_diff": report.final_rel_diff,
                       "max_rel_diff": report.max_rel_diff, "matched": report.matched,
                       "orders_a": report.orders_a, "orders_b": report.orders_b}
    return report
