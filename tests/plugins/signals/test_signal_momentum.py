"""momentum: sign and rank scores of the skipped lookback return, and top_n."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from qf.bars import Bars
from qf_plugins.signals.momentum import Momentum

IDX = pd.bdate_range("2024-01-01", periods=6)


def _bars(data: dict[str, list[float]]) -> Bars:
    return Bars(close=pd.DataFrame(data, index=IDX, dtype=float))


# with lookback=2, skip=1 the score on row t is from close[t-3] to close[t-1]; close[t] is ignored
PRICES = {
    "UP": [10, 11, 12, 13, 14, 1],  # rising (the crash on the last bar is skipped)
    "DOWN": [10, 9, 8, 7, 6, 100],  # falling
    "FLAT": [10, 10, 10, 10, 10, 10],
}


def test_sign_uses_the_skipped_window() -> None:
    model = Momentum({"lookback": 2, "skip": 1})
    out = model.compute(_bars(PRICES))
    assert model.warmup == 3
    assert out.iloc[:3].isna().all().all()
    assert out.iloc[3:]["UP"].tolist() == [1, 1, 1]
    assert out.iloc[3:]["DOWN"].tolist() == [-1, -1, -1]
    assert out.iloc[3:]["FLAT"].tolist() == [0, 0, 0]


def test_rank_scales_linearly_to_minus_one_one() -> None:
    out = Momentum({"lookback": 2, "skip": 1, "mode": "rank"}).compute(_bars(PRICES))
    assert out.iloc[-1].to_dict() == {"UP": 1.0, "DOWN": -1.0, "FLAT": 0.0}


def test_rank_leaves_out_symbols_without_history() -> None:
    data = {**PRICES, "NEW": [np.nan, np.nan, np.nan, 10, 20, 30]}
    out = Momentum({"lookback": 2, "skip": 0, "mode": "rank"}).compute(_bars(data))
    # NEW has its first 2-bar return only on the last row: until then three names are ranked
    assert out["NEW"].iloc[:5].isna().all()
    assert out.iloc[4][["UP", "DOWN", "FLAT"]].tolist() == [1.0, -1.0, 0.0]
    # last row, four names: DOWN +1150% (the jump), NEW +200%, FLAT 0%, UP -92% (the crash)
    np.testing.assert_allclose(out.iloc[-1][["DOWN", "NEW", "FLAT", "UP"]], [1, 1 / 3, -1 / 3, -1])


def test_rank_with_a_single_symbol_falls_back_to_sign() -> None:
    out = Momentum({"lookback": 2, "skip": 1, "mode": "rank"}).compute(_bars({"DOWN": PRICES["DOWN"]}))
    assert out["DOWN"].iloc[3:].tolist() == [-1, -1, -1]


def test_top_n_keeps_only_the_best() -> None:
    out = Momentum({"lookback": 2, "skip": 1, "mode": "rank", "top_n": 1}).compute(_bars(PRICES))
    assert out.iloc[-1].to_dict() == {"UP": 1.0, "DOWN": 0.0, "FLAT": 0.0}
    out = Momentum({"lookback": 2, "skip": 1, "top_n": 2}).compute(_bars(PRICES))
    assert out.iloc[-1].to_dict() == {"UP": 1.0, "DOWN": 0.0, "FLAT": 0.0}
    assert out.iloc[:3].isna().all().all()


@pytest.mark.parametrize(
    ("params", "field"),
    [({"lookback": 0}, "lookback"), ({"skip": -1}, "skip"), ({"mode": "zscore"}, "mode"), ({"top_n": 0}, "top_n")],
)
def test_params_validation(params: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Momentum(params)
