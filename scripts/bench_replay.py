"""Replay memory and prioritized sampling time: the compact replay against the plain one.

Both buffers get the same transitions (random float32 feature rows, ``--features`` wide,
``--window``-bar observations plus 4 position-state values, episodes of
``--episode-steps`` steps) and the same priorities. Prints JSON with, for each buffer:
bytes per stored transition (every array it holds, divided by its capacity), the largest
capacity that fits in 8 GiB (from the exact array sizes, without allocating them), and
the time to draw a prioritized batch of ``--batch`` transitions and rebuild its
observations (p50 and p99 per batch over ``--batches`` batches; median, min and max over
``--repeats`` runs). The process is pinned to one core.

It also times the learner side of the Ape-X pipeline on the compact replay:
``FragmentIngestor.ingest`` of a ``--fragment-envs`` x ``--fragment-steps`` fragment
(random rows, decisions ``--every-bars`` bars apart, episodes of ``--episode-steps``
decisions, so autoresets happen), in ms per fragment, and prioritized sampling of batches
of 512 and 256 with 3-step targets (``nstep3_sample_ms_p50``) from the replay those
fragments filled (one stream per env, ``--capacity / 32`` transitions each, so the timed
fragments also evict), each the median over a run, then median, min and max over runs.

``rllib`` is the buffer the episodes layout trains from (RLlib 2.60's
``PrioritizedEpisodeReplayBuffer``), the "before" of the compact pipeline: it is filled
with ``--rllib-transitions`` transitions in episodes of ``--episode-steps`` steps (whole
observations, as the episodes layout adds them); its bytes per transition are the Python
heap it grew by (``tracemalloc``: numpy arrays included), and its time the 3-step
prioritized sample of a batch of ``--batch`` (p50 of ``--rllib-batches``), the call the
episodes layout makes per update.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
from raytrade.algos.compact_fragment import CompactFragment
from raytrade.algos.compact_replay import CompactReplay
from raytrade.algos.fragment_ingest import FragmentIngestor
from raytrade.algos.plain_replay import PlainReplay
from raytrade.scripts.bench_stats import spread

GIB8 = 8 * 2**30
N_STATE = 4


def _tree_bytes(capacity: int) -> int:
    size = 1 << max(0, (capacity - 1).bit_length())
    return 2 * (2 * size * 8) + capacity  # sums, minima (float64), liveness flags


def compact_bytes(capacity: int, window: int, features: int) -> int:
    """``CompactReplay(capacity, window, features).nbytes`` (one stream), computed."""
    bars = capacity + capacity // 8 + window
    # bar ids, states, action, reward, terminated, truncated, episode id, write stamp
    per = 8 + 8 + 2 * 4 * N_STATE + 8 + 4 + 1 + 1 + 8 + 8
    return bars * (features * 4 + 8) + capacity * per + _tree_bytes(capacity)  # row, episode


def plain_bytes(capacity: int, window: int, features: int) -> int:
    """``PlainReplay(capacity, window * features + 4).nbytes``, computed."""
    per = 2 * 4 * (window * features + N_STATE) + 8 + 4 + 1
    return capacity * per + _tree_bytes(capacity)


def largest_capacity(nbytes: Any, window: int, features: int, limit: int = GIB8) -> int:
    """The largest capacity whose buffer's arrays fit in ``limit`` bytes (bisection)."""
    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if nbytes(mid, window, features) <= limit else (lo, mid - 1)
    return lo


def fill(capacity: int, window: int, features: int, episode_steps: int,
         seed: int) -> tuple[CompactReplay, PlainReplay]:
    """Both buffers filled to capacity with the same transitions and priorities."""
    rng = np.random.default_rng(seed)
    compact = CompactReplay(capacity, window, features, seed=seed)
    plain = PlainReplay(capacity, window * features + N_STATE, seed=seed)
    k = window * features
    n = 0
    while n < capacity:
        rows = rng.standard_normal((window + episode_steps, features)).astype(np.float32)
        states = rng.random((episode_steps + 1, N_STATE)).astype(np.float32)
        bar = compact.start_episode(0, rows[:window])
        for t in range(min(episode_steps, capacity - n)):
            (nxt,) = compact.push_bars([0], rows[window + t][None])
            obs = np.concatenate([rows[t:t + window].reshape(k), states[t]])
            nobs = np.concatenate([rows[t + 1:t + 1 + window].reshape(k), states[t + 1]])
            done = t == episode_steps - 1
            compact.add([0], [bar], states[t][None], [t % 3], [0.0], [nxt],
                        states[t + 1][None], [done])
            plain.add([0], obs[None], [t % 3], [0.0], nobs[None], [done])
            bar, n = nxt, n + 1
    prio = rng.random(capacity) + 0.01
    compact.update_priorities(np.arange(capacity), prio)
    plain.update_priorities(np.arange(capacity), prio)
    return compact, plain


