"""Drops duplicate and out-of-order market events before they reach the session.

Closed klines are keyed by symbol and open time, trades by trade id (and a per-product
sequence counted for gaps where the venue has one), quotes by update id. Every drop is
counted in the feed's health. Events from two connections of one feed (the overlap of a
connection handover, ``feed_client.py``) pass one filter, so the overlap is delivered
once.
"""

from __future__ import annotations

from collections import deque

from raytrade.actors.events import KlineEvent, MarketEvent, TradeEvent
from raytrade.actors.health import FeedHealth


class EventFilter:
    """Drops duplicates and out-of-order events, counting them in ``health``."""

    def __init__(self, health: FeedHealth, memory: int = 4096) -> None:
        self.health = health
        self.last_closed: dict[str, int] = {}
        self.last_trade: dict[str, int] = {}
        self.last_sequence: dict[str, int] = {}
        self.last_quote: dict[str, int] = {}
        self._recent_trades: dict[str, deque[int]] = {}
        self._memory = memory

    def accept(self, ev: MarketEvent) -> bool:
        """True if ``ev`` is new and in order."""
        if isinstance(ev, KlineEvent):
            last = self.last_closed.get(ev.symbol)
            if last is not None and ev.bar.ts <= last:
                self.health.count("duplicates" if ev.closed and ev.bar.ts == last
                                  else "out_of_order")
                return False
            if ev.closed:
                self.last_closed[ev.symbol] = ev.bar.ts
            return True
        if isinstance(ev, TradeEvent):
            return self._trade(ev)
        last_q = self.last_quote.get(ev.symbol)
        if last_q is not None and ev.update_id <= last_q:
            self.health.count("duplicates" if ev.update_id == last_q else "out_of_order")
            return False
        self.last_quote[ev.symbol] = ev.update_id
        return True

    def _trade(self, ev: TradeEvent) -> bool:
        recent = self._recent_trades.setdefault(ev.symbol, deque(maxlen=self._memory))
        last = self.last_trade.get(ev.symbol)
        if last is not None and ev.trade_id <= last:
            self.health.count("duplicates" if ev.trade_id in recent else "out_of_order")
            return False
        if ev.sequence >= 0:
            seq = self.last_sequence.get(ev.symbol)
            if seq is not None and ev.sequence != seq + 1:
                self.health.count("sequence_gaps")
            self.last_sequence[ev.symbol] = ev.sequence
        self.last_trade[ev.symbol] = ev.trade_id
        recent.append(ev.trade_id)
        return True
