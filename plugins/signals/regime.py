"""Market regimes from past data only, and a signal that switches (or gates, or scales) other signals by regime.

``regime`` labels every bar of every symbol:

* ``kind: volatility`` -- realised volatility (std of log returns over ``vol_window`` bars) compared with
  its own terciles **fitted on the past only**: the 1/3 and 2/3 quantiles of every realised-vol value of
  that symbol up to and including the bar (an expanding window, at least ``min_history`` values). At or
  below the lower tercile is ``low``, above the upper one ``high``, otherwise ``mid``.
* ``kind: trend`` -- the close above its ``trend_window``-bar simple moving average is ``up``, else ``down``.

Nothing about a bar's label depends on later bars, so a label never changes when more data arrives
(``tests/plugins/signals/test_regime.py`` truncates the data to check it).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import SignalModel, history_of
from qf_plugins.signals._compose import SubSignal, build_signal, longest_history, union_fields

LABELS: dict[str, tuple[str, ...]] = {"volatility": ("low", "mid", "high"), "trend": ("down", "up")}
# the score regime emits for each label: calm and rising markets are the favourable ones
SCORES: dict[str, tuple[float, ...]] = {"volatility": (1.0, 0.0, -1.0), "trend": (-1.0, 1.0)}


class RegimeParams(BaseParams):
    kind: Literal["volatility", "trend"] = Field("volatility", description="volatility terciles or trend")
    vol_window: int = Field(20, ge=2, description="bars of log returns in each realised-volatility value")
    min_history: int = Field(252, ge=3, description="realised-vol values needed before terciles are fitted")
    trend_window: int = Field(200, ge=2, description="moving-average length of the trend regime")


def regime_codes(close: pd.DataFrame, p: RegimeParams) -> pd.DataFrame:
    """Index into ``LABELS[p.kind]`` of each bar's regime (0, 1, 2 as floats), NaN while unknown.

    Example::

        codes = regime_codes(bars.close, RegimeParams(kind="volatility", vol_window=20, min_history=252))
        codes.iloc[-1]   # 0.0 low, 1.0 mid, 2.0 high
    """
    if p.kind == "trend":
        sma = close.rolling(p.trend_window, min_periods=p.trend_window).mean()
        return (close > sma).astype(float).where(sma.notna() & close.notna())
    rv = np.log(close).diff().rolling(p.vol_window, min_periods=p.vol_window).std()
    past = rv.expanding(min_periods=p.min_history)  # expanding = this bar and every earlier one, never later
    lo, hi = past.quantile(1 / 3), past.quantile(2 / 3)
    codes = pd.DataFrame(np.where(rv <= lo, 0.0, np.where(rv > hi, 2.0, 1.0)), index=close.index,
                         columns=close.columns)
    return codes.where(lo.notna() & rv.notna())


def _regime_history(p: RegimeParams) -> int | None:
    # the volatility terciles are fitted on every earlier value: the whole history (None), not a window
    return p.trend_window if p.kind == "trend" else None


def _regime_warmup(p: RegimeParams) -> int:
    # rows before the first label: the SMA needs trend_window closes; the terciles need min_history
    # realised-vol values, the first of which needs vol_window returns (vol_window + 1 closes)
    return p.trend_window - 1 if p.kind == "trend" else p.vol_window + p.min_history - 1


class Regime(SignalModel):
    """The regime of each symbol as a score: ``volatility`` gives +1 low, 0 mid, -1 high volatility;
    ``trend`` gives +1 up, -1 down. NaN until enough history (see the module docstring for the rules).

    Used alone it is a filter (long only in calm or rising markets); ``regime_switch`` uses the same
    labels to choose among other signals.

    YAML::

        signal:
          type: regime
          params: {kind: volatility, vol_window: 20, min_history: 252}
    """

    name = "regime"
    Params = RegimeParams
    params: RegimeParams

    @property
    def warmup(self) -> int:
        return _regime_warmup(self.params)

    @property
    def history(self) -> int | None:
        """Trailing bars a live decision needs: the SMA's window (trend); everything (volatility)."""
        return _regime_history(self.params)

    def compute(self, bars: Bars) -> pd.DataFrame:
        codes = regime_codes(bars.close, self.params)
        scores = np.asarray(SCORES[self.params.kind])
        values = codes.to_numpy()
        out = np.full(values.shape, np.nan)
        known = ~np.isnan(values)
        out[known] = scores[values[known].astype(int)]
        return pd.DataFrame(out, index=codes.index, columns=codes.columns)


