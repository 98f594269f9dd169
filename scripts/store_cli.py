"""``raytrade store ls``, ``raytrade promote`` and ``raytrade rollback``: thin wrappers over
``policy_store.py`` and ``promotion.py``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from raytrade.algos.manifest import BundleManifest
from raytrade.algos.storage.policy_store import CHANNELS, PolicyStore, parse_version, version_name
from raytrade.envs.errors import RaytradeError


def _store(args: argparse.Namespace) -> PolicyStore:
    return PolicyStore(args.store, endpoint_url=args.s3_endpoint_url)


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + "Z"


def _cmd_ls(args: argparse.Namespace) -> int:
    store = _store(args)
    pointers = {c: store.channel(c) for c in CHANNELS}
    rows: list[dict[str, Any]] = []
    for v in store.versions():
        channels = [c for c, p in pointers.items() if p and p.version == v]
        try:
            m = BundleManifest.from_dict(store.manifest(v))
        except RaytradeError as exc:  # an older format or a broken manifest: say why
            rows.append({"version": version_name(v), "created": "-", "experiment": None,
                         "iteration": None, "validation_sharpe": {}, "channels": channels,
                         "unreadable": str(exc)})
            continue
        evaluation = m.evaluation or {}
        sharpe = {k: round(d["greedy"]["sharpe"], 2)
                  for k, d in (evaluation.get("datasets") or {}).items()
                  if isinstance(d.get("greedy", {}).get("sharpe"), int | float)}
        rows.append({"version": version_name(v), "created": _when(m.created_ms),
                     "experiment": m.experiment, "iteration": m.training.iteration,
                     "validation_sharpe": sharpe, "channels": channels})
    if args.json:
        print(json.dumps({"store": store.uri, "versions": rows,
                          "channels": {c: p.version if p else None
                                       for c, p in pointers.items()}}, indent=1))
        return 0
    print(f"store {store.uri}")
    for c, p in pointers.items():
        where = f"{version_name(p.version)} ({p.kind} by {p.by} at {_when(p.moved_ms)}: " \
                f"{p.reason})" if p else "-"
        print(f"  {c:<9} -> {where}")
    for r in rows:
        marks = ",".join(r["channels"])
        print(f"{r['version']}  {r['created']}  {r['experiment']}  iter {r['iteration']}  "
              f"validation sharpe {r['validation_sharpe'] or '-'}"
              + (f"  [{marks}]" if marks else "")
              + (f"  UNREADABLE: {r['unreadable']}" if "unreadable" in r else ""))
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    from raytrade.algos.storage.promotion import GateLimits, PaperLimits, promote

    store = _store(args)
    limits = GateLimits(min_bars=args.min_bars, min_sharpe=args.min_sharpe,
                        max_drawdown=args.max_drawdown)
    version = parse_version(args.version) if args.version else None
    verdict, pointer = promote(store, args.channel, reason=args.reason, version=version,
                               limits=limits, force=args.force,
                               paper_limits=PaperLimits(
                                   require_beat_flat=not args.allow_below_flat,
                                   min_evidence_t=args.min_evidence_t))
    print(json.dumps({"channel": args.channel, "passed": verdict.passed,
                      "reasons": verdict.reasons, "evidence": verdict.actors,
                      "moved_to": version_name(pointer.version) if pointer else None,
                      "kind": pointer.kind if pointer else None}, indent=1, default=str))
    if pointer is None:
        print(f"not promoted: {verdict.summary()} (use --force to override; it is logged)",
              file=sys.stderr)
        return 1
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    store = _store(args)
    to = parse_version(args.to) if args.to else None
    pointer = store.rollback(args.channel, to=to, reason=args.reason)
    print(f"{args.channel} -> {version_name(pointer.version)} (was "
          f"{version_name(pointer.previous) if pointer.previous else '-'})")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="store URI: file:///path or s3://bucket/prefix")
    p.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default: AWS, or "
                   "$RAYTRADE_S3_ENDPOINT_URL)")


def add_store_commands(sub: Any) -> None:
    """Register ``store``, ``promote`` and ``rollback`` on the top-level subparsers."""
    st = sub.add_parser("store", help="inspect a policy store")
    ssub = st.add_subparsers(dest="store_command", required=True)
    ls = ssub.add_parser("ls", help="versions, channels and their last moves")
    _common(ls)
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_cmd_ls)

    pr = sub.add_parser("promote", help="candidate -> paper, or paper -> live through the gate")
    _common(pr)
    pr.add_argument("--channel", required=True, choices=["paper", "live"])
    pr.add_argument("--version", help="version to promote (default: the source channel's)")
    pr.add_argument("--reason", required=True, help="why; recorded in the move log")
    pr.add_argument("--force", action="store_true",
                    help="move even if the gate fails (logged as forced, with the verdict)")
    pr.add_argument("--allow-below-flat", action="store_true",
                    help="paper gate: accept a candidate that did not beat flat after costs "
                    "on validation (default: refuse it; any finite validation result then "
                    "passes)")
    pr.add_argument("--min-evidence-t", type=float, default=0.0,
                    help="paper gate: also require the candidate's validation returns to be "
                    "this many standard errors above zero on every dataset (the shipped "
                    "experiments publish only at 2 or more; default 0: off)")
    pr.add_argument("--min-bars", type=int, default=288,
                    help="live gate: bars of paper trading on the version, per actor")
    pr.add_argument("--min-sharpe", type=float, default=0.0,
                    help="live gate: annualized paper Sharpe, per actor")
    pr.add_argument("--max-drawdown", type=float, default=0.2,
                    help="live gate: maximum paper drawdown, fraction of peak")
    pr.set_defaults(func=_cmd_promote)

    rb = sub.add_parser("rollback", help="move a channel back to an earlier version")
    _common(rb)
    rb.add_argument("--channel", required=True, choices=list(CHANNELS))
    rb.add_argument("--to", help="version (default: the one before the current)")
    rb.add_argument("--reason", required=True, help="why; recorded in the move log")
    rb.set_defaults(func=_cmd_rollback)
