"""Out-of-sample metrics, calibration tables and feature importances of ML signal models.

All functions take plain arrays or long frames of out-of-sample predictions (one row per date and
symbol), so they can be checked by hand and reused by other model plugins.

Example::

    m = classification_metrics(y, proba, train_majority=1)
    m["accuracy"], m["log_loss"], m["auc"]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "calibration_table",
    "classification_metrics",
    "coverage_table",
    "importance_table",
    "mean_rank_ic",
    "multiclass_log_loss",
    "pinball_loss",
    "quantile_metrics",
    "roc_auc",
]


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney: the chance a random positive outscores a random negative, ties count half);
    NaN when only one class is present, where it is undefined. Computed here rather than imported from
    scikit-learn, whose import alone takes seconds on every ``qf`` command."""
    y_true = np.asarray(y_true, dtype=bool)
    n_pos = int(y_true.sum())
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(np.asarray(score, dtype=float)).rank(method="average").to_numpy()
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def multiclass_log_loss(y: np.ndarray, proba: np.ndarray, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of the realised class ids ``y`` under ``proba`` (rows renormalised,
    probabilities clipped to [eps, 1 - eps] as scikit-learn does)."""
    p = np.clip(np.asarray(proba, dtype=float), eps, 1 - eps)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(y)), np.asarray(y, dtype=np.int64)])))


def mean_rank_ic(dates: np.ndarray, score: np.ndarray, realised: np.ndarray) -> float:
    """Mean over dates of the Spearman correlation between score and realised forward return.

    The information coefficient a cross-sectional strategy cares about: does a higher score on a date
    go with a higher return across the symbols of that date? Dates with fewer than 3 symbols or with no
    dispersion in either series are skipped; NaN when no date qualifies.
    """
    frame = pd.DataFrame({"d": dates, "s": score, "r": realised}).dropna()
    if frame.empty:
        return float("nan")
    ranks = frame.groupby("d")[["s", "r"]].rank()
    # the dates' rows as slices of arrays sorted by date (stable: each date keeps its row order, as groupby
    # iterates them): a loop over numpy slices, not over the sub-frames of a groupby (~85 ms per fold)
    d = frame["d"].to_numpy()
    order = np.argsort(d, kind="stable")
    d, s_all, r_all = d[order], ranks["s"].to_numpy()[order], ranks["r"].to_numpy()[order]
    bounds = np.flatnonzero(d[1:] != d[:-1]) + 1
    ics = []
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(d)], strict=True):
        if hi - lo < 3:
            continue
        s, r = s_all[lo:hi], r_all[lo:hi]
        if s.std() == 0 or r.std() == 0:
            continue
        ics.append(float(np.corrcoef(s, r)[0, 1]))
    return float(np.mean(ics)) if ics else float("nan")


def classification_metrics(y: np.ndarray, proba: np.ndarray, train_majority: int) -> dict[str, float]:
    """Metrics of 3-class predictions; ``y`` holds class ids 0 (down), 1 (flat), 2 (up).

    - ``accuracy``: share of rows whose most probable class is the realised one;
    - ``majority_accuracy``: the accuracy of always predicting the train window's most frequent class,
      the chance level ``accuracy`` has to beat;
    - ``log_loss``: multi-class cross-entropy (lower is better; ln 3 = 1.0986 for a uniform guess);
    - ``auc_up`` / ``auc_down``: P(up) ranking up moves, P(down) ranking down moves (one vs rest);
      ``auc`` is their mean (0.5 = no skill).
    """
    y = np.asarray(y, dtype=np.int64)
    proba = np.asarray(proba, dtype=float)
    if len(y) == 0:
        return {"n_test": 0}
    pred = proba.argmax(axis=1)
    auc_up = roc_auc(y == 2, proba[:, 2])
    auc_down = roc_auc(y == 0, proba[:, 0])
    return {
        "n_test": int(len(y)),
        "accuracy": float((pred == y).mean()),
        "majority_accuracy": float((y == train_majority).mean()),
        "log_loss": multiclass_log_loss(y, proba),
        "auc": float(np.nanmean([auc_up, auc_down])) if np.isfinite([auc_up, auc_down]).any() else float("nan"),
        "auc_up": auc_up,
        "auc_down": auc_down,
    }


def pinball_loss(y: np.ndarray, q_pred: np.ndarray, alpha: float) -> float:
    """Mean pinball (quantile) loss of predictions ``q_pred`` of the ``alpha`` quantile of ``y``."""
    diff = np.asarray(y, dtype=float) - np.asarray(q_pred, dtype=float)
    return float(np.mean(np.maximum(alpha * diff, (alpha - 1.0) * diff)))


def quantile_metrics(y: np.ndarray, q_pred: np.ndarray, quantiles: Sequence[float]) -> dict[str, float]:
    """Metrics of quantile predictions (``q_pred`` one column per level of ``quantiles``).

    - ``pinball_qXX`` per level and ``pinball`` (their mean): lower is better;
    - ``coverage``: share of realised returns inside [lowest, highest] predicted quantile (the nominal
      value is the difference of the two levels, 0.8 for 0.1 / 0.9);
    - ``accuracy``: share of rows where the median's sign matches the realised return's sign;
    - ``auc``: how well the median ranks up moves (return > 0) above down moves.
    """
    y = np.asarray(y, dtype=float)
    q_pred = np.asarray(q_pred, dtype=float)
    if len(y) == 0:
        return {"n_test": 0}
    out: dict[str, float] = {"n_test": int(len(y))}
    losses = []
    for k, a in enumerate(quantiles):
        loss = pinball_loss(y, q_pred[:, k], a)
        out[f"pinball_q{round(a * 100):02d}"] = loss
        losses.append(loss)
    out["pinball"] = float(np.mean(losses))
    out["coverage"] = float(np.mean((y >= q_pred[:, 0]) & (y <= q_pred[:, -1])))
    median = q_pred[:, list(quantiles).index(0.5)]
    out["accuracy"] = float(np.mean(np.sign(median) == np.sign(y)))
    out["auc"] = roc_auc(y > 0, median)
    return out


def calibration_table(oos: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Predicted probability against realised frequency, for the up and down classes.

    ``oos`` has columns ``p_up``, ``p_down`` and ``label`` (-1 / 0 / 1). Probabilities are cut into
    ``bins`` equal-width bins; each row gives the class, the bin, the number of predictions in it, their
    mean predicted probability and the share that actually ended in that class. A calibrated model has
    ``realised`` close to ``predicted`` in every well-populated bin.
    """
    rows = []
    edges = np.round(np.linspace(0.0, 1.0, bins + 1), 10)  # 0.3, not 0.30000000000000004, in the csv
    for cls, col, value in (("up", "p_up", 1), ("down", "p_down", -1)):
        p = oos[col].to_numpy(dtype=float)
        hit = (oos["label"].to_numpy(dtype=float) == value).astype(float)
        which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
        for b in range(bins):
            sel = which == b
            n = int(sel.sum())
            rows.append({
                "class": cls, "bin_low": edges[b], "bin_high": edges[b + 1], "n": n,
                "predicted": float(p[sel].mean()) if n else float("nan"),
                "realised": float(hit[sel].mean()) if n else float("nan"),
            })
    return pd.DataFrame(rows)


def coverage_table(oos: pd.DataFrame, quantiles: Sequence[float]) -> pd.DataFrame:
    """Quantile calibration: for each level, the share of realised returns at or below the prediction.

    ``oos`` has the realised ``fwd_return`` and one ``q_<level>`` column per level. A calibrated model
    has ``realised`` close to ``level``.
    """
    y = oos["fwd_return"].to_numpy(dtype=float)
    rows = []
    for a in quantiles:
        q = oos[f"q_{a:g}"].to_numpy(dtype=float)
        rows.append({"level": a, "n": int(len(y)), "realised": float(np.mean(y <= q)) if len(y) else float("nan"),
                     "mean_prediction": float(np.mean(q)) if len(y) else float("nan")})
    return pd.DataFrame(rows)


def importance_table(per_model: Sequence[dict[str, float]], labels: Sequence[str]) -> pd.DataFrame:
    """Feature importances of several models side by side, each normalised to shares summing to 1.

    ``per_model`` holds one ``{feature: gain}`` dict per model (features a model never split on count as
    0). The table has one column per model (``labels``), then ``mean`` and ``std`` across models and
    ``rank`` by mean, sorted by rank: a feature that matters in every fold is more trustworthy than one
    that tops a single fold.
    """
    features = sorted({f for imp in per_model for f in imp})
    data = {}
    for label, imp in zip(labels, per_model, strict=True):
        total = sum(imp.values())
        data[label] = [imp.get(f, 0.0) / total if total > 0 else 0.0 for f in features]
    table = pd.DataFrame(data, index=pd.Index(features, name="feature"))
    table["mean"] = table[list(labels)].mean(axis=1)
    table["std"] = table[list(labels)].std(axis=1, ddof=0)
    table = table.sort_values("mean", ascending=False, kind="mergesort")
    table["rank"] = np.arange(1, len(table) + 1)
    return table
