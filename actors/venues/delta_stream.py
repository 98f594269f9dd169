"""Delta Exchange's public websocket: closed bars from the ``candlestick_<res>`` channel and
best bid/ask from the ``ticker`` channel (a ``protocol.StreamAdapter``).

Message formats: Delta's API documentation, "Websocket Feed" (https://docs.delta.exchange,
source github.com/delta-exchange/slate ``source/includes/_websocket_api.md``; the compact
public-channel format of the 17.04.26 changelog entry):

- after connecting the client sends ``{"type": "enable_heartbeat"}`` (the server then sends
  ``{"type": "heartbeat"}`` every 30 s: a frame that keeps the feed client's idle timeout
  from firing on a quiet market) and one ``subscribe`` request listing every channel:
  ``{"type": "subscribe", "payload": {"channels": [{"name": "candlestick_5m", "symbols":
  ["BTCUSD"]}, {"name": "ticker", "symbols": ["BTCUSD"]}]}}``. The server answers with
  ``{"type": "subscriptions", "channels": [...]}`` (no request id); a refused channel
  carries ``"error"`` instead of ``"symbols"``: that fails the connection loudly;
- ``candlestick_<res>``: ``{"type": "candlestick_5m", "sy": "BTCUSD", "res": "5m",
  "o", "h", "l", "c", "v": numbers, "ts": update time in microseconds}``. It describes the
  **forming** candle, updated as trades happen, with no closed flag and no open-time field:
  the candle's open time is ``ts - ts % res``. Values are cumulative since the candle's
  open, so joining mid-candle loses nothing;
- ``ticker``: ``{"type": "ticker", "ts": µs, "d": [{"s": "BTCUSD", "q": [best_ask,
  ask_size, best_bid, bid_size, impact_mid], ...}]}``; a side without orders is ``null``
  (quoted here as price and size 0: one-sided). ``ts`` is the quote's update id.

Closed bars: a candle is final once the first update of a later candle of the same symbol
arrives; the adapter then emits the candle as it last saw it, ``closed=True`` (every update
is also emitted, ``closed=False``). This is the one state an adapter here keeps (the
forming candle per symbol), and it is dropped by ``subscribe_requests``, which the feed
client calls on every (re)connect: a candle whose last updates may have been lost while
the connection was down is never emitted as closed. Its bar goes missing instead, which the
session backfills from REST candles (``delta_rest.py``) as for any gap. On a quiet market a
closed bar therefore arrives with the next candle's first trade, not at the close time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from raytrade.actors.events import (
    FeedEvent,
    Ignored,
    KlineEvent,
    MessageRejectedError,
    QuoteEvent,
    SubscribeAck,
    SubscribeFailed,
)
from raytrade.actors.venues.protocol import Subscription
from raytrade.actors.venues.schema import field, integer, number, ohlcv, parse_json, text
from raytrade.envs.bars import Bar
from raytrade.envs.intervals import interval_to_ms

DEFAULT_PUBLIC_WS = "wss://public-socket.india.delta.exchange"
"""Delta Exchange India's public market-data endpoint (production)."""
TICKER_CHANNEL = "ticker"


