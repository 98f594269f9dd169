"""The compact replay returns exactly what the plain one returns, on real env transitions;
windows stay inside their episode; eviction; the sum tree's sampling law; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from raytrade.algos.compact_replay import CompactReplay
from raytrade.algos.plain_replay import PlainReplay
from raytrade.algos.sum_tree import PrioritizedIndex
from raytrade.envs.market import load_markets
from raytrade.envs.trading_env import TradingEnv

W = 16


def _fill_from_env(compact: CompactReplay, plain: PlainReplay, steps: int) -> int:
    """Step two real envs (one per stream, interleaved) and feed both buffers; the compact
    one only from the observations themselves. Returns the number of episodes begun."""
    markets, _ = load_markets("sample:ETHUSDT", window=W)
    envs = [TradingEnv(markets, config={"window": W, "max_episode_steps": 9})
            for _ in range(2)]
    f = compact.n_features
    k = W * f
    obs = [env.reset(seed=i)[0] for i, env in enumerate(envs)]
    bars = [compact.start_episode(i, o[:k].reshape(W, f)) for i, o in enumerate(obs)]
    rng = np.random.default_rng(1)
    episodes = 2
    for _ in range(steps):
        for i, env in enumerate(envs):
            a = int(rng.integers(3))
            nxt, r, term, trunc, _ = env.step(a)
            (nbar,) = compact.push_bars([i], nxt[None, (W - 1) * f:k])
            compact.add([i], [bars[i]], obs[i][None, k:], [a], [r], [nbar], nxt[None, k:],
                        [term])
            plain.add([i], obs[i][None], [a], [r], nxt[None], [term])
            obs[i], bars[i] = nxt, nbar
            if term or trunc:
                obs[i] = env.reset()[0]
                bars[i] = compact.start_episode(i, obs[i][:k].reshape(W, f))
                episodes += 1
    return episodes


def _assert_same(a: object, b: object) -> None:
    for name in ("slots", "obs", "actions", "rewards", "next_obs", "dones", "weights"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_compact_replay_same_env_transitions_equals_plain_buffer() -> None:
    markets, _ = load_markets("sample:ETHUSDT", window=W)
    f = markets[0].z.shape[1]
    compact = CompactReplay(400, W, f, n_streams=2, seed=7)
    plain = PlainReplay(400, W * f + 4, n_streams=2, seed=7)
    episodes = _fill_from_env(compact, plain, 60)  # 120 transitions, episodes of <= 9 steps
    assert episodes > 12 and len(compact) == len(plain) == 120
    _assert_same(compact.sample(512, beta=0.4), plain.sample(512, beta=0.4))
    rng = np.random.default_rng(3)
    for _ in range(3):  # the learner's loop: new priorities, then sample again
        batch = plain.sample(512, beta=0.5)
        prio = rng.random(512) + 0.01
        compact.update_priorities(batch.slots, prio)
        plain.update_priorities(batch.slots, prio)
        compact.index.sample(512, 0.5)  # keep the generators in step
        _assert_same(compact.sample(512, beta=0.5), plain.sample(512, beta=0.5))
    # every stored transition, rebuilt, equals the whole stored observation
    every = np.flatnonzero(plain.index.priority(np.arange(400)) > 0)
    ones = np.ones(len(every))
    _assert_same(compact.gather(every, ones), plain.gather(every, ones))


def test_compact_replay_window_before_episode_start_refused() -> None:
    buf = CompactReplay(16, 4, 2)
    first = buf.start_episode(0, np.zeros((4, 2), np.float32))
    (b1,) = buf.push_bars([0], np.ones((1, 2), np.float32))
    buf.add([0], [first], np.zeros((1, 4)), [0], [0.0], [b1], np.zeros((1, 4)), [True])
    second = buf.start_episode(0, np.full((4, 2), 2.0, np.float32))
    (b2,) = buf.push_bars([0], np.full((1, 2), 3.0, np.float32))
    with pytest.raises(ValueError, match="within one episode"):  # window reaches episode one
        buf.add([0], [second - 1], np.zeros((1, 4)), [0], [0.0], [b2], np.zeros((1, 4)), [0])
    buf.add([0], [second], np.zeros((1, 4)), [1], [0.0], [b2], np.zeros((1, 4)), [False])
    batch = buf.gather(np.array([1]), np.ones(1))
    assert np.array_equal(batch.obs[0, :8], np.full(8, 2.0, np.float32))
    assert np.array_equal(batch.next_obs[0, :8], [2, 2, 2, 2, 2, 2, 3, 3])


def _marked_episodes(buf: CompactReplay, n_episodes: int, length: int) -> dict[int, float]:
    """Episodes whose bars carry the transition's number; returns slot -> last marker."""
    latest: dict[int, float] = {}
    n = 0
    for _ in range(n_episodes):
        bar = buf.start_episode(0, np.full((buf.window, 2), n, np.float32))
        for _ in range(length):
            n += 1
            (nxt,) = buf.push_bars([0], np.full((1, 2), n, np.float32))
            (slot,) = buf.add([0], [bar], np.full((1, 4), n - 1), [0], [n - 1], [nxt],
                              np.full((1, 4), n), [False])
            latest[int(slot)] = n - 1
            bar = nxt
    return latest


