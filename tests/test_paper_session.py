"""The paper session end to end under the faults of the README's fault model (market data and the
live actor): a replay server in its own process (real websocket and REST on loopback),
the real session, a real SQLite journal. A light FeatureSpec (``quick_experiment``) keeps
the warm-up short; parity with training on the full spec is ``test_paper_parity.py``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
from raytrade.actors.journal import Journal
from raytrade.actors.paper_actor import actor_name, run_paper
from raytrade.actors.paper_config import PaperConfig
from raytrade.actors.paper_session import (
    PaperSession,
    check_every_s,
    clear_of_close,
    export_phase,
    until_clear_ms,
)
from raytrade.actors.simulators.coinbase_server import CoinbaseServer
from raytrade.algos.live_experience import LiveExperienceQueue, TransitionSpec, queue_address
from raytrade.algos.policy import Policy
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.envs.bars import BarTable

from tests.live_setup import bars, paper_store, replay_process, write_csv

START = 300  # first streamed bar; the quick spec needs about 140 bars of warm-up
BAR_S = 0.05  # one replayed 5m bar every 50 ms
SPEED = 300_000 / (BAR_S * 1000)  # virtual ms per real ms


def market(tmp_path: Path, live_bars: int) -> tuple[BarTable, list[Path]]:
    """ETH (traded) and BTC (reference) CSVs with ``live_bars`` bars after ``START``."""
    eth, btc = bars(START + live_bars)
    return eth, [write_csv(eth, tmp_path), write_csv(btc, tmp_path)]


def session_config(tmp_path: Path, info: dict[str, Any], **kw: Any) -> PaperConfig:
    base: dict[str, Any] = {
        "actor": "eth", "symbol": "ETHUSDT", "venue": "replay",
        "feed_url": str(info["ws_url"]), "rest_url": str(info["rest_url"]),
        "journal_dir": str(tmp_path / "journal"), "speed": SPEED, "stale_after_bars": 40,
        "export_every_s": 1.0}
    return PaperConfig(**{**base, **kw})


def run_session(session: PaperSession, timeout_s: float,
                until: Callable[[PaperSession], bool],
                watch: Callable[[PaperSession], None] | None = None) -> None:
    """Run ``session`` in this thread's event loop until ``until`` or the timeout."""

    async def main() -> None:
        task = asyncio.create_task(session.run())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not task.done() and not until(session):
            if watch is not None:
                watch(session)
            await asyncio.sleep(0.02)
        session.stop()
        await task

    asyncio.run(main())


def finished(last_ts: int) -> Callable[[PaperSession], bool]:
    return lambda s: s.trader is not None and (s.trader.last_ts or 0) >= last_ts


def journal_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    journal = Journal(path)
    try:
        return journal.db.execute(sql).fetchall()
    finally:
        journal.close()


def assert_contiguous(path: Path, first_ts: int, last_ts: int) -> None:
    """Every bar from ``first_ts`` to ``last_ts`` journaled exactly once, in order."""
    ts = [r[0] for r in journal_rows(path, "SELECT ts FROM bars WHERE symbol='ETHUSDT' "
                                           "ORDER BY ts")]
    assert ts[0] <= first_ts and ts[-1] >= last_ts
    assert np.all(np.diff(ts) == 300_000), "journaled bars have a hole or a repeat"


def test_gap_is_backfilled_over_rest_before_the_next_decision(tmp_path: Path) -> None:
    eth, data = market(tmp_path, 80)
    store, _ = paper_store(tmp_path / "store", quick=True)
    skipped = (START + 20, START + 21)
    with replay_process(data, speed=SPEED, start=START,
                        faults={"skip_at": list(skipped)}) as info:
        config = session_config(tmp_path, info)
        session = PaperSession(config, store)
        run_session(session, 60, finished(int(eth.ts[-1])))
    health = session.health()
    assert health["feed"]["counters"]["gaps"] >= 1
    assert health["feed"]["counters"]["gaps_backfilled"] >= 1
    assert_contiguous(config.journal_path, int(eth.ts[START - 100]), int(eth.ts[-1]))
    rows = dict((r[0], r[1:]) for r in journal_rows(
        config.journal_path, "SELECT b.ts, b.kind, d.reason FROM bars b JOIN decisions d "
                             "USING(symbol, ts) WHERE symbol='ETHUSDT'"))
    # the missing bars came over REST, too late to act on: held, no new entries
    for i in skipped:
        assert rows[int(eth.ts[i])] == ("catchup", "catchup bar: holding (no new entries)")
    # the bar that revealed the gap is decided, after the backfill, by the policy
    assert rows[int(eth.ts[skipped[-1] + 1])] == ("live", "policy")


