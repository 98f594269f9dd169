"""Latency benchmark of the default paper deployment: one ``PaperTrader`` Ray actor process
per symbol on a private local Ray, one replay feed server; prints JSON.

Each run starts ``raytrade feed replay`` (its own process: the real loopback Binance
websocket and REST klines the demo uses) over ``--symbols`` symbols plus the BTCUSDT
reference (``bench_markets.markets``: the bundled ETH, BNB, SOL and XRP 5m bars, then
renamed copies of them such as ``ETH04USDT``: real bars, identical prices per copy),
publishes one random policy to a local ``file://`` store, and trades it with
``N`` actors, exactly as ``raytrade paper`` does (``paper_actor.PaperTrader``, one Ray
worker process each, ``num_cpus=0``). Three kinds of run, side by side on the same cores:

- ``actors``: ``--symbols`` PaperTrader actors (``--repeats`` runs);
- ``single_actor``: one PaperTrader actor, the baseline;
- ``in_process``: ``--symbols`` ``PaperSession``s on one event loop in this process (what
  ``scripts/bench_paper.py`` measures: one GIL), for comparison.

**Latency.** Per live closed kline of a traded symbol, ``close_to_journal_ms`` runs from
the moment the replay clock reaches the bar's close time to the moment the actor's step
for the bar was committed to its journal. The close time on the replay clock is when the
server becomes due to send the closed kline (it then sends it at once): measuring from
there counts everything a trader waits for after a bar closes, including the server
sending 20 connections' frames and an actor process that was not scheduled when the frame
arrived (a timestamp taken on arrival cannot see that wait; the frame sits in the socket
meanwhile). The replay clock is mapped to wall time by ``GET /api/v3/time`` (the sample
with the shortest round trip; its error is half that trip, well under a millisecond on
loopback). ``arrival_to_journal_ms`` is the part inside the actor, from the frame's
arrival at its feed client (the old bench's measure). Both clocks are this machine's
``time.time``. Only bars closing once every actor of the run has traded
``--settle-bars`` live bars count (steady state: starting 20 processes on 2 cores takes
seconds), up to ``--live-bars`` bars per symbol.

Per run: p50 / p90 / p99 / max over all actors' bars, with bars counted, stale holds, gaps
and queue drops, distinct actor processes and torch's threads in them, and CPU: each
actor process's (every thread, Ray's included) per bar it processed, split by kind of
thread (``thread_kind``: the event loop, the trader's worker thread, Ray's main thread and
its other threads...), and the replay server's per bar close, over the measured part.
These are CPU per bar *processed*: work on a timer (Ray's signal check every 10 ms, the
watchdog, the exports every ``--export-every-s``) is charged to bars in proportion to the
time between them, so the same process shows more CPU per bar at a slower
``--bars-per-s`` while the burst after each close costs the same. No call goes into the
actors while they trade the measured bars. Per kind: the median of each statistic over
its runs with the min-max spread. ``target`` says whether the actors' median p99 from the
close is under 50 ms at this run's ``--bars-per-s``.

Usage: ``python scripts/bench_paper_actors.py [--symbols 20] [--bars-per-s 4]
[--live-bars 120] [--settle-bars 8] [--repeats 3] [--spec light|full]
[--synchronous FULL|NORMAL] [--export-every-s 10] [--baselines single_actor,in_process]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from raytrade.actors.paper_config import PaperConfig
from raytrade.actors.paper_session import PaperSession
from raytrade.algos.export import random_bundle
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.envs.features.warmup import feature_warmup_bars
from raytrade.scripts.bench_markets import experiment, markets, write_csvs

PCTS = (50, 90, 99)


@dataclass(frozen=True)
class Replay:
    """A running replay server and what the traders need to reach it."""

    ws_url: str
    rest_url: str
    speed: float
    """Virtual ms per real ms."""
    base_ms: int
    """Open time of the first streamed bar: the replay clock's origin."""
    interval_ms: int
    last_ts: int
    """Open time of the last bar the server streams."""
    store: PolicyStore
    folder: Path
    server_pid: int
    warmup: int
    symbols: tuple[str, ...]

    def clock_origin(self, samples: int = 7) -> float:
        """The wall time (``time.time``) at which the replay clock read ``base_ms``, from
        the ``/api/v3/time`` sample with the shortest round trip."""
        best: tuple[float, float] | None = None
        for _ in range(samples):
            t0 = time.time()
            with urllib.request.urlopen(f"{self.rest_url}/api/v3/time", timeout=10) as r:
                server_ms = int(json.loads(r.read())["serverTime"])
            t1 = time.time()
            origin = (t0 + t1) / 2 - (server_ms - self.base_ms) / self.speed / 1000.0
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, origin)
        assert best is not None
        return best[1]

    def config(self, symbol: str, tag: str, args: argparse.Namespace) -> PaperConfig:
        """A paper actor's config on this replay (journal under the run's folder)."""
        return PaperConfig(actor=f"{tag}-{symbol.lower()}", symbol=symbol, venue="replay",
                           feed_url=self.ws_url, rest_url=self.rest_url,
                           journal_dir=str(self.folder / "journals"), speed=self.speed,
                           warmup_bars=self.warmup, stale_after_bars=50,
                           synchronous=args.synchronous, export_every_s=args.export_every_s)


