"""``raytrade exchange sim``: the loopback Binance exchange
(``actors/simulators/binance_exchange.py``) or, with ``--venue delta``, the loopback Delta
Exchange (``scripts/delta_cli.py``), argument parsing only.

Prices come from a replay feed: either one this command starts from bar files
(``--replay FILES``; its URLs are printed, so the paper and the live trader can follow the
very bars the exchange fills on) or one already running (``--replay-url``). The command
prints one JSON line with the URLs, then serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

from raytrade.envs.errors import ConfigError


def _cmd_exchange_sim(args: argparse.Namespace) -> int:
    if args.venue == "delta":
        from raytrade.scripts.delta_cli import run_delta_sim

        return run_delta_sim(args)
    from raytrade.actors.simulators.binance_exchange import BinanceExchangeSim
    from raytrade.actors.simulators.exchange_accounts import load_accounts
    from raytrade.actors.simulators.exchange_book import default_specs
    from raytrade.actors.simulators.exchange_faults import load_faults
    from raytrade.actors.simulators.exchange_gate import Limits
    from raytrade.actors.simulators.exchange_prices import FeedPrices, ReplayPrices
    from raytrade.actors.simulators.replay_server import ReplayServer, replay_tables
    from raytrade.envs.io import load_bars
    from raytrade.envs.market import resolve_sources

    if bool(args.replay) == bool(args.replay_url):
        raise ConfigError("give the prices: --replay FILES (start a replay feed) or "
                          "--replay-url URL (a running `raytrade feed replay`), not both")
    accounts = load_accounts(args.accounts)
    faults = load_faults(args.faults) if args.faults else ()
    symbols = [s.strip().upper() for s in (args.symbols or "").split(",") if s.strip()]
    replay: ReplayServer | None = None
    reference: dict[str, float] = {}
    if args.replay:
        tables = replay_tables([load_bars(p) for p in resolve_sources(tuple(args.replay))],
                               args.interval)
        replay = ReplayServer(tables, speed=args.speed, start=args.start, host=args.host,
                              port=args.replay_port, start_on_connect=args.start_on_connect)
        prices: Any = ReplayPrices(replay, half_spread_bps=args.half_spread_bps)
        symbols = symbols or sorted(replay.tables)
        unknown = sorted(set(symbols) - set(replay.tables))
        if unknown:
            raise ConfigError(f"--symbols {unknown} are not in the replayed files "
                              f"({sorted(replay.tables)})")
        # filters scaled by the price where the replay starts (before any bar closes)
        reference = {s: float(t.close[replay.start]) for s, t in replay.tables.items()}
    else:
        prices = FeedPrices(args.replay_url, half_spread_bps=args.half_spread_bps)
        if not symbols:
            raise ConfigError("--replay-url needs --symbols (the symbols to trade)")
    sim = BinanceExchangeSim(accounts, prices, specs=default_specs(symbols, prices, reference),
                             faults=faults,
                             host=args.host, port=args.port, skew_ms=args.skew_ms,
                             listen_key_ttl_s=args.listen_key_ttl,
                             limits=Limits(spot_weight_1m=args.weight_limit,
                                           futures_weight_1m=args.futures_weight_limit))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        info: dict[str, Any] = {"rest_url": "", "ws_url": "", "symbols": symbols,
                                "accounts": [a.key for a in accounts]}
        if replay is not None:
            async with replay:
                with sim:
                    info.update(rest_url=sim.rest_url, ws_url=sim.ws_url,
                                replay={"ws_url": replay.ws_url, "rest_url": replay.rest_url})
                    print(json.dumps(info), flush=True)
                    await stop.wait()
        else:
            with sim:
                info.update(rest_url=sim.rest_url, ws_url=sim.ws_url,
                            replay={"rest_url": args.replay_url})
                print(json.dumps(info), flush=True)
                await stop.wait()

    asyncio.run(main())
    return 0


def add_exchange_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``exchange sim``."""
    ex = sub.add_parser("exchange", help="the loopback exchange for live-trading tests")
    esub = ex.add_subparsers(dest="exchange_command", required=True)
    sim = esub.add_parser("sim", allow_abbrev=False,
                          help="serve Binance spot and USD-M futures order endpoints and user "
                               "streams on loopback, filling at a replay feed's prices")
    sim.add_argument("--venue", choices=("binance", "delta"), default="binance",
                     help="which exchange to simulate (default binance; delta: Delta "
                          "Exchange India's /v2 API and sockets, prices from --replay)")
    sim.add_argument("--accounts", required=True, metavar="FILE",
                     help="JSON list of {key, secret, spot: {asset: amount}, "
                          "futures_wallet}; must be readable by its owner only (chmod 600)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=0, help="port (default 0: any free one, "
                     "printed)")
    sim.add_argument("--faults", metavar="FILE",
                     help="JSON {\"faults\": [{\"kind\": ..., \"at_order\": N}, ...]}")
    sim.add_argument("--symbols", help="comma-separated symbols to trade (default: the "
                     "replay's)")
    sim.add_argument("--skew-ms", type=int, default=0,
                     help="server time minus wall clock, ms (tests of clock sync)")
    sim.add_argument("--listen-key-ttl", type=float, default=3600.0,
                     help="seconds a listen key lives without keepalive (default 3600)")
    sim.add_argument("--weight-limit", type=int, default=6000,
                     help="spot request weight per minute per IP (Binance: 6000); raise it "
                          "for replays much faster than real time")
    sim.add_argument("--futures-weight-limit", type=int, default=2400,
                     help="futures request weight per minute (Binance: 2400)")
    sim.add_argument("--rate-quota", type=int, default=10_000,
                     help="delta: request weight per fixed 5-minute window (Delta India: "
                          "10000); raise it for fast replays")
    sim.add_argument("--half-spread-bps", type=float, default=1.0,
                     help="bid and ask around the bar close, bps (default 1)")
    src = sim.add_argument_group("prices")
    src.add_argument("--replay", nargs="+", metavar="FILE",
                     help="start a replay feed of these OHLCV files (or sample:SYMBOL)")
    src.add_argument("--replay-url", help="REST URL of a running `raytrade feed replay`")
    src.add_argument("--interval", help="replay at this interval, resampled (default: the "
                     "files')")
    src.add_argument("--speed", type=float, default=60.0,
                     help="replay clock: virtual ms per real ms (default 60)")
    src.add_argument("--start", type=int, default=0, help="first bar the replay streams")
    src.add_argument("--replay-port", type=int, default=0,
                     help="the replay feed's port (default 0: any free one, printed)")
    src.add_argument("--start-on-connect", action="store_true",
                     help="start the replay clock at its first subscription")
    sim.set_defaults(func=_cmd_exchange_sim)
