"""The ``raytrade`` command line. Each subcommand parses arguments, calls the library, exits.

Exit codes: 0 success, 1 the input was wrong or an operation failed (the message says
which file, row and rule), 2 bad command-line usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from raytrade.envs.errors import RaytradeError, RaytradeWarning
from raytrade.scripts.backtest_cli import add_backtest_command, add_walkforward_command
from raytrade.scripts.config_reference import add_config_reference_command
from raytrade.scripts.dashboard_cli import add_dashboard_command
from raytrade.scripts.demo_cli import add_demo_command
from raytrade.scripts.dwx_cli import add_dwx_commands
from raytrade.scripts.exchange_cli import add_exchange_commands
from raytrade.scripts.live_cli import add_live_commands
from raytrade.scripts.paper_cli import add_paper_commands
from raytrade.scripts.store_cli import add_store_commands
from raytrade.scripts.tune_cli import add_tune_command


def _cmd_validate(args: argparse.Namespace) -> int:
    from raytrade.envs.calendar import ALWAYS
    from raytrade.envs.intervals import interval_to_ms
    from raytrade.envs.io import describe, load_bars, load_bars_repaired, write_bars
    from raytrade.envs.market import resolve_sources

    iv = interval_to_ms(args.interval) if args.interval else None
    calendar = ALWAYS
    if args.calendar_from:  # the market's calendar, as an experiment names it
        from raytrade.algos.experiment import ExperimentConfig
        calendar = ExperimentConfig.load(args.calendar_from).env.calendar
    files = resolve_sources(tuple(args.files))
    if args.repair:
        if len(files) != 1:
            print("error: --repair takes exactly one FILE", file=sys.stderr)
            return 2
        table, report = load_bars_repaired(files[0], interval_ms=iv, calendar=calendar)
        for change in report.changes:
            print(f"repaired: {change}")
        out = write_bars(table, args.repair)
        print(f"wrote {out}: {len(report.changes)} changes "
              f"({report.dropped} duplicates dropped, {report.filled} bars filled)")
        print(json.dumps(describe(table)))
        return 0
    for path in files:
        print(json.dumps(describe(load_bars(path, interval_ms=iv, calendar=calendar))))
    return 0


def _cmd_resample(args: argparse.Namespace) -> int:
    from raytrade.envs.io import describe, load_bars, write_bars
    from raytrade.envs.resample import resample

    table = resample(load_bars(args.file), args.to)
    write_bars(table, args.out)
    summary = describe(table)
    summary["file"] = str(args.out)
    print(json.dumps(summary))
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from raytrade.envs.fetch import fetch_klines

    report = fetch_klines(args.symbol, args.interval, args.start, args.end, args.data_dir,
                          base_url=args.base_url, timeout=args.timeout, retries=args.retries)
    print(json.dumps({"file": str(report.output), "bars": report.bars,
                      "downloaded": report.downloaded, "resumed": report.resumed,
                      "cached": report.cached, "unverified": report.unverified}))
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from raytrade.envs.costs import CostModel
    from raytrade.envs.io import load_bars
    from raytrade.envs.signals import simulate_signal_file

    fixed = 0.0 if args.no_slippage else args.slippage_bps
    costs = CostModel(fee_bps=args.fee_bps, fixed_slippage_bps=fixed,
                      borrow_bps_per_bar=args.borrow_bps_per_bar)
    summary = simulate_signal_file(load_bars(args.data), args.signals, costs,
                                   latency_bars=args.latency_bars,
                                   initial_equity=args.initial_equity)
    text = json.dumps(summary, indent=2)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(text + "\n")
    print(text)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from raytrade.algos.storage.policy_store import PolicyStore
    from raytrade.algos.train import train
    from raytrade.scripts.run_folder import open_run

    exp, blobs, run_dir = open_run(args)
    result = train(exp, run_dir, iterations=args.iterations, time_budget_s=args.time_budget,
                   resume=args.resume, address=args.address, eval_every=args.eval_every,
                   checkpoint_every=args.checkpoint_every, store=PolicyStore(blobs),
                   publish_every=args.publish_every, final_splits=args.final_splits)
    print(json.dumps({"iterations": result.iterations,
                      "env_steps_sampled": result.env_steps_sampled,
                      "env_steps_trained": result.env_steps_trained,
                      "wall_s": round(result.wall_s, 1),
                      "checkpoint": str(result.checkpoint),
                      "store": result.store_uri,
                      "published": [f"v{v:06d}" for v in result.published],
                      "best_iteration": result.best_iteration,
                      "best_score": result.best_score,
                      "selection_metric": exp.selection.metric,
                      "stopped_early": result.stopped_early,
                      "last_decision": result.decisions[-1].reason if result.decisions
                      else None,
                      "final": {e["split"]: e["iteration"] for e in result.evaluations
                                if e["split"] in args.final_splits}}))
    return 0


def _final_splits(text: str) -> tuple[str, ...]:
    splits = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in splits if s not in ("train", "validation", "test")]
    if bad or not splits:
        raise argparse.ArgumentTypeError(f"{text!r}: splits are a comma-separated list of "
                                         "train, validation, test")
    return tuple(dict.fromkeys(splits))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    parser = argparse.ArgumentParser(prog="raytrade", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="validate, repair, resample and fetch OHLCV files")
    dsub = data.add_subparsers(dest="data_command", required=True)
    val = dsub.add_parser("validate", help="check files; print a summary line per file")
    val.add_argument("files", nargs="+", metavar="FILE",
                     help="files, globs, sample:SYMBOL or backtesting:NAME")
    val.add_argument("--repair", metavar="OUT", help="repair mode: drop exact duplicates, "
                     "fill gaps, report each change and write OUT")
    val.add_argument("--interval", help="expected bar interval (default: from the file name "
                     "or the most common step)")
    val.add_argument("--calendar-from", metavar="EXPERIMENT",
                     help="validate under the trading calendar of this experiment TOML's "
                     "[env.calendar] (closures accepted, never filled; default 24/7)")
    val.set_defaults(func=_cmd_validate)
    res = dsub.add_parser("resample", help="resample to a higher timeframe (complete bars only)")
    res.add_argument("file", metavar="FILE")
    res.add_argument("--to", required=True, help="target interval, e.g. 15m, 1h, 4h, 1d")
    res.add_argument("--out", required=True, help="output file (.csv, .csv.gz or .parquet)")
    res.set_defaults(func=_cmd_resample)
    fet = dsub.add_parser("fetch", help="download Binance monthly kline archives")
    fet.add_argument("--symbol", required=True, help="e.g. BTCUSDT")
    fet.add_argument("--interval", default="5m", help="kline interval (default 5m)")
    fet.add_argument("--start", required=True, help="first month, YYYY-MM")
    fet.add_argument("--end", required=True, help="last month, YYYY-MM (inclusive)")
    fet.add_argument("--data-dir", default="data", help="data folder (default ./data)")
    fet.add_argument("--base-url", default="https://data.binance.vision",
                     help="archive site or mirror")
    fet.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    fet.add_argument("--retries", type=int, default=3, help="retries on transient errors")
    fet.set_defaults(func=_cmd_fetch)

    sim = sub.add_parser("simulate", help="backtest a target-position signal file")
    sim.add_argument("--data", required=True, help="OHLCV file")
    sim.add_argument("--signals", required=True,
                     help="CSV with a time column and a 'position' column, one row per bar")
    sim.add_argument("--json", required=True, help="where to write the summary JSON")
    sim.add_argument("--fee-bps", type=float, default=10.0, help="taker fee, bps (default 10)")
    slip = sim.add_mutually_exclusive_group()
    slip.add_argument("--slippage-bps", type=float, default=None,
                      help="fixed slippage in bps instead of the spread+impact model")
    slip.add_argument("--no-slippage", action="store_true", help="no slippage at all")
    sim.add_argument("--borrow-bps-per-bar", type=float, default=0.0,
                     help="borrow/funding cost per bar on shorts and borrowed cash, bps")
    sim.add_argument("--latency-bars", type=int, default=1,
                     help="bars between decision (at a close) and fill (at an open)")
    sim.add_argument("--initial-equity", type=float, default=10_000.0,
                     help="starting equity, quote currency")
    sim.set_defaults(func=_cmd_simulate)

    tr = sub.add_parser("train", help="train a DQN (Ape-X style) on Ray RLlib")
    tr.add_argument("--config", required=True, help="experiment TOML file")
    tr.add_argument("--store", help="run store: file:///path, a folder, or "
                    "s3://bucket/prefix (default runs/<name>)")
    tr.add_argument("--work-dir", help="local folder for RLlib checkpoints when the store "
                    "is S3 (default runs/<name>)")
    tr.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default: AWS, or "
                    "$RAYTRADE_S3_ENDPOINT_URL)")
    tr.add_argument("--publish-every", type=int, default=10,
                    help="iterations between policies published to candidate (0: at the "
                    "end only)")
    tr.add_argument("--address", help="Ray cluster address (e.g. auto); default: a "
                    "private local Ray")
    budget = tr.add_mutually_exclusive_group(required=True)
    budget.add_argument("--iterations", type=int, help="training iterations")
    budget.add_argument("--time-budget", type=float, help="seconds of training")
    tr.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    tr.add_argument("--eval-every", type=int, default=10, help="iterations between evaluations")
    tr.add_argument("--checkpoint-every", type=int, default=10,
                    help="iterations between checkpoints")
    tr.add_argument("--final-splits", type=_final_splits, default=("validation",),
                    metavar="SPLITS", help="comma-separated splits the selected policy is "
                    "evaluated on at the end, e.g. validation,test (default validation; "
                    "test is read only after the selection is decided)")
    tr.set_defaults(func=_cmd_train)
    add_tune_command(sub)

    add_store_commands(sub)
    add_paper_commands(sub)
    add_live_commands(sub)
    add_exchange_commands(sub)
    add_dwx_commands(sub)
    add_dashboard_command(sub)
    add_backtest_command(sub)
    add_walkforward_command(sub)

    add_demo_command(sub)
    add_config_reference_command(sub)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
    """raytrade's own warnings as ``warning: MESSAGE`` on stderr (they name the file and
    the numbers already); any other warning as Python shows it."""
    if issubclass(category, RaytradeWarning):
        print(f"warning: {message}", file=sys.stderr if file is None else file)
    else:
        _PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)


_PYTHON_SHOWWARNING = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``raytrade`` console script."""
    warnings.showwarning = _show_warning
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
    except RaytradeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
