"""The training driver: a thin loop over RLlib's ``Algorithm.train()``.

Layout of a run store (``file://`` folder or ``s3://`` prefix)::

    metrics/train.jsonl   one line per iteration (see ``iteration_metrics``)
    metrics/eval.jsonl    one line per evaluation (greedy vs baselines, shared metrics)
    metrics/eval_curves/<iteration>_<split>.json   equity curves of that evaluation
    metrics/selection.jsonl   validation scores, the best so far, publication decisions
    checkpoints/iter_NNNNNN/   RLlib checkpoints; checkpoints/latest names the newest
    policies/vNNNNNN/, channels/   policy bundles published to ``candidate``
                                   (``policy_store.py``)

(every key and path: ``storage/keys.py``)

The driver works in a local run folder; when the store is elsewhere (S3) ``RunMirror``
copies metrics and checkpoints there. ``resume=True`` restores the newest checkpoint:
iteration number, env-step counters and learner state continue where they stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from raytrade.algos.decision_calibration import calibrated_evaluation
from raytrade.algos.dqn_config import build_dqn_config
from raytrade.algos.early_stopping import EarlyStopping
from raytrade.algos.evaluation import evaluate
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.export import bundle_files, data_info, rllib_tensors
from raytrade.algos.manifest import DataInfo
from raytrade.algos.policy import Policy
from raytrade.algos.publish_decision import PublishDecision, decide
from raytrade.algos.rllib_q import module_q_function
from raytrade.algos.selection import score
from raytrade.algos.storage import keys
from raytrade.algos.storage.blobstore import LocalBlobStore
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.algos.storage.run_store import RunMirror
from raytrade.envs.decision import rule_summary
from raytrade.envs.env_spec import EnvSpec
from raytrade.envs.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run did. ``evaluations`` holds every evaluation record in order
    (validation ones of the learner's policy; the final non-validation ones are of the
    best policy)."""

    iterations: int = 0
    env_steps_sampled: int = 0
    env_steps_trained: int = 0
    wall_s: float = 0.0
    checkpoint: Path | None = None
    published: list[int] = field(default_factory=list)
    store_uri: str = ""
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    best_iteration: int | None = None
    """Iteration of the best validation policy (the one published, if any was)."""
    best_score: float | None = None
    """Its validation score, in the units of ``[selection] metric``."""
    stopped_early: bool = False
    """True when ``[selection] patience`` ended the run."""
    decisions: list[PublishDecision] = field(default_factory=list)
    """Every publication opportunity: what was (not) published and why."""


@contextmanager
def ray_session(address: str | None, *, keep_logs: Path | None = None) -> Iterator[None]:
    """Join ``address`` (e.g. ``"auto"`` on a cluster) or start a private local Ray.

    A private Ray never joins a cluster that happens to run on this machine; its temp dir
    is short because Ray's unix socket paths may not exceed 107 bytes. With
    ``keep_logs`` the private Ray's session logs are copied there at shutdown (the temp
    dir is removed). Inside an open session (``ray.is_initialized()``) this joins it and
    leaves it running: whoever opened it shuts it down.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    tmp = None
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        tmp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                 log_to_driver=False, _temp_dir=tmp)
    try:
        yield
    finally:
        ray.shutdown()
        if tmp:
            logs = Path(tmp) / "session_latest" / "logs"
            if keep_logs is not None and logs.is_dir():
                shutil.copytree(logs, keep_logs, dirs_exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)


def _get(result: dict[str, Any], *path: str) -> float | None:
    node: Any = result
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if not isinstance(node, numbers.Real) or not math.isfinite(float(node)):
        return None  # absent, or NaN when no episode ended this iteration
    return float(node)


def iteration_metrics(result: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
    """The per-iteration record written to ``metrics/train.jsonl``."""
    runners = result.get("env_runners", {})
    learner = result.get("learners", {}).get("default_policy", {})
    out: dict[str, Any] = {
        "iteration": result.get("training_iteration"),
        "time_s": round(elapsed_s, 3),
        "env_steps_sampled": _get(result, "num_env_steps_sampled_lifetime"),
        "env_steps_trained": _get(result, "learners", "__all_modules__",
                                  "num_env_steps_trained_lifetime"),
        "episode_return_mean": _get(runners, "episode_return_mean"),
        "episode_len_mean": _get(runners, "episode_len_mean"),
        "qf_loss": _get(learner, "qf_loss"),
        "qf_mean": _get(learner, "qf_mean"),
        "td_error_mean": _get(learner, "td_error_mean"),
        "episode_sharpe": _get(runners, "episode_sharpe"),
        "episode_max_drawdown": _get(runners, "episode_max_drawdown"),
        "episode_total_return": _get(runners, "episode_total_return"),
        "episode_turnover": _get(runners, "episode_turnover"),
        "episode_trades": _get(runners, "episode_trades"),
        "sampled_per_s": _get(runners, "num_env_steps_sampled_lifetime_throughput"),
        "trained_per_s": _get(result, "learners", "__all_modules__",
                              "num_env_steps_trained_lifetime_throughput"),
        "replay_size": _get(result, "replay_buffer", "num_env_steps_stored"),
        "replay_ratio": _get(result, "replay_ratio"),
        "per_beta": _get(result, "per_beta"),
        "live_transitions_ingested": _get(result, "live_transitions_ingested_lifetime"),
        "live_transitions_refused": _get(result, "live_transitions_refused_lifetime"),
        "epsilon": {k.rsplit("_", 1)[-1]: v for k, v in runners.items()
                    if k.startswith("apex_epsilon_runner_")},
    }
    return out


def fill_throughput(record: dict[str, Any], previous: dict[str, Any] | None) -> None:
    """Env steps sampled and trained per second over the last iteration, from the lifetime
    counters, where RLlib did not report a throughput (its ``*_throughput`` stats are
    absent with our training step)."""
    if previous is None:
        return
    dt = record["time_s"] - previous["time_s"]
    for rate, count in (("sampled_per_s", "env_steps_sampled"),
                        ("trained_per_s", "env_steps_trained")):
        now, before = record.get(count), previous.get(count)
        if record.get(rate) is None and dt > 0 and now is not None and before is not None:
            record[rate] = round((now - before) / dt, 1)


def _append(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(record, default=float) + "\n")


def _q_function(algo: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The learner's Q-values (``rllib_q.py``): what the published bundle will compute."""
    return module_q_function(algo.get_module())


