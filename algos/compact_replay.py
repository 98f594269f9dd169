"""Compact prioritized replay: each bar's feature row stored once, windows rebuilt on sampling.

An observation (``envs/observation.py``) is the last ``window`` rows of the normalized
features, flattened oldest first, then ``n_state`` position-state values. Consecutive
observations of one episode share ``window - k`` rows when they are ``k`` bars apart, so
storing them whole (twice per transition: observation and next observation) holds each
bar up to ``2 * window`` times. Here, as DQN implementations do for stacked Atari frames,
each *stream* (one env of a vector env) appends each bar's row once to its own ring of
bars, and a transition keeps only the id of its observation's last bar, of its next
observation's last bar, and the two small position states. ``sample`` rebuilds the
windows with one numpy fancy index over the whole batch (no Python loop per sample).

Episodes: ``start_episode`` (or ``append_rows`` with ``new_episode``) begins an episode
with its first observation's ``window`` real rows; later rows continue it. Every bar
carries its episode's id, and a transition is refused unless both its windows lie in one
episode's stored bars, so a window never mixes two episodes. Each transition keeps its
episode id and its ``terminated``/``truncated`` flags.

N-step targets are computed at sampling time (``sample``/``gather`` with ``n_step > 1``):
consecutive transitions of a stream sit in consecutive slots of its ring, so the look-ahead
reads the next slots, vectorized over the batch (one numpy pass per look-ahead step). It
takes up to ``n_step`` transitions of the same episode, each starting where the previous
ended, and stops after one that terminated or was truncated. A transition whose look-ahead
reaches past the newest transition its stream has stored uses what is stored: it
bootstraps from the newest stored next observation with the exponent actually used
(``ReplayBatch.n_steps``), as RLlib's episode replay buffer does at the end of a stored
chunk. Rewards are summed in float64 in step order and rounded to float32 once.

Eviction: transitions live in a per-stream ring of ``capacity // n_streams`` slots (the
oldest is overwritten), bars in a per-stream ring of ``bars_per_stream`` rows. When a
bar is overwritten, every transition whose window used it is evicted first (priority 0,
never sampled again); transitions are evicted oldest first (a vectorized binary search
over each stream's live range, so a bulk write costs O(log capacity) per stream).

Sampling and priorities come from ``PrioritizedIndex`` (``sum_tree.py``); new transitions
get the largest priority given so far (1.0 at first), as RLlib's prioritized buffer does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from raytrade.algos.sum_tree import PrioritizedIndex

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ReplayBatch:
    """A sampled batch: ``slots`` (for ``update_priorities``), the transitions and the
    importance weights (float64, largest possible weight = 1). With n-step targets,
    ``rewards`` is the discounted sum over ``n_steps`` transitions (the discount exponent
    to bootstrap with), ``next_obs`` the last one's next observation and ``dones`` its
    ``terminated``; with one step ``n_steps`` is all ones."""

    slots: I64
    obs: F32
    actions: I64
    rewards: F32
    next_obs: F32
    dones: B
    weights: npt.NDArray[np.float64]
    n_steps: I64
    stamps: I64 | None = None
    """Write number of each slot's transition when sampled: ``update_priorities`` skips a
    slot rewritten since (the learner thread updates priorities after the driver may have
    added transitions over the oldest slots)."""


def stream_ranks(streams: I64) -> I64:
    """Each entry's rank among the earlier entries of the same stream (0, 1, ...)."""
    order = np.argsort(streams, kind="stable")
    sorted_streams = streams[order]
    first = np.searchsorted(sorted_streams, sorted_streams, side="left")
    rank = np.empty_like(streams)
    rank[order] = np.arange(len(streams)) - first
    return rank


def stream_slots(streams: I64, counts: I64, per_stream: int) -> I64:
    """Slots for new transitions of ``streams`` (in order) given each stream's running
    count: stream ``s``'s ``n``-th transition goes to ``s * per_stream + n % per_stream``."""
    seq = counts[streams] + stream_ranks(streams)
    return streams * per_stream + seq % per_stream


