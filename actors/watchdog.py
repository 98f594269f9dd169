"""The session's watchdog: staleness, feed-down alerts, the REST fallback, and the market
clock that decides which REST bars have closed.

**Clock rule.** Every decision here reads the injected ``clock`` (seconds; the session's,
``time.time`` by default) and nothing else: no ``time.monotonic``, no ``time.time``. A
test drives it with a fake clock and no real waiting. ``speed`` (replays) makes bar
intervals pass that many times faster than the clock.

- **Stale**: ``stale_after_bars`` bar intervals of clock time without a processed bar,
  once the first live bar has arrived (a long warm-up or backlog is not staleness). A
  stale symbol takes no new entries: live bars are processed as ``catchup`` until a fresh
  live bar arrives. Each time the limit passes, the REST fallback fetches what the venue
  has after the last sequenced bar, as catch-up.
- **Feed down**: the feed not ``live`` for ``feed_down_alert_s`` of clock time raises a
  ``feed_down`` alert on every check and is an unresolved fault in the health export.
- **Gaps**: a sequencer holding a gap it could not fill (``bar_sequencer.py``) retries on
  every check.
- **Market closed**: with a trading calendar that closes (``envs/calendar.py``; the policy
  manifest's ``env.calendar``), no bar arriving and the feed not ``live`` while the
  calendar says the market is closed (a forex weekend, a holiday) are what a closed market
  looks like: no ``stale`` hold, no ``feed_down`` alert or fault, no REST fallback. Both
  clocks restart at the open, so staleness and feed-down are measured in session time.
  "Now" for the calendar is the venue's time (``MarketClock.now_ms``).
- **Closed bars only** (``MarketClock``): a venue's REST reply may include the bar still
  in progress (Binance klines do: a partial close and volume). Only bars whose close time
  (open + interval) had passed on the market clock when the request was sent are
  accepted from REST; the others are counted as ``rest_open_bars`` and fetched again once
  closed. Otherwise an open bar would be journaled as closed and the real one dropped as
  its duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from raytrade.actors.bar_sequencer import BarSequencer, SequencedBar
from raytrade.actors.health import FeedHealth
from raytrade.envs.bars import Bar
from raytrade.envs.calendar import ALWAYS, TradingCalendar

log = logging.getLogger(__name__)

Clock = Callable[[], float]
"""Seconds; only differences matter for durations, ``MarketClock`` anchors it."""


class MarketClock:
    """The venue's current time in ms, from the injected clock.

    Anchored at the close time of the newest closed bar received on the stream (it
    arrived after that close, so the estimate never runs ahead of the venue) and
    advancing ``speed`` times as fast as the clock; before any such bar, the clock itself
    (production, ``speed`` 1). Reanchored on every newer close.
    """

    def __init__(self, clock: Clock, interval_ms: int, speed: float = 1.0) -> None:
        self.clock = clock
        self.interval_ms = interval_ms
        self.speed = speed
        self._anchor: tuple[int, float] | None = None  # (close ms, clock s when seen)

    def observe_close(self, close_ms: int) -> None:
        """A bar closing at ``close_ms`` arrived on the stream now."""
        if self._anchor is None or close_ms > self._anchor[0]:
            self._anchor = (close_ms, self.clock())

    def now_ms(self) -> int:
        """The venue's time (class docstring)."""
        if self._anchor is None:
            return int(self.clock() * 1000.0)
        close_ms, seen = self._anchor
        return close_ms + int((self.clock() - seen) * 1000.0 * self.speed)

    def closed(self, bars: list[Bar], as_of_ms: int, health: FeedHealth | None = None
               ) -> list[Bar]:
        """The bars closed at ``as_of_ms``: pass ``now_ms()`` read *before* the request
        whose reply ``bars`` is, since the venue may have built the reply at any moment
        after it was sent (a bar that closes during the request may be in it, still
        open). The others are counted in ``health``."""
        out = [b for b in bars if b.ts + self.interval_ms <= as_of_ms]
        if health is not None and len(out) < len(bars):
            health.count("rest_open_bars", len(bars) - len(out))
        return out


Offer = Callable[[str, Bar], Awaitable[None]]
"""Offer a REST bar of a symbol to its sequencer as catch-up (never live)."""
Release = Callable[[list[SequencedBar]], Awaitable[None]]
"""Hand bars released by a sequencer's retry to the trading pipeline."""


