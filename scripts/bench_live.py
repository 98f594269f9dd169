"""Latency benchmark of live trading: bar close to order acknowledged, on the loopback
Binance exchange; prints JSON.

``raytrade exchange sim`` (its own process) replays real 5m bars of ``--symbols`` symbols
plus the BTCUSDT reference and fills orders at the replay's prices; one ``LiveSession``
per symbol (the code inside each ``LiveTrader`` actor, here all on one event loop in one
process, as on one small node) trades a random long/flat policy on it with the real
Binance client: signed REST over keep-alive connections, the user data stream for fills,
the orders journal in SQLite (``synchronous=FULL``: every intent and acknowledgement is on
disk before the next step).

Reported per symbol count, over ``--repeats`` runs (median, min, max of each run's
percentile):
- ``bar_to_ack_ms``: from the closed kline's arrival at the session to the exchange's
  acknowledgement of the first order of that bar: features, policy, the decisions
  journal, risk rules, the intent committed, the signed request and its reply;
- ``send_to_ack_ms``: the order request alone (intent committed to reply);
- ``first_bar_to_ack_ms``: each session's first live order, which pays one-time costs
  (the first inference, cold caches, all sessions starting at once), kept out of the
  percentiles above;
- ``orders``: orders acknowledged per run.

Every bar closes for all symbols at once, so with 20 symbols the sessions queue behind
one another on the process's cores: that queueing is part of the number. The replay runs
``300 / bar_s`` times faster than real 5m bars, so the exchange's request-weight limit
per minute is scaled by the same factor (each actor reconciles after every bar: about 30
weight, 600 per bar for 20 actors, well within Binance's 6,000 per minute at real speed).

Usage: ``python scripts/bench_live.py [--symbols 1 20] [--repeats 3] [--live-bars 60]
[--bar-s 1.0]``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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
from raytrade.actors.live_config import LiveConfig, LiveLimits
from raytrade.actors.live_session import LiveSession
from raytrade.actors.paper_config import PaperConfig
from raytrade.actors.venues.binance_auth import ApiKeys
from raytrade.actors.venues.binance_orders import BinanceExecution
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.export import random_bundle
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.envs.decision import DecisionRule
from raytrade.envs.features.warmup import feature_warmup_bars
from raytrade.scripts.bench_markets import markets
from raytrade.scripts.bench_stats import spread

KEY, SECRET = "benchKey0000000000000000000000000001", "benchSecret000000000000000000000001"


def experiment() -> ExperimentConfig:
    """The bundled experiment with a light FeatureSpec (short warm-up), long/flat,
    deciding on every bar with no switching margin: a random policy then trades often,
    which is what a latency benchmark needs (samples)."""
    exp = ExperimentConfig.load(experiment_path("eth_btc_5m"))
    spec = dataclasses.replace(exp.features, higher_timeframes=(), pivot_levels=2,
                               smc_level=1, regime_vol_long=96)
    env = dataclasses.replace(exp.env, positions=(0.0, 1.0), decision=DecisionRule())
    return dataclasses.replace(exp, features=spec, env=env)


def exchange(folder: Path, files: list[Path], speed: float, start: int, weight_limit: int
             ) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """``raytrade exchange sim`` with its replay of ``files``; its banner."""
    accounts = folder / "accounts.json"
    accounts.write_text(json.dumps([{"key": KEY, "secret": SECRET,
                                     "spot": {"USDT": "1000000"}}]))
    os.chmod(accounts, 0o600)
    proc = subprocess.Popen(
        [sys.executable, "-m", "raytrade.scripts.cli", "exchange", "sim", "--accounts",
         str(accounts), "--replay", *map(str, files), "--speed", str(speed), "--start",
         str(start), "--start-on-connect", "--weight-limit", str(weight_limit)],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


async def trade(sessions: list[LiveSession], last_ts: int, timeout_s: float) -> None:
    """Run the sessions until each traded its last bar (or the timeout)."""
    tasks = [asyncio.create_task(s.run()) for s in sessions]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not any(t.done() for t in tasks):
        if all(s.trader is not None and (s.trader.last_ts or 0) >= last_ts for s in sessions):
            break
        await asyncio.sleep(0.1)
    for s in sessions:
        s.stop()
    await asyncio.gather(*tasks)


def one_run(n_symbols: int, live_bars: int, bar_s: float) -> dict[str, Any]:
    """One measurement with ``n_symbols`` live sessions."""
    exp = experiment()
    start = feature_warmup_bars(exp.features, exp.env.window) + 10
    tables, btc = markets(n_symbols, start + live_bars)
    speed = 300_000 / (bar_s * 1000)
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        folder = Path(tmp)
        files = []
        for t in [*tables, btc]:
            path = folder / f"{t.symbol}_5m.csv"
            t.to_frame().to_csv(path, index=False)
            files.append(path)
        store = PolicyStore((folder / "store").as_uri())
        store.publish(random_bundle(exp, seed=5), channel="live", reason="benchmark")
        # the replay runs 300 / bar_s times faster than real bars, so the per-minute
        # request weight of per-bar reconciliation scales with it: Binance's 6,000 per
        # minute, scaled the same way (at real speed 20 actors use about 600 per bar)
        proc, info = exchange(folder, files, speed, start,
                              weight_limit=int(6000 * max(1.0, 300.0 / bar_s)))
        try:
            symbols = tuple(t.symbol for t in tables)
            sessions = []
            for t in tables:
                paper = PaperConfig(
                    actor=f"live-{t.symbol.lower()}", symbol=t.symbol, venue="replay",
                    feed_url=info["replay"]["ws_url"], rest_url=info["replay"]["rest_url"],
                    journal_dir=str(folder / "journals"), channel="live", speed=speed,
                    stale_after_bars=40, export_every_s=5.0)
                config = LiveConfig(
                    paper=paper, network="loopback", rest_url=info["rest_url"],
                    ws_url=info["ws_url"], symbols=symbols, capital=1000.0,
                    limits=LiveLimits(max_symbol_notional=10_000.0,
                                      max_total_notional=1_000_000.0,
                                      max_orders_per_minute=1000))
                execution = BinanceExecution("spot", info["rest_url"], info["ws_url"],
                                             ApiKeys(KEY, SECRET), timeout_s=5.0)
                sessions.append(LiveSession(config, store, execution))
            asyncio.run(trade(sessions, int(tables[0].ts[-1]), timeout_s=120 + 3 * live_bars))
        finally:
            proc.terminate()
            proc.wait(15)
    # each session's first live order pays one-time costs (the first inference, cold
    # caches, every session starting at once): reported apart, not in the percentiles
    first = np.array([s.bar_to_ack_ms[0] for s in sessions if s.bar_to_ack_ms])
    bar_to_ack = np.array([v for s in sessions for v in list(s.bar_to_ack_ms)[1:]])
    send_to_ack = np.array([v for s in sessions for v in s.ack_latencies_ms])

    def pct(x: np.ndarray[Any, Any], q: float) -> float | None:
        return round(float(np.percentile(x, q)), 3) if len(x) else None

    return {"bar_to_ack_ms": {"p50": pct(bar_to_ack, 50), "p99": pct(bar_to_ack, 99),
                              "max": pct(bar_to_ack, 100)},
            "first_bar_to_ack_ms": {"p50": pct(first, 50), "max": pct(first, 100)},
            "send_to_ack_ms": {"p50": pct(send_to_ack, 50), "p99": pct(send_to_ack, 99)},
            "orders": len(send_to_ack), "bars_with_orders": len(bar_to_ack)}


def main() -> None:
    """Parse arguments, run, print JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", type=int, nargs="+", default=[1, 20])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--live-bars", type=int, default=60)
    ap.add_argument("--bar-s", type=float, default=1.0,
                    help="real seconds per replayed 5m bar")
    args = ap.parse_args()
    results: dict[str, Any] = {}
    for n in args.symbols:
        runs = [one_run(n, args.live_bars, args.bar_s) for _ in range(args.repeats)]
        results[str(n)] = {
            "bar_to_ack_ms_p50": spread([r["bar_to_ack_ms"]["p50"] for r in runs]),
            "bar_to_ack_ms_p99": spread([r["bar_to_ack_ms"]["p99"] for r in runs]),
            "first_bar_to_ack_ms_max": spread([r["first_bar_to_ack_ms"]["max"]
                                               for r in runs]),
            "send_to_ack_ms_p50": spread([r["send_to_ack_ms"]["p50"] for r in runs]),
            "send_to_ack_ms_p99": spread([r["send_to_ack_ms"]["p99"] for r in runs]),
            "orders": spread([r["orders"] for r in runs]), "runs": runs}
    print(json.dumps({"benchmark": "live bar close to order acknowledged",
                      "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                      "live_bars": args.live_bars, "bar_s": args.bar_s,
                      "target_p99_ms_one_symbol": 20.0,
                      "one_symbol_p99_meets_target": (
                          results.get("1", {}).get("bar_to_ack_ms_p99", {}).get("median")
                          or float("inf")) < 20.0,
                      "symbols": results}, indent=1))


if __name__ == "__main__":
    main()
