"""Closed bars of one symbol, delivered in order with no gap, or not at all.

The streaming features need every bar, once, in order. ``BarSequencer`` takes closed bars
from the feed (already deduplicated there) and from REST, and releases a run of
consecutive bars:

- a bar at or before the last released one is dropped and counted;
- before the first bar ever, ``warmup_bars`` of history are fetched over REST (as much as
  exists), so features are warm at the first decision;
- a jump in open times is a gap: the missing bars are fetched over REST before anything
  after the gap is released. If that fails (REST down, bars missing), the symbol is
  ``stale``: the new bars wait (bounded, oldest dropped) and the fetch is retried on the
  next bar or ``retry()``; the gap is reported to ``on_gap`` for the journal.

Released bars carry a ``kind``: ``warmup`` (history before the first live bar), ``catchup``
(backfilled, or held while stale: too late to act on) or ``live`` (the newest bar, in time).

**Calendars.** With the market's trading calendar (``envs/calendar.py``; the policy
manifest's ``env.calendar``), a jump across a closure (a forex weekend, a holiday) is not
a gap: the Sunday-evening bar follows the Friday bar at once, with no REST request and no
``gaps`` count. A jump that skips a bar the calendar expects is a gap as before, and only
the expected bars must come back from REST. The warm-up history starts at
``calendar.start_for_bars``, so ``warmup_bars`` counts session bars, not hours.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from raytrade.actors.events import MessageRejectedError
from raytrade.actors.health import FeedHealth
from raytrade.envs.bars import Bar
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.errors import TemporaryError

log = logging.getLogger(__name__)

Backfill = Callable[[str, int, int], Awaitable[list[Bar]]]
"""``(symbol, start_ms, end_ms) -> closed bars with start_ms <= ts < end_ms`` (the session
passes a venue's REST history with the bars still in progress removed, ``watchdog.py``)."""

WARMUP, CATCHUP, LIVE = "warmup", "catchup", "live"


@dataclass(frozen=True, slots=True)
class SequencedBar:
    """A released bar and how it may be used (module docstring)."""

    symbol: str
    bar: Bar
    kind: str


class BarSequencer:
    """See the module docstring. ``last_ts`` may be restored from a journal."""

    def __init__(self, symbol: str, interval_ms: int, backfill: Backfill | None,
                 health: FeedHealth, *, warmup_bars: int = 0, max_waiting: int = 10_000,
                 last_ts: int | None = None,
                 on_gap: Callable[[str, int, int, str], None] | None = None,
                 calendar: TradingCalendar = ALWAYS) -> None:
        self.symbol = symbol
        self.calendar = calendar
        self.interval_ms = interval_ms
        self.backfill = backfill
        self.health = health
        self.warmup_bars = warmup_bars
        self.max_waiting = max_waiting
        self.last_ts = last_ts
        self.on_gap = on_gap
        self.waiting: dict[int, Bar] = {}
        self.stale = False

    async def offer(self, bar: Bar, *, live: bool = True) -> list[SequencedBar]:
        """Add a closed bar; return the bars now released, oldest first. ``live=False``
        (a bar fetched over REST while the stream is down) is never released as live."""
        if self.last_ts is not None and bar.ts <= self.last_ts:
            self.health.count("duplicates" if bar.ts == self.last_ts else "out_of_order")
            return []
        if bar.ts in self.waiting:
            self.health.count("duplicates")
            return []
        self.waiting[bar.ts] = bar
        while len(self.waiting) > self.max_waiting:
            del self.waiting[min(self.waiting)]
            self.health.count("dropped_queue")
        return await self.retry(newest=bar.ts if live else None)

    async def retry(self, newest: int | None = None) -> list[SequencedBar]:
        """Try to close the gap before the waiting bars and release what is consecutive.

        ``newest`` is the bar that just arrived: it is released as ``live`` if it comes out
        at once, in time; everything else released is ``warmup`` or ``catchup``.
        """
        if not self.waiting:
            return []
        first = min(self.waiting)
        out: list[SequencedBar] = []
        if self.last_ts is None:
            if self.warmup_bars and self.backfill is not None:
                start = self.calendar.start_for_bars(first, self.warmup_bars, self.interval_ms)
                history = await self._fetch(start, first, warmup=True)
                if history is None:
                    return []
                out.extend(SequencedBar(self.symbol, b, WARMUP) for b in history)
                if history:
                    self.last_ts = history[-1].ts
            if self.last_ts is None:
                self.last_ts = first - self.interval_ms
        expected = self.last_ts + self.interval_ms
        if first > expected and not self._follows(self.last_ts, first):
            missing = self.calendar.expected_between(self.last_ts, first, self.interval_ms)
            if not self.stale:
                self.health.count("gaps")
            fetched = await self._fetch(expected, first, warmup=False)
            got = None if fetched is None else self._expected_count(fetched)
            if fetched is None or got != missing:
                self._go_stale(expected, first, "REST backfill failed" if fetched is None
                               else f"REST returned {got} of {missing} bars")
                return out
            self.health.count("gaps_backfilled")
            out.extend(SequencedBar(self.symbol, b, CATCHUP) for b in fetched)
            if fetched:
                self.last_ts = fetched[-1].ts
        self.stale = False
        if self.calendar.always:
            while self.last_ts + self.interval_ms in self.waiting:
                bar = self.waiting.pop(self.last_ts + self.interval_ms)
                self.last_ts = bar.ts
                out.append(SequencedBar(self.symbol, bar, CATCHUP))
        else:  # the next bar may follow a closure
            for ts in sorted(self.waiting):
                if not self._follows(self.last_ts, ts):
                    break
                bar = self.waiting.pop(ts)
                self.last_ts = bar.ts
                out.append(SequencedBar(self.symbol, bar, CATCHUP))
        if out and newest is not None and out[-1].bar.ts == newest:
            out[-1] = SequencedBar(self.symbol, out[-1].bar, LIVE)
        return out

    def _follows(self, prev: int, ts: int) -> bool:
        """Whether the bar opening at ``ts`` comes right after the one at ``prev``: one
        interval later, or with only closures of the calendar between them."""
        return ts == prev + self.interval_ms or (
            not self.calendar.always and ts > prev
            and self.calendar.expected_between(prev, ts, self.interval_ms) == 0)

    def _expected_count(self, bars: list[Bar]) -> int:
        """How many of ``bars`` the calendar expects (a broker's late quote inside a
        closure is kept, but does not stand in for a missing session bar)."""
        if self.calendar.always:
            return len(bars)
        opens = [b.ts for b in bars]
        return int(self.calendar.expected_mask(opens, self.interval_ms).sum())

    def _go_stale(self, start: int, end: int, why: str) -> None:
        if not self.stale:
            self.health.count("gaps_unfilled")
            if self.on_gap is not None:
                self.on_gap(self.symbol, start, end, why)
            log.warning("%s: gap %d..%d not filled (%s): holding, symbol stale", self.symbol,
                        start, end, why)
        self.stale = True

    async def _fetch(self, start: int, end: int, *, warmup: bool) -> list[Bar] | None:
        """Consecutive bars in ``[start, end)`` over REST (closures between them allowed),
        ending at ``end``; None on failure. Warm-up accepts a shorter history (the data may
        begin later)."""
        if self.backfill is None:
            return None
        try:
            bars = await self.backfill(self.symbol, start, end)
        except (TemporaryError, MessageRejectedError) as exc:
            self.health.count("rest_errors")
            self.health.last_error = f"REST: {exc}"
            return None
        bars = [b for b in bars if start <= b.ts < end]
        ok = all(self._follows(b1.ts, b2.ts) for b1, b2 in itertools.pairwise(bars))
        if not ok or (bars and not self._follows(bars[-1].ts, end)) or \
                (not warmup and (not bars or not self._follows(start - self.interval_ms,
                                                               bars[0].ts))):
            self.health.count("rest_errors")
            self.health.last_error = f"REST: bars for {start}..{end} not consecutive"
            return None
        self.health.count("backfilled_bars", len(bars))
        return bars
