"""Walk-forward splits with purge and embargo, and stitching of out-of-sample equity.

Exact semantics of :func:`walk_forward_splits` (all positions are bar numbers, ``[a, b)`` is half-open):

* Test windows: ``test_k = [s_k, s_k + test)`` with ``s_0 = train`` and ``s_{k+1} = s_k + step``.
  Folds are generated while the test window fits in ``n_bars``; with ``allow_partial=True`` one last,
  shorter test window that reaches the end of the data is added.
* Train windows: the ``train`` bars before the test window, ``[s_k - train, s_k)`` (``rolling``), or
  every bar before it, ``[0, s_k)`` (``anchored``), minus the tail described next.
* ``purge``: the last ``purge`` bars of every train window are dropped, so train ends at
  ``s_k - purge``. Use it when labels/indicator outcomes at bar ``t`` look ``purge`` bars ahead.
* ``embargo``: the ``embargo`` bars right after each test window are skipped: no test window contains
  them (so ``step >= test + embargo`` is required and ``step`` defaults to ``test + embargo``) and the
  next fold's train window does not use them. Train windows stay contiguous, so for fold ``k >= 1`` the
  train window ends at ``min(s_k - purge, end of test_{k-1})``: with the default step the gap between
  a fold's train and test is ``max(purge, embargo)``; with a larger step the bars between the embargo
  and the next test window also wait one fold before they are trained on. Folds after the next one
  may train on the embargoed bars (they are then ordinary history).
* Coverage: with the default step, the test windows and the embargo gaps after them tile
  ``[train, train + n_folds * step)`` without overlap; everything before ``train`` is only ever train
  data and the bars after the last full fold are unused unless ``allow_partial=True``.

Every window is contiguous and is returned as a ``slice`` (``Fold.train_index`` gives positions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["Fold", "stitch", "walk_forward_splits"]


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: contiguous train and test windows as positional slices.

    Example:
        >>> fold = walk_forward_splits(100, train=50, test=25)[0]
        >>> fold.train, fold.test
        (slice(0, 50, None), slice(50, 75, None))
    """

    index: int
    """Position of the fold in the list (0 = earliest test window)."""
    train: slice
    """Train window, bar positions ``[start, stop)`` after purge and embargo."""
    test: slice
    """Test window, bar positions ``[start, stop)``."""

    @property
    def train_index(self) -> np.ndarray:
        """Bar positions of the train window."""
        return np.arange(self.train.start, self.train.stop)

    @property
    def test_index(self) -> np.ndarray:
        """Bar positions of the test window."""
        return np.arange(self.test.start, self.test.stop)

    @property
    def n_train(self) -> int:
        """Number of bars in the train window."""
        return self.train.stop - self.train.start

    @property
    def n_test(self) -> int:
        """Number of bars in the test window."""
        return self.test.stop - self.test.start


def walk_forward_splits(
    n_bars: int,
    train: int,
    test: int,
    step: int | None = None,
    mode: Literal["rolling", "anchored"] = "rolling",
    purge: int = 0,
    embargo: int = 0,
    allow_partial: bool = False,
) -> list[Fold]:
    """Walk-forward folds over ``n_bars`` bars (see the module docstring for the exact rules).

    Args:
        n_bars: number of bars in the data.
        train: length of the train window before purge (and, in ``anchored`` mode, of the first one).
        test: length of each test window.
        step: distance between consecutive test starts; default ``test + embargo``.
        mode: ``"rolling"`` (fixed-length train) or ``"anchored"`` (train always starts at bar 0).
        purge: bars dropped from the end of every train window.
        embargo: bars skipped after every test window (not tested, not trained on by the next fold).
        allow_partial: add a last, shorter test window that reaches the end of the data.

    Raises ``ValueError`` for invalid sizes or when no fold fits.

    Example:
        >>> for f in walk_forward_splits(10, train=4, test=2, purge=1):
        ...     print(f.train, f.test)
        slice(0, 3, None) slice(4, 6, None)
        slice(2, 5, None) slice(6, 8, None)
        slice(4, 7, None) slice(8, 10, None)
    """
    for name, value, minimum in (
        ("n_bars", n_bars, 1),
        ("train", train, 1),
        ("test", test, 1),
        ("purge", purge, 0),
        ("embargo", embargo, 0),
    ):
        if isinstance(value, bool) or int(value) != value or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if mode not in ("rolling", "anchored"):
        raise ValueError(f"mode must be 'rolling' or 'anchored', got {mode!r}")
    if step is None:
        step = test + embargo
    if isinstance(step, bool) or int(step) != step or step < 1:
        raise ValueError(f"step must be an integer >= 1, got {step!r}")
    if embargo > 0 and step < test + embargo:
        raise ValueError(
            f"step ({step}) must be >= test + embargo ({test + embargo}) so the embargoed bars after a "
            "test window are not part of the next test window"
        )
    if purge >= train:
        raise ValueError(f"purge ({purge}) must be smaller than train ({train})")

    folds: list[Fold] = []
    start = train
    prev_test_end: int | None = None
    while start < n_bars:
        stop = start + test
        if stop > n_bars:
            if not allow_partial:
                break
            stop = n_bars
        hi = start - purge
        if embargo > 0 and prev_test_end is not None:
            hi = min(hi, prev_test_end)
        lo = 0 if mode == "anchored" else start - train
        if hi <= lo:
            raise ValueError(
                f"fold {len(folds)} has an empty train window (train={train}, purge={purge}, "
                f"embargo={embargo}, step={step}); increase train or decrease purge/embargo/step"
            )
        folds.append(Fold(index=len(folds), train=slice(lo, hi), test=slice(start, stop)))
        if stop == n_bars and stop - start < test:
            break
        prev_test_end = stop
        start += step
    if not folds:
        raise ValueError(f"no fold fits: n_bars={n_bars} < train + test = {train + test}")
    return folds


