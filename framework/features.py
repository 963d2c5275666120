"""The feature capability: components whose decisions rest on a named feature matrix say so.

A signal model (or any component) that implements :class:`FeatureSource` hands its feature matrix to
the framework, which measures it without knowing the model: ``qf paper`` with ``paper: {drift: ...}``
compares the distribution of every feature during the session with its reference window
(:mod:`qf.paper.drift`). A signal that does not implement it is still measured on its output.

The contract of ``features(bars)``:

- a long frame indexed by a ``(date, symbol)`` MultiIndex in date-major order, one float column per
  feature (the names the model uses), the dates a subset of ``bars.index``;
- row ``(t, s)`` uses bars up to ``t`` only (as ``compute`` does: ``qf validate --lookahead`` checks
  the signal, and the drift monitor relies on it to score a replay from one feature build);
- rows in a symbol's warm-up may be missing or NaN (NaN values are left out of every distribution).

Example::

    class Momentum(SignalModel):
        name = "momentum_x"

        def features(self, bars):
            ret = bars.close.pct_change(20)
            return ret.stack().to_frame("ret_20")        # (date, symbol) x ["ret_20"]

        def compute(self, bars):
            return bars.close.pct_change(20).clip(-1, 1)

    isinstance(Momentum({}), FeatureSource)   # True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pandas as pd

from qf.bars import Bars
from qf.errors import QfError


@runtime_checkable
class FeatureSource(Protocol):
    """A component that exposes the feature matrix it decides from (see the module docstring).

    Example::

        feats = signal.features(bars)          # MultiIndex (date, symbol), one column per feature
        feats.columns.tolist()[:3]             # ['ret_1', 'ret_5', 'ret_20']
    """

    def features(self, bars: Bars) -> pd.DataFrame:
        """The features of every (date, symbol) row of ``bars`` (row t from bars up to t only)."""
        ...


def feature_frame(component: object, bars: Bars) -> pd.DataFrame | None:
    """``component.features(bars)`` checked against the contract, or None for a component without features.

    Raises ``QfError`` when the frame breaks the contract (not a DataFrame, not a (date, symbol) index,
    dates outside ``bars``), naming the component.

    Example::

        feature_frame(exp.signal, bars)    # None for sma_cross; the xgboost signal's feature matrix
    """
    if not isinstance(component, FeatureSource):
        return None
    who = getattr(component, "name", type(component).__name__)
    frame = component.features(bars)
    if not isinstance(frame, pd.DataFrame):
        raise QfError(f"{who}: features() returned {type(frame).__name__}, expected a DataFrame")
    if not isinstance(frame.index, pd.MultiIndex) or frame.index.nlevels != 2:
        raise QfError(f"{who}: features() must be indexed by a (date, symbol) MultiIndex")
    dates = pd.DatetimeIndex(frame.index.get_level_values(0))
    if len(dates) and (bars.index.get_indexer(dates.unique()) < 0).any():
        raise QfError(f"{who}: features() returned dates that are not bars of its input")
    return frame.astype(float)
