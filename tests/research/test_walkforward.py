"""Walk-forward split rules and out-of-sample stitching."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from qf.research.walkforward import Fold, stitch, walk_forward_splits


def _spans(folds: list[Fold]) -> list[tuple[int, int, int, int]]:
    return [(f.train.start, f.train.stop, f.test.start, f.test.stop) for f in folds]


def test_rolling_exact_layout() -> None:
    folds = walk_forward_splits(100, train=40, test=20)
    assert _spans(folds) == [(0, 40, 40, 60), (20, 60, 60, 80), (40, 80, 80, 100)]
    assert [f.index for f in folds] == [0, 1, 2]
    assert folds[1].train_index.tolist() == list(range(20, 60))
    assert folds[1].test_index.tolist() == list(range(60, 80))
    assert (folds[0].n_train, folds[0].n_test) == (40, 20)


def test_anchored_with_purge_and_step() -> None:
    folds = walk_forward_splits(100, train=40, test=10, step=15, mode="anchored", purge=3)
    assert _spans(folds) == [(0, 37, 40, 50), (0, 52, 55, 65), (0, 67, 70, 80), (0, 82, 85, 95)]


def test_embargo_skips_bars_after_each_test_window() -> None:
    folds = walk_forward_splits(100, train=30, test=10, purge=2, embargo=5)
    # step defaults to test + embargo; fold k>=1 trains up to the end of the previous test window
    assert _spans(folds) == [
        (0, 28, 30, 40),
        (15, 40, 45, 55),
        (30, 55, 60, 70),
        (45, 70, 75, 85),
        (60, 85, 90, 100),
    ]
    # a purge longer than the embargo still wins
    folds = walk_forward_splits(100, train=30, test=10, purge=8, embargo=5)
    assert _spans(folds)[1] == (15, 37, 45, 55)


def test_partial_last_test_window() -> None:
    assert _spans(walk_forward_splits(95, train=40, test=20)) == [(0, 40, 40, 60), (20, 60, 60, 80)]
    folds = walk_forward_splits(95, train=40, test=20, allow_partial=True)
    assert _spans(folds) == [(0, 40, 40, 60), (20, 60, 60, 80), (40, 80, 80, 95)]


@pytest.mark.parametrize(
    ("n_bars", "train", "test", "step", "mode", "purge", "embargo"),
    [
        (*args,)
        for args in itertools.product(
            [97, 250], [30, 61], [7, 20], [None, 25], ["rolling", "anchored"], [0, 3], [0, 2]
        )
        if args[3] is None or args[3] >= args[2] + args[6]
    ],
)
def test_invariants(
    n_bars: int, train: int, test: int, step: int | None, mode: str, purge: int, embargo: int
) -> None:
    folds = walk_forward_splits(n_bars, train, test, step=step, mode=mode, purge=purge, embargo=embargo)
    step_ = test + embargo if step is None else step
    assert len(folds) == (n_bars - train - test) // step_ + 1
    prev: Fold | None = None
    for k, fold in enumerate(folds):
        train_idx, test_idx = set(fold.train_index), set(fold.test_index)
        assert fold.n_test == test and fold.test.start == train + k * step_
        assert fold.n_train > 0 and fold.test.stop <= n_bars
        # no overlap, and the purge gap separates train from test
        assert not train_idx & test_idx
        assert fold.train.stop <= fold.test.start - purge
        assert max(train_idx) < min(test_idx)
        if mode == "anchored":
            assert fold.train.start == 0
        else:
            assert fold.train.start == fold.test.start - train
        if prev is not None:
            # tests move forward without overlapping, and embargoed bars are neither tested next
            # nor trained on by the next fold
            embargoed = set(range(prev.test.stop, prev.test.stop + embargo))
            assert fold.test.start >= prev.test.stop + embargo
            assert not embargoed & train_idx and not embargoed & test_idx
        prev = fold
    if step is None:
        # documented coverage: test windows + embargo gaps tile [train, train + n * step)
        covered = np.zeros(n_bars, dtype=int)
        for fold in folds:
            covered[fold.test.start : fold.test.stop + embargo] += 1
        end = train + len(folds) * step_
        assert (covered[train:end] == 1).all()
        assert (covered[:train] == 0).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_bars": 50, "train": 40, "test": 20}, "no fold fits"),
        ({"n_bars": 100, "train": 10, "test": 10, "purge": 10}, "purge"),
        ({"n_bars": 100, "train": 10, "test": 10, "embargo": 3, "step": 12}, "step"),
        ({"n_bars": 100, "train": 10, "test": 10, "step": 30, "embargo": 2}, "empty train window"),
        ({"n_bars": 100, "train": 0, "test": 10}, "train"),
        ({"n_bars": 100, "train": 10, "test": 10, "mode": "expanding"}, "mode"),
        ({"n_bars": 100, "train": 10, "test": 1.5}, "test"),
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        walk_forward_splits(**kwargs)


def test_stitch_chains_returns_multiplicatively() -> None:
    idx = pd.date_range("2021-01-01", periods=6, freq="D")
    a = pd.Series([100.0, 110.0, 99.0], index=idx[:3])
    b = pd.Series([1000.0, 1100.0, 1210.0], index=idx[3:])
    out = stitch([a, b], init_values=[100.0, 1000.0])
    np.testing.assert_allclose(out.to_numpy(), [100.0, 110.0, 99.0, 99.0, 108.9, 119.79])
    assert out.index.equals(idx)
    # without init values a piece's first bar is its base (first-bar return counted as zero)
    np.testing.assert_allclose(stitch([a, b]).to_numpy(), [100.0, 110.0, 99.0, 99.0, 108.9, 119.79])
    # first-bar returns are kept when the pieces started from cash
    c = pd.Series([105.0, 110.25], index=idx[3:5])
    np.testing.assert_allclose(
        stitch([a, c], init_values=100.0, start_value=1.0).to_numpy(), [1.0, 1.1, 0.99, 1.0395, 1.091475]
    )
    # per-bar returns inside every piece survive stitching
    out_r = out.pct_change().to_numpy()
    np.testing.assert_allclose(out_r[1:3], a.pct_change().to_numpy()[1:])
    np.testing.assert_allclose(out_r[4:], b.pct_change().to_numpy()[1:])


def test_stitch_with_walk_forward_folds_and_gaps() -> None:
    close = pd.Series(np.linspace(100, 200, 120), index=pd.RangeIndex(120))
    folds = walk_forward_splits(120, train=30, test=20, embargo=5)
    pieces = [close.iloc[f.test] / close.iloc[f.test.start] * 1000 for f in folds]
    out = stitch(pieces)
    assert len(out) == sum(f.n_test for f in folds)
    assert out.iloc[0] == pytest.approx(1000.0)
    expected = np.prod([p.iloc[-1] / p.iloc[0] for p in pieces]) * 1000
    assert out.iloc[-1] == pytest.approx(expected)


def test_stitch_errors() -> None:
    a = pd.Series([1.0, 2.0], index=[0, 1])
    with pytest.raises(ValueError, match="not after the previous"):
        stitch([a, pd.Series([1.0], index=[1])])
    with pytest.raises(ValueError, match="at least one"):
        stitch([])
    with pytest.raises(ValueError, match="non-finite"):
        stitch([pd.Series([1.0, np.nan])])
    with pytest.raises(ValueError, match="2 entries for 1 pieces"):
        stitch([a], init_values=[1.0, 2.0])
    with pytest.raises(TypeError, match="pandas Series"):
        stitch([np.array([1.0])])  # type: ignore[list-item]
