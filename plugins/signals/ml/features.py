"""Stationary features for ML signal models, computed from past bars only.

Every feature of row ``(t, symbol)`` is a function of that symbol's bars in a trailing window ending at
``t`` (and, for the cross-sectional groups, of the other symbols' features on the same row ``t``). Only
fixed-length rolling windows are used, no recursive averages: a recursive average (Wilder's RSI, an EWM)
depends on where the data starts, so a model trained on a walk-forward train window would see slightly
different values than the same rows computed on the full history at prediction time. With fixed windows
a row's value does not depend on how much older history there is, once the window is full.

Groups (``FeatureConfig.groups``):

- ``returns``: log return over each of ``return_horizons`` bars (``ret_5``);
- ``volatility``: standard deviation of daily log returns over ``vol_windows`` (``vol_21``) and the
  ratios of consecutive windows, short over long (``volratio_5_21``: > 1 when volatility is rising);
- ``ma_zscore``: (close - SMA(w)) / std(close, w) for ``ma_windows`` (``zma_21``);
- ``rsi``: RSI over ``rsi_windows`` from rolling sums of gains and losses, scaled to [-1, 1] (``rsi_3``);
- ``drawdown``: close / highest close of the last ``drawdown_window`` bars - 1 (``dd_126``, <= 0);
- ``volume``: z-score of log(1 + volume) over ``volume_window`` (``volz_21``); only when the data has
  volume (close-only data simply has no volume feature);
- ``rank``: cross-sectional rank, scaled to [-1, 1], of the returns (horizons > 1), volatilities, MA
  z-scores, RSIs and the drawdown among the symbols trading on the row (``rank_ret_21``);
- ``relative``: relative strength against the universe average (an equal-weight benchmark): the return
  minus the mean return of all symbols on the row, for horizons > 1 (``rel_21``).

The output is long: one row per (date, symbol) that has a full look-back (``FeatureConfig.warmup`` bars
since the symbol's first close), a ``(date, symbol)`` MultiIndex, one float column per feature.

Example::

    cfg = FeatureConfig()
    feats = build_features(bars, cfg)
    feats.loc[("2020-03-02", "AAPL"), "ret_21"]
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd

from qf.bars import Bars

GROUPS: tuple[str, ...] = ("returns", "volatility", "ma_zscore", "rsi", "drawdown", "volume", "rank", "relative")

__all__ = ["GROUPS", "FeatureConfig", "HistoryFeatures", "build_features", "cross_rank", "feature_names", "warm_mask"]


@dataclass(frozen=True)
class FeatureConfig:
    """Which feature groups to build and their windows (in bars).

    Example::

        FeatureConfig(groups=("returns", "rank"), return_horizons=(5, 21)).warmup   # 21
    """

    groups: tuple[str, ...] = GROUPS
    return_horizons: tuple[int, ...] = (1, 5, 10, 21, 63)
    vol_windows: tuple[int, ...] = (5, 21, 63)
    ma_windows: tuple[int, ...] = (10, 21, 50)
    rsi_windows: tuple[int, ...] = (3, 14)
    drawdown_window: int = 126
    volume_window: int = 21

    def __post_init__(self) -> None:
        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown:
            raise ValueError(f"unknown feature group(s) {unknown}; choose from {list(GROUPS)}")
        if not self.groups:
            raise ValueError("at least one feature group is needed")
        for name in ("return_horizons", "vol_windows", "ma_windows", "rsi_windows"):
            values = getattr(self, name)
            if not values or any(int(v) != v or v < 1 for v in values):
                raise ValueError(f"{name} must be a non-empty list of integers >= 1, got {list(values)}")
        if min(self.vol_windows) < 2 or min(self.ma_windows) < 2:
            raise ValueError("volatility and moving-average windows need at least 2 bars")
        if self.drawdown_window < 1 or self.volume_window < 2:
            raise ValueError("drawdown_window must be >= 1 and volume_window >= 2")

    @property
    def warmup(self) -> int:
        """Bars of history a symbol needs before its first feature row (every window full).

        A return over h bars needs h earlier closes, a rolling statistic of daily returns over w bars
        needs w + 1 closes, a rolling statistic of closes over w bars needs w closes; the first row a
        symbol gets is the one ``warmup`` bars after its first close. Every group's windows count, used
        or not, so that switching a group off never moves the first row (keeps models comparable).
        """
        return int(max(*self.return_horizons, *self.vol_windows, *self.ma_windows, *self.rsi_windows,
                       self.drawdown_window, self.volume_window))

    def has(self, group: str) -> bool:
        return group in self.groups


def warm_mask(close: pd.DataFrame, warmup: int) -> pd.DataFrame:
    """True where a symbol has a close and at least ``warmup`` earlier closes (its look-back is full)."""
    listed = close.notna()
    # count of closes so far, 1 on a symbol's first close; gaps after listing are forward-filled by
    # bars.validate, so this is the number of bars since listing
    return listed & (listed.cumsum() > warmup)


def cross_rank(frame: pd.DataFrame) -> pd.DataFrame:
    """Rank of each value among the non-NaN values of its row, scaled linearly to [-1, 1].

    Ties get their average rank; a row with a single value gets 0 (nothing to compare with).
    """
    return pd.DataFrame(_cross_rank_rows(frame.to_numpy(dtype=np.float64)), index=frame.index, columns=frame.columns)


def _cross_rank_rows(values: np.ndarray) -> np.ndarray:
    """:func:`cross_rank` of every row of a 2-D array.

    Rows are independent, so several frames stacked vertically are ranked in one call (one pandas rank,
    not one per frame: the per-call overhead was most of a train window's feature build).
    """
    valid = ~np.isnan(values)
    count = valid.sum(axis=1)
    rank = pd.DataFrame(values).rank(axis=1, method="average").to_numpy(dtype=np.float64)
    scaled = (rank - 1.0) / np.where(count > 1, count - 1, np.nan)[:, None] * 2.0 - 1.0
    scaled[valid & (count == 1)[:, None]] = 0.0
    return scaled


def _rolling_rsi(close: pd.DataFrame, window: int) -> pd.DataFrame:
    """RSI from rolling sums of gains and losses (Cutler), scaled to [-1, 1]; 0 for a flat window."""
    delta = close.diff()
    n = close.shape[1]
    # gains and losses side by side in one rolling sum (each column is summed on its own, as in two calls)
    sums = pd.concat([delta.clip(lower=0), (-delta).clip(lower=0)], axis=1, ignore_index=True)
    sums = sums.rolling(window, min_periods=window).sum().to_numpy(dtype=np.float64)
    gain, loss = sums[:, :n], sums[:, n:]
    total = gain + loss
    # rolling sums of non-negative numbers can come out as rounding noise instead of 0: treat as flat
    flat = total <= 1e-12 * np.abs(close.to_numpy(dtype=np.float64))
    out = (gain - loss) / np.where(flat, np.nan, total)
    out[flat] = 0.0  # flat is False where total is NaN (a comparison with NaN)
    return pd.DataFrame(np.clip(out, -1.0, 1.0), index=close.index, columns=close.columns)


def _base_features(bars: Bars, cfg: FeatureConfig) -> dict[str, pd.DataFrame]:
    """Per-symbol (time-series) features as wide frames, before the warm-up mask."""
    from qf_plugins.signals._indicators import zscore  # lazy: numba (loaded when features are built)

    close = bars.close
    log_close = np.log(close)
    daily = log_close.diff()
    out: dict[str, pd.DataFrame] = {}
    need_all = cfg.has("rank") or cfg.has("relative")
    if cfg.has("returns") or need_all:
        for h in cfg.return_horizons:
            out[f"ret_{h}"] = log_close - log_close.shift(h)
    if cfg.has("volatility") or cfg.has("rank"):
        vols = {w: daily.rolling(w, min_periods=w).std() for w in sorted(set(cfg.vol_windows))}
        for w, v in vols.items():
            out[f"vol_{w}"] = v
        ws = sorted(vols)
        for short, long in zip(ws[:-1], ws[1:], strict=True):
            # a flat stretch has zero volatility: the ratio is undefined there, left NaN for the model
            out[f"volratio_{short}_{long}"] = vols[short] / vols[long].where(vols[long] > 0)
    if cfg.has("ma_zscore") or cfg.has("rank"):
        for w in cfg.ma_windows:
            out[f"zma_{w}"] = zscore(close, w)
    if cfg.has("rsi") or cfg.has("rank"):
        for w in cfg.rsi_windows:
            out[f"rsi_{w}"] = _rolling_rsi(close, w)
    if cfg.has("drawdown") or cfg.has("rank"):
        w = cfg.drawdown_window
        out[f"dd_{w}"] = close / close.rolling(w, min_periods=w).max() - 1.0
    if cfg.has("volume") and bars.volume is not None:
        out[f"volz_{cfg.volume_window}"] = zscore(np.log1p(bars.volume), cfg.volume_window)
    return out


def _selected(cfg: FeatureConfig, base: dict[str, pd.DataFrame]) -> list[str]:
    """The base features the config outputs (others were only computed to feed ranks / relatives)."""
    prefixes = {
        "returns": ("ret_",),
        "volatility": ("vol_", "volratio_"),
        "ma_zscore": ("zma_",),
        "rsi": ("rsi_",),
        "drawdown": ("dd_",),
        "volume": ("volz_",),
    }
    names = []
    for group, pre in prefixes.items():
        if cfg.has(group):
            names += [n for n in base if n.startswith(pre)]
    return names


def _ranked(cfg: FeatureConfig, base: dict[str, pd.DataFrame]) -> list[str]:
    """The base features that get a cross-sectional rank (the 1-bar return is mostly noise: skipped)."""
    keep = [f"ret_{h}" for h in cfg.return_horizons if h > 1]
    keep += [f"vol_{w}" for w in sorted(set(cfg.vol_windows))]
    keep += [f"zma_{w}" for w in cfg.ma_windows] + [f"rsi_{w}" for w in cfg.rsi_windows]
    keep.append(f"dd_{cfg.drawdown_window}")
    return [n for n in dict.fromkeys(keep) if n in base]


def feature_names(cfg: FeatureConfig, has_volume: bool) -> list[str]:
    """The columns :func:`build_features` produces for data with (or without) volume, in order."""
    idx = pd.bdate_range("2000-01-03", periods=cfg.warmup + 2)
    close = pd.DataFrame({"A": np.linspace(1.0, 2.0, len(idx)), "B": np.linspace(2.0, 1.0, len(idx))}, index=idx)
    volume = close * 1000.0 if has_volume else None
    return list(build_features(Bars(close=close, volume=volume, source="probe"), cfg).columns)


def build_features(bars: Bars, cfg: FeatureConfig | None = None) -> pd.DataFrame:
    """Features of every (date, symbol) row with a full look-back, as a long frame.

    Row ``(t, s)`` uses bars up to ``t`` only (cross-sectional groups also use the other symbols' rows
    at ``t``). The index is a ``(date, symbol)`` MultiIndex in date-major order; columns are the
    feature names, a symbol's rows start ``cfg.warmup`` bars after its first close. Degenerate values
    (a zero-volatility window) are NaN, which tree models handle as missing.

    Example::

        feats = build_features(bars, FeatureConfig(groups=("returns", "relative")))
        list(feats.columns)[:2]   # ['ret_1', 'ret_5']
    """
    cfg = cfg or FeatureConfig()
    close = bars.close
    warm = warm_mask(close, cfg.warmup)
    base = {k: v.where(warm) for k, v in _base_features(bars, cfg).items()}
    cols: dict[str, pd.DataFrame | np.ndarray] = {n: base[n] for n in _selected(cfg, base)}
    # cross-sectional features only compare symbols whose look-back is full (masked above), so a
    # symbol in its warm-up never enters another symbol's rank or the universe average
    if cfg.has("rank"):
        ranked = _ranked(cfg, base)
        if ranked:
            stacked = _cross_rank_rows(np.vstack([base[n].to_numpy(dtype=np.float64) for n in ranked]))
            for k, n in enumerate(ranked):
                cols[f"rank_{n}"] = stacked[k * len(close.index):(k + 1) * len(close.index)]
    if cfg.has("relative"):
        for h in cfg.return_horizons:
            if h > 1:
                ret = base[f"ret_{h}"]
                cols[f"rel_{h}"] = ret.sub(ret.mean(axis=1), axis=0)
    n_rows, n_cols = close.shape
    flat_warm = warm.to_numpy().reshape(-1)
    index = pd.MultiIndex.from_arrays(
        [np.repeat(close.index.to_numpy(), n_cols)[flat_warm],
         np.tile(np.asarray(close.columns, dtype=object), n_rows)[flat_warm]],
        names=["date", "symbol"],
    )
    data = {}
    for name, frame in cols.items():
        values = np.asarray(frame, dtype=np.float64).reshape(-1)[flat_warm]
        values[~np.isfinite(values)] = np.nan
        data[name] = values
    return pd.DataFrame(data, index=index)



class HistoryFeatures:
    """The features of one full history, built once and served to every prefix of it.

    A walk-forward fold scores the history up to its test window's end, a prefix of the full data. Every
    feature of row t is computed by a forward pass from the data's first bar to t (rolling windows) and
    from the other symbols on row t (ranks, relatives), so the rows of ``build_features(prefix)`` are
    bit for bit the first rows of ``build_features(full)``: slicing the full matrix replaces one build
    per fold. This only holds for prefixes (same first bar): a window starting later (a fold's train
    window) gets its own build, since rolling sums carry rounding from where they start.

    Example::

        shared = HistoryFeatures(bars, FeatureConfig())
        shared.for_prefix(bars.iloc(slice(0, 1000)))   # == build_features(bars.iloc(slice(0, 1000)), cfg)
        shared.for_prefix(bars.iloc(slice(5, 1000)))   # None: not a prefix, build it yourself
    """

    def __init__(self, bars: Bars, cfg: FeatureConfig) -> None:
        self.bars = bars
        self.cfg = cfg
        self._feats: pd.DataFrame | None = None
        self._row_dates: pd.Index | None = None
        self._lock = threading.Lock()

    def is_prefix(self, bars: Bars) -> bool:
        """True when ``bars`` holds exactly the first rows of the full history (closes and volumes)."""
        full = self.bars
        n = len(bars.index)
        if bars is full:
            return True
        if n > len(full.index) or list(bars.close.columns) != list(full.close.columns):
            return False
        if not bars.index.equals(full.index[:n]):
            return False
        if (bars.volume is None) != (full.volume is None):
            return False
        pairs = [(bars.close, full.close)] + ([(bars.volume, full.volume)] if bars.volume is not None else [])
        # the values too: a caller may hand in other data on the same calendar (cheap next to a build)
        return all(np.array_equal(a.to_numpy(dtype=float), b.to_numpy(dtype=float)[:n], equal_nan=True)
                   for a, b in pairs)

    def for_prefix(self, bars: Bars) -> pd.DataFrame | None:
        """``build_features(bars, cfg)`` sliced from the full build, or None when ``bars`` is no prefix."""
        if not self.is_prefix(bars):
            return None
        with self._lock:  # folds planned on several threads share one build
            if self._feats is None:
                self._feats = build_features(self.bars, self.cfg)
                self._row_dates = self._feats.index.get_level_values(0)
        assert self._row_dates is not None
        # date-major rows: those up to the prefix's last date are a contiguous head of the matrix
        stop = int(self._row_dates.searchsorted(bars.index[-1], side="right")) if len(bars.index) else 0
        if stop == 0:
            # no warm row yet: a build of the (short) prefix is cheap and gives the same empty frame, index
            # types included, as before
            return build_features(bars, self.cfg)
        return self._feats.iloc[:stop]
