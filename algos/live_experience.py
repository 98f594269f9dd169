"""Live experience: paper-trading actors push their transitions to the training run.

``LiveExperienceQueue`` is a Ray actor (named, so actors anywhere in the cluster find it
with ``ray.get_actor(QUEUE_NAME)``) holding finished episode chunks, bounded by a number
of transitions: when a push would overflow it, the oldest chunks are dropped and counted.
:class:`~raytrade.algos.apex_dqn.ApeXDQN` drains it at the start of every training step into
the prioritized replay buffer, next to the env runners' samples, and reports the count as the metric
``live_transitions_ingested`` (this iteration) and
``live_transitions_ingested_lifetime``. Off unless ``[live] enabled = true``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt
import ray
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from raytrade.envs.errors import ConfigError

QUEUE_NAME = "raytrade-live-experience"
INGESTED = "live_transitions_ingested"
INGESTED_LIFETIME = "live_transitions_ingested_lifetime"


def episode_from_transitions(observations: npt.ArrayLike, actions: npt.ArrayLike,
                             rewards: npt.ArrayLike, *, terminated: bool = False,
                             truncated: bool = False) -> SingleAgentEpisode:
    """An RLlib episode chunk from ``T + 1`` observations, ``T`` actions and ``T`` rewards.

    Observations are the float32 vectors the policy saw (``observation.py``), actions
    the action indices, rewards the env's reward for each step (same ``reward_scale``).
    """
    obs = np.asarray(observations, dtype=np.float32)
    act = np.asarray(actions, dtype=np.int64)
    rew = np.asarray(rewards, dtype=np.float32)
    if obs.ndim != 2 or len(act) != len(rew) or len(obs) != len(act) + 1 or len(act) == 0:
        raise ConfigError(f"need T+1 observations and T actions and rewards, got "
                          f"{obs.shape}, {act.shape}, {rew.shape}")
    if not np.isfinite(obs).all() or not np.isfinite(rew).all():
        raise ConfigError("live transitions contain NaN or inf")
    episode = SingleAgentEpisode(observations=list(obs), actions=list(act),
                                 rewards=list(rew), terminated=terminated,
                                 truncated=truncated, len_lookback_buffer=0)
    return episode.to_numpy()


@ray.remote(num_cpus=0)
class LiveExperienceQueue:
    """A bounded FIFO of episode chunks, measured in transitions."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ConfigError("live queue capacity must be >= 1 transition")
        self.capacity = capacity
        self.chunks: deque[Any] = deque()
        self.size = 0
        self.pushed = 0
        self.dropped = 0
        self.drained = 0

    def push(self, episodes: list[Any]) -> int:
        """Add episode chunks; return how many transitions were accepted."""
        accepted = 0
        for ep in episodes:
            n = len(ep)
            if n == 0 or n > self.capacity:
                self.dropped += n
                continue
            while self.size + n > self.capacity:
                old = self.chunks.popleft()
                self.size -= len(old)
                self.dropped += len(old)
            self.chunks.append(ep)
            self.size += n
            accepted += n
        self.pushed += accepted
        return accepted

    def drain(self, max_transitions: int) -> list[Any]:
        """Remove and return the oldest chunks, up to ``max_transitions`` transitions."""
        out: list[Any] = []
        taken = 0
        while self.chunks and taken + len(self.chunks[0]) <= max_transitions:
            ep = self.chunks.popleft()
            self.size -= len(ep)
            taken += len(ep)
            out.append(ep)
        self.drained += taken
        return out

    def stats(self) -> dict[str, int]:
        """Counters: transitions held, pushed, dropped (overflow) and drained."""
        return {"size": self.size, "pushed": self.pushed, "dropped": self.dropped,
                "drained": self.drained}
