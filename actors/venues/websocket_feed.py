"""The market-data transport of every websocket venue: its stream adapter run by
``actors/feed_client.py``'s ``FeedClient`` (connect, subscribe, read, reconnect).

A venue that speaks a websocket protocol implements ``Venue.feed`` by calling
``websocket_feed`` with its ``stream(subscription)``; a venue with another transport
(a file bridge such as DWX Connect) returns its own ``protocol.MarketFeed``.
"""

from __future__ import annotations

from collections.abc import Callable

from raytrade.actors.events import MarketEvent
from raytrade.actors.feed_client import FeedClient, FeedConfig
from raytrade.actors.venues.protocol import MarketFeed, StreamAdapter


def websocket_feed(adapter: StreamAdapter, on_event: Callable[[MarketEvent], None], *,
                   config: FeedConfig, clock: Callable[[], float]) -> MarketFeed:
    """A ``FeedClient`` for ``adapter``: events to ``on_event``, health stamped by
    ``clock`` (seconds)."""
    return FeedClient(adapter, on_event, config=config, clock=clock)
