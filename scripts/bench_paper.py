"""Load benchmark of live paper trading: many symbols replayed fast through real websockets;
prints JSON.

A replay server (``raytrade feed replay``, its own process) streams real 5m bars of
``--symbols`` symbols plus the BTCUSDT reference; one ``PaperSession`` per symbol (the code
inside each ``PaperTrader`` actor, here all on one event loop in one process) connects
over its own websocket, warms up over REST and trades a random policy. Each closed bar
produces about 6 frames per connection (in-progress kline, bookTicker and closed kline of
the symbol and of BTC), so ``--bars-per-s 8`` with 20 symbols is about 1,000 messages/s.

Reported:

- ``messages_per_s``: frames parsed and handled by all feed clients, over the live phase;
- ``decision_latency_ms``: from the closed kline's arrival at the client to its journaled
  step (fill or hold committed), p50 / p99 / max over the live bars of every symbol once
  all of them have warmed up;
- ``rss_mb``: resident memory sampled every second: after warm-up, peak, at the end, and
  the growth over the live phase;
- ``dropped``/``coalesced``: market events dropped by full queues, gaps backfilled, bars
  that arrived late and were processed as catch-up (``catchup_bars``), duplicates;
- ``peer_offline_bars_per_s``: the same ``SymbolTrader`` stepping the same bars with no
  feed (an in-memory journal), measured in the same run: the ceiling per core.

Symbols beyond the bundled markets are copies of them under new names (real bars).

Usage: ``python scripts/bench_paper.py [--symbols 20] [--bars-per-s 8] [--live-s 60]
[--spec light|full] [--queue-size 10000] [--export-every-s 10]
[--synchronous FULL|NORMAL]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from raytrade.actors.journal import Journal
from raytrade.actors.paper_broker import PaperBroker
from raytrade.actors.paper_config import PaperConfig
from raytrade.actors.paper_session import PaperSession
from raytrade.actors.session_factory import broker_config
from raytrade.actors.symbol_trader import SymbolTrader
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.export import random_bundle
from raytrade.algos.policy import Policy
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.envs.bars import Bar, BarTable
from raytrade.envs.features.warmup import feature_warmup_bars
from raytrade.scripts.bench_markets import experiment, markets, write_csvs


def offline_peer(exp: ExperimentConfig, policy: Policy, table: BarTable, ref: BarTable,
                 start: int, folder: Path) -> float:
    """Bars/s of ``SymbolTrader.process`` on the live part of ``table``, no feed."""
    config = PaperConfig(actor="peer", symbol=table.symbol)
    journal = Journal(folder / "peer.sqlite", synchronous="FULL")
    trader = SymbolTrader(table.symbol, exp.features, exp.env.window,
                          PaperBroker(broker_config(config, policy.manifest), table.symbol,
                                      "peer"), journal, lambda: policy)
    rows = [Bar(int(table.ts[i]), *map(float, table.ohlcv()[i])) for i in range(len(table))]
    for i in range(start):
        trader.process(rows[i], "warmup", float(ref.close[i]))
    t0 = time.perf_counter()
    for i in range(start, len(rows)):
        trader.process(rows[i], "live", float(ref.close[i]))
    elapsed = time.perf_counter() - t0
    journal.close()
    return (len(rows) - start) / elapsed


async def run_sessions(sessions: list[PaperSession], last_ts: int, timeout_s: float,
                       warm_ts: int, proc: psutil.Process) -> dict[str, Any]:
    """Run every session until all traded ``last_ts`` (or the timeout); measurements."""
    tasks = [asyncio.create_task(s.run()) for s in sessions]
    rss: list[tuple[float, float]] = []
    live_from: float | None = None
    msgs_at_live = 0
    skip = [0] * len(sessions)
    deadline = time.monotonic() + timeout_s
    next_sample = 0.0

    def done_ts() -> list[int]:
        return [(s.trader.last_ts or 0) if s.trader else 0 for s in sessions]

    def messages() -> int:
        return sum(s.feed.health.counters["messages"] for s in sessions if s.feed)

    while time.monotonic() < deadline and min(done_ts()) < last_ts:
        if any(t.done() for t in tasks):
            break
        now = time.monotonic()
        if live_from is None and min(done_ts()) >= warm_ts:
            live_from, msgs_at_live = now, messages()
            # steady state only: bars decided while other symbols still warmed up wait
            # on those (one GIL), which says nothing about the live path
            skip = [len(s.latencies_s) for s in sessions]
        if now >= next_sample:
            rss.append((now, proc.memory_info().rss / 2**20))
            next_sample = now + 1.0
        await asyncio.sleep(0.05)
    ended = time.monotonic()
    msgs_live = messages() - msgs_at_live
    for s in sessions:
        s.stop()
    for t in tasks:
        await t
    live_rss = [m for t, m in rss if live_from is not None and t >= live_from]
    return {"live_s": None if live_from is None else ended - live_from,
            "messages_live": msgs_live, "rss": rss, "live_rss": live_rss,
            "completed": min(done_ts()) >= last_ts,
            "latency_ms": np.concatenate([np.asarray(list(s.latencies_s)[k:]) for s, k in
                                          zip(sessions, skip, strict=True)]) * 1000.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--bars-per-s", type=float, default=8.0, help="replayed bars per second")
    ap.add_argument("--live-s", type=float, default=60.0, help="seconds of live replay")
    ap.add_argument("--spec", choices=("light", "full"), default="light")
    ap.add_argument("--queue-size", type=int, default=10_000)
    ap.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL",
                    help="journal durability: FULL fsyncs every bar (the default), NORMAL "
                    "survives a crash of the process but not of the machine")
    ap.add_argument("--export-every-s", type=float, default=10.0,
                    help="store export period per actor (the PaperConfig default)")
    args = ap.parse_args()

    exp = experiment(args.spec)
    warmup = feature_warmup_bars(exp.features, exp.env.window)
    start = warmup + 20
    live_bars = int(args.live_s * args.bars_per_s)
    tables, btc = markets(args.symbols, start + live_bars)
    speed = 300.0 * args.bars_per_s  # virtual ms per real ms: a 5m bar is 300,000 ms
    proc = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="raytrade-bench-paper-") as tmp:
        folder = Path(tmp)
        files = write_csvs([*tables, btc], folder)
        store = PolicyStore((folder / "store").as_uri())
        bundle = random_bundle(exp, seed=3)
        version = store.publish(bundle, channel="paper", reason="bench")
        policy = Policy(bundle, version)
        peer = offline_peer(exp, policy, tables[0], btc, start, folder)

        server = subprocess.Popen(
            [sys.executable, "-m", "raytrade.scripts.cli", "feed", "replay", "--data", *files,
             "--speed", str(speed), "--start", str(start), "--port", "0",
             "--start-on-connect"], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            info = json.loads(server.stdout.readline())
            sessions = [PaperSession(PaperConfig(
                actor=t.symbol.lower(), symbol=t.symbol, venue="replay",
                feed_url=info["ws_url"], rest_url=info["rest_url"],
                journal_dir=str(folder / "journals"), speed=speed, warmup_bars=warmup,
                queue_size=args.queue_size, stale_after_bars=50, export_every_s=args.export_every_s,
                synchronous=args.synchronous), store) for t in tables]
            t0 = time.monotonic()
            run = asyncio.run(run_sessions(
                sessions, int(tables[0].ts[-1]), timeout_s=args.live_s * 3 + 300,
                warm_ts=int(tables[0].ts[start - 1]), proc=proc))
            total_s = time.monotonic() - t0
        finally:
            server.terminate()
            server.wait(10)
        kinds: dict[str, int] = {}
        for s in sessions:
            journal = Journal(s.config.journal_path)
            for kind, n in journal.db.execute("SELECT kind, count(*) FROM bars GROUP BY kind"):
                kinds[kind] = kinds.get(kind, 0) + int(n)
            journal.close()

    lat = run["latency_ms"]
    counters: dict[str, int] = {}
    for s in sessions:
        for k, v in (s.feed.health.counters if s.feed else {}).items():
            counters[k] = counters.get(k, 0) + int(v)
    live_s = run["live_s"] or float("nan")
    live_rss = run["live_rss"] or [float("nan")]
    result = {
        "bench": "paper_trading_load",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": {"symbols": args.symbols, "bars_per_s": args.bars_per_s,
                   "live_bars": live_bars, "spec": args.spec, "warmup_bars": warmup,
                   "queue_size": args.queue_size, "replay_speed": speed,
                   "export_every_s": args.export_every_s,
                   "synchronous": args.synchronous},
        "completed": run["completed"],
        "live_s": round(live_s, 2),
        "total_s": round(total_s, 2),
        "messages_per_s": round(run["messages_live"] / live_s, 1),
        "decision_latency_ms": {
            "n": len(lat),
            "p50": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
            "p99": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
            "max": round(float(lat.max()), 2) if len(lat) else None},
        "rss_mb": {"after_warmup": round(live_rss[0], 1),
                   "peak": round(max(m for _, m in run["rss"]), 1),
                   "end": round(live_rss[-1], 1),
                   "growth_live": round(live_rss[-1] - live_rss[0], 1)},
        "dropped": {"queue": counters.get("dropped_queue", 0),
                    "malformed": counters.get("malformed", 0),
                    "rejected": counters.get("rejected", 0)},
        "coalesced": {"duplicates": counters.get("duplicates", 0),
                      "gaps_backfilled": counters.get("gaps_backfilled", 0),
                      "catchup_bars": kinds.get("catchup", 0)},
        "journaled_bars": kinds,
        "peer_offline_bars_per_s": round(peer, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
