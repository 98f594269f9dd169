"""Fragments built from a real vector env (autoresets, a 3-bar decision interval), applied
by the ingestor, rebuild every observation the env returned; n-step targets over them; a
restarted runner; live chunks; refused fragments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from raytrade.algos.compact_fragment import CompactFragment
from raytrade.algos.compact_replay import CompactReplay
from raytrade.algos.fragment_ingest import FragmentGapError, FragmentIngestor, IngestStats
from raytrade.algos.live_experience import TransitionChunk
from raytrade.envs.market import load_markets
from raytrade.envs.vector_env import VectorTradingEnv

W, E = 16, 6


@dataclass
class Recorder:
    """Steps a vector env and cuts its experience into fragments, keeping every
    transition whole (per env, in order) as the reference."""

    env: VectorTradingEnv
    n_features: int
    source: str = "runner-a"
    obs: Any = None
    ended: Any = None
    fresh: bool = True
    sequence: int = 0
    episode: list[int] = field(default_factory=lambda: [0] * E)
    log: list[list[dict[str, Any]]] = field(default_factory=lambda: [[] for _ in range(E)])

    def fragment(self, steps: int, rng: np.random.Generator) -> CompactFragment:
        k_all = W * self.n_features
        starts: list[tuple[int, int, np.ndarray]] = []
        if self.fresh:  # a new source begins every env with its current observation
            starts += [(-1, e, self.obs[e]) for e in range(E)]
            self.sequence = 0
            self.episode = [n + 1 for n in self.episode]
            self.fresh = False
        counts = np.zeros((steps, E), np.int64)
        pushed: list[np.ndarray] = []
        shape = (steps, E)
        actions, rewards = np.zeros(shape, np.int64), np.zeros(shape, np.float32)
        term, trunc, valid = (np.zeros(shape, np.bool_) for _ in range(3))
        next_states = np.zeros((steps, E, 4), np.float32)
        for t in range(steps):
            a = rng.integers(0, 3, E)
            nxt, r, te, tr, _ = self.env.step(a)
            for e in range(E):
                if self.ended[e]:  # gymnasium's next-step autoreset
                    starts.append((t, e, nxt[e]))
                    self.episode[e] += 1
                    continue
                old = self.obs[e][:k_all].reshape(W, -1)
                new = nxt[e][:k_all].reshape(W, -1)
                k = next((k for k in range(1, W) if np.array_equal(old[k:], new[:W - k])), W)
                counts[t, e] = k
                pushed.append(new[W - k:])
                actions[t, e], rewards[t, e] = a[e], r[e]
                term[t, e], trunc[t, e], valid[t, e] = te[e], tr[e], True
                next_states[t, e] = nxt[e][k_all:]
                self.log[e].append({"obs": self.obs[e].copy(), "next": nxt[e].copy(),
                                    "action": int(a[e]), "reward": np.float32(r[e]),
                                    "term": bool(te[e]), "trunc": bool(tr[e]),
                                    "episode": self.episode[e]})
            self.obs, self.ended = nxt, te | tr
        starts.sort(key=lambda s: s[0])
        windows = np.array([s[2][:k_all].reshape(W, -1) for s in starts], np.float32)
        return CompactFragment(
            source=self.source, weights_version=0, window=W, n_features=self.n_features,
            start_step=np.array([s[0] for s in starts], np.int64),
            start_env=np.array([s[1] for s in starts], np.int64),
            start_windows=windows, start_states=np.array([s[2][k_all:] for s in starts]),
            push_counts=counts, push_rows=np.concatenate(pushed).astype(np.float32),
            next_states=next_states, actions=actions, rewards=rewards, terminated=term,
            truncated=trunc, valid=valid, sequence=self._next_sequence())

    def _next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence - 1


def _reference_nstep(log: list[dict[str, Any]], i: int, n: int, gamma: float
                     ) -> tuple[np.float32, np.ndarray, bool, int]:
    total, j = 0.0, i
    while True:
        total += gamma ** (j - i) * float(log[j]["reward"])
        if log[j]["term"] or log[j]["trunc"] or j - i + 1 == n or j + 1 == len(log) \
                or log[j + 1]["episode"] != log[j]["episode"]:
            return np.float32(total), log[j]["next"], log[j]["term"], j - i + 1
        j += 1


def test_fragment_ingest_vector_env_fragments_rebuild_every_observation() -> None:
    markets, _ = load_markets("sample:ETHUSDT", window=W)
    f = markets[0].z.shape[1]
    env = VectorTradingEnv(E, markets, config={"window": W, "max_episode_steps": 5,
                                               "decision": {"every_bars": 3}})
    rec = Recorder(env, f)
    rec.obs, _ = env.reset(seed=11)
    rec.ended = np.zeros(E, np.bool_)
    replay = CompactReplay(2 * 64 * E + 64, W, f, n_streams=2 * E + 1,
                           bars_per_transition=3.0, seed=2)
    ingest = FragmentIngestor(replay, E, n_slots=2)
    # a replay too small for a whole fragment: 4 transitions and 3 windows of bars per
    # stream, so each fragment is applied in step ranges and the rings wrap and evict
    small = CompactReplay(4 * (E + 1), W, f, n_streams=E + 1, bars_per_stream=3 * W)
    small_ingest = FragmentIngestor(small, E, n_slots=1)
    rng = np.random.default_rng(4)
    fragments = [rec.fragment(7, rng) for _ in range(3)]
    rec.source, rec.fresh = "runner-a-restarted", True  # the runner restarts mid-episode
    fragments += [rec.fragment(7, rng) for _ in range(2)]
    added = sum(ingest.ingest(0, fragment) for fragment in fragments)
    assert sum(small_ingest.ingest(0, fragment) for fragment in fragments) == added
    assert added == sum(len(x) for x in rec.log) == len(replay) > 100
    assert ingest.stats == IngestStats(transitions=added, fragments=5, sources_seen=2,
                                       sources_restarted=1)
    flat = [x for log in rec.log for x in log]
    assert any(x["trunc"] for x in flat)  # episodes of 5 decisions: autoresets happened
    slots = np.concatenate([e * replay.per_stream + np.arange(len(rec.log[e]))
                            for e in range(E)])
    batch = replay.gather(slots, np.ones(len(slots)))
    assert np.array_equal(batch.obs, np.array([x["obs"] for x in flat]))
    assert np.array_equal(batch.next_obs, np.array([x["next"] for x in flat]))
    assert np.array_equal(batch.actions, [x["action"] for x in flat])
    assert np.array_equal(batch.rewards, [x["reward"] for x in flat])
    assert np.array_equal(batch.dones, [x["term"] for x in flat])
    nstep = replay.gather(slots, np.ones(len(slots)), n_step=3, gamma=0.9)
    row = 0
    for log in rec.log:
        for i in range(len(log)):
            total, nxt, done, steps = _reference_nstep(log, i, 3, 0.9)
            assert nstep.rewards[row] == total and np.array_equal(nstep.next_obs[row], nxt)
            assert nstep.dones[row] == done and nstep.n_steps[row] == steps, row
            row += 1
    assert set(nstep.n_steps.tolist()) == {1, 2, 3}
    live = np.flatnonzero(small.index.priority(np.arange(small.capacity)) > 0)
    assert 0 < len(live) <= 4 * E
    kept = small.gather(live, np.ones(len(live)), n_step=3, gamma=0.9)
    for row, slot in enumerate(live.tolist()):
        log = rec.log[slot // 4]
        seq = len(log) - 1 - (len(log) - 1 - slot % 4) % 4  # the ring keeps the newest
        total, nxt, done, steps = _reference_nstep(log, seq, 3, 0.9)
        assert np.array_equal(kept.obs[row], log[seq]["obs"])
        assert kept.rewards[row] == total and np.array_equal(kept.next_obs[row], nxt)
        assert kept.dones[row] == done and kept.n_steps[row] == steps
    # the decision interval: most steps pushed 3 rows (a 3-bar move), each row once
    counts = np.array([replay.bar_count(e) for e in range(E)])
    assert counts.sum() < 0.5 * W * (added + E)

    # a live chunk of one env's episode: compact where windows overlap, whole where not
    log = rec.log[0]
    obs = np.array([log[0]["obs"]] + [x["next"] for x in log[:3]] + [log[0]["obs"]])
    chunk = TransitionChunk(obs, np.array([0, 1, 2, 0]), np.array([1, 2, 3, 4], np.float32),
                            "hash", terminated=True)
    assert ingest.ingest_live(chunk) == 4
    live = np.arange(4) + 2 * E * replay.per_stream
    batch = replay.gather(live, np.ones(4))
    assert np.array_equal(batch.obs, obs[:4]) and np.array_equal(batch.next_obs, obs[1:])
    assert batch.dones.tolist() == [False, False, False, True]
    assert ingest.stats.live_chunks == 1 and ingest.stats.live_transitions == 4


def _tiny(source: str, first: bool, valid0: bool = True, seq: int = 0) -> CompactFragment:
    """A one-env, one-step fragment of a 2-bar window of 1 feature."""
    return CompactFragment(
        source=source, weights_version=0, window=2, n_features=1,
        start_step=np.array([-1] if first else [], np.int64),
        start_env=np.array([0] if first else [], np.int64),
        start_windows=np.zeros((1 if first else 0, 2, 1), np.float32),
        start_states=np.zeros((1 if first else 0, 4), np.float32),
        push_counts=np.ones((1, 1), np.int64), push_rows=np.ones((1, 1), np.float32),
        next_states=np.zeros((1, 1, 4), np.float32), actions=np.zeros((1, 1), np.int64),
        rewards=np.zeros((1, 1), np.float32), terminated=np.zeros((1, 1), np.bool_),
        truncated=np.zeros((1, 1), np.bool_), valid=np.ones((1, 1), np.bool_), sequence=seq)


def test_fragment_ingest_unknown_continuation_refused_nothing_written() -> None:
    replay = CompactReplay(64, 2, 1, n_streams=2, bars_per_stream=16)
    ingest = FragmentIngestor(replay, 1, n_slots=1)
    with pytest.raises(ValueError, match=r"fragment runner-x .*env 0 continues at step 0"):
        ingest.ingest(0, _tiny("runner-x", first=False))
    assert len(replay) == 0 and replay.bar_count(0) == 0
    assert ingest.ingest(0, _tiny("runner-x", first=True)) == 1
    assert ingest.ingest(0, _tiny("runner-x", first=False, seq=1)) == 1  # continues
    # a lost fragment (sequence 2 never arrived): refused whole, then only a new source
    bars, stored = replay.bar_count(0), len(replay)
    with pytest.raises(FragmentGapError, match="sequence 3, expected 2"):
        ingest.ingest(0, _tiny("runner-x", first=False, seq=3))
    with pytest.raises(FragmentGapError, match="sequence 1, expected 0"):
        ingest.ingest(0, _tiny("runner-z", first=True, seq=1))  # a new source starts at 0
    assert (replay.bar_count(0), len(replay)) == (bars, stored)
    ingest.forget(0)
    with pytest.raises(FragmentGapError, match="sequence 2, expected 0"):
        ingest.ingest(0, _tiny("runner-x", first=False, seq=2))  # forgotten: a stranger
    assert ingest.ingest(0, _tiny("runner-w", first=True)) == 1
    with pytest.raises(ValueError, match=r"fragment runner-y .*env 0 continues"):
        ingest.ingest(0, _tiny("runner-y", first=False))  # a new source forgets
    with pytest.raises(ValueError, match="slot 1 out of range"):
        ingest.ingest(1, _tiny("runner-x", first=True))
    with pytest.raises(ValueError, match="3 windows"):
        FragmentIngestor(CompactReplay(64, 2, 1, n_streams=2, bars_per_stream=5), 1, 1)
    with pytest.raises(ValueError, match="live chunk: observations must be float32"):
        ingest.ingest_live(TransitionChunk.of(np.zeros((2, 6)), [0], [0.0], "h"))