def stitch(
    equity_pieces: Sequence[pd.Series],
    init_values: float | Sequence[float] | None = None,
    start_value: float | None = None,
) -> pd.Series:
    """Chain out-of-sample equity curves multiplicatively into one continuous curve.

    Each piece is rescaled so it starts where the previous one ended: within a piece the bar-to-bar
    returns are preserved exactly, and the return of a piece's first bar is measured against its
    ``init_values`` entry (the cash it started with) when given, else taken as zero (the piece's own
    first value is its base). Pieces must be in time order with non-overlapping indexes; gaps between
    them (e.g. embargoed bars) are simply absent from the result.

    Args:
        equity_pieces: per-fold equity (portfolio value) series, in time order.
        init_values: starting capital of every piece (scalar or one per piece), or None.
        start_value: level of the stitched curve before its first bar; defaults to the first piece's
            base (its init value, else its first value), so the first piece is returned unchanged.

    Example:
        >>> a = pd.Series([100.0, 200.0], index=[0, 1])
        >>> b = pd.Series([50.0, 75.0], index=[2, 3])
        >>> stitch([a, b], init_values=[100.0, 50.0]).tolist()
        [100.0, 200.0, 200.0, 300.0]
    """
    pieces = [p for p in equity_pieces]
    if not pieces:
        raise ValueError("stitch needs at least one equity piece")
    if init_values is None:
        bases = [None] * len(pieces)
    elif np.isscalar(init_values):
        bases = [float(init_values)] * len(pieces)  # type: ignore[arg-type]
    else:
        bases = [float(v) for v in init_values]  # type: ignore[union-attr]
        if len(bases) != len(pieces):
            raise ValueError(f"init_values has {len(bases)} entries for {len(pieces)} pieces")

    out: list[pd.Series] = []
    level = start_value
    last_label = None
    for i, (piece, base) in enumerate(zip(pieces, bases, strict=True)):
        if not isinstance(piece, pd.Series):
            raise TypeError(f"piece {i} must be a pandas Series, got {type(piece).__name__}")
        if piece.empty:
            raise ValueError(f"piece {i} is empty")
        values = piece.astype(np.float64)
        if not np.all(np.isfinite(values.to_numpy())):
            raise ValueError(f"piece {i} has non-finite values")
        if not piece.index.is_monotonic_increasing or piece.index.has_duplicates:
            raise ValueError(f"piece {i} index must be strictly increasing")
        if last_label is not None and not piece.index[0] > last_label:
            raise ValueError(f"piece {i} starts at {piece.index[0]!r}, not after the previous piece's end")
        piece_base = float(values.iloc[0]) if base is None else base
        if piece_base <= 0:
            raise ValueError(f"piece {i} has a non-positive base value {piece_base}")
        if level is None:
            level = piece_base
        scaled = values * (level / piece_base)
        out.append(scaled)
        level = float(scaled.iloc[-1])
        last_label = piece.index[-1]
    result = pd.concat(out)
    result.name = "equity"
    return result
