"""The compact Ape-X pipeline: compact fragments in, a learner thread out.

``[replay] layout = "compact"`` (the default) replaces RLlib's episode sampling and
``PrioritizedEpisodeReplayBuffer`` in :class:`~raytrade.algos.apex_dqn.ApeXDQN` with:

- **Runners** (``apex_epsilon.ApeXEnvRunner.apex_compact_sample``): each steps its vector
  env with batched greedy inference and epsilon-greedy in numpy and returns a
  :class:`~raytrade.algos.compact_fragment.CompactFragment` (only the feature rows each step
  adds). Every healthy runner has one request in flight; the driver re-arms a runner as
  soon as its fragment is in, carrying the newest weights *version* and a one-element list
  holding the weights' object ref, so Ray ships the weights only to a runner that asks for
  them (its version is older).
- **Replay** (``compact_replay.py``, ``fragment_ingest.py``): fragments and live chunks are
  stored compactly (each bar's feature row once per stream) with prioritized sampling on a
  compiled sum tree; n-step targets are built at sampling time.
- **Learner thread** (``learner_thread.py``): trains while the main thread samples and
  adds, during a training iteration (``ApeXDQN.step``); between iterations it is paused
  with its newest weights published and in the driver's runner, so evaluation, export and
  checkpoints all see one learner state. The replay ratio stays exact: an update is due
  when ``ratio * (added - learning_starts) - replayed >= batch``. When sampling runs
  ahead of the learner by more than ``max_updates_per_step`` due updates, runners are not
  re-armed until the learner catches up (back-pressure), so ``replayed / added`` never
  drifts. Weights are published every ``apex_weights_every`` updates.

Metrics (per iteration): ``replay_ratio``, ``learner_idle_fraction`` (from
``learner_busy_s`` and ``learner_idle_s``), ``learner_updates``,
``apex_weights_version``, ``replay_buffer/num_env_steps_stored``,
``apex_fragments_dropped_lifetime``, and under ``timers`` the mean seconds per event
(over the iteration's training steps that had the event; NaN in an iteration without it):
``apex_wait_s`` (main thread waiting for fragments, per wait), ``apex_ingest_s`` (adding a
fragment), ``apex_replay_sample_s``, ``apex_learner_update_s``, ``apex_weights_sync_s``
(learner thread).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import ray
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.env import INPUT_ENV_SINGLE_SPACES
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    LEARNER_RESULTS,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    TD_ERROR_KEY,
    TIMERS,
    WEIGHTS_SEQ_NO,
)
from ray.rllib.utils.numpy import convert_to_numpy
from raytrade.algos.compact_replay import CompactReplay, ReplayBatch
from raytrade.algos.fragment_ingest import FragmentGapError, FragmentIngestor
from raytrade.algos.learner_thread import LearnerThread
from raytrade.envs.observation import N_POSITION_STATE

COMPACT_TAG = "apex_compact_sample"
POLL_S = 0.002
"""Seconds between polls for finished fragments."""
MAX_WAIT_S = 0.05
"""Longest a training step waits for fragments before returning (seconds)."""
PRIORITY_EPS = 1e-6
"""Added to |TD error| so no sampled transition gets priority 0 (never sampled again)."""
LIVE_STREAMS = 1
RUNNER_STEPS = "apex_env_steps_from_runner_"
"""Prefix of the per-runner lifetime count of env steps delivered (async mode; runner id)."""
IDLE_FRACTION = "learner_idle_fraction"
BUSY_S = "learner_busy_s"
IDLE_S = "learner_idle_s"
UPDATES = "learner_updates"
WEIGHTS_VERSION = "apex_weights_version"
DROPPED = "apex_fragments_dropped_lifetime"
"""Fragments refused because an earlier one of their source was lost (their runner then
restarts its sampler)."""


def train_batch(batch: ReplayBatch) -> MultiAgentBatch:
    """The learner's batch (RLlib's DQN loss columns) from a replay batch."""
    columns = {
        Columns.OBS: batch.obs, Columns.NEXT_OBS: batch.next_obs,
        Columns.ACTIONS: batch.actions, Columns.REWARDS: batch.rewards,
        Columns.TERMINATEDS: batch.dones,
        "n_step": batch.n_steps.astype(np.float32),
        "weights": batch.weights.astype(np.float32),
    }
    sample_batch = SampleBatch(columns)  # type: ignore[no-untyped-call]
    return MultiAgentBatch({DEFAULT_MODULE_ID: sample_batch}, env_steps=len(batch.slots))


class _Timer:
    """Sum and count of one timed event (thread-local use only, read under the lock)."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, seconds: float) -> None:
        self.total += seconds
        self.count += 1

    def take(self) -> float | None:
        mean = self.total / self.count if self.count else None
        self.total, self.count = 0.0, 0
        return mean


