"""The venue-neutral part of an order stream that reconnects (``binance_user_stream``,
``delta_user_stream``): its up/down state, told to the caller only when it changes, and
the back-off between attempts, doubling from an initial to a maximum delay and starting
over once a connection has come up (a fresh drop is retried quickly; a venue that keeps
refusing is not hammered). What a connection does (keys, subscriptions, frames) stays in
the venue's module.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

StateCallback = Callable[[bool, str], None]
"""``on_state(up, why)`` of ``execution.UserStream.run``."""


class Reconnector:
    """Up/down edges and the back-off of one reconnecting stream (module docstring).

    Args:
        name: the stream as the log names it ("Delta order stream").
        initial_backoff_s, max_backoff_s: the first and the longest delay (s).
    """

    def __init__(self, name: str, initial_backoff_s: float, max_backoff_s: float) -> None:
        self.name = name
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.backoff_s = initial_backoff_s
        """The delay before the next attempt after a drop (s)."""
        self.up: bool | None = None
        """The state last told (None: nothing told yet)."""

    def tell(self, on_state: StateCallback, up: bool, why: str) -> None:
        """``on_state(up, why)`` if ``up`` differs from the state last told."""
        if self.up is not up:
            self.up = up
            on_state(up, why)

    def reset(self) -> None:
        """Start the back-off over (the next drop waits ``initial_backoff_s``)."""
        self.backoff_s = self.initial_backoff_s

    async def wait_after_drop(self, on_state: StateCallback, why: str,
                              was_up: bool) -> None:
        """A drop: tell it (down, ``why``), log it, wait the back-off, then double it.
        ``was_up``: a connection came up since the last drop (the back-off starts over)."""
        if was_up:
            self.reset()
        self.tell(on_state, False, why)
        log.warning("%s down (%s); reconnecting in %.2f s", self.name, why, self.backoff_s)
        await asyncio.sleep(self.backoff_s)
        self.backoff_s = min(self.backoff_s * 2, self.max_backoff_s)
