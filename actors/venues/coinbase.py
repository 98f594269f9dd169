"""Coinbase Exchange: the venue (``CoinbaseVenue``) and its market data stream:
``matches`` (trades) and ``ticker`` (best bid/ask). REST candles are in
``coinbase_rest.py``.

Coinbase has no kline stream: bars are built from the matches (``trade_bars.py``), the
same way the offline resampler builds them from a trade file. Each message carries a
per-product ``sequence`` that rises by one; the feed client counts a jump as a gap (dropped
messages). Subscribe: ``{"type": "subscribe", "product_ids": [...], "channels": [...]}``,
answered by a ``subscriptions`` message (no request id).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from raytrade.actors.events import (
    FeedEvent,
    Ignored,
    MarketEvent,
    MessageRejectedError,
    QuoteEvent,
    SubscribeAck,
    SubscribeFailed,
    TradeEvent,
)
from raytrade.actors.feed_client import FeedConfig
from raytrade.actors.venues.coinbase_rest import GRANULARITIES, CoinbaseCandles
from raytrade.actors.venues.execution import OrderExecution
from raytrade.actors.venues.protocol import (
    Capabilities,
    MarketFeed,
    Subscription,
    VenueEndpoints,
)
from raytrade.actors.venues.schema import integer, number, parse_json, text
from raytrade.actors.venues.websocket_feed import websocket_feed
from raytrade.envs.errors import ConfigError

DEFAULT_WS = "wss://ws-feed.exchange.coinbase.com"


def parse_time_ms(value: Any, raw: str | bytes) -> int:
    """Milliseconds UTC from Coinbase's ISO 8601 time (microseconds, ``Z``)."""
    if not isinstance(value, str):
        raise MessageRejectedError(f"field 'time' is {value!r}, not a timestamp", raw)
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MessageRejectedError(f"field 'time' is {value!r}, not ISO 8601", raw) from None
    if dt.tzinfo is None:
        raise MessageRejectedError(f"field 'time' {value!r} has no UTC offset", raw)
    return int(dt.timestamp() * 1000)


QUOTES = ("USDT", "USDC", "USD")
"""Quote currencies a FeatureSpec symbol may end in; Coinbase products quote in USD."""


class CoinbaseExchange:
    """Stream adapter for the Coinbase Exchange websocket feed."""

    def __init__(self, subscription: Subscription, ws_url: str | None = None) -> None:
        self.venue = "coinbase"
        self.subscription = subscription
        self._url = ws_url or DEFAULT_WS

    def url(self) -> str:
        return self._url

    def subscribe_requests(self, first_id: int) -> list[tuple[int | None, str]]:
        channels = ["matches"] + (["ticker"] if self.subscription.quotes else [])
        msg = {"type": "subscribe", "product_ids": list(self.subscription.symbols),
               "channels": channels}
        return [(None, json.dumps(msg))]

    def parse(self, raw: str | bytes) -> list[FeedEvent]:
        msg = parse_json(raw)
        if not isinstance(msg, dict):
            raise MessageRejectedError("message is not a JSON object", raw)
        kind = msg.get("type")
        if kind in ("match", "last_match"):
            return [TradeEvent(text(msg, "product_id", raw), integer(msg, "trade_id", raw),
                               number(msg, "price", raw, positive=True),
                               number(msg, "size", raw), parse_time_ms(msg.get("time"), raw),
                               integer(msg, "sequence", raw))]
        if kind == "ticker":
            return [QuoteEvent(text(msg, "product_id", raw), integer(msg, "sequence", raw),
                               number(msg, "best_bid", raw), number(msg, "best_bid_size", raw),
                               number(msg, "best_ask", raw),
                               number(msg, "best_ask_size", raw))]
        if kind == "subscriptions":
            return [SubscribeAck(0)]
        if kind == "error":
            return [SubscribeFailed(None, -1, f"{msg.get('message')}: {msg.get('reason')}")]
        return [Ignored(str(kind))]


class CoinbaseVenue:
    """Coinbase Exchange market data (``protocol.Venue``): bars built from ``matches``,
    ``ticker`` quotes, REST candles, products spelled ``BTC-USD``."""

    name: ClassVar[str] = "coinbase"
    capabilities: ClassVar[Capabilities] = Capabilities(bar_source="trades", quotes=True,
                                                        intervals=GRANULARITIES)

    def __init__(self, endpoints: VenueEndpoints) -> None:
        self.endpoints = endpoints

    @property
    def execution(self) -> OrderExecution | None:
        """No order side yet."""
        return None

    def feed(self, subscription: Subscription, on_event: Callable[[MarketEvent], None], *,
             config: FeedConfig, clock: Callable[[], float]) -> MarketFeed:
        """The websocket feed of ``stream(subscription)``."""
        return websocket_feed(self.stream(subscription), on_event, config=config,
                              clock=clock)

    def stream(self, subscription: Subscription) -> CoinbaseExchange:
        """The websocket feed adapter (trades are always subscribed: bars come from them)."""
        return CoinbaseExchange(subscription, self.endpoints.ws_url)

    def history(self) -> CoinbaseCandles:
        """``GET /products/<id>/candles``."""
        return CoinbaseCandles(self.endpoints.rest_url)

    def venue_symbol(self, symbol: str) -> str:
        """``BTCUSDT``, ``BTCUSDC`` and ``BTCUSD`` -> ``BTC-USD``; ``BTC-USD`` unchanged."""
        if "-" in symbol:
            return symbol
        for quote in QUOTES:
            if symbol.endswith(quote) and len(symbol) > len(quote):
                return f"{symbol[:-len(quote)]}-USD"
        raise ConfigError(f"no Coinbase product for {symbol}: quote currencies {QUOTES} map "
                          "to -USD; set reference_symbol to the product id")