@contextmanager
def replay(args: argparse.Namespace, n_symbols: int) -> Iterator[Replay]:
    """Bar files, a store with one published random policy, and the replay server
    (``raytrade feed replay``, its own process) streaming from after the warm-up."""
    exp = experiment(args.spec)
    warmup = feature_warmup_bars(exp.features, exp.env.window)
    start = warmup + 20
    # room for the actors to start and settle before the measured bars
    n_bars = start + args.settle_bars + args.live_bars + int(60 * args.bars_per_s)
    tables, btc = markets(n_symbols, n_bars)
    speed = 300.0 * args.bars_per_s  # a 5m bar is 300,000 virtual ms
    with tempfile.TemporaryDirectory(prefix="rt-bench-actors-") as tmp:
        folder = Path(tmp)
        files = write_csvs([*tables, btc], folder)
        store = PolicyStore((folder / "store").as_uri())
        store.publish(random_bundle(exp, seed=3), channel="paper", reason="bench")
        server = subprocess.Popen(
            [sys.executable, "-m", "raytrade.scripts.cli", "feed", "replay", "--data", *files,
             "--speed", str(speed), "--start", str(start), "--port", "0",
             "--start-on-connect"], stdout=subprocess.PIPE, text=True,
            stderr=(folder / "replay.log").open("w"))
        try:
            assert server.stdout is not None
            info = json.loads(server.stdout.readline())
            yield Replay(info["ws_url"], info["rest_url"], speed, int(btc.ts[start]),
                         int(btc.interval_ms), int(btc.ts[-1]), store, folder, server.pid,
                         warmup,
                         tuple(t.symbol for t in tables))
        finally:
            server.terminate()
            server.wait(10)


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_fields(rp: Replay, before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]],
               server: tuple[float, float], closes: int) -> dict[str, Any]:
    """CPU per bar between two ``bar_times`` snapshots of every actor: the actors' (all
    threads) per bar each processed, and the replay server's per bar close (its frames for
    every connection)."""
    bars = sum(a["processed"] - b["processed"] for a, b in zip(after, before, strict=True))
    cpu = sum(a["cpu_s"] - b["cpu_s"] for a, b in zip(after, before, strict=True))
    threads: dict[str, float] = {}
    for a, b in zip(after, before, strict=True):
        for name, s in a.get("thread_cpu_s", {}).items():
            kind = thread_kind(name)
            threads[kind] = threads.get(kind, 0.0) + s - b.get("thread_cpu_s", {}).get(name, 0.0)
    return {"actor_cpu_ms_per_bar": round(cpu * 1000.0 / bars, 3) if bars > 0 else None,
            "actor_thread_cpu_ms_per_bar": {k: round(v * 1000.0 / bars, 3) for k, v in
                                            sorted(threads.items())} if bars > 0 else None,
            "server_cpu_ms_per_close": round((server[1] - server[0]) * 1000.0 / closes, 3)
            if closes > 0 else None}


