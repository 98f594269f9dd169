"""``raytrade backtest`` (a published policy on bar files) and ``raytrade walkforward``
(rolling train/test folds): argument parsing only; the logic is in
``raytrade.algos.backtest`` and ``raytrade.algos.walkforward``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from raytrade.envs.errors import ConfigError


def _cmd_backtest(args: argparse.Namespace) -> int:
    from raytrade.algos.backtest import SUMMARY_KEYS, load_policy, run_backtest
    from raytrade.algos.backtest_report import render_html
    from raytrade.algos.backtest_selection import Selection, header_lines, parse_time

    sources = list(args.data or []) + [f"sample:{s}" for s in (args.symbols or "").split(",")
                                       if s.strip() and not args.data]
    if not sources:
        raise ConfigError("give --data FILE... or --symbols SYM,... (bundled samples)")
    start = None if args.start is None else parse_time("--start", args.start)
    end = None if args.end is None else parse_time("--end", args.end)
    selection = Selection(split=args.split, start_ms=start, end_ms=end)
    policy = load_policy(args.policy, endpoint_url=args.s3_endpoint_url)
    result = run_backtest(policy, sources, reference=args.reference, selection=selection,
                          seed=args.seed, momentum_bars=args.momentum_bars,
                          initial_equity=args.initial_equity)
    print("\n".join(header_lines(result.decisions)), file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "backtest.json").write_text(json.dumps(result.to_json(), indent=1))
    (out / "backtest.html").write_text(render_html(result))
    summary = {d: {name: {k: run.get(k) for k in SUMMARY_KEYS}
                   for name, run in per.items()} for d, per in result.datasets.items()}
    print(json.dumps({"report": str(out / "backtest.html"), "json": str(out / "backtest.json"),
                      "decisions": result.decisions, "datasets": summary}, indent=1))
    return 0


def add_backtest_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``backtest``."""
    p = sub.add_parser("backtest", help="backtest a published policy with baselines; JSON "
                       "and an HTML report")
    p.add_argument("--policy", required=True, help="STORE_URI[@VERSION] (default: newest)")
    p.add_argument("--data", nargs="+", help="OHLCV files or sample:SYMBOL")
    p.add_argument("--symbols", help="comma-separated bundled samples, when no --data")
    p.add_argument("--reference", help="reference-asset bars the features need (BTC); "
                   "optional when a traded file is that symbol or the policy's manifest "
                   "names a readable one")
    p.add_argument("--split", default="all", choices=("train", "validation", "test", "all"),
                   help="decide on this split only, cut by the fractions the policy trained "
                   "with (default: all)")
    p.add_argument("--start", help="decide from this open time on: ISO date or date-time "
                   "(UTC) or ms UTC; not with --split")
    p.add_argument("--end", help="decide on bars opening before this time (same forms)")
    p.add_argument("--s3-endpoint-url", help="S3-compatible endpoint")
    p.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    p.add_argument("--momentum-bars", type=int, default=48,
                   help="lookback of the momentum baseline, bars")
    p.add_argument("--initial-equity", type=float, default=None,
                   help="starting equity (default: the policy's training equity)")
    p.add_argument("--out", default="backtest-report", help="output folder")
    p.set_defaults(func=_cmd_backtest)


def _cmd_walkforward(args: argparse.Namespace) -> int:
    from raytrade.algos.backtest_report import render_walkforward_html
    from raytrade.algos.experiment import ExperimentConfig
    from raytrade.algos.storage.keys import walk_forward_report_key
    from raytrade.algos.storage.policy_store import PolicyStore
    from raytrade.algos.walkforward import dashboard_summary, duration_ms, run_walkforward

    if args.iterations is None and args.time_budget is None:
        raise ConfigError("give --iterations or --time-budget (per fold)")
    exp = ExperimentConfig.load(args.config)
    out = Path(args.out)
    store = PolicyStore(args.store or (out / "store").resolve().as_uri(),
                        endpoint_url=args.s3_endpoint_url)
    result = run_walkforward(exp, out / "folds", store, train_ms=duration_ms(args.train),
                             test_ms=duration_ms(args.test),
                             step_ms=duration_ms(args.step or args.test),
                             iterations=args.iterations, time_budget_s=args.time_budget,
                             address=args.address, momentum_bars=args.momentum_bars,
                             progress=lambda line: print(line, file=sys.stderr))
    out.mkdir(parents=True, exist_ok=True)
    (out / "walkforward.json").write_text(json.dumps(result.to_json()))
    (out / "walkforward.html").write_text(render_walkforward_html(result))
    name = f"{exp.name}-{args.train}-{args.test}-{args.step or args.test}"
    store.blobs.put(walk_forward_report_key(name),
                    json.dumps(dashboard_summary(result, name), default=float).encode())
    print(json.dumps({"report": str(out / "walkforward.html"),
                      "json": str(out / "walkforward.json"),
                      "aggregate": {d: {p: {k: r.get(k) for k in ("total_return", "sharpe",
                                                                  "max_drawdown",
                                                                  "sharpe_gap_in_minus_out",
                                                                  "max_fold_cost_drag",
                                                                  "halted_folds")}
                                        for p, r in per.items()}
                                    for d, per in result.aggregate.items()}}, indent=1))
    return 0


def add_walkforward_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]
                            ) -> None:
    """Register ``walkforward``."""
    p = sub.add_parser("walkforward", help="rolling train/test folds: train, publish and "
                       "test each; JSON and an HTML report")
    p.add_argument("--config", required=True, help="experiment TOML")
    p.add_argument("--train", required=True, help="training window, e.g. 60d")
    p.add_argument("--test", required=True, help="test window, e.g. 15d")
    p.add_argument("--step", help="fold step (default: the test window)")
    p.add_argument("--iterations", type=int, help="training iterations per fold")
    p.add_argument("--time-budget", type=float, help="training seconds per fold")
    p.add_argument("--store", help="store the fold policies go to (candidate); default "
                   "OUT/store")
    p.add_argument("--s3-endpoint-url", help="S3-compatible endpoint")
    p.add_argument("--address", help="Ray address (auto: the cluster); default a private "
                   "local Ray")
    p.add_argument("--momentum-bars", type=int, default=48)
    p.add_argument("--out", default="walkforward-report", help="output folder")
    p.set_defaults(func=_cmd_walkforward)
