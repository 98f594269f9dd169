"""What a venue is to the live side: a stream adapter, REST bar history, symbol mapping and
capabilities, behind one typed protocol.

A *venue* (``Venue``) is built by its registry entry (``VenueFactory``, ``registry.py``)
for one set of endpoints and hands out the pieces a paper session needs:

- ``feed(subscription, on_event, config=, clock=)``: the running market-data connection
  (``MarketFeed``). Websocket venues build it from ``stream(subscription)``, a
  ``StreamAdapter`` that knows the websocket URL, the subscription frames and how raw
  frames become validated events (``actors/events.py``); it holds no connection and no
  state beyond its configuration, so one adapter serves every reconnect of
  ``actors/feed_client.py`` (``websocket_feed.py``). A venue with another transport (a
  file bridge to a trading terminal) returns its own ``MarketFeed`` emitting the same
  events, and its ``stream`` raises ``ConfigError``.
- ``history()``: a ``BarHistory`` (REST bars) for warm-up and gap backfill. A venue's REST
  reply may include the bar still in progress (Binance klines do): the caller keeps only
  bars whose close time has passed (``actors/watchdog.py``, ``MarketClock``).
- ``venue_symbol(symbol)``: the venue's spelling of a symbol written the way FeatureSpecs
  write it (``BTCUSDT``): identity on Binance, ``BTC-USD`` on Coinbase.
- ``capabilities``: what the venue streams (closed klines, or trades to build bars from;
  quotes), the bar intervals its REST history serves, and whether it can execute orders.
- ``execution``: the order side (``execution.py``), or ``None``. The live trader builds
  its order side from ``execution_registry.py``; this slot says whether the market-data
  venue has one.

Symbols in subscriptions and events are always the venue's own spelling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from raytrade.actors.events import FeedEvent, MarketEvent
from raytrade.actors.health import FeedHealth
from raytrade.actors.venues.execution import OrderExecution
from raytrade.envs.bars import Bar

if TYPE_CHECKING:  # feed_client imports this module (StreamAdapter)
    from raytrade.actors.feed_client import FeedConfig

BarSource = Literal["klines", "trades"]
"""Where closed bars come from: the venue's kline stream, or bars built from its public
trades (``envs/trade_bars.py``, the offline resampler's kernel)."""


@dataclass(frozen=True)
class Subscription:
    """What to receive. Symbols in the exchange's own spelling (``BTCUSDT``, ``BTC-USD``)."""

    symbols: tuple[str, ...]
    interval: str = "5m"
    """Kline interval (venues with klines)."""
    trades: bool = False
    """Also receive every public trade (bars can be built from them)."""
    quotes: bool = True
    """Also receive best bid/ask updates (the paper broker's spread)."""


@dataclass(frozen=True)
class Capabilities:
    """What a venue offers, known without connecting (the registry reads it to validate a
    ``PaperConfig`` before anything starts)."""

    bar_source: BarSource
    """``klines``: closed bars arrive on the stream; ``trades``: the session builds them
    from the trade stream (which it then always subscribes)."""
    quotes: bool
    """Best bid/ask stream (the paper broker's live spread)."""
    intervals: tuple[str, ...] | None
    """Bar intervals the REST history serves (None: every interval of
    ``envs/intervals.py``)."""
    execution: bool = False
    """Orders can be placed (``Venue.execution`` is not None)."""

    def supports(self, interval: str) -> bool:
        """True if bars of ``interval`` can be streamed and backfilled here."""
        return self.intervals is None or interval in self.intervals


@dataclass(frozen=True)
class VenueEndpoints:
    """Where a venue is reached; None: the venue's public production endpoint (testnets,
    regional endpoints and loopback simulators override them)."""

    ws_url: str | None = None
    """Websocket base URL."""
    rest_url: str | None = None
    """REST base URL."""
    files_dir: str | None = None
    """A file-bridge venue's folder: DWX Connect's ``MQL4/Files`` or ``MQL5/Files``."""


class StreamAdapter(Protocol):
    """One exchange's websocket protocol."""

    @property
    def venue(self) -> str:
        """The venue's name (logs and health)."""
        ...

    def url(self) -> str:
        """Where to connect."""
        ...

    def subscribe_requests(self, first_id: int) -> list[tuple[int | None, str]]:
        """The frames to send after every (re)connect, each with the request id an ack will
        carry (None if the venue sends no ack)."""
        ...

    def parse(self, raw: str | bytes) -> list[FeedEvent]:
        """Events in one frame; ``MessageRejectedError`` if it is malformed."""
        ...


class MarketFeed(Protocol):
    """A running market-data connection (a websocket ``FeedClient``, or a file bridge):
    it delivers ``MarketEvent``s to the callback it was built with and keeps its
    ``FeedHealth`` honest (``live`` while fresh data arrives, ``degraded`` while the
    venue does not answer)."""

    @property
    def health(self) -> FeedHealth:
        """Connection state and anomaly counters."""
        ...

    async def run(self) -> None:
        """Deliver events until ``stop()`` or cancellation; reconnects and retries by
        itself and never raises on a venue fault (it counts it in ``health``)."""
        ...

    def stop(self) -> None:
        """Ask ``run`` to return (connections are closed cleanly)."""
        ...


class BarHistory(Protocol):
    """A venue's REST bars (warm-up history and gap backfill)."""

    async def fetch(self, symbol: str, interval: str, start_ms: int, end_ms: int
                    ) -> list[Bar]:
        """Bars with ``start_ms <= open time < end_ms``, oldest first, as the venue reports
        them: the last one may still be in progress. ``TemporaryError`` when the endpoint
        is unavailable (the caller holds and retries), ``MessageRejectedError`` naming the
        row when a reply fails validation."""
        ...


class Venue(Protocol):
    """One venue, bound to its endpoints (module docstring)."""

    @property
    def name(self) -> str:
        """Registry name (``PaperConfig.venue``)."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What it offers."""
        ...

    @property
    def execution(self) -> OrderExecution | None:
        """The order side, or None (market data only)."""
        ...

    def feed(self, subscription: Subscription, on_event: Callable[[MarketEvent], None], *,
             config: FeedConfig, clock: Callable[[], float]) -> MarketFeed:
        """The market-data connection for ``subscription``: events to ``on_event``
        (which must not block), health stamped by ``clock`` (seconds)."""
        ...

    def stream(self, subscription: Subscription) -> StreamAdapter:
        """The websocket adapter for ``subscription`` (``ConfigError`` on a venue with
        another transport)."""
        ...

    def history(self) -> BarHistory:
        """REST bars."""
        ...

    def venue_symbol(self, symbol: str) -> str:
        """The venue's spelling of ``symbol`` written FeatureSpec-style (``BTCUSDT``);
        a symbol already in the venue's spelling is returned unchanged. ``ConfigError``
        if the venue has no such market."""
        ...


class VenueFactory(Protocol):
    """A registry entry: the venue's name and capabilities, known without building it, and
    how to build it for a set of endpoints. A venue class with class attributes ``name``
    and ``capabilities`` and ``__init__(self, endpoints)`` is one."""

    @property
    def name(self) -> str:
        """Registry name."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What the venue offers."""
        ...

    def __call__(self, endpoints: VenueEndpoints) -> Venue:
        """The venue at ``endpoints``; ``ConfigError`` if they are unusable."""
        ...
