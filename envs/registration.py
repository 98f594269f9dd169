"""Registered environment ids, and the creator RLlib calls on every env runner.

- ``raytrade/Trading-v0``: :class:`TradingEnv`, with ``VectorTradingEnv`` as its vector
  entry point (``gym.make_vec(..., vectorization_mode="vector_entry_point")``);
- ``raytrade/MultiDatasetTrading-v0``: :class:`MultiDatasetTradingEnv`, same vector env.

Bump ``ENV_VERSION`` when reward, observation or cost semantics change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
from raytrade.envs.env_spec import EnvSpec
from raytrade.envs.multi_dataset_env import MultiDatasetTradingEnv
from raytrade.envs.trading_env import TradingEnv
from raytrade.envs.vector_env import VectorTradingEnv

ENV_VERSION = 0
"""Version of the envs' reward, observation and cost semantics (the ``-vN`` of the ids)."""
TRADING_ID = f"raytrade/Trading-v{ENV_VERSION}"
MULTI_ID = f"raytrade/MultiDatasetTrading-v{ENV_VERSION}"


def register_envs() -> None:
    """Register the ids (idempotent)."""
    if TRADING_ID not in gym.registry:
        gym.register(TRADING_ID, entry_point="raytrade.envs.trading_env:TradingEnv",
                     vector_entry_point="raytrade.envs.vector_env:VectorTradingEnv")
    if MULTI_ID not in gym.registry:
        gym.register(MULTI_ID, entry_point="raytrade.envs.multi_dataset_env:MultiDatasetTradingEnv",
                     vector_entry_point="raytrade.envs.vector_env:VectorTradingEnv")


def env_id(spec: EnvSpec) -> str:
    """The registered id of the env ``spec`` builds."""
    return MULTI_ID if spec.several else TRADING_ID


def make_env(env_config: Mapping[str, Any]) -> gym.Env[Any, Any] | VectorTradingEnv:
    """RLlib env creator: ``env_config`` is ``EnvSpec.env_config(split)`` (plus RLlib's
    ``num_envs`` when it wants a vector env); anything else is refused. Several data
    sources give the multi-dataset env. The markets come from the spec's normalizer,
    fitted once in the driver, never refitted here."""
    spec, split, num_envs = EnvSpec.from_env_config(env_config)
    markets = spec.markets(split)
    if num_envs is not None:
        return VectorTradingEnv(num_envs, markets, config=spec.env)
    if spec.several:
        return MultiDatasetTradingEnv(markets, config=spec.env)
    return TradingEnv(markets, config=spec.env)


register_envs()
