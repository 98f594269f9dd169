"""``raytrade exchange sim --venue delta``: the loopback Delta Exchange
(``actors/simulators/delta_exchange.py``), argument handling only.

The simulator replays its own bar files (``--replay FILES``, any OHLCV file
``raytrade.envs.io`` reads, or ``sample:BTCUSDT``) on a virtual clock: they are its
candles, its public socket and the prices its orders fill at (``BTCUSDT`` bars trade as
Delta's ``BTCUSD``). It prints one JSON line with its URLs (``rest_url``,
``public_ws_url``, ``private_ws_url``), then serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

from raytrade.envs.errors import ConfigError


def run_delta_sim(args: argparse.Namespace) -> int:
    """Serve the loopback Delta exchange as ``args`` say (``exchange sim`` options)."""
    from raytrade.actors.simulators.delta_exchange import DeltaExchangeSim
    from raytrade.actors.simulators.delta_market import DeltaReplay
    from raytrade.actors.simulators.delta_products import default_products, delta_symbol
    from raytrade.actors.simulators.exchange_accounts import load_accounts
    from raytrade.actors.simulators.exchange_faults import load_faults
    from raytrade.actors.simulators.replay_server import replay_tables
    from raytrade.envs.io import load_bars
    from raytrade.envs.market import resolve_sources

    if args.replay_url or not args.replay:
        raise ConfigError("the Delta simulator replays its own bars: give --replay FILES "
                          "(--replay-url follows a Binance replay feed, which Delta's "
                          "sockets do not speak)")
    if args.rate_quota <= 0:
        raise ConfigError(f"--rate-quota must be > 0, got {args.rate_quota}")
    accounts = load_accounts(args.accounts)
    faults = load_faults(args.faults) if args.faults else ()
    tables = replay_tables([load_bars(p) for p in resolve_sources(tuple(args.replay))],
                           args.interval)
    replay = DeltaReplay(tables, speed=args.speed, start=args.start,
                         half_spread_bps=args.half_spread_bps,
                         start_on_connect=args.start_on_connect)
    products = default_products(replay.tables)
    wanted = {delta_symbol(s.strip()) for s in (args.symbols or "").split(",") if s.strip()}
    unknown = sorted(wanted - {p.symbol for p in products})
    if unknown:
        raise ConfigError(f"--symbols {unknown} are not in the replayed files "
                          f"({sorted(p.symbol for p in products)})")
    if wanted:
        products = tuple(p for p in products if p.symbol in wanted)
    sim = DeltaExchangeSim(accounts, replay=replay, products=products, faults=faults,
                           host=args.host, port=args.port, skew_ms=args.skew_ms,
                           rate_quota=args.rate_quota)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with sim:
            info: dict[str, Any] = {
                "venue": "delta", "rest_url": sim.rest_url, "ws_url": sim.public_ws_url,
                "public_ws_url": sim.public_ws_url, "private_ws_url": sim.private_ws_url,
                "symbols": sorted(p.symbol for p in products),
                "product_ids": {p.symbol: p.id for p in products},
                "accounts": [a.key for a in accounts]}
            print(json.dumps(info), flush=True)
            await stop.wait()

    asyncio.run(main())
    return 0
