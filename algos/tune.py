"""``raytrade tune``: a hyperparameter search on Ray Tune over the experiment's ``[tune]``
table, chosen on validation only, the winner published to ``candidate``.

How a search runs:

1. Every trial is the base experiment with the trial's values of the ``[tune.space]``
   paths applied (``search_space.apply_overrides``; cross-field ``check()`` re-run). The
   trial (:func:`_trial`, a Tune function trainable) builds the RLlib algorithm exactly as
   ``train.py`` does (``fit_env_spec``, ``build_dqn_config(...).build_algo()``), trains, and
   every ``eval_every`` iterations evaluates the greedy policy on the *validation* split
   and reports :func:`selection.score` (the experiment's selection metric) with a
   checkpoint: the RLlib checkpoint, the validation record and the trial's overrides at
   that moment (population-based training changes them during a trial).
2. Resources: a trial asks Ray for RLlib's own request of its experiment
   (``Algorithm.default_resource_request``: one bundle for the trial's process and its
   local learner, one per env runner and remote learner, custom resources included),
   as a placement group; Tune captures the algorithm's actors in it, so concurrent trials
   never oversubscribe the machine or cluster. On a small machine set ``[tune]
   num_env_runners = 0``: each trial then samples in its own process and needs one CPU.
3. ASHA stops the worst trials at rungs (``time_attr`` = training iterations; Tune keeps
   each trial's two best checkpoints and its newest); population-based training copies
   the best trials' checkpoints into the worst and perturbs their values (only of fields
   that keep the network's shape and the data; perturbed values clipped into their
   ranges; every checkpoint kept, since an exploit restores one some time after
   choosing it).
4. Tune's results folder is ``<run>/tune/experiment``, mirrored to the run store's
   ``tune/experiment/`` when the store is elsewhere; ``resume=True`` restores it
   (``Tuner.restore``, unfinished and errored trials continue from their checkpoints).
   A search interrupted (Ctrl-C, SIGUSR1) selects and publishes nothing: its document
   lists the unfinished trials. The search's ``time_budget_s`` is not an interruption:
   the trials stop and the winner is chosen from what they reported.
5. Selection reads validation scores only: the winner is the trial with the highest
   reported score over all of its reports; its checkpoint of that report is rebuilt,
   published to ``candidate`` with a ``TuneInfo`` and the validation record in its
   manifest, and only then evaluated on the test split, once. That test result goes into
   the trials document (``tune/trials.json``) and never into any choice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raytrade.algos.decision_calibration import calibrated_evaluation, recorded_rule, with_rule
from raytrade.algos.dqn_config import build_dqn_config
from raytrade.algos.evaluation import QFunction, evaluate
from raytrade.algos.experiment import ExperimentConfig, TuneSettings
from raytrade.algos.export import bundle_files, rllib_tensors
from raytrade.algos.manifest import TuneInfo, read_bundle
from raytrade.algos.publish_decision import decide
from raytrade.algos.rllib_q import module_q_function
from raytrade.algos.search_space import Dimension, apply_overrides, parse_space
from raytrade.algos.selection import score
from raytrade.algos.storage import keys
from raytrade.algos.storage.blobstore import BlobStore, LocalBlobStore
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.algos.train import iteration_metrics, ray_session
from raytrade.envs.decision import rule_summary
from raytrade.envs.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_METRIC = "excess_log_growth"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in Ray's error texts
SCORE_FLOOR = -1e6
"""Reported instead of a score of -inf (a ruined policy), so Tune's schedulers, which
take quantiles of the scores, see a finite number that still loses to every other."""
EXPERIMENT = keys.TUNE_EXPERIMENT.removeprefix(keys.TUNE_DIR).strip("/")
ALGO_DIR = "algo"
EVALUATION_FILE = "evaluation.json"
TRIAL_FILE = "trial.json"


def selection_metric(exp: ExperimentConfig) -> str:
    """The metric the search selects by: the experiment's ``[selection] metric`` when the
    experiment has that section, else ``excess_log_growth``."""
    section = getattr(exp, "selection", None)
    metric = getattr(section, "metric", None)
    return metric if isinstance(metric, str) else DEFAULT_METRIC


def trial_experiment(base: ExperimentConfig, overrides: Mapping[str, Any]) -> ExperimentConfig:
    """One trial's experiment: ``base`` with ``overrides`` (dotted path -> value) applied
    and ``[tune] num_env_runners`` put into ``[resources]``; checked again."""
    settings = base.tune
    exp = apply_overrides(dataclasses.replace(base, tune=TuneSettings()), overrides)
    if settings.num_env_runners is not None:
        runners = settings.num_env_runners
        exp = dataclasses.replace(exp, resources=dataclasses.replace(
            exp.resources, num_env_runners=runners,
            # the episodes layout samples asynchronously only from remote runners; the
            # compact pipeline always does (from the driver's runner when there are none)
            async_sampling=exp.resources.async_sampling
            and (runners > 0 or exp.replay.layout == "compact")))
    exp.check()
    return exp


def q_function(module: Any) -> QFunction:
    """Q-values of an RLlib DQN module (``rllib_q.py``: the bundle's own Q, never the
    argmax-only inference pass)."""
    return module_q_function(module)


def _trial(config: dict[str, Any], base: ExperimentConfig) -> None:
    """The Tune function trainable: train one trial, report validation scores with
    checkpoints (module docstring, step 1). Runs in a Tune actor."""
    from ray import tune

    settings = base.tune
    overrides = {k: config[k] for k in sorted(config)}
    exp = trial_experiment(base, overrides)
    metric = selection_metric(base)
    spec = exp.fit_env_spec()
    algo: Any = build_dqn_config(exp, spec).build_algo()  # RLlib's Algorithm: untyped
    try:
        restored = tune.get_checkpoint()
        if restored is not None:  # resume, or a PBT exploit of another trial's checkpoint
            with restored.as_directory() as folder:
                algo.restore_from_path(str(Path(folder) / ALGO_DIR))
        start = time.perf_counter()
        while algo.iteration < settings.max_iterations:
            record = iteration_metrics(algo.train(), time.perf_counter() - start)
            elapsed = time.perf_counter() - start
            last = algo.iteration >= settings.max_iterations or (
                settings.max_trial_s is not None and elapsed >= settings.max_trial_s)
            if algo.iteration % settings.eval_every == 0 or last:
                evaluation, _, _ = calibrated_evaluation(q_function(algo.get_module()), exp,
                                                         spec, seed=exp.seed)
                evaluation["iteration"] = algo.iteration
                value = score(evaluation, metric, exp.env.initial_equity)
                reported = value if math.isfinite(value) else SCORE_FLOOR
                with tempfile.TemporaryDirectory(prefix="rt-tune-") as tmp:
                    algo.save_to_path(str(Path(tmp) / ALGO_DIR))
                    (Path(tmp) / EVALUATION_FILE).write_text(json.dumps(evaluation,
                                                                        default=float))
                    (Path(tmp) / TRIAL_FILE).write_text(json.dumps(
                        {"overrides": overrides, "iteration": algo.iteration,
                         "score": reported, "metric": metric,
                         "env_steps_sampled": record["env_steps_sampled"],
                         "env_steps_trained": record["env_steps_trained"]}))
                    tune.report({"score": reported, "iteration": algo.iteration,
                                 "env_steps_sampled": record["env_steps_sampled"] or 0,
                                 "env_steps_trained": record["env_steps_trained"] or 0},
                                checkpoint=tune.Checkpoint.from_directory(tmp))
            if last:
                break
    finally:
        algo.stop()


def _resources(base: ExperimentConfig) -> Callable[[dict[str, Any]], Any]:
    """Per trial: RLlib's resource request of the trial's experiment (module docstring,
    step 2)."""

    def request(config: dict[str, Any]) -> Any:
        exp = trial_experiment(base, {k: config[k] for k in sorted(config)})
        rllib = build_dqn_config(exp)
        algo_class: Any = rllib.algo_class
        return algo_class.default_resource_request(rllib)

    return request


@dataclass(frozen=True)
class ClipToSpace:
    """PBT's ``custom_explore_fn``: puts every perturbed value back inside its
    dimension's range (PBT multiplies by 0.8 or 1.2 without looking at the bounds, which
    would take ``dqn.gamma = 0.9`` to 1.08, a value the experiment refuses)."""

    dims: tuple[Dimension, ...]

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` with range dimensions clipped (integers stay integers)."""
        out = dict(config)
        for dim in self.dims:
            if dim.distribution == "choice" or dim.path not in out:
                continue
            low, high = dim.endpoints()[0], dim.endpoints()[-1]
            value = min(max(out[dim.path], low), high)
            out[dim.path] = round(value) if dim.distribution == "randint" else value
        return out


