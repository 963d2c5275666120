"""Walk-forward split rules: adjacent test windows, purge and embargo taken from training only."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from qf.research.folds import Fold, walk_forward_splits


def _spans(folds: list[Fold]) -> list[tuple[int, int, int, int]]:
    return [(f.train.start, f.train.stop, f.test.start, f.test.stop) for f in folds]


def test_rolling_exact_layout() -> None:
    folds = walk_forward_splits(100, train=40, test=20)
    assert _spans(folds) == [(0, 40, 40, 60), (20, 60, 60, 80), (40, 80, 80, 100)]
    assert [f.index for f in folds] == [0, 1, 2]
    assert folds[1].train_index.tolist() == list(range(20, 60))
    assert folds[1].test_index.tolist() == list(range(60, 80))
    assert (folds[0].n_train, folds[0].n_test) == (40, 20)


def test_anchored_with_purge() -> None:
    folds = walk_forward_splits(100, train=40, test=15, mode="anchored", purge=3)
    assert _spans(folds) == [(0, 37, 40, 55), (0, 52, 55, 70), (0, 67, 70, 85), (0, 82, 85, 100)]


def test_purge_and_embargo_drop_train_bars_never_test_bars() -> None:
    folds = walk_forward_splits(100, train=30, test=10, purge=2, embargo=5)
    # the test windows stay adjacent; every train window ends purge + embargo bars before its test window
    assert _spans(folds) == [
        (0, 23, 30, 40),
        (10, 33, 40, 50),
        (20, 43, 50, 60),
        (30, 53, 60, 70),
        (40, 63, 70, 80),
        (50, 73, 80, 90),
        (60, 83, 90, 100),
    ]
    # step equal to test is the default spelled out
    assert _spans(walk_forward_splits(100, train=30, test=10, step=10, purge=2, embargo=5)) == _spans(folds)


def test_partial_last_test_window() -> None:
    assert _spans(walk_forward_splits(95, train=40, test=20)) == [(0, 40, 40, 60), (20, 60, 60, 80)]
    folds = walk_forward_splits(95, train=40, test=20, allow_partial=True)
    assert _spans(folds) == [(0, 40, 40, 60), (20, 60, 60, 80), (40, 80, 80, 95)]
    # data that end exactly on a test window's end get no empty extra fold
    assert len(walk_forward_splits(100, train=40, test=20, allow_partial=True)) == 3


@pytest.mark.parametrize(
    ("n_bars", "train", "test", "mode", "purge", "embargo", "partial"),
    list(itertools.product([97, 250], [30, 61], [7, 20], ["rolling", "anchored"], [0, 3], [0, 2], [False, True])),
)
def test_invariants(n_bars: int, train: int, test: int, mode: str, purge: int, embargo: int, partial: bool) -> None:
    folds = walk_forward_splits(n_bars, train, test, mode=mode, purge=purge, embargo=embargo, allow_partial=partial)
    n_full = (n_bars - train) // test
    assert len(folds) == n_full + int(partial and (n_bars - train) % test > 0)
    for k, fold in enumerate(folds):
        train_idx, test_idx = set(fold.train_index), set(fold.test_index)
        assert fold.test.start == train + k * test
        assert fold.n_test == test or (partial and k == len(folds) - 1 and fold.test.stop == n_bars)
        assert fold.n_train > 0 and fold.test.stop <= n_bars
        # no overlap; purge + embargo separate the last train bar from the test window
        assert not train_idx & test_idx
        assert fold.train.stop == fold.test.start - purge - embargo
        assert fold.train.start == (0 if mode == "anchored" else fold.test.start - train)
    # the test windows tile one contiguous out-of-sample span: no bar skipped, none tested twice
    covered = np.zeros(n_bars, dtype=int)
    for fold in folds:
        covered[fold.test] += 1
    end = folds[-1].test.stop
    assert (covered[train:end] == 1).all() and (covered[:train] == 0).all() and (covered[end:] == 0).all()
    assert end == (n_bars if partial else train + n_full * test)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_bars": 50, "train": 40, "test": 20}, "no fold fits"),
        ({"n_bars": 100, "train": 10, "test": 10, "purge": 10}, r"purge \+ embargo \(10 \+ 0\)"),
        ({"n_bars": 100, "train": 10, "test": 10, "purge": 6, "embargo": 4}, "must be smaller than train"),
        ({"n_bars": 100, "train": 10, "test": 10, "step": 12}, r"leave 2 bars after every test window"),
        ({"n_bars": 100, "train": 10, "test": 10, "step": 7}, r"trade 3 bars of every test window twice"),
        ({"n_bars": 100, "train": 10, "test": 10, "step": 0}, "step must be an integer"),
        ({"n_bars": 100, "train": 0, "test": 10}, "train"),
        ({"n_bars": 100, "train": 10, "test": 10, "mode": "expanding"}, "mode"),
        ({"n_bars": 100, "train": 10, "test": 1.5}, "test"),
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        walk_forward_splits(**kwargs)
