"""Apply runners' compact fragments and live transition chunks to a ``CompactReplay``.

The learner's driver receives :class:`~raytrade.algos.compact_fragment.CompactFragment`s
from its env runners and ``TransitionChunk``s from paper-trading actors. A
``FragmentIngestor`` owns the mapping from those to the replay's streams: runner slot
``slot`` (an index the driver keeps per runner) owns streams
``[slot * E, (slot + 1) * E)``, one per sub-env, and the last ``live_streams`` streams of
the replay take live experience.

**Whole fragment at once.** A fragment is applied in the order its docstring gives (the
starts before step 0, then step by step), but without a Python loop over steps or envs:
every event of the fragment (a start's whole window, or a valid step's pushed rows) is laid
out in step-then-env order, its rows are appended with one ``CompactReplay.append_rows``
call (each start's first row opens a new episode), each event's last bar id is read back
into a (step, env) table, and each valid step becomes a transition from the previous
event's last bar (or, at step 0, the bar the stream's previous fragment ended on) to its
own, with one ``CompactReplay.add`` call. A fragment too large for a stream's bar or
transition ring is applied in step ranges that fit.

**Continuations.** The ingestor remembers, per stream, the bar id and position state of
the observation its last fragment ended on; the next fragment of the same ``source``
continues from there. A new ``source`` on a slot (a new or restarted runner) forgets that
slot's continuations; a fragment whose step 0 continues a stream the ingestor has no start
for is refused whole (ValueError naming the source, slot, env and step) before anything is
written.

**Live chunks.** A ``TransitionChunk`` carries whole observations; each chunk opens a new
episode on the next live stream (round robin). Consecutive observations are stored
compactly when the newer window continues the older one shifted by ``k`` rows (checked by
row equality, smallest ``k``) and as a whole new window otherwise, so every rebuilt
observation is exactly the one the trader saw. The chunk's ``terminated``/``truncated``
flags belong to its last transition.

Not thread-safe: the driver serializes ingestion and sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from raytrade.algos.compact_fragment import CompactFragment
from raytrade.algos.compact_replay import CompactReplay
from raytrade.algos.live_experience import TransitionChunk

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class IngestStats:
    """Counters since the ingestor was built: transitions stored (fragments and live),
    fragments applied, live chunks and their transitions, distinct runner sources seen,
    and slots whose source changed (a runner restarted or was replaced)."""

    transitions: int = 0
    fragments: int = 0
    live_chunks: int = 0
    live_transitions: int = 0
    sources_seen: int = 0
    sources_restarted: int = 0


class FragmentGapError(ValueError):
    """A fragment does not follow the last one applied from its source (or a new source
    does not begin at sequence 0): a fragment was lost in between, so its streams continue
    bars the replay never received. Nothing of it is stored; the runner must restart its
    sampler (a new source)."""


def _exclusive_cumsum(a: I64) -> I64:
    out = np.zeros(len(a), np.int64)
    np.cumsum(a[:-1], out=out[1:])
    return out


class FragmentIngestor:
    """Feeds ``replay`` from ``n_slots`` runners of ``envs_per_slot`` sub-envs each and
    from live chunks (module docstring)."""

    def __init__(self, replay: CompactReplay, envs_per_slot: int, n_slots: int,
                 live_streams: int = 1) -> None:
        if envs_per_slot < 1 or n_slots < 0 or live_streams < 0:
            raise ValueError(f"need envs_per_slot >= 1, n_slots >= 0, live_streams >= 0; got "
                             f"{envs_per_slot}, {n_slots}, {live_streams}")
        if envs_per_slot * n_slots + live_streams > replay.n_streams:
            raise ValueError(f"the replay has {replay.n_streams} streams; {n_slots} slots of "
                             f"{envs_per_slot} envs and {live_streams} live streams need "
                             f"{envs_per_slot * n_slots + live_streams}")
        if replay.bar_cap < 3 * replay.window:
            raise ValueError(f"the replay's bar ring ({replay.bar_cap} rows per stream) must "
                             f"hold at least 3 windows ({3 * replay.window} rows)")
        self.replay, self.envs_per_slot, self.n_slots = replay, envs_per_slot, n_slots
        self.live_streams = live_streams
        self._live_first = replay.n_streams - live_streams
        self._cur_bar = np.full(replay.n_streams, -1, np.int64)
        self._cur_state = np.zeros((replay.n_streams, replay.n_state), np.float32)
        self._sources: list[str | None] = [None] * n_slots
        self._next_seq = np.zeros(n_slots, np.int64)
        self._seen: set[str] = set()
        self._stats = IngestStats()

    @property
    def stats(self) -> IngestStats:
        return self._stats

    def _check_shape(self, fragment: CompactFragment) -> None:
        r = self.replay
        n_state = fragment.next_states.shape[2]
        if (fragment.window, fragment.n_features, n_state) != (r.window, r.n_features,
                                                               r.n_state):
            raise ValueError(f"fragment {fragment.source}: window {fragment.window} x "
                             f"{fragment.n_features} features + {n_state} state values; "
                             f"the replay stores {r.window} x {r.n_features} + {r.n_state}")

    def ingest(self, slot: int, fragment: CompactFragment) -> int:
        """Apply runner ``slot``'s ``fragment``; returns the transitions added."""
        if not 0 <= slot < self.n_slots:
            raise ValueError(f"slot {slot} out of range 0..{self.n_slots - 1}")
        fragment.check()
        self._check_shape(fragment)
        e_count = self.envs_per_slot
        if fragment.n_envs != e_count:
            raise ValueError(f"fragment {fragment.source}: {fragment.n_envs} envs, slot "
                             f"{slot} has {e_count}")
        base = slot * e_count
        same = self._sources[slot] == fragment.source
        expected = int(self._next_seq[slot]) if same else 0
        if fragment.sequence != expected:
            raise FragmentGapError(f"fragment {fragment.source} (slot {slot}): sequence "
                              f"{fragment.sequence}, expected {expected}: a fragment of this "
                              f"source was lost; nothing stored, the runner must restart "
                              f"its sampler")
        known = self._cur_bar[base:base + e_count] >= 0 if same else \
            np.zeros(e_count, np.bool_)
        initial = fragment.start_env[fragment.start_step == -1]
        if len(np.unique(initial)) != len(initial):
            raise ValueError(f"fragment {fragment.source}: an env has two starts at step -1")
        begun = np.zeros(e_count, np.bool_)
        begun[initial] = True
        orphan = fragment.valid[0] & ~begun & ~known if fragment.n_steps else \
            np.zeros(e_count, np.bool_)
        if orphan.any():
            raise ValueError(f"fragment {fragment.source} (slot {slot}): env "
                             f"{int(np.argmax(orphan))} continues at step 0 a stream this "
                             f"ingestor has no start for (a new source must begin every env "
                             f"with a start at step -1)")
        if not same:
            previous = self._sources[slot]
            self._cur_bar[base:base + e_count] = -1
            self._sources[slot] = fragment.source
            self._stats = _bump(self._stats, sources_seen=int(fragment.source not in
                                                              self._seen),
                                sources_restarted=int(previous is not None))
            self._seen.add(fragment.source)
        added = self._apply(base, fragment)
        self._next_seq[slot] = fragment.sequence + 1
        self._stats = _bump(self._stats, transitions=added, fragments=1)
        return added

    def forget(self, slot: int) -> None:
        """Drop slot ``slot``'s continuation: only a new source (a restarted sampler) is
        accepted there next."""
        self._sources[slot] = None
        self._cur_bar[slot * self.envs_per_slot:(slot + 1) * self.envs_per_slot] = -1

    def ingest_live(self, chunk: TransitionChunk) -> int:
        """Store a live chunk as a new episode on the next live stream; returns its
        transitions."""
        if self.live_streams < 1:
            raise ValueError("this ingestor has no live streams")
        fragment = live_fragment(chunk, self.replay.window, self.replay.n_features,
                                 self.replay.n_state)
        stream = self._live_first + self._stats.live_chunks % self.live_streams
        added = self._apply(stream, fragment)
        self._cur_bar[stream] = -1  # the next chunk is a new episode
        self._stats = _bump(self._stats, transitions=added, live_chunks=1,
                            live_transitions=added)
        return added

    def _apply(self, base: int, fragment: CompactFragment) -> int:
        """Apply a checked fragment to streams ``base ..``, in step ranges that fit."""
        t, w = fragment.n_steps, self.replay.window
        counts = np.zeros((t + 1, fragment.n_envs), np.int64)
        counts[1:] = fragment.push_counts
        later = fragment.start_step >= 0
        counts[fragment.start_step[later] + 1, fragment.start_env[later]] = w
        counts[0, fragment.start_env[~later]] = w
        rows_before = np.zeros((t + 2, fragment.n_envs), np.int64)
        np.cumsum(counts, axis=0, out=rows_before[1:])
        steps_before = np.zeros((t + 1, fragment.n_envs), np.int64)
        np.cumsum(fragment.valid, axis=0, out=steps_before[1:])
        row_room = self.replay.bar_cap - w
        all_rows = np.concatenate([fragment.start_windows.reshape(-1, fragment.n_features),
                                   fragment.push_rows])

        def fits(t0: int, t1: int) -> bool:
            rows = rows_before[t1 + 1] - rows_before[0 if t0 == 0 else t0 + 1]
            return bool(rows.max(initial=0) <= row_room and (
                steps_before[t1] - steps_before[t0]).max(initial=0) <= self.replay.per_stream)

        added, t0 = 0, 0
        while True:  # one range when the whole fragment fits (the usual case)
            t1 = t
            if not fits(t0, t1):
                t1 = t0 + 1
                while t1 < t and fits(t0, t1 + 1):
                    t1 += 1
            added += self._apply_steps(base, fragment, counts, all_rows, t0, t1)
            t0 = t1
            if t0 >= t:
                return added

    def _apply_steps(self, base: int, fr: CompactFragment, counts: I64, all_rows: F32,
                     t0: int, t1: int) -> int:
        """Apply steps ``t0 .. t1 - 1`` (and the starts before step 0 when ``t0 == 0``)."""
        replay, w, e_count = self.replay, self.replay.window, fr.n_envs
        ev_counts = counts[t0:t1 + 1].copy()  # event row j: step t0 + j - 1
        if t0 > 0:
            ev_counts[0] = 0
        first_push = int(fr.push_counts[:t0].sum())
        offsets = np.zeros((t1 - t0 + 1, e_count), np.int64)
        offsets[1:] = len(fr.start_step) * w + first_push + _exclusive_cumsum(
            fr.push_counts[t0:t1].reshape(-1)).reshape(t1 - t0, e_count)
        sel = (fr.start_step >= t0) & (fr.start_step < t1) | \
            ((fr.start_step == -1) & (t0 == 0))
        start_rows = fr.start_step[sel] - t0 + 1
        offsets[start_rows, fr.start_env[sel]] = np.flatnonzero(sel) * w
        cnt = ev_counts.reshape(-1)
        pos = _exclusive_cumsum(cnt)
        n_rows = int(cnt.sum())
        src = np.repeat(offsets.reshape(-1) - pos, cnt) + np.arange(n_rows)
        streams = np.repeat(base + np.tile(np.arange(e_count), t1 - t0 + 1), cnt)
        first = np.zeros(n_rows, np.bool_)
        first[pos.reshape(t1 - t0 + 1, e_count)[start_rows, fr.start_env[sel]]] = True
        ids = replay.append_rows(streams, all_rows[src], first)
        last = np.full(len(cnt), -1, np.int64)
        has = cnt > 0
        last[has] = ids[pos[has] + cnt[has] - 1]
        last_bar = last.reshape(t1 - t0 + 1, e_count)
        cur = slice(base, base + e_count)
        last_bar[0] = np.where(ev_counts[0] > 0, last_bar[0], self._cur_bar[cur])
        states = np.empty((t1 - t0 + 1, e_count, replay.n_state), np.float32)
        states[0] = self._cur_state[cur]
        states[1:] = fr.next_states[t0:t1]
        states[start_rows, fr.start_env[sel]] = fr.start_states[sel]
        step, env = np.nonzero(fr.valid[t0:t1])
        replay.add(base + env, last_bar[step, env], states[step, env],
                   fr.actions[t0 + step, env], fr.rewards[t0 + step, env],
                   last_bar[step + 1, env], states[step + 1, env],
                   fr.terminated[t0 + step, env], fr.truncated[t0 + step, env])
        self._cur_bar[cur], self._cur_state[cur] = last_bar[-1], states[-1]
        return len(step)