FINAL_SPLITS = ("train", "validation", "test")
"""Splits ``train(final_splits=...)`` accepts."""


def train(exp: ExperimentConfig, run_dir: str | Path, *, iterations: int | None = None,
          time_budget_s: float | None = None, resume: bool = False,
          address: str | None = None, eval_every: int = 10, checkpoint_every: int = 10,
          final_splits: tuple[str, ...] = ("validation",), store: PolicyStore | None = None,
          publish_every: int = 0, publish_every_s: float | None = None,
          stop: threading.Event | None = None,
          progress: Callable[[str], None] = print) -> TrainResult:
    """Train until ``iterations``, ``time_budget_s``, ``stop`` or early stopping (whichever
    comes first), and publish the best policy by validation score.

    Evaluates the greedy policy on the validation split every ``eval_every`` iterations,
    at every publication point and at the end; each evaluation is scored by the
    experiment's ``[selection]`` metric. The weights of the best-scoring policy are kept
    (in memory: the inference-only tensors a bundle needs), and after ``patience``
    evaluations without an improvement of more than ``min_improvement`` the run stops
    early. Every ``publish_every`` iterations (0: only at the end), every
    ``publish_every_s`` seconds of training and at the end, the best policy so far is
    published to ``candidate`` with its own validation evaluation in its manifest, but only
    when it beats the current candidate on validation (and flat, with
    ``require_beat_flat``): ``publish_decision.py``; each decision goes to the progress
    output and to ``metrics/selection.jsonl``. Only then, after the last selection
    decision, is the selected policy evaluated on the other ``final_splits`` (add
    ``"test"`` for a final report): selection never reads the test split.

    ``stop`` (set from another thread) ends the run after the current iteration, with the
    same final evaluation, checkpoint and publication decision. ``store`` defaults to the
    run folder itself (``file://``); another store gets metrics and checkpoints mirrored
    from the local ``run_dir``. Checkpoints hold the latest learner state (resume goes on
    from there); the best policy lives on as the published candidate.
    """
    if iterations is None and time_budget_s is None and stop is None:
        raise ConfigError("give iterations, a time budget or a stop event")
    if publish_every < 0 or (publish_every_s is not None and not publish_every_s > 0):
        raise ConfigError("publish_every must be >= 0 and publish_every_s > 0")
    unknown = [s for s in final_splits if s not in FINAL_SPLITS]
    if unknown:
        raise ConfigError(f"final_splits: {unknown}; choose among {FINAL_SPLITS} (validation "
                          "is evaluated at the end in any case: selection needs it)")
    run = Path(run_dir).resolve()  # RLlib/pyarrow reject relative checkpoint paths
    run.mkdir(parents=True, exist_ok=True)
    store = store or PolicyStore(LocalBlobStore(run))
    mirror = RunMirror(store.blobs, run)
    ckpt_root = run / keys.CHECKPOINTS
    result = TrainResult(store_uri=store.uri)
    spec = exp.fit_env_spec()  # data prepared and normalizer fitted once, here
    selector = _Selector(exp, spec, store, run, progress)
    with ray_session(address):
        algo = build_dqn_config(exp, spec).live_run(store.uri, exp.features.hash).build_algo()
        try:
            if resume:
                name = mirror.pull_latest()
                if name is None:
                    raise ConfigError(f"--resume: no checkpoint in {store.uri}/checkpoints")
                path = ckpt_root / name
                algo.restore_from_path(str(path))
                progress(f"resumed from {path} at iteration {algo.iteration}")
            start = time.perf_counter()
            published_at = start
            previous: dict[str, Any] | None = None
            done = 0
            epsilon: dict[str, float] = {}
            while True:
                record = iteration_metrics(algo.train(), time.perf_counter() - start)
                fill_throughput(record, previous)
                previous = record
                # asynchronous sampling: a runner whose samples did not arrive in this
                # iteration keeps its last reported epsilon (it is fixed per runner)
                epsilon.update(record["epsilon"])
                record["epsilon"] = dict(epsilon)
                group = algo.env_runner_group
                record["env_runner_restarts"] = (
                    group.num_remote_worker_restarts() if group is not None else 0)
                done += 1
                _append(run / keys.TRAIN_METRICS, record)
                progress(_progress_line(record))
                now = time.perf_counter()
                last = (iterations is not None and done >= iterations) or (
                    time_budget_s is not None and now - start >= time_budget_s) or (
                    stop is not None and stop.is_set())
                due = publish_every_s is not None and now - published_at >= publish_every_s
                publish_point = due or bool(publish_every and done % publish_every == 0)
                if done % eval_every == 0 or last or publish_point:
                    evaluation, exp_r, spec_r = _evaluate_validation(
                        _q_function(algo), exp, spec, algo.iteration, run)
                    result.evaluations.append(evaluation)
                    progress(_eval_line(evaluation))
                    selector.observe(algo, record, evaluation, exp_r, spec_r)
                    if selector.tracker.should_stop and not last:
                        last = result.stopped_early = True
                        progress(f"early stop @ iter {algo.iteration}: "
                                 f"{selector.tracker.since_improvement} validation "
                                 "evaluations without improvement (patience "
                                 f"{exp.selection.patience})")
                mirror.metrics(force=last)
                if done % checkpoint_every == 0 or last:
                    name = keys.checkpoint_dir_name(algo.iteration)
                    algo.save_to_path(str(ckpt_root / name))
                    tmp = ckpt_root / ".latest.tmp"
                    tmp.write_text(name)
                    os.replace(tmp, run / keys.LATEST_CHECKPOINT)
                    mirror.checkpoint(name)
                    result.checkpoint = ckpt_root / name
                if last or publish_point:
                    published_at = time.perf_counter()
                    decision = selector.publish(algo.iteration)
                    result.decisions.append(decision)
                    if decision.version is not None:
                        result.published.append(decision.version)
                if last:
                    # the selection is decided: only now may the selected policy meet
                    # the other final splits (the test split for a final report)
                    for split in final_splits:
                        if split != "validation":
                            result.evaluations.append(selector.evaluate_best(split))
                            progress(_eval_line(result.evaluations[-1]))
                    mirror.metrics(force=True)
                    break
            result.iterations = algo.iteration
            result.env_steps_sampled = int(record["env_steps_sampled"] or 0)
            result.env_steps_trained = int(record["env_steps_trained"] or 0)
            result.wall_s = time.perf_counter() - start
            result.best_iteration = selector.tracker.best_iteration
            result.best_score = selector.tracker.best_score
        finally:
            algo.stop()
    return result


