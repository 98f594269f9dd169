"""Online learning's rewards on the paper side are the training env's rewards: the reward
kind, every one of its parameters and its scale come from the policy's manifest."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from raytrade.actors.journal import Journal
from raytrade.actors.paper_broker import PaperBroker
from raytrade.actors.paper_config import PaperConfig
from raytrade.actors.session_factory import SessionFactory, broker_config
from raytrade.actors.symbol_trader import SymbolTrader
from raytrade.algos.export import random_bundle
from raytrade.algos.policy import Policy
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.errors import ConfigError
from raytrade.envs.market import load_markets
from raytrade.envs.trading_env import TradingEnv

from tests.live_setup import bars, quick_experiment

START = 600  # the light FeatureSpec is complete after about 140 bars
N_BARS = 1_000


@pytest.mark.parametrize("rules", [
    {"reward": "differential_sharpe", "dsr_eta": 0.2, "reward_scale": 3.0},
    {"reward": "drawdown_penalized", "drawdown_penalty": 40.0, "reward_scale": 50.0},
    {"reward": "turnover_penalty", "turnover_penalty": 0.03, "reward_scale": 7.0},
])
def test_paper_rewards_equal_the_env_rewards_of_a_policy_with_non_default_reward_rules(
        tmp_path: Path, rules: dict[str, object]) -> None:
    exp = quick_experiment()
    env_rules = dataclasses.replace(exp.env, **rules)  # type: ignore[arg-type]
    assert env_rules != EnvConfig(window=exp.env.window, reward=env_rules.reward)
    exp = dataclasses.replace(exp, env=env_rules)
    policy = Policy(random_bundle(exp, seed=3, spec=exp.fit_env_spec()), 1)
    assert policy.manifest.env == env_rules
    eth, btc = bars(N_BARS)

    # the paper side: a trader with online learning, fed the same real bars
    pushed: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = []
    # built the way a paper session builds it: the factory reads the manifest
    config = PaperConfig(actor="t", symbol="ETHUSDT", use_quote_spread=False,
                         online_learning=True, journal_dir=str(tmp_path))
    factory = SessionFactory(config, push_transitions=lambda o, a, r: pushed.append((a, r)))
    journal = factory.journal()
    trader = factory.trader(policy, journal, lambda: policy)
    for i in range(N_BARS):
        trader.process(eth.bar(i), "live" if i >= START else "warmup", float(btc.close[i]))
    journal.close()
    actions = np.concatenate([a for a, _ in pushed])
    paper = np.concatenate([r for _, r in pushed]).astype(np.float64)
    assert len(actions) >= 300

    # the training env, on the same bars with the same actions from the same bar
    markets, _ = load_markets(["sample:ETHUSDT"], spec=policy.feature_spec, split="all",
                              reference="sample:BTCUSDT", window=env_rules.window,
                              costs=env_rules.costs, normalizer=policy.normalizer)
    env = TradingEnv(markets, config=dataclasses.replace(env_rules, random_start=False,
                                                         max_episode_steps=None))
    env.reset(options={"start": START})
    expected = [env.step(int(a))[1] for a in actions]
    # float32 transport of the paper rewards; the accounting itself agrees to 1e-9
    np.testing.assert_allclose(paper, expected, rtol=1e-6, atol=1e-7)
    assert np.abs(np.asarray(expected)).max() > 0


def test_online_learning_without_the_policys_reward_rules_is_refused(tmp_path: Path) -> None:
    exp = quick_experiment()
    policy = Policy(random_bundle(exp, seed=3), 1)
    broker = PaperBroker(broker_config(PaperConfig(actor="t", symbol="ETHUSDT"),
                                       policy.manifest), "ETHUSDT", "t")
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        with pytest.raises(ConfigError, match="EnvConfig"):
            SymbolTrader("ETHUSDT", policy.feature_spec, exp.env.window, broker, journal,
                         lambda: policy, on_transitions=lambda o, a, r: None)
    finally:
        journal.close()


def test_paper_account_follows_the_manifest_equity_and_refuses_positions_past_leverage(
        ) -> None:
    exp = quick_experiment()
    exp = dataclasses.replace(exp, env=dataclasses.replace(exp.env, initial_equity=25_000.0))
    policy = Policy(random_bundle(exp, seed=3), 1)
    config = PaperConfig(actor="t", symbol="ETHUSDT")
    assert broker_config(config, policy.manifest).initial_equity == 25_000.0
    override = dataclasses.replace(config, initial_equity=5_000.0)
    assert broker_config(override, policy.manifest).initial_equity == 5_000.0
    wide = dataclasses.replace(exp, env=dataclasses.replace(exp.env,
                                                            positions=(-2.0, 0.0, 2.0)))
    with pytest.raises(ConfigError, match=r"reach 2x equity but PaperConfig.max_leverage"):
        broker_config(config, Policy(random_bundle(wide, seed=3), 2).manifest)
    assert broker_config(dataclasses.replace(config, max_leverage=2.0),
                         Policy(random_bundle(wide, seed=3), 2).manifest).max_leverage == 2.0
