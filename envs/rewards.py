"""Reward functions, chosen by ``EnvConfig.reward`` and shared by the scalar and vector envs.

With ``E`` the marked equity after the step and ``E'`` the one before:

- ``log_return``: ``log(E / E')``; -10 once equity is gone.
- ``differential_sharpe``: Moody and Saffell's differential Sharpe ratio of the simple
  return ``R = E / E' - 1`` with moving moments ``A += eta (R - A)``,
  ``B += eta (R^2 - B)``: ``(B dA - A dB / 2) / (B - A^2)^1.5``, 0 until the variance is
  positive, clipped to +/-10.
- ``drawdown_penalized``: ``log(E / E') - lambda * max(0, dd - dd')`` (fractions).
- ``turnover_penalty``: ``log(E / E') - kappa * |target - target'|`` on the held target.

Every reward is multiplied by ``reward_scale``. The reward's settings travel as one float64
vector (``reward_params``) that the env kernels and the paper trader's online learning both
pass to ``reward_step``, so the two cannot drift. Adding a reward parameter: a field in
``EnvConfig`` (``env_config.py``, typed and documented; the env spec, the RLlib boundary
and the bundle manifest carry every field) plus its slot in ``reward_params`` and its use
in ``reward_step`` here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numba
import numpy as np
from raytrade.envs.accounting import EQUITY, PREV_EQUITY, TARGET, drawdown
from raytrade.envs.bars import FloatArray

if TYPE_CHECKING:
    from raytrade.envs.env_config import EnvConfig

REWARD_CODES = {"log_return": 0, "differential_sharpe": 1, "drawdown_penalized": 2,
                "turnover_penalty": 3}
RS_A, RS_B, RS_PREV_DD, RS_PREV_TARGET = range(4)
REWARD_STATE_SIZE = 4
RP_KIND, RP_DSR_ETA, RP_DRAWDOWN, RP_TURNOVER, RP_SCALE = range(5)
N_REWARD_PARAMS = 5


def reward_params(config: EnvConfig) -> FloatArray:
    """The float64 vector ``reward_step`` reads: kind code, ``dsr_eta``, drawdown weight,
    turnover weight, ``reward_scale`` (the ``RP_*`` slots)."""
    out = np.empty(N_REWARD_PARAMS)
    out[RP_KIND] = REWARD_CODES[config.reward]
    out[RP_DSR_ETA] = config.dsr_eta
    out[RP_DRAWDOWN] = config.drawdown_penalty
    out[RP_TURNOVER] = config.turnover_penalty
    out[RP_SCALE] = config.reward_scale
    return out


@numba.njit(cache=True)
def reward_step(acct: FloatArray, rstate: FloatArray,
                params: FloatArray) -> float:  # pragma: no cover - compiled
    """The scaled reward of the step just marked (``params`` from ``reward_params``);
    updates the reward state."""
    kind = int(params[RP_KIND])
    eta = params[RP_DSR_ETA]
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
        out = log_ret - params[RP_DRAWDOWN] * max(0.0, dd - rstate[RS_PREV_DD])
    else:
        out = log_ret - params[RP_TURNOVER] * abs(target - rstate[RS_PREV_TARGET])
    rstate[RS_PREV_DD] = dd
    rstate[RS_PREV_TARGET] = target
    return float(out * params[RP_SCALE])