def _evaluate_validation(q_values: Callable[[np.ndarray], np.ndarray], exp: ExperimentConfig,
                         spec: EnvSpec, iteration: int, run: Path
                         ) -> tuple[dict[str, Any], ExperimentConfig, EnvSpec]:
    """Evaluate on validation under the decision rule chosen there
    (``decision_calibration.py``; the configured one when nothing is to calibrate); save
    it like :func:`_evaluate`. Returns the record and the experiment and spec carrying the
    chosen rule."""
    curves: dict[str, Any] = {}
    evaluation, exp_r, spec_r = calibrated_evaluation(q_values, exp, spec, seed=exp.seed,
                                                      curves=curves)
    return _save_evaluation(evaluation, curves, "validation", iteration, run), exp_r, spec_r


def _evaluate(q_values: Callable[[np.ndarray], np.ndarray], exp: ExperimentConfig,
              spec: EnvSpec, split: str, iteration: int, run: Path) -> dict[str, Any]:
    """Evaluate on ``split``; save the curves and append the record to
    ``metrics/eval.jsonl``. ``iteration`` is that of the evaluated policy's weights."""
    curves: dict[str, Any] = {}
    evaluation = evaluate(q_values, exp, split, seed=exp.seed, curves=curves, spec=spec)
    evaluation["decision"] = rule_summary(spec.env.decision)
    return _save_evaluation(evaluation, curves, split, iteration, run)


