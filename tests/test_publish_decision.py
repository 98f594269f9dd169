"""Publishing to ``candidate`` only on validation improvement (``algos/publish_decision.py``),
on a real file store with real bundles."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.export import random_bundle
from raytrade.algos.manifest import MANIFEST, DataInfo
from raytrade.algos.publish_decision import decide, deployable, describe_excess
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.envs.env_spec import BarRange, DatasetRange
from raytrade.envs.typed_json import encode

EXP = ExperimentConfig.load(experiment_path("synthetic_regime"))
EXP = dataclasses.replace(EXP, network=dataclasses.replace(EXP.network, hidden=(16,)))
DAY = 86_400_000


def _data(validation_start: int = 10 * DAY, train: float = 0.7) -> DataInfo:
    return DataInfo(sources=("synthetic:regime:seed=1",), reference=None, train=train,
                    validation=0.15, datasets=(DatasetRange(
                        name="SYNTHUSDT", train=BarRange(0, validation_start - 1, 1000),
                        validation=BarRange(validation_start, validation_start + DAY, 289)),))


def _evaluation(greedy: float, flat: float = 10_000.0) -> dict[str, Any]:
    return {"split": "validation", "iteration": 1, "datasets": {"SYNTHUSDT": {
        "greedy": {"final_equity": greedy, "sharpe": 1.0},
        "flat": {"final_equity": flat, "sharpe": None}}}}


def _publish(store: PolicyStore, evaluation: dict[str, Any] | None, data: DataInfo) -> int:
    files = random_bundle(EXP, seed=1)
    manifest = json.loads(files[MANIFEST])
    manifest["evaluation"] = evaluation
    manifest["data"] = encode(data)
    return store.publish({**files, MANIFEST: json.dumps(manifest).encode()})


def _decide(store: PolicyStore, greedy: float, *, data: DataInfo | None = None,
            require_beat_flat: bool = True, min_improvement: float = 0.0,
            published: dict[int, int] | None = None) -> Any:
    return decide(store, iteration=20, metric="excess_log_growth",
                  min_improvement=min_improvement, require_beat_flat=require_beat_flat,
                  best_iteration=20, best_evaluation=_evaluation(greedy),
                  initial_equity=10_000.0, data=data or _data(), published=published or {})


def test_publish_decision_empty_channel_publishes_a_policy_that_beats_flat(
        store_uri: str) -> None:
    decision = _decide(PolicyStore(store_uri), 10_100.0)
    assert decision.publish and "candidate channel is empty" in decision.reason
    assert decision.best_score == math.log(1.01) and decision.beats_flat is True


def test_publish_decision_losing_to_flat_is_not_published_unless_allowed(
        store_uri: str) -> None:
    store = PolicyStore(store_uri)
    decision = _decide(store, 9_900.0)
    assert not decision.publish and "does not beat flat" in decision.reason
    assert "SYNTHUSDT -1.01 %" in decision.reason
    assert _decide(store, 9_900.0, require_beat_flat=False).publish


def test_publish_decision_compares_with_the_candidate_on_the_same_validation_bars(
        store_uri: str) -> None:
    store = PolicyStore(store_uri)
    current = _publish(store, _evaluation(10_200.0), _data())
    worse = _decide(store, 10_100.0)
    assert not worse.publish and worse.candidate_version == current
    assert worse.candidate_score == math.log(1.02) and worse.best_score == math.log(1.01)
    assert "does not beat the candidate" in worse.reason
    better = _decide(store, 10_300.0)
    assert better.publish and better.candidate_score == math.log(1.02)
    # a gain within min_improvement is not better
    assert not _decide(store, 10_250.0, min_improvement=0.01).publish
    # other training data (another train fraction) but the same validation bars: compared
    other = _decide(store, 10_100.0, data=_data(train=0.6))
    assert not other.publish and "trained on different data/splits but validated on the " \
        "same bars" in other.reason
    # the best policy is the candidate already: nothing to do
    same = _decide(store, 10_300.0, published={20: current})
    assert not same.publish and "already the candidate" in same.reason


def test_publish_decision_other_validation_bars_or_no_evaluation_replace_the_candidate(
        store_uri: str) -> None:
    store = PolicyStore(store_uri)
    _publish(store, _evaluation(20_000.0), _data(validation_start=20 * DAY))
    decision = _decide(store, 10_100.0)
    assert decision.publish and "validated on other bars" in decision.reason
    assert decision.candidate_score is None
    _publish(store, None, _data())
    assert "carries no validation evaluation" in _decide(store, 10_100.0).reason


def test_publish_decision_record_is_strict_json(store_uri: str) -> None:
    store = PolicyStore(store_uri)
    _publish(store, _evaluation(0.0), _data())  # ruined: -inf
    decision = _decide(store, 10_100.0)
    assert decision.publish and decision.candidate_score == -math.inf
    record = decision.to_record()
    assert record["kind"] == "publication" and record["candidate_score"] is None
    json.dumps(record, allow_nan=False)
    assert describe_excess(_evaluation(10_100.0), 10_000.0) == "SYNTHUSDT +1.00 %"


def test_publish_decision_needs_evidence_of_an_edge_when_asked(store_uri: str) -> None:
    store = PolicyStore(store_uri)

    def decide_t(t: float | None, min_t: float, greedy: float = 10_100.0) -> Any:
        evaluation = _evaluation(greedy)
        evaluation["datasets"]["SYNTHUSDT"]["greedy"]["t_stat"] = t
        return decide(store, iteration=20, metric="excess_log_growth", min_improvement=0.0,
                      require_beat_flat=True, best_iteration=20, best_evaluation=evaluation,
                      initial_equity=10_000.0, data=_data(), published={},
                      min_evidence_t=min_t)

    weak = decide_t(1.2, 2.0)
    assert not weak.publish and weak.beats_flat is True
    assert "but not by 2 standard errors (t SYNTHUSDT 1.20)" in weak.reason
    assert "[selection] min_evidence_t" in weak.reason
    assert not decide_t(None, 2.0).publish  # no variance, no evidence
    assert decide_t(2.5, 2.0).publish
    assert decide_t(1.2, 0.0).publish  # off
    # losing to flat is refused for that reason first, whatever its t
    assert "does not beat flat" in decide_t(3.0, 2.0, greedy=9_900.0).reason


def test_deployable_applies_the_experiments_evidence_rules() -> None:
    evaluation = _evaluation(10_100.0)
    evaluation["datasets"]["SYNTHUSDT"]["greedy"]["t_stat"] = 1.5
    sel = EXP.selection
    assert deployable(evaluation, dataclasses.replace(sel, min_evidence_t=0.0),
                      10_000.0) == (True, "beats flat on validation (excess log growth "
                                          "SYNTHUSDT +1.00 %)")
    ok, why = deployable(evaluation, dataclasses.replace(sel, min_evidence_t=2.0), 10_000.0)
    assert not ok and "not by 2 standard errors (t SYNTHUSDT 1.50)" in why
    ok, why = deployable(_evaluation(9_900.0), sel, 10_000.0)
    assert not ok and "does not beat flat" in why and "-1.01 %" in why
    assert deployable(_evaluation(9_900.0), dataclasses.replace(
        sel, require_beat_flat=False), 10_000.0)[0]
    assert deployable(None, sel, 10_000.0) == (False, "no validation evaluation")
