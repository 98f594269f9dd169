"""Compact prioritized replay: each bar's feature row stored once, windows rebuilt on sampling.

An observation (``envs/observation.py``) is the last ``window`` rows of the normalized
features, flattened oldest first, then ``n_state`` position-state values. Consecutive
observations of one episode share ``window - 1`` rows, so storing them whole (twice per
transition: observation and next observation) holds each bar up to ``2 * window`` times.
Here, as DQN implementations do for stacked Atari frames, each *stream* (one env of a
vector env) appends each bar's row once to its own ring of bars, and a transition keeps
only the id of its observation's last bar, of its next observation's last bar, and the
two small position states. ``sample`` rebuilds the windows with one numpy fancy index
over the whole batch (no Python loop per sample).

Episode boundaries: the env starts an episode at a decision bar ``t0 >= window - 1`` and
its first observation is the ``window`` real bars ending at ``t0`` (no padding), so
``start_episode`` takes exactly that first window; every later observation adds one bar
(``push_bars``). A transition is refused if either of its windows would reach a bar
before its stream's current episode start, so a window never mixes two episodes.

Eviction: transitions live in a per-stream ring of ``capacity // n_streams`` slots (the
oldest is overwritten), bars in a per-stream ring of ``bars_per_stream`` rows. When a
bar is overwritten, every transition whose window used it is evicted first (priority 0,
never sampled again); transitions are evicted oldest first, so this is amortized O(1).

Sampling and priorities come from ``PrioritizedIndex`` (``sum_tree.py``); new transitions
get the largest priority given so far (1.0 at first), as RLlib's prioritized buffer does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from raytrade.algos.sum_tree import PrioritizedIndex

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ReplayBatch:
    """A sampled batch: ``slots`` (for ``update_priorities``), the transitions and the
    importance weights (float64, largest possible weight = 1)."""

    slots: I64
    obs: F32
    actions: I64
    rewards: F32
    next_obs: F32
    dones: npt.NDArray[np.bool_]
    weights: npt.NDArray[np.float64]


def stream_slots(streams: I64, counts: I64, per_stream: int) -> I64:
    """Slots for new transitions of ``streams`` (in order) given each stream's running
    count: stream ``s``'s ``n``-th transition goes to ``s * per_stream + n % per_stream``."""
    order = np.argsort(streams, kind="stable")
    sorted_streams = streams[order]
    first = np.searchsorted(sorted_streams, sorted_streams, side="left")
    rank = np.empty_like(streams)
    rank[order] = np.arange(len(streams)) - first
    seq = counts[streams] + rank
    return streams * per_stream + seq % per_stream


