"""The websocket market-data client: connect, subscribe, read, reconnect, never give up.

Built on the ``websockets`` asyncio client (it answers server pings with pongs itself and
sends our keepalive pings; no other control frames are sent, well under Binance's 5 per
second). Behaviour (the README's "The fault model", feed rows):

- reconnect after any close (1000, 1001, 1006, ...), error or refused connection, with
  exponential backoff and jitter:
  ``uniform(0.5, 1) * min(max_backoff_s, initial_backoff_s * 2**attempt)``, unlimited
  tries; the attempt count resets as soon as a connection delivers fresh market data, so
  a routine disconnect after a healthy period waits the first step again;
- every subscription is re-sent on every connect; acks are matched by request id; an
  error reply, or no ack within ``subscribe_timeout_s``, fails the connection loudly and
  it is retried;
- no frame for ``idle_timeout_s`` (a silent dead socket) forces a reconnect;
  ``serverShutdown`` reconnects at once; every connection we leave on purpose is closed
  cleanly, with code 1000;
- a connection older than ``max_connection_s`` (set below the venue's limit: Binance
  closes at 24 h) is handed over *make before break*: a second connection is opened and
  subscribed while the first is still read; once the second delivers market data, the
  first is closed (1000) and drained, then the second's frames are processed. Nothing is
  missed, and the overlap passes the one ``EventFilter`` (delivered once). If the second
  connection fails, the first keeps serving and the handover is retried after
  ``max_backoff_s``;
- malformed frames and schema failures are logged, counted and dropped; the connection
  stays up;
- duplicates and out-of-order events are dropped and counted (``event_filter.py``).

Socket-level deadlines (idle, subscribe, connection age) are real time
(``time.monotonic``: they bound waits on a socket); ``clock`` stamps
``health.last_message_at``. Events reach ``on_event``, which must not block (the paper
session puts them on a bounded queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import websockets
from raytrade.actors.event_filter import EventFilter
from raytrade.actors.events import (
    Ignored,
    KlineEvent,
    MarketEvent,
    MessageRejectedError,
    QuoteEvent,
    ServerShutdown,
    SubscribeAck,
    SubscribeFailed,
    TradeEvent,
)
from raytrade.actors.health import FeedHealth
from raytrade.actors.venues.protocol import StreamAdapter
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
    """Hand a connection over to a new one at this age, before the venue's connection age
    limit (Binance: 24 h); the margin must cover a handover (module docstring)."""
    close_timeout_s: float = 2.0
    """Time allowed for a closing handshake before the socket is dropped."""

    def __post_init__(self) -> None:
        if not 0 < self.initial_backoff_s <= 1 or self.max_backoff_s < self.initial_backoff_s:
            raise ConfigError("FeedConfig: need 0 < initial_backoff_s <= 1 and "
                              "max_backoff_s >= initial_backoff_s")
        if self.idle_timeout_s <= 0 or self.subscribe_timeout_s <= 0 or \
                self.open_timeout_s <= 0 or self.close_timeout_s <= 0:
            raise ConfigError("FeedConfig: timeouts must be > 0")
        if not self.max_connection_s > 0:
            raise ConfigError(f"FeedConfig: max_connection_s must be > 0, got "
                              f"{self.max_connection_s}")


class _SuccessorFailed(Exception):  # noqa: N818 - internal control flow, never escapes
    """A handover's new connection failed; ``old_gone``: the old one ended meanwhile."""

    def __init__(self, reason: str, old_gone: bool) -> None:
        super().__init__(reason)
        self.old_gone = old_gone


@dataclass
class _Link:
    """One open connection: its socket, when a handover is due, and the subscription
    requests it has not acknowledged yet (request id -> deadline). Times are
    ``time.monotonic`` seconds."""

    ws: ClientConnection
    handover_at: float
    waiting: dict[int, float]


_MARKET = (KlineEvent, TradeEvent, QuoteEvent)


