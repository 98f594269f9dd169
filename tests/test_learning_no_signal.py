"""Learning that fails loudly: on a market with nothing to learn (a random walk of the
regime market's volatility, at a 10 bp fee plus modelled slippage), a short training run
gives a greedy policy that trades far less than a random one on the held-out test split.

A learner that does not learn the cost of trading (a broken reward, lost costs, a policy
that ignores the held position) keeps switching on noise, and loses the fees; this test
is the CI-sized form of ``scripts/bench_learning.py --scenario no-signal``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.train import train
from raytrade.scripts.learning_scenarios import scenario, scenario_experiment, scenario_metrics

TRAIN_BUDGET_S = 75.0
"""Training seconds: the whole test stays within about 90 s on 2 cores."""
SOURCE = "synthetic:randomwalk:seed=1:n=12000:volume=1000"


@pytest.mark.slow
def test_no_signal_market_greedy_policy_trades_far_less_than_random(tmp_path: Path) -> None:
    chosen = scenario("no-signal")
    exp = scenario_experiment(chosen, ExperimentConfig.load(experiment_path(chosen.experiment)),
                              SOURCE)
    # decide on every bar: the most decisions per second of training, so the CI budget
    # shows whether learning restrains trading (the interval is tested in test_decision.py)
    # and judge the network under the configured rule: a cost multiple chosen on
    # validation would make any Q-function trade rarely, hiding a learner that does not
    # learn the cost of trading (the choice is tested in test_decision_calibration.py)
    exp = dataclasses.replace(
        exp, resources=dataclasses.replace(exp.resources, num_env_runners=1,
                                           num_envs_per_env_runner=8),
        env=dataclasses.replace(exp.env, decision=dataclasses.replace(exp.env.decision,
                                                                      every_bars=1)),
        selection=dataclasses.replace(exp.selection, calibrate_cost_multiples=()))
    lines: list[str] = []
    result = train(exp, tmp_path, time_budget_s=TRAIN_BUDGET_S, eval_every=10**9,
                   checkpoint_every=10**9, final_splits=("test",), progress=lines.append)
    test = next(e for e in result.evaluations if e["split"] == "test")
    row = scenario_metrics(test, exp)["SYNTHUSDT"]
    greedy, random = row["greedy"], row["random"]
    report = f"{result.iterations} iterations, {result.env_steps_sampled} steps: {row}"
    # the yardstick really trades: uniform over 3 actions changes position on about 2 of
    # every 3 decisions, and the rule decides every ``every_bars`` bars
    every = exp.env.decision.every_bars
    assert random["changes_per_1000"] > 0.75 * 1000 * (2 / 3) / every, report
    # played the whole split (the drawdown halt did not stop it) ...
    assert test["datasets"]["SYNTHUSDT"]["greedy"]["halted"] is False, report
    # ... changing position at most a fifth as often as random
    assert greedy["changes_per_1000"] <= random["changes_per_1000"] / 5, report
