"""Reference-asset features: the reference's returns, and co-movement with it.

With closes ``c`` (asset) and ``b`` (reference, same open times), and 1-bar log returns
``r`` and ``q``:
- ``ref_ret_h = log(b_t / b_{t-h})``;
- ``ref_corr_n``: Pearson correlation of ``r`` and ``q`` over n bars (0 if either is flat);
- ``ref_beta_n = cov(r, q) / var(q)`` over n bars (0 if the reference is flat).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from raytrade.envs.bars import FloatArray, IntArray, OutArray

_HEADER = 3  # n, previous asset close, previous reference close


def reference_state(horizons: IntArray, window: int) -> FloatArray:
    """Fresh state: header, a ring of reference closes and two rings of returns."""
    ring = int(horizons.max()) + 1
    return np.zeros(_HEADER + ring + 2 * window, dtype=np.float64)


@numba.njit(cache=True)
def reference_kernel(state: FloatArray, close: FloatArray, ref_close: FloatArray,
                     horizons: IntArray, window: int,
                     out: OutArray) -> None:  # pragma: no cover - compiled
    """Advance over aligned closes; write ``out[T, len(horizons) + 2]``."""
    ring = horizons.max() + 1
    off_b = _HEADER
    off_r = off_b + ring
    off_q = off_r + window
    n_h = horizons.shape[0]
    nan = np.nan
    for t in range(close.shape[0]):
        c = close[t]
        b = ref_close[t]
        n = int(state[0])
        state[off_b + n % ring] = b
        if n > 0:
            state[off_r + (n - 1) % window] = math.log(c / state[1])
            state[off_q + (n - 1) % window] = math.log(b / state[2])
        for j in range(n_h):
            hz = horizons[j]
            out[t, j] = math.log(b / state[off_b + (n - hz) % ring]) if n >= hz else nan
        if n >= window:
            mr = 0.0
            mq = 0.0
            for k in range(window):
                mr += state[off_r + k]
                mq += state[off_q + k]
            mr /= window
            mq /= window
            srr = 0.0
            sqq = 0.0
            srq = 0.0
            for k in range(window):
                dr = state[off_r + k] - mr
                dq = state[off_q + k] - mq
                srr += dr * dr
                sqq += dq * dq
                srq += dr * dq
            out[t, n_h] = srq / math.sqrt(srr * sqq) if srr > 0.0 and sqq > 0.0 else 0.0
            out[t, n_h + 1] = srq / sqq if sqq > 0.0 else 0.0
        else:
            out[t, n_h] = nan
            out[t, n_h + 1] = nan
        state[0] = n + 1
        state[1] = c
        state[2] = b
