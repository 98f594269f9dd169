"""VectorTradingEnv: N trading environments stepped by one compiled loop.

## Description
``num_envs`` independent copies of :class:`TradingEnv` (or of MultiDatasetTradingEnv when
several datasets are given) whose accounting, rewards and observations are computed by
one numba call per step (``env_kernel.vector_step``, the same per-environment step the
scalar env runs). Sub-environment ``i`` has its own random generator seeded with
``seed + i``, exactly as gymnasium's ``SyncVectorEnv`` seeds its copies, so on the same
seeds and actions it returns what N scalar envs return.

## Spaces
``single_observation_space`` and ``single_action_space`` are those of TradingEnv;
``observation_space`` is their batch (``Box`` of shape ``[N, D]``), ``action_space`` is
``MultiDiscrete([len(positions)] * N)``.

## Autoreset
gymnasium's ``NEXT_STEP`` mode, as RLlib's env runners expect: after a sub-environment
ends, its next ``step`` ignores its action, resets it and returns the first observation
of the new episode with reward 0 and ``terminated = truncated = False``.

## Usage with RLlib
``config.environment(...).env_runners(gym_env_vectorize_mode="VECTOR_ENTRY_POINT")`` with
the registered id ``raytrade/Trading-v0`` (see ``registration.py``).

## Version History
- v0: initial version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from raytrade.envs.accounting import BORROW, HALTED, SLIPPAGE, TURNOVER, new_account
from raytrade.envs.decision import decision_bars
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.env_kernel import (
    I_DRAWDOWN,
    I_EQUITY,
    I_FEES,
    I_POSITION,
    I_TRADES,
    N_INFO,
    fill_infos,
    pack_params,
    vector_step,
)
from raytrade.envs.episodes import bar_interval_ms, draw_start
from raytrade.envs.errors import ConfigError
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.market import M_CLOSE, MarketData
from raytrade.envs.observation import observation_space, write_observation
from raytrade.envs.rewards import REWARD_STATE_SIZE
from raytrade.envs.trading_env import as_config, build_markets


class VectorTradingEnv(gym.vector.VectorEnv[npt.NDArray[np.float32], npt.NDArray[np.int64],
                                            npt.NDArray[Any]]):
    """N trading environments in one array program (full spec in the module docstring)."""

    metadata: dict[str, Any] = {  # noqa: RUF012 - gymnasium API
        "autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 64, markets: Sequence[MarketData] | None = None, *,
                 data: Sequence[str] | str | None = None, split: str = "train",
                 reference: str | None = None,
                 config: EnvConfig | Mapping[str, Any] | None = None,
                 spec: FeatureSpec | None = None) -> None:
        if num_envs < 1:
            raise ConfigError("num_envs must be >= 1")
        self.config = cfg = as_config(config)
        self.markets, clip = build_markets(markets, data, split, reference, cfg, spec)
        widths = {m.z.shape[1] for m in self.markets}
        if len(widths) != 1:
            raise ConfigError(f"markets have different feature counts {sorted(widths)}")
        self.num_envs = num_envs
        self.single_action_space = gym.spaces.Discrete(len(cfg.positions))
        self.single_observation_space = observation_space(
            cfg.window, widths.pop(), clip, cfg.positions, cfg.risk.position_fraction)
        self.action_space = gym.spaces.MultiDiscrete([len(cfg.positions)] * num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        # all datasets in one global array; sub-env bars are global indices
        self._offsets = np.cumsum([0] + [len(m.ts) for m in self.markets[:-1]])
        self._z = np.ascontiguousarray(np.concatenate([m.z for m in self.markets]))
        self._market = np.ascontiguousarray(np.concatenate([m.market for m in self.markets],
                                                           axis=1))
        self._ts = np.concatenate([m.ts for m in self.markets])
        self._decide_at = np.concatenate([
            decision_bars(m.ts, bar_interval_ms(m), cfg.decision.every_bars)
            for m in self.markets])
        self._positions = np.asarray(cfg.positions, dtype=np.float64)
        self._params = pack_params(cfg)
        self._dim = int(self.single_observation_space.shape[0])
        self._acct = np.tile(new_account(cfg.initial_equity), (num_envs, 1))
        self._pending = np.zeros((num_envs, cfg.latency_bars))
        self._rstate = np.zeros((num_envs, REWARD_STATE_SIZE))
        self._t = np.zeros(num_envs, dtype=np.int64)
        self._last = np.zeros(num_envs, dtype=np.int64)
        self._dataset = np.zeros(num_envs, dtype=np.int64)
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._needs_reset = np.ones(num_envs, dtype=bool)
        self._rngs: list[np.random.Generator] = [np.random.default_rng() for _ in
                                                 range(num_envs)]
        self._obs = np.zeros((num_envs, self._dim), dtype=np.float32)
        self._restart = np.zeros(num_envs, dtype=np.int64)

    def _reset_one(self, i: int, options: dict[str, Any] | None,
                   out: npt.NDArray[np.float32]) -> None:
        """Start a new episode in sub-env ``i``; write its first observation into ``out``."""
        dataset = None if options is None else options.get("dataset")
        start = None if options is None else options.get("start")
        d, t0 = draw_start(self._rngs[i], self.markets, self.config, dataset, start)
        off = int(self._offsets[d])
        self._dataset[i] = d
        self._t[i] = off + t0
        self._last[i] = off + self.markets[d].last
        self._steps[i] = 0
        self._acct[i] = new_account(self.config.initial_equity)
        self._pending[i] = 0.0
        self._rstate[i] = 0.0
        write_observation(self._z, int(self._t[i]), self.config.window, self._acct[i],
                          self._market[M_CLOSE, self._t[i]], out)
        self._needs_reset[i] = False

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None
              ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        """Reset every sub-env (or those in ``options["reset_mask"]``)."""
        if seed is not None:
            seeds = seed if isinstance(seed, list) else [seed + i for i in range(self.num_envs)]
            if len(seeds) != self.num_envs:
                raise ConfigError(f"need {self.num_envs} seeds, got {len(seeds)}")
            for i, s in enumerate(seeds):
                if s is not None:
                    self._rngs[i] = np.random.default_rng(s)
        mask = np.ones(self.num_envs, dtype=bool)
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
        # never write into an array already returned: it belongs to the caller now
        obs = self._obs.copy()
        for j in np.flatnonzero(mask):
            self._reset_one(int(j), options, obs[j])
        self._obs = obs
        return obs, self._infos()

    def step(self, actions: npt.ArrayLike
             ) -> tuple[npt.NDArray[np.float32], npt.NDArray[Any], npt.NDArray[Any],
                        npt.NDArray[Any], dict[str, Any]]:
        n = self.num_envs
        a = np.asarray(actions)
        if a.dtype != np.int64:
            a = a.astype(np.int64)
        a = a.reshape(-1)
        if a.shape[0] != n:
            raise ValueError(f"need {n} actions, got {a.shape[0]}")
        obs = np.empty((n, self._dim), dtype=np.float32)
        rewards = np.empty(n)
        terminated = np.empty(n, dtype=bool)
        truncated = np.empty(n, dtype=bool)
        limit = self.config.max_episode_steps or 0
        count = vector_step(self._acct, self._pending, self._rstate, self._market, self._z,
                            self._params, self._positions, a, self._t, self._steps,
                            self._last, limit, self._needs_reset, self.config.window, obs,
                            rewards, terminated, truncated, self._restart, self._decide_at)
        if count < 0:
            raise ValueError(f"action {a[-1 - count]!r} of sub-env {-1 - count} outside "
                             f"Discrete({len(self._positions)})")
        for j in self._restart[:count]:
            self._reset_one(int(j), None, obs[j])
        self._obs = obs
        return obs, rewards, terminated, truncated, self._infos()

    def _infos(self) -> dict[str, Any]:
        info = np.empty((self.num_envs, N_INFO))
        fill_infos(self._acct, info)
        return {"equity": info[:, I_EQUITY], "position": info[:, I_POSITION],
                "fees": info[:, I_FEES], "trades": info[:, I_TRADES].astype(np.int64),
                "slippage": self._acct[:, SLIPPAGE].copy(),
                "borrow": self._acct[:, BORROW].copy(),
                "traded_notional": self._acct[:, TURNOVER].copy(),
                "halted": self._acct[:, HALTED] != 0.0,
                "drawdown": info[:, I_DRAWDOWN],
                "bar": self._t - self._offsets[self._dataset], "ts": self._ts[self._t]}
