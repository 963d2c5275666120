"""vectorbt's float-tolerance helpers (``vectorbt.utils.math_``), as qf's own compiled functions.

The sweep kernel ports vectorbt's order execution operation by operation, and that arithmetic snaps
near-equal floats with these helpers: the same expressions with the same tolerances (read from
``vectorbt.utils.math_`` at import, so a vectorbt that changed them changes these too);
``tests/engines/test_tolerance.py`` holds each to vectorbt's bit for bit on edge cases and random values.
They are not compiled ``inline="always"``: that was ~10 % faster per combination but tripled the kernels'
first compile on a fresh install (14 -> 46 s of CPU before the first sweep row).

Example::

    add_nb(0.1, -0.1 + 1e-15)   # 0.0: the sum is within tolerance of zero, as in vectorbt
"""

from __future__ import annotations

import numba as nb
import numpy as np
from vectorbt.utils.math_ import abs_tol as ABS_TOL
from vectorbt.utils.math_ import rel_tol as REL_TOL

__all__ = ["ABS_TOL", "REL_TOL", "add_nb", "is_close_nb", "is_close_or_less_nb", "is_less_nb"]


@nb.njit(cache=True)
def is_close_nb(a: float, b: float) -> bool:
    """Whether ``a`` and ``b`` are approximately equal (vectorbt's ``is_close_nb``)."""
    if np.isnan(a) or np.isnan(b):
        return False
    if np.isinf(a) or np.isinf(b):
        return False
    if a == b:
        return True
    return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), ABS_TOL)


@nb.njit(cache=True)
def is_close_or_less_nb(a: float, b: float) -> bool:
    """Whether ``a`` is approximately less than or equal to ``b`` (vectorbt's ``is_close_or_less_nb``)."""
    if is_close_nb(a, b):
        return True
    return a < b


@nb.njit(cache=True)
def is_less_nb(a: float, b: float) -> bool:
    """Whether ``a`` is approximately less than ``b`` (vectorbt's ``is_less_nb``)."""
    if is_close_nb(a, b):
        return False
    return a < b


@nb.njit(cache=True)
def _is_addition_zero_nb(a: float, b: float) -> bool:
    if np.sign(a) != np.sign(b):
        return is_close_nb(abs(a), abs(b))
    return is_close_nb(a + b, 0.0)


@nb.njit(cache=True)
def add_nb(a: float, b: float) -> float:
    """``a + b``, exactly 0.0 when the sum is within tolerance of zero (vectorbt's ``add_nb``)."""
    if _is_addition_zero_nb(a, b):
        return 0.0
    return a + b
