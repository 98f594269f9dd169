"""Ape-X exploration: every env runner explores with its own fixed epsilon.

Horgan et al. (2018), "Distributed Prioritized Experience Replay": runner ``i`` of ``N``
acts epsilon-greedily with ``eps_i = eps ** (1 + alpha * i / (N - 1))`` (paper defaults
``eps = 0.4``, ``alpha = 7``), so a few runners explore a lot and most exploit, and the
replay buffer sees both. Optionally every runner starts from ``epsilon = 1`` and decays
linearly to its own ``eps_i`` over ``decay_steps`` global env steps.

RLlib 2.60's DQN keeps one epsilon schedule inside the RL module, built from the config, so
every runner would explore alike. :class:`ApeXEnvRunner` gives each runner its own: after
building its module it replaces the module's schedule with the runner's ladder rung. Weight
syncs from the learner load only the network's state dict, so the schedule survives them
(and a restarted runner rebuilds it from its index). The runner reports its epsilon as the
metric ``apex_epsilon_runner_<i>``.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.utils.schedules.scheduler import Scheduler
from raytrade.envs.errors import ConfigError


def apex_epsilon(index: int, num_runners: int, epsilon: float = 0.4,
                 alpha: float = 7.0) -> float:
    """Epsilon of runner ``index`` (0-based) of ``num_runners``."""
    if not 0 < epsilon <= 1 or alpha < 0:
        raise ConfigError(f"Ape-X needs 0 < epsilon <= 1 and alpha >= 0, got {epsilon}, {alpha}")
    if not 0 <= index < max(num_runners, 1):
        raise ConfigError(f"runner index {index} outside 0..{num_runners - 1}")
    if num_runners <= 1:
        return epsilon
    return float(epsilon ** (1.0 + alpha * index / (num_runners - 1)))


def epsilon_schedule(index: int, num_runners: int, epsilon: float = 0.4, alpha: float = 7.0,
                     decay_steps: int = 0) -> float | list[tuple[int, float]]:
    """The runner's epsilon: fixed, or a linear decay from 1 over ``decay_steps`` env steps."""
    target = apex_epsilon(index, num_runners, epsilon, alpha)
    if decay_steps < 0:
        raise ConfigError("decay_steps must be >= 0")
    if decay_steps == 0:
        return target
    return [(0, 1.0), (decay_steps, target)]


def runner_rung(worker_index: int, num_env_runners: int) -> tuple[int, int]:
    """Ladder position of an env runner: remote runners are 1..N, the local one is 0.

    With remote runners the local runner does not sample for training; it gets rung 0.
    Without remote runners the local runner samples alone and is runner 0 of 1.
    """
    n = max(num_env_runners, 1)
    return (max(worker_index - 1, 0) if num_env_runners > 0 else 0), n


class ApeXEnvRunner(SingleAgentEnvRunner):
    """A SingleAgentEnvRunner whose DQN module explores with this runner's Ape-X epsilon."""

    def make_module(self) -> None:
        super().make_module()
        if self.module is None:
            return
        cfg = self.config
        index, n = runner_rung(self.worker_index or 0, cfg.num_env_runners)
        self._apex_index = index
        schedule = epsilon_schedule(index, n, getattr(cfg, "apex_epsilon", 0.4),
                                    getattr(cfg, "apex_alpha", 7.0),
                                    getattr(cfg, "apex_decay_steps", 0))
        # the DQN module's own attribute (DefaultDQNRLModule.setup creates it)
        setattr(self.module, "epsilon_schedule",  # noqa: B010
                Scheduler(fixed_value_or_schedule=schedule, framework="torch"))

    def apex_sample(self, state: dict[str, Any] | None = None,
                    env_steps_sampled: int | None = None) -> tuple[list[Any], Any]:
        """One asynchronous Ape-X request: take newer learner weights, sample, report.

        ``state`` holds the RL module weights and their sequence number (skipped when
        this runner's weights are as new); ``env_steps_sampled`` is the run's global env
        step count, which drives epsilon decay (RLlib's iteration-end broadcast does this
        in synchronous mode). Returns the episode chunks and the runner's metrics, as
        ``synchronous_parallel_sample`` would gather them.
        """
        if state is not None:
            self.set_state(state)
        if env_steps_sampled is not None:
            self.num_env_steps_sampled_lifetime = max(self.num_env_steps_sampled_lifetime,
                                                      int(env_steps_sampled))
        episodes = self.sample()
        return episodes, self.get_metrics()

    def get_metrics(self) -> Any:
        """The runner's metrics, always with its current Ape-X epsilon.

        Logged here rather than after ``sample``: RLlib 2.60's mean stats are cleared on
        every reduce, so a metrics fetch with no sample since the last one (the driver's
        end-of-iteration fetch after asynchronous requests, a slow iteration) would
        otherwise report NaN.
        """
        if self.module is not None and hasattr(self.module, "epsilon_schedule"):
            eps = float(self.module.epsilon_schedule.get_current_value())
            self.metrics.log_value(f"apex_epsilon_runner_{self._apex_index}", eps,
                                   reduce="mean", window=1)
        return super().get_metrics()