def time_sampling(buf: CompactReplay | PlainReplay, batch: int,
                  batches: int) -> dict[str, float]:
    """p50 and p99 (ms) of drawing one prioritized batch with its observations."""
    for _ in range(5):
        buf.sample(batch)
    times = np.empty(batches)
    for i in range(batches):
        t0 = time.perf_counter()
        buf.sample(batch)
        times[i] = time.perf_counter() - t0
    return {"p50": float(np.percentile(times, 50) * 1e3),
            "p99": float(np.percentile(times, 99) * 1e3)}


class FragmentSource:
    """Consecutive synthetic fragments of one runner (random rows; each step pushes
    ``every`` rows; an episode ends, alternately terminated and truncated, after
    ``episode_steps`` decisions and the next step is the autoreset start)."""

    def __init__(self, n_envs: int, window: int, features: int, every: int,
                 episode_steps: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.n_envs, self.window, self.features = n_envs, window, features
        self.every, self.episode_steps = min(every, window), episode_steps
        self.age = self.rng.integers(0, episode_steps, n_envs)  # decisions into the episode
        self.ended = np.zeros(n_envs, np.bool_)
        self.first = True
        self.sequence = 0

    def _rows(self, n: int) -> Any:
        return self.rng.standard_normal((n, self.features), dtype=np.float32)

    def next(self, n_steps: int) -> CompactFragment:
        e, w = self.n_envs, self.window
        start_step, start_env = [], []
        if self.first:
            start_step, start_env, self.first = [-1] * e, list(range(e)), False
        valid = np.ones((n_steps, e), np.bool_)
        term, trunc = np.zeros((n_steps, e), np.bool_), np.zeros((n_steps, e), np.bool_)
        for t in range(n_steps):
            restart = np.flatnonzero(self.ended)
            valid[t, restart] = False
            start_step += [t] * len(restart)
            start_env += restart.tolist()
            self.age[restart] = 0
            self.age[valid[t]] += 1
            done = valid[t] & (self.age >= self.episode_steps)
            term[t], trunc[t] = done & (t % 2 == 0), done & (t % 2 == 1)
            self.ended = done
        counts = np.where(valid, self.every, 0)
        s = len(start_step)
        self.sequence += 1
        return CompactFragment(
            source="bench", sequence=self.sequence - 1, weights_version=0, window=w,
            n_features=self.features,
            start_step=np.array(start_step, np.int64), start_env=np.array(start_env, np.int64),
            start_windows=self._rows(s * w).reshape(s, w, self.features),
            start_states=self.rng.random((s, N_STATE), dtype=np.float32),
            push_counts=counts, push_rows=self._rows(int(counts.sum())),
            next_states=self.rng.random((n_steps, e, N_STATE), dtype=np.float32),
            actions=self.rng.integers(0, 3, (n_steps, e)),
            rewards=self.rng.standard_normal((n_steps, e), dtype=np.float32),
            terminated=term, truncated=trunc, valid=valid)


def time_ingest(args: argparse.Namespace) -> tuple[list[float], dict[int, list[float]]]:
    """Per run: the median ms to ingest one fragment, and the p50 ms of a prioritized
    batch of 512 and of 256 with 3-step targets from the replay those fragments filled."""
    e, w, f = args.fragment_envs, args.window, args.features
    per_run: list[float] = []
    nstep: dict[int, list[float]] = {512: [], 256: []}
    for r in range(args.repeats):
        source = FragmentSource(e, w, f, args.every_bars, args.episode_steps, args.seed + r)
        fragments = [source.next(args.fragment_steps) for _ in range(args.fragments)]
        per_stream = max(4 * args.fragment_steps, args.capacity // 32)  # rings wrap
        replay = CompactReplay(per_stream * (e + 1), w, f, n_streams=e + 1,
                               bars_per_transition=float(args.every_bars), seed=args.seed)
        ingest = FragmentIngestor(replay, e, n_slots=1)
        times = np.empty(len(fragments))
        for i, fragment in enumerate(fragments):
            t0 = time.perf_counter()
            ingest.ingest(0, fragment)
            times[i] = time.perf_counter() - t0
        per_run.append(float(np.median(times) * 1e3))
        for batch in nstep:
            for _ in range(3):
                replay.sample(batch, 0.4, n_step=3, gamma=0.99)
            sample_times = np.empty(args.batches)
            for i in range(args.batches):
                t0 = time.perf_counter()
                replay.sample(batch, 0.4, n_step=3, gamma=0.99)
                sample_times[i] = time.perf_counter() - t0
            nstep[batch].append(float(np.median(sample_times) * 1e3))
    return per_run, nstep


def rllib_buffer(args: argparse.Namespace) -> dict[str, Any]:
    """Bytes per transition and 3-step sampling time of RLlib's prioritized episode
    buffer holding the same kind of observations (see the module docstring)."""
    import tracemalloc

    from ray.rllib.env.single_agent_episode import SingleAgentEpisode
    from ray.rllib.utils.replay_buffers.prioritized_episode_buffer import (
        PrioritizedEpisodeReplayBuffer,
    )

    rng = np.random.default_rng(args.seed)
    dim = args.window * args.features + N_STATE
    n, steps = args.rllib_transitions, args.episode_steps
    buf = PrioritizedEpisodeReplayBuffer(capacity=n, alpha=0.6)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    added = 0
    while added < n:
        t = min(steps, n - added)
        obs = rng.standard_normal((t + 1, dim), dtype=np.float32)
        episode = SingleAgentEpisode(
            observations=list(obs), actions=list(rng.integers(0, 3, t)),
            rewards=list(rng.standard_normal(t).astype(np.float32)), terminated=True,
            len_lookback_buffer=0)
        buf.add([episode.to_numpy()])
        added += t
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    times = []
    for _ in range(args.rllib_batches):
        t0 = time.perf_counter()
        buf.sample(num_items=args.batch, n_step=3, gamma=0.99, beta=0.4, batch_length_T=0,
                   lookback=0, min_batch_length_T=0, sample_episodes=True)
        times.append((time.perf_counter() - t0) * 1e3)
    per = grown / n
    return {"transitions": n, "bytes_per_transition": per,
            "max_capacity_8gib": int(GIB8 // per),
            "nstep3_sample_ms_p50": float(np.percentile(times, 50))}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark record (see the module docstring)."""
    w, f = args.window, args.features
    compact, plain = fill(args.capacity, w, f, args.episode_steps, args.seed)
    assert compact.nbytes == compact_bytes(args.capacity, w, f)
    assert plain.nbytes == plain_bytes(args.capacity, w, f)
    same = compact.sample(64)
    ref = plain.sample(64)
    identical = bool(np.array_equal(same.obs, ref.obs)
                     and np.array_equal(same.next_obs, ref.next_obs))
    runs: dict[str, list[dict[str, float]]] = {"compact": [], "plain": []}
    for _ in range(args.repeats):
        runs["compact"].append(time_sampling(compact, args.batch, args.batches))
        runs["plain"].append(time_sampling(plain, args.batch, args.batches))
    out: dict[str, Any] = {
        "config": {"features": f, "window": w, "capacity": args.capacity,
                   "batch": args.batch, "batches": args.batches, "repeats": args.repeats,
                   "episode_steps": args.episode_steps, "cpus": sorted(os.sched_getaffinity(0))},
        "identical_samples": identical}
    for name, nbytes in (("compact", compact_bytes), ("plain", plain_bytes)):
        out[name] = {
            "bytes_per_transition": nbytes(args.capacity, w, f) / args.capacity,
            "max_capacity_8gib": largest_capacity(nbytes, w, f),
            "sample_ms_p50": spread([r["p50"] for r in runs[name]]),
            "sample_ms_p99": spread([r["p99"] for r in runs[name]])}
    ingest_ms, nstep_ms = time_ingest(args)
    out["config"].update(fragment_envs=args.fragment_envs, fragment_steps=args.fragment_steps,
                         fragments=args.fragments, every_bars=args.every_bars)
    out["compact"]["ingest_ms_per_fragment"] = spread(ingest_ms)
    out["compact"]["nstep3_sample_ms_p50"] = {str(b): spread(v) for b, v in nstep_ms.items()}
    out["rllib"] = rllib_buffer(args)
    out["memory_ratio_vs_rllib"] = (out["rllib"]["bytes_per_transition"]
                                    / out["compact"]["bytes_per_transition"])
    ratio = out["plain"]["bytes_per_transition"] / out["compact"]["bytes_per_transition"]
    out["memory_ratio"] = ratio
    out["targets"] = {"memory_ratio_at_least_10": ratio >= 10,
                      "compact_p50_under_2ms": out["compact"]["sample_ms_p50"]["median"] < 2.0}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", type=int, default=73)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--capacity", type=int, default=32_768, help="transitions per buffer")
    ap.add_argument("--episode-steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--batches", type=int, default=300, help="timed batches per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fragment-envs", type=int, default=64)
    ap.add_argument("--fragment-steps", type=int, default=32)
    ap.add_argument("--fragments", type=int, default=40, help="timed fragments per run")
    ap.add_argument("--every-bars", type=int, default=1, help="bars between decisions")
    ap.add_argument("--rllib-transitions", type=int, default=16_384,
                    help="transitions in RLlib's episode buffer (the before column)")
    ap.add_argument("--rllib-batches", type=int, default=30)
    ap.add_argument("--quick", action="store_true",
                    help="CI size: 2,048 transitions, 20 batches per run")
    args = ap.parse_args(argv)
    if args.quick:
        args.capacity, args.batches, args.episode_steps = 2048, 20, 200
        args.fragments = 4
        args.rllib_transitions, args.rllib_batches = 1024, 3
    if min(args.capacity, args.batches, args.repeats, args.fragments, args.fragment_envs,
           args.fragment_steps, args.every_bars) < 1:
        ap.error("capacity, batches, repeats, fragment sizes and every-bars must be >= 1")
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
