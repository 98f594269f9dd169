"""What the trained policy learns on synthetic markets with a known answer, against env
steps and wall time; prints JSON.

``--scenario`` picks the market and the experiment (``learning_scenarios.py``):
``planted`` (default; the planted regime at a 1 bp fee), ``regime-costly`` (10 bp fee plus
modelled slippage), ``weak-drift`` and ``no-signal`` (markets on which the right answer is
to stay out). ``--config`` and ``--source`` override the scenario's experiment file and
market. Each run trains on a private local Ray for ``--budget-s`` seconds, evaluating the
greedy policy on the validation split every ``--eval-every`` iterations and on validation
and test at the end. Each evaluation reports the greedy, flat, buy-and-hold, random,
oracle and Bayes filter final equity (same env, costs and accounting), ``oracle_fraction``
and ``filter_fraction`` (the greedy log growth as a share of the oracle's and the
filter's). ``scenario`` adds, per split and dataset, what the scenarios measure: net
return, log growth and position changes per 1,000 bars of every policy, the cost-aware
filter and the greedy ``filter_share``. The test split is read once per run, at the end,
for this report only (nothing is selected on it).

With ``--repeats N`` it trains N times (seeds: the experiment's, then +1, +2, ...);
``summary`` gives the median, min and max over the runs of every number, and ``targets``
checks the scenario's targets on the test split's summary.
Usage: ``python scripts/bench_learning.py [--scenario S] [--budget-s 600] [--repeats N]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.publish_decision import deployable
from raytrade.algos.storage.keys import TRAIN_METRICS
from raytrade.algos.train import train
from raytrade.scripts.bench_stats import summarize
from raytrade.scripts.learning_scenarios import (
    SCENARIOS,
    Scenario,
    cost_aware_filter,
    scenario,
    scenario_experiment,
    scenario_metrics,
)


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


def wall_to_share(curve: list[dict[str, Any]], share: float) -> float | None:
    """Training wall seconds at the first validation evaluation whose greedy log growth
    reaches ``share`` of the Bayes filter's on every dataset (None: never in the run)."""
    for row in curve:
        if row["split"] != "validation":
            continue
        fractions = [v.get("filter_fraction") for k, v in row.items()
                     if isinstance(v, dict) and "filter_fraction" in v]
        if fractions and all(f is not None and f >= share for f in fractions):
            return float(row["wall_s"])
    return None


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
    """One training run of ``exp`` on a private local Ray: its learning curve, the shares
    (:func:`final_shares`) and the scenario metrics (``learning_scenarios.scenario_metrics``)
    of the selected policy's validation evaluation and of its one test evaluation, whether
    the run published it (``deployed`` in the metrics), why, and the decision rule it
    kept with the cost multiples it tried on validation."""
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
    # the selected policy's evaluations: its validation record (the one selection kept)
    # and the test record made once, after the last selection decision
    last = {e["split"]: e for e in result.evaluations
            if e["split"] != "validation" or e["iteration"] == result.best_iteration}
    # deployed: the selected policy passes the publication gate's evidence rules on its
    # validation record (``publish_decision.deployable``, as the walk-forward counts it)
    published, why = deployable(last.get("validation"), exp.selection, exp.env.initial_equity)
    metrics = {split: scenario_metrics(e, exp, cost_aware_filter(exp, split), published)
               for split, e in last.items() if split in ("validation", "test")}
    return {"seed": exp.seed, "published": published,
            "publication": why,
            "best_iteration": result.best_iteration,
            "decision": last["test"].get("decision") if "test" in last else None,
            "calibration": last["validation"].get("calibration"),
            "env_steps_sampled": result.env_steps_sampled,
            "env_steps_trained": result.env_steps_trained, "iterations": result.iterations,
            "wall_s": result.wall_s, "final": final_shares(list(last.values())),
            "scenario": metrics,
            "curve": [curve_point(e, steps) for e in result.evaluations]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="planted", choices=tuple(SCENARIOS))
    parser.add_argument("--config", default=None,
                        help="experiment file (default: the scenario's)")
    parser.add_argument("--source", default=None,
                        help="market replacing the experiment's sources (default: the "
                             "scenario's), e.g. synthetic:randomwalk:seed=2:volume=1000")
    parser.add_argument("--budget-s", "--seconds", dest="budget_s", type=float,
                        default=600.0, help="training seconds per run")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1,
                        help="train this many times (seeds: the experiment's, +1, +2, ...) "
                             "and report median, min and max of every number")
    parser.add_argument("--num-env-runners", type=int, default=None,
                        help="override the experiment's env runners (small machines)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the first run (default: the experiment's); runs "
                             "started in parallel processes each take their own")
    parser.add_argument("--layout", default=None, choices=("compact", "episodes"),
                        help="replay layout (default: the experiment's): compare the "
                             "compact pipeline with the episodes path in wall time")
    parser.add_argument("--share", type=float, default=0.7,
                        help="report the wall seconds until the greedy policy's validation "
                             "log growth first reaches this share of the Bayes filter's "
                             "(default 0.7)")
    parser.add_argument("--combine", nargs="+", default=None, metavar="JSON",
                        help="train nothing: merge the runs of these outputs of this "
                             "script (same scenario, e.g. one per seed run in parallel) "
                             "into one summary with the targets checked")
    args = parser.parse_args(argv)
    if args.combine:
        print(json.dumps(combine([json.loads(Path(p).read_text()) for p in args.combine]),
                         indent=1))
        return
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if not args.budget_s > 0:
        parser.error("--budget-s must be > 0")
    chosen = scenario(args.scenario)
    exp = ExperimentConfig.load(args.config or experiment_path(chosen.experiment))
    exp = scenario_experiment(chosen, exp, args.source)
    if args.num_env_runners is not None:
        exp = dataclasses.replace(exp, resources=dataclasses.replace(
            exp.resources, num_env_runners=args.num_env_runners))
    if args.layout is not None:
        exp = dataclasses.replace(exp, replay=dataclasses.replace(exp.replay,
                                                                  layout=args.layout))
    first = exp.seed if args.seed is None else args.seed
    runs = [learn_once(dataclasses.replace(exp, seed=first + i), args.budget_s,
                       args.eval_every) for i in range(args.repeats)]
    for run in runs:
        run["wall_s_to_filter_share"] = wall_to_share(run["curve"], args.share)
    summary, targets = summary_and_targets(chosen, runs)
    print(json.dumps({
        "benchmark": "learning", "scenario": chosen.name, "about": chosen.about,
        "experiment": exp.name, "sources": list(exp.data.sources),
        "layout": exp.replay.layout, "filter_share_threshold": args.share,
        "budget_s": args.budget_s, "seconds": args.budget_s, "repeats": args.repeats,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "targets": targets, "published_runs": sum(bool(r["published"]) for r in runs),
        "summary": summary, "runs": runs}, indent=1))


