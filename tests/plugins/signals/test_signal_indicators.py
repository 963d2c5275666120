"""The shared causal indicators and the holding state machine behind several signal models."""

from __future__ import annotations

import numpy as np
import pandas as pd

from qf_plugins.signals._indicators import hold_nb, rsi, zscore


def test_rsi_matches_wilder_smoothing_by_hand() -> None:
    # deltas +1, -1, +1 with alpha 1/2: gains 1, .5, .75; losses 0, .5, .25 -> RSI -, 50, 75
    close = pd.DataFrame({"A": [10.0, 11, 10, 11]})
    np.testing.assert_allclose(rsi(close, 2)["A"], [np.nan, np.nan, 50.0, 75.0])


def test_zscore_is_zero_on_a_flat_window_not_nan() -> None:
    close = pd.DataFrame({"A": [5.0, 5, 5, 5, 8]})
    z = zscore(close, 3)["A"]
    assert z.iloc[:2].isna().all()
    assert z.iloc[2:4].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(z.iloc[4], (8 - 6) / np.sqrt(3))


def _run(enter: list[int], exit_: list[int], valid: list[int] | None = None, max_hold: int = 0) -> list[float]:
    col = np.array(enter, dtype=bool)[:, None]
    ok = np.ones_like(col) if valid is None else np.array(valid, dtype=bool)[:, None]
    return hold_nb(col, np.array(exit_, dtype=bool)[:, None], ok, max_hold)[:, 0].tolist()


def test_hold_enters_holds_and_exits() -> None:
    assert _run([0, 1, 0, 0, 1, 0], [0, 0, 0, 1, 0, 0]) == [0, 1, 1, 0, 1, 1]


def test_hold_time_stop_and_no_reentry_on_the_exit_bar() -> None:
    # entry signal stays on: after 2 bars the time stop exits, the next bar re-enters
    assert _run([1] * 6, [0] * 6, max_hold=2) == [1, 1, 0, 1, 1, 0]


def test_hold_resets_where_not_valid() -> None:
    out = _run([1, 0, 0, 0], [0, 0, 0, 0], valid=[1, 1, 0, 1])
    assert out[:2] == [1, 1] and np.isnan(out[2]) and out[3] == 0
