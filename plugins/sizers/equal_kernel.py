"""The equal sizer's array path as one numba pass (see :class:`qf_plugins.sizers.equal.EqualWeight`)."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def equal_weights_nb(signal_t, close_t, rows, gross, by_signal, allow_short):  # pragma: no cover - numba
    """Equal weights on rebalance rows ``rows``, all arrays symbol-major: ``signal_t[k, t]`` (``close_t``
    marks who is listed); returns ``w_t[k, j]`` for the ``j``-th rebalance row.

    Symbol-major because that is how pandas stores a float frame (``frame.to_numpy().T`` is a view):
    each pass below walks memory in order. Example::

        w = equal_weights_nb(sig.to_numpy().T, close.to_numpy().T, np.arange(len(sig)), 1.0, False, False).T
    """
    # per rebalance row: unusable scores (missing, not listed) are 0, shorts clipped unless allowed, then an
    # equal (or signal-scaled) share of ``gross`` among the non-zero names; the frame path's arithmetic
    # ((share / n) * gross) in the same order, and an all-zero row where no name is selected
    N, D = signal_t.shape[0], rows.shape[0]
    w = np.zeros((N, D))
    n = np.zeros(D, dtype=np.int64)
    for k in range(N):
        for j in range(D):
            r = rows[j]
            s = signal_t[k, r]
            if np.isnan(s) or np.isnan(close_t[k, r]) or (not allow_short and s < 0.0):
                s = 0.0
            if s != 0.0:
                n[j] += 1
            w[k, j] = s if by_signal else np.sign(s)
    for k in range(N):
        for j in range(D):
            w[k, j] = w[k, j] / n[j] * gross if n[j] > 0 else 0.0
    return w
