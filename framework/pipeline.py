"""The pipeline both engines share: bars -> signal -> weights -> risk-adjusted targets.

:func:`compute_targets` runs it over a whole history (what a backtest uses); :func:`targets_at` runs it
on a trailing window for one decision date (what live trading uses). A test holds the two to the same
answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from qf.bars import Bars
from qf.components import ForecastBands, UsesForecastBands, implements
from qf.config.loader import LoadedExperiment
from qf.engines.kernels.risk import RiskStack, compose
from qf.errors import QfError
from qf.rebalance import rebalance_dates


@dataclass
class Targets:
    """What the pipeline produced: the signal, the sizer's weights and the final target weights."""

    signal: pd.DataFrame
    weights: pd.DataFrame
    targets: pd.DataFrame
    risk: RiskStack


def risk_config(exp: LoadedExperiment) -> RiskStack:
    """The experiment's stateful risk rules, in YAML order, composed for the kernels
    (:func:`qf.engines.kernels.risk.compose`)."""
    return compose(exp.risk)


def _check_frame(df: pd.DataFrame, bars: Bars, who: str, index: pd.DatetimeIndex) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise QfError(f"{who} returned {type(df).__name__}, expected a DataFrame")
    # the columns' Index comparison first: listing a string Index costs more than a sweep's whole sizer
    same_columns = df.columns.equals(bars.close.columns) or list(df.columns) == bars.symbols
    if not df.index.equals(index) or not same_columns:
        raise QfError(f"{who} returned a frame whose dates or symbols differ from its input")
    return df


def compute_signal(exp: LoadedExperiment, bars: Bars) -> pd.DataFrame:
    model = exp.signal
    bars.require(model.fields, who=f"signal {model.name!r}")
    sig = _check_frame(model.compute(bars), bars, f"signal {model.name!r}", bars.index)
    vals = sig.to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        outside = ((vals < -1 - 1e-12) | (vals > 1 + 1e-12)).any()  # NaN compares False
    finite = vals[np.isfinite(vals)] if outside else vals[:0]  # infinities are the sizer's to refuse
    if finite.size and (finite.min() < -1 - 1e-12 or finite.max() > 1 + 1e-12):
        raise QfError(f"signal {model.name!r} produced scores outside [-1, 1] "
                      f"(min {finite.min():g}, max {finite.max():g})")
    return sig.astype(float)


def apply_weights(exp: LoadedExperiment, signal: pd.DataFrame, bars: Bars,
                  dates: pd.DatetimeIndex) -> tuple[pd.DataFrame, pd.DataFrame]:
    sizer = exp.sizer
    if implements(sizer, UsesForecastBands):  # a sizer that reads the signal model's quantile forecasts
        if not implements(exp.signal, ForecastBands):
            raise QfError(f"sizer {sizer.name!r} sizes from forecast bands, which signal {exp.signal.name!r} does not "
                          "give; use a signal that forecasts quantiles (e.g. xgboost with mode: quantile)")
        sizer.use_forecast_bands(exp.signal)
    weights = _check_frame(sizer.size(signal, bars, dates), bars, f"sizer {sizer.name!r}", dates).astype(float)
    targets = weights
    for rule in exp.risk:
        if not rule.stateful:
            targets = _check_frame(rule.apply(targets, bars), bars, f"risk rule {rule.name!r}", dates).astype(float)
    values = targets.to_numpy()
    if not np.isfinite(values).all():
        r, c = np.argwhere(~np.isfinite(values))[0]
        raise QfError(f"target weight for {targets.columns[c]} on {targets.index[r]:%Y-%m-%d} is not a number")
    return weights, targets


def compute_targets(exp: LoadedExperiment, bars: Bars) -> Targets:
    """Run the pipeline over the full history; targets are indexed by the rebalance dates."""
    dates = rebalance_dates(bars.index, exp.spec.rebalance)
    signal = compute_signal(exp, bars)
    weights, targets = apply_weights(exp, signal, bars, dates)
    return Targets(signal, weights, targets, risk_config(exp))


def targets_at(exp: LoadedExperiment, bars: Bars, date: pd.Timestamp) -> pd.Series:
    """Targets for one decision ``date`` computed from the bars up to it only (the live path)."""
    window = bars.truncate(date)
    signal = compute_signal(exp, window)
    _, targets = apply_weights(exp, signal, window, pd.DatetimeIndex([date]))
    return targets.iloc[0]
