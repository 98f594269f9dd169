"""Paper-trading experience reaches the replay buffer of its own training run only, and only
when it fits the learner (observation shape, dtype, FeatureSpec); a real local Ray."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import ray
from raytrade.actors.paper_actor import ExperiencePusher
from raytrade.algos.apex_dqn import episode_from_transitions
from raytrade.algos.dqn_config import build_dqn_config
from raytrade.algos.experiment import ExperimentConfig, LiveConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.live_experience import (
    INGESTED,
    INGESTED_LIFETIME,
    REFUSED_LIFETIME,
    LiveExperienceQueue,
    TransitionChunk,
    TransitionSpec,
    queue_address,
)
from raytrade.envs.errors import ConfigError

HASH = "f" * 64
SPEC = TransitionSpec((8,), "float32", HASH)


def chunk(n: int, obs_dim: int, seed: int = 0, feature_hash: str = HASH,
          dtype: Any = np.float32) -> TransitionChunk:
    rng = np.random.default_rng(seed)
    return TransitionChunk.of(rng.normal(size=(n + 1, obs_dim)).astype(dtype),
                              rng.integers(0, 3, size=n), rng.normal(size=n) * 0.1,
                              feature_hash)


def test_transition_chunk_checks_shapes_and_values_and_converts_on_the_learner() -> None:
    c = chunk(5, 8)
    assert len(c) == 5
    ep = episode_from_transitions(c)
    assert len(ep) == 5 and ep.get_observations().shape == (6, 8)
    with pytest.raises(ConfigError, match="T\\+1"):
        TransitionChunk.of(np.zeros((5, 8)), [0] * 5, [0.0] * 5, HASH)
    with pytest.raises(ConfigError, match="NaN"):
        TransitionChunk.of(np.full((3, 8), np.nan), [0, 1], [0.0, 0.0], HASH)


def test_queue_address_is_one_per_run_and_the_same_on_both_sides() -> None:
    a, b = queue_address("s3://bucket/run-a"), queue_address("s3://bucket/run-b")
    assert a != b and a.name != b.name and a.namespace != b.namespace
    assert queue_address("s3://bucket/run-a/") == a
    with pytest.raises(ConfigError):
        queue_address(" ")


@pytest.mark.slow
def test_live_queue_refuses_and_counts_what_does_not_fit_the_learner(local_ray: None) -> None:
    queue = LiveExperienceQueue.remote(SPEC, capacity=10)  # type: ignore[attr-defined]
    try:
        assert ray.get(queue.push.remote([chunk(4, 8), chunk(4, 8), chunk(4, 8)])).accepted == 12
        stats = ray.get(queue.stats.remote())
        assert (stats["size"], stats["pushed"], stats["dropped"]) == (8, 12, 4)  # oldest dropped
        assert len(ray.get(queue.drain.remote(5))) == 1  # only whole chunks, oldest first
        for bad, why in ((chunk(3, 9), "observation shape"),
                         (chunk(3, 8, dtype=np.float64), "observation dtype"),
                         (chunk(3, 8, feature_hash="0" * 64), "FeatureSpec 000000000000")):
            result = ray.get(queue.push.remote([bad]))
            assert (result.accepted, result.refused) == (0, 3) and why in str(result.reason)
        stats = ray.get(queue.stats.remote())
        assert stats["refused"] == 9 and stats["size"] == 4, "refused chunks are never held"
    finally:
        ray.kill(queue)


@pytest.mark.slow
def test_two_runs_never_see_each_others_queue(local_ray: None) -> None:
    a, b = queue_address("file:///runs/a"), queue_address("file:///runs/b")
    qa = LiveExperienceQueue.options(  # type: ignore[attr-defined]
        name=a.name, namespace=a.namespace).remote(SPEC)
    try:
        assert ray.get(qa.stats.remote())["size"] == 0
        with pytest.raises(ValueError):
            ray.get_actor(b.name, namespace=b.namespace)
        with pytest.raises(ValueError):  # nor by the old shared name, in any namespace
            ray.get_actor("raytrade-live-experience")
        # a paper actor of run b finds no queue and sends nothing; one of run a feeds a
        pusher_b = ExperiencePusher("file:///runs/b", lambda: HASH)
        pusher_a = ExperiencePusher("file:///runs/a", lambda: HASH)
        c = chunk(6, 8)
        for pusher in (pusher_a, pusher_b):
            pusher(c.observations, c.actions, c.rewards)
        ray.get(pusher_a.pending)
        assert pusher_b.stats()["unsent"] == 6 and pusher_b.pushed == 0
        assert pusher_a.stats()["accepted"] == 6
        assert ray.get(qa.stats.remote())["pushed"] == 6
        # a pusher whose policy has another FeatureSpec is refused, and counts it
        pusher_x = ExperiencePusher("file:///runs/a", lambda: "0" * 64)
        pusher_x(c.observations, c.actions, c.rewards)
        ray.get(pusher_x.pending)
        stats = pusher_x.stats()
        assert stats["refused"] == 6 and "FeatureSpec" in stats["last_refusal"]
    finally:
        ray.kill(qa)


def _small_experiment() -> ExperimentConfig:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    return dataclasses.replace(
        exp, live=LiveConfig(enabled=True, capacity=10_000),
        data=dataclasses.replace(exp.data, sources=("synthetic:regime:seed=1:n=8000",)),
        dqn=dataclasses.replace(exp.dqn, learning_starts=64, train_batch_size=32,
                                replay_ratio=1.0),
        resources=dataclasses.replace(exp.resources, num_env_runners=1,
                                      num_envs_per_env_runner=2, rollout_fragment_length=16))


@pytest.mark.slow
def test_matching_experience_is_ingested_and_a_mismatch_is_refused_and_reported(
        local_ray: None) -> None:
    exp = _small_experiment()
    run = "file:///runs/live-test"
    algo = build_dqn_config(exp).live_run(run, exp.features.hash) \
        .reporting(min_sample_timesteps_per_iteration=32).build_algo()
    try:
        obs_dim = exp.env.window * exp.features.n_features + 4
        address = queue_address(run)
        live = ray.get_actor(address.name, namespace=address.namespace)  # as a paper actor
        pushed = ray.get(live.push.remote([chunk(20, obs_dim, s, exp.features.hash)
                                           for s in range(3)])).accepted
        refused = ray.get(live.push.remote([chunk(5, obs_dim, 7, "0" * 64),
                                            chunk(4, obs_dim + 1, 8, exp.features.hash)]))
        assert refused.refused == 9 and refused.accepted == 0
        before = algo.replay_size
        result = algo.train()
        assert result[INGESTED] == pushed == 60
        assert result[REFUSED_LIFETIME] == 9
        assert ray.get(live.stats.remote())["drained"] == 60
        sampled = result["env_runners"]["num_env_steps_sampled"]
        assert algo.replay_size - before == pushed + sampled
        assert result[INGESTED_LIFETIME] == 60
        ray.get(live.push.remote([chunk(7, obs_dim, 9, exp.features.hash)]))
        result = algo.train()
        assert result[INGESTED] == 7 and result[INGESTED_LIFETIME] == 67
    finally:
        algo.stop()