class Watchdog:
    """Staleness, feed-down and REST fallback for one session (module docstring).

    The session calls ``live_bar`` when a sequencer releases a live bar, ``processed``
    after each traded bar, and ``check`` periodically; ``on_stale``, ``on_fresh`` and
    ``on_feed_down`` report transitions (journal, alerts). ``calendar`` says when the
    market is closed and ``market_ms`` the venue's time in ms (default: the clock).
    """

    def __init__(self, *, clock: Clock, interval_s: float, stale_after_bars: float,
                 feed_down_alert_s: float, health: FeedHealth,
                 sequencers: Mapping[str, BarSequencer], offer: Offer, release: Release,
                 on_stale: Callable[[], None], on_fresh: Callable[[str, int], None],
                 on_feed_down: Callable[[float, str], None],
                 calendar: TradingCalendar = ALWAYS,
                 market_ms: Callable[[], int] | None = None) -> None:
        self.clock = clock
        self.calendar = calendar
        self.market_ms = market_ms or (lambda: int(self.clock() * 1000.0))
        self.interval_s = interval_s
        self.stale_after_s = stale_after_bars * interval_s
        self.feed_down_alert_s = feed_down_alert_s
        self.health = health
        self.sequencers = sequencers
        self.offer = offer
        self.release = release
        self.on_stale = on_stale
        self.on_fresh = on_fresh
        self.on_feed_down = on_feed_down
        self.stale = False
        self.last_bar_at: float | None = None  # the first live bar starts the stale clock
        self.feed_down_since: float | None = None

    # ---- what the session reports
    def live_bar(self, symbol: str, ts: int) -> None:
        """A sequencer released a live bar: fresh data."""
        self.last_bar_at = self.clock()
        if self.stale:
            self.on_fresh(symbol, ts)
        self.stale = False

    def processed(self) -> None:
        """A bar was traded (a long warm-up or backlog is not staleness)."""
        if self.last_bar_at is not None:
            self.last_bar_at = self.clock()

    # ---- the periodic check
    def market_closed(self) -> bool:
        """Whether the calendar says the market is closed now (never around the clock)."""
        return not self.calendar.always and not self.calendar.is_open(self.market_ms())

    async def check(self) -> None:
        """Feed state, staleness (with the REST fallback) and gap retries, now. While the
        market is closed no new alert is raised (the stale and feed-down clocks move to
        the open), but bars missing from before the close are still fetched: a symbol
        that went stale, or a gap left open, before Friday's close is not left so all
        weekend."""
        now = self.clock()
        if self.market_closed():
            self.feed_down_since = None
            if self.last_bar_at is not None:
                self.last_bar_at = now  # staleness counts session time: from the open
            if self.stale:
                await self.rest_fallback()
            await self._retry_gaps()
            return
        if self.health.state != "live":
            self.feed_down_since = self.feed_down_since or now
            if now - self.feed_down_since > self.feed_down_alert_s:
                self.on_feed_down(now - self.feed_down_since, self.health.last_error)
        else:
            self.feed_down_since = None
        if self.last_bar_at is not None and now - self.last_bar_at > self.stale_after_s:
            if not self.stale:
                self.stale = True
                self.health.count("stale_holds")
                self.on_stale()
            await self.rest_fallback()
        await self._retry_gaps()

    async def _retry_gaps(self) -> None:
        for seq in self.sequencers.values():
            if seq.stale:
                await self.release(await seq.retry())

    async def rest_fallback(self) -> None:
        """While no bar arrives, fetch what REST has after each symbol's last sequenced
        bar (closed bars only: the sequencer's backfill applies ``MarketClock.closed``)
        and offer it as catch-up."""
        for sym, seq in self.sequencers.items():
            if seq.last_ts is None or seq.backfill is None:
                continue
            start = seq.last_ts + seq.interval_ms
            try:
                bars = await seq.backfill(sym, start, start + 1000 * seq.interval_ms)
            except Exception as exc:  # any failure: count it, retry on the next check
                seq.health.count("rest_errors")
                seq.health.last_error = f"REST fallback: {exc}"
                continue
            for bar in bars:
                await self.offer(sym, bar)

    # ---- health
    def faults(self) -> list[str]:
        """Unresolved faults now (for the health export)."""
        out = []
        now = self.clock()
        if self.feed_down_since is not None and \
                now - self.feed_down_since > self.feed_down_alert_s:
            out.append(f"feed down for {now - self.feed_down_since:.0f} s")
        if self.stale:
            out.append("stale: no fresh closed bar")
        return out