def thread_kind(name: str) -> str:
    """The part of an actor process a thread belongs to, from its name
    (``paper_actor.thread_cpu_s``): ``event_loop`` (the actor's asyncio loop: feed,
    sequencing, watchdog), ``trader`` (the worker thread stepping bars and exporting),
    ``executor`` (the policy executor's polls), ``uploads`` (``asyncio.to_thread``: the
    exports' uploads), ``ray_main`` (Ray's task loop on the main thread: its signal check
    every 10 ms), ``ray_other`` (Ray's C++ threads: gRPC, io, task events)."""
    if name.startswith("trader-"):
        return "trader"
    if name.startswith("executor-"):
        return "executor"
    if name.startswith("asyncio_"):
        return "uploads"
    if name == "main":
        return "ray_main"
    if "asyncio" in name.lower() or "event loop" in name.lower():
        return "event_loop"
    return "ray_other"


def percentiles(x: Sequence[float]) -> dict[str, float | None]:
    """p50 / p90 / p99 / max of ``x`` (ms), rounded to 0.01 ms; None without samples."""
    a = np.asarray(x, dtype=np.float64)
    out: dict[str, float | None] = {f"p{q}": round(float(np.percentile(a, q)), 2)
                                    if len(a) else None for q in PCTS}
    out["max"] = round(float(a.max()), 2) if len(a) else None
    return out


def measure(rp: Replay, per_actor: Sequence[Sequence[tuple[int, float, float]]],
            origin: float, settle_bars: int, live_bars: int) -> dict[str, Any]:
    """Pool the actors' (bar ts, arrived, journaled) over the steady-state bars."""
    firsts = [min(ts for ts, _, _ in times) for times in per_actor if times]
    if len(firsts) < len(per_actor):
        return {"bars": 0, "close_to_journal_ms": percentiles([]),
                "arrival_to_journal_ms": percentiles([])}
    lo = max(firsts) + settle_bars * rp.interval_ms
    hi = lo + (live_bars - 1) * rp.interval_ms
    close, inside = [], []
    for times in per_actor:
        for ts, arrived, journaled in times:
            if lo <= ts <= hi:
                due = origin + (ts + rp.interval_ms - rp.base_ms) / rp.speed / 1000.0
                close.append((journaled - due) * 1000.0)
                inside.append((journaled - arrived) * 1000.0)
    return {"bars": len(close), "first_measured_ts": lo, "last_measured_ts": hi,
            "close_to_journal_ms": percentiles(close),
            "arrival_to_journal_ms": percentiles(inside)}


