"""``raytrade live``: the live traders (one Ray actor per symbol) and the kill switch
(``live halt|flatten|resume``, ``live reconcile --adopt``, ``live status``). Argument
parsing only; the logic is in ``raytrade.actors`` and ``algos/storage/live_commands.py``.

Real money needs ``--mainnet`` spelled out; the default is the venue's testnet (a
terminal's demo account), and
``--dry-run`` journals the orders it would send and sends none. Keys never come from
flags (the process list and shell history would show them): environment variables or an
owner-only key file.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket

from raytrade.actors.venues.execution_registry import (
    DEFAULT_EXECUTION_VENUE,
    execution_venue_names,
)
from raytrade.actors.venues.registry import DEFAULT_VENUE, venue_names
from raytrade.envs.errors import ConfigError
from raytrade.scripts.paper_cli import alert_notifiers


def _configs(args: argparse.Namespace) -> list[object]:
    from raytrade.actors.live_config import LiveConfig, LiveLimits, Network
    from raytrade.actors.paper_config import PaperConfig

    symbols = tuple(s.strip() for s in args.symbols.split(",") if s.strip())
    if not symbols:
        raise ConfigError("--symbols needs at least one symbol")
    if (args.order_rest_url or args.loopback) and (args.mainnet or args.testnet):
        raise ConfigError("--order-rest-url and --loopback are the project's simulators: "
                          "they do not go with --testnet or --mainnet")
    network: Network = ("mainnet" if args.mainnet else
                        "loopback" if args.order_rest_url or args.loopback else "testnet")
    limits = LiveLimits(max_symbol_notional=args.max_symbol_notional,
                        max_total_notional=args.max_total_notional,
                        daily_loss_limit=args.daily_loss_limit,
                        max_orders_per_minute=args.max_orders_per_minute,
                        stale_after_s=args.stale_after_s)
    return [LiveConfig(
        paper=PaperConfig(actor=f"{args.name_prefix}{s.lower()}", symbol=s, venue=args.feed,
                          interval=args.interval, feed_url=args.feed_url,
                          rest_url=args.rest_url, files_dir=args.files_dir,
                          journal_dir=args.journal, channel=args.channel, speed=args.speed,
                          warmup_bars=args.warmup_bars, export_every_s=args.export_every_s),
        venue=args.venue, network=network, rest_url=args.order_rest_url,
        ws_url=args.order_ws_url, dry_run=args.dry_run, symbols=symbols,
        capital=args.capital, order_type=args.order_type,
        price_band_bps=args.price_band_bps, key_file=args.key_file,
        key_env_prefix=args.key_env_prefix, venue_config=args.venue_config,
        limits=limits) for s in symbols]


def _cmd_live(args: argparse.Namespace) -> int:
    action = getattr(args, "live_command", None)
    if action is not None:
        return int(args.live_func(args))
    if not args.store or not args.symbols:
        raise ConfigError("raytrade live needs --store and --symbols (or a subcommand: "
                          "halt, flatten, resume, reconcile, status)")
    from raytrade.actors.live_actor import run_live
    from raytrade.algos.train import ray_session

    configs = _configs(args)
    notifiers = alert_notifiers(args.webhook_env, args.telegram_chat,
                                args.telegram_token_env, os.environ)
    with ray_session(args.address):
        finals = run_live(configs, args.store, endpoint_url=args.s3_endpoint_url,  # type: ignore[arg-type]
                          notifiers=notifiers, duration_s=args.duration)
    print(json.dumps([{"actor": f.get("actor"), "live": f.get("live"),
                       "error": f.get("error")} for f in finals], indent=2, default=str))
    return 0


def operator() -> str:
    """Who runs this command (the OS user at this host), for the command's audit."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown user"
    return f"{user}@{socket.gethostname()} (cli)"


def _blobs(args: argparse.Namespace) -> object:
    from raytrade.algos.storage.blobstore import open_blobstore

    return open_blobstore(args.cmd_store, endpoint_url=args.cmd_s3_endpoint_url)


def _cmd_command(args: argparse.Namespace) -> int:
    from raytrade.algos.storage.live_commands import issue_command

    action = args.live_command
    if action == "reconcile":
        if not args.adopt:
            raise ConfigError("reconcile needs --adopt: accept the exchange's state for "
                              "the named actors (look at `raytrade live status` first)")
        action = "adopt"
    command = issue_command(_blobs(args), action, by=args.by or operator(),  # type: ignore[arg-type]
                            reason=args.reason, actors=tuple(args.actor or ()))
    print(json.dumps({"command": command.id, "action": command.action,
                      "actors": list(command.actors) or "all", "by": command.by}))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from raytrade.algos.storage import keys
    from raytrade.algos.storage.blobstore import NotFoundError

    blobs = _blobs(args)
    out = []
    for key in blobs.list(keys.LIVE):  # type: ignore[attr-defined]
        if key.endswith("/" + keys.LIVE_HEALTH):
            try:
                health = json.loads(blobs.get(key).data)  # type: ignore[attr-defined]
            except NotFoundError:
                continue
            out.append({k: health.get(k) for k in (
                "actor", "symbol", "venue", "network", "dry_run", "state", "halted",
                "position_qty", "equity", "day_pnl", "last_reconcile",
                "unresolved_faults")})
    print(json.dumps(out, indent=2, default=str))
    return 0