class Branch(SubSignal):
    """One regime's signal: ``{type, params, scale}``; the signal's score is multiplied by ``scale``."""

    scale: float = Field(1.0, ge=-1.0, le=1.0, description="multiplier of the branch's score (0 gates it off)")


def _default_regimes() -> dict[str, Branch]:
    trend = {"type": "sma_cross", "params": {"fast": 20, "slow": 100}}
    return {"low": Branch(**trend), "mid": Branch(**trend, scale=0.5),
            "high": Branch(type="constant", params={"value": 0.0})}


class RegimeSwitchParams(BaseParams):
    regime: RegimeParams = Field(default_factory=RegimeParams, description="params of the regime labels")
    regimes: dict[str, Branch] = Field(default_factory=_default_regimes,
                                       description="the signal for each regime label; unlisted labels are flat")

    @field_validator("regimes")
    @classmethod
    def _build_branches(cls, v: dict[str, Branch]) -> dict[str, Branch]:
        if not v:
            raise ValueError("list at least one regime")
        for label, branch in v.items():
            build_signal(branch, f"regimes.{label}")  # fails here (qf validate) rather than at run time
        return v

    @model_validator(mode="after")
    def _known_labels(self) -> RegimeSwitchParams:
        labels = LABELS[self.regime.kind]
        unknown = [k for k in self.regimes if k not in labels]
        if unknown:
            raise ValueError(f"regimes: {', '.join(map(repr, unknown))} is not a {self.regime.kind} regime; "
                             f"use {', '.join(labels)}")
        return self


class RegimeSwitch(SignalModel):
    """Each bar takes the score of the signal configured for that bar's regime (times its ``scale``).

    Regimes come from ``regime`` (past data only); a regime without a branch is flat (0), a bar whose regime
    is not known yet is NaN. Branches are any installed, rule-based signals, built through the registry.

    YAML::

        signal:
          type: regime_switch
          params:
            regime: {kind: volatility, vol_window: 20, min_history: 252}
            regimes:
              low:  {type: momentum, params: {lookback: 126, skip: 0}}
              mid:  {type: sma_cross, params: {fast: 20, slow: 100}, scale: 0.5}
              high: {type: mean_reversion}
    """

    name = "regime_switch"
    Params = RegimeSwitchParams
    params: RegimeSwitchParams

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.branches = {label: build_signal(b, f"regimes.{label}") for label, b in self.params.regimes.items()}
        self.fields = union_fields(list(self.branches.values()))

    @property
    def warmup(self) -> int:
        return max([_regime_warmup(self.params.regime), *(int(m.warmup) for m in self.branches.values())])

    @property
    def history(self) -> int | None:
        """The longest history of the regime and the branches (None if any needs everything)."""
        return longest_history([_regime_history(self.params.regime), *map(history_of, self.branches.values())])

    def compute(self, bars: Bars) -> pd.DataFrame:
        codes = regime_codes(bars.close, self.params.regime)
        out = pd.DataFrame(0.0, index=codes.index, columns=codes.columns)
        for i, label in enumerate(LABELS[self.params.regime.kind]):
            branch = self.branches.get(label)
            if branch is None:
                continue
            scores = branch.compute(bars).reindex(index=codes.index, columns=codes.columns)
            out = out.mask(codes == i, scores * self.params.regimes[label].scale)
        return out.where(codes.notna())
