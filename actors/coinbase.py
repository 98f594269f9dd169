"""Coinbase Exchange market data: ``matches`` (trades) and ``ticker`` (best bid/ask).

Coinbase has no kline stream: bars are built from the matches (``trade_bars.py``), the
same way the offline resampler builds them from a trade file. Each message carries a
per-product ``sequence`` that rises by one; the feed client counts a jump as a gap (dropped
messages). Subscribe: ``{"type": "subscribe", "product_ids": [...], "channels": [...]}``,
answered by a ``subscriptions`` message (no request id).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from raytrade.actors.binance import parse_json
from raytrade.actors.events import (
    FeedEvent,
    Ignored,
    MessageRejectedError,
    QuoteEvent,
    SubscribeAck,
    SubscribeFailed,
    TradeEvent,
)
from raytrade.actors.schema import integer, number, text
from raytrade.actors.venue import Subscription

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


class CoinbaseExchange:
    """Venue adapter for the Coinbase Exchange websocket feed."""

    venue = "coinbase"
    has_klines = False

    def __init__(self, subscription: Subscription, ws_url: str | None = None) -> None:
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