def _bump(stats: IngestStats, **inc: int) -> IngestStats:
    return IngestStats(**{k: v + inc.get(k, 0) for k, v in vars(stats).items()})


def live_fragment(chunk: TransitionChunk, window: int, n_features: int,
                  n_state: int) -> CompactFragment:
    """A live chunk as a one-env fragment opening a new episode (module docstring)."""
    obs = chunk.observations
    size = window * n_features + n_state
    if obs.dtype != np.float32 or obs.shape[1:] != (size,):
        raise ValueError(f"live chunk: observations must be float32 of {size} values, got "
                         f"{obs.dtype} {obs.shape[1:]}")
    t = len(chunk)
    wins = obs[:, :window * n_features].reshape(t + 1, window, n_features)
    states = np.ascontiguousarray(obs[:, window * n_features:])
    push = np.full(t, window, np.int64)
    for k in range(window - 1, 0, -1):  # smallest shift whose shared rows are equal
        same = (wins[:-1, k:] == wins[1:, :window - k]).all(axis=(1, 2))
        push[same] = k
    new_rows = np.arange(window)[None, :] >= window - push[:, None]
    ends = np.zeros((t, 1), np.bool_)
    terminated, truncated = ends.copy(), ends.copy()
    terminated[-1], truncated[-1] = chunk.terminated, chunk.truncated
    fragment = CompactFragment(
        source="live", weights_version=-1, window=window, n_features=n_features,
        start_step=np.array([-1]), start_env=np.array([0]),
        start_windows=np.ascontiguousarray(wins[:1]), start_states=states[:1],
        push_counts=push[:, None], push_rows=np.ascontiguousarray(wins[1:][new_rows]),
        next_states=states[1:, None], actions=chunk.actions[:, None],
        rewards=chunk.rewards[:, None], terminated=terminated, truncated=truncated,
        valid=np.ones((t, 1), np.bool_))
    fragment.check()
    return fragment
