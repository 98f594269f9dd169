"""Choose a policy's decision margin on validation: how much Q advantage pays a trade.

The decision rule (``envs/decision.py``) changes position only when the Q advantage of the
new action over the held one exceeds ``margin + cost_multiple * switch_cost``. Which
multiple is right depends on how noisy the trained Q-values are, which the config cannot
know in advance: a network that learned a real edge needs a low one (every missed switch
is lost growth), one fitted to noise needs a high one (every switch pays fees and
slippage for nothing). So, with ``[selection] calibrate_cost_multiples``, every policy the
training driver evaluates plays the validation split once per multiple (greedy only, the
same env, costs and accounting as the evaluation) and keeps the multiple with the best
``[selection] metric`` score (``selection.score``, the same one early stopping and
publication use); a smaller multiple must beat a larger one by more than ``[selection]
min_improvement`` (ties go to the larger multiple, which usually trades less). The policy is
then scored, kept and published with that rule in its bundle, so the backtest, the paper
trader and the executor apply what validation chose.

Only the multiple is searched: ``margin`` and ``every_bars`` stay as configured
(``every_bars`` changes what one training step is, so it belongs to the search in
``raytrade tune``, not to a choice after training). Only the validation split is read.
The choice is a selection among a handful of rules on the split that also selects the
checkpoint, so the validation score of the kept policy is optimistic; the test split,
read once after selection, is not.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from raytrade.algos.evaluation import (
    QFunction,
    decision_step_ms,
    evaluate,
    flat_action,
    full_split_config,
    play,
    rule_policy,
)
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.run_metrics import run_performance
from raytrade.algos.selection import score
from raytrade.envs.decision import DecisionRule, rule_summary
from raytrade.envs.env_spec import EnvSpec
from raytrade.envs.errors import ConfigError

TIE = 1e-12
"""Scores closer than this (or ``[selection] min_improvement`` when larger) are a tie:
the larger multiple wins."""


def with_rule(exp: ExperimentConfig, spec: EnvSpec, rule: DecisionRule
              ) -> tuple[ExperimentConfig, EnvSpec]:
    """``exp`` and ``spec`` with ``env.decision`` replaced by ``rule`` (same data and
    normalizer: the spec's prepared markets are shared, not rebuilt)."""
    if rule == exp.env.decision and rule == spec.env.decision:
        return exp, spec
    env = dataclasses.replace(exp.env, decision=rule)
    if spec.env != exp.env:
        raise ConfigError("the env spec was not made from this experiment")
    return dataclasses.replace(exp, env=env), dataclasses.replace(spec, env=env)


def candidate_rules(exp: ExperimentConfig) -> list[DecisionRule]:
    """The rules to try: the configured one and one per ``calibrate_cost_multiples`` value,
    by increasing multiple, without repeats."""
    rule = exp.env.decision
    multiples = sorted({float(rule.cost_multiple),
                        *(float(m) for m in exp.selection.calibrate_cost_multiples)})
    return [dataclasses.replace(rule, cost_multiple=m) for m in multiples]


def calibrate(q_values: QFunction, exp: ExperimentConfig, spec: EnvSpec,
              split: str = "validation") -> tuple[DecisionRule, list[dict[str, Any]]]:
    """The rule (module docstring) for ``q_values`` and the table it was chosen from:
    ``[{"cost_multiple", "score", "trades"}, ...]`` by increasing multiple, ``score`` in
    the units of ``[selection] metric`` (None when not finite), ``trades`` summed over the
    split's datasets. Refuses any split but validation."""
    if split != "validation":
        raise ConfigError(f"the decision margin is chosen on validation only, not {split!r}")
    rules = candidate_rules(exp)
    tolerance = max(TIE, exp.selection.min_improvement)
    markets = spec.markets(split)
    base = full_split_config(spec.env)
    flat = flat_action(base)
    step_ms = decision_step_ms(markets, base)
    flats = {m.name: run_performance(play(markets, base, d, lambda o, b, p: flat), step_ms,
                                     base.calendar)
             for d, m in enumerate(markets)}
    table: list[dict[str, Any]] = []
    best: tuple[float, DecisionRule] | None = None
    for rule in rules:
        config = dataclasses.replace(base, decision=rule)
        policy = rule_policy(q_values, config)
        datasets: dict[str, Any] = {}
        trades = 0
        for d, market in enumerate(markets):
            run = play(markets, config, d, policy)
            trades += int(run["trades"])
            datasets[market.name] = {"greedy": run_performance(run, step_ms, base.calendar),
                                     "flat": flats[market.name]}
        value = score({"split": split, "datasets": datasets}, exp.selection.metric,
                      exp.env.initial_equity)
        finite = math.isfinite(value)
        if math.isnan(value):  # NaN ranks last, as in early stopping
            value = -math.inf
        table.append({"cost_multiple": rule.cost_multiple,
                      "score": value if finite else None, "trades": trades})
        if best is None or value >= best[0] - tolerance:  # increasing multiples: ties go up
            best = (value, rule)
    assert best is not None
    return best[1], table


def calibrated_evaluation(q_values: QFunction, exp: ExperimentConfig, spec: EnvSpec, *,
                          seed: int, curves: dict[str, Any] | None = None
                          ) -> tuple[dict[str, Any], ExperimentConfig, EnvSpec]:
    """The validation evaluation (``evaluation.evaluate``) of ``q_values`` under the rule
    :func:`calibrate` chooses (the configured rule when ``calibrate_cost_multiples`` is
    empty), with ``exp`` and ``spec`` carrying that rule. The record gets ``"decision"``
    (the rule, ``rule_summary``) and, when calibrated, ``"calibration"`` (the table)."""
    table: list[dict[str, Any]] | None = None
    rule = exp.env.decision
    if exp.selection.calibrate_cost_multiples:
        rule, table = calibrate(q_values, exp, spec)
    exp_r, spec_r = with_rule(exp, spec, rule)
    evaluation = evaluate(q_values, exp_r, "validation", seed=seed, curves=curves,
                          spec=spec_r)
    evaluation["decision"] = rule_summary(rule)
    if table is not None:
        evaluation["calibration"] = table
    return evaluation, exp_r, spec_r


def recorded_rule(evaluation: dict[str, Any], exp: ExperimentConfig) -> DecisionRule:
    """The rule a validation record was evaluated under (``"decision"``); the configured
    rule for a record written before calibration existed."""
    recorded = evaluation.get("decision")
    if recorded is None:
        return exp.env.decision
    return DecisionRule(margin=float(recorded["margin"]),
                        cost_multiple=float(recorded["cost_multiple"]),
                        every_bars=int(recorded["every_bars"]))
