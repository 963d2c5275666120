"""qf's inlined tolerance helpers equal vectorbt's own, bit for bit (the sweep kernel's fills depend on them)."""

from __future__ import annotations

import numpy as np
import pytest
from vectorbt.utils import math_ as vbt_math

from qf.engines.kernels import tolerance

EDGES = [0.0, -0.0, 1.0, -1.0, 1e-12, -1e-12, 2e-12, 1e-13, 1e9, 1e9 + 1, 1e9 + 2, 1e-300, 1e300, np.inf, -np.inf,
         np.nan, 0.1, 0.2, 0.30000000000000004, 5e-324, 1.7976931348623157e308]


def _pairs() -> list[tuple[float, float]]:
    rng = np.random.default_rng(7)
    pairs = [(a, b) for a in EDGES for b in EDGES]
    base = rng.normal(0, 1e3, 2000)
    # near-equal pairs straddle both tolerances (relative 1e-9, absolute 1e-12)
    for scale in (1e-13, 1e-12, 1e-10, 1e-9, 1e-8):
        noise = rng.normal(0, scale, base.size) * np.where(rng.random(base.size) < 0.5, 1.0, np.abs(base))
        pairs += list(zip(base, base + noise, strict=True)) + list(zip(base, -(base + noise), strict=True))
    return pairs


@pytest.mark.parametrize("name", ["is_close_nb", "is_close_or_less_nb", "is_less_nb", "add_nb"])
def test_inlined_helpers_equal_vectorbt(name: str) -> None:
    ours, theirs = getattr(tolerance, name), getattr(vbt_math, name)
    pairs = _pairs()
    got = np.array([ours(a, b) for a, b in pairs], dtype=float)
    want = np.array([theirs(a, b) for a, b in pairs], dtype=float)
    assert np.array_equal(got.view(np.int64), want.view(np.int64))  # bit for bit, signed zeros and NaNs too
    if name == "add_nb":  # the snapping branch is exercised, not only plain sums
        assert (got == 0.0).sum() > 100


def test_tolerances_are_vectorbts() -> None:
    assert (vbt_math.rel_tol, vbt_math.abs_tol) == (tolerance.REL_TOL, tolerance.ABS_TOL)
