"""Reward functions, chosen by ``EnvConfig.reward`` and shared by the scalar and vector envs.

With ``E`` the marked equity after the step and ``E'`` the one before:

- ``log_return``: ``log(E / E')``; -10 once equity is gone.
- ``differential_sharpe``: Moody and Saffell's differential Sharpe ratio of the simple
  return ``R = E / E' - 1`` with moving moments ``A += eta (R - A)``,
  ``B += eta (R^2 - B)``: ``(B dA - A dB / 2) / (B - A^2)^1.5``, 0 until the variance is
  positive, clipped to +/-10.
- ``drawdown_penalized``: ``log(E / E') - lambda * max(0, dd - dd')`` (fractions).
- ``turnover_penalty``: ``log(E / E') - kappa * |target - target'|`` on the held target.
"""

from __future__ import annotations

import math

import numba
from raytrade.envs.accounting import EQUITY, PREV_EQUITY, TARGET, drawdown
from raytrade.envs.bars import FloatArray

REWARD_CODES = {"log_return": 0, "differential_sharpe": 1, "drawdown_penalized": 2,
                "turnover_penalty": 3}
RS_A, RS_B, RS_PREV_DD, RS_PREV_TARGET = range(4)
REWARD_STATE_SIZE = 4


@numba.njit(cache=True)
def reward_step(kind: int, acct: FloatArray, rstate: FloatArray, eta: float, dd_weight: float,
                turnover_weight: float) -> float:  # pragma: no cover - compiled
    """The reward of the step just marked; updates the reward state."""
    e = acct[EQUITY]
    pe = acct[PREV_EQUITY]
    log_ret = math.log(e / pe) if e > 0.0 and pe > 0.0 else -10.0
    dd = drawdown(acct)
    target = acct[TARGET]
    if kind == 0:
        out = log_ret
    elif kind == 1:
        r = e / pe - 1.0 if pe > 0.0 else -1.0
        a = rstate[RS_A]
        b = rstate[RS_B]
        da = r - a
        db = r * r - b
        var = b - a * a
        out = (b * da - 0.5 * a * db) / var ** 1.5 if var > 1e-18 else 0.0
        out = min(10.0, max(-10.0, out))
        rstate[RS_A] = a + eta * da
        rstate[RS_B] = b + eta * db
    elif kind == 2:
        out = log_ret - dd_weight * max(0.0, dd - rstate[RS_PREV_DD])
    else:
        out = log_ret - turnover_weight * abs(target - rstate[RS_PREV_TARGET])
    rstate[RS_PREV_DD] = dd
    rstate[RS_PREV_TARGET] = target
    return out
