"""The observation: one function builds it for the env, the backtest and the live actor.

Layout (float32, length ``window * F + 4``): the last ``window`` rows of normalized
features, oldest first, flattened row by row; then the position state:

0. ``position``: the target position held (fraction of equity);
1. ``unrealized``: return of the open position since entry, in percent, clipped to +/-10;
2. ``bars_in_position``: ``log(1 + bars held) / 7``, clipped to [0, 2];
3. ``drawdown``: drawdown from peak equity times 10 (so 0.1 = 1 %), clipped to [0, 10].
"""

from __future__ import annotations

import math

import gymnasium as gym
import numba
import numpy as np
import numpy.typing as npt
from raytrade.envs.accounting import BARS_IN_POS, TARGET, drawdown, unrealized_return
from raytrade.envs.bars import FloatArray

N_POSITION_STATE = 4
POSITION_STATE_NAMES = ("position", "unrealized", "bars_in_position", "drawdown")


@numba.njit(cache=True)
def write_observation(z: npt.NDArray[np.float32], t: int, window: int, acct: FloatArray,
                      close: float, out: npt.NDArray[np.float32]) -> None:  # pragma: no cover
    """Write the observation at decision bar ``t`` into ``out``."""
    f = z.shape[1]
    k = window * f
    # the window's rows are contiguous in z (C order): one block copy
    out[:k] = z[t - window + 1:t + 1].reshape(k)
    out[k] = acct[TARGET]
    out[k + 1] = min(10.0, max(-10.0, unrealized_return(acct, close) * 100.0))
    out[k + 2] = min(2.0, math.log1p(acct[BARS_IN_POS]) / 7.0)
    out[k + 3] = min(10.0, drawdown(acct) * 10.0)


def observation_space(window: int, n_features: int, clip: float,
                      positions: tuple[float, ...], position_fraction: float) -> gym.spaces.Box:
    """The Box every observation lies in exactly."""
    lo_pos = min(0.0, min(positions) * position_fraction)
    hi_pos = max(0.0, max(positions) * position_fraction)
    low = np.concatenate([np.full(window * n_features, -clip), [lo_pos, -10.0, 0.0, 0.0]])
    high = np.concatenate([np.full(window * n_features, clip), [hi_pos, 10.0, 2.0, 10.0]])
    return gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