class FeedClient:
    """Reads one venue feed until ``stop()``; see the module docstring."""

    def __init__(self, adapter: StreamAdapter, on_event: Callable[[MarketEvent], None], *,
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
        self._attempt = 0
        self._sockets: set[ClientConnection] = set()
        self._closing: list[asyncio.Future[None]] = []

    def stop(self) -> None:
        """Ask ``run`` to close its sockets and return (call from the event loop)."""
        self._stop.set()
        for ws in list(self._sockets):
            self._closing.append(asyncio.ensure_future(ws.close()))

    async def run(self) -> None:
        """Connect and read until stopped, reconnecting after every failure."""
        cfg = self.config
        link: _Link | None = None
        while not self._stop.is_set():
            immediate = False
            try:
                link = await self._read(link or await self._open())
                continue  # a handover: read the new connection
            except _Reconnect as exc:
                immediate = exc.immediate
                self.health.last_error = str(exc)
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
            link = None
            if self._stop.is_set():
                break
            self.health.state = "degraded"
            if immediate:
                self.health.backoff_s = 0.0
                continue
            delay = self._rng.uniform(0.5, 1.0) * min(
                cfg.max_backoff_s, cfg.initial_backoff_s * 2 ** self._attempt)
            self._attempt = min(self._attempt + 1, 30)
            self.health.backoff_s = delay
            self.health.recent_backoff_s.append(delay)
            log.warning("%s feed: %s; reconnecting in %.2f s", self.adapter.venue,
                        self.health.last_error, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        self.health.state = "stopped"

    # ---- one connection
    async def _open(self) -> _Link:
        """Connect and send every subscription request."""
        cfg = self.config
        ws = await connect(self.adapter.url(), open_timeout=cfg.open_timeout_s,
                           ping_interval=cfg.ping_interval_s,
                           close_timeout=cfg.close_timeout_s, max_size=2**20)
        self._sockets.add(ws)
        self.health.count("connects")
        now = time.monotonic()
        link = _Link(ws, now + cfg.max_connection_s, {})
        try:
            for rid, frame in self.adapter.subscribe_requests(self._next_id):
                await ws.send(frame)
                if rid is not None:
                    link.waiting[rid] = now + cfg.subscribe_timeout_s
                    self._next_id = rid + 1
        except BaseException:
            await self._close(ws)
            raise
        return link

    async def _close(self, ws: ClientConnection) -> None:
        """Close cleanly (1000); a no-op on a socket the server already closed."""
        self._sockets.discard(ws)
        await ws.close(1000)

    async def _read(self, link: _Link) -> _Link | None:
        """Read ``link`` until it fails (raises), the client stops (None) or it is handed
        over (returns the new connection). ``link`` is closed on return."""
        handed_over = False
        try:
            while not self._stop.is_set():
                try:
                    raw = await self._recv(link)
                except websockets.ConnectionClosedOK:
                    if self._stop.is_set():
                        break
                    raise
                self._handle(raw, link)
                if time.monotonic() >= link.handover_at and not self._stop.is_set():
                    successor = await self._handover(link)
                    if successor is not None:
                        handed_over = True
                        return successor
            return None
        finally:
            if not handed_over:
                await self._close(link.ws)

    async def _recv(self, link: _Link) -> str | bytes:
        """The next frame; ``SubscriptionError`` when an ack is overdue, ``_Reconnect``
        after ``idle_timeout_s`` without a frame."""
        cfg = self.config
        timeout = cfg.idle_timeout_s
        if link.waiting:
            timeout = min(timeout, max(0.0, min(link.waiting.values()) - time.monotonic()))
        try:
            # a deadline on this task, not ``wait_for``: no task per frame, and a frame
            # already buffered returns without a trip through the event loop
            async with asyncio.timeout(timeout):
                return await link.ws.recv()
        except TimeoutError:
            if link.waiting and min(link.waiting.values()) <= time.monotonic():
                raise SubscriptionError(f"no ack for request(s) {sorted(link.waiting)} "
                                        f"within {cfg.subscribe_timeout_s} s") from None
            self.health.count("idle_timeouts")
            raise _Reconnect(f"no frame for {cfg.idle_timeout_s} s (idle timeout)") from None

    # ---- the connection age limit
    async def _handover(self, old: _Link) -> _Link | None:
        """Replace ``old`` by a new connection, make before break (module docstring).
        Returns the new connection, ``old`` closed and drained; or None: the new one
        failed, ``old`` keeps serving and the handover is retried later."""
        try:
            new = await self._open()
        except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI,
                websockets.ConnectionClosed) as exc:
            self.health.count("connect_failures")
            self._handover_failed(old, exc)
            return None
        try:
            try:
                held = await self._overlap(old, new)
            except _SuccessorFailed as exc:
                await self._close(new.ws)
                if exc.old_gone:
                    raise _Reconnect(f"connection lost during a handover; {exc}") from None
                self._handover_failed(old, exc)
                return None
            await self._close(old.ws)  # the server stops sending on it ...
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:  # ... and what it sent before our close is still read
                    self._handle(await old.ws.recv(), old)
            for raw in held:
                self._handle(raw, new)
        except BaseException:
            await self._close(new.ws)
            raise
        self.health.count("handovers")
        return new

    async def _overlap(self, old: _Link, new: _Link) -> list[str | bytes]:
        """Process ``old``'s frames while holding ``new``'s, until ``new`` delivers market
        data; return the held frames. ``_SuccessorFailed`` if ``new`` closes, refuses the
        subscription or stays without market data for ``subscribe_timeout_s``."""
        cfg = self.config
        held: list[str | bytes] = []
        old_rx: asyncio.Future[str | bytes] | None = asyncio.ensure_future(old.ws.recv())
        new_rx = asyncio.ensure_future(new.ws.recv())
        deadline = time.monotonic() + cfg.subscribe_timeout_s
        try:
            while not held or not self._market_data(held[-1], old_rx is None):
                if self._stop.is_set():
                    raise _SuccessorFailed("stopping", old_rx is None)
                pending = {new_rx} if old_rx is None else {new_rx, old_rx}
                done, _ = await asyncio.wait(pending, timeout=deadline - time.monotonic(),
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    raise _SuccessorFailed(f"no market data within {cfg.subscribe_timeout_s} "
                                           "s", old_rx is None)
                if new_rx in done:
                    try:
                        held.append(new_rx.result())
                    except websockets.ConnectionClosed as exc:
                        raise _SuccessorFailed(f"closed: {exc}", old_rx is None) from None
                    new_rx = asyncio.ensure_future(new.ws.recv())
                if old_rx is not None and old_rx in done:
                    try:
                        raw = old_rx.result()
                    except websockets.ConnectionClosed:
                        old_rx = None  # the old one ended: nothing left to drain
                    else:
                        self._handle(raw, old)
                        old_rx = asyncio.ensure_future(old.ws.recv())
            return held
        finally:
            waiting = [f for f in (old_rx, new_rx) if f is not None and not f.done()]
            for f in waiting:
                f.cancel()  # a cancelled recv loses no frame
            await asyncio.gather(*waiting, return_exceptions=True)

    def _handover_failed(self, old: _Link, exc: BaseException) -> None:
        old.handover_at = time.monotonic() + self.config.max_backoff_s
        self.health.last_error = f"handover failed: {exc.__class__.__name__}: {exc}"
        if not self._stop.is_set():
            log.warning("%s feed: %s; keeping the current connection", self.adapter.venue,
                        self.health.last_error)

    def _market_data(self, raw: str | bytes, old_gone: bool) -> bool:
        """True if a frame of a handover's new connection carries market data;
        ``_SuccessorFailed`` if it refuses the subscription."""
        try:
            events = self.adapter.parse(raw)
        except MessageRejectedError:
            return False
        for ev in events:
            if isinstance(ev, SubscribeFailed):
                raise _SuccessorFailed(f"subscription refused (code {ev.code}): "
                                       f"{ev.message}", old_gone)
        return any(isinstance(ev, _MARKET) for ev in events)

    # ---- frames
    def _handle(self, raw: str | bytes, link: _Link) -> None:
        """Process one frame of ``link``."""
        self.health.count("messages")
        try:
            events = self.adapter.parse(raw)
        except MessageRejectedError as exc:
            self.health.count("malformed" if exc.reason.startswith("malformed") else "rejected")
            log.warning("%s feed: dropped %s", self.adapter.venue, exc)
            return
        for ev in events:
            if isinstance(ev, SubscribeAck):
                link.waiting.pop(ev.request_id, None)
            elif isinstance(ev, SubscribeFailed):
                raise SubscriptionError(f"subscription refused (code {ev.code}): {ev.message}")
            elif isinstance(ev, ServerShutdown):
                self.health.count("server_shutdowns")
                raise _Reconnect("server announced shutdown", immediate=True)
            elif isinstance(ev, Ignored):
                self.health.count("unknown")
            elif self.filter.accept(ev):
                self._attempt = 0  # fresh market data: the next reconnect starts over
                self.health.last_message_at = self.clock()
                self.health.state = "live"
                self.on_event(ev)
