"""Binance USD-M futures market data: the venue ``binance-futures``.

The futures streams (``wss://fstream.binance.com``) speak the spot protocol
(``binance.py``): the same combined-stream wrapper, ``SUBSCRIBE`` request, acks and kline
frames. Two differences are handled here: public trades come as aggregate trades
(``<symbol>@aggTrade``, ``{"e": "aggTrade", "a": <aggregate id>, "p", "q", "T", ...}``; a
``TradeEvent`` carries the aggregate id), and ``bookTicker`` frames carry
``"e": "bookTicker"``. REST klines are ``GET /fapi/v1/klines`` with the spot row format
(``binance_rest.RestKlines`` with that path). Symbols are spelled as FeatureSpecs spell
them (``BTCUSDT``: the perpetual). The order side is ``binance_orders.BinanceExecution``
with ``market="futures"``, built by the live trader with the account's keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from raytrade.actors.events import FeedEvent, TradeEvent
from raytrade.actors.venues.binance import BinanceSpot, BinanceVenue
from raytrade.actors.venues.binance_rest import RestKlines
from raytrade.actors.venues.protocol import Capabilities, Subscription
from raytrade.actors.venues.schema import integer, number, text

DEFAULT_FUTURES_WS = "wss://fstream.binance.com"
DEFAULT_FUTURES_REST = "https://fapi.binance.com"
FUTURES_INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
                     "1d", "3d", "1w")
"""Kline intervals of the USD-M futures streams and REST API (no ``1s``)."""


class BinanceFuturesStream(BinanceSpot):
    """Stream adapter for Binance USD-M futures (module docstring)."""

    default_ws: ClassVar[str] = DEFAULT_FUTURES_WS
    trade_stream: ClassVar[str] = "aggTrade"

    def _event(self, kind: object, stream: str, msg: Mapping[str, Any], raw: str | bytes
               ) -> list[FeedEvent]:
        if kind == "aggTrade":
            return [TradeEvent(text(msg, "s", raw).upper(), integer(msg, "a", raw),
                               number(msg, "p", raw, positive=True), number(msg, "q", raw),
                               integer(msg, "T", raw))]
        if kind == "bookTicker":
            return [self._quote(msg, raw)]
        return super()._event(kind, stream, msg, raw)


class BinanceFuturesVenue(BinanceVenue):
    """Binance USD-M futures market data (``protocol.Venue``): klines, aggregate trades
    and ``bookTicker`` quotes from fstream, REST klines from ``/fapi/v1/klines``."""

    name: ClassVar[str] = "binance-futures"
    capabilities: ClassVar[Capabilities] = Capabilities(bar_source="klines", quotes=True,
                                                        intervals=FUTURES_INTERVALS)

    def stream(self, subscription: Subscription) -> BinanceFuturesStream:
        """The futures combined-stream adapter."""
        return BinanceFuturesStream(subscription, self.endpoints.ws_url, venue=self.name)

    def history(self) -> RestKlines:
        """``GET /fapi/v1/klines``."""
        return RestKlines(self.endpoints.rest_url or DEFAULT_FUTURES_REST,
                          path="/fapi/v1/klines")