def _scheduler(settings: TuneSettings, dims: tuple[Dimension, ...]) -> Any:
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    if settings.scheduler == "asha":
        return ASHAScheduler(time_attr="iteration", max_t=settings.max_iterations,
                             grace_period=min(settings.grace_period, settings.max_iterations),
                             reduction_factor=settings.reduction_factor)
    return PopulationBasedTraining(
        time_attr="iteration", perturbation_interval=settings.perturbation_interval,
        hyperparam_mutations={d.path: d.to_tune() for d in dims},
        quantile_fraction=settings.quantile_fraction,
        resample_probability=settings.resample_probability, custom_explore_fn=ClipToSpace(dims))


@dataclass
class TuneOutcome:
    """What a search did: its trials table (``tune/trials.json``) and the winner."""

    document: dict[str, Any] = field(default_factory=dict)
    version: int | None = None
    """Store version of the published winner (None when no trial reported a score)."""

    @property
    def trials(self) -> list[dict[str, Any]]:
        """One row per trial (:func:`trial_rows`)."""
        rows: list[dict[str, Any]] = self.document.get("trials", [])
        return rows

    @property
    def winner(self) -> dict[str, Any] | None:
        """The winner's row plus its checkpoint's iteration, version and test result."""
        won: dict[str, Any] | None = self.document.get("winner")
        return won


