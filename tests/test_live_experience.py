"""Paper-trading experience pushed to the named queue reaches the replay buffer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import ray
from raytrade.algos.dqn_config import build_dqn_config
from raytrade.algos.experiment import ExperimentConfig, LiveConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.live_experience import (
    INGESTED,
    INGESTED_LIFETIME,
    QUEUE_NAME,
    LiveExperienceQueue,
    episode_from_transitions,
)
from raytrade.envs.errors import ConfigError


def chunk(n: int, obs_dim: int, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    return episode_from_transitions(rng.normal(size=(n + 1, obs_dim)),
                                    rng.integers(0, 3, size=n), rng.normal(size=n) * 0.1)


def test_episode_from_transitions_checks_shapes_and_values() -> None:
    ep = chunk(5, 8)
    assert len(ep) == 5 and ep.get_observations().shape == (6, 8)
    with pytest.raises(ConfigError, match="T\\+1"):
        episode_from_transitions(np.zeros((5, 8)), [0] * 5, [0.0] * 5)
    with pytest.raises(ConfigError, match="NaN"):
        episode_from_transitions(np.full((3, 8), np.nan), [0, 1], [0.0, 0.0])


@pytest.mark.slow
def test_live_queue_is_bounded_and_drained_into_replay(local_ray: None) -> None:
    queue = LiveExperienceQueue.remote(capacity=10)
    assert ray.get(queue.push.remote([chunk(4, 8), chunk(4, 8), chunk(4, 8)])) == 12
    stats = ray.get(queue.stats.remote())
    assert stats == {"size": 8, "pushed": 12, "dropped": 4, "drained": 0}  # oldest dropped
    assert len(ray.get(queue.drain.remote(5))) == 1  # only whole chunks, oldest first
    ray.kill(queue)

    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    exp = dataclasses.replace(
        exp, live=LiveConfig(enabled=True, capacity=10_000),
        data=dataclasses.replace(exp.data, sources=("synthetic:regime:seed=1:n=8000",)),
        dqn=dataclasses.replace(exp.dqn, learning_starts=64, train_batch_size=32,
                                replay_ratio=1.0),
        resources=dataclasses.replace(exp.resources, num_env_runners=1,
                                      num_envs_per_env_runner=2, rollout_fragment_length=16))
    algo = build_dqn_config(exp).reporting(min_sample_timesteps_per_iteration=32) \
        .build_algo()
    try:
        obs_dim = exp.env.window * exp.features.n_features + 4
        live = ray.get_actor(QUEUE_NAME)  # how a paper actor finds the running trainer
        pushed = ray.get(live.push.remote([chunk(20, obs_dim, s) for s in range(3)]))
        before = algo.local_replay_buffer.get_num_timesteps()
        result = algo.train()
        assert result[INGESTED] == pushed == 60
        assert ray.get(live.stats.remote())["drained"] == 60
        sampled = result["env_runners"]["num_env_steps_sampled"]
        assert algo.local_replay_buffer.get_num_timesteps() - before == pushed + sampled
        assert result[INGESTED_LIFETIME] == 60
        ray.get(live.push.remote([chunk(7, obs_dim, 9)]))
        result = algo.train()
        assert result[INGESTED] == 7 and result[INGESTED_LIFETIME] == 67
    finally:
        algo.stop()
