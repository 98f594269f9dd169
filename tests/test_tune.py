"""``raytrade tune``: the ``[tune]`` table's search space (paths checked against the
config dataclasses, distributions against their rules), trial overrides applied to nested
frozen dataclasses, and a real search on a private local Ray over the planted-signal
market: at least four trials, the validation-best one published with its trial in the
manifest, the test split read once, for the winner, after selection."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from raytrade.algos.decision_calibration import recorded_rule
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.manifest import BundleManifest
from raytrade.algos.search_space import apply_overrides, parse_space
from raytrade.algos.storage import keys
from raytrade.algos.storage.blobstore import LocalBlobStore
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.algos.tune import (
    TRIAL_FILE,
    ClipToSpace,
    choose_winner,
    pull_tree,
    push_tree,
    run_tune,
    trial_experiment,
)
from raytrade.envs.errors import ConfigError
from raytrade.scripts.cli import main

from tests import tune_probe
from tests.port_holders import process_gone

REPO = Path(__file__).resolve().parent.parent


def _document(space: dict[str, Any], **tune: Any) -> dict[str, Any]:
    data = tomllib.loads(experiment_path("synthetic_regime").read_text())
    data["tune"] = {"space": space, **tune}
    return data


def test_tune_space_every_distribution_parses_sorted_by_path() -> None:
    exp = ExperimentConfig.from_dict(_document({
        "dqn.lr": {"loguniform": [1e-4, 1e-3]},
        "env.reward": {"choice": ["log_return", "turnover_penalty"]},
        "dqn.n_step": {"choice": [1, 3, 5]},
        "network.hidden": {"choice": [[16, 16], [32]]},
        "env.costs.fee_bps": {"uniform": [0, 2]},
        "replay.capacity": {"randint": [1000, 5000]}}))
    dims = parse_space(exp.tune.space, ExperimentConfig)
    assert [d.path for d in dims] == sorted(exp.tune.space)
    assert {d.path: d.distribution for d in dims}["env.costs.fee_bps"] == "uniform"


@pytest.mark.parametrize(("space", "message"), [
    ({"dqn.lrx": {"choice": [1e-3]}}, "'dqn.lrx': dqn has no field 'lrx'"),
    ({"foo.bar": {"choice": [1]}}, "'foo.bar': the experiment has no field 'foo'"),
    ({"dqn.lr.x": {"choice": [1]}}, "'dqn.lr.x': dqn.lr is a value"),
    ({"env.costs": {"choice": [1]}}, "'env.costs': names the whole section"),
    ({"dqn.lr": {"normal": [0, 1]}}, "'dqn.lr': unknown distribution 'normal'"),
    ({"dqn.lr": {"uniform": [1e-3, 1e-4]}}, "'dqn.lr': uniform takes [low, high]"),
    ({"dqn.lr": {"loguniform": [0, 1e-3]}}, "'dqn.lr': loguniform needs 0 < low"),
    ({"dqn.n_step": {"uniform": [1, 5]}}, "'dqn.n_step': uniform draws floats"),
    ({"dqn.n_step": {"randint": [1.5, 5]}}, "'dqn.n_step': randint takes integer bounds"),
    ({"dqn.n_step": {"choice": [0, 3]}}, "'dqn.n_step' = 0: dqn.n_step"),
    ({"env.reward": {"choice": ["log_return", "nope"]}}, "'env.reward' = 'nope'"),
    ({"dqn.lr": {"choice": []}}, "'dqn.lr': choice takes a non-empty list"),
    ({"dqn.lr": [1e-3]}, "'dqn.lr': write one distribution"),
    ({"tune.num_samples": {"choice": [1, 2]}}, "cannot be searched"),
])
def test_tune_space_bad_entry_is_refused_naming_the_path(space: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_dict(_document(space))
    assert message in str(err.value)


def test_tune_settings_pbt_refuses_a_field_that_reshapes_the_network() -> None:
    with pytest.raises(ConfigError, match=re.escape("'network.hidden': population-based")):
        ExperimentConfig.from_dict(_document({"network.hidden": {"choice": [[8], [16]]}},
                                             scheduler="pbt", eval_every=5,
                                             perturbation_interval=10))
    ExperimentConfig.from_dict(_document({"dqn.lr": {"loguniform": [1e-4, 1e-3]}},
                                         scheduler="pbt", eval_every=5,
                                         perturbation_interval=10))


def test_apply_overrides_replaces_nested_fields_and_coerces_types() -> None:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    out = apply_overrides(exp, {"dqn.lr": 1, "network.hidden": [8, 4],
                                "env.costs.fee_bps": 7, "env.risk.max_drawdown": 0.3,
                                "dqn.n_step": 5.0})
    assert out.dqn.lr == 1.0 and isinstance(out.dqn.lr, float)
    assert out.network.hidden == (8, 4) and out.dqn.n_step == 5
    assert out.env.costs.fee_bps == 7.0 and out.env.risk.max_drawdown == 0.3
    assert out.env.costs.half_spread_bps == exp.env.costs.half_spread_bps
    assert exp.dqn.lr == 5e-4  # the base is unchanged (frozen)
    with pytest.raises(ConfigError, match=re.escape("'dqn.n_step': expected an integer, got 2.5")):
        apply_overrides(exp, {"dqn.n_step": 2.5})
    with pytest.raises(ConfigError, match=re.escape("'env.reward' = 'x'")):
        apply_overrides(exp, {"env.reward": "x"})
    with pytest.raises(ConfigError, match=re.escape("'dqn.nope': dqn has no field")):
        apply_overrides(exp, {"dqn.nope": 1})


def test_trial_experiment_applies_tune_env_runners_and_rechecks() -> None:
    exp = ExperimentConfig.from_dict(_document({"dqn.lr": {"choice": [1e-3, 2e-3]}},
                                               num_env_runners=0))
    trial = trial_experiment(exp, {"dqn.lr": 2e-3})
    assert trial.resources.num_env_runners == 0 and trial.resources.async_sampling
    episodes = trial_experiment(exp, {"replay.layout": "episodes"})
    assert not episodes.resources.async_sampling  # the episodes layout needs remotes
    assert trial.dqn.lr == 2e-3 and not trial.tune.space
    with pytest.raises(ConfigError, match=re.escape("replay.capacity")):
        trial_experiment(exp, {"replay.capacity": 1})


def test_clip_to_space_puts_pbt_perturbations_back_inside_each_range() -> None:
    dims = parse_space({"dqn.gamma": {"uniform": [0.8, 0.99]},
                        "dqn.n_step": {"randint": [1, 6]},
                        "env.reward": {"choice": ["log_return", "turnover_penalty"]}},
                       ExperimentConfig)
    clip = ClipToSpace(dims)
    out = clip({"dqn.gamma": 0.99 * 1.2, "dqn.n_step": 7.2, "env.reward": "log_return"})
    assert out == {"dqn.gamma": 0.99, "dqn.n_step": 5, "env.reward": "log_return"}
    assert clip({"dqn.gamma": 0.9, "dqn.n_step": 0.8})["dqn.n_step"] == 1
    assert clip({"dqn.gamma": 0.5, "dqn.n_step": 3})["dqn.gamma"] == 0.8


def test_choose_winner_takes_the_best_validation_score_and_ignores_silent_trials() -> None:
    rows = [{"trial_id": "b", "best_score": 0.2}, {"trial_id": "a", "best_score": 0.2},
            {"trial_id": "c", "best_score": None}, {"trial_id": "d", "best_score": -0.1}]
    winner = choose_winner(rows)
    assert winner is not None and winner["trial_id"] == "a"
    assert choose_winner([{"trial_id": "c", "best_score": None}]) is None


def _search_experiment() -> ExperimentConfig:
    """synthetic_regime shrunk to CI size: a short market, a tiny network, sampling in
    the trial's own process, four iterations of 64 steps."""
    data = _document({"dqn.lr": {"loguniform": [1e-4, 3e-3]},
                      "dqn.n_step": {"choice": [1, 3]},
                      "network.hidden": {"choice": [[16], [32, 32]]}},
                     num_samples=4, max_concurrent=2, max_iterations=4, eval_every=2,
                     grace_period=2, num_env_runners=0)
    data["data"]["sources"] = ["synthetic:regime:seed=1:n=5000"]
    data["dqn"].update(train_batch_size=32, learning_starts=64, replay_ratio=1.0,
                       target_update_freq=200)
    data["dqn"].pop("lr_schedule")
    data["replay"]["capacity"] = 5000
    # four iterations do not learn to beat flat after costs: publish the winner anyway, so
    # the test can check which one (a real search keeps the default, true)
    data["selection"] = {"require_beat_flat": False,
                         # every trial's evaluations choose their cost multiple on
                         # validation: the winner's bundle must carry the one chosen
                         "calibrate_cost_multiples": [1.0, 4.0]}
    data["resources"].update(num_envs_per_env_runner=4, rollout_fragment_length=16)
    return ExperimentConfig.from_dict(data)


