"""Calendars on the live side, on real EURUSD hourly bars and a fake clock: a forex weekend
is not a gap for the bar sequencer (no REST request, no ``gaps`` count) while a missing
session bar still is; the watchdog raises no ``stale`` or ``feed_down`` alert while the
market is closed and measures both again from the open."""

from __future__ import annotations

import asyncio

import numpy as np
from raytrade.actors.bar_sequencer import CATCHUP, LIVE, WARMUP, BarSequencer, SequencedBar
from raytrade.actors.health import FeedHealth
from raytrade.actors.watchdog import Watchdog
from raytrade.envs.bars import Bar, BarTable
from raytrade.envs.calendar import TradingCalendar
from raytrade.envs.io import load_bars
from raytrade.envs.market import backtesting_path

H = 3_600_000
FX = TradingCalendar(kind="forex", holidays=("12-25", "01-01"))


def _eurusd() -> BarTable:
    return load_bars(backtesting_path("EURUSD"), calendar=FX).slice(0, 400)


def _weekend(table: BarTable) -> int:
    """Index of the first bar after the first weekend."""
    return int(np.flatnonzero(np.diff(table.ts) > H)[0]) + 1


def test_sequencer_steps_over_a_weekend_and_backfills_a_missing_session_bar() -> None:
    table = _eurusd()
    monday = _weekend(table)
    calls: list[tuple[int, int]] = []

    async def backfill(symbol: str, start: int, end: int) -> list[Bar]:
        calls.append((start, end))
        return [b for b in table if start <= b.ts < end]

    health = FeedHealth()
    seq = BarSequencer("EURUSD", H, backfill, health, warmup_bars=10, calendar=FX)

    async def main() -> None:
        # warm-up across the weekend: 10 session bars, not 10 hours
        out = await seq.offer(table.bar(monday + 3))
        assert [s.kind for s in out] == [WARMUP] * 10 + [LIVE]
        assert [s.bar.ts for s in out] == [int(t) for t in table.ts[monday - 7:monday + 4]]
        assert calls == [(int(table.ts[monday - 7]), int(table.ts[monday + 3]))]
        # the next weekend: Friday's last bar, then Sunday evening's first at once
        friday = monday + int(np.flatnonzero(np.diff(table.ts[monday:]) > H)[0])
        for i in range(monday + 4, friday + 2):
            assert [s.kind for s in await seq.offer(table.bar(i))] == [LIVE]
        assert len(calls) == 1 and "gaps" not in health.counters
        # a missing session bar is still a gap, filled over REST
        out = await seq.offer(table.bar(friday + 3))
        assert [(s.bar.ts, s.kind) for s in out] == [
            (int(table.ts[friday + 2]), CATCHUP), (int(table.ts[friday + 3]), LIVE)]
        assert health.counters["gaps"] == 1 and health.counters["gaps_backfilled"] == 1

    asyncio.run(main())


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_watchdog_is_quiet_while_the_market_is_closed_and_resumes_at_the_open() -> None:
    table = _eurusd()
    monday = _weekend(table)
    friday_close = int(table.ts[monday - 1]) + H        # Friday 17:00 New York
    sunday_open = int(table.ts[monday])                 # Sunday 17:00 New York
    clock = FakeClock(friday_close / 1000 - 60.0)       # a minute before the close
    health = FeedHealth(state="live")
    stale: list[int] = []
    feed_down: list[float] = []
    fallback: list[tuple[int, int]] = []

    async def backfill(symbol: str, start: int, end: int) -> list[Bar]:
        fallback.append((start, end))
        return []

    async def offer(symbol: str, bar: Bar) -> None:
        return None

    async def release(bars: list[SequencedBar]) -> None:
        return None

    seq = BarSequencer("EURUSD", H, backfill, health, last_ts=int(table.ts[monday - 1]),
                       calendar=FX)
    wd = Watchdog(clock=clock, interval_s=3600.0, stale_after_bars=2.0,
                  feed_down_alert_s=300.0, health=health, sequencers={"EURUSD": seq},
                  offer=offer, release=release, on_stale=lambda: stale.append(1),
                  on_fresh=lambda sym, ts: None,
                  on_feed_down=lambda down_s, why: feed_down.append(down_s),
                  calendar=FX)

    async def main() -> None:
        wd.live_bar("EURUSD", int(table.ts[monday - 1]))
        health.state = "degraded"                        # the bridge goes quiet at the close
        for _ in range(48 * 6):                          # the weekend, checked every 10 min
            clock.t += 600.0
            if clock.t * 1000 >= sunday_open:
                break
            await wd.check()
            assert wd.market_closed()
        assert stale == [] and feed_down == [] and fallback == [] and wd.faults() == []
        # open: both clocks run again from here
        clock.t = sunday_open / 1000 + 60.0
        await wd.check()
        clock.t += 301.0
        await wd.check()
        assert feed_down and feed_down[-1] < 400.0       # counted from the open, not Friday
        health.state = "live"
        clock.t = sunday_open / 1000 + 2 * 3600.0 + 1.0  # two session hours without a bar
        await wd.check()
        assert stale == [1] and fallback and wd.stale

    asyncio.run(main())


def test_watchdog_stale_before_the_close_keeps_fetching_over_the_weekend_without_alerts(
        ) -> None:
    table = _eurusd()
    monday = _weekend(table)
    friday_last = int(table.ts[monday - 1])
    clock = FakeClock(friday_last / 1000 - 2 * 3600.0)  # three session hours before close
    health = FeedHealth(state="live")
    stale: list[int] = []
    fallback: list[float] = []

    async def backfill(symbol: str, start: int, end: int) -> list[Bar]:
        fallback.append(clock.t)
        return []

    async def offer(symbol: str, bar: Bar) -> None:
        return None

    async def release(bars: list[SequencedBar]) -> None:
        return None

    seq = BarSequencer("EURUSD", H, backfill, health, last_ts=friday_last - 3 * H,
                       calendar=FX)
    wd = Watchdog(clock=clock, interval_s=3600.0, stale_after_bars=2.0,
                  feed_down_alert_s=300.0, health=health, sequencers={"EURUSD": seq},
                  offer=offer, release=release, on_stale=lambda: stale.append(1),
                  on_fresh=lambda sym, ts: None,
                  on_feed_down=lambda down_s, why: None, calendar=FX)

    async def main() -> None:
        wd.live_bar("EURUSD", friday_last - 3 * H)
        clock.t += 2 * 3600.0 + 1.0                      # no bar for two session hours
        await wd.check()
        assert stale == [1] and len(fallback) == 1       # went stale before the close
        clock.t = (friday_last + H) / 1000 + 3600.0      # Friday 18:00 New York: closed
        await wd.check()
        assert wd.market_closed() and len(fallback) == 2  # the missing bars still fetched
        assert stale == [1]                               # and no new alert

    asyncio.run(main())