def summary_and_targets(chosen: Scenario, runs: list[dict[str, Any]]
                        ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Median, min and max over ``runs`` of every number, and the scenario's targets
    checked on the test split's summary."""
    summary = summarize([{"final": r["final"], "scenario": r["scenario"],
                          "env_steps_sampled": r["env_steps_sampled"],
                          **({"wall_s_to_filter_share": r["wall_s_to_filter_share"]}
                             if r.get("wall_s_to_filter_share") is not None else {})}
                         for r in runs])
    targets = [t.check(summary, f"scenario/test/{dataset}/")
               for t in chosen.targets for dataset in runs[0]["scenario"].get("test", {})]
    return summary, targets


def combine(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """One output from several of this script's outputs of the same scenario (their runs
    pooled; a seed that appears twice is refused, so a run is never counted twice)."""
    names = {o["scenario"] for o in outputs}
    if len(names) != 1:
        raise SystemExit(f"--combine: outputs of different scenarios {sorted(names)}")
    runs = [r for o in outputs for r in o["runs"]]
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--combine: seed repeated among the runs {sorted(seeds)}")
    chosen = scenario(names.pop())
    summary, targets = summary_and_targets(chosen, runs)
    return {**outputs[0], "repeats": len(runs), "targets": targets,
            "published_runs": sum(bool(r.get("published")) for r in runs),
            "summary": summary, "runs": runs, "combined_from": len(outputs)}


if __name__ == "__main__":
    main()
