"""Meta-labeling: a secondary xgboost classifier deciding whether to act on a primary signal's entries.

The primary signal (any configured rule-based signal) says *which side*; the meta model says *whether to
take the trade* (López de Prado, *Advances in Financial Machine Learning*, ch. 3.6). An **entry** is a bar
where the primary's side (the sign of its score) becomes non-zero or flips; the trade it opens is held
while the side stays the same. The meta model is trained on the entries of its training window only:

- label: was the primary's trade profitable over ``horizon`` bars? ``side * (close[t + h] / close[t] - 1)
  > min_return`` (1) or not (0). The last ``horizon`` bars of the window have no label inside it and are
  dropped (in a walk-forward fold their label would need purge-gap or test bars);
- features: the xgboost swing model's stationary features of row t (:mod:`qf_plugins.signals.ml.features`,
  bars up to t only) plus the primary's score and side at t.

At prediction time every entry gets ``P(profitable)`` from the features of its own bar; the trade is taken
(the primary's score passes through, for the whole trade) when ``P >= threshold``, skipped (0) otherwise;
with ``size_by_probability`` the primary's score is scaled by ``P`` instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import SignalModel
from qf.errors import QfError
from qf_plugins.signals._compose import SubSignal, build_signal, union_fields
from qf_plugins.signals.ml.features import GROUPS, FeatureConfig, build_features
from qf_plugins.signals.ml.labels import forward_returns, labelled_rows
from qf_plugins.signals.ml.metrics import roc_auc
from qf_plugins.signals.xgb import FeatureGroup, _gather, _xgb
from qf_plugins.signals.xgb_train import train as train_booster

FORMAT = "qf-meta-label/1"
EXTRA_FEATURES = ("primary_score", "primary_side")


def _default_primary() -> SubSignal:
    return SubSignal(type="sma_cross", params={"fast": 5, "slow": 20})


def entries_and_sides(primary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(entry mask, side) arrays shaped like ``primary``: side = sign of the score (0 for NaN); an entry is a
    bar whose side is non-zero and differs from the bar before (the first bar counts from side 0).

    Example::

        entries_and_sides(pd.DataFrame({"A": [np.nan, 0.3, 0.5, -0.2, 0.0, 0.1]}))[0][:, 0]
        # [False, True, False, True, False, True]
    """
    side = np.sign(np.nan_to_num(primary.to_numpy(dtype=float), nan=0.0))
    before = np.vstack([np.zeros((1, side.shape[1])), side[:-1]])
    return (side != 0) & (side != before), side


@dataclass
class FittedMeta:
    """The trained meta classifier, its feature list and training window."""

    booster: Any
    features: list[str]
    window: dict[str, Any]
    counts: dict[str, int]


class MetaLabelParams(BaseParams):
    primary: SubSignal = Field(default_factory=_default_primary, description="the signal whose entries are judged")
    horizon: int = Field(5, ge=1, le=252, description="bars a trade is judged over (the label's look-ahead)")
    min_return: float = Field(0.0, ge=-0.5, lt=1, description="a trade is 'profitable' above this return")
    threshold: float = Field(0.5, gt=0, lt=1, description="take an entry when P(profitable) >= this")
    size_by_probability: bool = Field(False, description="scale the primary's score by P instead of gating it")
    features: tuple[FeatureGroup, ...] = Field(GROUPS, min_length=1, description="feature groups")  # type: ignore[assignment]
    return_horizons: tuple[int, ...] = Field((1, 5, 10, 21, 63), min_length=1)
    vol_windows: tuple[int, ...] = Field((5, 21, 63), min_length=1)
    ma_windows: tuple[int, ...] = Field((10, 21, 50), min_length=1)
    rsi_windows: tuple[int, ...] = Field((3, 14), min_length=1)
    drawdown_window: int = Field(126, ge=1)
    volume_window: int = Field(21, ge=2)
    min_events: int = Field(20, ge=10, description="fewest labelled entries a train window must hold")
    n_estimators: int = Field(100, ge=1, le=10_000)
    max_depth: int = Field(3, ge=1, le=16)
    learning_rate: float = Field(0.05, gt=0, le=1)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    min_child_weight: float = Field(1.0, ge=0)
    reg_lambda: float = Field(1.0, ge=0)
    seed: int = Field(0, ge=0)
    n_jobs: int = Field(1, ge=1, le=256, description="xgboost threads (fixed, for reproducible trees)")

    @field_validator("primary")
    @classmethod
    def _buildable(cls, v: SubSignal) -> SubSignal:
        build_signal(v, "primary")  # unknown type, bad params or a trainable primary: a validation error here
        return v

    @model_validator(mode="after")
    def _features(self) -> MetaLabelParams:
        self.feature_config()  # ValueError (bad windows) reported at signal.params
        return self

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(groups=tuple(dict.fromkeys(self.features)), return_horizons=tuple(self.return_horizons),
                             vol_windows=tuple(self.vol_windows), ma_windows=tuple(self.ma_windows),
                             rsi_windows=tuple(self.rsi_windows), drawdown_window=self.drawdown_window,
                             volume_window=self.volume_window)