class CompactReplay:
    """Prioritized replay storing each bar once per stream (see the module docstring).

    ``capacity`` transitions in all (split evenly over ``n_streams``), observations of
    ``window`` bars of ``n_features`` float32 features plus ``n_state`` state values. The
    bar ring holds ``bars_per_transition`` rows per transition (the decision interval in
    bars when decisions are ``k > 1`` bars apart) plus room for episodes' first windows,
    unless ``bars_per_stream`` sets it."""

    def __init__(self, capacity: int, window: int, n_features: int, *, n_state: int = 4,
                 n_streams: int = 1, bars_per_stream: int | None = None,
                 bars_per_transition: float = 1.0, alpha: float = 0.6,
                 seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if not 1 <= n_streams <= capacity:
            raise ValueError(f"n_streams must be in 1..capacity ({capacity}), got {n_streams}")
        if window < 1 or n_features < 1 or n_state < 0:
            raise ValueError(f"bad shape: window={window}, n_features={n_features}, "
                             f"n_state={n_state}")
        if not bars_per_transition >= 1.0:
            raise ValueError(f"bars_per_transition must be >= 1, got {bars_per_transition}")
        self.window, self.n_features, self.n_state = window, n_features, n_state
        self.n_streams = n_streams
        self.per_stream = capacity // n_streams
        # default: k bars per transition plus room for the warm-up windows of episodes
        # of >= 8 * (window - 1) steps; shorter episodes evict their oldest steps earlier
        self.bar_cap = bars_per_stream or math.ceil(self.per_stream * bars_per_transition) \
            + self.per_stream // 8 + window
        if self.bar_cap < window + 1:
            raise ValueError(f"bars_per_stream must be > window ({window}), got {self.bar_cap}")
        n = self.per_stream * n_streams
        self.capacity = n
        self._bars = np.zeros((n_streams * self.bar_cap, n_features), dtype=np.float32)
        self._bar_episode = np.full(n_streams * self.bar_cap, -1, dtype=np.int64)
        self._bar_count = np.zeros(n_streams, dtype=np.int64)
        self._stream_episode = np.full(n_streams, -1, dtype=np.int64)
        self._next_episode = 0
        self._obs_bar = np.zeros(n, dtype=np.int64)
        self._next_bar = np.zeros(n, dtype=np.int64)
        self._state = np.zeros((n, n_state), dtype=np.float32)
        self._next_state = np.zeros((n, n_state), dtype=np.float32)
        self._actions = np.zeros(n, dtype=np.int64)
        self._rewards = np.zeros(n, dtype=np.float32)
        self._dones = np.zeros(n, dtype=np.bool_)
        self._truncated = np.zeros(n, dtype=np.bool_)
        self._stamp = np.zeros(n, dtype=np.int64)
        self._writes = 0
        self._episode = np.full(n, -1, dtype=np.int64)
        self._count = np.zeros(n_streams, dtype=np.int64)
        self._tail = np.zeros(n_streams, dtype=np.int64)  # oldest sequence number not evicted
        self._last_obs_bar = np.full(n_streams, -1, dtype=np.int64)
        self._scratch = np.empty((0, n_features), dtype=np.float32)
        self._max_priority = 1.0
        self.index = PrioritizedIndex(n, alpha=alpha, seed=seed)

    @property
    def nbytes(self) -> int:
        """Bytes of every array the buffer holds (not the one-batch gather scratch)."""
        arrays = (self._bars, self._bar_episode, self._obs_bar, self._next_bar, self._state,
                  self._next_state, self._actions, self._rewards, self._dones,
                  self._truncated, self._episode, self._stamp)
        return sum(a.nbytes for a in arrays) + self.index.nbytes

    def __len__(self) -> int:
        return len(self.index)

    def bar_count(self, stream: int) -> int:
        """Rows ever appended to ``stream`` (the next row's bar id)."""
        return int(self._bar_count[stream])

    def _check_rows(self, rows: F32, what: str) -> F32:
        a = np.asarray(rows, dtype=np.float32)
        if a.ndim < 1 or a.shape[-1] != self.n_features:
            raise ValueError(f"{what}: rows must have {self.n_features} features, "
                             f"got shape {a.shape}")
        return a

    def _check_stream(self, streams: npt.ArrayLike) -> I64:
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
        first = np.zeros(self.window, dtype=np.bool_)
        first[0] = True
        return int(self.append_rows(np.full(self.window, stream), w, first)[-1])

    def push_bars(self, streams: npt.ArrayLike, rows: F32) -> I64:
        """Append one bar row to each of ``streams`` (distinct); returns the new bar ids."""
        s = self._check_stream(streams)
        r = self._check_rows(rows, "push_bars").reshape(-1, self.n_features)
        if len(r) != len(s) or len(np.unique(s)) != len(s):
            raise ValueError("push_bars: one row per stream, each stream at most once")
        return self.append_rows(s, r)

    def append_rows(self, streams: npt.ArrayLike, rows: F32,
                    new_episode: npt.ArrayLike | None = None) -> I64:
        """Append ``rows`` to ``streams`` (a stream may repeat: its rows go in the given
        order); ``new_episode[i]`` marks row ``i`` as the first row of a new episode's
        first window. Returns the bar ids. Transitions whose windows used an overwritten
        bar are evicted first."""
        s = self._check_stream(streams)
        r = self._check_rows(rows, "append_rows").reshape(-1, self.n_features)
        first = np.zeros(len(s), np.bool_) if new_episode is None else \
            np.asarray(new_episode, dtype=np.bool_).reshape(-1)
        if len(r) != len(s) or len(first) != len(s):
            raise ValueError(f"append_rows: {len(s)} streams, {len(r)} rows and "
                             f"{len(first)} episode flags must agree")
        if not len(s):
            return np.zeros(0, np.int64)
        written = np.bincount(s, minlength=self.n_streams)
        if written.max() > self.bar_cap:
            raise ValueError(f"append_rows: at most {self.bar_cap} rows per stream in one "
                             f"call (the bar ring), got {written.max()}")
        order = np.argsort(s, kind="stable")
        ss, fs = s[order], first[order]
        head = np.ones(len(ss), np.bool_)
        head[1:] = ss[1:] != ss[:-1]
        episode = np.where(fs, 0, np.where(head, self._stream_episode[ss], -1))
        episode[fs] = self._next_episode + np.arange(int(fs.sum()))
        known = fs | head
        episode = episode[np.maximum.accumulate(np.where(known, np.arange(len(ss)), 0))]
        if np.any(episode < 0):
            raise ValueError("append_rows: a stream has no episode (call start_episode "
                             "first)")
        self._next_episode += int(fs.sum())
        ids = np.empty(len(s), np.int64)
        ids[order] = self._bar_count[ss] + np.arange(len(ss)) \
            - np.searchsorted(ss, ss, side="left")
        touched = np.flatnonzero(written)
        self._evict_bars(touched, self._bar_count[touched] + written[touched] - self.bar_cap)
        ring = s * self.bar_cap + ids % self.bar_cap
        self._bars[ring] = r
        self._bar_episode[ring[order]] = episode
        self._bar_count += written
        last = np.flatnonzero(np.append(ss[1:] != ss[:-1], True))
        self._stream_episode[ss[last]] = episode[last]
        return ids

    def _evict_bars(self, streams: I64, floors: I64) -> None:
        """Evict, oldest first, the transitions of ``streams`` (distinct) whose window
        starts below ``floors`` (the oldest bar id still stored after the write): a
        vectorized binary search for each stream's first transition to keep."""
        lo, hi = self._tail[streams].copy(), self._count[streams].copy()
        base = streams * self.per_stream
        oldest = self._obs_bar[base + lo % self.per_stream] - self.window + 1
        hi = np.where(oldest < floors, hi, lo)  # most writes evict nothing
        while True:
            active = lo < hi
            if not active.any():
                break
            mid = (lo + hi) // 2
            keep = self._obs_bar[base + mid % self.per_stream] - self.window + 1 >= floors
            hi = np.where(active & keep, mid, hi)
            lo = np.where(active & ~keep, mid + 1, lo)
        gone = lo - self._tail[streams]
        if gone.any():
            ends = np.cumsum(gone)
            seq = np.repeat(self._tail[streams] - ends + gone, gone) + np.arange(int(ends[-1]))
            self.index.update(np.repeat(base, gone) + seq % self.per_stream, 0.0)
            self._tail[streams] = lo

    def _ring(self, streams: I64, bars: I64) -> I64:
        return streams * self.bar_cap + bars % self.bar_cap

    def add(self, streams: npt.ArrayLike, obs_bars: npt.ArrayLike, states: F32,
            actions: npt.ArrayLike, rewards: npt.ArrayLike, next_bars: npt.ArrayLike,
            next_states: F32, dones: npt.ArrayLike,
            truncated: npt.ArrayLike | None = None) -> I64:
        """Store transitions: each observation is the window ending at bar ``obs_bars``
        of its stream plus ``states``; the next observation likewise. ``dones`` is the
        env's ``terminated``, ``truncated`` its truncation (default all False); both end
        the n-step look-ahead. A stream may repeat (its transitions in step order, at
        most its ring's size per call). Returns the slots."""
        s = self._check_stream(streams)
        ob = np.asarray(obs_bars, dtype=np.int64).reshape(-1)
        nb = np.asarray(next_bars, dtype=np.int64).reshape(-1)
        st = np.asarray(states, dtype=np.float32)
        nst = np.asarray(next_states, dtype=np.float32)
        if st.shape != (len(s), self.n_state) or nst.shape != st.shape or \
                not len(ob) == len(nb) == len(s):
            raise ValueError(f"add: {len(s)} transitions need bar ids of length {len(s)} and "
                             f"states of shape ({len(s)}, {self.n_state}); got {len(ob)}, "
                             f"{len(nb)}, {st.shape}, {nst.shape}")
        if not len(s):
            return np.zeros(0, np.int64)
        if np.bincount(s).max() > self.per_stream:
            raise ValueError(f"add: at most {self.per_stream} transitions per stream in one "
                             f"call (its ring)")
        count = self._bar_count[s]
        begin = ob - self.window + 1
        if np.any(begin < np.maximum(count - self.bar_cap, 0)) or np.any(nb <= ob) \
                or np.any(nb >= count):
            raise ValueError("add: a window is not within its stream's stored bars (or "
                             "next bar <= observation bar)")
        episode = self._bar_episode[self._ring(s, nb)]
        if np.any(self._bar_episode[self._ring(s, begin)] != episode):
            raise ValueError("add: a window is not within one episode of its stream "
                             "(windows never mix two episodes)")
        order = np.argsort(s, kind="stable")
        ss, sb = s[order], ob[order]
        head = np.ones(len(ss), np.bool_)
        head[1:] = ss[1:] != ss[:-1]
        prev = np.where(head, self._last_obs_bar[ss], np.append(-1, sb[:-1]))
        if np.any(sb <= prev):
            bad = int(ss[np.argmax(sb <= prev)])
            raise ValueError(f"add: stream {bad}'s observation bars must increase")
        tail = np.append(ss[1:] != ss[:-1], True)
        self._last_obs_bar[ss[tail]] = sb[tail]
        slots = stream_slots(s, self._count, self.per_stream)
        self._count += np.bincount(s, minlength=self.n_streams)
        self._tail[:] = np.maximum(self._tail, self._count - self.per_stream)
        self._obs_bar[slots], self._next_bar[slots] = ob, nb
        self._state[slots], self._next_state[slots] = st, nst
        self._actions[slots] = np.asarray(actions, dtype=np.int64).reshape(-1)
        self._rewards[slots] = np.asarray(rewards, dtype=np.float32).reshape(-1)
        self._dones[slots] = np.asarray(dones, dtype=np.bool_).reshape(-1)
        self._truncated[slots] = False if truncated is None else \
            np.asarray(truncated, dtype=np.bool_).reshape(-1)
        self._episode[slots] = episode
        self._stamp[slots] = self._writes + np.arange(len(slots))
        self._writes += len(slots)
        self.index.update(slots, self._max_priority)
        return slots

    def _windows(self, slots: I64, last_bars: I64, states: F32, out: F32) -> None:
        """Write the observations whose windows end at ``last_bars`` (with the state rows
        ``states``) into ``out``."""
        k = self.window * self.n_features
        streams = slots // self.per_stream
        rows = streams[:, None] * self.bar_cap \
            + (last_bars[:, None] + np.arange(1 - self.window, 1)) % self.bar_cap
        n = rows.size
        if len(self._scratch) < n:  # reused gather target (never handed out)
            self._scratch = np.empty((n, self.n_features), dtype=np.float32)
        np.take(self._bars, rows.reshape(-1), axis=0, out=self._scratch[:n])
        out[:, :k] = self._scratch[:n].reshape(len(slots), k)
        out[:, k:] = states

    def _lookahead(self, slots: I64, n_step: int, gamma: float) -> tuple[I64, F32, I64]:
        """The last slot of each n-step run, the discounted reward sums and the steps."""
        last = slots.copy()
        steps = np.ones(len(slots), np.int64)
        rewards = self._rewards[slots]
        if n_step == 1:
            return last, rewards, steps
        streams = slots // self.per_stream
        newest = self._count[streams] - 1
        seq = newest - (newest - slots % self.per_stream) % self.per_stream
        total = rewards.astype(np.float64)
        going = ~(self._dones[slots] | self._truncated[slots])
        for j in range(1, n_step):
            cand = streams * self.per_stream + (seq + j) % self.per_stream
            going &= (seq + j <= newest) & (self._episode[cand] == self._episode[slots]) \
                & (self._obs_bar[cand] == self._next_bar[last])
            total[going] += self._rewards[cand[going]].astype(np.float64) * gamma ** j
            last[going] = cand[going]
            steps[going] += 1
            going &= ~(self._dones[cand] | self._truncated[cand])
        return last, total.astype(np.float32), steps

    def gather(self, slots: I64, weights: npt.NDArray[np.float64], *, n_step: int = 1,
               gamma: float = 1.0) -> ReplayBatch:
        """The transitions at ``slots`` with the given weights, windows rebuilt, with
        ``n_step`` targets (module docstring; ``n_step=1``: the stored transitions).

        Observations and next observations share one allocation (two separate multi-MB
        arrays per batch cost ~2.5 ms more in page faults with glibc's allocator)."""
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        slots = np.asarray(slots, dtype=np.int64)
        last, rewards, steps = self._lookahead(slots, n_step, gamma)
        pair = np.empty((2, len(slots), self.window * self.n_features + self.n_state),
                        dtype=np.float32)
        self._windows(slots, self._obs_bar[slots], self._state[slots], pair[0])
        self._windows(slots, self._next_bar[last], self._next_state[last], pair[1])
        return ReplayBatch(slots, pair[0], self._actions[slots], rewards, pair[1],
                           self._dones[last], weights, steps, self._stamp[slots])

    def sample(self, batch: int, beta: float = 0.4, *, n_step: int = 1,
               gamma: float = 1.0) -> ReplayBatch:
        """A prioritized batch (with replacement), its importance weights and ``n_step``
        targets discounted by ``gamma``."""
        slots, weights = self.index.sample(batch, beta)
        return self.gather(slots, weights, n_step=n_step, gamma=gamma)

    def update_priorities(self, slots: I64, priorities: npt.ArrayLike,
                          stamps: I64 | None = None) -> None:
        """New priorities (e.g. |TD error| + eps) for sampled slots still live. A slot
        evicted since it was sampled stays empty. With ``stamps`` (the batch's), a slot
        rewritten since it was sampled keeps its own priority (a new transition's is the
        largest so far, so it is sampled at least once); without, it takes the priority
        meant for its predecessor (as in RLlib's buffer)."""
        p = np.asarray(priorities, dtype=np.float64)
        if np.any(p <= 0):
            raise ValueError("update_priorities: priorities must be > 0")
        live = self.index.priority(slots) > 0  # an evicted slot stays evicted
        if stamps is not None:
            live &= self._stamp[np.asarray(slots)] == np.asarray(stamps)
        self.index.update(np.asarray(slots)[live], np.broadcast_to(p, live.shape)[live])
        self._max_priority = max(self._max_priority, float(p.max(initial=0.0)))
