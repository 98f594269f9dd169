"""Immutable market-data events: what a venue adapter makes of the raw JSON it receives.

Every field is validated before an event exists (finite, positive prices; non-negative
sizes; consistent OHLC), so nothing downstream ever sees a price of ``"abc"``, 0 or NaN.
Times are integer milliseconds UTC; prices in quote currency, sizes in base units.
"""

from __future__ import annotations

from dataclasses import dataclass

from raytrade.envs.bars import Bar
from raytrade.envs.errors import DataError


class MessageRejectedError(DataError):
    """A feed message failed parsing or its schema; ``reason`` says which field and why.

    The message is dropped and counted; the connection stays up.
    """

    def __init__(self, reason: str, raw: str | bytes = "") -> None:
        self.reason = reason
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        self.snippet = text[:160]
        super().__init__(f"{reason} in message {self.snippet!r}")


@dataclass(frozen=True, slots=True)
class KlineEvent:
    """A kline update. Only ``closed`` bars are used for decisions (``envs/bars.py``)."""

    symbol: str
    interval_ms: int
    bar: Bar
    closed: bool
    event_ms: int


@dataclass(frozen=True, slots=True)
class TradeEvent:
    """One public trade. ``trade_id`` rises per symbol; ``sequence`` is the venue's
    per-product message sequence where it has one (Coinbase), else -1."""

    symbol: str
    trade_id: int
    price: float
    qty: float
    ts: int
    sequence: int = -1


@dataclass(frozen=True, slots=True)
class QuoteEvent:
    """Best bid and ask. A side with no orders has price and size 0 (one-sided book)."""

    symbol: str
    update_id: int
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float

    @property
    def two_sided(self) -> bool:
        """True when both sides quote a positive price and size, and bid < ask."""
        return self.bid > 0 and self.ask > 0 and self.bid_qty > 0 and self.ask_qty > 0 \
            and self.bid < self.ask

    @property
    def half_spread(self) -> float:
        """Half the quoted spread as a fraction of the mid price (NaN if one-sided)."""
        if not self.two_sided:
            return float("nan")
        mid = (self.bid + self.ask) / 2.0
        return (self.ask - self.bid) / 2.0 / mid


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """The venue announced it will close the connection (Binance ``serverShutdown``)."""

    event_ms: int


@dataclass(frozen=True, slots=True)
class SubscribeAck:
    """The venue accepted the request with this id."""

    request_id: int


@dataclass(frozen=True, slots=True)
class SubscribeFailed:
    """The venue answered a request with an error: the subscription must be retried."""

    request_id: int | None
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed message of a type we do not use (counted as ``unknown``)."""

    kind: str


MarketEvent = KlineEvent | TradeEvent | QuoteEvent
FeedEvent = MarketEvent | ServerShutdown | SubscribeAck | SubscribeFailed | Ignored
