"""Binance spot: the venue (``BinanceVenue``) and its market streams: closed klines,
trades and best bid/ask. REST klines are in ``binance_rest.py``.

Connects to the combined endpoint (``<base>/stream``) and subscribes with
``{"method": "SUBSCRIBE", "params": [...], "id": N}``, so every event arrives wrapped as
``{"stream": NAME, "data": {...}}`` and ``bookTicker`` updates (which carry no ``e``
field) are routed by stream name. Raw single-stream frames are parsed too. Message formats:
Binance's public API documentation (spot websocket streams and REST klines).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from raytrade.actors.events import (
    FeedEvent,
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
from raytrade.actors.feed_client import FeedConfig
from raytrade.actors.venues.binance_rest import RestKlines
from raytrade.actors.venues.execution import OrderExecution
from raytrade.actors.venues.protocol import (
    Capabilities,
    MarketFeed,
    Subscription,
    VenueEndpoints,
)
from raytrade.actors.venues.schema import field, integer, number, ohlcv, parse_json, text
from raytrade.actors.venues.websocket_feed import websocket_feed
from raytrade.envs.bars import Bar
from raytrade.envs.intervals import interval_to_ms

DEFAULT_WS = "wss://stream.binance.com:9443"
INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d",
             "3d", "1w")
"""Kline intervals of the spot streams and REST API."""


class BinanceSpot:
    """Stream adapter for Binance spot (and any server speaking its protocol). USD-M
    futures (``binance_futures.py``) subclass it: another default endpoint and trade
    stream, the same frames otherwise."""

    default_ws: ClassVar[str] = DEFAULT_WS
    trade_stream: ClassVar[str] = "trade"
    """The public trade stream's name (``<symbol>@<trade_stream>``)."""

    def __init__(self, subscription: Subscription, ws_url: str | None = None, *,
                 venue: str = "binance") -> None:
        self.venue = venue
        self.subscription = subscription
        self.interval_ms = interval_to_ms(subscription.interval)
        self.base = (ws_url or self.default_ws).rstrip("/")
        for suffix in ("/stream", "/ws"):
            if self.base.endswith(suffix):
                self.base = self.base[: -len(suffix)]

    def streams(self) -> list[str]:
        """Lower-case stream names for the subscription."""
        out = []
        for sym in self.subscription.symbols:
            s = sym.lower()
            out.append(f"{s}@kline_{self.subscription.interval}")
            if self.subscription.trades:
                out.append(f"{s}@{self.trade_stream}")
            if self.subscription.quotes:
                out.append(f"{s}@bookTicker")
        return out

    def url(self) -> str:
        return f"{self.base}/stream"

    def subscribe_requests(self, first_id: int) -> list[tuple[int | None, str]]:
        # one request for all streams: Binance allows 5 incoming messages per second
        msg = {"method": "SUBSCRIBE", "params": self.streams(), "id": first_id}
        return [(first_id, json.dumps(msg))]

    def parse(self, raw: str | bytes) -> list[FeedEvent]:
        msg = parse_json(raw)
        if not isinstance(msg, dict):
            raise MessageRejectedError("message is not a JSON object", raw)
        stream = ""
        if "stream" in msg and "data" in msg:
            stream = str(msg["stream"])
            msg = msg["data"]
            if not isinstance(msg, dict):
                raise MessageRejectedError("'data' is not a JSON object", raw)
        if "result" in msg and "id" in msg:
            return [SubscribeAck(integer(msg, "id", raw))]
        if "code" in msg and "msg" in msg:
            rid = msg.get("id")
            return [SubscribeFailed(rid if isinstance(rid, int) else None,
                                    int(msg["code"]) if isinstance(msg["code"], int) else -1,
                                    str(msg["msg"]))]
        return self._event(msg.get("e"), stream, msg, raw)

    def _event(self, kind: object, stream: str, msg: Mapping[str, Any], raw: str | bytes
               ) -> list[FeedEvent]:
        """Events of one unwrapped frame whose ``e`` field is ``kind``."""
        if kind == "kline":
            return [self._kline(msg, raw)]
        if kind == "trade":
            return [self._trade(msg, raw)]
        if kind == "serverShutdown":
            return [ServerShutdown(integer(msg, "E", raw))]
        if kind is None and (stream.endswith("@bookTicker") or
                             {"u", "s", "b", "B", "a", "A"} <= msg.keys()):
            return [self._quote(msg, raw)]
        return [Ignored(str(kind or stream or "unknown"))]

    def _kline(self, msg: Mapping[str, Any], raw: str | bytes) -> KlineEvent:
        k = field(msg, "k", raw)
        if not isinstance(k, dict):
            raise MessageRejectedError("field 'k' is not an object", raw)
        interval = text(k, "i", raw)
        if not _is_interval(interval) or interval_to_ms(interval) != self.interval_ms:
            raise MessageRejectedError(f"kline interval {interval!r}, subscribed to "
                                       f"{self.subscription.interval}", raw)
        t = integer(k, "t", raw)
        if t % self.interval_ms:
            raise MessageRejectedError(f"kline open time {t} not aligned to {interval}", raw)
        close_t = integer(k, "T", raw)
        if close_t != t + self.interval_ms - 1:
            raise MessageRejectedError(f"kline close time {close_t} != open {t} + interval "
                                       "- 1", raw)
        o, h, lo, c, v = ohlcv(k, raw)
        closed = field(k, "x", raw)
        if not isinstance(closed, bool):
            raise MessageRejectedError(f"field 'x' is {closed!r}, not a boolean", raw)
        symbol = text(k, "s", raw).upper()
        return KlineEvent(symbol, self.interval_ms, Bar(t, o, h, lo, c, v), closed,
                          integer(msg, "E", raw))

    @staticmethod
    def _trade(msg: Mapping[str, Any], raw: str | bytes) -> TradeEvent:
        return TradeEvent(text(msg, "s", raw).upper(), integer(msg, "t", raw),
                          number(msg, "p", raw, positive=True), number(msg, "q", raw),
                          integer(msg, "T", raw))

    @staticmethod
    def _quote(msg: Mapping[str, Any], raw: str | bytes) -> QuoteEvent:
        # an empty side is quoted as price 0 and size 0: valid, but one-sided
        return QuoteEvent(text(msg, "s", raw).upper(), integer(msg, "u", raw),
                          number(msg, "b", raw), number(msg, "B", raw),
                          number(msg, "a", raw), number(msg, "A", raw))


def _is_interval(s: str) -> bool:
    try:
        interval_to_ms(s)
    except ValueError:
        return False
    return True


class BinanceVenue:
    """Binance spot market data (``protocol.Venue``): the kline stream with trades and
    ``bookTicker`` quotes, REST klines, symbols as FeatureSpecs write them."""

    name: ClassVar[str] = "binance"
    capabilities: ClassVar[Capabilities] = Capabilities(bar_source="klines", quotes=True,
                                                        intervals=INTERVALS)

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

    def stream(self, subscription: Subscription) -> BinanceSpot:
        """The combined-stream adapter."""
        return BinanceSpot(subscription, self.endpoints.ws_url, venue=self.name)

    def history(self) -> RestKlines:
        """``GET /api/v3/klines``."""
        return RestKlines(self.endpoints.rest_url)

    def venue_symbol(self, symbol: str) -> str:
        """Binance spells symbols as FeatureSpecs do (``BTCUSDT``)."""
        return symbol.upper()
