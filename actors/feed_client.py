"""The websocket market-data client: connect, subscribe, read, reconnect, never give up.

Built on the ``websockets`` asyncio client (it answers server pings with pongs itself and
sends our keepalive pings; no other control frames are sent, well under Binance's 5 per
second). Behaviour (the README's "The fault model", feed rows):

- reconnect after any close, error or refused connection, with exponential backoff and
  jitter: ``uniform(0.5, 1) * min(max_backoff_s, initial_backoff_s * 2**attempt)``,
  unlimited tries; the attempt count resets once fresh market data arrives;
- every subscription is re-sent on every connect; acks are matched by request id; an
  error reply, or no ack within ``subscribe_timeout_s``, fails the connection loudly and
  it is retried;
- no frame for ``idle_timeout_s`` (a silent dead socket) forces a reconnect;
- ``serverShutdown``, and a connection older than ``max_connection_s`` (Binance closes at
  24 h), reconnect at once;
- malformed frames and schema failures are logged, counted and dropped; the connection
  stays up;
- duplicates and out-of-order events are dropped and counted: closed klines keyed by
  symbol and open time, trades by trade id, quotes by update id.

Events reach ``on_event``, which must not block (the paper session puts them on a bounded
queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import websockets
from raytrade.actors.events import (
    Ignored,
    KlineEvent,
    MarketEvent,
    MessageRejectedError,
    ServerShutdown,
    SubscribeAck,
    SubscribeFailed,
    TradeEvent,
)
from raytrade.actors.health import FeedHealth
from raytrade.actors.venue import VenueAdapter
from raytrade.envs.errors import ConfigError, TemporaryError
from websockets.asyncio.client import ClientConnection, connect

log = logging.getLogger(__name__)


class SubscriptionError(TemporaryError):
    """The venue refused a subscription or never acknowledged it."""


class _Reconnect(Exception):  # noqa: N818 - internal control flow, never escapes
    """Leave the read loop and reconnect; ``immediate`` skips the backoff."""

    def __init__(self, reason: str, immediate: bool = False) -> None:
        super().__init__(reason)
        self.immediate = immediate


@dataclass(frozen=True)
class FeedConfig:
    """Connection behaviour. Times in seconds."""

    initial_backoff_s: float = 0.5
    """First reconnect delay (before jitter)."""
    max_backoff_s: float = 30.0
    """Cap on the reconnect delay."""
    idle_timeout_s: float = 30.0
    """No frame for this long forces a reconnect (about 2x the expected gap; Binance
    kline streams update every 1-2 s)."""
    subscribe_timeout_s: float = 10.0
    """Time allowed for every subscription to be acknowledged."""
    open_timeout_s: float = 10.0
    """Time allowed for the TCP, TLS and websocket handshakes."""
    ping_interval_s: float | None = 20.0
    """Our keepalive ping interval (None: rely on the server's pings and idle_timeout)."""
    max_connection_s: float = 23.5 * 3600
    """Reconnect before the venue's connection age limit (Binance: 24 h)."""

    def __post_init__(self) -> None:
        if not 0 < self.initial_backoff_s <= 1 or self.max_backoff_s < self.initial_backoff_s:
            raise ConfigError("FeedConfig: need 0 < initial_backoff_s <= 1 and "
                              "max_backoff_s >= initial_backoff_s")
        if self.idle_timeout_s <= 0 or self.subscribe_timeout_s <= 0:
            raise ConfigError("FeedConfig: timeouts must be > 0")


class EventFilter:
    """Drops duplicates and out-of-order events, counting them in ``health``."""

    def __init__(self, health: FeedHealth, memory: int = 4096) -> None:
        self.health = health
        self.last_closed: dict[str, int] = {}
        self.last_trade: dict[str, int] = {}
        self.last_sequence: dict[str, int] = {}
        self.last_quote: dict[str, int] = {}
        self._recent_trades: dict[str, deque[int]] = {}
        self._memory = memory

    def accept(self, ev: MarketEvent) -> bool:
        """True if ``ev`` is new and in order."""
        if isinstance(ev, KlineEvent):
            last = self.last_closed.get(ev.symbol)
            if last is not None and ev.bar.ts <= last:
                self.health.count("duplicates" if ev.closed and ev.bar.ts == last
                                  else "out_of_order")
                return False
            if ev.closed:
                self.last_closed[ev.symbol] = ev.bar.ts
            return True
        if isinstance(ev, TradeEvent):
            return self._trade(ev)
        last_q = self.last_quote.get(ev.symbol)
        if last_q is not None and ev.update_id <= last_q:
            self.health.count("duplicates" if ev.update_id == last_q else "out_of_order")
            return False
        self.last_quote[ev.symbol] = ev.update_id
        return True

    def _trade(self, ev: TradeEvent) -> bool:
        recent = self._recent_trades.setdefault(ev.symbol, deque(maxlen=self._memory))
        last = self.last_trade.get(ev.symbol)
        if last is not None and ev.trade_id <= last:
            self.health.count("duplicates" if ev.trade_id in recent else "out_of_order")
            return False
        if ev.sequence >= 0:
            seq = self.last_sequence.get(ev.symbol)
            if seq is not None and ev.sequence != seq + 1:
                self.health.count("sequence_gaps")
            self.last_sequence[ev.symbol] = ev.sequence
        self.last_trade[ev.symbol] = ev.trade_id
        recent.append(ev.trade_id)
        return True


class FeedClient:
    """Reads one venue connection until ``stop()``; see the module docstring."""

    def __init__(self, adapter: VenueAdapter, on_event: Callable[[MarketEvent], None], *,
                 config: FeedConfig | None = None, clock: Callable[[], float] = time.time,
                 seed: int | None = None) -> None:
        self.adapter = adapter
        self.on_event = on_event
        self.config = config or FeedConfig()
        self.clock = clock
        self.health = FeedHealth()
        self.filter = EventFilter(self.health)
        self._rng = random.Random(seed)
        self._stop = asyncio.Event()
        self._next_id = 1
        self.ws: ClientConnection | None = None
        self._closing: asyncio.Future[None] | None = None

    def stop(self) -> None:
        """Ask ``run`` to close the socket and return (call from the event loop)."""
        self._stop.set()
        if self.ws is not None:
            self._closing = asyncio.ensure_future(self.ws.close())

    async def run(self) -> None:
        """Connect and read until stopped, reconnecting after every failure."""
        attempt = 0
        cfg = self.config
        while not self._stop.is_set():
            immediate = False
            try:
                fresh = await self._session()
                attempt = 0 if fresh else attempt
            except _Reconnect as exc:
                immediate = exc.immediate
                self.health.last_error = str(exc)
                attempt = 0 if immediate else attempt
            except websockets.ConnectionClosed as exc:
                self.health.count("disconnects")
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                self.health.close_codes[code] += 1
                self.health.last_error = f"closed by server ({code})"
            except (OSError, TimeoutError, websockets.InvalidHandshake,
                    websockets.InvalidURI, SubscriptionError) as exc:
                if isinstance(exc, SubscriptionError):
                    self.health.count("subscribe_errors")
                else:
                    self.health.count("connect_failures")
                self.health.last_error = f"{exc.__class__.__name__}: {exc}"
            finally:
                self.ws = None
            if self._stop.is_set():
                break
            self.health.state = "degraded"
            if immediate:
                self.health.backoff_s = 0.0
                continue
            delay = self._rng.uniform(0.5, 1.0) * min(cfg.max_backoff_s,
                                                      cfg.initial_backoff_s * 2 ** attempt)
            attempt = min(attempt + 1, 30)
            self.health.backoff_s = delay
            log.warning("%s feed: %s; reconnecting in %.2f s", self.adapter.venue,
                        self.health.last_error, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        self.health.state = "stopped"

    async def _session(self) -> bool:
        """One connection; returns whether it delivered fresh market data."""
        cfg = self.config
        fresh = False
        async with connect(self.adapter.url(), open_timeout=cfg.open_timeout_s,
                           ping_interval=cfg.ping_interval_s, close_timeout=2,
                           max_size=2**20) as ws:
            self.ws = ws
            self.health.count("connects")
            opened = time.monotonic()
            waiting: dict[int, float] = {}
            for rid, frame in self.adapter.subscribe_requests(self._next_id):
                await ws.send(frame)
                if rid is not None:
                    waiting[rid] = time.monotonic() + cfg.subscribe_timeout_s
                    self._next_id = rid + 1
            while not self._stop.is_set():
                timeout = cfg.idle_timeout_s
                if waiting:
                    timeout = min(timeout, max(0.0, min(waiting.values()) - time.monotonic()))
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout)
                except TimeoutError:
                    if waiting and min(waiting.values()) <= time.monotonic():
                        raise SubscriptionError(f"no ack for request(s) {sorted(waiting)} "
                                                f"within {cfg.subscribe_timeout_s} s") from None
                    self.health.count("idle_timeouts")
                    raise _Reconnect(f"no frame for {cfg.idle_timeout_s} s (idle timeout)") \
                        from None
                except websockets.ConnectionClosedOK:
                    if self._stop.is_set():
                        break
                    raise
                fresh |= self._handle(raw, waiting)
                if time.monotonic() - opened > cfg.max_connection_s:
                    raise _Reconnect("connection age limit", immediate=True)
        return fresh

    def _handle(self, raw: str | bytes, waiting: dict[int, float]) -> bool:
        """Process one frame; True if it carried fresh market data."""
        self.health.count("messages")
        try:
            events = self.adapter.parse(raw)
        except MessageRejectedError as exc:
            self.health.count("malformed" if exc.reason.startswith("malformed") else "rejected")
            log.warning("%s feed: dropped %s", self.adapter.venue, exc)
            return False
        fresh = False
        for ev in events:
            if isinstance(ev, SubscribeAck):
                waiting.pop(ev.request_id, None)
            elif isinstance(ev, SubscribeFailed):
                raise SubscriptionError(f"subscription refused (code {ev.code}): {ev.message}")
            elif isinstance(ev, ServerShutdown):
                self.health.count("server_shutdowns")
                raise _Reconnect("server announced shutdown", immediate=True)
            elif isinstance(ev, Ignored):
                self.health.count("unknown")
            elif self.filter.accept(ev):
                fresh = True
                self.health.last_message_at = self.clock()
                self.health.state = "live"
                self.on_event(ev)
        return fresh
