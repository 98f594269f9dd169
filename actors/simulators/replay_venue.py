"""The ``replay`` venue: Binance's spot protocol spoken to the project's replay server
(``replay_server.py``, ``raytrade feed replay``) instead of an exchange.

It reuses the production Binance stream adapter and REST client unchanged (the replay
server is their test double), but it has no default endpoints: both URLs must be given,
so a replay can never reach a real exchange by accident. Intervals are whatever the
replayed files hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from raytrade.actors.events import MarketEvent
from raytrade.actors.feed_client import FeedConfig
from raytrade.actors.venues.binance import BinanceSpot
from raytrade.actors.venues.binance_rest import RestKlines
from raytrade.actors.venues.execution import OrderExecution
from raytrade.actors.venues.protocol import (
    Capabilities,
    MarketFeed,
    Subscription,
    VenueEndpoints,
)
from raytrade.actors.venues.websocket_feed import websocket_feed
from raytrade.envs.errors import ConfigError


class ReplayVenue:
    """Market data from a replay server (``protocol.Venue``; module docstring)."""

    name: ClassVar[str] = "replay"
    capabilities: ClassVar[Capabilities] = Capabilities(bar_source="klines", quotes=True,
                                                        intervals=None)

    def __init__(self, endpoints: VenueEndpoints) -> None:
        if not endpoints.ws_url or not endpoints.rest_url:
            raise ConfigError("venue 'replay' needs feed_url and rest_url (the ws_url and "
                              "rest_url that `raytrade feed replay` prints)")
        self.ws_url: str = endpoints.ws_url
        self.rest_url: str = endpoints.rest_url

    @property
    def execution(self) -> OrderExecution | None:
        """A replay has no order side."""
        return None

    def feed(self, subscription: Subscription, on_event: Callable[[MarketEvent], None], *,
             config: FeedConfig, clock: Callable[[], float]) -> MarketFeed:
        """The websocket feed of ``stream(subscription)``."""
        return websocket_feed(self.stream(subscription), on_event, config=config,
                              clock=clock)

    def stream(self, subscription: Subscription) -> BinanceSpot:
        """Binance's combined-stream adapter, at the replay server."""
        return BinanceSpot(subscription, self.ws_url, venue=self.name)

    def history(self) -> RestKlines:
        """Binance REST klines, at the replay server."""
        return RestKlines(self.rest_url)

    def venue_symbol(self, symbol: str) -> str:
        """Replayed files are named with Binance's spelling (``BTCUSDT``)."""
        return symbol.upper()
