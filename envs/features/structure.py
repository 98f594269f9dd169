"""Williams market structure: recursive swing highs and lows, confirmed causally.

Larry Williams' construction: a *short-term* (level 1) swing high is a bar whose high is
strictly above the highs of the bars on both sides; a level ``k + 1`` swing high is a level
``k`` swing high strictly above the level ``k`` swing highs on both sides of it. Swing lows
mirror this with lows. A swing point is *confirmed* only when its right-hand neighbour
exists, so a level-1 swing at bar ``i`` is known from the close of bar ``i + 1`` on, and a
higher-level swing only when the next lower-level swing has been confirmed. Nothing in this
kernel looks at a bar after the one it is processing.

For each level the kernel reports the last two confirmed swing highs and lows as: the last
swing high and low prices (for the distance features and the smart-money kernel), the
trend (+1 higher high and higher low, -1 lower high and lower low, 0 otherwise) and the
strength ``(log(H1 / H0) + log(L1 / L0)) / 2``. NaN until the level has its swings.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from raytrade.envs.bars import FloatArray

OUT_PER_LEVEL = 4  # last swing high price, last swing low price, trend, strength
_SEQ = 6  # per sequence level: high p2, high p1, high count, low p2, low p1, low count
_LVL = 4  # per output level: high last, high prev, low last, low prev (NaN = none yet)


def structure_state(levels: int) -> FloatArray:
    """Fresh state for ``levels`` levels (sequences 0..levels-1 feed levels 1..levels)."""
    state = np.zeros(levels * _SEQ + levels * _LVL, dtype=np.float64)
    state[levels * _SEQ:] = np.nan
    return state


@numba.njit(cache=True)
def _push(state: FloatArray, levels: int, seq: int, value: float,
          is_high: bool) -> None:  # pragma: no cover - compiled
    """Append ``value`` to sequence ``seq``; confirm a level ``seq + 1`` swing, recursively."""
    level = seq
    x = value
    while level < levels:
        base = level * _SEQ + (0 if is_high else 3)
        p2 = state[base]
        p1 = state[base + 1]
        count = state[base + 2]
        state[base] = p1
        state[base + 1] = x
        state[base + 2] = count + 1.0
        if count < 2.0:
            return
        swing = (p1 > p2 and p1 > x) if is_high else (p1 < p2 and p1 < x)
        if not swing:
            return
        out = levels * _SEQ + level * _LVL + (0 if is_high else 2)
        state[out + 1] = state[out]
        state[out] = p1
        level += 1
        x = p1


@numba.njit(cache=True)
def structure_kernel(state: FloatArray, x: FloatArray, levels: int,
                     out: FloatArray) -> None:  # pragma: no cover - compiled
    """Advance over OHLCV rows ``x[T, 5]``; write ``out[T, levels * 4]``."""
    nan = np.nan
    for t in range(x.shape[0]):
        if levels > 0:
            _push(state, levels, 0, x[t, 1], True)
            _push(state, levels, 0, x[t, 2], False)
        for level in range(levels):
            b = levels * _SEQ + level * _LVL
            h1 = state[b]
            h0 = state[b + 1]
            l1 = state[b + 2]
            l0 = state[b + 3]
            col = level * OUT_PER_LEVEL
            out[t, col] = h1
            out[t, col + 1] = l1
            if h0 == h0 and l0 == l0:  # both have two swings (NaN != NaN)
                if h1 > h0 and l1 > l0:
                    out[t, col + 2] = 1.0
                elif h1 < h0 and l1 < l0:
                    out[t, col + 2] = -1.0
                else:
                    out[t, col + 2] = 0.0
                out[t, col + 3] = 0.5 * (math.log(h1 / h0) + math.log(l1 / l0))
            else:
                out[t, col + 2] = nan
                out[t, col + 3] = nan
