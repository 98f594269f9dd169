"""Honest selection in the training driver, on a private local Ray: the published policy
is the best validation one (not the last), and nothing before the selection decision
reads the test split. Instrumented: every split the driver asks ``evaluate`` or
``EnvSpec.markets`` for, every publication and every selection line are recorded in
order."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import raytrade.algos.decision_calibration as calibration_module
import raytrade.algos.train as train_module
from raytrade.algos.decision_calibration import recorded_rule
from raytrade.algos.evaluation import evaluate
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.policy import Policy
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.algos.train import train
from raytrade.envs.env_spec import EnvSpec

from tests.evaluation_match import assert_same_evaluation


def _small(**selection: Any) -> ExperimentConfig:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    return dataclasses.replace(
        exp, data=dataclasses.replace(exp.data, sources=("synthetic:regime:seed=1:n=6000",)),
        network=dataclasses.replace(exp.network, hidden=(32,)),
        dqn=dataclasses.replace(exp.dqn, learning_starts=256, train_batch_size=64,
                                replay_ratio=1.0),
        resources=dataclasses.replace(exp.resources, num_env_runners=1,
                                      num_envs_per_env_runner=4),
        selection=dataclasses.replace(exp.selection, **selection))


Event = tuple[str, str]


def _instrument(monkeypatch: pytest.MonkeyPatch) -> tuple[list[Event], Callable[[str], None]]:
    """Record, in order, every split the driver evaluates or loads, every publication,
    and every selection decision it reports; returns the events and a progress sink."""
    events: list[Event] = []
    markets = EnvSpec.markets

    def recording_evaluate(*args: Any, **kwargs: Any) -> dict[str, Any]:
        split = args[2] if len(args) > 2 else kwargs.get("split", "validation")
        events.append(("evaluate", split))
        return evaluate(*args, **kwargs)

    def recording_markets(self: EnvSpec, split: str) -> Any:
        events.append(("markets", split))
        return markets(self, split)

    publish = PolicyStore.publish

    def recording_publish(self: PolicyStore, *args: Any, **kwargs: Any) -> int:
        events.append(("publish", ""))
        return publish(self, *args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", recording_evaluate)
    monkeypatch.setattr(calibration_module, "evaluate", recording_evaluate)
    monkeypatch.setattr(EnvSpec, "markets", recording_markets)
    monkeypatch.setattr(PolicyStore, "publish", recording_publish)

    def progress(line: str) -> None:
        if line.startswith("selection @") and ("published" in line):
            events.append(("decision", line))

    return events, progress


@pytest.mark.slow
def test_train_selection_reads_the_test_split_only_after_the_last_decision(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events, progress = _instrument(monkeypatch)
    exp = _small(require_beat_flat=False)
    result = train(exp, tmp_path, iterations=3, eval_every=1, checkpoint_every=100,
                   publish_every=2, final_splits=("validation", "test"), progress=progress)
    decisions = [i for i, e in enumerate(events) if e[0] == "decision"]
    assert len(decisions) == 2 == len(result.decisions)  # at iteration 2 and at the end
    tests = [i for i, e in enumerate(events) if e[1] == "test"]
    assert tests and min(tests) > decisions[-1], events
    # the one final test evaluation is of the selected policy, after everything else
    assert [e for e in events if e == ("evaluate", "test")] == [("evaluate", "test")]
    assert all(e[1] != "test" for e in events[:decisions[-1]])
    test = [e for e in result.evaluations if e["split"] == "test"]
    assert len(test) == 1 and test[0]["iteration"] == result.best_iteration
    assert [e["split"] for e in result.evaluations[:-1]] == ["validation"] * 3
    # the selection record: a score per validation evaluation, then each decision
    lines = [json.loads(x) for x in (tmp_path / "metrics" / "selection.jsonl")
             .read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["evaluation", "evaluation", "publication",
                                          "evaluation", "publication"]
    assert lines[2]["version"] == 1 and lines[2]["candidate_version"] is None


@pytest.mark.slow
def test_train_early_stopping_publishes_the_best_evaluation_not_the_last(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events, progress = _instrument(monkeypatch)
    # no later score can beat the first by 10 log units: iteration 1 stays the best, and
    # patience 1 stops the run at the next evaluation; each evaluated policy chooses its
    # cost multiple on validation, and the bundle carries the one chosen
    exp = _small(require_beat_flat=False, patience=1, min_improvement=10.0,
                 calibrate_cost_multiples=(1.0, 4.0))
    # the choice itself is tested in test_decision_calibration.py; here it is pinned to a
    # multiple other than the configured one, so the bundle can only carry it if the
    # driver passed it on
    real = calibration_module.calibrate

    def pinned(*args: Any, **kwargs: Any) -> Any:
        rule, table = real(*args, **kwargs)
        return dataclasses.replace(rule, cost_multiple=4.0), table

    monkeypatch.setattr(calibration_module, "calibrate", pinned)
    result = train(exp, tmp_path, iterations=6, eval_every=1, checkpoint_every=100,
                   progress=progress)
    assert result.stopped_early and result.iterations == 2
    assert result.best_iteration == 1 and result.published == [1]
    best, last = result.evaluations
    assert (best["iteration"], last["iteration"]) == (1, 2)
    assert best["datasets"] != last["datasets"], "training changed the greedy policy"
    assert [row["cost_multiple"] for row in best["calibration"]] == [0.0, 1.0, 4.0]
    store = PolicyStore(tmp_path.as_uri())
    manifest = store.manifest(1)
    assert manifest["evaluation"] == json.loads(json.dumps(best))
    assert manifest["training"]["iteration"] == 1
    chosen = recorded_rule(best, exp)
    assert chosen.cost_multiple == 4.0 != exp.env.decision.cost_multiple
    policy = Policy(store.files(1))
    assert policy.manifest.env.decision == chosen
    # the weights are the best iteration's and the rule the one chosen: the bundle replays
    # the best evaluation
    ruled = dataclasses.replace(exp, env=policy.manifest.env)
    replay = evaluate(policy.q_values, ruled, "validation", seed=exp.seed)
    assert_same_evaluation(replay["datasets"], best["datasets"])
    # every validation evaluation went through the calibration: one per evaluated policy
    assert [e for e in events if e[0] == "evaluate"] == [("evaluate", "validation")] * 2
    assert all(e[1] != "test" for e in events), "no test split unless asked for"
