"""DQN training throughput, our trading env against CartPole-v1 under the same settings;
prints JSON.

For each configuration a private local Ray runs ``Algorithm.train()`` for ``--seconds``
after a warm-up, and we report env steps sampled and trained per second plus where the
training step spends its time (RLlib's own timers: env-runner sampling, replay add,
replay sample, learner update, weight sync), as mean seconds; every timer is averaged over
the iterations that reported it (an iteration without the event reports NaN). The
warm-up lasts until samples and training both flow (at least 2 iterations): a fresh clone
first compiles its kernels, which must not be timed.

Configurations, all with the same network (MLP 128x128), batch 256, n-step 3, replay
ratio 1 and the Ape-X runner:
- ``stock``: RLlib's own DQN training step (synchronous sampling, its sample/train
  alternation) with its sampling defaults (1 env per runner,
  ``rollout_fragment_length="auto"``, which resolves to n_step);
- ``tuned-sync``: our training step (``apex_dqn.py``) with synchronous sampling, 16 envs
  per runner (our VectorTradingEnv, or gymnasium's SyncVectorEnv for CartPole), fragments
  of 32 steps;
- ``tuned-async``: the same with Ape-X asynchronous sampling (needs remote runners);
- ``compact``: the compact Ape-X pipeline (``algos/apex_compact.py``, the default since
  issue 21): 64 envs per runner, fragments of 32 steps with batched numpy epsilon-greedy,
  compact replay with n-step targets built at sampling time, a learner thread and
  versioned weight sync (trading env only: its observations are windows of bars);
with 0, 1 and 2 remote env runners.

Where the time goes: for the episode modes RLlib's timers (mean seconds per training
step); for ``compact`` the pipeline's own (mean seconds per event: ``apex_wait_s`` per
wait of the main thread for fragments or for the learner to catch up, ``apex_ingest_s``
per fragment, ``apex_replay_sample_s``, ``apex_learner_update_s`` per update,
``apex_weights_sync_s`` per publication) plus the learner thread's idle fraction and
updates per second.
Usage: ``python scripts/bench_training.py [--seconds S] [--runners 0,1,2]
[--envs trading,cartpole] [--modes stock,tuned-sync,tuned-async] [--repeats N]``; with
``--repeats N`` every configuration is measured N times and ``results[config]["summary"]``
gives the median, min and max of each number (``sampled_per_s`` etc.) over the runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import time
from typing import Any

from raytrade.algos.dqn_config import build_dqn_config
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.train import ray_session
from raytrade.scripts.bench_stats import summarize

TIMERS = ("env_runner_sampling_timer", "replay_buffer_add_data_timer",
          "replay_buffer_sampling_timer", "learner_update_timer", "synch_weights",
          "apex_wait_s", "apex_ingest_s", "apex_replay_sample_s", "apex_learner_update_s",
          "apex_weights_sync_s")
MODES = ("stock", "tuned-sync", "tuned-async", "compact")
WARMUP_LIMIT_S = 600.0  # a run that trains nothing in this long is reported as a failure


@dataclasses.dataclass(frozen=True)
class Learner:
    """Learner settings of a run: batch size and GPUs (``--batch``, ``--gpus``)."""

    batch: int = 256
    gpus: float = 0.0


def _config(env: str, runners: int, mode: str, learner: Learner = Learner()) -> Any:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: one of {MODES}")
    tuned = mode != "stock"
    compact = mode == "compact"
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    exp = dataclasses.replace(
        exp,
        network=dataclasses.replace(exp.network, hidden=(128, 128)),
        dqn=dataclasses.replace(exp.dqn, train_batch_size=learner.batch, replay_ratio=1.0,
                                n_step=3, learning_starts=max(1000, 2 * learner.batch)),
        replay=dataclasses.replace(exp.replay, layout="compact" if compact else "episodes"),
        resources=dataclasses.replace(exp.resources, num_env_runners=runners,
                                      num_envs_per_env_runner=(64 if compact else 16)
                                      if tuned else 1,
                                      rollout_fragment_length=32,
                                      async_sampling=mode in ("tuned-async", "compact"),
                                      num_learners=1 if learner.gpus > 0 else 0,
                                      num_gpus_per_learner=learner.gpus))
    config = build_dqn_config(exp)
    if not tuned:
        from ray.rllib.algorithms.dqn import DQN

        config.algo_class = DQN
        config = config.env_runners(rollout_fragment_length="auto")
    if env == "cartpole":
        config = config.environment("CartPole-v1").env_runners(gym_env_vectorize_mode="sync")
        config.env_config = {}  # .environment() merges env_config; CartPole takes none
    return config.reporting(min_time_s_per_iteration=2)


def measure(env: str, runners: int, mode: str, seconds: float,
            learner: Learner = Learner()) -> dict[str, Any]:
    with ray_session(None):
        algo = _config(env, runners, mode, learner).build_algo()
        try:
            # warm up: compile, fill the replay buffer past learning start, until both
            # sampling and training flow (at least 2 iterations)
            deadline = time.monotonic() + WARMUP_LIMIT_S
            warm = 0
            while True:
                result = algo.train()
                warm += 1
                trained_so_far = result.get("learners", {}).get("__all_modules__", {}).get(
                    "num_env_steps_trained_lifetime", 0)
                flowing = result.get("num_env_steps_sampled_lifetime", 0) > 0 \
                    and trained_so_far > 0
                if warm >= 2 and flowing:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{env}/{mode}/runners={runners}: no training after "
                                       f"{WARMUP_LIMIT_S:.0f} s of warm-up")
            s0 = result["num_env_steps_sampled_lifetime"]
            t0_trained = result["learners"]["__all_modules__"]["num_env_steps_trained_lifetime"]
            start = time.perf_counter()
            steps = 0
            timers: dict[str, list[float]] = {k: [] for k in TIMERS}
            busy_idle = [0.0, 0.0]
            updates = 0
            while time.perf_counter() - start < seconds:
                result = algo.train()
                steps += 1
                for k in TIMERS:  # an event absent from an iteration reports NaN there
                    value = float(result.get("timers", {}).get(k, math.nan))
                    if math.isfinite(value):
                        timers[k].append(value)
                busy_idle[0] += float(result.get("learner_busy_s", 0.0))
                busy_idle[1] += float(result.get("learner_idle_s", 0.0))
                updates += int(result.get("learner_updates", 0))
            wall = time.perf_counter() - start
            sampled = result["num_env_steps_sampled_lifetime"] - s0
            trained = (result["learners"]["__all_modules__"]["num_env_steps_trained_lifetime"]
                       - t0_trained)
            out: dict[str, Any] = {
                "sampled_per_s": round(sampled / wall), "trained_per_s": round(trained / wall),
                "iterations": steps,
                "mean_timer_s": {k: round(sum(v) / len(v), 5) for k, v in timers.items()
                                 if v}}
            if mode == "compact":
                out["learner_idle_fraction"] = round(busy_idle[1] / max(sum(busy_idle), 1e-9),
                                                     3)
                out["learner_updates_per_s"] = round(updates / wall, 1)
                out["replay_ratio"] = result.get("replay_ratio")
            return out
        finally:
            algo.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runners", default="0,1,2")
    parser.add_argument("--envs", default="trading,cartpole")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--repeats", type=int, default=1,
                        help="measure every configuration this many times (rounds of all "
                             "configurations, so slow drift of the machine hits all alike)"
                             " and report median, min and max")
    parser.add_argument("--batch", type=int, default=256, help="learner batch size")
    parser.add_argument("--gpus", type=float, default=0.0,
                        help="GPUs for one remote learner (0: train in the driver on CPU); "
                             "e.g. on a GPU machine: --gpus 1 --batch 512 (or 2048) "
                             "--runners 8,16 --modes compact")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    runners = [int(r) for r in args.runners.split(",")]
    # async needs remote runners; compact needs the trading env's windowed observations
    keys = [(env, mode, n) for env in args.envs.split(",") for mode in args.modes.split(",")
            for n in runners if not (mode == "tuned-async" and n == 0)
            and not (mode == "compact" and env != "trading")]
    runs: dict[str, list[dict[str, Any]]] = {f"{e}/{m}/runners={n}": [] for e, m, n in keys}
    for repeat in range(args.repeats):
        for env, mode, n in keys:
            key = f"{env}/{mode}/runners={n}"
            runs[key].append(measure(env, n, mode, args.seconds,
                                     Learner(args.batch, args.gpus)))
            print(json.dumps({key: runs[key][-1], "repeat": repeat + 1}), flush=True)
    results = {k: {"runs": v, "summary": summarize(v)} for k, v in runs.items()}
    print(json.dumps({"benchmark": "training", "seconds": args.seconds,
                      "batch": args.batch, "gpus": args.gpus,
                      "repeats": args.repeats,
                      "machine": {"python": platform.python_version(),
                                  "cpus": os.cpu_count()},
                      "results": results}, indent=2))

if __name__ == "__main__":
    main()
