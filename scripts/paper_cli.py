"""``raytrade paper`` (one paper-trading actor per symbol) and ``raytrade feed replay``
(the replay feed server): argument parsing only; the logic is in ``raytrade.actors``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING

from raytrade.actors.venues.registry import DEFAULT_VENUE, venue_names
from raytrade.envs.errors import ConfigError

if TYPE_CHECKING:
    from raytrade.actors.alerts import Notifier


def alert_notifiers(webhook_env: str | None, telegram_chat: str | None,
                    telegram_token_env: str, environ: Mapping[str, str]) -> list[Notifier]:
    """The alert notifiers ``raytrade paper`` was asked for. Their secrets (a webhook URL
    carries one in its path, a bot token is one) come from environment variables, never
    from flags, which the process list and shell history would show."""
    from raytrade.actors.alerts import TelegramNotifier, WebhookNotifier

    for name in (webhook_env, telegram_chat and telegram_token_env):
        if name and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError("--webhook-env and --telegram-token-env take the NAME of an "
                              "environment variable (the value is not shown here)")
    notifiers: list[Notifier] = []
    if webhook_env:
        url = environ.get(webhook_env)
        if not url:
            raise ConfigError(f"--webhook-env names ${webhook_env}, which is not set")
        notifiers.append(WebhookNotifier(url))
    if telegram_chat:
        token = environ.get(telegram_token_env)
        if not token:
            raise ConfigError(f"--telegram-chat needs the bot token in ${telegram_token_env}")
        notifiers.append(TelegramNotifier(token, telegram_chat))
    return notifiers


def _cmd_paper(args: argparse.Namespace) -> int:
    from raytrade.actors.paper_actor import run_paper
    from raytrade.actors.paper_config import PaperConfig
    from raytrade.algos.train import ray_session

    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    if not symbols:
        raise ConfigError("--symbols needs at least one symbol")
    configs = [PaperConfig(actor=f"{args.name_prefix}{s.lower()}", symbol=s, venue=args.feed,
                           interval=args.interval, feed_url=args.feed_url,
                           rest_url=args.rest_url, files_dir=args.files_dir,
                           journal_dir=args.journal,
                           channel=args.channel, initial_equity=args.initial_equity,
                           speed=args.speed, online_learning=args.online_learning,
                           warmup_bars=args.warmup_bars,
                           reference_symbol=args.reference_symbol) for s in symbols]
    notifiers = alert_notifiers(args.webhook_env, args.telegram_chat,
                                args.telegram_token_env, os.environ)
    with ray_session(args.address):
        finals = run_paper(configs, args.store, endpoint_url=args.s3_endpoint_url,
                           notifiers=notifiers, duration_s=args.duration)
    print(json.dumps([{k: f.get(k) for k in ("actor", "symbol", "trader", "processed_bars",
                                              "unresolved_faults", "error")} for f in finals],
                     indent=2, default=str))
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from raytrade.actors.simulators.replay_server import Faults, ReplayServer, replay_tables
    from raytrade.envs.io import load_bars
    from raytrade.envs.market import resolve_sources

    tables = replay_tables([load_bars(p) for p in resolve_sources(tuple(args.data))],
                           args.interval)
    server = ReplayServer(tables, speed=args.speed, start=args.start, host=args.host,
                          port=args.port, start_on_connect=args.start_on_connect,
                          faults=Faults.from_json(args.faults) if args.faults else None)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            print(json.dumps({"ws_url": server.ws_url, "rest_url": server.rest_url,
                              "symbols": sorted(server.tables),
                              "bars": server.stop - server.start}),
                  flush=True)
            await stop.wait()

    asyncio.run(main())
    return 0


def add_paper_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``paper`` and ``feed replay``."""
    # no abbreviated flags: a secret must never be taken for the name of its variable
    pa = sub.add_parser("paper", allow_abbrev=False,
                        help="paper-trade the store's policy on live or replayed "
                             "websocket feeds, one Ray actor per symbol")
    pa.add_argument("--store", required=True, help="run store: file:///path or s3://bucket/x")
    pa.add_argument("--s3-endpoint-url", help="S3-compatible endpoint")
    pa.add_argument("--channel", default="paper", help="channel to follow (default paper)")
    pa.add_argument("--feed", default=DEFAULT_VENUE, choices=venue_names(),
                    help="venue (the registry in actors/venues/registry.py); replay: the "
                         "`raytrade feed replay` server")
    pa.add_argument("--symbols", required=True, help="comma-separated, e.g. BTCUSDT,ETHUSDT")
    pa.add_argument("--interval", default="5m", help="bar interval (the policy's)")
    pa.add_argument("--feed-url", help="websocket base URL (testnet, Binance.US, replay)")
    pa.add_argument("--rest-url", help="REST base URL for kline backfill")
    pa.add_argument("--files-dir", help="a file-bridge venue's folder (DWX Connect: the "
                    "terminal's MQL4/Files or MQL5/Files)")
    pa.add_argument("--journal", default="paper-journals", help="journal folder")
    pa.add_argument("--address", help="Ray address (auto: the cluster); default a private "
                    "local Ray")
    pa.add_argument("--initial-equity", type=float, default=None,
                    help="starting paper balance (default: the policy's training equity)")
    pa.add_argument("--reference-symbol", help="the venue's symbol for the policy's "
                    "reference asset (default: the venue's spelling of the FeatureSpec's, "
                    "e.g. BTC-USD on Coinbase)")
    pa.add_argument("--warmup-bars", type=int, default=None,
                    help="history fetched over REST before the first decision "
                         "(default: what the policy's FeatureSpec needs)")
    pa.add_argument("--speed", type=float, default=1.0,
                    help="bar clock speed-up (match the replay server's --speed)")
    pa.add_argument("--online-learning", action="store_true",
                    help="push transitions to the training run's live-experience queue")
    pa.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    pa.add_argument("--name-prefix", default="paper-", help="actor name prefix")
    pa.add_argument("--webhook-env", metavar="VAR",
                    help="POST alerts to the webhook URL held in this environment variable "
                         "(Slack and Discord URLs carry their secret: never a flag)")
    pa.add_argument("--telegram-chat", help="send alerts to this Telegram chat id")
    pa.add_argument("--telegram-token-env", default="RAYTRADE_TELEGRAM_TOKEN",
                    help="environment variable holding the bot token (never a flag)")
    pa.set_defaults(func=_cmd_paper)

    feed = sub.add_parser("feed", help="market-data feeds")
    fsub = feed.add_subparsers(dest="feed_command", required=True)
    rp = fsub.add_parser("replay", help="serve historical bars as Binance streams over a "
                         "websocket, with REST klines")
    rp.add_argument("--data", nargs="+", required=True, help="OHLCV files or sample:SYMBOL")
    rp.add_argument("--interval", help="serve bars of this interval, resampled from the "
                    "files' finer bars (e.g. 1h from 5m files, for a 1h policy); default: "
                    "the files' own")
    rp.add_argument("--speed", type=float, default=60.0,
                    help="virtual ms per real ms (60: a 5m bar every 5 s)")
    rp.add_argument("--start", type=int, default=0, help="first bar streamed (earlier bars "
                    "are REST history)")
    rp.add_argument("--host", default="127.0.0.1")
    rp.add_argument("--port", type=int, default=9443)
    rp.add_argument("--start-on-connect", action="store_true",
                    help="start the clock at the first subscription")
    rp.add_argument("--faults", help="JSON faults keyed by bar index (tests), e.g. "
                    "'{\"skip_at\": [5010], \"rest_failures\": 2}'")
    rp.set_defaults(func=_cmd_replay)