def run_actors(args: argparse.Namespace, n: int, tag: str) -> dict[str, Any]:
    """One run of ``n`` PaperTrader actors (module docstring)."""
    import ray
    from raytrade.actors.paper_actor import PaperTrader

    t_start = time.monotonic()
    with replay(args, n) as rp:
        configs = [rp.config(s, tag, args) for s in rp.symbols]
        actors = [PaperTrader.options(name=f"bench-{c.actor}").remote(  # type: ignore[attr-defined]
            c, rp.store.uri) for c in configs]
        ray.get([a.status.remote() for a in actors], timeout=300)  # every process is up
        ray.get([a.start.remote() for a in actors], timeout=60)
        started = time.monotonic()
        origin: float | None = None
        hi: int | None = None  # the last measured bar, once every actor traded a live bar
        deadline = started + 300 + 3 * (args.settle_bars + args.live_bars) / args.bars_per_s
        try:
            while time.monotonic() < deadline:
                time.sleep(0.2)
                statuses = ray.get([a.status.remote() for a in actors], timeout=60)
                errors = [s["error"] for s in statuses if s.get("error")]
                if errors:
                    raise RuntimeError(f"actor failed: {errors[0]}")
                if origin is None:
                    if all(s.get("feed", {}).get("state") == "live" for s in statuses):
                        origin = rp.clock_origin()
                    continue
                if hi is None:
                    if all(s["latency_ms"]["p50"] is not None for s in statuses):
                        cpu0 = ray.get([a.bar_times.remote() for a in actors], timeout=60)
                        server0, since = process_cpu_s(rp.server_pid), time.monotonic()
                        hi = measure(rp, [t["bar_times"] for t in cpu0], origin,
                                     args.settle_bars, args.live_bars)["last_measured_ts"]
                    continue
                if min((s.get("trader") or {}).get("last_ts") or 0 for s in statuses) >= hi:
                    break
                # no calls into the actors while they trade the measured bars: sleep until
                # the last one closes on the replay clock (each call costs an actor CPU)
                time.sleep(max(0.0, origin + (hi + rp.interval_ms - rp.base_ms) / rp.speed /
                               1000.0 - time.time()))
            timings = ray.get([a.bar_times.remote() for a in actors], timeout=60)
            server1, until = process_cpu_s(rp.server_pid), time.monotonic()
            finals = ray.get([a.stop.remote() for a in actors], timeout=120)
        finally:
            for a in actors:
                ray.kill(a, no_restart=True)
        if origin is None or hi is None:
            raise RuntimeError("the actors never traded a live bar")
        result = measure(rp, [t["bar_times"] for t in timings], origin, args.settle_bars,
                         args.live_bars)
        result.update(cpu_fields(rp, cpu0, timings, (server0, server1),
                                 int((until - since) * args.bars_per_s)))
    result["completed"] = result["bars"] == n * args.live_bars
    result["processes"] = len({t["pid"] for t in timings})
    result["torch_threads"] = sorted({int(t["torch_threads"]) for t in timings})
    for name in ("stale_holds", "gaps", "dropped_queue"):
        result[name] = sum(int((f.get("feed") or {}).get("counters", {}).get(name, 0))
                           for f in finals)
    result["wall_s"] = round(time.monotonic() - t_start, 1)
    return result


def run_in_process(args: argparse.Namespace, n: int) -> dict[str, Any]:
    """One run of ``n`` PaperSessions on one event loop in this process."""
    t_start = time.monotonic()
    with replay(args, n) as rp:
        sessions = [PaperSession(rp.config(s, "inproc", args), rp.store)
                    for s in rp.symbols]

        cpu: dict[str, float] = {}

        def snapshot(name: str) -> None:
            cpu[f"{name}_cpu"] = time.process_time()
            cpu[f"{name}_bars"] = sum(s.processed for s in sessions)
            cpu[f"{name}_server"] = process_cpu_s(rp.server_pid)
            cpu[f"{name}_at"] = time.monotonic()

        async def go() -> float:
            tasks = [asyncio.create_task(s.run()) for s in sessions]
            origin: float | None = None
            deadline = time.monotonic() + 300 + 3 * (args.settle_bars + args.live_bars) / \
                args.bars_per_s
            try:
                hi: int | None = None
                while time.monotonic() < deadline and not any(t.done() for t in tasks):
                    await asyncio.sleep(0.2)
                    if origin is None:
                        if all(s.feed is not None and s.feed.health.state == "live"
                               for s in sessions):
                            origin = await asyncio.to_thread(rp.clock_origin)
                        continue
                    if hi is None:
                        if all(s.bar_times for s in sessions):
                            snapshot("start")
                            hi = measure(rp, [list(s.bar_times) for s in sessions], origin,
                                         args.settle_bars, args.live_bars)["last_measured_ts"]
                        continue
                    if min((s.trader.last_ts or 0) if s.trader else 0 for s in sessions) >= hi:
                        break
            finally:
                snapshot("end")
                for s in sessions:
                    s.stop()
                for t in tasks:
                    await t
            assert origin is not None, "the feeds never went live"
            return origin

        origin = asyncio.run(go())
        result = measure(rp, [list(s.bar_times) for s in sessions], origin,
                         args.settle_bars, args.live_bars)
        bars = cpu["end_bars"] - cpu.get("start_bars", cpu["end_bars"])
        closes = int((cpu["end_at"] - cpu.get("start_at", cpu["end_at"])) * args.bars_per_s)
        result["actor_cpu_ms_per_bar"] = round((cpu["end_cpu"] - cpu["start_cpu"]) * 1000.0 /
                                               bars, 3) if bars > 0 else None
        result["server_cpu_ms_per_close"] = round(
            (cpu["end_server"] - cpu["start_server"]) * 1000.0 / closes, 3) \
            if closes > 0 else None
    result["completed"] = result["bars"] == n * args.live_bars
    result["processes"] = 1
    result["wall_s"] = round(time.monotonic() - t_start, 1)
    return result


def summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per statistic, the median over runs and the min-max spread."""
    out: dict[str, Any] = {"runs": len(runs)}
    for measure_name in ("close_to_journal_ms", "arrival_to_journal_ms"):
        stats: dict[str, Any] = {}
        for key in [*(f"p{q}" for q in PCTS), "max"]:
            values = [r[measure_name][key] for r in runs if r[measure_name][key] is not None]
            stats[key] = ({"median": round(float(np.median(values)), 2),
                           "min": round(min(values), 2), "max": round(max(values), 2)}
                          if values else None)
        out[measure_name] = stats
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--bars-per-s", type=float, default=4.0,
                    help="replayed bars per second (every symbol's bar closes together)")
    ap.add_argument("--live-bars", type=int, default=120,
                    help="measured bars per symbol and run")
    ap.add_argument("--settle-bars", type=int, default=8,
                    help="live bars every actor trades before the measured ones")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--spec", choices=("light", "full"), default="light")
    ap.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    ap.add_argument("--export-every-s", type=float, default=10.0,
                    help="store export period per actor (the PaperConfig default)")
    ap.add_argument("--baselines", default="single_actor,in_process",
                    help="comma-separated baselines to run beside the actors: single_actor "
                    "(once per repeat), in_process (once); empty for none")
    args = ap.parse_args(argv)
    baselines = {b for b in args.baselines.split(",") if b}
    if baselines - {"single_actor", "in_process"}:
        ap.error(f"unknown baselines {sorted(baselines - {'single_actor', 'in_process'})}")

    from raytrade.algos.train import ray_session

    load_before = os.getloadavg()
    t0 = time.monotonic()
    runs: dict[str, list[dict[str, Any]]] = {"actors": [], **{b: [] for b in sorted(baselines)}}
    # Ray's own warnings (worker start-up) print to stdout: keep stdout the JSON alone
    with contextlib.redirect_stdout(sys.stderr), ray_session(None):
        for k in range(args.repeats):
            runs["actors"].append(run_actors(args, args.symbols, f"a{k}"))
            if "single_actor" in baselines:
                runs["single_actor"].append(run_actors(args, 1, f"s{k}"))
    if "in_process" in baselines:
        with contextlib.redirect_stdout(sys.stderr):
            runs["in_process"].append(run_in_process(args, args.symbols))
    p99 = summary(runs["actors"])["close_to_journal_ms"]["p99"]
    result = {
        "bench": "paper_trading_actors",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "config": {"symbols": args.symbols, "bars_per_s": args.bars_per_s,
                   "live_bars": args.live_bars, "settle_bars": args.settle_bars,
                   "repeats": args.repeats, "spec": args.spec,
                   "synchronous": args.synchronous, "export_every_s": args.export_every_s,
                   "replay_speed": 300.0 * args.bars_per_s},
        "latency": "close_to_journal_ms: replay clock at the bar's close -> step committed; "
                   "arrival_to_journal_ms: closed kline's arrival at the actor -> committed",
        "summary": {kind: summary(r) for kind, r in runs.items() if r},
        "runs": runs,
        "target": {"p99_close_to_journal_ms_below": 50.0, "bars_per_s": args.bars_per_s,
                   "met": p99 is not None and p99["median"] < 50.0},
        "total_s": round(time.monotonic() - t0, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
