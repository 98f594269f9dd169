"""Training on Ray survives failing env runners (README "The fault model", training on Ray)."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import pytest
import ray
from ray import tune
from raytrade.algos.apex_epsilon import apex_epsilon
from raytrade.algos.dqn_config import build_dqn_config, env_config
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path


def small_experiment(restart: bool) -> ExperimentConfig:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    return dataclasses.replace(
        exp,
        data=dataclasses.replace(exp.data, sources=("synthetic:regime:seed=1:n=8000",)),
        dqn=dataclasses.replace(exp.dqn, learning_starts=64, train_batch_size=32,
                                replay_ratio=1.0),
        resources=dataclasses.replace(exp.resources, num_env_runners=2,
                                      num_envs_per_env_runner=2, rollout_fragment_length=16),
        fault_tolerance=dataclasses.replace(exp.fault_tolerance,
                                            restart_failed_env_runners=restart,
                                            restart_delay_s=0.1, sample_timeout_s=30.0),
    )


def train_until(algo: Any, done: Any, limit_s: float = 120.0) -> list[dict[str, Any]]:
    """Train until ``done()`` holds (a restart can take a while on a loaded machine)."""
    results = [algo.train()]
    start = time.monotonic()
    while not done():
        assert time.monotonic() - start < limit_s, "condition not reached in time"
        results.append(algo.train())
    return results


def _reported(results: list[dict[str, Any]], key: str) -> list[float]:
    """The finite values of the runner metric ``key`` in ``results``, oldest first."""
    values = (r.get("env_runners", {}).get(key, math.nan) for r in results)
    return [float(v) for v in values if math.isfinite(float(v))]


def weights_version(algo: Any) -> int:
    """The newest weights version the compact pipeline has published (runners hold a
    version once they have loaded it)."""
    assert algo.compact is not None
    return int(algo.compact.version)


def register_failing_env(flag: Path, always: bool) -> str:
    """A VectorTradingEnv that raises after 40 steps (once, or on every life)."""
    from raytrade.envs.registration import make_env

    def creator(cfg: dict[str, Any]) -> Any:
        env = make_env(cfg)
        original = env.step
        state = {"steps": 0}

        def step(actions: Any) -> Any:
            state["steps"] += 1
            if state["steps"] > 40 and (always or not flag.exists()):
                flag.touch()
                raise RuntimeError("injected env failure")
            return original(actions)

        env.step = step
        return env

    name = f"failing_trading_{'always' if always else 'once'}"
    tune.register_env(name, creator)
    return name


@pytest.mark.slow
def test_env_failure_restarts_the_runner_and_training_continues(local_ray: None,
                                                                 tmp_path: Path) -> None:
    exp = small_experiment(restart=True)
    name = register_failing_env(tmp_path / "failed", always=False)
    spec = exp.fit_env_spec()
    config = build_dqn_config(exp, spec).environment(name, env_config=env_config(spec)) \
        .reporting(min_sample_timesteps_per_iteration=64)
    algo = config.build_algo()
    group = algo.env_runner_group
    try:
        results = train_until(algo, lambda: group.num_remote_worker_restarts() >= 1)
        results.append(algo.train())
        seq_before_last = weights_version(algo)
        results.append(algo.train())
        assert (tmp_path / "failed").exists()  # the failure really happened
        # training went on: samples and updates kept growing after the failure
        sampled = [r["num_env_steps_sampled_lifetime"] for r in results]
        assert sampled == sorted(sampled) and sampled[-1] > sampled[1]
        # the restarted runner rebuilt its Ape-X rung and samples with current weights:
        # asynchronous requests carry the newest weights, so every runner's weights are
        # at least as new as the learner's when the last iteration began
        # (a runner reports its rung with its episodes: on a loaded machine one may not
        # report in a given iteration, so take each rung's last report since the restart)
        after = len(results) - 2
        keys = ("apex_epsilon_runner_0", "apex_epsilon_runner_1")
        start = time.monotonic()
        while not all(_reported(results[after:], k) for k in keys):
            assert time.monotonic() - start < 120, "a runner never reported its rung"
            results.append(algo.train())
        assert _reported(results[after:], keys[0])[-1] == pytest.approx(apex_epsilon(0, 2))
        assert _reported(results[after:], keys[1])[-1] == pytest.approx(apex_epsilon(1, 2))
        runner_seq = algo.env_runner_group.foreach_env_runner(
            lambda r: r._apex_version, local_env_runner=False)
        assert len(runner_seq) == 2 and min(runner_seq) >= seq_before_last > 0

        # a runner killed like a crashed process (Ray may restart it) is restarted
        before = group.num_remote_worker_restarts()
        ray.kill(group._worker_manager.actors()[1], no_restart=False)
        train_until(algo, lambda: group.num_remote_worker_restarts() > before
                    and group.num_healthy_remote_workers() == 2)
        # a runner removed for good (ray.kill's default) leaves training running on the rest
        ray.kill(group._worker_manager.actors()[2])
        sampled = algo.train()["num_env_steps_sampled_lifetime"]
        after = algo.train()["num_env_steps_sampled_lifetime"]
        assert after > sampled and group.num_healthy_remote_workers() == 1
    finally:
        algo.stop()


@pytest.mark.slow
def test_all_runners_failing_without_restarts_raises_instead_of_hanging(
        local_ray: None, tmp_path: Path) -> None:
    exp = small_experiment(restart=False)
    name = register_failing_env(tmp_path / "failed", always=True)
    spec = exp.fit_env_spec()
    config = build_dqn_config(exp, spec).environment(name, env_config=env_config(spec)) \
        .reporting(min_sample_timesteps_per_iteration=64)
    algo = config.build_algo()
    try:
        # RLlib surfaces it as the runner actor dying (its process exits on the env error)
        with pytest.raises(Exception, match=r"injected env failure|ApeXEnvRunner"):
            for _ in range(10):
                algo.train()
    finally:
        algo.stop()
