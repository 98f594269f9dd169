"""The venue adapter interface: how a feed client talks to one exchange's websocket.

An adapter knows the URL, the subscription requests and how raw frames become validated
events (``events.py``). It holds no connection and no state beyond its configuration, so
one adapter serves every reconnect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from raytrade.actors.events import FeedEvent


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


class VenueAdapter(Protocol):
    """One exchange's websocket protocol."""

    venue: str
    has_klines: bool

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
