"""On a real local Ray, every remote env runner explores with its own Ape-X epsilon,
and keeps it across the learner's weight syncs."""

from __future__ import annotations

import dataclasses
import math
import time

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
    seen: set[int] = set()
    iterations = 0
    try:
        # asynchronous sampling: an iteration reports the runners whose samples arrived in
        # it; go on until both have reported after weight syncs (iteration 2 onwards). A
        # time bound, not an iteration count: on a fresh clone under load one runner may
        # still be compiling its kernels while the other's fragments end many iterations
        deadline = time.monotonic() + 240.0
        while iterations < 3 or seen != {0, 1}:
            assert time.monotonic() < deadline, \
                f"runners {seen} reported in {iterations} iterations"
            result = algo.train()
            iterations += 1
            runners = result["env_runners"]
            for rung in (0, 1):
                # NaN: a runner that reported before but not in this iteration (RLlib's
                # aggregated window stats have no value then)
                eps = runners.get(f"apex_epsilon_runner_{rung}", math.nan)
                if math.isfinite(eps):
                    assert eps == pytest.approx(apex_epsilon(rung, 2))
                    if iterations >= 2:
                        seen.add(rung)
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
