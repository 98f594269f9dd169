"""``raytrade demo``: argument parsing, the run folder, and the terminal. The loop itself is
in ``demo.py``.

While the demo runs, file descriptors 1 and 2 point at ``<run>/logs/demo.log``: Python's
prints and logging, Ray's and RLlib's messages, C-level warnings and anything a child
inherits go there, and only the demo's own display reaches the terminal.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)


@contextmanager
def output_to_log(log_path: Path) -> Iterator[TextIO]:
    """Point fds 1 and 2 at ``log_path`` (appending); yield a stream on the terminal
    that was fd 1. Everything is restored on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        terminal.close()


def _cmd_demo(args: argparse.Namespace) -> int:
    from raytrade.envs.errors import RaytradeError
    from raytrade.scripts.demo import Demo, DemoOptions, check_run_dir, default_run_dir
    from raytrade.scripts.demo_display import Display
    from rich.console import Console

    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir()
    check_run_dir(run_dir)
    options = DemoOptions(run_dir=run_dir, config=args.config,
                          train_budget_s=args.train_budget, duration_s=args.duration,
                          speed=args.speed, port=args.port,
                          online_learning=not args.no_online_learning,
                          initial_equity=args.initial_equity,
                          paper_override=args.paper_override,
                          live_stage=args.live_stage)
    log_path = run_dir.resolve() / "logs" / "demo.log"
    with output_to_log(log_path) as terminal:
        display = Display(Console(file=terminal, soft_wrap=True),
                          plain_every_s=args.status_every)
        display.stage("raytrade", f"demo in {run_dir} (logs: {log_path})")
        try:
            Demo(options, display).run()
        except RaytradeError as exc:
            log.exception("demo failed")
            display.error(f"{exc} (details in {log_path})")
            return 1
        except Exception as exc:
            log.exception("demo failed")
            display.error(f"{exc.__class__.__name__}: {exc} (traceback in {log_path})")
            return 1
    return 0


def add_demo_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``demo``."""
    p = sub.add_parser("demo", help="the whole loop on this machine: train on the bundled "
                       "data, publish, promote, paper-trade a replayed feed with online "
                       "learning, dashboard")
    p.add_argument("--run-dir", help="a new or empty folder (default runs/demo/<UTC time>)")
    p.add_argument("--config", help="experiment TOML (default: the bundled ETH/BTC one)")
    p.add_argument("--train-budget", type=float, default=180.0,
                   help="seconds of training before the first policy, and between later "
                   "ones (default 180)")
    p.add_argument("--duration", type=float,
                   help="stop this many seconds after the start (default: at Ctrl-C or "
                   "when the replay ends)")
    p.add_argument("--speed", type=float, default=600.0,
                   help="replay clock, virtual ms per real ms (default 600: a 5m bar "
                   "every 0.5 s)")
    p.add_argument("--port", type=int, default=8501,
                   help="dashboard port (a free one if busy)")
    p.add_argument("--no-online-learning", action="store_true",
                   help="do not feed paper-trading transitions back to the learner")
    p.add_argument("--initial-equity", type=float, default=10_000.0,
                   help="each paper trader's starting balance, quote currency")
    p.add_argument("--paper-override", action="store_true",
                   help="demo override: paper-trade the first candidate even if it does not "
                   "beat flat after costs on validation (a forced move, logged and printed); "
                   "default: wait until a candidate passes the paper gate")
    p.add_argument("--live-stage", action="store_true",
                   help="also run a live trader per symbol against a loopback Binance "
                   "exchange filling at the replay's prices (signed orders, user stream, "
                   "reconciliation; follows paper; no money)")
    p.add_argument("--status-every", type=float, default=30.0,
                   help="seconds between status lines when the output is not a terminal")
    p.set_defaults(func=_cmd_demo)
