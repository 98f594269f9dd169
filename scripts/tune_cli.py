"""``raytrade tune``: a hyperparameter search over the experiment's ``[tune]`` table on
Ray Tune. Argument parsing only; the logic is in ``raytrade.algos.tune``."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _cmd_tune(args: argparse.Namespace) -> int:
    from raytrade.algos.storage.policy_store import PolicyStore
    from raytrade.algos.tune import run_tune
    from raytrade.scripts.run_folder import open_run

    exp, blobs, run_dir = open_run(args, "-tune")
    outcome = run_tune(exp, run_dir, store=PolicyStore(blobs), address=args.address,
                       resume=args.resume)
    winner = outcome.winner
    summary: dict[str, Any] = {
        "store": blobs.uri, "metric": outcome.document["metric"],
        "trials": [{k: r[k] for k in ("trial_id", "status", "iterations", "best_score",
                                      "overrides")} for r in outcome.trials],
        "winner": None}
    if winner is not None:
        summary["winner"] = {
            "trial_id": winner["trial_id"], "validation_score": winner["best_score"],
            "overrides": winner["overrides"],
            "published": None if winner["version"] is None else f"v{winner['version']:06d}",
            "publication": winner.get("publication"),
            "test": {name: {policy: per[policy]["final_equity"]
                            for policy in ("greedy", "flat", "buy_and_hold")}
                     for name, per in winner["test"]["datasets"].items()}}
    print(json.dumps(summary, indent=1, default=float))
    return 0


def add_tune_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``tune``."""
    p = sub.add_parser("tune", help="hyperparameter search on Ray Tune ([tune] table); the "
                       "validation-best trial is published to candidate")
    p.add_argument("--config", required=True, help="experiment TOML file with a [tune] table")
    p.add_argument("--store", help="run store: file:///path, a folder, or "
                   "s3://bucket/prefix (default runs/<name>-tune)")
    p.add_argument("--work-dir", help="local folder for Tune's results when the store is "
                   "S3 (default runs/<name>-tune)")
    p.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default: AWS, or "
                   "$RAYTRADE_S3_ENDPOINT_URL)")
    p.add_argument("--address", help="Ray cluster address (e.g. auto); default: a private "
                   "local Ray")
    p.add_argument("--resume", action="store_true", help="continue an interrupted search "
                   "(Tune's restore: unfinished and errored trials go on from their "
                   "checkpoints)")
    p.set_defaults(func=_cmd_tune)
