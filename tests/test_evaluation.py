"""Greedy evaluation and its baselines, including the oracle of the planted market."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from raytrade.algos.evaluation import evaluate, oracle_fraction, planted_actions
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path


def test_oracle_baseline_on_the_planted_market() -> None:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    exp = dataclasses.replace(exp, data=dataclasses.replace(
        exp.data, sources=("synthetic:regime:seed=3:n=6000",)))
    # a "policy" that always wants the long position (Q highest for the last action)
    result = evaluate(lambda obs: np.tile([0.0, 0.0, 1.0], (len(obs), 1)), exp, "test")
    per = result["datasets"]["SYNTHUSDT"]
    assert set(per) >= {"greedy", "flat", "buy_and_hold", "random", "oracle",
                        "bayes_filter", "oracle_fraction", "filter_fraction"}
    # always-long is buy-and-hold, through the same env, costs and accounting
    assert per["greedy"]["final_equity"] == pytest.approx(per["buy_and_hold"]["final_equity"])
    # knowing the hidden regime is worth a lot more than any baseline, net of costs
    oracle = per["oracle"]["final_equity"]
    assert oracle > 1.5 * max(per[k]["final_equity"] for k in ("flat", "buy_and_hold",
                                                                "random"))
    # the best causal policy gets most of it, but not all: the oracle sees the hidden state
    causal = per["bayes_filter"]["final_equity"]
    assert 1.3 * max(per[k]["final_equity"] for k in ("flat", "buy_and_hold", "random")) \
        < causal < oracle
    assert per["filter_fraction"] == pytest.approx(
        np.log(per["greedy"]["final_equity"] / 10_000) / np.log(causal / 10_000))
    assert per["oracle_fraction"] == pytest.approx(
        np.log(per["greedy"]["final_equity"] / 10_000) / np.log(oracle / 10_000))


def test_planted_actions_only_for_planted_markets_and_fraction_edges() -> None:
    exp = ExperimentConfig.load(experiment_path("eth_btc_5m"))
    assert planted_actions(exp) is None
    synth = ExperimentConfig.load(experiment_path("synthetic_regime"))
    planted = planted_actions(synth)
    assert planted is not None and set(planted) == {"oracle", "bayes_filter"}
    for (actions,) in planted.values():
        assert set(np.unique(actions)) <= {0, 2}  # short or long
    assert oracle_fraction(10_000 * 1.1, 10_000 * 1.21, 10_000) == pytest.approx(0.5)
    assert oracle_fraction(9_000, 12_000, 10_000) < 0
    assert oracle_fraction(11_000, 9_000, 10_000) is None


def test_evaluation_reports_turnover_from_the_traded_notional() -> None:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    exp = dataclasses.replace(exp, data=dataclasses.replace(
        exp.data, sources=("synthetic:regime:seed=3:n=6000",)))
    per = evaluate(lambda obs: np.tile([0.0, 0.0, 1.0], (len(obs), 1)), exp,
                   "test")["datasets"]["SYNTHUSDT"]
    assert per["flat"]["turnover_per_year"] == 0.0 and per["flat"]["trades"] == 0
    # random trades constantly, buy-and-hold once: turnover says so
    assert per["random"]["turnover_per_year"] > 50 * per["buy_and_hold"]["turnover_per_year"] > 0
