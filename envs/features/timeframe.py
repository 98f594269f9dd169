"""Per-timeframe indicators as one forward-only numba kernel with explicit state.

The same kernel serves the base timeframe and every higher timeframe, and serves batch
(all bars in one call) and streaming (one bar per call) alike: state carries everything
between calls, so results are bit-identical however the bars are chunked.

Definitions (n = window or period, c = close, r = 1-bar log return):
- ``ret_h = log(c_t / c_{t-h})``.
- ``rvol_n = sqrt(mean(r^2))`` over the last n returns.
- RSI: Wilder's, as TA-Lib computes it: first averages are the mean gain and loss of the
  first n changes, then ``avg = (avg * (n - 1) + x) / n``; rescaled ``(rsi - 50) / 50``;
  0 (neutral) when there was no change at all.
- MACD: EMAs with ``alpha = 2 / (span + 1)`` seeded with the first value (pandas
  ``ewm(adjust=False)``); ``macd = (ema_fast - ema_slow) / c``,
  ``macd_hist = (line - signal) / c``.
- ATR: Wilder's, as TA-Lib: true range from the second bar, first ATR the mean of the
  first n true ranges; divided by c.
- ``bb_z = (c - mean) / std`` over n closes (population std, as Bollinger and TA-Lib).
- ``vol_z``: the same z-score of ``log(1 + volume)``; 0 when the window is constant.
- Candle shape: ``(c - o) / (h - l)``, ``(h - max(o, c)) / (h - l)``,
  ``(min(o, c) - l) / (h - l)``; 0 for a bar with no range.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt
from raytrade.envs.bars import FloatArray, IntArray, OutArray

N_SCALAR_COLUMNS = 10  # rvol, rsi, macd, macd_hist, atr, bb_z, vol_z, body, upper, lower
_HEADER = 8  # n, prev close, ema fast, ema slow, ema signal, rsi gain, rsi loss, atr


def timeframe_params(horizons: tuple[int, ...], vol_window: int, rsi_period: int,
                     macd_fast: int, macd_slow: int, macd_signal: int, atr_period: int,
                     bb_window: int, volume_window: int) -> tuple[IntArray, IntArray]:
    """Kernel parameter arrays: ``(horizons, params)``; params end with the close-ring size."""
    ring = max(max(horizons), bb_window) + 1
    params = np.array([vol_window, rsi_period, macd_fast, macd_slow, macd_signal, atr_period,
                       bb_window, volume_window, ring], dtype=np.int64)
    return np.asarray(horizons, dtype=np.int64), params


def timeframe_state(params: IntArray) -> FloatArray:
    """Fresh kernel state for the given parameter array."""
    vol_w, vz_n, ring = int(params[0]), int(params[7]), int(params[8])
    return np.zeros(_HEADER + ring + vol_w + vz_n, dtype=np.float64)


def n_columns(horizons: npt.NDArray[np.int64]) -> int:
    """Output columns of the kernel: one per horizon plus the scalar indicators."""
    return len(horizons) + N_SCALAR_COLUMNS


@numba.njit(cache=True)
def timeframe_kernel(state: FloatArray, x: FloatArray, horizons: IntArray, params: IntArray,
                     out: OutArray) -> None:  # pragma: no cover - compiled
    """Advance the state over OHLCV rows ``x[T, 5]``, writing ``out[T, n_columns]``."""
    vol_w = params[0]
    rsi_n = params[1]
    a_fast = 2.0 / (params[2] + 1.0)
    slow = params[3]
    a_slow = 2.0 / (slow + 1.0)
    sig_n = params[4]
    a_sig = 2.0 / (sig_n + 1.0)
    atr_n = params[5]
    bb_n = params[6]
    vz_n = params[7]
    ring = params[8]
    off_c = 8
    off_r = off_c + ring
    off_v = off_r + vol_w
    n_h = horizons.shape[0]
    nan = np.nan
    for t in range(x.shape[0]):
        o = x[t, 0]
        h = x[t, 1]
        lo = x[t, 2]
        c = x[t, 3]
        v = x[t, 4]
        n = int(state[0])  # bars seen before this one
        state[off_c + n % ring] = c
        state[off_v + n % vz_n] = math.log1p(v)
        if n == 0:
            state[2] = c
            state[3] = c
            state[4] = 0.0
        else:
            pc = state[1]
            state[off_r + (n - 1) % vol_w] = math.log(c / pc)
            d = c - pc
            gain = d if d > 0.0 else 0.0
            loss = -d if d < 0.0 else 0.0
            if n <= rsi_n:
                state[5] += gain
                state[6] += loss
                if n == rsi_n:
                    state[5] /= rsi_n
                    state[6] /= rsi_n
            else:
                state[5] = (state[5] * (rsi_n - 1) + gain) / rsi_n
                state[6] = (state[6] * (rsi_n - 1) + loss) / rsi_n
            tr = max(h - lo, abs(h - pc), abs(lo - pc))
            if n <= atr_n:
                state[7] += tr
                if n == atr_n:
                    state[7] /= atr_n
            else:
                state[7] = (state[7] * (atr_n - 1) + tr) / atr_n
            state[2] += a_fast * (c - state[2])
            state[3] += a_slow * (c - state[3])
            state[4] += a_sig * ((state[2] - state[3]) - state[4])
        seen = n + 1
        col = 0
        for j in range(n_h):
            hz = horizons[j]
            out[t, col] = math.log(c / state[off_c + (n - hz) % ring]) if n >= hz else nan
            col += 1
        if n >= vol_w:
            acc = 0.0
            for k in range(vol_w):
                r = state[off_r + k]
                acc += r * r
            out[t, col] = math.sqrt(acc / vol_w)
        else:
            out[t, col] = nan
        col += 1
        if n >= rsi_n:
            total = state[5] + state[6]
            out[t, col] = (state[5] - state[6]) / total if total > 0.0 else 0.0
        else:
            out[t, col] = nan
        col += 1
        line = state[2] - state[3]
        out[t, col] = line / c if seen >= slow else nan
        col += 1
        out[t, col] = (line - state[4]) / c if seen >= slow + sig_n - 1 else nan
        col += 1
        out[t, col] = state[7] / c if n >= atr_n else nan
        col += 1
        if seen >= bb_n:
            mean = 0.0
            for k in range(bb_n):
                mean += state[off_c + (n - k) % ring]
            mean /= bb_n
            var = 0.0
            for k in range(bb_n):
                dev = state[off_c + (n - k) % ring] - mean
                var += dev * dev
            sd = math.sqrt(var / bb_n)
            out[t, col] = (c - mean) / sd if sd > 0.0 else 0.0
        else:
            out[t, col] = nan
        col += 1
        if seen >= vz_n:
            mean = 0.0
            for k in range(vz_n):
                mean += state[off_v + k]
            mean /= vz_n
            var = 0.0
            for k in range(vz_n):
                dev = state[off_v + k] - mean
                var += dev * dev
            sd = math.sqrt(var / vz_n)
            out[t, col] = (state[off_v + n % vz_n] - mean) / sd if sd > 1e-12 else 0.0
        else:
            out[t, col] = nan
        col += 1
        rng = h - lo
        if rng > 0.0:
            out[t, col] = (c - o) / rng
            out[t, col + 1] = (h - max(o, c)) / rng
            out[t, col + 2] = (min(o, c) - lo) / rng
        else:
            out[t, col] = 0.0
            out[t, col + 1] = 0.0
            out[t, col + 2] = 0.0
        state[0] = seen
        state[1] = c
