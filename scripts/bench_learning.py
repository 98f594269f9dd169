"""How much of the oracle's out-of-sample return the trained policy captures, against env
steps and wall time, on the planted-signal market; prints JSON.

Trains the ``synthetic_regime`` experiment (or ``--config``) on a private local Ray for
``--seconds``, evaluating the greedy policy on the validation split every
``--eval-every`` iterations and on validation and test at the end. Each evaluation
reports the greedy, flat, buy-and-hold, random and oracle final equity (same env, costs
and accounting), the Bayes filter's (the best causal policy), ``oracle_fraction`` and
``filter_fraction``: the greedy log growth as a share of the oracle's and the filter's.
With ``--repeats N`` it trains N times (seeds: the experiment's, then +1, +2, ...) and
``summary`` gives, per split and dataset, the median, min and max over the runs of the
final ``oracle_fraction``, ``filter_fraction`` and greedy Sharpe.
Usage: ``python scripts/bench_learning.py [--seconds 600] [--eval-every 10] [--repeats N]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
from typing import Any

from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.storage.keys import TRAIN_METRICS
from raytrade.algos.train import train
from raytrade.scripts.bench_stats import summarize


def curve_point(evaluation: dict[str, Any], steps: dict[int, tuple[float, float]]
                ) -> dict[str, Any]:
    """One evaluation as a row of the learning curve."""
    sampled, wall = steps.get(evaluation["iteration"], (float("nan"), float("nan")))
    row: dict[str, Any] = {"iteration": evaluation["iteration"], "split": evaluation["split"],
                           "env_steps_sampled": sampled, "wall_s": wall}
    for name, per in evaluation["datasets"].items():
        row[name] = {k: round(per[k]["final_equity"], 1)
                     for k in ("greedy", "flat", "buy_and_hold", "random", "oracle",
                               "bayes_filter")
                     if k in per}
        row[name]["greedy_sharpe"] = per["greedy"]["sharpe"]
        row[name]["oracle_fraction"] = per.get("oracle_fraction")
        row[name]["filter_fraction"] = per.get("filter_fraction")
    return row


def final_shares(evaluations: list[dict[str, Any]]) -> dict[str, Any]:
    """The last evaluation of each split: per dataset, the greedy policy's share of the
    oracle's and of the Bayes filter's log growth, and its Sharpe."""
    out: dict[str, Any] = {}
    for evaluation in evaluations:  # in order: the last of each split wins
        out[evaluation["split"]] = {
            name: {"oracle_fraction": per.get("oracle_fraction"),
                   "filter_fraction": per.get("filter_fraction"),
                   "greedy_sharpe": per["greedy"]["sharpe"]}
            for name, per in evaluation["datasets"].items()}
    return out


def learn_once(exp: ExperimentConfig, seconds: float, eval_every: int) -> dict[str, Any]:
    """One training run of ``exp`` on a private local Ray: its learning curve and the
    final shares (:func:`final_shares`)."""
    steps: dict[int, tuple[float, float]] = {}

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)  # stdout carries only the JSON

    with tempfile.TemporaryDirectory(prefix="rt-bench-") as run:
        result = train(exp, run, time_budget_s=seconds, eval_every=eval_every,
                       checkpoint_every=10**9, final_splits=("validation", "test"),
                       progress=progress)
        with open(os.path.join(run, TRAIN_METRICS)) as fh:
            for line in fh:
                record = json.loads(line)
                steps[record["iteration"]] = (record["env_steps_sampled"], record["time_s"])
    return {"seed": exp.seed, "env_steps_sampled": result.env_steps_sampled,
            "env_steps_trained": result.env_steps_trained,
            "final": final_shares(result.evaluations),
            "curve": [curve_point(e, steps) for e in result.evaluations]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(experiment_path("synthetic_regime")))
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1,
                        help="train this many times (seeds: the experiment's, +1, +2, ...) "
                             "and report median, min and max of the final shares")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    exp = ExperimentConfig.load(args.config)
    runs = [learn_once(dataclasses.replace(exp, seed=exp.seed + i), args.seconds,
                       args.eval_every) for i in range(args.repeats)]
    print(json.dumps({
        "benchmark": "learning", "experiment": exp.name, "seconds": args.seconds,
        "repeats": args.repeats,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "summary": summarize([{"final": r["final"], "env_steps_sampled":
                               r["env_steps_sampled"]} for r in runs]),
        "runs": runs}, indent=1))

if __name__ == "__main__":
    main()
