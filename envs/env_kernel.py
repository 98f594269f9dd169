"""The environment step, written once and used by the scalar and the vector envs.

``env_step_one`` plays one decision for one environment: the shared ``advance`` (risk
rules, fill at the next open, mark at its close), the configured reward, and the next
observation written in place. ``scalar_step`` wraps it for ``TradingEnv``; ``vector_step``
loops it over all sub-environments of ``VectorTradingEnv`` in one compiled call.

``params`` packs the cost parameters (``costs.params()``), the risk parameters
(``risk.params()``) and the reward settings, in that order (``pack_params``).
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt
from raytrade.envs.accounting import EQUITY
from raytrade.envs.bars import FloatArray, IntArray
from raytrade.envs.costs import N_COST_PARAMS
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.execution import advance
from raytrade.envs.market import M_CLOSE, M_OPEN, M_QUOTE_VOLUME, M_SIGMA
from raytrade.envs.observation import write_observation
from raytrade.envs.rewards import REWARD_CODES, reward_step
from raytrade.envs.risk import EVENT_HALT

F32Array = npt.NDArray[np.float32]
N_RISK_PARAMS = 5
P_REWARD = N_COST_PARAMS + N_RISK_PARAMS
N_PARAMS = P_REWARD + 4  # reward kind, dsr eta, drawdown weight, turnover weight

# step outcome codes
DONE_NO, DONE_TERMINATED = 0, 1


def pack_params(config: EnvConfig) -> FloatArray:
    """The float64 parameter vector of ``config`` for the kernels."""
    return np.concatenate([
        config.costs.params(), config.risk.params(),
        [float(REWARD_CODES[config.reward]), config.dsr_eta, config.drawdown_penalty,
         config.turnover_penalty]])


@numba.njit(cache=True)
def env_step_one(acct: FloatArray, pending: FloatArray, rstate: FloatArray, market: FloatArray,
                 z: npt.NDArray[np.float32], params: FloatArray, target: float, t: int,
                 window: int, obs: F32Array) -> tuple[float, int]:  # pragma: no cover
    """Decide ``target`` at bar ``t``; return ``(reward, terminated)``; write obs at ``t + 1``."""
    cp = params[:N_COST_PARAMS]
    rp = params[N_COST_PARAMS:P_REWARD]
    event = advance(acct, target, t, market[M_OPEN], market[M_CLOSE], market[M_QUOTE_VOLUME],
                    market[M_SIGMA], cp, rp, pending)
    reward = reward_step(int(params[P_REWARD]), acct, rstate, params[P_REWARD + 1],
                         params[P_REWARD + 2], params[P_REWARD + 3])
    write_observation(z, t + 1, window, acct, market[M_CLOSE, t + 1], obs)
    done = DONE_TERMINATED if (event == EVENT_HALT or acct[EQUITY] <= 0.0) else DONE_NO
    return reward, done


@numba.njit(cache=True)
def scalar_step(acct: FloatArray, pending: FloatArray, rstate: FloatArray, market: FloatArray,
                z: npt.NDArray[np.float32], params: FloatArray, target: float, t: int,
                window: int, obs: npt.NDArray[np.float32]) -> tuple[float, int]:  # pragma: no cover
    """One step of one env (a direct call keeps the scalar env's overhead minimal)."""
    return env_step_one(acct, pending, rstate, market, z, params, target, t, window, obs)


@numba.njit(cache=True)
def vector_step(acct: FloatArray, pending: FloatArray, rstate: FloatArray, market: FloatArray,
                z: npt.NDArray[np.float32], params: FloatArray, targets: FloatArray,
                t: IntArray, active: npt.NDArray[np.bool_], window: int,
                obs: F32Array, rewards: FloatArray,
                done: npt.NDArray[np.int8]) -> None:  # pragma: no cover
    """Step every active sub-environment ``i`` at its bar ``t[i]`` (global market indices)."""
    for i in range(targets.shape[0]):
        if not active[i]:
            continue
        r, d = env_step_one(acct[i], pending[i], rstate[i], market, z, params, targets[i],
                            t[i], window, obs[i])
        rewards[i] = r
        done[i] = d