def add_live_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``live`` and its subcommands."""
    lv = sub.add_parser("live", allow_abbrev=False,
                        help="trade the store's live policy with real orders (testnet by "
                             "default), one Ray actor per symbol; or halt, flatten, "
                             "resume, reconcile them")
    lv.add_argument("--store", help="run store: file:///path or s3://bucket/x")
    lv.add_argument("--s3-endpoint-url", help="S3-compatible endpoint")
    lv.add_argument("--channel", default="live", help="channel to follow (default live)")
    lv.add_argument("--venue", default=DEFAULT_EXECUTION_VENUE,
                    choices=execution_venue_names(),
                    help="where orders go (actors/venues/execution_registry.py), e.g. "
                         "binance-spot (long/flat) or binance-futures (USD-M perpetuals, "
                         "long/short)")
    net = lv.add_mutually_exclusive_group()
    net.add_argument("--testnet", action="store_true",
                     help="orders to the venue's testnet or demo account (the default)")
    net.add_argument("--mainnet", action="store_true",
                     help="orders with REAL MONEY (only when spelled out)")
    lv.add_argument("--loopback", action="store_true",
                    help="orders to the project's simulator (a file-bridge venue's "
                         "--files-dir, or the --order-rest-url exchange)")
    lv.add_argument("--files-dir", help="a file-bridge venue's folder (the terminal's "
                    "MQL4/Files or MQL5/Files, or the simulator's)")
    lv.add_argument("--venue-config", help="the execution venue's own settings file "
                    "(a file bridge's lot sizes per symbol)")
    lv.add_argument("--dry-run", action="store_true",
                    help="journal the orders it would send and send none")
    lv.add_argument("--order-rest-url", help="the loopback exchange's REST URL "
                    "(`raytrade exchange sim`; 127.0.0.1 only)")
    lv.add_argument("--order-ws-url", help="the loopback exchange's websocket URL")
    lv.add_argument("--symbols", help="comma-separated, e.g. BTCUSDT,ETHUSDT")
    lv.add_argument("--feed", default=DEFAULT_VENUE, choices=venue_names(),
                    help="market-data venue (default binance: public mainnet klines)")
    lv.add_argument("--feed-url", help="market-data websocket base URL (replay)")
    lv.add_argument("--rest-url", help="market-data REST base URL (replay)")
    lv.add_argument("--interval", default="5m", help="bar interval (the policy's)")
    lv.add_argument("--journal", default="live-journals", help="journal folder")
    lv.add_argument("--capital", type=float, default=1000.0,
                    help="quote currency allocated to each symbol (default 1000)")
    lv.add_argument("--max-symbol-notional", type=float, default=1000.0)
    lv.add_argument("--max-total-notional", type=float, default=5000.0)
    lv.add_argument("--daily-loss-limit", type=float, default=100.0)
    lv.add_argument("--max-orders-per-minute", type=int, default=10)
    lv.add_argument("--stale-after-s", type=float, default=None,
                    help="no policy orders on a bar that closed longer ago than this "
                         "(market time; default two bar intervals)")
    lv.add_argument("--order-type", choices=("limit", "market"), default="limit",
                    help="limit: marketable limit IOC with a price band (default)")
    lv.add_argument("--price-band-bps", type=float, default=50.0)
    lv.add_argument("--key-file", help="owner-only JSON file with api_key and api_secret")
    lv.add_argument("--key-env-prefix", default=None,
                    help="keys from <PREFIX>_API_KEY and <PREFIX>_API_SECRET (default: the "
                         "venue's, e.g. RAYTRADE_BINANCE)")
    lv.add_argument("--speed", type=float, default=1.0,
                    help="bar clock speed-up (a replay feed's --speed)")
    lv.add_argument("--warmup-bars", type=int, default=None)
    lv.add_argument("--export-every-s", type=float, default=10.0)
    lv.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    lv.add_argument("--address", help="Ray address; default a private local Ray")
    lv.add_argument("--name-prefix", default="live-", help="actor name prefix")
    lv.add_argument("--webhook-env", metavar="VAR")
    lv.add_argument("--telegram-chat")
    lv.add_argument("--telegram-token-env", default="RAYTRADE_TELEGRAM_TOKEN")
    lv.set_defaults(func=_cmd_live)
    cmds = lv.add_subparsers(dest="live_command")
    for name, text in (("halt", "stop sending orders on every (or the named) live actor"),
                       ("flatten", "close positions, then halt"),
                       ("resume", "lift an operator's halt"),
                       ("reconcile", "with --adopt: accept the exchange's state after a "
                                     "reconciliation mismatch")):
        p = cmds.add_parser(name, help=text, allow_abbrev=False)
        p.add_argument("--store", dest="cmd_store", required=True)
        p.add_argument("--s3-endpoint-url", dest="cmd_s3_endpoint_url")
        p.add_argument("--actor", action="append",
                       help="an actor name (repeat); default: every live actor")
        p.add_argument("--reason", default="", help="why (journaled with who)")
        p.add_argument("--by", help="who (default: user@host)")
        if name == "reconcile":
            p.add_argument("--adopt", action="store_true", required=True)
        p.set_defaults(live_func=_cmd_command)
    st = cmds.add_parser("status", help="every live actor's state from the store")
    st.add_argument("--store", dest="cmd_store", required=True)
    st.add_argument("--s3-endpoint-url", dest="cmd_s3_endpoint_url")
    st.set_defaults(live_func=_cmd_status)
