"""The compact Ape-X pipeline end to end on a real local Ray: runners send compact
fragments, the learner thread trains beside sampling at the exact replay ratio, weights
travel by version, a slow runner stalls nobody, and between iterations the learner is one
frozen state (driver module = learner, exact counters) that checkpoints and restores."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from raytrade.algos.apex_compact import RUNNER_STEPS, train_batch
from raytrade.algos.compact_replay import ReplayBatch
from raytrade.algos.dqn_config import build_dqn_config
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path

SLOW_SAMPLE_S = 0.6
RATIO = 2.0
BATCH = 64


def test_train_batch_carries_the_dqn_loss_columns() -> None:
    n, d = 5, 7
    batch = ReplayBatch(slots=np.arange(n), obs=np.ones((n, d), np.float32),
                        actions=np.arange(n), rewards=np.full(n, 0.5, np.float32),
                        next_obs=np.zeros((n, d), np.float32), dones=np.zeros(n, bool),
                        weights=np.linspace(0.2, 1.0, n), n_steps=np.array([1, 2, 3, 3, 3]))
    mab = train_batch(batch)
    assert mab.env_steps() == n
    cols = mab.policy_batches["default_policy"]
    assert set(cols.keys()) >= {"obs", "new_obs", "actions", "rewards", "terminateds",
                                "n_step", "weights"}
    assert cols["n_step"].tolist() == [1, 2, 3, 3, 3]
    assert cols["weights"].dtype == np.float32


def slow_second_runner() -> type:
    """Remote runner 2 takes ``SLOW_SAMPLE_S`` longer per fragment (shipped by value)."""
    from raytrade.algos.apex_epsilon import ApeXEnvRunner

    class SlowSecondRunner(ApeXEnvRunner):
        def apex_compact_sample(self, *args: Any, **kwargs: Any) -> Any:
            if self.worker_index == 2:
                time.sleep(SLOW_SAMPLE_S)
            return super().apex_compact_sample(*args, **kwargs)

    return SlowSecondRunner


def small_experiment() -> ExperimentConfig:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    return dataclasses.replace(
        exp,
        data=dataclasses.replace(exp.data, sources=("synthetic:regime:seed=1:n=8000",)),
        dqn=dataclasses.replace(exp.dqn, learning_starts=256, train_batch_size=BATCH,
                                replay_ratio=RATIO, max_updates_per_step=8),
        replay=dataclasses.replace(exp.replay, layout="compact", capacity=20_000),
        resources=dataclasses.replace(exp.resources, num_env_runners=2,
                                      num_envs_per_env_runner=8, rollout_fragment_length=16))


def learner_weights(algo: Any) -> dict[str, Any]:
    state = algo.learner_group.get_state(components="learner/rl_module",
                                         inference_only=True)
    return dict(state["learner"]["rl_module"]["default_policy"])


@pytest.mark.slow
def test_compact_pipeline_keeps_the_ratio_beside_a_slow_runner_and_checkpoints(
        local_ray: None, tmp_path: Path) -> None:
    exp = small_experiment()
    config = build_dqn_config(exp).env_runners(env_runner_cls=slow_second_runner()) \
        .reporting(min_sample_timesteps_per_iteration=0, min_time_s_per_iteration=1.0)
    algo = config.build_algo()
    try:
        assert algo.compact is not None
        # the timed window starts once both runners deliver and the learner trains: on a
        # fresh clone the runners first compile their kernels (a cold cache takes seconds
        # on a loaded 2-core machine, and no fragment arrives meanwhile)
        warm = algo.train()
        deadline = time.monotonic() + 240.0
        while min(warm[f"{RUNNER_STEPS}1"], warm[f"{RUNNER_STEPS}2"],
                  warm["apex_env_steps_replayed_lifetime"]) <= 0:
            assert time.monotonic() < deadline, "the runners never delivered"
            warm = algo.train()
        start = time.monotonic()
        results = []
        while time.monotonic() - start < 6.0:
            results.append(algo.train())
        last = results[-1]
        # the fast runner keeps delivering while the slow one sleeps
        from_fast, from_slow = (last[f"{RUNNER_STEPS}{i}"] - warm[f"{RUNNER_STEPS}{i}"]
                                for i in (1, 2))
        assert from_fast > 2 * from_slow > 0, (from_fast, from_slow)
        # the learner thread trained at exactly the configured ratio (up to the updates
        # still due: at most max_updates_per_step batches behind, plus one fragment)
        added = last["apex_env_steps_added_lifetime"] - exp.dqn.learning_starts
        replayed = last["apex_env_steps_replayed_lifetime"]
        assert replayed <= RATIO * added
        assert RATIO * added - replayed <= (8 + 1) * BATCH + RATIO * 2 * 8 * 16  # 2 in flight
        # the reported ratio is the lifetime one (within the bound above of RATIO)
        assert last["replay_ratio"] == pytest.approx(replayed / added)
        assert sum(r["learner_updates"] for r in results) * BATCH == \
            pytest.approx(replayed - results[0]["apex_env_steps_replayed_lifetime"]
                          + results[0]["learner_updates"] * BATCH)
        fractions = [r["learner_idle_fraction"] for r in results if "learner_idle_fraction" in r]
        assert fractions and all(0.0 <= f <= 1.0 for f in fractions)
        loss = last["learners"]["default_policy"]["qf_loss"]
        assert math.isfinite(loss)
        # weights travel by version: the learner published many, runners took newer ones
        version = last["apex_weights_version"]
        assert version > 5
        assert 0 <= last["env_runners"]["apex_weights_version"] <= version
        assert last["replay_buffer"]["num_env_steps_stored"] == algo.replay_size > 0
        # between iterations the learner thread is paused: what the driver serves
        # (evaluation, export) is exactly the learner, and the logger's lifetime counts are
        # the learner's own (nothing pending), so a checkpoint is one consistent state
        weights = learner_weights(algo)
        time.sleep(0.3)
        assert learner_weights(algo).keys() == weights.keys()
        for key, value in learner_weights(algo).items():
            np.testing.assert_array_equal(value, weights[key], err_msg=key)  # frozen
        served = algo.get_module().get_state(inference_only=True)
        for key, value in served.items():
            np.testing.assert_array_equal(value, weights[key], err_msg=key)
        assert algo.metrics.peek("apex_env_steps_replayed_lifetime") == algo.compact.replayed
        saved = algo.save_to_path(str(tmp_path / "ckpt"))
    finally:
        algo.stop()
    assert algo.compact is not None and not algo.compact.thread.alive
    restored = config.build_algo()
    try:
        restored.restore_from_path(saved)
        for key, value in learner_weights(restored).items():
            np.testing.assert_array_equal(value, weights[key], err_msg=key)
        # the restored counters go on from the saved ones (the new runners may need a
        # few iterations to deliver their first fragment under load)
        after = restored.train()
        assert after["apex_env_steps_added_lifetime"] >= last["apex_env_steps_added_lifetime"]
        deadline = time.monotonic() + 120.0
        while after["apex_env_steps_added_lifetime"] == last["apex_env_steps_added_lifetime"]:
            assert time.monotonic() < deadline, "the restored runners never delivered"
            after = restored.train()
    finally:
        restored.stop()
