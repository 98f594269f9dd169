"""CompactSampler and ApeXEnvRunner.apex_compact_sample: every observation rebuilt from the
fragments is exactly the env's, exploration is epsilon-greedy, episode stats match the
shared metrics, and a real Ray runner takes weights only when they are newer."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from raytrade.algos.callbacks import episode_metrics
from raytrade.algos.compact_fragment import CompactFragment
from raytrade.algos.compact_sampler import CompactSampler
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.envs.decision import DecisionRule
from raytrade.envs.env_spec import EnvSpec
from raytrade.envs.market import MarketData
from raytrade.envs.vector_env import VectorTradingEnv

N_STATE = 4


@functools.lru_cache(maxsize=1)
def _spec() -> tuple[ExperimentConfig, EnvSpec]:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    exp = dataclasses.replace(
        exp, data=dataclasses.replace(exp.data, sources=("synthetic:regime:seed=1:n=3000",)),
        env=dataclasses.replace(exp.env, window=6, max_episode_steps=9))
    return exp, exp.fit_env_spec()


def _markets() -> list[MarketData]:
    return _spec()[1].markets("train")


class Recorder(gym.vector.VectorWrapper):  # type: ignore[type-arg]
    """Keeps a copy of everything the env returns and the actions it receives; with
    ``lie`` it adds 1 to some sub-envs' ``bar`` info, so the sampler's guess of the rows
    a step adds is wrong there and its row check must catch it."""

    def __init__(self, env: VectorTradingEnv, lie: bool = False) -> None:
        super().__init__(env)
        self.lie = lie
        self.obs: list[np.ndarray] = []
        self.infos: list[dict[str, np.ndarray]] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[np.ndarray] = []
        self.term: list[np.ndarray] = []
        self.trunc: list[np.ndarray] = []

    def _keep(self, obs: Any, infos: dict[str, Any]) -> dict[str, Any]:
        self.obs.append(np.array(obs, copy=True))
        self.infos.append({k: np.array(v, copy=True) for k, v in infos.items()})
        if self.lie and len(self.obs) % 3 == 0:
            infos = dict(infos, bar=np.asarray(infos["bar"]) + (np.arange(len(obs)) % 2))
        return infos

    def reset(self, **kwargs: Any) -> Any:
        obs, infos = self.env.reset(**kwargs)
        return obs, self._keep(obs, infos)

    def step(self, actions: Any) -> Any:
        self.actions.append(np.array(actions, copy=True))
        obs, rew, term, trunc, infos = self.env.step(actions)
        self.rewards.append(np.array(rew, copy=True))
        self.term.append(np.array(term, copy=True))
        self.trunc.append(np.array(trunc, copy=True))
        return obs, rew, term, trunc, self._keep(obs, infos)


def greedy_of_dim(dim: int) -> Any:
    """A fixed linear Q-function over the observation (3 actions)."""
    w = np.random.default_rng(7).normal(size=(dim, 3)).astype(np.float32)
    return lambda obs: np.argmax(obs @ w, axis=1).astype(np.int64)


def decode(fragments: list[CompactFragment], n_envs: int) -> list[list[tuple[int, Any]]]:
    """Reference decoder, written from the CompactFragment docstring: per env stream, for
    each global step, ("start", obs) or ("transition", (obs, next_obs))."""
    first = fragments[0]
    w, f = first.window, first.n_features
    cur: list[tuple[np.ndarray, np.ndarray] | None] = [None] * n_envs
    out: list[list[tuple[int, Any]]] = [[] for _ in range(n_envs)]
    step0 = 0
    for frag in fragments:
        frag.check()
        starts = {(int(s), int(e)): (frag.start_windows[i], frag.start_states[i])
                  for i, (s, e) in enumerate(zip(frag.start_step, frag.start_env, strict=True))}
        for e in range(n_envs):
            if (-1, e) in starts:
                cur[e] = starts[(-1, e)]
                out[e].append((step0 - 1, ("start", _flat(*starts[(-1, e)]))))
        cursor = 0
        for t in range(frag.n_steps):
            for e in range(n_envs):
                if not frag.valid[t, e]:
                    cur[e] = starts[(t, e)]
                    out[e].append((step0 + t, ("start", _flat(*cur[e]))))
                    continue
                k = int(frag.push_counts[t, e])
                rows = frag.push_rows[cursor:cursor + k]
                cursor += k
                before = cur[e]
                assert before is not None
                window = np.concatenate([before[0], rows])[-w:]
                assert window.shape == (w, f)
                cur[e] = (window, frag.next_states[t, e])
                out[e].append((step0 + t, ("transition", (_flat(*before), _flat(*cur[e])))))
        assert cursor == len(frag.push_rows)
        step0 += frag.n_steps
    return out


def _flat(window: np.ndarray, state: np.ndarray) -> np.ndarray:
    return np.concatenate([window.reshape(-1), state])


@pytest.mark.parametrize(("window", "every", "lie"), [(3, 4, False), (6, 2, True)])
def test_compact_sampler_fragments_rebuild_every_env_observation_exactly(
        window: int, every: int, lie: bool) -> None:
    _, spec = _spec()
    cfg = dataclasses.replace(spec.env, window=window, decision=DecisionRule(every_bars=every))
    n = 5
    env = Recorder(VectorTradingEnv(n, _markets(), config=cfg), lie=lie)
    dim = int(env.single_observation_space.shape[0])
    sampler = CompactSampler(env, greedy_of_dim(dim), window=window, seed=3,
                             calendar=spec.env.calendar, every_bars=every)
    fragments = [sampler.sample(7, 0.3, weights_version=v) for v in range(5)]
    assert [f.weights_version for f in fragments] == list(range(5))
    assert len({f.source for f in fragments}) == 1
    assert all(len(f.start_step) == n for f in fragments[:1])
    assert not any((f.start_step == -1).any() for f in fragments[1:])
    pushed = np.concatenate([f.push_counts[f.valid] for f in fragments])
    if lie:  # wrong guesses pushed whole windows, right ones fewer rows
        assert (pushed == window).any() and (pushed < window).any()
    else:  # window < decision interval: every step adds a whole window of new bars
        assert (pushed == window).all()
    streams = decode(fragments, n)
    rec_obs = np.stack(env.obs)  # [0]: reset, [t + 1]: step t
    actions = np.concatenate([f.actions for f in fragments])
    np.testing.assert_array_equal(actions, np.stack(env.actions))
    for name, recorded in (("rewards", env.rewards), ("terminated", env.term),
                           ("truncated", env.trunc)):
        ours = np.concatenate([getattr(f, name) for f in fragments])
        np.testing.assert_array_equal(ours, np.stack(recorded).astype(ours.dtype))
    for e in range(n):
        assert len(streams[e]) == len(rec_obs)
        for t, (kind, value) in streams[e]:
            if kind == "start":
                np.testing.assert_array_equal(value, rec_obs[t + 1, e])
            else:
                np.testing.assert_array_equal(value[0], rec_obs[t, e])
                np.testing.assert_array_equal(value[1], rec_obs[t + 1, e])
    # finished episodes: return, length and the shared trading metrics of their infos
    rets, lens, trading = _reference_episodes(env, spec.env.calendar, every)
    got = [ep for f in fragments for ep in zip(f.episodes.returns, f.episodes.lengths,
                                                strict=True)]
    assert len(got) == len(rets) >= n  # episodes of 9 steps over 35: each env ended some
    np.testing.assert_allclose([g[0] for g in got], rets, rtol=1e-12)
    assert [g[1] for g in got] == lens
    ours = [m for f in fragments for m in f.episodes.trading]
    assert len(ours) == len(trading)
    for a, b in zip(ours, trading, strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-12)


def _reference_episodes(env: Recorder, calendar: Any, every: int
                        ) -> tuple[list[float], list[int], list[dict[str, float]]]:
    """Finished episodes in order of end step, then env, from the recorded steps."""
    n = len(env.obs[0])
    infos = [[{k: v[e] for k, v in step.items()} for e in range(n)] for step in env.infos]
    ep_infos: list[list[dict[str, Any]]] = [[infos[0][e]] for e in range(n)]
    ep_ret = [0.0] * n
    rets: list[float] = []
    lens: list[int] = []
    trading: list[dict[str, float]] = []
    done = [False] * n
    for t in range(len(env.actions)):
        for e in range(n):
            if done[e]:  # autoreset step: the new episode's first info
                ep_infos[e], ep_ret[e], done[e] = [infos[t + 1][e]], 0.0, False
                continue
            ep_infos[e].append(infos[t + 1][e])
            ep_ret[e] += float(env.rewards[t][e])
            if env.term[t][e] or env.trunc[t][e]:
                done[e] = True
                rets.append(ep_ret[e])
                lens.append(len(ep_infos[e]) - 1)
                metrics = episode_metrics(ep_infos[e], calendar, every)
                if metrics is not None:
                    trading.append(metrics)
    return rets, lens, trading


def test_compact_sampler_epsilon_zero_is_greedy_and_one_is_uniform() -> None:
    _, spec = _spec()
    n = 8
    env = VectorTradingEnv(n, _markets(), config=spec.env)
    dim = int(env.single_observation_space.shape[0])
    greedy = greedy_of_dim(dim)
    calls: list[np.ndarray] = []

    def watched(obs: np.ndarray) -> np.ndarray:
        calls.append(obs.copy())
        return greedy(obs)

    sampler = CompactSampler(env, watched, window=spec.env.window, seed=1)
    frag = sampler.sample(40, 0.0)
    np.testing.assert_array_equal(frag.actions, np.stack([greedy(o) for o in calls]))
    assert len(calls) == 40
    calls.clear()
    frag = sampler.sample(100, 1.0)
    assert not calls  # all random: no inference
    counts = np.bincount(frag.actions.reshape(-1), minlength=3)
    assert counts.min() > 800 * 0.25 and counts.max() < 800 * 0.42
    frag = sampler.sample(100, 0.5)
    off_greedy = np.mean(frag.actions != np.stack([greedy(o) for o in calls]))
    assert 0.25 < off_greedy < 0.42  # half random, two thirds of those differ


def test_compact_sampler_rejects_envs_it_cannot_rebuild() -> None:
    _, spec = _spec()
    env = VectorTradingEnv(2, _markets(), config=spec.env)
    with pytest.raises(ValueError, match="feature rows"):
        CompactSampler(env, greedy_of_dim(1), window=spec.env.window + 1)
    sync = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    with pytest.raises(ValueError, match="NEXT_STEP"):
        CompactSampler(sync, greedy_of_dim(4), window=1)


def _one_action_state(state: dict[str, Any], action: int) -> dict[str, Any]:
    """The module state with every weight zero but the Q head's last bias, which favours
    ``action``: greedy then always picks it (with or without the dueling streams)."""
    import torch

    out = {k: torch.zeros(np.shape(v)) for k, v in state.items()}
    heads = [k for k in out if k.startswith("af.") and k.endswith("bias")]
    last = max(heads, key=lambda k: int(k.split(".")[-2]))
    out[last][action] = 1.0
    return out


@pytest.mark.slow
def test_apex_compact_sample_takes_only_newer_weights_on_remote_and_local_runners(
        local_ray: None) -> None:
    import ray
    from ray.rllib.utils.metrics.metrics_logger import MetricsLogger
    from raytrade.algos.apex_epsilon import WEIGHTS_VERSION, ApeXEnvRunner
    from raytrade.algos.dqn_config import build_dqn_config

    exp, _ = _spec()
    exp = dataclasses.replace(exp, env=dataclasses.replace(exp.env, max_episode_steps=4),
                              resources=dataclasses.replace(
                                  exp.resources, num_env_runners=1, num_envs_per_env_runner=4))
    _, spec = _spec()
    config = build_dqn_config(exp, dataclasses.replace(spec, env=exp.env)) \
        .apex(epsilon=1e-9, alpha=0.0, decay_steps=1000)
    remote = ray.remote(num_cpus=1)(ApeXEnvRunner).remote(config=config, worker_index=1,
                                                          num_workers=1)
    local = ApeXEnvRunner(config=config.copy(copy_frozen=False).env_runners(num_env_runners=0),
                          worker_index=0, num_workers=0)

    def sample(runner: Any, weights: list[Any] | None, version: int, steps_sampled: int
               ) -> tuple[CompactFragment, dict[str, Any]]:
        if runner is local:
            frag, metrics = local.apex_compact_sample(weights, version, steps_sampled, 6)
        else:
            frag, metrics = ray.get(remote.apex_compact_sample.remote(
                weights, version, steps_sampled, 6))
        frag.check()
        assert frag.n_envs == 4 and frag.n_steps == 6
        return frag, MetricsLogger.peek_results(metrics)

    try:
        # initial weights, epsilon 1 at the start of the decay (all random)
        frag, m = sample(remote, None, -1, 0)
        assert m[WEIGHTS_VERSION] == -1 and m["apex_epsilon_runner_0"] == 1.0
        assert m["num_env_steps_sampled"] == frag.env_steps == m["num_env_steps_sampled_lifetime"]
        assert m["num_agent_steps_sampled"]["default_agent"] == frag.env_steps
        assert m["num_episodes"] == len(frag.episodes.returns) >= 4  # 4-step episodes
        assert m["episode_len_mean"] == 4
        assert m["episode_return_mean"] == pytest.approx(np.mean(frag.episodes.returns))
        assert m["episode_return_min"] == pytest.approx(min(frag.episodes.returns))
        assert m["episode_return_max"] == pytest.approx(max(frag.episodes.returns))
        for key in ("episode_sharpe", "episode_max_drawdown", "episode_total_return",
                    "episode_turnover", "episode_trades"):
            assert np.isfinite(m[key]), key
        # one torch thread on the runner's one reserved CPU
        assert ray.get(remote.apply.remote(lambda _: __import__("torch").get_num_threads())) == 1
        state = ray.get(remote.get_state.remote(components="rl_module"))["rl_module"]
        state = state.get("default_policy", state)
        two = ray.put({"rl_module": _one_action_state(state, 2), "weights_seq_no": 3})
        zero = ray.put({"rl_module": _one_action_state(state, 0), "weights_seq_no": 5})
        bogus = ray.put({"not": "weights"})  # loading it would raise
        for runner in (remote, local):
            # version 3 is newer: loaded; epsilon has decayed to the rung's 1e-9
            frag, m = sample(runner, [two], 3, 1000)
            assert m[WEIGHTS_VERSION] == 3 and frag.weights_version == 3
            assert m["apex_epsilon_runner_0"] == pytest.approx(1e-9)
            assert (frag.actions == 2).all()
            # the same or an older version is never fetched
            for version in (3, 2):
                frag, m = sample(runner, [bogus], version, 1000)
                assert m[WEIGHTS_VERSION] == 3 and (frag.actions == 2).all()
            frag, m = sample(runner, [zero], 5, 1000)
            assert m[WEIGHTS_VERSION] == 5 and (frag.actions == 0).all()
    finally:
        local.stop()
        ray.kill(remote)


def test_bench_sampler_quick_prints_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from raytrade.scripts import bench_sampler

    bench_sampler.main(["--quick", "--repeats", "1", "--steps", "4"])
    out = json.loads(capsys.readouterr().out)
    for key in ("env_steps_per_s", "env_steps_per_s_min", "env_steps_per_s_max",
                "env_steps_per_cpu_s", "vector_step_us", "env_step_us", "greedy_us",
                "sampler_rest_us", "fragment_bytes", "bytes_per_transition"):
        assert np.isfinite(out[key]), key
        assert out[key] > 0 or key == "sampler_rest_us", key  # a difference of timings
    assert out["n_envs"] == 64 and out["window"] == 16


@pytest.mark.parametrize(("encoder", "dueling"), [("mlp", True), ("mlp", False),
                                                  ("conv1d", True)])
def test_greedy_of_module_equals_rllib_forward_inference(encoder: str, dueling: bool) -> None:
    import torch
    from ray.rllib.core.columns import Columns
    from raytrade.algos.apex_epsilon import greedy_of
    from raytrade.algos.dqn_config import build_dqn_config

    exp, spec = _spec()
    exp = dataclasses.replace(exp, network=dataclasses.replace(exp.network, encoder=encoder),
                              dqn=dataclasses.replace(exp.dqn, dueling=dueling))
    env = VectorTradingEnv(64, _markets(), config=spec.env)
    spaces = {"default_policy": (env.single_observation_space, env.single_action_space)}
    # what ApeXEnvRunner.make_module builds
    module = build_dqn_config(exp, spec).get_rl_module_spec(spaces=spaces,
                                                            inference_only=True).build()
    assert module.uses_dueling == dueling
    torch.manual_seed(0)
    with torch.no_grad():  # spread the initial weights, so the actions vary
        for p in module.parameters():
            p.normal_(0.0, 0.3)
    obs = np.random.default_rng(0).normal(size=(64, env.single_observation_space.shape[0]))
    obs = obs.astype(np.float32)
    with torch.no_grad():
        want = module.forward_inference({Columns.OBS: torch.from_numpy(obs)})[Columns.ACTIONS]
    got = greedy_of(module)(obs)
    assert got.dtype == np.int64 and got.shape == (64,)
    np.testing.assert_array_equal(got, want.numpy())
    assert len(set(got.tolist())) > 1  # a real comparison, not one constant action


class FailOnce(gym.vector.VectorWrapper):  # type: ignore[type-arg]
    """Raises on the ``at``-th call of ``step`` (an env failing mid-fragment)."""

    def __init__(self, env: VectorTradingEnv, at: int) -> None:
        super().__init__(env)
        self.calls, self.at = 0, at

    def step(self, actions: Any) -> Any:
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("injected env failure")
        return self.env.step(actions)


def test_compact_sampler_after_a_failed_step_restarts_as_a_new_source() -> None:
    _, spec = _spec()
    n = 3
    env = FailOnce(VectorTradingEnv(n, _markets(), config=spec.env), at=12)
    dim = int(env.single_observation_space.shape[0])
    sampler = CompactSampler(env, greedy_of_dim(dim), window=spec.env.window, seed=3)
    first, second = sampler.sample(5, 0.3), sampler.sample(5, 0.3)
    assert (first.sequence, second.sequence) == (0, 1) and first.source == second.source
    with pytest.raises(RuntimeError, match="injected env failure"):
        sampler.sample(5, 0.3)  # fails at its second step: the sampler's place is lost
    # the next fragment never continues across the failure: a new source, every env reset
    after = sampler.sample(5, 0.3)
    after.check()
    assert after.source != first.source and after.sequence == 0
    assert sorted(after.start_env[after.start_step == -1].tolist()) == list(range(n))
    assert sampler.sample(5, 0.3).sequence == 1
    # the learner lost a fragment: restart() likewise
    source = sampler.source
    sampler.restart()
    again = sampler.sample(5, 0.3)
    assert again.source not in (source, after.source) and again.sequence == 0
    assert (again.start_step == -1).sum() == n
