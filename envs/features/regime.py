"""Market-regime features: trend (efficiency ratio) and volatility regime.

- ``regime_er``: Kaufman's efficiency ratio over ``n`` bars, signed by direction:
  ``(c_t - c_{t-n}) / sum |c_i - c_{i-1}|``, in [-1, 1]; 0 when nothing moved.
- ``regime_vol_ratio``: ``log(rv_short / rv_long)`` with ``rv = sqrt(mean(r^2))`` of 1-bar
  log returns over the short and long windows; 0 when both are zero.
- One-hot regime: *trending* when ``|er| >= er_threshold``, else *volatile* when
  ``rv_short / rv_long >= vol_ratio_threshold``, else *ranging*.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from raytrade.envs.bars import FloatArray, OutArray

N_COLUMNS = 5
_HEADER = 2  # n, previous close


def regime_state(window: int, vol_long: int) -> FloatArray:
    """Fresh state: header, a ring of ``window + 1`` closes, a ring of squared returns."""
    return np.zeros(_HEADER + window + 1 + vol_long, dtype=np.float64)


@numba.njit(cache=True)
def regime_kernel(state: FloatArray, close: FloatArray, window: int, vol_short: int,
                  vol_long: int, er_threshold: float, vol_threshold: float,
                  out: OutArray) -> None:  # pragma: no cover - compiled
    """Advance over closes; write ``out[T, 5]``."""
    ring = window + 1
    off_c = _HEADER
    off_q = off_c + ring
    nan = np.nan
    for t in range(close.shape[0]):
        c = close[t]
        n = int(state[0])
        state[off_c + n % ring] = c
        if n > 0:
            r = math.log(c / state[1])
            state[off_q + (n - 1) % vol_long] = r * r
        er = nan
        if n >= window:
            path = 0.0
            for k in range(window):
                path += abs(state[off_c + (n - k) % ring] - state[off_c + (n - k - 1) % ring])
            move = c - state[off_c + (n - window) % ring]
            er = move / path if path > 0.0 else 0.0
        ratio = nan
        if n >= vol_long:
            short = 0.0
            for k in range(vol_short):
                short += state[off_q + (n - 1 - k) % vol_long]
            long_ = 0.0
            for k in range(vol_long):
                long_ += state[off_q + k]
            rs = math.sqrt(short / vol_short)
            rl = math.sqrt(long_ / vol_long)
            if rl > 0.0 and rs > 0.0:
                ratio = rs / rl
            elif rl == 0.0 and rs == 0.0:
                ratio = 1.0
            else:
                ratio = 1e-12 if rs == 0.0 else 1e12
        out[t, 0] = er
        out[t, 1] = math.log(ratio) if ratio == ratio else nan
        if er == er and ratio == ratio:
            trending = abs(er) >= er_threshold
            volatile = (not trending) and ratio >= vol_threshold
            out[t, 2] = 1.0 if trending else 0.0
            out[t, 3] = 1.0 if (not trending and not volatile) else 0.0
            out[t, 4] = 1.0 if volatile else 0.0
        else:
            out[t, 2] = nan
            out[t, 3] = nan
            out[t, 4] = nan
        state[0] = n + 1
        state[1] = c
