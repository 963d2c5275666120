"""Walk-forward splits whose test windows tile one contiguous out-of-sample span.

Exact semantics of :func:`walk_forward_splits` (all positions are bar numbers, ``[a, b)`` is half-open):

* Test windows: ``test_k = [s_k, s_k + test)`` with ``s_0 = train`` and ``s_{k+1} = s_k + test``. They
  tile the out-of-sample span ``[train, train + n_folds * test)`` with no gap and no overlap, so one
  account can trade the whole span (what :mod:`qf.research.walk_forward` does). Folds are generated while the
  test window fits in ``n_bars``; with ``allow_partial=True`` one last, shorter test window reaches the
  end of the data.
* ``step`` (distance between test starts) must equal ``test`` (its default). A larger step would leave
  bars between test windows that no fold trades, so the out-of-sample curve would not be a path anyone
  could have traded; a smaller one would trade the same bars with two models. To refit less often, make
  ``test`` longer; to refit more often, make it shorter. Anything else is refused.
* Train windows: the ``train`` bars before the test window, ``[s_k - train, s_k)`` (``rolling``), or
  every bar before it, ``[0, s_k)`` (``anchored``), minus the tail described next.
* ``purge`` and ``embargo`` remove *training* bars, never test bars: the last ``purge + embargo`` bars
  before each test window are dropped from its train window, so train ends at
  ``s_k - purge - embargo``.

  - ``purge``: the train bars whose labels or outcomes look into the test window (set it to at least
    the label horizon: a label at bar ``t`` that looks ``h`` bars ahead overlaps the test window when
    ``t >= s_k - h``).
  - ``embargo``: a further buffer against serial correlation between the last training samples and the
    first test bars. (In cross-validation the embargo drops the train bars right *after* a test window;
    in a forward-only walk-forward no fold trains on bars after its own test window: the bars after
    fold ``k``'s test window are fold ``k+1``'s test window, and only later folds train on them, as
    ordinary older history. The one place where training samples touch a test window is just before
    it, so that is where the embargo acts.)
* Everything before ``train`` is only ever train data.

Every window is contiguous and is returned as a ``slice`` (``Fold.train_index`` gives positions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["Fold", "walk_forward_splits"]


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
        train: length of the train window before purge and embargo (in ``anchored`` mode, of the first one).
        test: length of each test window; consecutive test windows are adjacent.
        step: distance between consecutive test starts; must be ``None`` or equal to ``test``.
        mode: ``"rolling"`` (fixed-length train) or ``"anchored"`` (train always starts at bar 0).
        purge: train bars dropped before every test window (labels that would look into it).
        embargo: further train bars dropped before every test window (serial-correlation buffer).
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
    if step is not None:
        if isinstance(step, bool) or int(step) != step or step < 1:
            raise ValueError(f"step must be an integer >= 1, got {step!r}")
        if step != test:
            effect = (f"leave {step - test} bars after every test window that no fold trades"
                      if step > test else f"trade {test - step} bars of every test window twice")
            raise ValueError(
                f"step ({step}) must equal test ({test}): test windows tile the out-of-sample span so one "
                f"account trades it without gaps, and this step would {effect}; to refit less often make "
                "test longer, to refit more often make it shorter (or leave step out)"
            )
    gap = purge + embargo
    if gap >= train:
        raise ValueError(f"purge + embargo ({purge} + {embargo}) must be smaller than train ({train})")

    folds: list[Fold] = []
    start = train
    while start < n_bars:
        stop = start + test
        if stop > n_bars:
            if not allow_partial:
                break
            stop = n_bars
        lo = 0 if mode == "anchored" else start - train
        folds.append(Fold(index=len(folds), train=slice(lo, start - gap), test=slice(start, stop)))
        start = stop
    if not folds:
        raise ValueError(f"no fold fits: n_bars={n_bars} < train + test = {train + test}")
    return folds
