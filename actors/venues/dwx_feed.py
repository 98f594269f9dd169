"""DWX Connect market data as a ``protocol.MarketFeed``: closed bars from the EA's
``DWX_Bar_Data.txt`` and bid/ask from ``DWX_Market_Data.txt`` (read by the folder's shared
``DwxClient``), delivered as ``KlineEvent`` (closed bars only) and ``QuoteEvent``.

- On start the feed subscribes its bars (``SUBSCRIBE_SYMBOLS_BAR_DATA``) and, for quotes,
  its symbols' ticks (``SUBSCRIBE_SYMBOLS``); a subscription the EA does not read in time
  is counted (``subscribe_errors``) and retried with back-off. After an EA restart (it
  forgets its subscriptions) the client sends them all again by itself.
- The bar file holds the last *closed* bar of each pair that has a new one, so a reader
  that looks too late sees only the newer bar (the real EA's own warning). A new bar more
  than one interval after the last delivered one makes the feed ask ``GET_HISTORIC_DATA``
  for the bars between. If the EA ran without a break since the last delivered bar, the
  bars were only read late (a slow poll): they are delivered first, in order, as a
  websocket delivers what it buffered. After a break (the EA restarted or stopped
  answering) they are left to the session's sequencer, which backfills them as catch-up,
  as after a websocket's reconnect; a closure (a weekend) has no bars either way. Every
  bar is delivered once, in order (``EventFilter``).
- MetaTrader ticks carry no sizes: a quote's sizes are 1.0, meaning "quoted".
- Health: ``live`` while the EA rewrites its orders file (it does at least once a second,
  through weekends too: a closed market is not a dead bridge), ``degraded`` while it does
  not (counted as an idle timeout per outage), ``stopped`` after ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from raytrade.actors.event_filter import EventFilter
from raytrade.actors.events import KlineEvent, MarketEvent, QuoteEvent
from raytrade.actors.feed_client import FeedConfig
from raytrade.actors.health import FeedHealth
from raytrade.actors.venues.dwx_client import DwxClient, EaError
from raytrade.actors.venues.dwx_requests import historic_bars
from raytrade.envs.bars import Bar
from raytrade.envs.errors import ConfigError, TemporaryError

log = logging.getLogger(__name__)


class DwxFeed:
    """One session's bars and quotes from a terminal folder (module docstring).

    Args:
        client: the folder's shared client.
        symbols: MetaTrader symbols.
        timeframe: the MT timeframe of the bars (``H1`` ...); ``interval_ms`` its length.
        quotes: also deliver bid/ask.
        on_event: receives the events (must not block).
        config: back-off (``initial_backoff_s``, ``max_backoff_s``).
        clock: seconds, for health times.
    """

    def __init__(self, client: DwxClient, symbols: tuple[str, ...], timeframe: str,
                 interval_ms: int, on_event: Callable[[MarketEvent], None], *, quotes: bool,
                 config: FeedConfig, clock: Callable[[], float]) -> None:
        if not symbols:
            raise ConfigError("a DWX feed needs at least one symbol")
        self.client = client
        self.symbols = symbols
        self.timeframe = timeframe
        self.interval_ms = interval_ms
        self.on_event = on_event
        self.quotes = quotes
        self.config = config
        self.clock = clock
        self.health = FeedHealth()
        self.filter = EventFilter(self.health)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._quote_id = 0
        self._last_tick: dict[str, tuple[float, float]] = {}
        self._unbroken = False
        """The EA ran without a break since the last bar delivered (module docstring)."""
        self._restarts = client.faults["ea_restart"]

    def stop(self) -> None:
        """Ask ``run`` to return."""
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        """Deliver events until ``stop()`` (module docstring); never raises on EA faults."""
        client = self.client
        wake = self._wake.set
        client.listeners.append(wake)
        subscribed = False
        was_alive = True
        backoff = self.config.initial_backoff_s
        try:
            while not self._stop.is_set():
                if not subscribed:
                    try:
                        await self._subscribe()
                        subscribed = True
                        self.health.count("connects")
                        backoff = self.config.initial_backoff_s
                    except (TemporaryError, EaError) as exc:
                        self.health.count("subscribe_errors")
                        self._down(f"subscribing failed: {exc}")
                        self.health.backoff_s = backoff
                        self.health.recent_backoff_s.append(backoff)
                        await self._sleep(backoff)
                        backoff = min(backoff * 2, self.config.max_backoff_s)
                        continue
                alive = client.running  # bars and ticks flow while the orders file is broken
                if not alive or client.faults["ea_restart"] != self._restarts:
                    self._unbroken = False
                    self._restarts = client.faults["ea_restart"]
                if alive:
                    self.health.state = "live"
                    await self._deliver()
                elif was_alive:
                    self.health.count("idle_timeouts")
                    self._down(f"the EA has not rewritten its orders file for "
                               f"{client.config.stale_after_s:g} s")
                was_alive = alive
                self._wake.clear()
                await self._sleep(1.0)
        finally:
            client.listeners.remove(wake)
            self.health.state = "stopped"

    def _down(self, why: str) -> None:
        self.health.state = "degraded"
        self.health.last_error = why
        log.warning("dwx feed: %s", why)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _subscribe(self) -> None:
        await self.client.start()
        await self.client.subscribe_bars(tuple((s, self.timeframe) for s in self.symbols))
        if self.quotes:
            await self.client.subscribe_ticks(self.symbols)

    async def _deliver(self) -> None:
        state = self.client.state
        now = self.clock()
        for symbol in self.symbols:
            bar = state.bars.get((symbol, self.timeframe))
            last = self.filter.last_closed.get(symbol)
            if bar is not None and last is not None and bar.ts > last + self.interval_ms \
                    and self._unbroken:
                for missed in await self._missed(symbol, last, bar.ts):
                    self._emit(KlineEvent(symbol, self.interval_ms, missed, True,
                                          int(now * 1000)), now)
            if bar is not None:
                self._emit(KlineEvent(symbol, self.interval_ms, bar, True, int(now * 1000)),
                           now)
                self._unbroken = True
            tick = state.ticks.get(symbol) if self.quotes else None
            if tick is not None and self._last_tick.get(symbol) != (tick.bid, tick.ask):
                self._last_tick[symbol] = (tick.bid, tick.ask)
                self._quote_id += 1
                self._emit(QuoteEvent(symbol, self._quote_id, tick.bid, 1.0, tick.ask, 1.0),
                           now)

    async def _missed(self, symbol: str, last: int, new: int) -> list[Bar]:
        """The bars between ``last`` and ``new`` (none on a failure: the sequencer
        backfills them)."""
        try:
            bars = await historic_bars(self.client, symbol, self.timeframe,
                                       last + self.interval_ms, new - 1)
        except EaError as exc:
            if exc.message.error_type == "HISTORIC_DATA":
                return []  # no bar in between: a closure
            self.health.count("rest_errors")
            self.health.last_error = f"GET_HISTORIC_DATA for missed bars: {exc}"
            return []
        except TemporaryError as exc:
            self.health.count("rest_errors")
            self.health.last_error = f"GET_HISTORIC_DATA for missed bars: {exc}"
            return []
        between = [b for b in bars if last < b.ts < new]
        self.health.count("backfilled_bars", len(between))
        return between

    def _emit(self, event: MarketEvent, now: float) -> None:
        last = self.filter.last_closed.get(event.symbol) if isinstance(event, KlineEvent) \
            else None
        if isinstance(event, KlineEvent) and last is not None and event.bar.ts == last:
            return  # the same last bar, read again: not news
        if self.filter.accept(event):
            self.health.count("messages")
            self.health.last_message_at = now
            self.on_event(event)