def test_rest_outage_holds_the_symbol_stale_and_journals_the_gap(tmp_path: Path) -> None:
    eth, data = market(tmp_path, 100)
    store, _ = paper_store(tmp_path / "store", quick=True)
    gap = START + 20
    faults = {"skip_at": [gap], "rest_down": [START + 10, START + 50]}
    seen_stale: list[int] = []

    def watch(s: PaperSession) -> None:
        if any(seq.stale for seq in s.sequencers.values()) and s.trader is not None:
            seen_stale.append(s.trader.last_ts or 0)

    with replay_process(data, speed=SPEED, start=START, faults=faults) as info:
        config = session_config(tmp_path, info)
        session = PaperSession(config, store)
        run_session(session, 60, finished(int(eth.ts[-1])), watch)
    counters = session.health()["feed"]["counters"]
    assert counters["gaps_unfilled"] >= 1 and counters["rest_errors"] >= 1
    # while stale, nothing after the gap was traded
    assert seen_stale and max(seen_stale) < int(eth.ts[gap])
    # the journal records the gap and why
    events = journal_rows(config.journal_path, "SELECT kind, detail FROM events "
                                               "WHERE kind='gap'")
    assert events and "REST" in json.loads(events[0][1])["why"]
    # once REST is back the hole is filled: every bar once; the ones that waited are
    # catch-up holds, then live trading resumes
    assert_contiguous(config.journal_path, int(eth.ts[START - 100]), int(eth.ts[-1]))
    kinds = dict(journal_rows(config.journal_path, "SELECT ts, kind FROM bars "
                                                   "WHERE symbol='ETHUSDT'"))
    assert kinds[int(eth.ts[gap])] == "catchup"
    assert kinds[int(eth.ts[gap + 5])] == "catchup"  # waited out the outage
    assert kinds[int(eth.ts[-1])] == "live"