def _save_evaluation(evaluation: dict[str, Any], curves: dict[str, Any], split: str,
                     iteration: int, run: Path) -> dict[str, Any]:
    """Stamp ``iteration`` on the record and its curves, write the curves and append the
    record to ``metrics/eval.jsonl``."""
    evaluation["iteration"] = iteration
    curves["iteration"] = iteration
    curve_file = run / keys.eval_curve_key(iteration, split)
    curve_file.parent.mkdir(parents=True, exist_ok=True)
    curve_file.write_text(json.dumps(curves))
    _append(run / keys.EVAL_METRICS, evaluation)
    return evaluation


@dataclass(frozen=True)
class _Snapshot:
    """The best policy so far: its inference-only tensors (copies), where training
    stood, and its validation evaluation."""

    iteration: int
    tensors: dict[str, np.ndarray]
    obs_dim: int
    exp: ExperimentConfig
    """The experiment with the decision rule chosen on validation (``decision_calibration``)."""
    spec: EnvSpec
    """The env spec with that rule."""
    training: dict[str, Any]
    evaluation: dict[str, Any]


class _Selector:
    """Scores validation evaluations, keeps the best policy's weights, decides and makes
    publications, and evaluates the selected policy on the final splits.

    The best weights stay in memory (a few hundred KB of float32 tensors, the same ones a
    bundle ships), not in a second RLlib checkpoint: a checkpoint would also carry the
    optimizer and learner state, which selection never needs, because training always
    goes on from the latest state and only the best policy is published.
    """

    def __init__(self, exp: ExperimentConfig, spec: EnvSpec, store: PolicyStore, run: Path,
                 progress: Callable[[str], None]) -> None:
        self.exp = exp
        self.spec = spec
        self.store = store
        self.run = run
        self.progress = progress
        sel = exp.selection
        self.tracker = EarlyStopping(patience=sel.patience,
                                     min_improvement=sel.min_improvement)
        self.best: _Snapshot | None = None
        self.published: dict[int, int] = {}  # iteration of this run -> version
        self._data: DataInfo | None = None
        self._files: tuple[int, dict[str, bytes]] | None = None

    def observe(self, algo: Any, record: dict[str, Any], evaluation: dict[str, Any],
                exp: ExperimentConfig, spec: EnvSpec) -> None:
        """Score a validation evaluation of the learner's current policy, made under the
        decision rule ``exp`` and ``spec`` carry; keep its weights (and that rule) when it
        is the best so far."""
        sel = self.exp.selection
        value = score(evaluation, sel.metric, self.exp.env.initial_equity)
        seen = self.tracker.observe(algo.iteration, value)
        if seen.improved:
            module = algo.get_module()
            tensors = rllib_tensors(module.get_state(inference_only=True), self.exp.dqn.dueling)
            self.best = _Snapshot(
                iteration=algo.iteration,
                tensors={k: v.copy() for k, v in tensors.items()},  # the learner goes on
                obs_dim=int(module.observation_space.shape[0]), exp=exp, spec=spec,
                training={"iteration": algo.iteration,
                          "env_steps_sampled": record["env_steps_sampled"],
                          "env_steps_trained": record["env_steps_trained"]},
                evaluation=evaluation)
        t = self.tracker
        _append(self.run / keys.SELECTION_METRICS, {
            "kind": "evaluation", "iteration": algo.iteration, "metric": sel.metric,
            "score": value if math.isfinite(value) else None, "improved": seen.improved,
            "best_iteration": t.best_iteration,
            "best_score": t.best_score if t.best_score is not None
            and math.isfinite(t.best_score) else None,
            "evaluations_without_improvement": t.since_improvement,
            "patience": sel.patience})
        self.progress(f"selection @ iter {algo.iteration}: {sel.metric} {value:+.4g}"
                      + (" (new best)" if seen.improved else
                         f" (best {t.best_score:+.4g} at iter {t.best_iteration}; "
                         f"{t.since_improvement} without improvement)"))

    def files(self) -> dict[str, bytes]:
        """The bundle of the best policy, with its own validation evaluation."""
        best = self.best
        if best is None:
            raise ConfigError("no policy was evaluated on validation")
        if self._files is None or self._files[0] != best.iteration:
            self._files = (best.iteration, bundle_files(
                best.tensors, best.exp, best.spec, best.obs_dim, training=best.training,
                evaluation=best.evaluation))
        return self._files[1]

    def publish(self, iteration: int) -> PublishDecision:
        """Publish the best policy to ``candidate`` if it qualifies (``decide``); the
        decision is logged either way."""
        if self._data is None:
            self._data = data_info(self.spec)
        sel = self.exp.selection
        best = self.best
        decision = decide(self.store, iteration=iteration, metric=sel.metric,
                          min_improvement=sel.min_improvement,
                          require_beat_flat=sel.require_beat_flat,
                          min_evidence_t=sel.min_evidence_t,
                          best_iteration=best.iteration if best else None,
                          best_evaluation=best.evaluation if best else None,
                          initial_equity=self.exp.env.initial_equity, data=self._data,
                          published=self.published)
        if decision.publish and best is not None:
            version = self.store.publish(
                self.files(), channel="candidate",
                reason=f"training iteration {best.iteration}: best on validation")
            self.published[best.iteration] = version
            decision = dataclasses.replace(decision, version=version)
        _append(self.run / keys.SELECTION_METRICS, decision.to_record())
        self.progress(decision.line())
        return decision

    def evaluate_best(self, split: str) -> dict[str, Any]:
        """Evaluate the selected policy (rebuilt from its bundle) on ``split``."""
        best = self.best
        if best is None:
            raise ConfigError("no policy was evaluated on validation")
        policy = Policy(self.files())
        return _evaluate(policy.q_values, best.exp, best.spec, split, best.iteration,
                         self.run)


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _progress_line(r: dict[str, Any]) -> str:
    eps = " ".join(f"{k}:{v:.3g}" for k, v in sorted(r["epsilon"].items()))
    return (f"iter {r['iteration']:>4} | {r['time_s']:7.1f}s | sampled "
            f"{_fmt(r['env_steps_sampled'], '.0f')} trained {_fmt(r['env_steps_trained'], '.0f')}"
            f" | return {_fmt(r['episode_return_mean'], '.3f')} | loss "
            f"{_fmt(r['qf_loss'], '.4g')} | q {_fmt(r['qf_mean'], '.3g')} | eps {eps}")


