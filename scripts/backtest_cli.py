"""``raytrade backtest``: a published policy on bar files, JSON metrics and an HTML report
(argument parsing only; the logic is in ``raytrade.algos.backtest``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from raytrade.envs.errors import ConfigError


def _cmd_backtest(args: argparse.Namespace) -> int:
    from raytrade.algos.backtest import load_policy, run_backtest
    from raytrade.algos.backtest_report import render_html

    sources = list(args.data or []) + [f"sample:{s}" for s in (args.symbols or "").split(",")
                                       if s.strip() and not args.data]
    if not sources:
        raise ConfigError("give --data FILE... or --symbols SYM,... (bundled samples)")
    policy = load_policy(args.policy, endpoint_url=args.s3_endpoint_url)
    result = run_backtest(policy, sources, reference=args.reference, seed=args.seed,
                          momentum_bars=args.momentum_bars,
                          initial_equity=args.initial_equity)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "backtest.json").write_text(json.dumps(result.to_json(), indent=1))
    (out / "backtest.html").write_text(render_html(result))
    summary = {d: {name: {k: run.get(k) for k in ("total_return", "sharpe", "max_drawdown",
                                                   "trades", "fees")}
                   for name, run in per.items()} for d, per in result.datasets.items()}
    print(json.dumps({"report": str(out / "backtest.html"), "json": str(out / "backtest.json"),
                      "datasets": summary}, indent=1))
    return 0


def add_backtest_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``backtest``."""
    p = sub.add_parser("backtest", help="backtest a published policy with baselines; JSON "
                       "and an HTML report")
    p.add_argument("--policy", required=True, help="STORE_URI[@VERSION] (default: newest)")
    p.add_argument("--data", nargs="+", help="OHLCV files or sample:SYMBOL")
    p.add_argument("--symbols", help="comma-separated bundled samples, when no --data")
    p.add_argument("--reference", help="reference-asset bars the features need (BTC)")
    p.add_argument("--s3-endpoint-url", help="S3-compatible endpoint")
    p.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    p.add_argument("--momentum-bars", type=int, default=48,
                   help="lookback of the momentum baseline, bars")
    p.add_argument("--initial-equity", type=float, default=10_000.0)
    p.add_argument("--out", default="backtest-report", help="output folder")
    p.set_defaults(func=_cmd_backtest)
