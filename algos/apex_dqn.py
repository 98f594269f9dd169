"""ApeXDQN: RLlib's new-stack DQN with Ape-X sampling, an exact replay ratio and live experience.

Ray 2.60's DQN samples synchronously: every iteration waits for the slowest env runner
(``synchronous_parallel_sample``), and it converts ``training_intensity`` into a fixed
alternation of sample and train calls that counts the local runner as a sampler even when
it does not sample. Ape-X (Horgan et al. 2018) decouples the two, and so does this class:

- **Asynchronous sampling** (``apex_async``, on with remote runners): every healthy runner
  always has one ``apex_sample`` request in flight (RLlib's async request machinery,
  ``foreach_env_runner_async_fetch_ready``). Each training step collects whatever has
  arrived, adds it to replay and immediately sends that runner its next request carrying
  the newest learner weights, so a slow runner only delays its own samples.
- **Exact replay ratio**: the learner trains ``floor(ratio * (added - learning_starts) -
  replayed) / batch`` updates, where ``added`` counts env steps put into replay (runners and
  live queue) and ``replayed`` counts env steps trained, both over the whole run (restored
  on resume). So ``replayed / added`` stays at the configured ratio whether samples come in
  steadily, in bursts or from one runner only; the metric ``replay_ratio`` reports it.
- **Prioritized replay with a beta schedule**: importance-sampling exponent ``beta``
  annealed linearly from ``replay.beta`` to ``replay.beta_final`` over
  ``replay.beta_anneal_steps`` env steps added (Schaul et al. 2016); metric ``per_beta``.
- **Live experience**: transitions pushed by this run's paper-trading actors to the run's
  own queue (``live_experience.py``: named after the run's store URI, refusing chunks of
  another observation shape, dtype or FeatureSpec) are drained at the start of every step,
  converted to RLlib episodes here (``episode_from_transitions``) and added to the same
  buffer. Metrics: ``live_transitions_ingested`` (this step), ``..._ingested_lifetime``,
  ``..._refused_lifetime`` and ``..._dropped_lifetime``.

The learner update itself (batch from replay, ``learner_group.update``, TD-error
priorities) is the stock one.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import nullcontext
from typing import Any, TypeVar

import numpy as np
import ray
from ray.rllib.algorithms.dqn import DQN
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE
from ray.rllib.core.learner.learner_group import LearnerGroup
from ray.rllib.env import INPUT_ENV_SINGLE_SPACES
from ray.rllib.env.env_runner_group import EnvRunnerGroup
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    REPLAY_BUFFER_ADD_DATA_TIMER,
    REPLAY_BUFFER_RESULTS,
    REPLAY_BUFFER_SAMPLE_TIMER,
    REPLAY_BUFFER_UPDATE_PRIOS_TIMER,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TD_ERROR_KEY,
    TIMERS,
    WEIGHTS_SEQ_NO,
)
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger
from ray.rllib.utils.numpy import convert_to_numpy
from ray.rllib.utils.replay_buffers.utils import update_priorities_in_episode_replay_buffer
from raytrade.algos.apex_compact import (
    BUSY_S,
    IDLE_FRACTION,
    IDLE_S,
    RUNNER_STEPS,
    CompactPipeline,
)
from raytrade.algos.live_experience import (
    DROPPED_LIFETIME,
    INGESTED,
    INGESTED_LIFETIME,
    REFUSED_LIFETIME,
    LiveExperienceQueue,
    TransitionChunk,
    TransitionSpec,
    queue_address,
)
from raytrade.envs.errors import ConfigError

T = TypeVar("T")
ADDED = "apex_env_steps_added_lifetime"
REPLAYED = "apex_env_steps_replayed_lifetime"
REPLAY_RATIO = "replay_ratio"
BETA = "per_beta"
SAMPLE_TAG = "apex_sample"
POLL_S = 0.002
"""Seconds between polls for finished sample requests while waiting."""
NO_TRAINING_WAIT_S = 0.5
"""Seconds a step waits for samples when it has nothing to train (async mode)."""


def episode_from_transitions(chunk: TransitionChunk) -> SingleAgentEpisode:
    """An RLlib episode chunk (numpy) from a live transition chunk: the learner-side half of
    the plain-numpy boundary (``live_experience.py``)."""
    episode = SingleAgentEpisode(
        observations=list(np.asarray(chunk.observations, dtype=np.float32)),
        actions=list(chunk.actions), rewards=list(chunk.rewards),
        terminated=chunk.terminated, truncated=chunk.truncated, len_lookback_buffer=0)
    return episode.to_numpy()


def _present(part: T | None, name: str) -> T:
    if part is None:
        raise RuntimeError(f"ApeXDQN used before setup: no {name}")
    return part


def per_beta(added: float, beta: float, beta_final: float, anneal_steps: int) -> float:
    """Importance-sampling exponent after ``added`` env steps (linear, then constant)."""
    if anneal_steps <= 0:
        return beta
    frac = min(max(added / anneal_steps, 0.0), 1.0)
    return float(beta + frac * (beta_final - beta))


def updates_due(added: float, replayed: float, ratio: float, learning_starts: int,
                batch_size: int) -> int:
    """Learner updates that keep ``replayed / (added - learning_starts)`` at ``ratio``."""
    if added < learning_starts or batch_size < 1:
        return 0
    budget = ratio * (added - learning_starts) - replayed
    return max(int(budget // batch_size), 0)


class ApeXDQN(DQN):
    """DQN trained the Ape-X way (see the module docstring)."""

    def setup(self, config: Any) -> None:
        super().setup(config)
        self._compact: CompactPipeline | None = None
        if getattr(self._cfg, "apex_replay_layout", "episodes") == "compact":
            self._compact = CompactPipeline(self)
        self._live_queue: Any = None
        self._live_capacity = int(getattr(self._cfg, "live_capacity", 100_000))
        if getattr(self._cfg, "live_enabled", False):
            self._live_queue = self._open_live_queue()
        self._weights_ref: Any = None

    def _open_live_queue(self) -> Any:
        """This run's queue (created, or found again after a restore), armed with what the
        learner trains on."""
        cfg = self._cfg
        run_id, feature_hash = getattr(cfg, "live_run_id", None), \
            getattr(cfg, "live_feature_hash", None)
        if not run_id or not feature_hash:
            raise ConfigError("[live] enabled needs the run's identity: build the config with "
                              ".live_run(store_uri, feature_spec_hash)")
        obs_space = (self.spaces or {}).get(INPUT_ENV_SINGLE_SPACES, (None,))[0]
        if obs_space is None or obs_space.shape is None:
            raise ConfigError("live experience: the env's observation space is unknown")
        expected = TransitionSpec(tuple(obs_space.shape), str(np.dtype(obs_space.dtype)),
                                  str(feature_hash))
        address = queue_address(str(run_id))
        queue_cls: Any = LiveExperienceQueue
        queue = queue_cls.options(name=address.name, namespace=address.namespace,
                                  get_if_exists=True).remote(expected, self._live_capacity)
        ray.get(queue.configure.remote(expected, self._live_capacity))
        return queue

    # RLlib types these parts as optional; a set-up DQN has all of them
    @property
    def _log(self) -> MetricsLogger:
        return _present(self.metrics, "metrics")

    @property
    def _cfg(self) -> Any:
        return _present(self.config, "config")

    @property
    def _runners(self) -> EnvRunnerGroup:
        return _present(self.env_runner_group, "env_runner_group")

    @property
    def _learners(self) -> LearnerGroup:
        return _present(self.learner_group, "learner_group")

    @property
    def _replay(self) -> Any:
        return _present(self.local_replay_buffer, "local_replay_buffer")

    @property
    def _async(self) -> bool:
        return bool(getattr(self._cfg, "apex_async", True)) \
            and self._runners.num_remote_env_runners() > 0

    def training_step(self) -> None:
        if self._compact is not None:
            self._compact.ingest_live(self._drain_live())
            self._compact.sample()
            self._compact.log_metrics()
            return
        chunks = self._drain_live()
        if chunks:
            self._replay.add([episode_from_transitions(c) for c in chunks])
        added = sum(len(c) for c in chunks)
        added += self._sample_async() if self._async else self._sample_sync()
        self._log.log_value(ADDED, added, reduce="lifetime_sum")
        updates = self._train_from_replay()
        if updates:
            self._publish_weights()

    # -- experience in -------------------------------------------------------------------

    def _drain_live(self) -> list[TransitionChunk]:
        """This run's live transition chunks (logged; the caller adds them to replay)."""
        if self._live_queue is None:
            return []
        chunks, stats = ray.get([self._live_queue.drain.remote(self._live_capacity),
                                 self._live_queue.stats.remote()])
        count = sum(len(c) for c in chunks)
        self._log.log_value(INGESTED, count, reduce="sum")
        self._log.log_value(INGESTED_LIFETIME, count, reduce="lifetime_sum")
        # the queue counts over its whole life: report its totals as they stand
        self._log.log_value(REFUSED_LIFETIME, int(stats["refused"]), window=1)
        self._log.log_value(DROPPED_LIFETIME, int(stats["dropped"]), window=1)
        return list(chunks)

    # -- the compact pipeline's learner thread around RLlib's own entry points ----------

    def step(self) -> dict[str, Any]:
        """One iteration; adds ``learner_idle_fraction`` (compact layout) to the result."""
        if self._compact is None:
            return dict(super().step())
        with self._compact.running():
            result: dict[str, Any] = super().step()
        if self._compact is not None:
            busy, idle = result.get(BUSY_S), result.get(IDLE_S)
            if isinstance(busy, float | int) and isinstance(idle, float | int) and busy + idle > 0:
                result[IDLE_FRACTION] = float(idle) / float(busy + idle)
        return result

    @property
    def replay_size(self) -> int:
        """Transitions in replay now (either layout)."""
        if self._compact is not None:
            with self._compact.lock:
                return len(self._compact.replay)
        return int(self._replay.get_num_timesteps())

    @property
    def compact(self) -> CompactPipeline | None:
        """The compact pipeline (``[replay] layout = "compact"``), else None."""
        return self._compact

    def _current(self) -> Any:
        """Compact layout: the learner thread paused and the driver's runner holding the
        learner's newest weights (``CompactPipeline.current``)."""
        compact = getattr(self, "_compact", None)
        return compact.current() if compact is not None else nullcontext()

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        """RLlib's own evaluation (not used by ``train.py``) on one learner state."""
        with self._current():
            return super().evaluate(*args, **kwargs)

    def get_module(self, *args: Any, **kwargs: Any) -> Any:
        """The driver's module (evaluation, export) with the learner's newest weights."""
        with self._current():
            return super().get_module(*args, **kwargs)

    def save_to_path(self, *args: Any, **kwargs: Any) -> Any:
        """Checkpoint one consistent state: learner and driver runner alike."""
        with self._current():
            return super().save_to_path(*args, **kwargs)

    def restore_from_path(self, *args: Any, **kwargs: Any) -> Any:
        with self._current():
            out = super().restore_from_path(*args, **kwargs)  # type: ignore[no-untyped-call]
            self._after_restore()
        return out

    def get_state(self, *args: Any, **kwargs: Any) -> Any:
        with self._current():
            return super().get_state(*args, **kwargs)

    def set_state(self, *args: Any, **kwargs: Any) -> Any:
        with self._current():
            out = super().set_state(*args, **kwargs)
            self._after_restore()
        return out

    def _after_restore(self) -> None:
        """Compact layout: counters from the restored logger, the restored weights
        published to every runner as a new version."""
        compact: CompactPipeline | None = getattr(self, "_compact", None)
        if compact is not None:
            compact.reload_counters()
            compact.publish()
            compact.sync_local_runner()

    def cleanup(self) -> None:
        if getattr(self, "_compact", None) is not None:
            self._compact.stop()  # type: ignore[union-attr]
        super().cleanup()

    def _sample_sync(self) -> int:
        """All runners sample once and the step waits for the slowest (stock behaviour)."""
        with self._log.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            sampled: Any = synchronous_parallel_sample(
                worker_set=self._runners, concat=True,
                sample_timeout_s=self._cfg.sample_timeout_s,
                _uses_new_env_runners=True, _return_metrics=True)
        episodes, runner_metrics = sampled
        self._log.aggregate(runner_metrics, key=ENV_RUNNER_RESULTS)
        return self._add(episodes)

    def _sample_async(self) -> int:
        """Collect finished requests and re-arm every idle runner with the newest weights."""
        group = self._runners
        wait = 0.0 if self._can_train() else NO_TRAINING_WAIT_S
        kwargs: dict[str, Any] = {"env_steps_sampled": int(self._log.peek(
            (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0))}
        if self._weights_ref is not None:
            kwargs["state"] = self._weights_ref
        deadline = time.monotonic() + wait
        with self._log.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            # poll: RLlib's fetch with a timeout waits for *all* requests (ray.wait with
            # num_returns = all), i.e. for the slowest runner, which is what we avoid
            while True:
                results: list[Any] = group.foreach_env_runner_async_fetch_ready(
                    func=SAMPLE_TAG, tag=SAMPLE_TAG, kwargs=kwargs, timeout_seconds=0.0,
                    return_actor_ids=True)
                if results or time.monotonic() >= deadline:
                    break
                time.sleep(POLL_S)
        episodes: list[Any] = []
        runner_metrics: list[Any] = []
        for runner_id, (chunk, metrics) in results:
            episodes.extend(chunk)
            runner_metrics.append(metrics)
            self._log.log_value(f"{RUNNER_STEPS}{runner_id}", sum(len(e) for e in chunk),
                                   reduce="lifetime_sum")
        if runner_metrics:
            self._log.aggregate(runner_metrics, key=ENV_RUNNER_RESULTS)
        return self._add(episodes)

    def _add(self, episodes: list[Any]) -> int:
        if not episodes:
            return 0
        with self._log.log_time((TIMERS, REPLAY_BUFFER_ADD_DATA_TIMER)):
            self._replay.add(episodes)
        return sum(len(e) for e in episodes)

    # -- learning ------------------------------------------------------------------------

    def _replay_counts(self) -> tuple[float, float]:
        return (float(self._log.peek(ADDED, default=0.0)),
                float(self._log.peek(REPLAYED, default=0.0)))

    def _due(self) -> int:
        added, replayed = self._replay_counts()
        cfg = self._cfg
        return updates_due(added, replayed, float(cfg.training_intensity or 1.0),
                           int(cfg.num_steps_sampled_before_learning_starts),
                           int(cfg.total_train_batch_size))

    def _can_train(self) -> bool:
        return self._due() > 0

    def _train_from_replay(self) -> int:
        """Run the updates the replay ratio allows (at most ``apex_max_updates_per_step``)."""
        cfg = self._cfg
        updates = min(self._due(), int(getattr(cfg, "apex_max_updates_per_step", 16)))
        added, replayed = self._replay_counts()
        beta = per_beta(added, float(cfg.replay_buffer_config.get("beta", 0.4)),
                        float(getattr(cfg, "apex_beta_final", 1.0)),
                        int(getattr(cfg, "apex_beta_anneal_steps", 0)))
        self._log.log_value(BETA, beta, window=1)
        for _ in range(updates):
            self._update_once(beta)
        if updates:
            replayed += updates * cfg.total_train_batch_size
            self._log.log_value(REPLAYED, updates * cfg.total_train_batch_size,
                                   reduce="lifetime_sum")
        learning_added = added - cfg.num_steps_sampled_before_learning_starts
        if learning_added > 0:
            self._log.log_value(REPLAY_RATIO, replayed / learning_added, window=1)
        return updates

    def _update_once(self, beta: float) -> None:
        cfg = self._cfg
        with self._log.log_time((TIMERS, REPLAY_BUFFER_SAMPLE_TIMER)):
            episodes = self._replay.sample(
                num_items=cfg.total_train_batch_size, n_step=cfg.n_step, batch_length_T=0,
                lookback=0, min_batch_length_T=0, gamma=cfg.gamma, beta=beta,
                sample_episodes=True)
            self._log.aggregate([self._replay.get_metrics()],
                                   key=REPLAY_BUFFER_RESULTS)
        with self._log.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self._learners.update(
                episodes=episodes,
                timesteps={
                    NUM_ENV_STEPS_SAMPLED_LIFETIME: self._log.peek(
                        (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0),
                    NUM_AGENT_STEPS_SAMPLED_LIFETIME: self._log.peek(
                        (ENV_RUNNER_RESULTS, NUM_AGENT_STEPS_SAMPLED_LIFETIME), default={}),
                })
            td_errors: dict[str, list[Any]] = defaultdict(list)
            for res in learner_results:
                for module_id, module_results in res.items():
                    if TD_ERROR_KEY in module_results:
                        td_errors[module_id].extend(
                            convert_to_numpy(module_results.pop(TD_ERROR_KEY).peek()))
            self._log.aggregate(learner_results, key=LEARNER_RESULTS)
        with self._log.log_time((TIMERS, REPLAY_BUFFER_UPDATE_PRIOS_TIMER)):
            update_priorities_in_episode_replay_buffer(
                replay_buffer=self._replay,
                td_errors={m: {TD_ERROR_KEY: np.concatenate(e, axis=0)}
                           for m, e in td_errors.items()})

    def _publish_weights(self) -> None:
        """Make the learner's weights available to the runners.

        Async: one object-store copy that every runner's next request carries (a runner
        skips it when its weights are as new), and the driver's local runner directly.
        Sync: RLlib's broadcast (remote and local runners), as stock DQN.
        """
        group = self._runners
        with self._log.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            if not self._async:
                group.sync_weights(from_worker_or_learner_group=self._learners,
                                   policies=None, global_vars=None, inference_only=True)
                return
            state = self._learners.get_state(
                components=f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}",
                inference_only=True)[COMPONENT_LEARNER]
            weights = {k: v for k, v in state.items()
                       if k in (COMPONENT_RL_MODULE, WEIGHTS_SEQ_NO)}
            self._weights_ref = ray.put(weights)
            # the driver's own runner serves ``Algorithm.get_module()`` (evaluation,
            # export): keep it current too
            if self.env_runner is not None:
                self.env_runner.set_state(weights)