def test_compact_replay_over_capacity_evicted_never_sampled() -> None:
    # transition ring: 8 slots, 30 transitions -> only the last 8 can be drawn
    buf = CompactReplay(8, 3, 2, bars_per_stream=64, seed=1)
    latest = _marked_episodes(buf, 1, 30)
    batch = buf.sample(2000)
    assert set(batch.rewards.tolist()) == set(range(22, 30))
    assert np.array_equal(batch.obs[:, -4], batch.rewards)  # state written with the step
    assert np.array_equal(batch.next_obs[:, 4], batch.rewards + 1)  # next window's last bar
    # bar ring: 12 rows shared by short episodes (3 warm-up rows each); a transition whose
    # window lost a bar is evicted before the bar is reused, and rows never mix
    buf = CompactReplay(64, 3, 2, bars_per_stream=12, seed=2)
    nbytes = buf.nbytes
    latest = _marked_episodes(buf, 20, 2)
    assert buf.nbytes == nbytes and 0 < len(buf) < 12
    batch = buf.sample(2000)
    assert {latest[s] for s in batch.slots.tolist()} == set(batch.rewards.tolist())
    assert set(batch.rewards.tolist()) >= {38.0, 39.0}
    last_rows = batch.obs[:, 4]
    assert np.array_equal(last_rows, batch.rewards)


def test_sum_tree_frequencies_follow_priorities_zero_never_drawn() -> None:
    index = PrioritizedIndex(5, alpha=0.5, seed=4)
    index.update(np.arange(5), [4.0, 0.0, 9.0, 1.0, 36.0])  # ** 0.5 -> 2, 0, 3, 1, 6
    slots, weights = index.sample(120_000, beta=1.0)
    freq = np.bincount(slots, minlength=5) / len(slots)
    assert freq[1] == 0
    np.testing.assert_allclose(freq, np.array([2, 0, 3, 1, 6]) / 12, atol=0.005)
    # weights (N P)^-beta over the largest (that of the smallest priority): 1 / (p / 1)
    expected = {0: 0.5, 2: 1 / 3, 3: 1.0, 4: 1 / 6}
    for s, w in expected.items():
        np.testing.assert_allclose(weights[slots == s], w)
    index.update([3], 0.0)  # evicting the smallest renormalizes to the next smallest
    slots, weights = index.sample(1000, beta=1.0)
    assert 3 not in slots and 1 not in slots
    np.testing.assert_allclose(weights[slots == 0], 1.0)
    again = PrioritizedIndex(5, alpha=0.5, seed=4)
    again.update(np.arange(5), [4.0, 0.0, 9.0, 1.0, 36.0])
    first = again.sample(100, 0.4)[0]
    again2 = PrioritizedIndex(5, alpha=0.5, seed=4)
    again2.update(np.arange(5), [4.0, 0.0, 9.0, 1.0, 36.0])
    assert np.array_equal(first, again2.sample(100, 0.4)[0])


def test_compact_replay_bad_input_clear_errors() -> None:
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        CompactReplay(0, 16, 73)
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        PlainReplay(0, 100)
    buf = CompactReplay(10, 4, 3)
    with pytest.raises(ValueError, match="no episode"):
        buf.push_bars([0], np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="must have 3 features"):
        buf.start_episode(0, np.zeros((4, 5), np.float32))
    buf.start_episode(0, np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="must have 3 features"):
        buf.push_bars([0], np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="stream out of range"):
        buf.push_bars([1], np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="every priority is 0"):
        buf.sample(4)
    (bar,) = buf.push_bars([0], np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"states of shape \(1, 4\)"):
        buf.add([0], [bar - 1], np.zeros((1, 3)), [0], [0.0], [bar], np.zeros((1, 3)), [0])


def _brute_nstep(log: list[dict[str, object]], i: int, n: int, gamma: float
                 ) -> tuple[float, np.ndarray, bool, int]:
    """The n-step target of log entry ``i`` by walking the stream's later entries."""
    total, cur, steps = 0.0, i, 1
    later = [j for j in range(i + 1, len(log)) if log[j]["stream"] == log[i]["stream"]]
    while True:
        total += gamma ** (steps - 1) * float(np.float32(log[cur]["reward"]))
        if log[cur]["term"] or log[cur]["trunc"] or steps == n or not later \
                or log[later[0]]["episode"] != log[cur]["episode"]:
            return total, log[cur]["next"], bool(log[cur]["term"]), steps  # type: ignore
        cur, later, steps = later[0], later[1:], steps + 1


