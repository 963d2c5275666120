"""Ensembles of configured signals: a weighted average or a weighted vote, with a diversity check.

Members that agree all the time add nothing but the look of robustness. The ensemble measures how alike
its members' predictions are -- the Pearson correlation of every pair of members' scores, pooled over all
bars and symbols where both have one -- and warns (:class:`DiversityWarning`) when a pair is above
``max_correlation`` (0.7 by default). ``diversity(bars)`` returns the figures.
"""

from __future__ import annotations

import warnings
from itertools import combinations
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import SignalModel, history_of
from qf_plugins.signals._compose import SubSignal, build_signal, longest_history, union_fields


class DiversityWarning(UserWarning):
    """Two ensemble members' predictions are more correlated than ``max_correlation``."""


class Member(SubSignal):
    """One member: ``{type, params, weight}``."""

    weight: float = Field(1.0, gt=0, description="the member's weight in the average or the vote")


def _default_members() -> list[Member]:
    # a trend follower and a mean reverter: members that disagree by design
    return [Member(type="sma_cross", params={"fast": 20, "slow": 100}), Member(type="mean_reversion")]


class EnsembleParams(BaseParams):
    members: list[Member] = Field(default_factory=_default_members, description="the signals combined")
    method: Literal["mean", "vote"] = Field("mean", description="weighted average of scores, or weighted vote "
                                                                "of their signs")
    max_correlation: float = Field(0.7, ge=-1.0, le=1.0, description="warn when two members' predictions "
                                                                     "correlate above this")

    @field_validator("members")
    @classmethod
    def _build_members(cls, v: list[Member]) -> list[Member]:
        if len(v) < 2:
            raise ValueError("an ensemble needs at least 2 members")
        for i, m in enumerate(v):
            build_signal(m, f"members.{i}")
        return v


def pairwise_correlation(scores: list[pd.DataFrame], labels: list[str]) -> dict[str, Any]:
    """Correlation of every pair of score frames (pooled over rows and columns where both are finite).

    Returns ``{"pairs": {"a ~ b": rho, ...}, "mean_correlation": mean rho}``; a pair without variance in
    either member has rho NaN (left out of the mean).

    Example::

        pairwise_correlation([s1, s2], ["sma_cross", "momentum"])["pairs"]   # {"sma_cross ~ momentum": 0.41}
    """
    pairs: dict[str, float] = {}
    for i, j in combinations(range(len(scores)), 2):
        a, b = scores[i].to_numpy(dtype=float).ravel(), scores[j].to_numpy(dtype=float).ravel()
        ok = np.isfinite(a) & np.isfinite(b)
        x, y = a[ok], b[ok]
        rho = float(np.corrcoef(x, y)[0, 1]) if x.size > 1 and x.std() > 0 and y.std() > 0 else float("nan")
        pairs[f"{labels[i]} ~ {labels[j]}"] = rho
    finite = [v for v in pairs.values() if np.isfinite(v)]
    return {"pairs": pairs, "mean_correlation": float(np.mean(finite)) if finite else float("nan")}


class Ensemble(SignalModel):
    """Combines its members' scores on every bar: ``mean`` is the weighted average (in [-1, 1]), ``vote``
    the sign of the weighted sum of the members' signs (+1, 0 on a tie, -1). A row is NaN until every
    member has a score. Members are any installed rule-based signals, built through the registry.

    YAML::

        signal:
          type: ensemble
          params:
            method: mean
            max_correlation: 0.7
            members:
              - {type: sma_cross, params: {fast: 20, slow: 100}, weight: 2}
              - {type: momentum, params: {lookback: 126, skip: 0}}
              - {type: mean_reversion}
    """

    name = "ensemble"
    Params = EnsembleParams
    params: EnsembleParams

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.members = [build_signal(m, f"members.{i}") for i, m in enumerate(self.params.members)]
        self.fields = union_fields(self.members)
        self.last_diversity: dict[str, Any] | None = None
        self._warned = False

    @property
    def warmup(self) -> int:
        return max(int(m.warmup) for m in self.members)

    @property
    def history(self) -> int | None:
        """The longest history of the members (None if any needs the whole history)."""
        return longest_history([history_of(m) for m in self.members])

    def _labels(self) -> list[str]:
        names = [m.type for m in self.params.members]
        return [f"{n}#{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]

    def _scores(self, bars: Bars) -> list[pd.DataFrame]:
        close = bars.close
        return [m.compute(bars).reindex(index=close.index, columns=close.columns) for m in self.members]

    def diversity(self, bars: Bars) -> dict[str, Any]:
        """Pairwise prediction correlations of the members on ``bars`` and those above ``max_correlation``."""
        out = pairwise_correlation(self._scores(bars), self._labels())
        out["above_max"] = [k for k, v in out["pairs"].items() if np.isfinite(v) and v > self.params.max_correlation]
        return out

    def compute(self, bars: Bars) -> pd.DataFrame:
        scores = self._scores(bars)
        div = pairwise_correlation(scores, self._labels())
        high = {k: v for k, v in div["pairs"].items() if np.isfinite(v) and v > self.params.max_correlation}
        div["above_max"] = list(high)
        self.last_diversity = div
        if high and not self._warned:  # once per model: paper trading recomputes on every bar
            self._warned = True
            listed = ", ".join(f"{k} {v:.2f}" for k, v in high.items())
            warnings.warn(DiversityWarning(f"ensemble members predict alike (correlation above "
                                           f"{self.params.max_correlation}): {listed}"), stacklevel=2)
        w = np.array([m.weight for m in self.params.members])
        stack = np.stack([s.to_numpy(dtype=float) for s in scores])  # members x rows x symbols
        if self.params.method == "vote":
            stack = np.sign(stack)
        total = np.tensordot(w, stack, axes=1)  # NaN wherever any member is NaN
        combined = np.sign(total) if self.params.method == "vote" else total / w.sum()
        close = bars.close
        return pd.DataFrame(combined, index=close.index, columns=close.columns)