def _eval_line(e: dict[str, Any]) -> str:
    parts = []
    for name, per in e["datasets"].items():
        g = per["greedy"]
        oracle = (f" oracle {per['oracle']['final_equity']:.0f} filter "
                  f"{per['bayes_filter']['final_equity']:.0f} (captured "
                  f"{_fmt(per.get('oracle_fraction'), '.0%')} of oracle, "
                  f"{_fmt(per.get('filter_fraction'), '.0%')} of filter)"
                  if "oracle" in per else "")
        halt = {k: " (halted)" if per[k].get("halted") else ""
                for k in ("greedy", "buy_and_hold", "random")}
        parts.append(f"{name}: greedy {g['final_equity']:.0f}{halt['greedy']} (sharpe "
                     f"{_fmt(g['sharpe'], '.2f')}, gross {_fmt(g.get('gross_return'), '.1%')}"
                     f", cost drag {_fmt(g.get('cost_drag'), '.1%')}, "
                     f"{_fmt(g.get('trades_per_day'), '.1f')} trades/day) "
                     f"flat {per['flat']['final_equity']:.0f} "
                     f"hold {per['buy_and_hold']['final_equity']:.0f}{halt['buy_and_hold']} "
                     f"random {per['random']['final_equity']:.0f}{halt['random']}{oracle}")
    rule = ""
    if e.get("calibration"):
        rule = (f" [cost_multiple {e['decision']['cost_multiple']:g} chosen on validation of "
                + ", ".join(f"{c['cost_multiple']:g}" for c in e["calibration"]) + "]")
    return f"eval @ iter {e['iteration']} ({e['split']}){rule}: " + "; ".join(parts)
