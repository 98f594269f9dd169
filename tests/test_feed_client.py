"""The websocket feed client against the real replay server on loopback, one fault at a
time (README "The fault model", feed rows)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import numpy as np
from raytrade.actors.events import KlineEvent, MarketEvent
from raytrade.actors.feed_client import FeedClient, FeedConfig
from raytrade.actors.simulators.replay_server import Faults, ReplayServer
from raytrade.actors.venues.binance import BinanceSpot
from raytrade.actors.venues.protocol import Subscription
from raytrade.envs.bars import BarTable
from raytrade.scripts.s3_local import free_port

FAST = FeedConfig(initial_backoff_s=0.02, max_backoff_s=0.2, idle_timeout_s=1.0,
                  subscribe_timeout_s=1.0, open_timeout_s=1.0)
BAR_MS = 20  # real ms per replayed bar


def run_feed(table: BarTable, faults: Faults, *, bars: int = 60, config: FeedConfig = FAST,
             until: Callable[[FeedClient], bool] | None = None, **server_kw: object
             ) -> tuple[FeedClient, ReplayServer, list[MarketEvent]]:
    """Replay ``bars`` bars of ``table`` with ``faults`` to a FeedClient; return it all."""
    async def main() -> tuple[FeedClient, ReplayServer, list[MarketEvent]]:
        server = ReplayServer([table.slice(0, bars)], speed=300_000 / BAR_MS, faults=faults,
                              start_on_connect=True, **server_kw)  # type: ignore[arg-type]
        got: list[MarketEvent] = []
        async with server:
            feed = FeedClient(BinanceSpot(Subscription((table.symbol,), "5m"), server.ws_url),
                              got.append, config=config, seed=0)
            task = asyncio.create_task(feed.run())
            for _ in range(400):
                await asyncio.sleep(0.025)
                if server.done.is_set() or (until is not None and until(feed)):
                    break
            await asyncio.sleep(0.1)
            feed.stop()
            await asyncio.wait_for(task, 5)
        return feed, server, got
    return asyncio.run(main())


def closed(events: list[MarketEvent]) -> list[int]:
    return [e.bar.ts for e in events if isinstance(e, KlineEvent) and e.closed]


def test_feed_clean_replay_delivers_every_closed_bar_once(btc: BarTable) -> None:
    feed, _, got = run_feed(btc, Faults())
    assert closed(got) == [int(t) for t in btc.ts[:60]]
    assert feed.health.counters["connects"] == 1 and feed.health.state == "stopped"


def test_feed_abrupt_disconnect_and_going_away_reconnect_and_resubscribe(btc: BarTable) -> None:
    feed, server, got = run_feed(btc, Faults(disconnect_at=frozenset({10}),
                                             close_at=frozenset({30})))
    h = feed.health
    assert h.counters["disconnects"] == 2 and h.close_codes[1006] == 1 and h.close_codes[1001] == 1
    assert h.counters["connects"] == 3 and server.stats["connections"] == 3
    ts = closed(got)
    assert ts[-1] == int(btc.ts[59]) and len(ts) == len(set(ts)) and ts == sorted(ts)


def test_feed_duplicates_and_out_of_order_are_dropped_and_counted(btc: BarTable) -> None:
    feed, _, got = run_feed(btc, Faults(duplicate_at=frozenset({5, 6}),
                                        out_of_order_at=frozenset({20})))
    assert closed(got) == [int(t) for t in btc.ts[:60]]
    assert feed.health.counters["duplicates"] == 2
    assert feed.health.counters["out_of_order"] >= 1


def test_feed_malformed_frames_are_counted_and_the_connection_stays_up(btc: BarTable) -> None:
    feed, _, got = run_feed(btc, Faults(malformed_at=frozenset({3})))
    assert feed.health.counters["malformed"] == 3 and feed.health.counters["rejected"] == 2
    assert feed.health.counters["connects"] == 1
    assert closed(got) == [int(t) for t in btc.ts[:60]]


def test_feed_silent_socket_hits_the_idle_timeout_and_reconnects(btc: BarTable) -> None:
    # 150 bars last 3 s; the server goes silent for 1.5 s after bar 9, the client gives up
    # on the socket after 1 s and gets the bars closed after it reconnects (the ones
    # missed meanwhile are a gap for REST, see test_paper_session)
    feed, _, got = run_feed(btc, Faults(silence_at={10: 1.5}), bars=150)
    assert feed.health.counters["idle_timeouts"] >= 1
    assert feed.health.counters["connects"] >= 2
    ts = closed(got)
    assert ts[-1] == int(btc.ts[149]) and ts == sorted(set(ts))


def test_feed_server_shutdown_reconnects_at_once(btc: BarTable) -> None:
    feed, _, got = run_feed(btc, Faults(shutdown_at=frozenset({10})))
    assert feed.health.counters["server_shutdowns"] == 1
    assert feed.health.counters["connects"] == 2
    assert closed(got)[-1] == int(btc.ts[59])


def test_feed_refused_subscription_fails_loudly_and_is_retried(btc: BarTable) -> None:
    feed, _, got = run_feed(btc, Faults(refuse_subscriptions=2))
    assert feed.health.counters["subscribe_errors"] == 2
    assert closed(got)[-1] == int(btc.ts[59])


def test_feed_refused_connections_back_off_up_to_the_cap_and_stay_up(btc: BarTable) -> None:
    delays: list[float] = []

    async def main() -> FeedClient:
        adapter = BinanceSpot(Subscription(("BTCUSDT",)), f"ws://127.0.0.1:{free_port()}")
        feed = FeedClient(adapter, lambda ev: None, config=FeedConfig(
            initial_backoff_s=0.01, max_backoff_s=0.08, open_timeout_s=0.5), seed=1)
        task = asyncio.create_task(feed.run())
        for _ in range(60):
            await asyncio.sleep(0.02)
            delays.append(feed.health.backoff_s)
        feed.stop()
        await asyncio.wait_for(task, 5)
        return feed
    feed = asyncio.run(main())
    assert feed.health.counters["connect_failures"] >= 4
    assert max(delays) <= 0.08 and max(delays) > 0.03  # grew from 0.01, capped
    assert feed.health.state == "stopped"


def test_feed_answers_server_pings_and_stays_connected(btc: BarTable) -> None:
    # the server pings every 50 ms and drops us after 5 s without a pong; our own
    # keepalive pings are off, so only our pongs keep the connection alive
    cfg = FeedConfig(initial_backoff_s=0.02, max_backoff_s=0.2, idle_timeout_s=2.0,
                     ping_interval_s=None)
    feed, _, got = run_feed(btc, Faults(), bars=40, config=cfg, ping_interval_s=0.05)
    assert feed.health.counters["connects"] == 1
    assert np.array_equal(closed(got), btc.ts[:40])


def test_feed_reconnects_after_healthy_periods_wait_the_first_backoff_step(
        btc: BarTable) -> None:
    # four abrupt disconnects, each after a connection that delivered fresh bars: every
    # reconnect waits the first step (0.01-0.02 s), not 0.04, 0.08, 0.16 s ...
    feed, _, got = run_feed(btc, Faults(disconnect_at=frozenset({10, 20, 30, 40})))
    delays = list(feed.health.recent_backoff_s)
    assert feed.health.counters["disconnects"] == 4 and len(delays) == 4
    assert max(delays) <= FAST.initial_backoff_s, delays
    assert closed(got)[-1] == int(btc.ts[59])


def test_feed_idle_timeout_closes_the_socket_cleanly_with_code_1000(btc: BarTable) -> None:
    feed, server, _ = run_feed(btc, Faults(silence_at={10: 1.5}), bars=150)
    assert feed.health.counters["idle_timeouts"] == 1
    # the server saw our closing handshake, with a normal closure (not 1011)
    assert server.client_close_codes[1000] >= 1 and server.client_close_codes[1011] == 0


def test_feed_server_close_1000_reconnects_and_resubscribes(btc: BarTable) -> None:
    feed, server, got = run_feed(btc, Faults(normal_close_at=frozenset({15})))
    h = feed.health
    assert h.counters["disconnects"] == 1 and h.close_codes[1000] == 1
    assert h.counters["connects"] == 2 and server.stats["connections"] == 2
    ts = closed(got)
    assert ts[-1] == int(btc.ts[59]) and ts == sorted(set(ts))


def test_feed_connection_age_limit_hands_over_without_losing_a_bar(btc: BarTable) -> None:
    # a 0.25 s connection limit (Binance: 24 h) over 100 bars of 20 ms: the client opens
    # a new connection before leaving the old one, every time
    cfg = dataclasses.replace(FAST, max_connection_s=0.25)
    feed, server, got = run_feed(btc, Faults(), bars=100, config=cfg)
    h = feed.health
    assert h.counters["handovers"] >= 4
    assert h.counters["connects"] == h.counters["handovers"] + 1
    assert h.counters["disconnects"] == 0 and h.counters["idle_timeouts"] == 0
    # every closed bar exactly once and in order: no loss, the overlap deduplicated
    assert closed(got) == [int(t) for t in btc.ts[:100]]
    assert h.counters["duplicates"] >= 1
    # each old connection was closed by us, cleanly
    assert server.client_close_codes[1000] >= h.counters["handovers"]
