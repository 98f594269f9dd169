"""Binance's clock and rate limits, as seen from one client.

``ServerClock``: a signed request carries ``timestamp`` (ms) and the exchange refuses it
(-1021) when it is 1 s ahead of the server's clock or older than ``recvWindow``. The clock
keeps ``offset = serverTime - midpoint(local send, local receive)`` of a ``/time`` request
and stamps requests with ``local now + offset``; it resyncs every ``resync_s`` seconds and
whenever the transport sees a -1021.

``RateLimitTracker``: every Binance reply carries the weight used in the current minute
(``X-MBX-USED-WEIGHT-1M``) and order endpoints the orders counted per window
(``X-MBX-ORDER-COUNT-10S``, ``-1D`` on spot, ``-1M`` on futures); ``exchangeInfo`` lists
the limits (``rateLimits``). The tracker keeps both so the caller can slow down before a
429. A 429 (with ``Retry-After`` in seconds) opens a back-off window and a 418 (the IP is
banned) a ban window: until it ends the transport sends nothing and raises
``RateLimitedError`` / ``VenueBannedError`` itself, since hammering on during a 429 is how
an IP earns a 418.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from raytrade.actors.venues.execution import RateLimitedError, VenueBannedError

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_S = 1.0
"""Back-off when a 429 comes without a usable ``Retry-After``."""
DEFAULT_BAN_S = 120.0
"""Ban window when a 418 comes without a usable ``Retry-After`` or ban time."""
_BANNED_UNTIL = re.compile(r"banned until (\d{10,})")


class ServerClock:
    """The exchange's time, estimated from ``/time`` requests (module docstring).

    ``fetch_server_ms`` performs one unsigned ``GET /time`` and returns ``serverTime``
    (blocking; called from the transport's worker threads). Thread-safe."""

    def __init__(self, fetch_server_ms: Callable[[], int], *, resync_s: float = 600.0,
                 wall_ms: Callable[[], float] = lambda: time.time() * 1000.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if resync_s <= 0:
            raise ValueError(f"resync_s must be > 0, got {resync_s}")
        self._fetch = fetch_server_ms
        self.resync_s = resync_s
        self._wall_ms = wall_ms
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._offset_ms: float | None = None
        self._next_sync = 0.0
        self.syncs = 0
        """How many times the offset was measured."""
        self.last_rtt_ms = 0.0
        """Round trip of the last ``/time`` request (the offset's uncertainty is half)."""

    @property
    def offset_ms(self) -> float | None:
        """Server minus local time (ms), None before the first sync."""
        return self._offset_ms

    def sync(self) -> float:
        """Measure the offset now; returns it (ms)."""
        with self._lock:
            return self._sync_locked()

    def _sync_locked(self) -> float:
        sent = self._wall_ms()
        server = self._fetch()
        received = self._wall_ms()
        self._offset_ms = server - (sent + received) / 2.0
        self.last_rtt_ms = received - sent
        self._next_sync = self._monotonic() + self.resync_s
        self.syncs += 1
        log.debug("server clock offset %.1f ms (rtt %.1f ms)", self._offset_ms,
                  self.last_rtt_ms)
        return self._offset_ms

    def invalidate(self) -> None:
        """Forget the offset: the next ``now_ms`` resyncs (after a -1021)."""
        with self._lock:
            self._next_sync = 0.0

    def peek_ms(self) -> int:
        """The server's time now by the last offset, never syncing (local time before the
        first sync): for time stamps that need no request."""
        return int(self._wall_ms() + (self._offset_ms or 0.0))

    def now_ms(self) -> int:
        """The server's time now (ms), resyncing first when the offset is older than
        ``resync_s`` or was invalidated."""
        with self._lock:
            if self._offset_ms is None or self._monotonic() >= self._next_sync:
                self._sync_locked()
            assert self._offset_ms is not None
            return int(self._wall_ms() + self._offset_ms)


@dataclass(frozen=True)
class RateLimit:
    """One limit from ``exchangeInfo.rateLimits``."""

    kind: str
    """``REQUEST_WEIGHT``, ``ORDERS`` or ``RAW_REQUESTS``."""
    window: str
    """The header suffix: ``1M``, ``10S``, ``1D``..."""
    limit: int


_UNITS = {"SECOND": "S", "MINUTE": "M", "HOUR": "H", "DAY": "D"}
_HEADER_KIND = {"x-mbx-used-weight-": "REQUEST_WEIGHT", "x-mbx-order-count-": "ORDERS"}


def parse_rate_limits(data: Any) -> list[RateLimit]:
    """The ``rateLimits`` of an ``exchangeInfo`` reply; entries it cannot read are
    skipped (limits are advisory: the exchange enforces them)."""
    out = []
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict):
            continue
        kind, unit = item.get("rateLimitType"), _UNITS.get(str(item.get("interval")))
        num, limit = item.get("intervalNum"), item.get("limit")
        if (isinstance(kind, str) and unit and isinstance(num, int) and
                isinstance(limit, int) and not isinstance(limit, bool) and limit > 0):
            out.append(RateLimit(kind, f"{num}{unit}", limit))
    return out


class RateLimitTracker:
    """Used weight and order counts from reply headers, the limits, and the 429/418
    windows (module docstring). Thread-safe."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self.used: dict[tuple[str, str], int] = {}
        """(kind, window) -> the count the last reply reported."""
        self.limits: dict[tuple[str, str], int] = {}
        """(kind, window) -> the exchange's limit (from ``exchangeInfo``)."""
        self.backoff_until = 0.0
        """Monotonic time until which requests are refused after a 429."""
        self.banned_until = 0.0
        """Monotonic time until which requests are refused after a 418."""
        self.counts = {"429": 0, "418": 0, "malformed_headers": 0}

    def set_limits(self, limits: list[RateLimit]) -> None:
        """Adopt the limits of an ``exchangeInfo`` reply."""
        with self._lock:
            for rl in limits:
                self.limits[(rl.kind, rl.window)] = rl.limit

    def observe(self, headers: Mapping[str, str] | list[tuple[str, str]]) -> None:
        """Read the usage headers of one reply (names case-insensitive)."""
        items = headers.items() if isinstance(headers, Mapping) else headers
        with self._lock:
            for name, value in items:
                low = name.lower()
                for prefix, kind in _HEADER_KIND.items():
                    if low.startswith(prefix):
                        window = low[len(prefix):].upper()
                        try:
                            n = int(value.strip())
                        except ValueError:
                            self.counts["malformed_headers"] += 1
                            continue
                        if n >= 0 and window:
                            self.used[(kind, window)] = n

    def usage(self) -> dict[str, tuple[int, int | None]]:
        """``"REQUEST_WEIGHT 1M" -> (used, limit or None)`` for every count seen."""
        with self._lock:
            return {f"{k} {w}": (n, self.limits.get((k, w))) for (k, w), n in self.used.items()}

    def headroom(self) -> float:
        """The smallest fraction left of any known limit (1.0 when nothing is known)."""
        with self._lock:
            fractions = [1.0 - n / self.limits[key] for key, n in self.used.items()
                         if key in self.limits]
        return max(0.0, min(fractions, default=1.0))

    def on_429(self, retry_after: str | None) -> float:
        """Open the back-off window; returns its length (s)."""
        wait = _seconds(retry_after, DEFAULT_RETRY_AFTER_S)
        with self._lock:
            self.counts["429"] += 1
            self.backoff_until = max(self.backoff_until, self._monotonic() + wait)
        return wait

    def on_418(self, retry_after: str | None, body: str = "") -> float:
        """Open the ban window (``Retry-After``, or the ban time the body names, whichever
        is later); returns its length (s)."""
        wait = _seconds(retry_after, 0.0)
        match = _BANNED_UNTIL.search(body)
        if match:
            wait = max(wait, int(match.group(1)) / 1000.0 - time.time())
        if wait <= 0:
            wait = DEFAULT_BAN_S
        with self._lock:
            self.counts["418"] += 1
            self.banned_until = max(self.banned_until, self._monotonic() + wait)
        return wait

    def check(self, what: str) -> None:
        """Raise if a request must not be sent now: ``VenueBannedError`` during a ban,
        ``RateLimitedError`` during a 429 back-off (both with the time left)."""
        now = self._monotonic()
        if now < self.banned_until:
            left = self.banned_until - now
            raise VenueBannedError(f"{what}: not sent, the exchange banned this IP (HTTP "
                                   f"418) for another {left:.1f} s", left)
        if now < self.backoff_until:
            left = self.backoff_until - now
            raise RateLimitedError(f"{what}: not sent, backing off after HTTP 429 for "
                                   f"another {left:.2f} s", left)


def _seconds(value: str | None, default: float) -> float:
    try:
        x = float(value) if value is not None else default
    except ValueError:
        return default
    return x if x == x and 0 <= x < 86_400 * 7 else default
