"""Registered environment ids, and the creator RLlib calls on every env runner.

- ``raytrade/Trading-v0``: :class:`TradingEnv`, with ``VectorTradingEnv`` as its vector
  entry point (``gym.make_vec(..., vectorization_mode="vector_entry_point")``);
- ``raytrade/MultiDatasetTrading-v0``: :class:`MultiDatasetTradingEnv`, same vector env.

Bump the version when reward, observation or cost semantics change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.multi_dataset_env import MultiDatasetTradingEnv
from raytrade.envs.trading_env import TradingEnv
from raytrade.envs.vector_env import VectorTradingEnv

TRADING_ID = "raytrade/Trading-v0"
MULTI_ID = "raytrade/MultiDatasetTrading-v0"


def register_envs() -> None:
    """Register the ids (idempotent)."""
    if TRADING_ID not in gym.registry:
        gym.register(TRADING_ID, entry_point="raytrade.envs.trading_env:TradingEnv",
                     vector_entry_point="raytrade.envs.vector_env:VectorTradingEnv")
    if MULTI_ID not in gym.registry:
        gym.register(MULTI_ID, entry_point="raytrade.envs.multi_dataset_env:MultiDatasetTradingEnv",
                     vector_entry_point="raytrade.envs.vector_env:VectorTradingEnv")


def make_env(env_config: Mapping[str, Any]) -> gym.Env[Any, Any] | VectorTradingEnv:
    """RLlib env creator: ``env_config`` holds ``data``, ``split``, ``reference``, ``spec``
    (a FeatureSpec dict), ``config`` (EnvConfig fields) and, when RLlib wants a vector env,
    ``num_envs``. Several data sources give the multi-dataset env."""
    cfg = dict(env_config)
    spec = FeatureSpec.from_dict(cfg.pop("spec")) if "spec" in cfg else None
    num_envs = cfg.pop("num_envs", None)
    data = cfg.pop("data")
    kwargs = {"data": data, "split": cfg.pop("split", "train"),
              "reference": cfg.pop("reference", None), "config": cfg.pop("config", None),
              "spec": spec}
    if cfg:
        from raytrade.envs.errors import ConfigError
        raise ConfigError(f"unknown env_config keys {sorted(cfg)}")
    if num_envs is not None:
        return VectorTradingEnv(int(num_envs), **kwargs)
    several = (not isinstance(data, str) and len(data) > 1) or \
        (isinstance(data, str) and any(ch in data for ch in "*?["))
    return MultiDatasetTradingEnv(**kwargs) if several else TradingEnv(**kwargs)


register_envs()
