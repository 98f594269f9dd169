"""Feed and actor health: counters of every anomaly, and the connection state.

One ``FeedHealth`` per feed connection; the trader adds its own counters (gaps, stale
holds). It is exported to ``paper/<actor>/health.json`` for the dashboard and the gate.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

COUNTERS = (
    "messages", "connects", "connect_failures", "disconnects", "idle_timeouts",
    "server_shutdowns", "subscribe_errors", "malformed", "rejected", "unknown", "duplicates",
    "out_of_order", "sequence_gaps", "gaps", "gaps_backfilled", "gaps_unfilled",
    "backfilled_bars", "stale_holds", "dropped_queue", "rest_errors", "handovers",
    "rest_open_bars")


@dataclass
class FeedHealth:
    """Mutable health record. ``state`` is ``connecting``, ``live`` (fresh data since the
    last connect), ``degraded`` (connected or reconnecting without fresh data yet) or
    ``stopped``. Times are clock seconds."""

    state: str = "connecting"
    counters: Counter[str] = field(default_factory=Counter)
    last_message_at: float | None = None
    last_error: str = ""
    backoff_s: float = 0.0
    """The last reconnect delay, seconds."""
    recent_backoff_s: deque[float] = field(default_factory=lambda: deque(maxlen=32))
    """The last 32 reconnect delays, oldest first, seconds."""
    close_codes: Counter[int] = field(default_factory=Counter)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name`` (one of ``COUNTERS``)."""
        if name not in COUNTERS:
            raise KeyError(f"unknown health counter {name!r}")
        self.counters[name] += n

    def snapshot(self) -> dict[str, Any]:
        """Plain-JSON view."""
        return {"state": self.state, "counters": {k: self.counters.get(k, 0) for k in COUNTERS},
                "last_message_at": self.last_message_at, "last_error": self.last_error,
                "backoff_s": self.backoff_s,
                "recent_backoff_s": [round(d, 4) for d in self.recent_backoff_s],
                "close_codes": {str(k): v for k, v in self.close_codes.items()}}
