"""Found by adversarial testing: a sweep whose combinations never trade (identical, all-zero returns) reported
PBO 1.0 ("certainly overfit") in best.json and on sweep.html; with nothing to choose between, PBO is not
computed and the reason says why."""

from __future__ import annotations

import numpy as np
import pandas as pd

from qf.research.cpcv import sweep_pbo

IDX = pd.bdate_range("2020-01-01", periods=280)


def test_identical_combinations_have_no_pbo() -> None:
    grid = pd.DataFrame({"execution.min_order_value": [1e9, 2e9]})
    flat = pd.Series(0.0, index=IDX)
    res, reason = sweep_pbo(None, None, grid, [flat, flat.copy()])  # type: ignore[arg-type]
    assert res is None
    assert reason == "PBO not computed: every combination has the same returns, so none is chosen over another"


def test_different_combinations_still_get_a_pbo() -> None:
    rng = np.random.default_rng(3)
    grid = pd.DataFrame({"signal.params.fast": [2, 3, 4]})
    series = [pd.Series(rng.normal(0, 0.01, len(IDX)), index=IDX) for _ in range(3)]
    res, reason = sweep_pbo(None, None, grid, series)  # type: ignore[arg-type]
    assert res is not None and 0.0 <= res.pbo <= 1.0 and reason == ""
