"""On a real local Ray, every remote env runner explores with its own Ape-X epsilon,
and keeps it across the learner's weight syncs."""

from __future__ import annotations

import dataclasses
import math

import pytest
from raytrade.algos.apex_epsilon import apex_epsilon
from raytrade.algos.dqn_config import build_dqn_config
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path


@pytest.mark.slow
def test_each_runner_reports_its_rung_across_weight_syncs(local_ray: None) -> None:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    exp = dataclasses.replace(
        exp,
        data=dataclasses.replace(exp.data, sources=("synthetic:regime:seed=1:n=8000",)),
        env=dataclasses.replace(exp.env, max_episode_steps=30),
        dqn=dataclasses.replace(exp.dqn, learning_starts=64, train_batch_size=32,
                                replay_ratio=1.0),
        resources=dataclasses.replace(exp.resources, num_env_runners=2,
                                      num_envs_per_env_runner=2, rollout_fragment_length=16),
    )
    config = build_dqn_config(exp).reporting(min_sample_timesteps_per_iteration=64)
    algo = config.build_algo()
    finished: list[dict[str, float]] = []
    try:
        for _ in range(3):  # the second and third iterations follow weight syncs
            result = algo.train()
            runners = result["env_runners"]
            assert runners["apex_epsilon_runner_0"] == pytest.approx(apex_epsilon(0, 2))
            assert runners["apex_epsilon_runner_1"] == pytest.approx(apex_epsilon(1, 2))
            if math.isfinite(runners.get("episode_max_drawdown", math.nan)):
                finished.append(runners)
        trained = result["learners"]["__all_modules__"]["num_env_steps_trained_lifetime"]
        assert trained > 0
        # the trading metrics of finished episodes reach the driver
        assert finished, "no iteration reported episode metrics"
        for runners in finished:
            assert runners["episode_max_drawdown"] <= 0
            assert 0 <= runners["episode_turnover"] <= 1
            assert runners["episode_trades"] >= 0 and "episode_sharpe" in runners
    finally:
        algo.stop()