def trainable(exp: ExperimentConfig) -> Any:
    """The Tune trainable of ``exp``'s search: :func:`_trial` with the base experiment
    bound and each trial's resource request."""
    from ray import tune

    return tune.with_resources(tune.with_parameters(_trial, base=exp), _resources(exp))


def run_tune(exp: ExperimentConfig, run_dir: str | Path, *, store: PolicyStore | None = None,
             address: str | None = None, resume: bool = False,
             progress: Callable[[str], None] = print) -> TuneOutcome:
    """Run (or with ``resume`` continue) the search of ``exp.tune``; select, publish and
    test the winner (module docstring). ``run_dir`` is the local run folder; ``store``
    (default: that folder) receives the winner, ``tune/trials.json`` and a mirror of
    Tune's results folder."""
    from ray import tune

    settings = exp.tune
    dims = parse_space(settings.space, type(exp))
    if not dims:
        raise ConfigError("the experiment has no [tune.space]: nothing to search")
    run = Path(run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    store = store or PolicyStore(LocalBlobStore(run))
    local = run / keys.TUNE_EXPERIMENT
    same = isinstance(store.blobs, LocalBlobStore) and store.blobs.root == run
    metric = selection_metric(exp)
    if resume:
        if not same and not local.is_dir():
            pull_tree(store.blobs, keys.TUNE_EXPERIMENT, local)
        if not tune.Tuner.can_restore(str(local)):
            raise ConfigError(f"--resume: no Tune results in {local} (nor in "
                              f"{store.uri}/{keys.TUNE_EXPERIMENT})")
    elif local.exists() and any(local.iterdir()):
        raise ConfigError(f"{local} holds a search already: --resume it, or use another "
                          "run folder")
    with ray_session(address):
        train_fn = trainable(exp)
        if resume:
            tuner = tune.Tuner.restore(str(local), train_fn, resume_unfinished=True,
                                       resume_errored=True)
            progress(f"resuming the search in {local}")
        else:
            tuner = tune.Tuner(
                train_fn, param_space={d.path: d.to_tune() for d in dims},
                tune_config=tune.TuneConfig(
                    metric="score", mode="max", num_samples=settings.num_samples,
                    max_concurrent_trials=settings.max_concurrent or None,
                    time_budget_s=settings.time_budget_s, reuse_actors=False,
                    scheduler=_scheduler(settings, dims),
                    trial_dirname_creator=_trial_dirname),
                run_config=tune.RunConfig(
                    name=EXPERIMENT, storage_path=str(run / keys.TUNE_DIR), verbose=0,
                    checkpoint_config=tune.CheckpointConfig(
                        num_to_keep=_checkpoints_kept(settings),
                        checkpoint_score_attribute="score", checkpoint_score_order="max")))
            progress(f"searching {len(dims)} fields with {settings.num_samples} trials "
                     f"({settings.scheduler}); results in {local}")
        try:
            results = tuner.fit()
        finally:
            if not same:
                push_tree(store.blobs, local, keys.TUNE_EXPERIMENT)
        unfinished = unfinished_trials(local)
        document = {"name": exp.name, "metric": metric, "scheduler": settings.scheduler,
                    "num_samples": settings.num_samples,
                    "max_iterations": settings.max_iterations,
                    "space": {d.path: {d.distribution: list(d.values)} for d in dims},
                    "complete": not unfinished, "unfinished": unfinished,
                    "trials": trial_rows(results, settings.max_iterations), "winner": None}
        outcome = TuneOutcome(document=document)
        winner = choose_winner(outcome.trials)
        if unfinished:
            # interrupted (Ctrl-C, SIGUSR1): Tune saved its state; choosing now would
            # judge trials that have not finished, so nothing is selected or published
            progress(f"the search was interrupted with {len(unfinished)} trials unfinished; "
                     "nothing published: continue it with --resume")
        elif winner is None:
            progress("no trial reported a validation score: nothing published")
        else:
            outcome.version = _publish_and_test(exp, results, winner, document, store,
                                                progress)
    store.blobs.put(keys.TUNE_TRIALS, json.dumps(document, indent=1, default=float).encode())
    return outcome


def unfinished_trials(local: Path) -> list[str]:
    """Ids of the trials Tune's saved experiment state holds as neither terminated nor
    errored: an interrupted search (Tune writes that state before it stops the trials, so
    ``Tuner.restore`` continues exactly these)."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(local))
    return sorted(str(t.trial_id) for t in analysis.trials
                  if t.status not in ("TERMINATED", "ERROR"))


def _checkpoints_kept(settings: TuneSettings) -> int | None:
    """Checkpoints Tune keeps per trial: with ASHA the two best by score (the newest is
    kept besides, for resuming); with PBT every one, because an exploit restores another
    trial's checkpoint some time after choosing it and must not find it deleted."""
    return None if settings.scheduler == "pbt" else 2


def _trial_dirname(trial: Any) -> str:
    """Trial folders named by id only (short, and valid store keys)."""
    return str(trial.trial_id)


def trial_rows(results: Any, max_iterations: int) -> list[dict[str, Any]]:
    """One row per trial of a ``ResultGrid``: id, overrides, status, iterations, best
    validation score and its iteration, whether its last session went on from a
    checkpoint (``restored``), env steps, wall time, error. ``status`` is
    ``error``, ``finished`` (reached ``max_iterations``) or ``stopped`` (by the scheduler,
    the trial's seconds or the search's time budget)."""
    rows = []
    for result in results:
        frame = result.metrics_dataframe
        reported = frame is not None and "score" in frame and len(frame) > 0
        best_score = best_iteration = None
        if reported:
            best = frame.loc[frame["score"].idxmax()]
            best_score, best_iteration = float(best["score"]), int(best["iteration"])
        metrics = result.metrics or {}
        iterations = int(metrics.get("iteration", 0) or 0)
        status = "error" if result.error is not None else (
            "finished" if iterations >= max_iterations else "stopped")
        rows.append({
            "trial_id": Path(result.path).name,
            "overrides": {k: v for k, v in sorted((result.config or {}).items())},
            "status": status, "iterations": iterations,
            "reports": 0 if not reported else len(frame),
            "best_score": best_score, "best_iteration": best_iteration,
            "restored": int(metrics.get("iterations_since_restore", 0) or 0)
            < int(metrics.get("training_iteration", 0) or 0),
            "env_steps_sampled": int(metrics.get("env_steps_sampled", 0) or 0),
            "wall_s": round(float(metrics.get("time_total_s", 0.0) or 0.0), 1),
            "error": None if result.error is None else _ANSI.sub("", str(result.error))[:500]})
    return sorted(rows, key=lambda r: str(r["trial_id"]))


def choose_winner(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row with the highest best validation score (ties: the lower trial id); None
    when no trial reported one."""
    scored = [r for r in rows if r["best_score"] is not None]
    if not scored:
        return None
    return sorted(scored, key=lambda r: (-r["best_score"], str(r["trial_id"])))[0]


def _publish_and_test(exp: ExperimentConfig, results: Any, winner: dict[str, Any],
                      document: dict[str, Any], store: PolicyStore,
                      progress: Callable[[str], None]) -> int | None:
    """Rebuild the winner from its best checkpoint, publish it when it qualifies (the
    training driver's rules, ``publish_decision.decide``; None otherwise), then (only
    then) evaluate it on the test split once; fills ``document["winner"]``."""
    from ray.rllib.core import (
        COMPONENT_LEARNER,
        COMPONENT_LEARNER_GROUP,
        COMPONENT_RL_MODULE,
        DEFAULT_MODULE_ID,
    )
    from ray.rllib.core.rl_module.rl_module import RLModule

    [result] = [r for r in results if Path(r.path).name == winner["trial_id"]]
    candidates = [c for c, m in result.best_checkpoints
                  if int(m["iteration"]) == winner["best_iteration"]
                  and float(m["score"]) == winner["best_score"]]
    if not candidates:
        raise ConfigError(f"trial {winner['trial_id']}: the checkpoint of its best report "
                          f"(iteration {winner['best_iteration']}) is gone")
    with candidates[-1].as_directory() as folder:
        root = Path(folder)
        trial = json.loads((root / TRIAL_FILE).read_text())
        validation = json.loads((root / EVALUATION_FILE).read_text())
        module: Any = RLModule.from_checkpoint(
            root / ALGO_DIR / COMPONENT_LEARNER_GROUP / COMPONENT_LEARNER
            / COMPONENT_RL_MODULE / DEFAULT_MODULE_ID)
    overrides = dict(trial["overrides"])
    trial_exp = trial_experiment(exp, overrides)
    # the same deterministic fit the trial made, with the decision rule its validation
    # chose (``decision_calibration``)
    trial_exp, spec = with_rule(trial_exp, trial_exp.fit_env_spec(),
                                recorded_rule(validation, trial_exp))
    info = TuneInfo(trial_id=str(winner["trial_id"]), overrides=overrides,
                    metric=str(trial["metric"]), score=float(trial["score"]),
                    trials=len(document["trials"]))
    tensors = rllib_tensors(module.get_state(inference_only=True), trial_exp.dqn.dueling)
    files = bundle_files(tensors, trial_exp, spec, int(module.observation_space.shape[0]),
                         training={"iteration": int(trial["iteration"]),
                                   "env_steps_sampled": trial["env_steps_sampled"],
                                   "env_steps_trained": trial["env_steps_trained"],
                                   "tune": info},
                         evaluation=validation)
    # the publication rules of training (``publish_decision.decide``): beat flat after
    # costs on validation (``[selection] require_beat_flat``) and the current candidate
    manifest = read_bundle(files)
    assert manifest.data is not None  # a trained policy always records its data
    decision = decide(store, iteration=int(trial["iteration"]), metric=info.metric,
                      min_improvement=exp.selection.min_improvement,
                      require_beat_flat=exp.selection.require_beat_flat,
                      min_evidence_t=exp.selection.min_evidence_t,
                      best_iteration=int(trial["iteration"]), best_evaluation=validation,
                      initial_equity=trial_exp.env.initial_equity, data=manifest.data,
                      published={})
    version: int | None = None
    if decision.publish:
        version = store.publish(files, channel="candidate",
                                reason=f"tune winner {info.trial_id} ({info.metric} "
                                       f"{info.score:.4g} on validation)")
        progress(f"winner {info.trial_id} ({info.metric} {info.score:.4g} on validation, "
                 f"{overrides}) published as v{version:06d} to {store.uri} (candidate)")
    else:
        progress(f"winner {info.trial_id} ({info.metric} {info.score:.4g} on validation, "
                 f"{overrides}) not published: {decision.reason}")
    # selection is over: the test split is read here, once, for the winner only
    test = evaluate(q_function(module), trial_exp, "test", seed=trial_exp.seed, spec=spec)
    test["decision"] = rule_summary(spec.env.decision)
    document["winner"] = {**winner, "overrides": overrides,
                          "checkpoint_iteration": int(trial["iteration"]),
                          "version": version, "published": decision.publish,
                          "publication": decision.reason, "test": test}
    return version


def push_tree(blobs: BlobStore, local: Path, prefix: str) -> None:
    """Upload every file under ``local`` to ``prefix`` + its relative path."""
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        blobs.put(prefix + path.relative_to(local).as_posix(), path.read_bytes())


def pull_tree(blobs: BlobStore, prefix: str, local: Path) -> None:
    """Download every key under ``prefix`` into ``local``; a key that would land outside
    ``local`` is refused (the store is data, not trusted)."""
    root = local.resolve()
    for key in blobs.list(prefix):
        target = (root / key.removeprefix(prefix)).resolve()
        if not target.is_relative_to(root):
            raise ConfigError(f"{blobs.uri}/{key}: outside {prefix}; refused")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blobs.get(key).data)