def _interrupt_once_held(hold: Path, timeout_s: float = 300.0) -> None:
    """Send this process SIGUSR1 (Tune's graceful stop, as Ctrl-C) once a trial is held
    after a report (``tune_probe``: its checkpoint is then registered). Without a hold
    by ``timeout_s``, release the trials (the search then completes and the test fails
    at once instead of after every trial's hold limit)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if tune_probe.held(str(hold)):
            os.kill(os.getpid(), signal.SIGUSR1)
            return
        time.sleep(0.1)
    (hold / tune_probe.HOLD_FILE).unlink(missing_ok=True)


def _wait_gone(pids: Iterable[int], timeout_s: float = 60.0) -> None:
    """Wait until these processes have exited (Ray kills a stopped trial's actor
    asynchronously: a held trial released before its process is gone could train on
    and write into the folder its resumed trial writes)."""
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        while time.monotonic() < deadline:
            if process_gone(pid):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the held trial's process {pid} outlived the stop")


def _registered_iterations(experiment: Path) -> dict[str, int]:
    """Per trial, the iteration of the newest checkpoint Tune's saved experiment state
    registered (-1: none). A checkpoint folder on disk is not enough: the trial writes it
    when it reports, and the controller registers it only when it processes the save that
    follows the result, so a stop between the two leaves a folder that a resume ignores
    (the trial goes on from its previous registered checkpoint, or starts over)."""
    from ray.tune import ExperimentAnalysis

    out = {}
    for trial in ExperimentAnalysis(str(experiment)).trials:
        checkpoint = trial.checkpoint
        out[trial.trial_id] = -1 if checkpoint is None else json.loads(
            (Path(checkpoint.path) / TRIAL_FILE).read_text())["iteration"]
    return out


def _reported_iterations(trial: Path) -> list[int]:
    """The training iterations a trial reported at, in order, over all its sessions (Tune
    appends each result to the trial's ``result.json``)."""
    return [json.loads(line)["iteration"]
            for line in (trial / "result.json").read_text().splitlines() if line.strip()]


def test_tune_search_interrupted_resumes_picks_the_validation_best_and_reads_test_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    log = tmp_path / "splits.log"
    monkeypatch.setenv(tune_probe.LOG_VAR, str(log))
    hold = tmp_path / "hold"  # trials wait after a report until the search is stopped
    hold.mkdir()
    (hold / tune_probe.HOLD_FILE).touch()
    monkeypatch.setenv(tune_probe.HOLD_VAR, str(hold))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")]))  # workers import tests.tune_probe
    tune_probe.install()  # the driver: the winner's rebuild and test evaluation
    exp = _search_experiment()
    store = PolicyStore((tmp_path / "store").as_uri())
    run = tmp_path / "run"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": "tests.tune_probe.install"})
    try:
        interrupter = threading.Thread(target=_interrupt_once_held, args=(hold,), daemon=True)
        interrupter.start()
        first = run_tune(exp, run, store=store)
        interrupter.join()
        _wait_gone(tune_probe.held(str(hold)).values())
        (hold / tune_probe.HOLD_FILE).unlink(missing_ok=True)  # resumed trials run through
        # interrupted: nothing chosen, published or tested; the state says what to resume
        assert not first.document["complete"] and first.document["unfinished"]
        assert first.version is None and store.channel("candidate") is None
        assert "test" not in {split for _, _, split, _ in tune_probe.read(str(log))}
        # the held trials were stopped with a checkpoint short of their last iteration,
        # registered in Tune's saved state (of the others, one that had not reported yet
        # starts over, one whose report Tune was still processing may be restored, and
        # one the scheduler stopped at its first report is done)
        checkpointed = set(tune_probe.held(str(hold)))
        registered = _registered_iterations(run / keys.TUNE_EXPERIMENT)
        assert checkpointed and checkpointed <= set(first.document["unfinished"])
        assert all(0 <= registered[t] < exp.tune.max_iterations for t in checkpointed), \
            registered
        outcome = run_tune(exp, run, store=store, resume=True)
    finally:
        ray.shutdown()

    document = outcome.document
    rows = outcome.trials
    assert document["complete"] and not document["unfinished"]
    assert len(rows) >= 4 and all(r["status"] != "error" for r in rows), rows
    assert all(r["best_score"] is not None for r in rows)
    # trials unfinished at the interruption went on from their checkpoints
    restored = {r["trial_id"] for r in rows if r["restored"]}
    assert checkpointed <= restored <= set(first.document["unfinished"]), rows
    # ... and the trainable took up its checkpoint's state: no iteration trained twice
    every = exp.tune.eval_every
    for t in checkpointed:
        assert _reported_iterations(run / keys.TUNE_EXPERIMENT / t) == list(
            range(every, exp.tune.max_iterations + 1, every)), t
    best = max(rows, key=lambda r: r["best_score"])
    assert outcome.winner is not None and outcome.winner["published"] is True
    pointer = store.channel("candidate")
    assert pointer is not None and pointer.version == outcome.version
    manifest = BundleManifest.from_dict(store.manifest(pointer.version))
    tune = manifest.training.tune
    assert tune is not None and tune.trial_id == best["trial_id"]
    assert tune.score == best["best_score"] and tune.trials == len(rows)
    assert tune.overrides == best["overrides"]
    assert set(tune.overrides) == {"dqn.lr", "dqn.n_step", "network.hidden"}
    assert manifest.network.hidden == tuple(tune.overrides["network.hidden"])
    assert manifest.evaluation is not None and manifest.evaluation["split"] == "validation"
    assert manifest.training.iteration == best["best_iteration"]
    # the decision rule chosen on validation travels in the bundle and judged the test
    assert [c["cost_multiple"] for c in manifest.evaluation["calibration"]] == [0.0, 1.0, 4.0]
    assert manifest.env.decision == recorded_rule(manifest.evaluation, exp)

    saved = json.loads(store.blobs.get(keys.TUNE_TRIALS).data)
    assert saved["trials"] == json.loads(json.dumps(rows))
    assert saved["winner"]["trial_id"] == best["trial_id"]
    assert saved["winner"]["test"]["split"] == "test"
    assert saved["winner"]["test"]["decision"] == manifest.evaluation["decision"]

    requests = tune_probe.read(str(log))
    trial_pids = {pid for _, pid, split, _ in requests if split == "validation"}
    assert trial_pids and os.getpid() not in trial_pids  # the trials ran in Ray workers
    tests = [r for r in requests if r[2] == "test"]
    assert len(tests) == 1 and len(tests[0][3].split(",")) == len(exp.data.sources)
    assert tests[0][1] == os.getpid()
    selected_s = manifest.created_ms / 1000  # the bundle is made once the winner is chosen
    assert all(t < selected_s for t, _, split, _ in requests if split == "validation")
    assert tests[0][0] >= selected_s and requests[-1] == tests[0]


def test_tune_without_a_space_is_refused(tmp_path: Path) -> None:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    with pytest.raises(ConfigError, match=r"no \[tune.space\]"):
        run_tune(exp, tmp_path / "run")


def test_tune_cli_resume_without_a_search_and_a_second_search_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "exp.toml"
    config.write_text(experiment_path("synthetic_regime").read_text()
                      + '\n[tune.space]\n"dqn.lr" = {loguniform = [1e-4, 1e-3]}\n')
    store = tmp_path / "store"
    assert main(["tune", "--config", str(config), "--store", str(store), "--resume"]) == 1
    assert "--resume: no Tune results in" in capsys.readouterr().err
    (store / keys.TUNE_EXPERIMENT / "experiment_state.json").parent.mkdir(parents=True)
    (store / keys.TUNE_EXPERIMENT / "experiment_state.json").write_text("{}")
    assert main(["tune", "--config", str(config), "--store", str(store)]) == 1
    assert "holds a search already: --resume it" in capsys.readouterr().err


def test_push_and_pull_tree_mirror_tune_results_through_another_store(tmp_path: Path) -> None:
    local = tmp_path / "run" / "tune" / "experiment"
    (local / "t_00000" / "checkpoint_000000" / "algo").mkdir(parents=True)
    (local / "experiment_state.json").write_text('{"trials": 1}')
    (local / "t_00000" / "checkpoint_000000" / "algo" / "state.pkl").write_bytes(b"\x00\x01")
    remote = LocalBlobStore(tmp_path / "remote")
    push_tree(remote, local, keys.TUNE_EXPERIMENT)
    assert remote.exists(keys.TUNE_EXPERIMENT + "t_00000/checkpoint_000000/algo/state.pkl")
    again = tmp_path / "elsewhere" / "tune" / "experiment"
    pull_tree(remote, keys.TUNE_EXPERIMENT, again)
    assert sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file()) == \
        sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
    assert (again / "t_00000/checkpoint_000000/algo/state.pkl").read_bytes() == b"\x00\x01"
