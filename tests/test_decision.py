"""The cost-aware decision rule (``envs/decision.py``): the rule itself, the env stepping
from decision bar to decision bar, and one rule across evaluation, backtest and executor."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
from raytrade.actors.executor import PolicyExecutor
from raytrade.algos.evaluation import evaluate, play
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.export import random_bundle
from raytrade.algos.policy import Policy
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.envs.costs import CostModel
from raytrade.envs.decision import (
    DecisionRule,
    choose,
    decision_bars,
    held_actions,
    switch_thresholds,
)
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.env_spec import EnvSpec
from raytrade.envs.errors import ConfigError
from raytrade.envs.risk import RiskConfig
from raytrade.envs.trading_env import TradingEnv
from raytrade.envs.vector_env import VectorTradingEnv

FIVE_MIN = 300_000


def test_thresholds_are_margin_plus_cost_multiple_of_the_switch_cost_in_q_units() -> None:
    config = EnvConfig(positions=(-1.0, 0.0, 1.0), reward_scale=100.0,
                       costs=CostModel(fee_bps=10.0, half_spread_bps=1.0),
                       decision=DecisionRule(margin=0.05, cost_multiple=2.0))
    m = switch_thresholds(config)
    unit = 100.0 * (10.0 + 1.0) / 1e4  # one unit of position: 0.11 Q units
    assert np.allclose(np.diag(m), 0.0)
    assert m[1, 2] == pytest.approx(0.05 + 2.0 * unit)
    assert m[0, 2] == pytest.approx(0.05 + 2.0 * 2 * unit)  # short -> long trades 2 units
    fixed = dataclasses.replace(config, costs=CostModel(fee_bps=10.0, fixed_slippage_bps=4.0))
    assert switch_thresholds(fixed)[1, 2] == pytest.approx(0.05 + 2.0 * 100 * 14e-4)


def test_choose_holds_unless_the_advantage_pays_and_prefers_the_cheaper_switch() -> None:
    m = np.array([[0.0, 0.1, 0.2], [0.1, 0.0, 0.1], [0.2, 0.1, 0.0]])
    q = np.array([[0.0, 0.05, 0.09],    # held flat: +0.09 long does not pay 0.1
                  [0.0, 0.0, 0.15],     # held flat: +0.15 pays 0.1
                  [1.0, 0.95, 0.0],     # held long: short nets 0.8, flat 0.85: flat
                  [0.0, 0.1, 0.0]])     # held flat, tie at the margin: hold
    held = np.array([1, 1, 2, 1])
    assert choose(q, held, m).tolist() == [1, 2, 1, 1]
    # no margin: the plain argmax, whatever is held
    plain = np.zeros((3, 3))
    rng = np.random.default_rng(0)
    qs = rng.standard_normal((500, 3))
    assert (choose(qs, rng.integers(0, 3, 500), plain) == qs.argmax(axis=1)).all()
    assert held_actions(EnvConfig(), [0.9, -0.2, 0.5001]).tolist() == [2, 1, 2]
    # a scaled account target (position_fraction 0.5: long is 0.5) is still the long action
    half = EnvConfig(risk=RiskConfig(position_fraction=0.5))
    assert held_actions(half, [0.5, -0.5, 0.1, 0.3]).tolist() == [2, 0, 1, 2]
    rule = dataclasses.replace(half, decision=DecisionRule(margin=0.05))
    # held long (0.5) with a small edge for long: the margin keeps long, never forces flat
    assert choose([[0.0, 0.0, 0.04]], held_actions(rule, [0.5]),
                  switch_thresholds(rule)).tolist() == [2]


def test_rule_refuses_bad_values_with_the_field_named() -> None:
    for kwargs, field in (({"margin": -1.0}, "margin"), ({"cost_multiple": np.nan},
                                                          "cost_multiple"),
                          ({"every_bars": 0}, "every_bars"), ({"every_bars": 1.5},
                                                               "every_bars")):
        with pytest.raises(ConfigError, match=rf"env\.decision\.{field}"):
            DecisionRule(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"decision.*margins"):
        EnvConfig.from_dict({"decision": {"margins": 1.0}})


def test_decision_bars_are_epoch_aligned() -> None:
    ts = np.arange(10, 22, dtype=np.int64) * FIVE_MIN
    flags = decision_bars(ts, FIVE_MIN, 12)
    assert ts[flags].tolist() == [12 * FIVE_MIN]
    assert decision_bars(ts, FIVE_MIN, 1).all()


@functools.lru_cache(maxsize=1)
def _experiment() -> tuple[ExperimentConfig, EnvSpec]:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    exp = dataclasses.replace(exp, data=dataclasses.replace(
        exp.data, sources=("synthetic:regime:seed=1:n=6000",)))
    return exp, exp.fit_env_spec()


def test_env_with_interval_plays_the_held_target_bar_by_bar_and_sums_the_rewards() -> None:
    _, spec = _experiment()
    markets = spec.markets("train")
    every = dataclasses.replace(spec.env, random_start=False, max_episode_steps=None,
                                decision=DecisionRule(every_bars=4))
    each = dataclasses.replace(every, decision=DecisionRule())
    rng = np.random.default_rng(1)
    coarse, fine = TradingEnv(markets, config=every), TradingEnv(markets, config=each)
    _, info = coarse.reset()
    _, fine_info = fine.reset(options={"start": int(info["bar"])})
    assert (int(info["ts"]) // FIVE_MIN) % 4 == 0  # the episode starts on a decision bar
    for _ in range(200):
        a = int(rng.integers(3))
        _, r, term, trunc, info = coarse.step(a)
        total = 0.0
        while fine_info["bar"] < info["bar"]:
            _, r1, _, _, fine_info = fine.step(a)
            total += r1
        assert r == pytest.approx(total, rel=1e-12, abs=1e-12)
        assert info["equity"] == fine_info["equity"] and info["bar"] == fine_info["bar"]
        assert (int(info["ts"]) // FIVE_MIN) % 4 == 0 or trunc or term
        if term or trunc:
            break
    # the vector env takes the same steps
    vec = VectorTradingEnv(2, markets, config=every)
    vec.reset(options={"start": markets[0].first})
    scalar = TradingEnv(markets, config=every)
    scalar.reset(options={"start": markets[0].first})
    for a in rng.integers(0, 3, 50):
        _, vr, _, _, vinfo = vec.step(np.array([a, a]))
        _, sr, _, _, sinfo = scalar.step(int(a))
        assert vr[0] == pytest.approx(sr, rel=1e-12, abs=1e-15)
        assert int(vinfo["bar"][0]) == sinfo["bar"]


def test_one_rule_in_evaluation_backtest_and_executor(tmp_path: Path) -> None:
    exp, spec = _experiment()
    rule = DecisionRule(margin=0.0, cost_multiple=0.5, every_bars=2)
    env = dataclasses.replace(spec.env, decision=rule)
    exp, spec = dataclasses.replace(exp, env=env), dataclasses.replace(spec, env=env)
    files = random_bundle(exp, seed=5, spec=spec)
    policy = Policy(files, 1)
    assert policy.decision_rule == rule
    # the training evaluation's greedy policy, from the Q-function alone ...
    record = evaluate(policy.q_values, exp, "validation", spec=spec)
    greedy = record["datasets"][spec.markets("validation")[0].name]["greedy"]
    # ... equals the bundle deciding through Policy.decide (the backtest's chooser)
    config = dataclasses.replace(env, random_start=False, max_episode_steps=None)
    decided: list[tuple[np.ndarray, float, int]] = []

    def backtest_choice(obs: np.ndarray, bar: int, held: float) -> int:
        action = policy.decide(obs, held).action
        decided.append((obs, held, action))
        return action

    run = play(spec.markets("validation"), config, 0, backtest_choice)
    assert greedy["final_equity"] == run["equity"][-1]
    # the rule mattered: without it the same Q-values switch more often
    plain = [int(np.argmax(policy.q_values(o)[0])) for o, _, _ in decided]
    assert sum(a != p for (_, _, a), p in zip(decided, plain, strict=True)) > 0
    # the executor serving the bundle decides the same, and on the same bars
    store = PolicyStore(tmp_path.as_uri())
    version = store.publish(files, channel="live", reason="test")
    executor = PolicyExecutor(store, "live")
    executor.poll(force=True)
    assert executor.version == version
    for obs, held, action in decided[:200]:
        assert executor.decide(obs, held).action == action
    ts = spec.markets("validation")[0].ts
    assert [executor.decides_at(int(t)) for t in ts[:6]] == \
        [bool((int(t) // FIVE_MIN) % 2 == 0) for t in ts[:6]]


def test_metrics_of_a_decision_interval_are_counted_in_bars() -> None:
    from raytrade.algos.run_metrics import run_performance

    _, spec = _experiment()
    markets = spec.markets("validation")
    config = dataclasses.replace(spec.env, random_start=False, max_episode_steps=None,
                                 decision=DecisionRule(every_bars=3))
    decisions: list[int] = []

    def long_long_flat(obs: np.ndarray, bar: int, held: float) -> int:
        decisions.append(bar)
        return 2 if len(decisions) % 3 else 1  # long for two decisions, then flat for one

    run = play(markets, config, 0, long_long_flat)
    perf = run_performance(run, 300_000 * 3)
    steps = np.diff(run["bar"])
    assert steps.max() == 3 and (steps[:-1] == 3).all()
    assert perf["avg_holding_bars"] == pytest.approx(6.0, abs=0.5)  # two 3-bar decisions
    days = int(steps.sum()) * 300_000 / 86_400_000
    assert perf["trades_per_day"] == pytest.approx(run["trades"] / days)
