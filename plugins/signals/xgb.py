"""An xgboost swing model: stationary features in, forward-return labels out, trained walk-forward.

The model is trainable (see the protocol in :mod:`qf.research.walk_forward`): a ``walk_forward:`` section fits
one model per fold on the fold's purged train window and predicts the test window, which is the only
part of each fold that trades. ``save`` writes each fitted model with its feature list, params and
training window; ``load`` / ``model_path`` bring a saved model back for a plain run or paper trading.
A model that was neither trained nor loaded refuses to predict: fitting silently on the data it is
asked to score would be look-ahead.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from qf.bars import Bars
from qf.components import Params as BaseParams
from qf.components import SignalModel
from qf.errors import QfError
from qf_plugins.signals.ml.features import GROUPS, FeatureConfig, HistoryFeatures, build_features
from qf_plugins.signals.ml.labels import CLASSES, class_ids, class_labels, forward_returns, labelled_rows
from qf_plugins.signals.ml.metrics import (
    calibration_table,
    classification_metrics,
    coverage_table,
    importance_table,
    mean_rank_ic,
    quantile_metrics,
)
from qf_plugins.signals.xgb_train import train as train_booster

if TYPE_CHECKING:
    import xgboost as xgb

FORMAT = "qf-xgboost/1"
MODEL_FILE = "model.json"
META_FILE = "meta.json"
FeatureGroup = Literal["returns", "volatility", "ma_zscore", "rsi", "drawdown", "volume", "rank", "relative"]
assert set(FeatureGroup.__args__) == set(GROUPS)  # type: ignore[attr-defined]

# params that only shape how predictions become scores or where the model comes from: they may differ
# between the run that trained a model and the run that loads it; every other param defines the model
RUNTIME_PARAMS = frozenset({"min_confidence", "top_n", "n_jobs", "model_path"})

_HOW_TO_TRAIN = (
    "train it in a walk_forward section (e.g. walk_forward: {train: 750, test: 125, purge: 5, embargo: 5}) "
    "or load a saved model with signal.params.model_path (e.g. reports/<experiment>/<run-id>/models/final); "
    "it never fits on the data it is asked to score"
)


def _xgb() -> Any:
    """xgboost, imported on first use: its import (scipy included) takes seconds, and every ``qf`` command
    loads the built-in plugins, most of them without ever training a model."""
    import xgboost

    return xgboost


@dataclass
class FittedModel:
    """A trained booster and everything needed to use it again: features, params, training window."""

    booster: xgb.Booster
    features: list[str]
    params: XGBoostSignal.Params
    window: dict[str, Any]
    label_counts: dict[str, int]
    majority: int
    loaded: bool = False  # read from disk rather than trained in this process

    @property
    def config(self) -> FeatureConfig:
        return feature_config(self.params)


def feature_config(p: XGBoostSignal.Params) -> FeatureConfig:
    """The feature settings of a params object."""
    return FeatureConfig(
        groups=tuple(dict.fromkeys(p.features)),
        return_horizons=tuple(p.return_horizons),
        vol_windows=tuple(p.vol_windows),
        ma_windows=tuple(p.ma_windows),
        rsi_windows=tuple(p.rsi_windows),
        drawdown_window=p.drawdown_window,
        volume_window=p.volume_window,
    )


class XGBoostSignal(SignalModel):
    """Gradient-boosted trees predicting the next ``horizon`` bars' move from stationary features.

    Features (see :mod:`qf_plugins.signals.ml.features`) use bars up to t only: returns over several
    horizons, volatility and its ratios, z-scores of price against moving averages, RSI, drawdown from
    the recent high, volume z-score when the data has volume, cross-sectional ranks of these, and
    strength relative to the universe average. Labels look ``horizon`` bars ahead and are used for
    training only.

    ``mode: classify`` (the swing set-up): a 3-class model of the forward return being above
    ``threshold`` (up), below ``-threshold_down`` (down) or in between; the score is
    ``P(up) - P(down)``. ``mode: quantile``: xgboost's ``reg:quantileerror`` predicts the ``quantiles``
    of the forward return; the score is the median in units of half the predicted spread
    (``2 * median / (q_high - q_low)``, clipped to [-1, 1]): a confident move scores high, a coin flip
    with a wide range scores near 0. In both modes scores with ``|score| < min_confidence`` become 0 and
    ``top_n`` keeps only the n highest scores of each date.

    Training: a ``walk_forward:`` section fits one model per fold on its purged train window (set
    ``purge`` and ``embargo`` to at least ``horizon``); inside ``fit`` the rows whose label would need
    bars past the window's end are dropped as well. Trees are built with ``tree_method: hist`` on
    ``n_jobs`` threads (a fixed count, so runs are reproducible) from ``seed``. Without a walk-forward
    section set ``model_path`` to a saved model (a run's ``models/final`` folder, or the run folder);
    with neither, ``compute`` raises an error instead of fitting in-sample.

    Warm-up: the longest feature window (126 bars with the defaults), counted from a symbol's first bar.

    YAML::

        signal:
          type: xgboost
          params:
            mode: classify          # or quantile
            horizon: 5              # label: the return over the next 5 bars ...
            threshold: 0.02         # ... above +2% is up, below -2% down
            features: [returns, volatility, ma_zscore, rsi, drawdown, volume, rank, relative]
            n_estimators: 200
            max_depth: 3
            learning_rate: 0.05
            subsample: 0.8
            colsample_bytree: 0.8
            min_confidence: 0.1     # |P(up) - P(down)| below this scores 0
            top_n: 5                # trade the 5 best scores of each date
            seed: 0
            n_jobs: 2
            model_path: null        # or reports/xgb_swing/<run-id>/models/final
    """

    name = "xgboost"
    fields: ClassVar[tuple[str, ...]] = ("close",)

    class Params(BaseParams):
        mode: Literal["classify", "quantile"] = Field("classify", description="3-class model or quantile regression")
        horizon: int = Field(5, ge=1, le=252, description="bars ahead the label looks")
        threshold: float = Field(0.02, gt=0, lt=1, description="forward return above this is 'up'")
        threshold_down: float | None = Field(
            None, gt=0, lt=1, description="forward return below minus this is 'down' (default: threshold)"
        )
        quantiles: tuple[float, ...] = Field((0.1, 0.5, 0.9), description="quantile levels (quantile mode)")
        features: tuple[FeatureGroup, ...] = Field(GROUPS, min_length=1, description="feature groups")  # type: ignore[assignment]
        return_horizons: tuple[int, ...] = Field((1, 5, 10, 21, 63), min_length=1)
        vol_windows: tuple[int, ...] = Field((5, 21, 63), min_length=1)
        ma_windows: tuple[int, ...] = Field((10, 21, 50), min_length=1)
        rsi_windows: tuple[int, ...] = Field((3, 14), min_length=1)
        drawdown_window: int = Field(126, ge=1)
        volume_window: int = Field(21, ge=2)
        n_estimators: int = Field(200, ge=1, le=10_000, description="boosting rounds")
        max_depth: int = Field(3, ge=1, le=16)
        learning_rate: float = Field(0.05, gt=0, le=1)
        subsample: float = Field(0.8, gt=0, le=1, description="share of rows per tree")
        colsample_bytree: float = Field(0.8, gt=0, le=1, description="share of features per tree")
        min_child_weight: float = Field(1.0, ge=0)
        reg_lambda: float = Field(1.0, ge=0, description="L2 penalty on leaf weights")
        reg_alpha: float = Field(0.0, ge=0, description="L1 penalty on leaf weights")
        gamma: float = Field(0.0, ge=0, description="minimum loss reduction to split")
        max_bin: int = Field(256, ge=2, le=4096)
        min_confidence: float = Field(0.0, ge=0, lt=1, description="|score| below this becomes 0")
        top_n: int | None = Field(None, ge=1, description="keep only the n highest scores per date")
        seed: int = Field(0, ge=0)
        n_jobs: int = Field(1, ge=1, le=256, description="xgboost threads (fixed, for reproducible trees)")
        model_path: str | None = Field(None, description="folder of a saved model to use instead of training")

        @model_validator(mode="after")
        def _consistent(self) -> XGBoostSignal.Params:
            q = self.quantiles
            if any(not 0 < a < 1 for a in q) or list(q) != sorted(set(q)):
                raise ValueError(f"quantiles must be strictly increasing levels in (0, 1), got {list(q)}")
            if 0.5 not in q or q[0] >= 0.5 or q[-1] <= 0.5:
                raise ValueError(f"quantiles must include 0.5 and a level on each side of it, got {list(q)}")
            try:
                feature_config(self)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
            return self

    params: Params

    def __init__(self, params: Params | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self._fitted: FittedModel | None = None
        self._base_dir: Path | None = None
        self._cache: tuple[Bars, FittedModel, pd.DataFrame] | None = None
        self._oos: pd.DataFrame | None = None
        self._warned_in_sample = False
        self._history: HistoryFeatures | None = None

    # -- configuration -------------------------------------------------------------------------------

    def resolve_paths(self, base_dir: str | Path) -> XGBoostSignal:
        """Remember the experiment file's folder: a relative ``model_path`` is also looked up there."""
        self._base_dir = Path(base_dir)
        return self

    @property
    def warmup(self) -> int:
        if self._fitted is None and self.params.model_path is not None:
            self._require_model()
        p = self._fitted.params if self._fitted is not None else self.params
        return feature_config(p).warmup

    @property
    def oos_predictions(self) -> pd.DataFrame | None:
        """The rows scored by the last :meth:`evaluate`: date, symbol, model outputs, score, realised
        forward return (and label in classify mode); None before any evaluation."""
        return self._oos

    @property
    def fitted(self) -> FittedModel | None:
        """The trained (or loaded) model, None before ``fit`` / loading."""
        return self._fitted

    def _xgb_params(self) -> dict[str, Any]:
        p = self.params
        out: dict[str, Any] = {
            "tree_method": "hist",
            "max_depth": p.max_depth,
            "eta": p.learning_rate,
            "subsample": p.subsample,
            "colsample_bytree": p.colsample_bytree,
            "min_child_weight": p.min_child_weight,
            "lambda": p.reg_lambda,
            "alpha": p.reg_alpha,
            "gamma": p.gamma,
            "max_bin": p.max_bin,
            "seed": p.seed,
            "nthread": p.n_jobs,
            "verbosity": 0,
            "validate_parameters": True,
        }
        if p.mode == "classify":
            out.update(objective="multi:softprob", num_class=len(CLASSES), eval_metric="mlogloss")
        else:
            out.update(objective="reg:quantileerror", quantile_alpha=np.asarray(p.quantiles, dtype=float))
        return out

    def share_history(self, bars: Bars, shared: dict[Any, Any]) -> XGBoostSignal:
        """Score prefixes of ``bars`` from one feature build kept in ``shared`` (one dict per run).

        The walk-forward runner calls this on every fold's model with the full data and the same dict:
        the first model builds the full history's features (see :class:`HistoryFeatures`), the others
        slice them, instead of rebuilding the features of a growing history on every fold. Scoring
        anything that is not a prefix of ``bars`` builds its features as before. Example::

            shared = {}
            for fold_model in models:
                fold_model.share_history(bars, shared)
        """
        cfg = feature_config(self.params)
        key = ("xgboost.features", id(bars), cfg)
        # setdefault: folds on several threads get the same object (its build is lazy and locked)
        history = shared.setdefault(key, HistoryFeatures(bars, cfg))
        if history.bars is not bars:  # an id reused by other data: never serve it
            history = shared[key] = HistoryFeatures(bars, cfg)
        self._history = history
        return self

    # -- training ------------------------------------------------------------------------------------

    def training_set(self, train_bars: Bars) -> tuple[pd.DataFrame, np.ndarray]:
        """Features and targets of the rows ``fit`` learns from, using ``train_bars`` only.

        The targets are class ids (classify) or forward returns (quantile). Rows in a symbol's warm-up,
        rows without a label and the last ``horizon`` rows of the window (their label needs bars after
        the window: in a walk-forward fold, bars of the purge gap or the test window) are dropped.
        """
        p = self.params
        feats = build_features(train_bars, feature_config(p))
        fwd = forward_returns(train_bars.close, p.horizon)
        target = fwd if p.mode == "quantile" else class_labels(fwd, p.threshold, p.threshold_down or p.threshold)
        y = _gather(target, feats.index)
        keep = labelled_rows(feats.index, train_bars.index, p.horizon) & np.isfinite(y)
        return feats.loc[keep], y[keep]

    def fit(self, train_bars: Bars) -> XGBoostSignal:
        """Train on ``train_bars`` (a walk-forward fold's purged train window) and keep the model."""
        p = self.params
        X, y = self.training_set(train_bars)
        window = {
            "start": _day(train_bars.index[0]) if len(train_bars.index) else None,
            "end": _day(train_bars.index[-1]) if len(train_bars.index) else None,
            "n_bars": len(train_bars.index),
            "first_labelled": _day(X.index.get_level_values(0).min()) if len(X) else None,
            "last_labelled": _day(X.index.get_level_values(0).max()) if len(X) else None,
            "n_rows": len(X),
            "symbols": train_bars.symbols,
        }
        if len(X) < 50:  # fewer rows than that cannot say anything, and usually mean a misconfiguration
            raise QfError(
                f"signal 'xgboost': only {len(X)} labelled rows in the train window "
                f"{window['start']}..{window['end']} ({window['n_bars']} bars); the features need "
                f"{feature_config(p).warmup} bars of warm-up per symbol and the labels {p.horizon} bars ahead: "
                "use a longer walk_forward.train"
            )
        if p.mode == "classify":
            ids = class_ids(y)
            counts = np.bincount(ids, minlength=len(CLASSES))
            if (counts > 0).sum() < 2:
                raise QfError(
                    f"signal 'xgboost': every label in the train window {window['start']}..{window['end']} is "
                    f"{CLASSES[int(np.argmax(counts))]}; lower threshold (now {p.threshold}) or use a longer window"
                )
            label_counts = {str(c): int(n) for c, n in zip(CLASSES, counts, strict=True)}
            majority = int(np.argmax(counts))
            target = ids
        else:
            label_counts = {"n": len(y)}
            majority = 1
            target = y
        xgb = _xgb()
        dtrain = xgb.DMatrix(X.to_numpy(dtype=np.float32), label=target, feature_names=list(X.columns),
                             nthread=p.n_jobs)
        booster = train_booster(self._xgb_params(), dtrain, p.n_estimators)  # = xgb.train's model, GIL-free rounds
        self._fitted = FittedModel(booster, list(X.columns), p, window, label_counts, majority)
        self._cache = None
        self._oos = None
        return self

    # -- prediction ----------------------------------------------------------------------------------

    def _require_model(self) -> FittedModel:
        if self._fitted is not None:
            return self._fitted
        if self.params.model_path is None:
            raise QfError(f"signal 'xgboost' has no trained model: {_HOW_TO_TRAIN}")
        fitted = read_model(self._model_dir(self.params.model_path), n_jobs=self.params.n_jobs)
        self._check_compatible(fitted.params)
        fitted.loaded = True
        self._fitted = fitted
        return fitted

    def _model_dir(self, model_path: str) -> Path:
        """The folder holding meta.json: the path as given (relative to the working directory, then to
        the experiment's folder), or its ``models/final`` when it is a run's report folder."""
        raw = Path(model_path).expanduser()
        candidates = [raw] if raw.is_absolute() else [raw, *([self._base_dir / raw] if self._base_dir else [])]
        for c in candidates:
            for d in (c, c / "models" / "final"):
                if (d / META_FILE).is_file():
                    return d
        looked = " or ".join(str(c) for c in candidates)
        raise QfError(
            f"signal 'xgboost': model_path {model_path!r}: no saved model there (looked for {META_FILE} in {looked} "
            "and its models/final); a walk-forward run saves them under reports/<experiment>/<run-id>/models/"
        )

    def _check_compatible(self, saved: XGBoostSignal.Params) -> None:
        """Params set in YAML must agree with the saved model's (features and labels define the model)."""
        mine = self.params.model_dump(mode="json")
        theirs = saved.model_dump(mode="json")
        clash = [f"{k}: {mine[k]!r} here, {theirs[k]!r} in the saved model"
                 for k in sorted(self.params.model_fields_set - RUNTIME_PARAMS) if mine[k] != theirs[k]]
        if clash:
            raise QfError(f"signal 'xgboost': model_path {self.params.model_path!r} was trained with other params ("
                          + "; ".join(clash) + "); remove them from signal.params or retrain")

    def _predictions(self, bars: Bars, fitted: FittedModel) -> pd.DataFrame:
        """Long frame (date, symbol) of the model's outputs and the score, for every warm row of ``bars``.

        Cached for the last ``bars`` object: a walk-forward fold calls ``compute`` and then ``evaluate``
        on the same history.
        """
        if self._cache is not None and self._cache[0] is bars and self._cache[1] is fitted:
            return self._cache[2]
        p = fitted.params
        feats = None
        if self._history is not None and self._history.cfg == fitted.config:
            feats = self._history.for_prefix(bars)
        if feats is None:
            feats = build_features(bars, fitted.config)
        missing = [f for f in fitted.features if f not in feats.columns]
        if missing:
            raise QfError(
                f"signal 'xgboost': the model was trained on features this data cannot provide ({', '.join(missing)}); "
                f"{bars.source} has fields {', '.join(bars.fields)}"
            )
        X = feats[fitted.features].to_numpy(dtype=np.float32)
        if p.mode == "classify":
            cols = ["p_down", "p_flat", "p_up"]
            raw = fitted.booster.inplace_predict(X) if len(X) else np.empty((0, 3))
            out = pd.DataFrame(np.asarray(raw, dtype=float).reshape(len(X), 3), index=feats.index, columns=cols)
            score = out["p_up"].to_numpy() - out["p_down"].to_numpy()
        else:
            cols = [f"q_{a:g}" for a in p.quantiles]
            raw = fitted.booster.inplace_predict(X) if len(X) else np.empty((0, len(cols)))
            # independent quantile trees can cross; sorting restores a valid quantile function
            q = np.sort(np.asarray(raw, dtype=float).reshape(len(X), len(cols)), axis=1)
            out = pd.DataFrame(q, index=feats.index, columns=cols)
            half_spread = np.maximum((q[:, -1] - q[:, 0]) / 2.0, 1e-12)
            score = q[:, list(p.quantiles).index(0.5)] / half_spread
        out["score"] = np.clip(score, -1.0, 1.0)
        self._cache = (bars, fitted, out)
        return out

    def compute(self, bars: Bars) -> pd.DataFrame:
        """Scores in [-1, 1] from the fitted (or loaded) model; row t uses the features of row t only."""
        fitted = self._require_model()
        if fitted.loaded:
            self._warn_in_sample(bars, fitted)
        pred = self._predictions(bars, fitted)
        score = pred["score"].to_numpy(copy=True)
        score[np.abs(score) < self.params.min_confidence] = 0.0
        wide = _scatter(score, pred.index, bars.close)
        if self.params.top_n is not None:
            best = wide.rank(axis=1, method="first", ascending=False) <= self.params.top_n
            wide = wide.where(best | wide.isna(), 0.0)
        return wide

    def features(self, bars: Bars) -> pd.DataFrame:
        """The feature matrix the model scores (:class:`qf.features.FeatureSource`, used by drift monitoring):
        the fitted or loaded model's feature columns, or every configured one before fitting."""
        fitted = self._fitted if self._fitted is not None or self.params.model_path is None else self._require_model()
        feats = build_features(bars, fitted.config if fitted is not None else feature_config(self.params))
        return feats[fitted.features] if fitted is not None else feats

    def forecast_bands(self, bars: Bars) -> dict[float, pd.DataFrame]:
        """Quantile mode: the predicted quantiles of the ``horizon``-bar forward return, one frame per level
        of ``quantiles`` shaped like ``bars.close``; row t from the features of row t (bars up to t), NaN in a
        symbol's warm-up. Crossed quantile trees are sorted per row, so the bands are ordered. This makes the
        model a :class:`qf.components.ForecastBands` (what ``quantile_kelly`` sizes from). Example::

            bands = model.forecast_bands(bars)
            width = bands[0.75] - bands[0.25]
        """
        fitted = self._require_model()
        p = fitted.params
        if p.mode != "quantile":
            raise QfError("signal 'xgboost': forecast bands need mode: quantile (a classify model predicts class "
                          "probabilities); set signal.params.mode: quantile, quantiles: [0.1, 0.25, 0.5, 0.75, 0.9]")
        pred = self._predictions(bars, fitted)
        return {float(a): _scatter(pred[f"q_{a:g}"].to_numpy(), pred.index, bars.close) for a in p.quantiles}

    def _warn_in_sample(self, bars: Bars, fitted: FittedModel) -> None:
        """Say (once) when a loaded model scores dates it was trained on: a backtest over them is
        in-sample. Walk-forward fold models are exempt: their runner trades only the test window."""
        start, end = fitted.window.get("start"), fitted.window.get("end")
        if self._warned_in_sample or start is None or end is None or not len(bars.index):
            return
        inside = (bars.index >= pd.Timestamp(start)) & (bars.index <= pd.Timestamp(end))
        if inside.any():
            self._warned_in_sample = True
            warnings.warn(
                f"signal 'xgboost': the loaded model was trained on {start}..{end}; its scores on the "
                f"{int(inside.sum())} bars of this data inside that window are in-sample (harmless as a trailing "
                "window for paper trading, optimistic as a backtest)",
                UserWarning,
                stacklevel=3,
            )

    # -- evaluation, persistence, reports -------------------------------------------------------------

    def evaluate(self, bars: Bars, test: slice) -> dict[str, float]:
        """Out-of-sample metrics of the rows of ``bars`` in ``test`` (positions) whose label is known.

        ``bars`` is the history up to the end of the test window, so a test row whose horizon runs past
        the window has no label and is not scored. Classify: accuracy (and the majority-class accuracy
        it must beat), log loss, AUC of P(up) and P(down). Quantile: pinball loss per level, interval
        coverage, sign accuracy and AUC of the median. Both: ``hit_rate`` (share of rows where the score's
        sign matches the move's, chance 0.5) and ``ic`` (mean daily rank correlation of score and move).
        """
        fitted = self._require_model()
        p = fitted.params
        pred = self._predictions(bars, fitted)
        fwd = _gather(forward_returns(bars.close, p.horizon), pred.index)
        dates = pred.index.get_level_values(0)
        in_test = np.asarray(dates.isin(bars.index[test])) & np.isfinite(fwd)
        oos = pred.loc[in_test].copy()
        oos["fwd_return"] = fwd[in_test]
        if p.mode == "classify":
            labels = class_labels(oos[["fwd_return"]], p.threshold, p.threshold_down or p.threshold)
            oos["label"] = labels["fwd_return"].to_numpy()
            metrics = classification_metrics(class_ids(oos["label"].to_numpy()),
                                             oos[["p_down", "p_flat", "p_up"]].to_numpy(), fitted.majority)
        else:
            metrics = quantile_metrics(oos["fwd_return"].to_numpy(), oos[[f"q_{a:g}" for a in p.quantiles]].to_numpy(),
                                       p.quantiles)
        # the trading view of skill: does the sign of the score call the sign of the move (chance: 0.5)?
        called = (oos["score"].to_numpy() != 0) & (oos["fwd_return"].to_numpy() != 0)
        metrics["hit_rate"] = (float(np.mean(np.sign(oos["score"].to_numpy()[called])
                                             == np.sign(oos["fwd_return"].to_numpy()[called])))
                               if called.any() else float("nan"))
        metrics["ic"] = mean_rank_ic(oos.index.get_level_values(0).to_numpy(), oos["score"].to_numpy(),
                                     oos["fwd_return"].to_numpy())
        oos["train_end"] = fitted.window["end"]
        self._oos = oos.reset_index()
        self._cache = None  # the fold is done: do not keep a whole history's predictions per fold
        return metrics

    def save(self, directory: str | Path) -> Path:
        """Write the fitted model: ``model.json`` (xgboost's own format) and ``meta.json`` (format, feature
        list, every param, the training window, label counts, versions). Returns the folder."""
        fitted = self._require_model()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        fitted.booster.save_model(str(d / MODEL_FILE))
        meta = {
            "format": FORMAT,
            "model": self.name,
            "mode": fitted.params.mode,
            "features": fitted.features,
            "params": fitted.params.model_dump(mode="json"),
            "xgboost_params": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                               for k, v in XGBoostSignal(fitted.params)._xgb_params().items()},
            "train_window": fitted.window,
            "label_counts": fitted.label_counts,
            "majority_class": CLASSES[fitted.majority] if fitted.params.mode == "classify" else None,
            "classes": list(CLASSES) if fitted.params.mode == "classify" else None,
            "quantiles": list(fitted.params.quantiles) if fitted.params.mode == "quantile" else None,
            "versions": {"xgboost": _xgb().__version__, "numpy": np.__version__, "pandas": pd.__version__},
        }
        (d / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path, **runtime: Any) -> XGBoostSignal:
        """A model ready to ``compute``, read from a folder written by :meth:`save`.

        ``runtime`` may set the params that do not change the model (``min_confidence``, ``top_n``,
        ``n_jobs``). Example::

            model = XGBoostSignal.load("reports/xgb_swing/20240102-120000/models/final", top_n=5)
            signal = model.compute(bars)
        """
        _check_runtime(runtime, "XGBoostSignal.load")
        fitted = read_model(Path(directory), n_jobs=runtime.get("n_jobs", 1))
        fitted.loaded = True
        return cls._around(fitted, {**runtime, "model_path": str(directory)})

    def with_runtime(self, **runtime: Any) -> XGBoostSignal:
        """The same fitted model with other score-shaping params (``min_confidence``, ``top_n``,
        ``n_jobs``). Example: ``model.with_runtime(top_n=3).compute(bars)``."""
        _check_runtime(runtime, "with_runtime")
        return self._around(self._require_model(), {"model_path": self.params.model_path, **runtime})

    @classmethod
    def _around(cls, fitted: FittedModel, runtime: dict[str, Any]) -> XGBoostSignal:
        model = cls({**fitted.params.model_dump(), **runtime})
        model._fitted = fitted
        return model

    @classmethod
    def summarize(cls, fitted: list[XGBoostSignal], directory: str | Path) -> None:
        """Cross-fold tables in a walk-forward report folder.

        - ``importances.csv``: each fold's share of total split gain per feature, their mean, std and rank;
        - ``calibration.csv``: classify, predicted P(up) / P(down) in 10 bins against the realised frequency
          of up / down moves; quantile, each level against the share of returns at or below it;
        - ``oos_predictions.parquet``: every out-of-sample prediction with its realised forward return.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        models = [m for m in fitted if m.fitted is not None]
        if not models:
            return
        gains = []
        for m in models:
            assert m.fitted is not None
            g = m.fitted.booster.get_score(importance_type="total_gain")
            gains.append({f: float(g.get(f, 0.0)) for f in m.fitted.features})
        importance_table(gains, [f"fold_{k}" for k in range(len(models))]).to_csv(d / "importances.csv")
        oos = [m._oos.assign(fold=k) for k, m in enumerate(models) if m._oos is not None and len(m._oos)]
        if not oos:
            return
        all_oos = pd.concat(oos, ignore_index=True)
        all_oos.to_parquet(d / "oos_predictions.parquet", index=False)
        p = models[0].fitted.params  # type: ignore[union-attr]
        table = calibration_table(all_oos) if p.mode == "classify" else coverage_table(all_oos, p.quantiles)
        table.to_csv(d / "calibration.csv", index=False)


def read_model(directory: Path, n_jobs: int = 1) -> FittedModel:
    """Read a model folder written by :meth:`XGBoostSignal.save`."""
    meta_path = directory / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QfError(f"{meta_path}: no saved xgboost model here") from None
    except json.JSONDecodeError as exc:
        raise QfError(f"{meta_path}: not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT:
        raise QfError(f"{meta_path}: format {meta.get('format')!r} is not {FORMAT!r}")
    xgb = _xgb()
    booster = xgb.Booster()
    try:
        booster.load_model(str(directory / MODEL_FILE))
    except xgb.core.XGBoostError as exc:
        raise QfError(f"{directory / MODEL_FILE}: cannot load the xgboost model ({str(exc).splitlines()[0]})") from None
    booster.set_param({"nthread": n_jobs})
    params = XGBoostSignal.Params(**meta["params"])
    majority = CLASSES.index(meta["majority_class"]) if meta.get("majority_class") is not None else 1
    return FittedModel(booster, list(meta["features"]), params, meta["train_window"], meta["label_counts"], majority)


def _check_runtime(runtime: dict[str, Any], who: str) -> None:
    bad = set(runtime) - RUNTIME_PARAMS
    if bad:
        raise QfError(f"{who}: {sorted(bad)} define the model and come from the saved file; only "
                      f"{sorted(RUNTIME_PARAMS - {'model_path'})} can change")


def load(directory: str | Path, **runtime: Any) -> XGBoostSignal:
    """Shortcut for :meth:`XGBoostSignal.load`."""
    return XGBoostSignal.load(directory, **runtime)


def _day(ts: Any) -> str:
    ts = pd.Timestamp(ts)
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()


def _gather(wide: pd.DataFrame, index: pd.MultiIndex) -> np.ndarray:
    """Values of a wide (date x symbol) frame at the rows of a long (date, symbol) index."""
    rows = wide.index.get_indexer(index.get_level_values(0))
    cols = wide.columns.get_indexer(index.get_level_values(1))
    if (rows < 0).any() or (cols < 0).any():
        raise ValueError("long index has dates or symbols the wide frame does not have")
    return wide.to_numpy(dtype=float)[rows, cols]


def _scatter(values: np.ndarray, index: pd.MultiIndex, like: pd.DataFrame) -> pd.DataFrame:
    """A wide frame shaped like ``like`` holding ``values`` at the long ``index`` rows, NaN elsewhere."""
    out = np.full(like.shape, np.nan)
    rows = like.index.get_indexer(index.get_level_values(0))
    cols = like.columns.get_indexer(index.get_level_values(1))
    out[rows, cols] = values
    return pd.DataFrame(out, index=like.index, columns=like.columns)