class DeltaPublicStream:
    """Stream adapter for Delta's public websocket (module docstring)."""

    def __init__(self, subscription: Subscription, ws_url: str | None = None, *,
                 venue: str = "delta") -> None:
        self.venue = venue
        self.subscription = subscription
        self.interval = subscription.interval
        self.interval_us = interval_to_ms(subscription.interval) * 1000
        self.channel = f"candlestick_{subscription.interval}"
        self._url = ws_url or DEFAULT_PUBLIC_WS
        self._forming: dict[str, tuple[int, Bar]] = {}
        """Symbol -> (update time µs, the forming candle as last seen)."""

    def url(self) -> str:
        """Where to connect."""
        return self._url

    def subscribe_requests(self, first_id: int) -> list[tuple[int | None, str]]:
        """Heartbeats on, then one subscribe for every channel (no request ids: Delta's
        ``subscriptions`` reply carries none). Called on every (re)connect: the forming
        candles are forgotten (module docstring)."""
        self._forming.clear()
        symbols = list(self.subscription.symbols)
        channels: list[dict[str, Any]] = [{"name": self.channel, "symbols": symbols}]
        if self.subscription.quotes:
            channels.append({"name": TICKER_CHANNEL, "symbols": symbols})
        request = {"type": "subscribe", "payload": {"channels": channels}}
        return [(None, json.dumps({"type": "enable_heartbeat"})), (None, json.dumps(request))]

    def parse(self, raw: str | bytes) -> list[FeedEvent]:
        """Events in one frame; ``MessageRejectedError`` naming the field otherwise."""
        msg = parse_json(raw)
        if not isinstance(msg, dict):
            raise MessageRejectedError("message is not a JSON object", raw)
        kind = msg.get("type")
        if kind == self.channel:
            return self._candle(msg, raw)
        if kind == TICKER_CHANNEL:
            return self._quotes(msg, raw)
        if kind in ("heartbeat", "pong"):
            return []  # a frame: the connection is alive; no event
        if kind == "subscriptions":
            return self._subscriptions(msg, raw)
        if isinstance(kind, str) and kind.startswith("candlestick_"):
            raise MessageRejectedError(f"candles of channel {kind!r}, subscribed to "
                                       f"{self.channel}", raw)
        return [Ignored(str(kind))]

    @staticmethod
    def _subscriptions(msg: Mapping[str, Any], raw: str | bytes) -> list[FeedEvent]:
        channels = field(msg, "channels", raw)
        if not isinstance(channels, list):
            raise MessageRejectedError("field 'channels' is not an array", raw)
        refused = [f"{c.get('name')}: {c.get('error')}" for c in channels
                   if isinstance(c, dict) and c.get("error")]
        if refused:
            return [SubscribeFailed(None, -1, "; ".join(refused))]
        return [SubscribeAck(0)]

    def _candle(self, msg: Mapping[str, Any], raw: str | bytes) -> list[FeedEvent]:
        res = text(msg, "res", raw)
        if res != self.interval:
            raise MessageRejectedError(f"candle resolution {res!r} on {self.channel}", raw)
        symbol = text(msg, "sy", raw).upper()
        ts_us = integer(msg, "ts", raw)
        o, h, lo, c, v = ohlcv(msg, raw)
        open_ms = (ts_us - ts_us % self.interval_us) // 1000
        bar = Bar(open_ms, o, h, lo, c, v)
        interval_ms = self.interval_us // 1000
        events: list[FeedEvent] = []
        held = self._forming.get(symbol)
        if held is not None and held[1].ts > open_ms:
            # an older candle (the old connection of a handover): not the forming one
            return [KlineEvent(symbol, interval_ms, bar, False, ts_us // 1000)]
        if held is not None and held[1].ts < open_ms:
            events.append(KlineEvent(symbol, interval_ms, held[1], True, ts_us // 1000))
            held = None
        if held is None or ts_us >= held[0]:
            self._forming[symbol] = (ts_us, bar)
        events.append(KlineEvent(symbol, interval_ms, bar, False, ts_us // 1000))
        return events

    @staticmethod
    def _quotes(msg: Mapping[str, Any], raw: str | bytes) -> list[FeedEvent]:
        ts_us = integer(msg, "ts", raw)
        rows = field(msg, "d", raw)
        if not isinstance(rows, list):
            raise MessageRejectedError("field 'd' is not an array", raw)
        events: list[FeedEvent] = []
        for row in rows:
            if not isinstance(row, dict):
                raise MessageRejectedError("a ticker row is not an object", raw)
            q = field(row, "q", raw)
            if not isinstance(q, list) or len(q) < 4:
                raise MessageRejectedError(f"ticker field 'q' is {q!r}, not [best_ask, "
                                           "ask_size, best_bid, bid_size, ...]", raw)
            side = {k: (0 if v is None else v) for k, v in
                    zip(("ask", "ask_qty", "bid", "bid_qty"), q[:4], strict=True)}
            events.append(QuoteEvent(text(row, "s", raw).upper(), ts_us,
                                     number(side, "bid", raw), number(side, "bid_qty", raw),
                                     number(side, "ask", raw), number(side, "ask_qty", raw)))
        return events
