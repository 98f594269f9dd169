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

:meth:`ApeXEnvRunner.apex_compact_sample` is the fast path of the compact pipeline: the
runner's vector env stepped by :class:`~raytrade.algos.compact_sampler.CompactSampler`
(batched greedy Q-values, epsilon-greedy in numpy, experience as a ``CompactFragment``)
instead of RLlib's per-sub-env episode objects and connectors. A runner samples with one
path or the other, never both: they share the env.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import ray
import torch
from ray.rllib.algorithms.dqn.dqn_learner import QF_PREDS
from ray.rllib.core import COMPONENT_RL_MODULE
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.utils.metrics import WEIGHTS_SEQ_NO
from ray.rllib.utils.schedules.scheduler import Scheduler
from raytrade.algos.callbacks import WINDOW, runner_rules
from raytrade.algos.compact_fragment import F32, I64, CompactFragment
from raytrade.algos.compact_sampler import CompactSampler
from raytrade.envs.errors import ConfigError

WEIGHTS_VERSION = "apex_weights_version"
"""Runner metric: the learner weights version the runner samples with (-1: initial)."""


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
        self._compact: CompactSampler | None = None
        self._apex_version = -1
        if (self.worker_index or 0) > 0:
            # a remote runner is one process on the CPUs Ray reserved for it (1 by
            # default): more torch threads than that only compete for the same cores
            torch.set_num_threads(max(1, int(self.config.num_cpus_per_env_runner)))
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

    def apex_compact_sample(self, weights: list[Any] | None, version: int,
                            env_steps_sampled: int, num_steps: int, restart: bool = False
                            ) -> tuple[CompactFragment, Any]:
        """One request of the compact pipeline: newer weights, ``num_steps`` vector steps.

        ``weights`` is a one-element list holding the ObjectRef of ``{"rl_module": state,
        "weights_seq_no": version}`` (a list, so Ray passes the reference and this runner
        fetches the state only when ``version`` is newer than the one it holds);
        ``env_steps_sampled`` is the run's global env step count, which drives epsilon
        decay; ``restart`` makes the sampler a new source first (the learner lost one of
        its fragments). Returns the fragment and the runner's metrics (``get_metrics``).

        If sampling raises, the runner forgets its weights version too: RLlib may restore
        an unhealthy runner's state from the driver (older weights), and the next request
        must bring the newest ones regardless.
        """
        try:
            return self._compact_request(weights, version, env_steps_sampled, num_steps,
                                         restart)
        except BaseException:
            self._apex_version = -1
            raise

    def _compact_request(self, weights: list[Any] | None, version: int,
                         env_steps_sampled: int, num_steps: int, restart: bool
                         ) -> tuple[CompactFragment, Any]:
        self._take_weights(weights, version)
        self.num_env_steps_sampled_lifetime = max(self.num_env_steps_sampled_lifetime,
                                                  int(env_steps_sampled))
        epsilon = 0.0
        if self.module is not None and hasattr(self.module, "epsilon_schedule"):
            epsilon = float(self.module.epsilon_schedule.update(int(env_steps_sampled)))
        sampler = self._compact_sampler()
        if restart:
            sampler.restart()
        fragment = sampler.sample(num_steps, epsilon, self._apex_version)
        self._log_fragment(fragment, sampler.episode_seconds)
        return fragment, self.get_metrics()

    def _take_weights(self, weights: list[Any] | None, version: int) -> None:
        """Load the learner's weights of ``version`` when newer than this runner's."""
        if not weights or version <= self._apex_version:
            return
        ref = weights[0]
        state = ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref
        self.set_state({COMPONENT_RL_MODULE: state[COMPONENT_RL_MODULE],
                        WEIGHTS_SEQ_NO: 0})  # 0: load unconditionally (we checked)
        self._weights_seq_no = int(state.get(WEIGHTS_SEQ_NO, version))
        self._apex_version = int(version)

    def _compact_sampler(self) -> CompactSampler:
        """The runner's sampler over its vector env (built on first use)."""
        if self._compact is not None:
            return self._compact
        if self.env is None or self.module is None:
            raise ConfigError("apex_compact_sample needs a runner with an env and a module")
        env = self.env.unwrapped
        window = int(getattr(getattr(env, "config", None), "window", 0))
        if window < 1:
            raise ConfigError(f"apex_compact_sample needs the trading vector env "
                              f"(an env with config.window), got {type(env).__name__}")
        calendar, every_bars = runner_rules(self)
        seed = self.config.seed
        self._compact = CompactSampler(
            env, greedy_of(self.module), window=window,
            seed=None if seed is None else int(seed) + 10_000 * (self.worker_index or 0),
            calendar=calendar, every_bars=every_bars)
        return self._compact

    def _log_fragment(self, fragment: CompactFragment, seconds: tuple[float, ...]) -> None:
        """Log what ``sample()`` logs for the same steps and finished episodes."""
        stats = fragment.episodes
        self._increase_sampled_metrics(fragment.env_steps, len(stats.returns))
        for length, ret, sec in zip(stats.lengths, stats.returns, seconds, strict=True):
            self._log_episode_metrics(length, ret, sec)
        for values in stats.trading:
            for key, value in values.items():
                if np.isfinite(value):
                    self.metrics.log_value(key, float(value), reduce="mean", window=WINDOW)
        self.metrics.log_value(WEIGHTS_VERSION, self._apex_version, window=1)

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


def greedy_of(module: Any) -> Any:
    """Greedy actions of RLlib's DQN module for a batch of observations: its Q-values
    (``compute_q_values``: encoder, then the Q head or the dueling streams, as its
    ``forward_inference`` computes them) and their argmax, without the exploration
    distribution and output checks around them."""
    device = next(module.parameters()).device

    def greedy(obs: F32) -> I64:
        with torch.no_grad():
            x = torch.from_numpy(obs)
            if device.type != "cpu":
                x = x.to(device)
            q = module.compute_q_values({Columns.OBS: x})[QF_PREDS]
            out: I64 = torch.argmax(q, dim=-1).cpu().numpy().astype(np.int64, copy=False)
            return out

    return greedy
