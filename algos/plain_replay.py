"""The plain prioritized replay: whole observations stored (as RLlib's buffer stores them).

It is the reference ``CompactReplay`` is checked against and the baseline of
``scripts/bench_replay.py``: the same slot layout (per-stream rings), the same
``PrioritizedIndex`` and the same max-priority rule for new transitions, so for the same
transitions, priorities and seed both draw the same slots and must return identical
batches.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from raytrade.algos.compact_replay import F32, I64, ReplayBatch, stream_slots
from raytrade.algos.sum_tree import PrioritizedIndex


class PlainReplay:
    """Prioritized replay of ``capacity`` transitions of ``obs_size`` float32 observations."""

    def __init__(self, capacity: int, obs_size: int, *, n_streams: int = 1,
                 alpha: float = 0.6, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if not 1 <= n_streams <= capacity:
            raise ValueError(f"n_streams must be in 1..capacity ({capacity}), got {n_streams}")
        self.per_stream = capacity // n_streams
        self.n_streams, self.obs_size = n_streams, obs_size
        n = self.capacity = self.per_stream * n_streams
        self._obs = np.zeros((n, obs_size), dtype=np.float32)
        self._next_obs = np.zeros((n, obs_size), dtype=np.float32)
        self._actions = np.zeros(n, dtype=np.int64)
        self._rewards = np.zeros(n, dtype=np.float32)
        self._dones = np.zeros(n, dtype=np.bool_)
        self._count = np.zeros(n_streams, dtype=np.int64)
        self._max_priority = 1.0
        self.index = PrioritizedIndex(n, alpha=alpha, seed=seed)

    @property
    def nbytes(self) -> int:
        """Bytes of every array the buffer holds."""
        arrays = (self._obs, self._next_obs, self._actions, self._rewards, self._dones)
        return sum(a.nbytes for a in arrays) + self.index.nbytes

    def __len__(self) -> int:
        return len(self.index)

    def add(self, streams: npt.ArrayLike, obs: F32, actions: npt.ArrayLike,
            rewards: npt.ArrayLike, next_obs: F32, dones: npt.ArrayLike) -> I64:
        """Store whole transitions; returns their slots."""
        s = np.asarray(streams, dtype=np.int64).reshape(-1)
        if s.size and (s.min() < 0 or s.max() >= self.n_streams):
            raise ValueError(f"stream out of range 0..{self.n_streams - 1}")
        o = np.asarray(obs, dtype=np.float32)
        if o.shape != (len(s), self.obs_size):
            raise ValueError(f"add: obs must be ({len(s)}, {self.obs_size}), got {o.shape}")
        slots = stream_slots(s, self._count, self.per_stream)
        np.add.at(self._count, s, 1)
        self._obs[slots], self._next_obs[slots] = o, next_obs
        self._actions[slots] = np.asarray(actions, dtype=np.int64).reshape(-1)
        self._rewards[slots] = np.asarray(rewards, dtype=np.float32).reshape(-1)
        self._dones[slots] = np.asarray(dones, dtype=np.bool_).reshape(-1)
        self.index.update(slots, self._max_priority)
        return slots

    def gather(self, slots: I64, weights: npt.NDArray[np.float64]) -> ReplayBatch:
        """The transitions at ``slots`` with the given weights (observations and next
        observations in one allocation, as ``CompactReplay.gather``)."""
        pair = np.empty((2, len(slots), self.obs_size), dtype=np.float32)
        np.take(self._obs, slots, axis=0, out=pair[0])
        np.take(self._next_obs, slots, axis=0, out=pair[1])
        return ReplayBatch(slots, pair[0], self._actions[slots], self._rewards[slots],
                           pair[1], self._dones[slots], weights, np.ones(len(slots), np.int64))

    def sample(self, batch: int, beta: float = 0.4) -> ReplayBatch:
        """A prioritized batch (with replacement) and its importance weights."""
        slots, weights = self.index.sample(batch, beta)
        return self.gather(slots, weights)

    def update_priorities(self, slots: I64, priorities: npt.ArrayLike) -> None:
        """New priorities for sampled slots still live."""
        p = np.asarray(priorities, dtype=np.float64)
        if np.any(p <= 0):
            raise ValueError("update_priorities: priorities must be > 0")
        live = self.index.priority(slots) > 0
        self.index.update(np.asarray(slots)[live], np.broadcast_to(p, live.shape)[live])
        self._max_priority = max(self._max_priority, float(p.max(initial=0.0)))
