"""The watchdog on a fake clock: staleness, feed-down alerts, the REST fallback, and the
market clock that keeps bars still in progress out of the journal. No real waiting: the
clock is a number the test moves."""

from __future__ import annotations

import asyncio

from raytrade.actors.bar_sequencer import BarSequencer, SequencedBar
from raytrade.actors.health import FeedHealth
from raytrade.actors.watchdog import MarketClock, Watchdog
from raytrade.envs.bars import Bar, BarTable

MS = 300_000  # 5m bars
INTERVAL_S = 300.0  # production: speed 1


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Recorder:
    """Collects what the watchdog reports and offers."""

    def __init__(self) -> None:
        self.stale = 0
        self.fresh: list[tuple[str, int]] = []
        self.feed_down: list[float] = []
        self.offered: list[tuple[str, int]] = []
        self.released: list[SequencedBar] = []

    async def offer(self, symbol: str, bar: Bar) -> None:
        self.offered.append((symbol, bar.ts))

    async def release(self, released: list[SequencedBar]) -> None:
        self.released.extend(released)


def make(table: BarTable, clock: FakeClock, health: FeedHealth, rec: Recorder, *,
         last: int) -> tuple[Watchdog, list[tuple[int, int]]]:
    """A watchdog over one sequencer whose REST serves ``table``; returns it and the
    requested REST ranges."""
    calls: list[tuple[int, int]] = []

    async def backfill(symbol: str, start: int, end: int) -> list[Bar]:
        calls.append((start, end))
        return [b for b in table if start <= b.ts < end]

    seq = BarSequencer("BTCUSDT", MS, backfill, health, last_ts=int(table.ts[last]))
    wd = Watchdog(clock=clock, interval_s=INTERVAL_S, stale_after_bars=2.0,
                  feed_down_alert_s=300.0, health=health, sequencers={"BTCUSDT": seq},
                  offer=rec.offer, release=rec.release,
                  on_stale=lambda: setattr(rec, "stale", rec.stale + 1),
                  on_fresh=lambda sym, ts: rec.fresh.append((sym, ts)),
                  on_feed_down=lambda down_s, why: rec.feed_down.append(down_s))
    return wd, calls


def test_watchdog_two_intervals_without_a_bar_on_the_fake_clock_go_stale(
        btc: BarTable) -> None:
    clock, health, rec = FakeClock(), FeedHealth(state="live"), Recorder()
    wd, calls = make(btc.slice(0, 30), clock, health, rec, last=20)

    async def main() -> None:
        await wd.check()
        assert not wd.stale and not calls  # no live bar yet: a warm-up is not staleness
        wd.live_bar("BTCUSDT", 0)
        clock.t += 2 * INTERVAL_S  # exactly the limit: not yet
        await wd.check()
        assert not wd.stale and not calls
        clock.t += 0.001
        await wd.check()
        assert wd.stale and rec.stale == 1 and wd.faults() == ["stale: no fresh closed bar"]
        # the REST fallback asked for everything after the last sequenced bar
        assert calls == [(int(btc.ts[21]), int(btc.ts[21]) + 1000 * MS)]
        assert [ts for _, ts in rec.offered] == [int(t) for t in btc.ts[21:30]]
        await wd.check()  # still stale: reported once, REST polled again
        assert rec.stale == 1 and len(calls) == 2
        wd.live_bar("BTCUSDT", int(btc.ts[30]))
        assert not wd.stale and rec.fresh == [("BTCUSDT", int(btc.ts[30]))]
        assert wd.faults() == []

    asyncio.run(main())
    assert health.counters["stale_holds"] == 1


def test_watchdog_processed_bars_keep_a_slow_backlog_from_going_stale(btc: BarTable) -> None:
    clock, health, rec = FakeClock(), FeedHealth(state="live"), Recorder()
    wd, calls = make(btc.slice(0, 30), clock, health, rec, last=20)

    async def main() -> None:
        wd.live_bar("BTCUSDT", 0)
        for _ in range(10):  # a bar traded every 1.5 intervals: never 2 without one
            clock.t += 1.5 * INTERVAL_S
            wd.processed()
            await wd.check()
        assert not wd.stale and not calls

    asyncio.run(main())


def test_watchdog_feed_not_live_for_the_limit_alerts_and_reports_a_fault(
        btc: BarTable) -> None:
    clock, health, rec = FakeClock(), FeedHealth(state="degraded"), Recorder()
    health.last_error = "closed by server (1006)"
    wd, _ = make(btc.slice(0, 30), clock, health, rec, last=20)

    async def main() -> None:
        await wd.check()  # down since now
        clock.t += 300.0
        await wd.check()
        assert rec.feed_down == [] and wd.faults() == []
        clock.t += 1.0
        await wd.check()
        assert rec.feed_down == [301.0] and wd.faults() == ["feed down for 301 s"]
        health.state = "live"
        await wd.check()
        assert wd.faults() == []

    asyncio.run(main())


def test_market_clock_accepts_only_bars_closed_before_the_request(btc: BarTable) -> None:
    clock = FakeClock(0.0)
    # a replay at 60x: anchored at the close of the newest streamed bar
    market = MarketClock(clock, MS, speed=60.0)
    bars = [btc.bar(i) for i in range(5)]
    close_2 = int(btc.ts[2]) + MS
    market.observe_close(close_2)
    assert market.now_ms() == close_2
    clock.t += 2.5  # 150 s of market time: bar 3 is half way
    health = FeedHealth()
    assert market.closed(bars, market.now_ms(), health) == bars[:3]
    assert health.counters["rest_open_bars"] == 2
    clock.t += 2.5  # bar 3 closed now; an older close does not move the anchor back
    market.observe_close(close_2 - MS)
    assert market.closed(bars, market.now_ms()) == bars[:4]


def test_market_clock_without_a_streamed_bar_is_the_clock_itself() -> None:
    clock = FakeClock(1_700_000_000.0)
    market = MarketClock(clock, MS)
    assert market.now_ms() == 1_700_000_000_000
    still_open = Bar(1_700_000_000_000 - MS // 2, 1.0, 1.0, 1.0, 1.0, 1.0)
    closed = Bar(1_700_000_000_000 - MS, 1.0, 1.0, 1.0, 1.0, 1.0)
    assert market.closed([closed, still_open], market.now_ms()) == [closed]
