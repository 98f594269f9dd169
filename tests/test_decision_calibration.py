"""Choosing a policy's decision cost multiple on validation (``algos/decision_calibration.py``),
on real evaluations of a small scenario market through the training env."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
from raytrade.algos.decision_calibration import (
    calibrate,
    calibrated_evaluation,
    candidate_rules,
    recorded_rule,
    with_rule,
)
from raytrade.algos.evaluation import evaluate
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.selection import score
from raytrade.dashboard.cost_tables import decision_calibration
from raytrade.envs.decision import DecisionRule, unit_switch_cost
from raytrade.envs.env_spec import EnvSpec
from raytrade.envs.errors import ConfigError

GRID = (0.5, 1.0, 2.0, 4.0, 8.0)


@functools.cache
def _setup(seed: int = 1) -> tuple[ExperimentConfig, EnvSpec]:
    """The costly scenario's experiment (10 bp fee, modelled slippage, every 3rd bar) on a
    6,000-bar random walk, calibrating over ``GRID``."""
    exp = ExperimentConfig.load(experiment_path("synthetic_regime_costly"))
    exp = dataclasses.replace(
        exp, data=dataclasses.replace(
            exp.data, sources=(f"synthetic:randomwalk:seed={seed}:n=6000:volume=1000",)),
        selection=dataclasses.replace(exp.selection, calibrate_cost_multiples=GRID))
    return exp, exp.fit_env_spec()


def test_candidates_are_the_configured_rule_and_the_grid_by_increasing_multiple() -> None:
    exp, _ = _setup()
    odd = dataclasses.replace(exp, env=dataclasses.replace(
        exp.env, decision=DecisionRule(margin=0.01, cost_multiple=3.0, every_bars=3)))
    rules = candidate_rules(odd)
    assert [r.cost_multiple for r in rules] == [0.5, 1.0, 2.0, 3.0, 4.0, 8.0]
    assert {(r.margin, r.every_bars) for r in rules} == {(0.01, 3)}  # only the multiple


def test_noise_q_values_get_the_multiple_that_trades_least() -> None:
    # Q-values that are pure noise (of the size of a few switch costs) on a random walk:
    # every switch pays costs for nothing, so the higher the multiple the better
    exp, spec = _setup()
    rng = np.random.default_rng(0)
    scale = 3 * unit_switch_cost(exp.env)

    def noise(obs: np.ndarray) -> np.ndarray:
        return rng.normal(0.0, scale, (len(obs), 3))

    rule, table = calibrate(noise, exp, spec)
    assert [row["cost_multiple"] for row in table] == list(GRID)
    trades = [row["trades"] for row in table]
    assert trades == sorted(trades, reverse=True) and trades[0] > 10 * max(trades[-1], 1)
    scores = [row["score"] for row in table]
    assert scores[0] < -0.05  # churning on noise loses
    best = max(scores)
    # the choice is the best score, the larger multiple on a tie
    assert rule.cost_multiple == max(m for m, s in zip(GRID, scores, strict=True)
                                     if s >= best - 1e-12)
    assert rule.cost_multiple >= 4.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_confident_long_q_is_kept_trading_only_where_holding_beat_flat(seed: int) -> None:
    # Q says "long" by 3 switch costs of one unit: at multiples up to 2 the rule goes long
    # from flat at the first decision and holds (buy-and-hold); at 4 and 8 it never trades
    # (flat). The choice must follow what validation says about holding: the largest
    # multiple that holds when holding beat flat there, else the largest overall
    exp, spec = _setup(seed)
    edge = 3 * unit_switch_cost(exp.env)

    def long(obs: np.ndarray) -> np.ndarray:
        return np.tile([0.0, 0.0, edge], (len(obs), 1))

    rule, table = calibrate(long, exp, spec)
    record = evaluate(long, exp, "validation", spec=spec)
    held = {"split": "validation", "datasets": {
        k: {"greedy": per["buy_and_hold"], "flat": per["flat"]}
        for k, per in record["datasets"].items()}}
    hold = score(held, exp.selection.metric, exp.env.initial_equity)
    by_multiple = {row["cost_multiple"]: row for row in table}
    for m in (0.5, 1.0, 2.0):
        assert by_multiple[m]["trades"] == 1
        assert by_multiple[m]["score"] == pytest.approx(hold, abs=1e-12)
    for m in (4.0, 8.0):
        assert by_multiple[m]["trades"] == 0 and by_multiple[m]["score"] == 0.0
    assert rule.cost_multiple == (2.0 if hold > 1e-12 else 8.0)


def test_calibrated_evaluation_records_the_rule_and_the_bundle_config_carries_it() -> None:
    exp, spec = _setup()
    scale = 3 * unit_switch_cost(exp.env)
    # noise that is a fixed function of the observation, so every play of the same bars
    # sees the same Q-values (the calibration's and the evaluation's)
    rng = np.random.default_rng(0)
    weights: list[np.ndarray] = []

    def noise(obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float64)
        if not weights:
            weights.append(rng.normal(size=(x.shape[-1], 3)))
        return scale * np.sin(50.0 * x @ weights[0])

    record, exp_r, spec_r = calibrated_evaluation(noise, exp, spec, seed=0)
    chosen = recorded_rule(record, exp)
    assert record["decision"]["cost_multiple"] == chosen.cost_multiple >= 4.0
    # the full evaluation under the chosen rule scores what the calibration table said
    (row,) = [r for r in record["calibration"] if r["cost_multiple"] == chosen.cost_multiple]
    assert score(record, exp.selection.metric, exp.env.initial_equity) == \
        pytest.approx(row["score"], abs=1e-12)
    assert [row["cost_multiple"] for row in record["calibration"]] == list(GRID)
    assert exp_r.env.decision == spec_r.env.decision == chosen
    assert exp_r.env == spec_r.env and exp_r.data == exp.data
    assert spec_r.normalizer is spec.normalizer  # the same fit, not refitted
    # the dashboard's Evaluation page shows the table and marks the one chosen
    shown = decision_calibration(record)
    assert shown["cost multiple"].tolist() == list(GRID)
    assert shown["trades"].tolist() == [row["trades"] for row in record["calibration"]]
    assert shown.loc[shown["chosen"], "cost multiple"].tolist() == [chosen.cost_multiple]
    # without a grid: the configured rule, no table
    plain = dataclasses.replace(exp, selection=dataclasses.replace(
        exp.selection, calibrate_cost_multiples=()))
    record, exp_p, _ = calibrated_evaluation(lambda obs: np.zeros((len(obs), 3)), plain,
                                             spec, seed=0)
    assert "calibration" not in record and exp_p.env.decision == exp.env.decision
    assert decision_calibration(record).empty
    assert recorded_rule({"split": "validation"}, exp) == exp.env.decision


def test_calibration_reads_validation_only_and_checks_its_config() -> None:
    exp, spec = _setup()
    with pytest.raises(ConfigError, match="validation only"):
        calibrate(lambda obs: np.zeros((len(obs), 3)), exp, spec, split="test")
    other = dataclasses.replace(exp, env=dataclasses.replace(exp.env, window=8))
    with pytest.raises(ConfigError, match="not made from this experiment"):
        with_rule(other, spec, DecisionRule(cost_multiple=2.0))
    for bad in ((-1.0,), (math.nan,), (True,)):
        with pytest.raises(ConfigError, match="calibrate_cost_multiples"):
            dataclasses.replace(exp, selection=dataclasses.replace(
                exp.selection, calibrate_cost_multiples=bad)).check()
