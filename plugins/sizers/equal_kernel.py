"""The equal sizer's array path as one numba pass (see :class:`qf_plugins.sizers.equal.EqualWeight`)."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def equal_weights_nb(signal, close, rows, gross, by_signal, allow_short):  # pragma: no cover - numba
    """Equal weights on rebalance rows ``rows`` of ``signal`` (``close`` marks who is listed).

    Example::

        equal_weights_nb(sig, close, np.arange(len(sig)), 1.0, False, False)
    """
    # per rebalance row: unusable scores (missing, not listed) are 0, shorts clipped unless allowed, then an
    # equal (or signal-scaled) share of ``gross`` among the non-zero names; the frame path's arithmetic
    # ((share / n) * gross) in the same order, and an all-zero row where no name is selected
    D, N = rows.shape[0], signal.shape[1]
    w = np.zeros((D, N))
    for j in range(D):
        r = rows[j]
        n = 0
        for k in range(N):
            s = signal[r, k]
            if np.isnan(s) or np.isnan(close[r, k]) or (not allow_short and s < 0.0):
                s = 0.0
            if s != 0.0:
                n += 1
            w[j, k] = s if by_signal else np.sign(s)
        for k in range(N):
            w[j, k] = w[j, k] / n * gross if n > 0 else 0.0
    return w
