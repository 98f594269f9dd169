"""RLlib 2.60's env runner builds and samples each environment (no cluster needed)."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.rllib")

from ray import tune
from ray.rllib.algorithms.dqn import DQNConfig
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.env_spec import EnvSpec
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.multi_dataset_env import MultiDatasetTradingEnv
from raytrade.envs.registration import make_env
from raytrade.envs.trading_env import TradingEnv
from raytrade.envs.vector_env import VectorTradingEnv


@pytest.mark.parametrize(("data", "num_envs", "mode", "kind"), [
    (("sample:ETHUSDT",), 1, "sync", TradingEnv),
    (("sample:ETHUSDT", "sample:BTCUSDT"), 2, "sync", MultiDatasetTradingEnv),
    (("sample:ETHUSDT",), 8, "vector_entry_point", VectorTradingEnv),
])
def test_rllib_env_runner_builds_and_samples(data: tuple[str, ...], num_envs: int, mode: str,
                                             kind: type) -> None:
    # registered per test: a Ray init/shutdown elsewhere in the session resets the registry
    tune.register_env("raytrade_trading_test", make_env)
    spec = EnvSpec.fit(sources=data, reference=None, train=0.7, validation=0.15,
                       features=FeatureSpec(),
                       env=EnvConfig(window=4, max_episode_steps=20))
    config = (DQNConfig()
              .environment("raytrade_trading_test", env_config=spec.env_config())
              .env_runners(num_env_runners=0, num_envs_per_env_runner=num_envs,
                           gym_env_vectorize_mode=mode))
    runner = SingleAgentEnvRunner(config=config)
    try:
        sub = runner.env.unwrapped
        built = sub if isinstance(sub, VectorTradingEnv) else sub.envs[0].unwrapped
        assert type(built) is kind
        episodes = runner.sample(num_timesteps=300, random_actions=True)
        steps = sum(len(e) for e in episodes)
        assert steps >= 300
        done = [e for e in episodes if e.is_done]
        assert done and all(len(e) <= 20 for e in done)
        for e in episodes:
            obs = e.get_observations()
            assert obs.shape[1] == 4 * 73 + 4
    finally:
        runner.stop()