class MetaLabel(SignalModel):
    """The primary signal's trades, filtered (or sized) by a secondary xgboost classifier of their success.

    Trainable: a ``walk_forward:`` section fits the classifier on each fold's purged train window (set
    ``purge`` and ``embargo`` to at least ``horizon``) and the fold trades its test window; a model that was
    not trained refuses to score (fitting on the data it scores would be look-ahead). The primary must be
    rule-based (a composite fits only itself). The output is the primary's score on the bars of accepted
    trades, 0 on skipped ones, NaN where the primary has none. ``warmup`` is the longer of the primary's and
    the features' (126 bars by default); the holding state makes the live history the whole history.

    Reports: ``folds.csv`` gets each fold's out-of-sample ``entries``, ``base_rate`` (share of the primary's
    entries that were profitable: its precision), ``accepted`` (share taken), ``precision`` (profitable share
    of the taken ones; the filter helps when it beats ``base_rate``), ``auc``, and the mean trade return of
    all entries vs the taken ones; ``meta_oos.parquet`` holds every out-of-sample entry.

    YAML::

        signal:
          type: meta_label
          params:
            primary: {type: sma_cross, params: {fast: 5, slow: 20}}
            horizon: 5              # a trade is judged on its return over 5 bars ...
            min_return: 0.0         # ... profitable above 0
            threshold: 0.5          # take entries with P(profitable) >= 0.5
            features: [returns, volatility, ma_zscore, rsi, drawdown, rank, relative]
            n_estimators: 100
            max_depth: 3
            seed: 0
    """

    name = "meta_label"
    Params = MetaLabelParams
    params: MetaLabelParams

    def __init__(self, params: MetaLabelParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.primary = build_signal(self.params.primary, "primary")
        self.cfg = self.params.feature_config()
        self.fields = union_fields([self.primary])
        self._fitted: FittedMeta | None = None
        self._oos: pd.DataFrame | None = None

    @property
    def warmup(self) -> int:
        return max(int(self.primary.warmup), self.cfg.warmup)

    @property
    def history(self) -> int | None:
        """None: path-dependent, a trade's decision is taken at its entry bar, however long ago."""
        return None

    @property
    def fitted(self) -> FittedMeta | None:
        return self._fitted

    # -- data ----------------------------------------------------------------------------------------

    def events(self, bars: Bars) -> pd.DataFrame:
        """The primary's entries in ``bars`` with their features (long ``(date, symbol)`` rows, warm rows only),
        ``primary_score``/``primary_side`` and the forward return over ``horizon`` (NaN past the data)."""
        close = bars.close
        primary = self.primary.compute(bars).reindex(index=close.index, columns=close.columns)
        entry, side = entries_and_sides(primary)
        feats = build_features(bars, self.cfg)
        rows = close.index.get_indexer(feats.index.get_level_values(0))
        cols = close.columns.get_indexer(feats.index.get_level_values(1))
        is_entry = entry[rows, cols]
        out = feats.loc[is_entry].copy()
        out["primary_score"] = primary.to_numpy(dtype=float)[rows, cols][is_entry]
        out["primary_side"] = side[rows, cols][is_entry]
        out["fwd_return"] = _gather(forward_returns(close, self.params.horizon), out.index)
        return out

    def _xgb_params(self) -> dict[str, Any]:
        p = self.params
        return {"tree_method": "hist", "objective": "binary:logistic", "eval_metric": "logloss",
                "max_depth": p.max_depth, "eta": p.learning_rate, "subsample": p.subsample,
                "colsample_bytree": p.colsample_bytree, "min_child_weight": p.min_child_weight,
                "lambda": p.reg_lambda, "seed": p.seed, "nthread": p.n_jobs, "verbosity": 0}

    # -- training ------------------------------------------------------------------------------------

    def fit(self, train_bars: Bars) -> MetaLabel:
        """Train the meta classifier on the primary's labelled entries inside ``train_bars`` only."""
        p = self.params
        ev = self.events(train_bars)
        keep = labelled_rows(ev.index, train_bars.index, p.horizon) & np.isfinite(ev["fwd_return"].to_numpy())
        ev = ev.loc[keep]
        y = (ev["primary_side"].to_numpy() * ev["fwd_return"].to_numpy() > p.min_return).astype(np.int32)
        start, end = (str(train_bars.index[i].date()) if len(train_bars.index) else None for i in (0, -1))
        if len(ev) < p.min_events or y.min(initial=1) == y.max(initial=0):
            raise QfError(
                f"signal 'meta_label': the primary {p.primary.type!r} has {len(ev)} labelled entries in the train "
                f"window {start}..{end} ({int(y.sum())} profitable); the meta model needs at least {p.min_events} "
                "with both outcomes: use a longer walk_forward.train or a primary that trades more often"
            )
        names = [c for c in ev.columns if c != "fwd_return"]
        xgb = _xgb()
        dtrain = xgb.DMatrix(ev[names].to_numpy(dtype=np.float32), label=y, feature_names=names, nthread=p.n_jobs)
        booster = train_booster(self._xgb_params(), dtrain, p.n_estimators)  # = xgb.train's model
        window = {"start": start, "end": end, "n_bars": len(train_bars.index), "n_events": len(ev),
                  "last_labelled": str(ev.index.get_level_values(0).max().date())}
        self._fitted = FittedMeta(booster, names, window, {"profitable": int(y.sum()), "not": int(len(y) - y.sum())})
        self._oos = None
        return self

    def _require(self) -> FittedMeta:
        if self._fitted is None:
            raise QfError("signal 'meta_label' has no trained model: train it in a walk_forward section "
                          "(e.g. walk_forward: {train: 750, test: 125, purge: 5, embargo: 5}); it never fits on "
                          "the data it is asked to score")
        return self._fitted

    def _probabilities(self, ev: pd.DataFrame, fitted: FittedMeta) -> np.ndarray:
        if not len(ev):
            return np.empty(0)
        return np.asarray(fitted.booster.inplace_predict(ev[fitted.features].to_numpy(dtype=np.float32)), dtype=float)

    # -- scoring -------------------------------------------------------------------------------------

    def compute(self, bars: Bars) -> pd.DataFrame:
        """The primary's score on accepted trades (or scaled by P), 0 on skipped ones; row t uses bars <= t."""
        fitted = self._require()
        close = bars.close
        primary = self.primary.compute(bars).reindex(index=close.index, columns=close.columns)
        entry, side = entries_and_sides(primary)
        ev = self.events(bars)
        prob = self._probabilities(ev, fitted)
        take = prob if self.params.size_by_probability else (prob >= self.params.threshold).astype(float)
        decision = np.full(close.shape, np.nan)
        decision[entry] = 0.0  # an entry without features (warm-up) is not taken
        decision[close.index.get_indexer(ev.index.get_level_values(0)),
                 close.columns.get_indexer(ev.index.get_level_values(1))] = take
        # a trade's decision holds until the side changes (the next entry brings its own decision)
        held = pd.DataFrame(decision, index=close.index, columns=close.columns).ffill().to_numpy(copy=True)
        held[side == 0] = 0.0
        out = primary.to_numpy(dtype=float) * np.nan_to_num(held, nan=0.0)
        return pd.DataFrame(np.clip(out, -1.0, 1.0), index=close.index, columns=close.columns)

    def evaluate(self, bars: Bars, test: slice) -> dict[str, float]:
        """Out-of-sample quality of the filter on the entries inside ``bars.index[test]`` with a known outcome."""
        fitted = self._require()
        p = self.params
        ev = self.events(bars)
        in_test = np.asarray(ev.index.get_level_values(0).isin(bars.index[test])) & np.isfinite(ev["fwd_return"])
        ev = ev.loc[in_test]
        prob = self._probabilities(ev, fitted)
        ret = ev["primary_side"].to_numpy() * ev["fwd_return"].to_numpy()
        y = (ret > p.min_return).astype(int)
        taken = prob >= p.threshold
        nan = float("nan")
        metrics = {
            "entries": float(len(ev)),
            "base_rate": float(y.mean()) if len(y) else nan,
            "accepted": float(taken.mean()) if len(y) else nan,
            "precision": float(y[taken].mean()) if taken.any() else nan,
            "accuracy": float(((prob >= 0.5) == y.astype(bool)).mean()) if len(y) else nan,
            "auc": roc_auc(y, prob) if len(y) else nan,
            "mean_return_all": float(ret.mean()) if len(y) else nan,
            "mean_return_taken": float(ret[taken].mean()) if taken.any() else nan,
        }
        oos = ev[["primary_score", "primary_side", "fwd_return"]].assign(probability=prob, taken=taken, profitable=y)
        self._oos = oos.assign(train_end=fitted.window["end"]).reset_index()
        return metrics

    def save(self, directory: str | Path) -> Path:
        """``model.json`` (xgboost's format) and ``meta.json`` (format, features, params, training window)."""
        fitted = self._require()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        fitted.booster.save_model(str(d / "model.json"))
        meta = {"format": FORMAT, "model": self.name, "features": fitted.features,
                "params": self.params.model_dump(mode="json"), "train_window": fitted.window,
                "label_counts": fitted.counts, "versions": {"xgboost": _xgb().__version__}}
        (d / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return d

    @classmethod
    def summarize(cls, fitted: list[MetaLabel], directory: str | Path) -> None:
        """``meta_oos.parquet``: every fold's out-of-sample entries with P(profitable), taken and outcome."""
        parts = [m._oos.assign(fold=k) for k, m in enumerate(fitted) if m._oos is not None and len(m._oos)]
        if parts:
            Path(directory).mkdir(parents=True, exist_ok=True)
            pd.concat(parts, ignore_index=True).to_parquet(Path(directory) / "meta_oos.parquet", index=False)
