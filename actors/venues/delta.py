"""Delta Exchange market data: the venue (``DeltaVenue``) for paper trading on Delta's USD
perpetual futures. The stream adapter is ``delta_stream.py`` (closed bars from the
candlestick channel, quotes from the ticker channel), the REST candles ``delta_rest.py``;
orders are ``delta_orders.py`` (the ``delta-futures`` execution venue).

Region: Delta Exchange India (``api.india.delta.exchange``,
``public-socket.india.delta.exchange``), whose USD-settled perpetuals are spelled
``<BASE>USD``: ``BTCUSD``, ``ETHUSD``. Market data is public, so the production endpoints
serve testnet and mainnet runs alike; a loopback simulator overrides both URLs.

Symbols: a FeatureSpec writes ``BTCUSDT``; ``venue_symbol`` maps a symbol ending in
``USDT``, ``USDC`` or ``USD`` to Delta's perpetual on that base (``BTCUSDT`` ->
``BTCUSD``). Note that the perpetual's price is Delta's own market in US dollars, not
Binance's USDT market: a policy trained on Binance bars trades a closely related series,
not the same one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from raytrade.actors.events import MarketEvent
from raytrade.actors.feed_client import FeedConfig
from raytrade.actors.venues.delta_rest import RESOLUTIONS, DeltaCandles
from raytrade.actors.venues.delta_stream import DeltaPublicStream
from raytrade.actors.venues.execution import OrderExecution
from raytrade.actors.venues.protocol import (
    Capabilities,
    MarketFeed,
    Subscription,
    VenueEndpoints,
)
from raytrade.actors.venues.websocket_feed import websocket_feed
from raytrade.envs.errors import ConfigError

QUOTES = ("USDT", "USDC", "USD")
"""Quote currencies a FeatureSpec symbol may end in; Delta India's perpetuals quote USD."""


class DeltaVenue:
    """Delta Exchange India market data (``protocol.Venue``; module docstring)."""

    name: ClassVar[str] = "delta"
    capabilities: ClassVar[Capabilities] = Capabilities(bar_source="klines", quotes=True,
                                                        intervals=RESOLUTIONS)

    def __init__(self, endpoints: VenueEndpoints) -> None:
        self.endpoints = endpoints

    @property
    def execution(self) -> OrderExecution | None:
        """Orders go through the ``delta-futures`` execution venue (the live trader builds
        it with the account's keys), not through the market-data venue."""
        return None

    def feed(self, subscription: Subscription, on_event: Callable[[MarketEvent], None], *,
             config: FeedConfig, clock: Callable[[], float]) -> MarketFeed:
        """The websocket feed of ``stream(subscription)`` (``feed_client.FeedClient``:
        reconnects, resubscribes, drops duplicates)."""
        return websocket_feed(self.stream(subscription), on_event, config=config,
                              clock=clock)

    def stream(self, subscription: Subscription) -> DeltaPublicStream:
        """The public websocket adapter."""
        return DeltaPublicStream(subscription, self.endpoints.ws_url, venue=self.name)

    def history(self) -> DeltaCandles:
        """``GET /v2/history/candles``."""
        return DeltaCandles(self.endpoints.rest_url)

    def venue_symbol(self, symbol: str) -> str:
        """``BTCUSDT``, ``BTCUSDC`` and ``BTCUSD`` -> ``BTCUSD`` (module docstring)."""
        upper = symbol.upper()
        for quote in QUOTES:
            if upper.endswith(quote) and len(upper) > len(quote) and \
                    upper[:-len(quote)].isalnum():
                return f"{upper[:-len(quote)]}USD"
        raise ConfigError(f"no Delta perpetual for {symbol!r}: symbols ending in {QUOTES} "
                          "map to <BASE>USD; set reference_symbol to Delta's symbol")