def test_compact_replay_nstep_targets_equal_brute_force_reference() -> None:
    # 2 streams of 8 slots, a 24-row bar ring: the rings wrap and bars evict transitions;
    # episodes end terminated, truncated or by a new start; decisions 1..3 bars apart
    w, f, n_state = 3, 2, 4
    buf = CompactReplay(16, w, f, n_streams=2, bars_per_stream=24, seed=5)
    rng = np.random.default_rng(8)
    rows: list[list[np.ndarray]] = [[], []]
    bar, episode = [-1, -1], [0, 0]
    state = [np.zeros(n_state, np.float32)] * 2
    log: list[dict[str, object]] = []
    slot_of: dict[int, int] = {}

    def whole(s: int, b: int, st: np.ndarray) -> np.ndarray:
        return np.concatenate([np.ravel(rows[s][b - w + 1:b + 1]), st])

    for _ in range(150):
        streams, obs_b, next_b, sts, nsts, terms, truncs, rewards = ([] for _ in range(8))
        for s in (0, 1):
            if bar[s] < 0 or rng.random() < 0.08:  # a start (also mid-episode: a restart)
                window = rng.standard_normal((w, f)).astype(np.float32)
                rows[s].extend(window)
                bar[s] = buf.start_episode(s, window)
                state[s] = rng.random(n_state).astype(np.float32)
                episode[s] += 1
            k = int(rng.integers(1, w + 1))
            new = rng.standard_normal((k, f)).astype(np.float32)
            ids = buf.append_rows(np.full(k, s), new)
            rows[s].extend(new)
            nxt = rng.random(n_state).astype(np.float32)
            end = rng.random()
            streams.append(s)
            obs_b.append(bar[s])
            next_b.append(int(ids[-1]))
            sts.append(state[s])
            nsts.append(nxt)
            terms.append(end < 0.1)
            truncs.append(0.1 <= end < 0.15)
            rewards.append(float(rng.standard_normal()))
            log.append({"stream": s, "episode": episode[s], "reward": rewards[-1],
                        "obs": whole(s, bar[s], state[s]), "next": whole(s, int(ids[-1]), nxt),
                        "term": terms[-1], "trunc": truncs[-1]})
            bar[s], state[s] = int(ids[-1]), nxt
            if terms[-1] or truncs[-1]:
                bar[s] = -1
        slots = buf.add(streams, obs_b, np.array(sts), [0, 1], rewards, next_b,
                        np.array(nsts), terms, truncs)
        for j, slot in enumerate(slots.tolist()):
            slot_of[slot] = len(log) - 2 + j
    live = np.flatnonzero(buf.index.priority(np.arange(16)) > 0)
    assert 4 < len(live) < 16  # both transition rings wrapped; the bar ring evicted some
    assert any(e["trunc"] for e in log) and any(e["term"] for e in log)
    ones = np.ones(len(live))
    for n, gamma in ((1, 1.0), (3, 0.9), (5, 0.5)):
        batch = buf.gather(live, ones, n_step=n, gamma=gamma)
        for row, slot in enumerate(live.tolist()):
            i = slot_of[slot]
            total, nxt_obs, done, steps = _brute_nstep(log, i, n, gamma)
            assert np.array_equal(batch.obs[row], log[i]["obs"])
            assert batch.rewards[row] == np.float32(total), (n, slot)
            assert np.array_equal(batch.next_obs[row], nxt_obs), (n, slot)
            assert batch.dones[row] == done and batch.n_steps[row] == steps, (n, slot)
        assert set(batch.n_steps.tolist()) == set(range(1, n + 1))  # every stop happens
    sampled = buf.sample(64, 0.4, n_step=3, gamma=0.9)
    again = buf.gather(sampled.slots, sampled.weights, n_step=3, gamma=0.9)
    assert np.array_equal(sampled.rewards, again.rewards)
    with pytest.raises(ValueError, match="n_step must be >= 1"):
        buf.sample(4, n_step=0)


def test_compact_replay_priority_update_skips_slots_rewritten_since_sampling() -> None:
    replay = CompactReplay(4, 2, 1, n_streams=1, bars_per_stream=16)
    first = replay.start_episode(0, np.zeros((2, 1), np.float32))
    bars = replay.push_bars([0], np.ones((1, 1), np.float32))
    state = np.zeros((1, 4), np.float32)
    replay.add([0], [first], state, [0], [0.0], bars, state, [False])
    batch = replay.sample(8)
    assert batch.stamps is not None and set(batch.slots.tolist()) == {0}
    # four more transitions wrap the 4-slot ring: slot 0 now holds a new transition
    last = int(bars[0])
    for _ in range(4):
        nxt = replay.push_bars([0], np.ones((1, 1), np.float32))
        replay.add([0], [last], state, [1], [0.0], nxt, state, [False])
        last = int(nxt[0])
    before = replay.index.priority(np.array([0]))[0]
    replay.update_priorities(batch.slots, np.full(len(batch.slots), 0.01), batch.stamps)
    assert replay.index.priority(np.array([0]))[0] == before  # the new one keeps its own
    fresh = replay.sample(4)
    replay.update_priorities(fresh.slots, np.full(len(fresh.slots), 0.01), fresh.stamps)
    assert replay.index.priority(fresh.slots).max() < before  # current stamps: applied
