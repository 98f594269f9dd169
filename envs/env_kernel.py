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
from raytrade.envs.accounting import ACCOUNT_SIZE, EQUITY, FEES, TARGET, TRADES, drawdown
from raytrade.envs.bars import FloatArray, IntArray
from raytrade.envs.costs import N_COST_PARAMS
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.execution import advance
from raytrade.envs.market import M_CLOSE, M_OPEN, M_QUOTE_VOLUME, M_SIGMA
from raytrade.envs.observation import write_observation
from raytrade.envs.rewards import REWARD_STATE_SIZE, reward_params, reward_step
from raytrade.envs.risk import EVENT_HALT

F32Array = npt.NDArray[np.float32]
N_RISK_PARAMS = 5
P_REWARD = N_COST_PARAMS + N_RISK_PARAMS
# after P_REWARD: ``rewards.reward_params``

# step outcome codes
DONE_NO, DONE_TERMINATED = 0, 1


def pack_params(config: EnvConfig) -> FloatArray:
    """The float64 parameter vector of ``config`` for the kernels."""
    return np.concatenate([
        config.costs.params(), config.risk.params(), reward_params(config)])


@numba.njit(cache=True)
def env_step_one(acct: FloatArray, pending: FloatArray, rstate: FloatArray, market: FloatArray,
                 z: npt.NDArray[np.float32], params: FloatArray, target: float, t: int,
                 window: int, obs: F32Array, decide_at: npt.NDArray[np.bool_],
                 last: int) -> tuple[float, int, int]:  # pragma: no cover - compiled
    """Decide ``target`` at bar ``t`` and hold it up to the next decision bar.

    Plays ``target`` bar by bar (``advance``: risk rules, fill, mark) from ``t`` until the
    next bar flagged in ``decide_at`` (``decision.decision_bars``), past ``last`` (the
    last decision bar of the episode), or a halt or ruin; the reward is the sum of the
    per-bar rewards. Returns ``(reward, terminated, bars played)`` and writes the
    observation of the bar after the last one played.
    """
    cp = params[:N_COST_PARAMS]
    rp = params[N_COST_PARAMS:P_REWARD]
    rwp = params[P_REWARD:]
    reward = 0.0
    done = DONE_NO
    tt = t
    while True:
        event = advance(acct, target, tt, market[M_OPEN], market[M_CLOSE],
                        market[M_QUOTE_VOLUME], market[M_SIGMA], cp, rp, pending)
        reward += reward_step(acct, rstate, rwp)
        if event == EVENT_HALT or acct[EQUITY] <= 0.0:
            done = DONE_TERMINATED
            break
        if tt + 1 > last or decide_at[tt + 1]:
            break
        tt += 1
    write_observation(z, tt + 1, window, acct, market[M_CLOSE, tt + 1], obs)
    return reward, done, tt + 1 - t


def scalar_state(latency_bars: int) -> FloatArray:
    """One float64 vector holding an env's account, reward state and pending targets.

    Fewer array arguments make each call from Python cheaper (numba checks every array
    argument's type on every call); ``scalar_step`` slices it back into its parts.
    """
    return np.zeros(ACCOUNT_SIZE + REWARD_STATE_SIZE + latency_bars)


@numba.njit(cache=True)
def scalar_step(state: FloatArray, market: FloatArray, z: F32Array, params: FloatArray,
                target: float, t: int, window: int, obs: F32Array,
                decide_at: npt.NDArray[np.bool_],
                last: int) -> tuple[float, int, float, int]:  # pragma: no cover - compiled
    """One step of one env whose parts live in one ``scalar_state`` vector.

    Returns ``(reward, done, drawdown, bars played)``; the drawdown comes from
    ``accounting.drawdown`` here so the env's info never needs a copy of the formula.
    """
    acct = state[:ACCOUNT_SIZE]
    rstate = state[ACCOUNT_SIZE:ACCOUNT_SIZE + REWARD_STATE_SIZE]
    pending = state[ACCOUNT_SIZE + REWARD_STATE_SIZE:]
    reward, done, bars = env_step_one(acct, pending, rstate, market, z, params, target, t,
                                      window, obs, decide_at, last)
    return reward, done, drawdown(acct), bars


# Columns of the per-env info matrix written by ``fill_infos``.
I_EQUITY, I_POSITION, I_FEES, I_TRADES, I_DRAWDOWN = range(5)
N_INFO = 5


@numba.njit(cache=True)
def fill_infos(acct: FloatArray, info: FloatArray) -> None:  # pragma: no cover - compiled
    """Equity, position, fees, trades and drawdown of every env into ``info[N, 5]``."""
    for i in range(acct.shape[0]):
        info[i, I_EQUITY] = acct[i, EQUITY]
        info[i, I_POSITION] = acct[i, TARGET]
        info[i, I_FEES] = acct[i, FEES]
        info[i, I_TRADES] = acct[i, TRADES]
        info[i, I_DRAWDOWN] = drawdown(acct[i])


@numba.njit(cache=True)
def vector_step(acct: FloatArray, pending: FloatArray, rstate: FloatArray, market: FloatArray,
                z: F32Array, params: FloatArray, positions: FloatArray, actions: IntArray,
                t: IntArray, steps: IntArray, last: IntArray, max_steps: int,
                needs_reset: npt.NDArray[np.bool_], window: int, obs: F32Array,
                rewards: FloatArray, terminated: npt.NDArray[np.bool_],
                truncated: npt.NDArray[np.bool_], restart: IntArray,
                decide_at: npt.NDArray[np.bool_]) -> int:  # pragma: no cover
    """Step every sub-environment once; return how many must be reset (NEXT_STEP autoreset).

    Sub-envs flagged in ``needs_reset`` are not stepped (their action is ignored): their
    indices go to ``restart`` for the caller to reset, with reward 0 and both flags False.
    The others play ``positions[actions[i]]`` from their bar ``t[i]`` (global index) to
    their next decision bar (``decide_at``, global too), advance ``t`` past the bars
    played and ``steps`` by one, and are flagged for reset when they terminate or are truncated
    (past ``last[i]`` or at ``max_steps``; 0 means no step limit). Returns -1 - i when
    ``actions[i]`` is invalid, before anything changed.
    """
    n = actions.shape[0]
    k = positions.shape[0]
    for i in range(n):
        if actions[i] < 0 or actions[i] >= k:
            return -1 - i
    count = 0
    for i in range(n):
        if needs_reset[i]:
            restart[count] = i
            count += 1
            rewards[i] = 0.0
            terminated[i] = False
            truncated[i] = False
            continue
        r, d, bars = env_step_one(acct[i], pending[i], rstate[i], market, z, params,
                                  positions[actions[i]], t[i], window, obs[i], decide_at,
                                  last[i])
        t[i] += bars
        steps[i] += 1
        term = d == DONE_TERMINATED
        trunc = (not term) and (t[i] > last[i] or (max_steps > 0 and steps[i] >= max_steps))
        rewards[i] = r
        terminated[i] = term
        truncated[i] = trunc
        needs_reset[i] = term or trunc
    return count