class CompactReplay:
    """Prioritized replay storing each bar once per stream (see the module docstring).

    ``capacity`` transitions in all (split evenly over ``n_streams``), observations of
    ``window`` bars of ``n_features`` float32 features plus ``n_state`` state values."""

    def __init__(self, capacity: int, window: int, n_features: int, *, n_state: int = 4,
                 n_streams: int = 1, bars_per_stream: int | None = None,
                 alpha: float = 0.6, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if not 1 <= n_streams <= capacity:
            raise ValueError(f"n_streams must be in 1..capacity ({capacity}), got {n_streams}")
        if window < 1 or n_features < 1 or n_state < 0:
            raise ValueError(f"bad shape: window={window}, n_features={n_features}, "
                             f"n_state={n_state}")
        self.window, self.n_features, self.n_state = window, n_features, n_state
        self.n_streams = n_streams
        self.per_stream = capacity // n_streams
        # default: one bar per transition plus room for the warm-up windows of episodes
        # of >= 8 * (window - 1) steps; shorter episodes evict their oldest steps earlier
        self.bar_cap = bars_per_stream or self.per_stream + self.per_stream // 8 + window
        if self.bar_cap < window + 1:
            raise ValueError(f"bars_per_stream must be > window ({window}), got {self.bar_cap}")
        n = self.per_stream * n_streams
        self.capacity = n
        self._bars = np.zeros((n_streams * self.bar_cap, n_features), dtype=np.float32)
        self._bar_count = np.zeros(n_streams, dtype=np.int64)
        self._episode_start = np.full(n_streams, -1, dtype=np.int64)
        self._obs_bar = np.zeros(n, dtype=np.int64)
        self._next_bar = np.zeros(n, dtype=np.int64)
        self._state = np.zeros((n, n_state), dtype=np.float32)
        self._next_state = np.zeros((n, n_state), dtype=np.float32)
        self._actions = np.zeros(n, dtype=np.int64)
        self._rewards = np.zeros(n, dtype=np.float32)
        self._dones = np.zeros(n, dtype=np.bool_)
        self._count = np.zeros(n_streams, dtype=np.int64)
        self._tail = np.zeros(n_streams, dtype=np.int64)  # oldest sequence number not evicted
        self._last_obs_bar = np.full(n_streams, -1, dtype=np.int64)
        self._scratch = np.empty((0, n_features), dtype=np.float32)
        self._max_priority = 1.0
        self.index = PrioritizedIndex(n, alpha=alpha, seed=seed)

    @property
    def nbytes(self) -> int:
        """Bytes of every array the buffer holds (not the one-batch gather scratch)."""
        arrays = (self._bars, self._obs_bar, self._next_bar, self._state, self._next_state,
                  self._actions, self._rewards, self._dones)
        return sum(a.nbytes for a in arrays) + self.index.nbytes

    def __len__(self) -> int:
        return len(self.index)

    def _check_rows(self, rows: F32, what: str) -> F32:
        a = np.asarray(rows, dtype=np.float32)
        if a.ndim < 1 or a.shape[-1] != self.n_features:
            raise ValueError(f"{what}: rows must have {self.n_features} features, "
                             f"got shape {a.shape}")
        return a

    def _check_stream(self, streams: I64) -> I64:
        s = np.asarray(streams, dtype=np.int64).reshape(-1)
        if s.size and (s.min() < 0 or s.max() >= self.n_streams):
            raise ValueError(f"stream out of range 0..{self.n_streams - 1}")
        return s

    def start_episode(self, stream: int, first_window: F32) -> int:
        """Begin a new episode on ``stream`` with its first observation's ``window`` rows
        (oldest first); returns the id of the window's last bar."""
        w = self._check_rows(first_window, "start_episode")
        if w.shape != (self.window, self.n_features):
            raise ValueError(f"start_episode: first window must be ({self.window}, "
                             f"{self.n_features}), got {w.shape}")
        (s,) = self._check_stream(np.array([stream]))
        start = int(self._bar_count[s])
        for row in w:
            self._write_bar(int(s), row)
        self._episode_start[s] = start
        return start + self.window - 1

    def push_bars(self, streams: npt.ArrayLike, rows: F32) -> I64:
        """Append one bar row to each of ``streams`` (distinct); returns the new bar ids."""
        s = self._check_stream(np.asarray(streams))
        r = self._check_rows(rows, "push_bars").reshape(-1, self.n_features)
        if len(r) != len(s) or len(np.unique(s)) != len(s):
            raise ValueError("push_bars: one row per stream, each stream at most once")
        if np.any(self._episode_start[s] < 0):
            raise ValueError("push_bars: a stream has no episode (call start_episode first)")
        ids = self._bar_count[s].copy()
        self._evict_bars(s, ids + 1 - self.bar_cap)
        self._bars[s * self.bar_cap + ids % self.bar_cap] = r
        self._bar_count[s] = ids + 1
        return ids

    def _write_bar(self, s: int, row: F32) -> None:
        g = int(self._bar_count[s])
        self._evict_bars(np.array([s]), np.array([g + 1 - self.bar_cap]))
        self._bars[s * self.bar_cap + g % self.bar_cap] = row
        self._bar_count[s] = g + 1

    def _evict_bars(self, streams: I64, floors: I64) -> None:
        """Evict, oldest first, the transitions whose window starts below ``floors``
        (the oldest bar id still stored after the write)."""
        for s, floor in zip(streams.tolist(), floors.tolist(), strict=True):
            stale = []
            while self._tail[s] < self._count[s]:
                slot = s * self.per_stream + self._tail[s] % self.per_stream
                if self._obs_bar[slot] - self.window + 1 >= floor:
                    break
                stale.append(slot)
                self._tail[s] += 1
            if stale:
                self.index.update(stale, 0.0)

    def add(self, streams: npt.ArrayLike, obs_bars: npt.ArrayLike, states: F32,
            actions: npt.ArrayLike, rewards: npt.ArrayLike, next_bars: npt.ArrayLike,
            next_states: F32, dones: npt.ArrayLike) -> I64:
        """Store transitions: each observation is the window ending at bar ``obs_bars``
        of its stream plus ``states``; the next observation likewise. Returns the slots."""
        s = self._check_stream(np.asarray(streams))
        ob = np.asarray(obs_bars, dtype=np.int64).reshape(-1)
        nb = np.asarray(next_bars, dtype=np.int64).reshape(-1)
        st = np.asarray(states, dtype=np.float32)
        nst = np.asarray(next_states, dtype=np.float32)
        if st.shape != (len(s), self.n_state) or nst.shape != st.shape or \
                not len(ob) == len(nb) == len(s):
            raise ValueError(f"add: {len(s)} transitions need bar ids of length {len(s)} and "
                             f"states of shape ({len(s)}, {self.n_state}); got {len(ob)}, "
                             f"{len(nb)}, {st.shape}, {nst.shape}")
        start = self._episode_start[s]
        lo = np.maximum(start, self._bar_count[s] - self.bar_cap)
        if np.any(start < 0) or np.any(ob - self.window + 1 < lo) or np.any(nb <= ob) \
                or np.any(nb >= self._bar_count[s]):
            raise ValueError("add: a window is not within its stream's current episode's "
                             "stored bars (or next bar <= observation bar)")
        for stream in np.unique(s).tolist():
            mine = ob[s == stream]
            if np.any(np.diff(mine) <= 0) or mine[0] <= self._last_obs_bar[stream]:
                raise ValueError(f"add: stream {stream}'s observation bars must increase")
            self._last_obs_bar[stream] = mine[-1]
        slots = stream_slots(s, self._count, self.per_stream)
        np.add.at(self._count, s, 1)
        self._tail[:] = np.maximum(self._tail, self._count - self.per_stream)
        self._obs_bar[slots], self._next_bar[slots] = ob, nb
        self._state[slots], self._next_state[slots] = st, nst
        self._actions[slots] = np.asarray(actions, dtype=np.int64).reshape(-1)
        self._rewards[slots] = np.asarray(rewards, dtype=np.float32).reshape(-1)
        self._dones[slots] = np.asarray(dones, dtype=np.bool_).reshape(-1)
        self.index.update(slots, self._max_priority)
        return slots

    def _windows(self, slots: I64, last_bars: I64, states: F32, out: F32) -> None:
        """Write the observations whose windows end at ``last_bars`` into ``out``."""
        k = self.window * self.n_features
        streams = slots // self.per_stream
        rows = streams[:, None] * self.bar_cap \
            + (last_bars[:, None] + np.arange(1 - self.window, 1)) % self.bar_cap
        n = rows.size
        if len(self._scratch) < n:  # reused gather target (never handed out)
            self._scratch = np.empty((n, self.n_features), dtype=np.float32)
        np.take(self._bars, rows.reshape(-1), axis=0, out=self._scratch[:n])
        out[:, :k] = self._scratch[:n].reshape(len(slots), k)
        out[:, k:] = states[slots]

    def gather(self, slots: I64, weights: npt.NDArray[np.float64]) -> ReplayBatch:
        """The transitions at ``slots`` with the given weights, windows rebuilt.

        Observations and next observations share one allocation (two separate multi-MB
        arrays per batch cost ~2.5 ms more in page faults with glibc's allocator)."""
        pair = np.empty((2, len(slots), self.window * self.n_features + self.n_state),
                        dtype=np.float32)
        self._windows(slots, self._obs_bar[slots], self._state, pair[0])
        self._windows(slots, self._next_bar[slots], self._next_state, pair[1])
        return ReplayBatch(slots, pair[0], self._actions[slots], self._rewards[slots],
                           pair[1], self._dones[slots], weights)

    def sample(self, batch: int, beta: float = 0.4) -> ReplayBatch:
        """A prioritized batch (with replacement) and its importance weights."""
        slots, weights = self.index.sample(batch, beta)
        return self.gather(slots, weights)

    def update_priorities(self, slots: I64, priorities: npt.ArrayLike) -> None:
        """New priorities (e.g. |TD error| + eps) for sampled slots still live. A slot
        evicted since it was sampled stays empty; one overwritten since then takes the
        priority meant for its predecessor (as in RLlib's buffer)."""
        p = np.asarray(priorities, dtype=np.float64)
        if np.any(p <= 0):
            raise ValueError("update_priorities: priorities must be > 0")
        live = self.index.priority(slots) > 0  # an evicted slot stays evicted
        self.index.update(np.asarray(slots)[live], np.broadcast_to(p, live.shape)[live])
        self._max_priority = max(self._max_priority, float(p.max(initial=0.0)))