def test_rest_fallback_while_stale_never_journals_a_bar_still_in_progress(
        tmp_path: Path) -> None:
    # the stream goes silent for 3 s (60 bars) with the socket open: after 10 bars
    # without data the symbol is stale and the watchdog polls REST, whose reply (like
    # Binance's) ends with the kline still in progress: partial close and volume
    eth, data = market(tmp_path, 160)
    store, _ = paper_store(tmp_path / "store", quick=True)
    silence = START + 20
    with replay_process(data, speed=SPEED, start=START,
                        faults={"silence_at": {str(silence): 3.0}}) as info:
        config = session_config(tmp_path, info, stale_after_bars=10)
        session = PaperSession(config, store)
        run_session(session, 60, finished(int(eth.ts[-1])))
    counters = session.health()["feed"]["counters"]
    assert counters["stale_holds"] >= 1 and counters["rest_open_bars"] >= 1
    # bars of the silence came over REST, as catch-up, after the stale hold
    kinds = dict(journal_rows(config.journal_path, "SELECT ts, kind FROM bars "
                                                   "WHERE symbol='ETHUSDT'"))
    assert kinds[int(eth.ts[silence + 15])] == "catchup"
    # every journaled bar is the exchange's closed bar: none was taken while open
    assert_contiguous(config.journal_path, int(eth.ts[START - 100]), int(eth.ts[-1]))
    journaled = journal_rows(config.journal_path, "SELECT ts, open, high, low, close, volume "
                                                  "FROM bars WHERE symbol='ETHUSDT'")
    first = int(eth.ts[0])
    wrong = [row for row in journaled
             if row[1:] != tuple(float(x[(row[0] - first) // 300_000]) for x in
                                 (eth.open, eth.high, eth.low, eth.close, eth.volume))]
    assert not wrong, f"{len(wrong)} bars differ from the exchange's, first {wrong[0]}"


def test_staleness_follows_the_injected_clock_not_the_system_clock(tmp_path: Path) -> None:
    # production intervals (speed 1: stale after 2 x 5 min) on a fake clock: the stream
    # goes silent for 10 s of real time, the test moves the clock 700 s on once the trader
    # has traded the last bar before the silence, and the session goes stale at once and
    # fetches the missing bars over REST, without waiting 10 min. The silence is long so
    # that a trader lagging the stream by seconds (a loaded CI machine: warm-up, JIT) still
    # reaches it before the stream resumes; a shorter one made the test flaky.
    eth, data = market(tmp_path, 260)  # the 10 s silence loses 200 bars: 40 follow it
    store, _ = paper_store(tmp_path / "store", quick=True)
    silence = START + 20
    offset = {"s": 0.0}

    def clock() -> float:
        return time.time() + offset["s"]

    def jump(s: PaperSession) -> None:
        if not offset["s"] and s.trader is not None and \
                (s.trader.last_ts or 0) >= int(eth.ts[silence - 1]):
            offset["s"] = 700.0

    with replay_process(data, speed=SPEED, start=START,
                        faults={"silence_at": {str(silence): 10.0}}) as info:
        config = session_config(tmp_path, info, speed=1.0, stale_after_bars=2)
        session = PaperSession(config, store, clock=clock)
        run_session(session, 60, finished(int(eth.ts[-1])), jump)
    assert offset["s"] and session.health()["feed"]["counters"]["stale_holds"] == 1
    events = [k for (k,) in journal_rows(config.journal_path, "SELECT kind FROM events "
                                         "WHERE kind IN ('stale', 'fresh') ORDER BY id")]
    assert events == ["stale", "fresh"]
    # the two bars closed by then on the moved clock came over REST while stale
    kinds = dict(journal_rows(config.journal_path, "SELECT ts, kind FROM bars "
                                                   "WHERE symbol='ETHUSDT'"))
    assert kinds[int(eth.ts[silence])] == kinds[int(eth.ts[silence + 1])] == "catchup"
    assert_contiguous(config.journal_path, int(eth.ts[START - 100]), int(eth.ts[-1]))


def test_slow_inference_never_blocks_the_reader_and_queues_stay_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    eth, data = market(tmp_path, 200)
    store, _ = paper_store(tmp_path / "store", quick=True)
    during_sleep: list[int] = []
    started: list[float] = []
    holder: dict[str, PaperSession] = {}
    decide = Policy.decide

    def slow_decide(self: Policy, *args: Any, **kwargs: Any) -> Any:
        started.append(time.monotonic())
        feed = holder["session"].feed
        assert feed is not None
        before = feed.health.counters["messages"]
        time.sleep(2.0)  # injected: inference takes 2 s
        during_sleep.append(feed.health.counters["messages"] - before)
        return decide(self, *args, **kwargs)

    monkeypatch.setattr(Policy, "decide", slow_decide)
    queue_sizes: list[int] = []

    def watch(s: PaperSession) -> None:
        if s.queue is not None:
            queue_sizes.append(s.queue.qsize())

    with replay_process(data, speed=SPEED, start=START) as info:
        config = session_config(tmp_path, info, queue_size=10)
        session = PaperSession(config, store)
        holder["session"] = session
        # stop while the fifth decision sleeps: four measured, one bar in flight
        run_session(session, 60, lambda s: len(started) >= 5, watch)
    # the reader kept reading while the trader slept: about 6 frames per bar, a bar
    # every 50 ms, so 2 s of sleep is about 240 frames (the fifth slept past the stop)
    assert len(during_sleep) == 5 and min(during_sleep[:4]) > 100, during_sleep
    # the queue never grew past its bound; the overflow dropped market data and counted it
    assert queue_sizes and max(queue_sizes) <= config.queue_size
    counters = session.health()["feed"]["counters"]
    assert counters["dropped_queue"] > 0
    # dropped closed bars became gaps, backfilled over REST: no journal row was lost
    assert counters["gaps_backfilled"] >= 1
    assert_contiguous(config.journal_path, int(eth.ts[START - 100]),
                      int(eth.ts[START + 1]))
    # the stop came while a bar was being traded (decide sleeps 2 s): that bar was
    # journaled, so its accounting finished too
    n_bars = journal_rows(config.journal_path,
                          "SELECT count(*) FROM bars WHERE symbol='ETHUSDT'")[0][0]
    assert n_bars == session.processed


@pytest.mark.slow
def test_killed_actor_restarts_rebuilds_from_the_journal_and_pushes_experience(
        tmp_path: Path, local_ray: None) -> None:
    eth, data = market(tmp_path, 400)
    store, policy = paper_store(tmp_path / "store", quick=True)
    address = queue_address(store.uri)  # the training run of this store
    queue = LiveExperienceQueue.options(  # type: ignore[attr-defined]
        name=address.name, namespace=address.namespace).remote(
        TransitionSpec(policy.obs_shape, "float32", policy.feature_spec.hash), 100_000)
    with replay_process(data, speed=SPEED, start=START) as info:
        config = session_config(tmp_path, info, online_learning=True, export_every_s=0.5)
        stop = threading.Event()
        finals: list[dict[str, Any]] = []
        runner = threading.Thread(target=lambda: finals.extend(run_paper(
            [config], store.uri, duration_s=60, check_every_s=0.5, stop_event=stop)))
        runner.start()
        try:
            # experience reached the run's queue before the kill (a chunk of 64, or the
            # chain cut short by a hold: on a loaded machine late bars come as catch-up
            # and hold, so how much depends on timing, not on the code)
            deadline = time.monotonic() + 30
            while ray.get(queue.stats.remote())["pushed"] == 0:
                assert time.monotonic() < deadline, "no transition reached the queue"
                time.sleep(0.2)
            health = wait_for_export(store, "eth", lambda h: h["processed_bars"] > 250, 40)
            before_kill = health["trader"]
            assert before_kill["last_ts"] < int(eth.ts[-50]), "the feed had nearly ended"
            pushed_at_kill = ray.get(queue.stats.remote())["pushed"]
            # like kill -9: no clean shutdown; Ray restarts the actor, the supervisor
            # starts a new session, which rebuilds from the journal alone
            ray.kill(ray.get_actor(actor_name(config)), no_restart=False)
            wait_for_export(store, "eth", lambda h: (h["trader"] or {}).get("last_ts", 0)
                            >= int(eth.ts[-1]), 50)
            # the restarted actor's own pusher (a new process, a new session's policy)
            restarted = ray.get(ray.get_actor(actor_name(config)).status.remote())
        finally:
            stop.set()
            runner.join(60)
    assert finals and finals[0]["error"] is None
    path = config.journal_path
    assert_contiguous(path, int(eth.ts[START - 100]), int(eth.ts[-1]))
    starts = journal_rows(path, "SELECT count(*) FROM events WHERE kind='start'")[0][0]
    assert starts == 2, "one start, one restart"
    # no duplicated fill and fill ids that a replay would reproduce
    fills = journal_rows(path, "SELECT fill_id, bar_ts FROM fills")
    assert len({f[0] for f in fills}) == len(fills)
    assert all(f[0] == f"eth:ETHUSDT:{f[1]}" for f in fills)
    # the restored account continued where the journal left it: equity never jumps back
    # to the starting balance, and decisions continued with the same policy version
    equity = [r[0] for r in journal_rows(path, "SELECT equity FROM account "
                                               "WHERE symbol='ETHUSDT' ORDER BY ts")]
    after = int(np.searchsorted(np.array(
        [r[0] for r in journal_rows(path, "SELECT ts FROM account ORDER BY ts")]),
        before_kill["last_ts"]))
    assert np.max(np.abs(np.diff(equity[after - 1:after + 50]))) < 0.05 * equity[after - 1]
    versions = {r[0] for r in journal_rows(path, "SELECT DISTINCT version FROM decisions "
                                                 "WHERE reason='policy'")}
    assert versions == {policy.version}
    # online learning: the transitions reached the training run's queue
    stats = ray.get(queue.stats.remote())
    # what the restarted actor pushed was neither refused (the new session's feature hash
    # is the policy's) nor left unsent (it found the run's queue again), and the queue has
    # it on top of what it had at the kill. How much the restart pushes depends on timing:
    # bars it takes as catch-up hold and push nothing
    after = restarted["live_experience"]
    assert after["refused"] == 0 and after["unsent"] == 0, after
    assert pushed_at_kill > 0 and stats["refused"] == 0
    assert stats["pushed"] >= pushed_at_kill + after["accepted"]
    chunk = ray.get(queue.drain.remote(10_000))[0]
    assert chunk.observations.shape[1:] == policy.obs_shape
    ray.kill(queue)


def wait_for_export(store: PolicyStore, actor: str, ok: Callable[[dict[str, Any]], bool],
                    timeout_s: float) -> dict[str, Any]:
    """Poll ``paper/<actor>/health.json`` (what the dashboard reads) until ``ok``."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = json.loads(store.blobs.get(f"paper/{actor}/health.json").data)
        except Exception:  # not exported yet
            last = {}
        if last and ok(last):
            return last
        time.sleep(0.2)
    raise AssertionError(f"export never satisfied the condition; last: {last}")


@pytest.mark.slow
def test_sigterm_to_the_cli_flushes_the_journal_and_logs_the_position(tmp_path: Path) -> None:
    _, data = market(tmp_path, 2000)
    store, _ = paper_store(tmp_path / "store", quick=True)
    journal = tmp_path / "journal"
    with replay_process(data, speed=SPEED, start=START) as info:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "raytrade.scripts.cli", "paper", "--store", store.uri,
             "--feed", "replay", "--symbols", "ETHUSDT", "--feed-url", str(info["ws_url"]),
             "--rest-url", str(info["rest_url"]), "--journal", str(journal),
             "--speed", str(SPEED), "--name-prefix", ""],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            wait_for_export(store, "ethusdt", lambda h: h["processed_bars"] > 200, 90)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err[-3000:]
    final = json.loads(out[out.index("["):])[0]
    assert final["error"] is None and final["processed_bars"] > 200
    # the journal was closed cleanly (no lock left) and holds the shutdown record
    rows = journal_rows(journal / "ethusdt.sqlite",
                        "SELECT detail FROM events WHERE kind='shutdown'")
    assert len(rows) == 1
    detail = json.loads(rows[0][0])
    assert detail["position"] == final["trader"]["position"]
    assert f"ethusdt stopped: open position {detail['position']}" in err
    n_bars = journal_rows(journal / "ethusdt.sqlite", "SELECT count(*) FROM bars "
                                                      "WHERE symbol='ETHUSDT'")[0][0]
    assert n_bars == final["processed_bars"]


def test_coinbase_feed_builds_bars_from_trades_and_warms_up_over_candles(
        tmp_path: Path) -> None:
    eth, btc = bars(START + 60)
    tables = {"ETH-USD": dataclasses.replace(eth, symbol="ETH-USD"),
              "BTC-USD": dataclasses.replace(btc, symbol="BTC-USD")}
    store, _ = paper_store(tmp_path / "store", quick=True)
    quiet = START - 50  # an interval with no trades: Coinbase leaves its candle out
    last = START + 40

    async def main() -> tuple[PaperSession, PaperConfig]:
        async with CoinbaseServer(tables, start=START, bar_s=0.05,
                                  missing=frozenset({quiet})) as server:
            config = PaperConfig(actor="eth-cb", symbol="ETH-USD", venue="coinbase",
                                 feed_url=server.url, rest_url=server.rest_url,
                                 journal_dir=str(tmp_path / "journal"), speed=SPEED,
                                 stale_after_bars=40)
            session = PaperSession(config, store)
            task = asyncio.create_task(session.run())
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not task.done() and \
                    finished(int(eth.ts[last]))(session) is False:
                await asyncio.sleep(0.05)
            session.stop()
            await task
            return session, config

    session, config = asyncio.run(main())
    assert session.reference == "BTC-USD"
    rows = journal_rows(config.journal_path, "SELECT ts, open, high, low, close, volume, "
                                             "kind FROM bars WHERE symbol='ETH-USD' "
                                             "ORDER BY ts")
    by_ts = {r[0]: r for r in rows}
    # bars built live from the matches equal the exchange's bars
    for i in range(START, last + 1):
        _, o, h, lo, c, v, kind = by_ts[int(eth.ts[i])]
        assert (o, h, lo, c) == (eth.open[i], eth.high[i], eth.low[i], eth.close[i])
        assert v == pytest.approx(eth.volume[i], rel=1e-12)
        assert kind == "live"
    # warm-up came over REST candles; the interval with no trades is a flat bar at the
    # previous close with volume 0, as the trade-bar builder makes it
    warm = [r for r in rows if r[6] == "warmup"]
    assert len(warm) >= 100 and warm[-1][0] == int(eth.ts[START - 1])
    prev_close = float(eth.close[quiet - 1])
    assert by_ts[int(eth.ts[quiet])][1:6] == (prev_close,) * 4 + (0.0,)
    reasons = {r[0] for r in journal_rows(
        config.journal_path, f"SELECT reason FROM decisions WHERE ts > {int(eth.ts[START])}")}
    assert reasons == {"policy"}


def test_clear_of_close_keeps_exports_off_every_bar_close() -> None:
    five_min = 300_000
    close = 1_743_768_000_000  # a 5m bar close (epoch-aligned)
    # real time (speed 1): within 2 s of a close is not clear, on either side
    assert not clear_of_close(close, five_min, 1.0)
    assert not clear_of_close(close + 1_999, five_min, 1.0)
    assert not clear_of_close(close - 1_999, five_min, 1.0)
    assert clear_of_close(close + 2_000, five_min, 1.0)
    assert clear_of_close(close + 150_000, five_min, 1.0)
    assert clear_of_close(close - 2_000, five_min, 1.0)
    # a fast replay (a 5m bar every 250 ms): a quarter bar on either side of the close
    assert not clear_of_close(close + 74_999, five_min, 1200.0)
    assert clear_of_close(close + 75_000, five_min, 1200.0)
    assert not clear_of_close(close - 74_999, five_min, 1200.0)
    # and room before the next close for the work about to start (125 ms at 1200x)
    assert clear_of_close(close + 75_000, five_min, 1200.0, need_ms=150_000)
    assert not clear_of_close(close + 75_001, five_min, 1200.0, need_ms=150_000)
    assert not clear_of_close(close + 150_000, five_min, 1200.0, need_ms=80_000)


def test_until_clear_ms_lands_in_the_next_clear_window() -> None:
    """A due export waits exactly until the next clear window: with checks every bar at
    4 bars/s (a check period that divides the bar) a fixed period would land on the same
    guarded phase every time and postpone the export indefinitely."""
    five_min, close, fast = 300_000, 1_743_768_000_000, 1200.0
    for offset in range(-74_999, 300_000, 9_973):  # every phase of the bar
        for need in (0.0, 80_000.0, 150_000.0):
            t = close + offset
            wait = until_clear_ms(t, five_min, fast, need_ms=need)
            assert wait >= 0
            if clear_of_close(t, five_min, fast, need_ms=need):
                assert wait == 0
            elif need <= 150_000:
                assert clear_of_close(int(t + wait), five_min, fast, need_ms=need), (offset,
                                                                                    need)
                assert wait <= five_min
    # real 5m bars in real time: 1 s after a close, the window opens 1 s later
    assert until_clear_ms(close + 1_000, five_min, 1.0) == 1_000


def test_check_every_s_quarter_bar_within_a_quarter_second_and_a_second() -> None:
    assert check_every_s(300.0) == 1.0  # a 5m bar in real time
    assert check_every_s(2.0) == 0.5
    assert check_every_s(0.25) == 0.25  # 4 bars/s: four checks a second, not sixteen


def test_export_phase_spreads_actors_started_together_over_the_period() -> None:
    phases = [export_phase(f"paper-sym{k:02d}usdt", 10.0) for k in range(20)]
    assert all(0.0 <= p < 10.0 for p in phases)
    assert export_phase("paper-sym00usdt", 10.0) == phases[0]  # fixed per actor
    # not together: no second of the period holds more than a fifth of the actors
    assert max(Counter(int(p) for p in phases).values()) <= 4
