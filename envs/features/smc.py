"""Smart-money-concepts features on a confirmed swing structure (no look-ahead).

Why our own code: the popular ``smartmoneyconcepts`` package finds swings with a centred
window (it reads bars after the swing), which leaks the future into training; here every
input is a swing already confirmed by ``structure.py`` at the bar being processed.

Per bar, given the last confirmed swing high ``H`` and low ``L`` of the chosen level:
- Break of structure: a close above ``H`` (not broken before) is a bullish break, below
  ``L`` a bearish one. It is a *BOS* (``smc_bos`` = +1/-1) when it continues the current
  structure direction (or there is none yet), a *change of character* (``smc_choch``)
  when it reverses it. ``smc_dir`` is the direction after the bar.
- Order block: on a bullish break, the last bearish candle within ``ob_lookback`` bars
  before it becomes the active bullish block (its low..high zone); mirrored for bearish.
  A close through the far side of the zone invalidates it. ``smc_ob_side`` is +1, -1 or 0;
  ``smc_ob_dist = log(close / zone middle)``, 0 with no active block.
- Engulfing: the body of this bar engulfs the opposite-coloured body of the previous bar;
  ``smc_engulf = sign * min(body / previous body, 5)``, 0 when not engulfing.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from raytrade.envs.bars import FloatArray, OutArray

N_COLUMNS = 6
_HEADER = 10  # n, dir, broken high, broken low, ob side, ob top, ob bottom, prev o, prev c, spare


def smc_state(lookback: int) -> FloatArray:
    """Fresh state: a header and a ring of the last ``lookback`` candles (o, c, h, l)."""
    state = np.zeros(_HEADER + 4 * lookback, dtype=np.float64)
    state[2] = np.nan
    state[3] = np.nan
    return state


@numba.njit(cache=True)
def _last_candle(state: FloatArray, lookback: int, n: int,
                 bearish: bool) -> int:  # pragma: no cover - compiled
    """Ring slot of the newest earlier candle of the wanted colour, or -1."""
    for back in range(min(n, lookback)):
        slot = (n - 1 - back) % lookback
        base = _HEADER + 4 * slot
        o = state[base]
        c = state[base + 1]
        if (bearish and c < o) or (not bearish and c > o):
            return slot
    return -1


@numba.njit(cache=True)
def smc_kernel(state: FloatArray, x: FloatArray, swing_high: FloatArray,
               swing_low: FloatArray, lookback: int,
               out: OutArray) -> None:  # pragma: no cover - compiled
    """Advance over OHLCV rows ``x[T, 5]`` with the swing levels known at each row."""
    for t in range(x.shape[0]):
        o = x[t, 0]
        h = x[t, 1]
        lo = x[t, 2]
        c = x[t, 3]
        n = int(state[0])
        bos = 0.0
        choch = 0.0
        sh = swing_high[t]
        sl = swing_low[t]
        if sh == sh and c > sh and sh != state[2]:
            if state[1] < 0.0:
                choch = 1.0
            else:
                bos = 1.0
            state[1] = 1.0
            state[2] = sh
            slot = _last_candle(state, lookback, n, True)
            if slot >= 0:
                base = _HEADER + 4 * slot
                state[4] = 1.0
                state[5] = state[base + 2]
                state[6] = state[base + 3]
        elif sl == sl and c < sl and sl != state[3]:
            if state[1] > 0.0:
                choch = -1.0
            else:
                bos = -1.0
            state[1] = -1.0
            state[3] = sl
            slot = _last_candle(state, lookback, n, False)
            if slot >= 0:
                base = _HEADER + 4 * slot
                state[4] = -1.0
                state[5] = state[base + 2]
                state[6] = state[base + 3]
        if (state[4] > 0.0 and c < state[6]) or (state[4] < 0.0 and c > state[5]):
            state[4] = 0.0
        engulf = 0.0
        if n > 0:
            po = state[7]
            pc = state[8]
            body = abs(c - o)
            prev_body = abs(pc - po)
            ratio = 5.0 if prev_body == 0.0 else min(body / prev_body, 5.0)
            if c > o and pc < po and c >= po and o <= pc and body > prev_body:
                engulf = ratio
            elif c < o and pc > po and c <= po and o >= pc and body > prev_body:
                engulf = -ratio
        out[t, 0] = bos
        out[t, 1] = choch
        out[t, 2] = state[1]
        out[t, 3] = state[4]
        out[t, 4] = math.log(c / (0.5 * (state[5] + state[6]))) if state[4] != 0.0 else 0.0
        out[t, 5] = engulf
        base = _HEADER + 4 * (n % lookback)
        state[base] = o
        state[base + 1] = c
        state[base + 2] = h
        state[base + 3] = lo
        state[7] = o
        state[8] = c
        state[0] = n + 1