class CompactPipeline:
    """The compact Ape-X step of one :class:`ApeXDQN` (see the module docstring)."""

    def __init__(self, algo: Any) -> None:
        self.algo = algo
        cfg = algo.config
        runners = algo.env_runner_group
        self.remote = runners.num_remote_env_runners() > 0
        envs = int(cfg.num_envs_per_env_runner)
        slots = runners.num_remote_env_runners() if self.remote else 1
        window = int(cfg.apex_window)
        space = (algo.spaces or {}).get(INPUT_ENV_SINGLE_SPACES, (None,))[0]
        if space is None or space.shape is None or len(space.shape) != 1:
            raise ValueError("compact replay needs the env's flat observation space")
        n_features, rest = divmod(int(space.shape[0]) - N_POSITION_STATE, window)
        if rest or n_features < 1:
            raise ValueError(f"compact replay: observation size {space.shape[0]} is not "
                             f"window {window} x features + {N_POSITION_STATE} state values")
        rb = cfg.replay_buffer_config
        self.replay = CompactReplay(
            int(rb["capacity"]), window, n_features, n_state=N_POSITION_STATE,
            n_streams=slots * envs + LIVE_STREAMS, alpha=float(rb.get("alpha", 0.6)),
            bars_per_transition=float(cfg.apex_bars_per_transition), seed=int(cfg.seed or 0))
        self.ingest = FragmentIngestor(self.replay, envs_per_slot=envs, n_slots=slots,
                                       live_streams=LIVE_STREAMS)
        self.lock = threading.Lock()
        log = algo.metrics
        self.added = float(log.peek("apex_env_steps_added_lifetime", default=0.0))
        self.replayed = float(log.peek("apex_env_steps_replayed_lifetime", default=0.0))
        self.sampled = int(log.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME),
                                    default=0))
        self.version = -1
        self.weights_ref: Any = None
        self._local_version = -1
        self._since_publish = 0
        self._learner_results: list[Any] = []
        self._beta = float(rb.get("beta", 0.4))
        self._timers = {k: _Timer() for k in ("apex_wait_s", "apex_ingest_s",
                                              "apex_replay_sample_s",
                                              "apex_learner_update_s",
                                              "apex_weights_sync_s")}
        self._replayed_new = 0.0
        self._updates_new = 0  # counted with ``_replayed_new``, under one lock
        self._added_new = 0.0
        self._restart_slots: set[int] = set()
        # per remote runner, env steps delivered since the last log (every runner is
        # logged every step, 0 included, so its lifetime count is in every result)
        self._runner_new = [0] * (slots if self.remote else 0)
        self._dropped_new = 0
        # it trains only inside ``ApeXDQN.step`` (``running``): outside an iteration the
        # learner is frozen, so evaluation, export and checkpoints see one state
        self.thread = LearnerThread(self._update_once, self._due, start_paused=True)
        self.thread.start()

    # -- the replay ratio -----------------------------------------------------------------

    def _due_locked(self) -> int:
        cfg = self.algo.config
        start = int(cfg.num_steps_sampled_before_learning_starts)
        batch = int(cfg.total_train_batch_size)
        if self.added < start or len(self.replay) < min(batch, self.replay.capacity):
            return 0
        budget = float(cfg.training_intensity or 1.0) * (self.added - start) - self.replayed
        return max(int(budget // batch), 0)

    def _due(self) -> int:
        with self.lock:
            return self._due_locked()

    def _beta_now(self) -> float:
        from raytrade.algos.apex_dqn import per_beta

        cfg = self.algo.config
        return per_beta(self.added, self._beta, float(cfg.apex_beta_final),
                        int(cfg.apex_beta_anneal_steps))

    # -- the learner thread ----------------------------------------------------------------

    def _update_once(self) -> None:
        cfg = self.algo.config
        batch_size = int(cfg.total_train_batch_size)
        t0 = time.perf_counter()
        with self.lock:
            beta = self._beta_now()
            batch = self.replay.sample(batch_size, beta, n_step=int(cfg.n_step),
                                       gamma=float(cfg.gamma))
            sampled = self.sampled
        t1 = time.perf_counter()
        results = self.algo.learner_group.update(
            batch=train_batch(batch),
            timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: sampled})
        td: list[Any] = []
        for res in results:
            for module_results in res.values():
                if TD_ERROR_KEY in module_results:
                    td.append(convert_to_numpy(module_results.pop(TD_ERROR_KEY).peek()))
        t2 = time.perf_counter()
        if not td:  # prioritized replay would silently degrade to stale priorities
            raise RuntimeError("the learner returned no TD errors: cannot update replay "
                               "priorities")
        with self.lock:
            err = np.abs(np.concatenate(td).reshape(-1))[:batch_size]
            self.replay.update_priorities(batch.slots, err + PRIORITY_EPS, batch.stamps)
            self.replayed += batch_size
            self._replayed_new += batch_size
            self._updates_new += 1
            self._learner_results.extend(results)
            self._timers["apex_replay_sample_s"].add(t1 - t0)
            self._timers["apex_learner_update_s"].add(t2 - t1)
        self._since_publish += 1
        if self._since_publish >= int(cfg.apex_weights_every) or self.version < 0:
            self.publish()

    def publish(self) -> None:
        """Put the learner's current weights in the object store as a new version (call
        from the learner thread, or with the thread paused)."""
        t0 = time.perf_counter()
        state = self.algo.learner_group.get_state(
            components=f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}",
            inference_only=True)[COMPONENT_LEARNER]
        weights = {k: v for k, v in state.items() if k in (COMPONENT_RL_MODULE,)}
        with self.lock:
            version = self.version + 1
        weights[WEIGHTS_SEQ_NO] = version
        ref = ray.put(weights)
        with self.lock:
            self.version, self.weights_ref = version, ref
            self._since_publish = 0
            self._timers["apex_weights_sync_s"].add(time.perf_counter() - t0)

    # -- the main thread ---------------------------------------------------------------------

    def _request_kwargs(self) -> dict[str, Any]:
        with self.lock:
            version, ref = self.version, self.weights_ref
        return {"weights": None if ref is None else [ref], "version": version,
                "env_steps_sampled": self.sampled,
                "num_steps": int(self.algo.config.get_rollout_fragment_length())}

    def _backlogged(self) -> bool:
        with self.lock:
            return self._due_locked() > int(self.algo.config.apex_max_updates_per_step)

    def _ingest(self, slot: int, fragment: Any, metrics: Any) -> int:
        t0 = time.perf_counter()
        with self.lock:
            try:
                n = self.ingest.ingest(slot, fragment)
            except FragmentGapError:
                # a fragment of this runner was lost (its request failed): its streams
                # continue bars replay never got; drop it and restart the runner's sampler
                self.ingest.forget(slot)
                self._restart_slots.add(slot)
                self._dropped_new += 1
                return 0
            self.added += n
            self._added_new += n
            self.sampled += n
            self._timers["apex_ingest_s"].add(time.perf_counter() - t0)
        self.thread.notify()
        if metrics is not None:
            self.algo.metrics.aggregate([metrics], key=ENV_RUNNER_RESULTS)
        if self.remote:
            self._runner_new[slot] += n
        return n

    def ingest_live(self, chunks: list[Any]) -> int:
        """Add live transition chunks to replay (returns how many transitions)."""
        n = 0
        with self.lock:
            for chunk in chunks:
                n += self.ingest.ingest_live(chunk)
            self.added += n
            self._added_new += n
        if n:
            self.thread.notify()
        return n

    def sample(self) -> int:
        """Collect finished fragments, add them, re-arm idle runners unless the learner
        is behind; returns env steps added."""
        self.thread.raise_if_failed()
        if not self.remote:
            return self._sample_local()
        group = self.algo.env_runner_group
        added = 0
        deadline = time.monotonic() + MAX_WAIT_S
        t0 = time.perf_counter()
        while True:
            results = group.fetch_ready_async_reqs(tags=COMPACT_TAG, timeout_seconds=0.0)
            if results:  # the main thread's wait: until a fragment is in (or the deadline)
                self._timers["apex_wait_s"].add(time.perf_counter() - t0)
            for runner_id, (fragment, metrics) in results:
                added += self._ingest(int(runner_id) - 1, fragment, metrics)
            if not self._backlogged():
                self._arm(group)
            if results:
                break
            if time.monotonic() >= deadline:
                self._timers["apex_wait_s"].add(time.perf_counter() - t0)
                break
            time.sleep(POLL_S)
            self.thread.raise_if_failed()
        return added

    def _arm(self, group: Any) -> None:
        """Send every idle healthy runner its next request (RLlib keeps one in flight per
        runner); a runner whose fragment was lost gets ``restart=True`` once."""
        kwargs = self._request_kwargs()
        for slot in sorted(self._restart_slots):
            sent = group.foreach_env_runner_async(
                COMPACT_TAG, tag=COMPACT_TAG, kwargs={**kwargs, "restart": True},
                remote_worker_ids=[slot + 1])
            if sent:
                self._restart_slots.discard(slot)
        group.foreach_env_runner_async(COMPACT_TAG, tag=COMPACT_TAG, kwargs=kwargs)

    def _sample_local(self) -> int:
        """No remote runners: the driver's own runner samples here while the learner
        thread trains (so sampling and learning still overlap)."""
        if self._backlogged():
            t0 = time.perf_counter()
            time.sleep(POLL_S)
            self._timers["apex_wait_s"].add(time.perf_counter() - t0)
            return 0
        runner = self.algo.env_runner
        restart = 0 in self._restart_slots
        self._restart_slots.discard(0)
        fragment, metrics = runner.apex_compact_sample(**self._request_kwargs(),
                                                       restart=restart)
        return self._ingest(0, fragment, metrics)

    def reload_counters(self) -> None:
        """Take the replay counters and the global step count from the algorithm's
        logger (after a restore: they are restored there)."""
        log = self.algo.metrics
        with self.lock:
            self.added = float(log.peek("apex_env_steps_added_lifetime", default=0.0))
            self.replayed = float(log.peek("apex_env_steps_replayed_lifetime", default=0.0))
            self.sampled = int(log.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME),
                                        default=0))
            # nothing pending from before the restore may reach the restored logger
            self._added_new = self._replayed_new = 0.0
            self._updates_new = self._dropped_new = 0
            self._runner_new = [0] * len(self._runner_new)
            self._learner_results = []
            for timer in self._timers.values():
                timer.take()
        self.thread.take_time()

    @contextmanager
    def running(self) -> Iterator[None]:
        """One training iteration: the learner thread trains inside; on leaving it is
        paused, its newest weights published and the driver's runner holds them."""
        with self.thread.resumed():
            yield
        if self._since_publish > 0 or self.version < 0:
            self.publish()
        self.sync_local_runner()
        # the updates after the iteration's last training step: into the logger now, so
        # a checkpoint between iterations holds exact lifetime counts
        self.log_metrics()

    @contextmanager
    def current(self) -> Iterator[None]:
        """Inside: the learner thread paused, its newest weights published and the
        driver's runner holding them, so ``get_module()``, exports and checkpoints see
        the learner exactly as it is."""
        with self.thread.paused():
            if self._since_publish > 0 or self.version < 0:
                self.publish()
            self.sync_local_runner()
            yield

    def sync_local_runner(self) -> None:
        """Bring the driver's runner (``Algorithm.get_module()``: evaluation, export) to
        the newest published weights."""
        runner = self.algo.env_runner
        with self.lock:
            version, ref = self.version, self.weights_ref
        if runner is None or ref is None or version <= self._local_version:
            return
        # the runner's own version check (it may also sample, with 0 remote runners)
        runner._take_weights([ref], version)
        self._local_version = version

    def log_metrics(self) -> None:
        """This training step's pipeline metrics into the algorithm's logger (sums over
        the iteration; ``ApeXDQN.step`` turns busy and idle seconds into the fraction)."""
        log = self.algo.metrics
        spent = self.thread.take_time()
        with self.lock:
            results, self._learner_results = self._learner_results, []
            added, replayed = self._added_new, self._replayed_new
            self._added_new = self._replayed_new = 0.0
            updates, self._updates_new = self._updates_new, 0
            dropped, self._dropped_new = self._dropped_new, 0
            timers = {k: t.take() for k, t in self._timers.items()}
            stored = len(self.replay)
            base = self.added - self.algo.config.num_steps_sampled_before_learning_starts
            ratio = self.replayed / base if base > 0 else None
            version = self.version
            beta = self._beta_now()
        if results:
            log.aggregate(results, key=LEARNER_RESULTS)
        log.log_value("apex_env_steps_added_lifetime", added, reduce="lifetime_sum")
        log.log_value("apex_env_steps_replayed_lifetime", replayed, reduce="lifetime_sum")
        if ratio is not None:
            log.log_value("replay_ratio", ratio, window=1)
        log.log_value("per_beta", beta, window=1)
        log.log_value(DROPPED, dropped, reduce="lifetime_sum")
        for slot, steps in enumerate(self._runner_new):
            log.log_value(f"{RUNNER_STEPS}{slot + 1}", steps, reduce="lifetime_sum")
            self._runner_new[slot] = 0
        # the update count from the same critical section as the replayed steps (the
        # thread's own count lags an update that finishes while this runs)
        log.log_value(UPDATES, updates, reduce="sum")
        log.log_value(BUSY_S, spent.busy_s, reduce="sum")
        log.log_value(IDLE_S, spent.idle_s, reduce="sum")
        log.log_value(WEIGHTS_VERSION, version, window=1)
        log.log_value(("replay_buffer", "num_env_steps_stored"), stored, window=1)
        for key, mean in timers.items():
            if mean is not None:
                log.log_value((TIMERS, key), mean, reduce="mean")

    def stop(self) -> None:
        self.thread.stop()
