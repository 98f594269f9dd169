"""Training on a private local Ray: learning on the planted market, metrics, resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from raytrade.algos.dqn_config import build_dqn_config
from raytrade.algos.evaluation import evaluate, play
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.policy import Policy
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.algos.train import TrainResult, ray_session, train
from raytrade.envs.errors import ConfigError
from raytrade.scripts.s3_local import MotoServer

from tests.evaluation_match import assert_same_evaluation


@pytest.mark.slow
def test_dqn_learns_the_planted_market_and_resumes(tmp_path: Path) -> None:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    exp = dataclasses.replace(exp, resources=dataclasses.replace(
        exp.resources, num_env_runners=1, num_envs_per_env_runner=8))
    lines: list[str] = []
    first = train(exp, tmp_path, iterations=4, eval_every=100, checkpoint_every=2,
                  progress=lines.append)
    assert first.iterations == 4 and (tmp_path / "checkpoints" / "iter_000004").is_dir()
    assert (tmp_path / "checkpoints" / "latest").read_text() == "iter_000004"
    _assert_restore_keeps_the_greedy_actions(exp, tmp_path, first)
    resumed = train(exp, tmp_path, iterations=4, resume=True, eval_every=100,
                    checkpoint_every=100, final_splits=("validation", "test"),
                    progress=lines.append)
    # counters continue instead of restarting from zero
    assert resumed.iterations == 8
    assert resumed.env_steps_sampled > first.env_steps_sampled
    records = [json.loads(x) for x in (tmp_path / "metrics" / "train.jsonl").read_text()
               .splitlines()]
    assert [r["iteration"] for r in records] == list(range(1, 9))
    assert all(r["epsilon"] == {"0": pytest.approx(0.4)} for r in records)
    assert any(line.startswith("resumed from") for line in lines)
    # learning is real: on the held-out test split the greedy policy beats flat and random
    test = next(e for e in resumed.evaluations if e["split"] == "test")
    result = test["datasets"]["SYNTHUSDT"]
    greedy = result["greedy"]["final_equity"]
    assert greedy > 1.2 * result["flat"]["final_equity"]
    assert greedy > 1.2 * result["random"]["final_equity"]
    assert result["greedy"]["sharpe"] > 1.0
    # the published bundle alone (torch, no Ray) replays the validation evaluation it
    # carries: the resumed run's (iteration 8) when it beat the first run's candidate on
    # validation, else the first run's stays (four more iterations usually, not always,
    # improve it)
    store = PolicyStore(tmp_path.as_uri())
    improved = resumed.decisions[-1].publish
    assert first.published == [1] and resumed.published == ([2] if improved else [])
    pointer = store.channel("candidate")
    version = 2 if improved else 1
    assert pointer is not None and pointer.version == version
    policy = Policy(store.files(version), version)
    assert policy.manifest.training.iteration == (8 if improved else 4)
    replay = evaluate(policy.q_values, exp, "validation", seed=exp.seed)
    final = [e for e in (resumed if improved else first).evaluations
             if e["split"] == "validation"][-1]
    assert_same_evaluation(replay["datasets"], final["datasets"])
    # the equity curves of each evaluation are saved for the dashboard; the last point
    # is the evaluation's final equity
    curves = json.loads((tmp_path / "metrics" / "eval_curves" / "000008_test.json")
                        .read_text())
    assert curves["iteration"] == 8 and curves["split"] == "test"
    for name, per in result.items():
        if isinstance(per, dict) and "final_equity" in per:
            assert curves["datasets"]["SYNTHUSDT"][name][-1] == pytest.approx(
                per["final_equity"], abs=1e-4)


def _assert_restore_keeps_the_greedy_actions(exp: ExperimentConfig, run: Path,
                                             first: TrainResult) -> None:
    """The policy published at the checkpointed iteration (the learner's greedy policy
    just before the checkpoint) and a fresh algorithm restored from that checkpoint, the
    way ``train(resume=True)`` restores it, take the same greedy actions on real
    validation observations and on the canned probes; Q-values agree to float32
    rounding (the bundle's network is ours, the restored one RLlib's)."""
    spec = exp.fit_env_spec()
    seen: list[np.ndarray] = []
    rng = np.random.default_rng(0)

    def record(obs: np.ndarray, _: int, __: float) -> int:
        seen.append(obs.copy())
        return int(rng.integers(len(spec.env.positions)))

    config = dataclasses.replace(spec.env, random_start=False, max_episode_steps=None)
    play(spec.markets("validation"), config, 0, record)
    before = Policy(PolicyStore(run.as_uri()).files(first.published[-1]))
    obs = np.concatenate([np.asarray(seen[:2000]), before.canned_observations()])

    def q_values(algo: Any) -> np.ndarray:
        with torch.no_grad():
            out = algo.get_module().compute_q_values({"obs": torch.as_tensor(obs)})
        return np.asarray(out["qf_preds"].numpy())

    assert first.checkpoint is not None
    with ray_session(None):
        algo = build_dqn_config(exp, spec).build_algo()
        try:
            untrained = q_values(algo)
            algo.restore_from_path(str(first.checkpoint))
            restored = q_values(algo)
        finally:
            algo.stop()
    expected = before.q_values(obs)
    assert not np.allclose(untrained, expected, atol=1e-3), "training changed the network"
    np.testing.assert_array_equal(restored.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(restored, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_cli_train_with_a_relative_store_checkpoints_and_exports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from raytrade.scripts.cli import main

    monkeypatch.chdir(tmp_path)  # the default store runs/<name> is relative
    # one iteration rarely beats flat: publish it anyway, to check the export
    config = tmp_path / "exp.toml"
    config.write_text(experiment_path("synthetic_regime").read_text()
                      + "\n[selection]\nrequire_beat_flat = false\n")
    assert main(["train", "--config", str(config), "--iterations", "1",
                 "--final-splits", "validation,test"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["iterations"] == 1 and out["best_iteration"] == 1
    assert out["final"] == {"validation": 1, "test": 1}  # the test split on request
    assert (tmp_path / "runs" / "synthetic_regime" / "checkpoints" / "iter_000001").is_dir()
    assert out["published"] == ["v000001"]
    assert "candidate channel is empty" in out["last_decision"]
    assert (tmp_path / "runs" / "synthetic_regime" / "policies" / "v000001"
            / "manifest.json").is_file()


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(exp, tmp_path, iterations=1, resume=True)
    with pytest.raises(ConfigError, match="iterations, a time budget or a stop event"):
        train(exp, tmp_path)


@pytest.mark.slow
def test_resume_continues_the_epsilon_decay(tmp_path: Path) -> None:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    decay = 40_000
    exp = dataclasses.replace(
        exp,
        data=dataclasses.replace(exp.data, sources=("synthetic:regime:seed=1:n=8000",)),
        exploration=dataclasses.replace(exp.exploration, decay_steps=decay),
        dqn=dataclasses.replace(exp.dqn, learning_starts=256, train_batch_size=64,
                                replay_ratio=0.5),
        resources=dataclasses.replace(exp.resources, num_env_runners=1,
                                      num_envs_per_env_runner=8))

    def expected(steps: float) -> float:  # runner 0 of 1 decays from 1 to 0.4
        return 1.0 - 0.6 * min(steps / decay, 1.0)

    first = train(exp, tmp_path, iterations=3, eval_every=100, checkpoint_every=100,
                  final_splits=())
    resumed = train(exp, tmp_path, iterations=2, resume=True, eval_every=100,
                    checkpoint_every=100, final_splits=())
    records = [json.loads(x) for x in (tmp_path / "metrics" / "train.jsonl").read_text()
               .splitlines()]
    assert [r["iteration"] for r in records] == [1, 2, 3, 4, 5]
    eps = [r["epsilon"]["0"] for r in records]
    assert eps == sorted(eps, reverse=True) and eps[0] < 1.0 and eps[-1] > 0.4
    # the resumed run decays from the restored global step count, not from 1.0 again;
    # a runner reports epsilon at the end of its sample, up to one iteration of steps late
    for r, e in zip(records, eps, strict=True):
        assert expected(r["env_steps_sampled"]) <= e + 1e-6
        assert e <= expected(r["env_steps_sampled"] - 2_000) + 1e-6
    assert resumed.env_steps_sampled > first.env_steps_sampled > 2_000


@pytest.mark.slow
def test_training_on_an_s3_store_publishes_mirrors_and_resumes_elsewhere(
        tmp_path: Path, moto_server: MotoServer) -> None:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    exp = dataclasses.replace(exp, resources=dataclasses.replace(
        exp.resources, num_env_runners=1, num_envs_per_env_runner=4),
        selection=dataclasses.replace(exp.selection, require_beat_flat=False))
    uri = f"s3://{moto_server.new_bucket()}/runs/synth"
    store = PolicyStore(uri, endpoint_url=moto_server.endpoint_url)
    first = train(exp, tmp_path / "machine_a", iterations=2, eval_every=100,
                  checkpoint_every=2, store=store, publish_every=1, progress=lambda _: None)
    # iteration 1 is published (nothing on candidate); iteration 2 only if it is better
    assert first.published[0] == 1 and store.versions() == first.published
    assert [d.publish for d in first.decisions] == [True, len(first.published) == 2]
    assert store.channel("candidate").version == first.published[-1]  # type: ignore[union-attr]
    assert store.history("candidate")[0].reason == \
        "training iteration 1: best on validation"
    decisions = [json.loads(x) for x in store.blobs.get("metrics/selection.jsonl").data
                 .splitlines() if json.loads(x)["kind"] == "publication"]
    assert [d["version"] for d in decisions] == \
        [d.version for d in first.decisions]  # mirrored to S3
    assert store.blobs.get("checkpoints/latest").data == b"iter_000002"
    assert len(store.blobs.get("metrics/train.jsonl").data.splitlines()) == 2
    # another machine, empty work folder: resume pulls the checkpoint from S3
    again = train(exp, tmp_path / "machine_b", iterations=1, resume=True, eval_every=100,
                  checkpoint_every=100, store=store, progress=lambda _: None)
    assert again.iterations == 3 and again.published == (
        [store.versions()[-1]] if again.decisions[-1].publish else [])
    lines = store.blobs.get("metrics/train.jsonl").data.splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [1, 2, 3]
    # evaluation curves are mirrored too (the last iteration of each call evaluates)
    assert store.blobs.exists("metrics/eval_curves/000003_validation.json")


def test_throughput_comes_from_the_lifetime_counters_when_rllib_reports_none() -> None:
    from raytrade.algos.train import fill_throughput

    first = {"time_s": 10.0, "env_steps_sampled": 1000.0, "env_steps_trained": 4000.0,
             "sampled_per_s": None, "trained_per_s": None}
    second = {"time_s": 12.0, "env_steps_sampled": 2024.0, "env_steps_trained": 8096.0,
              "sampled_per_s": None, "trained_per_s": 999.0}
    fill_throughput(first, None)
    assert first["sampled_per_s"] is None  # nothing to difference against
    fill_throughput(second, first)
    assert second["sampled_per_s"] == 512.0
    assert second["trained_per_s"] == 999.0  # RLlib's own figure is kept
