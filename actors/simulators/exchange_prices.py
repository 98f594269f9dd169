"""Where the loopback exchange gets its prices: a ``PriceSource`` answers ``quote(symbol)``
with the current ``(bid, ask)`` in quote currency, or None when it has no price (the
exchange then refuses orders on the symbol: "Market is closed.").

- ``FixedPrices``: prices a test sets and changes at will (thread-safe for single
  assignments, so a test thread may move prices while the exchange's thread reads them).
- ``ReplayPrices``: the prices of a running replay feed (``replay_server.ReplayServer``):
  the close of the last bar CLOSED on the replay's virtual clock, plus and minus a half
  spread in basis points. Orders filled on the exchange therefore see exactly the bars a
  trader following that feed has seen, and none of the future.
- ``FeedPrices``: the same rule for a replay feed running in another process, read over
  its REST endpoints (``/api/v3/time`` for its virtual clock, ``/api/v3/klines``).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Protocol

from raytrade.actors.simulators.replay_server import ReplayServer
from raytrade.envs.errors import ConfigError


class PriceSource(Protocol):
    """Current quotes by symbol (Binance spelling, e.g. ``BTCUSDT``)."""

    def quote(self, symbol: str) -> tuple[float, float] | None:
        """``(bid, ask)`` in quote currency, or None if the symbol has no price now."""
        ...


def _spread(mid: float, half_spread_bps: float) -> tuple[float, float]:
    h = half_spread_bps / 10_000.0
    return mid * (1.0 - h), mid * (1.0 + h)


class FixedPrices:
    """Prices set by hand: ``set(symbol, mid)`` (bid and ask at ``mid`` ∓ the half spread)
    or ``set_quote(symbol, bid, ask)``; ``remove(symbol)`` takes the price away."""

    def __init__(self, mids: Mapping[str, float] | None = None, *,
                 half_spread_bps: float = 0.0) -> None:
        if half_spread_bps < 0:
            raise ConfigError(f"half_spread_bps must be >= 0, got {half_spread_bps}")
        self.half_spread_bps = half_spread_bps
        self._lock = threading.Lock()
        self._quotes: dict[str, tuple[float, float]] = {}
        for symbol, mid in (mids or {}).items():
            self.set(symbol, mid)

    def set(self, symbol: str, mid: float) -> None:
        """Quote ``symbol`` around ``mid`` (quote currency, > 0)."""
        if not mid > 0:
            raise ConfigError(f"{symbol}: price must be > 0, got {mid}")
        self.set_quote(symbol, *_spread(mid, self.half_spread_bps))

    def set_quote(self, symbol: str, bid: float, ask: float) -> None:
        """Quote ``symbol`` at exactly ``bid``/``ask`` (0 < bid <= ask)."""
        if not 0 < bid <= ask:
            raise ConfigError(f"{symbol}: need 0 < bid <= ask, got bid {bid} ask {ask}")
        with self._lock:
            self._quotes[symbol.upper()] = (bid, ask)

    def remove(self, symbol: str) -> None:
        """No price for ``symbol`` from now on."""
        with self._lock:
            self._quotes.pop(symbol.upper(), None)

    def quote(self, symbol: str) -> tuple[float, float] | None:
        """The quote last set, or None."""
        with self._lock:
            return self._quotes.get(symbol.upper())


class ReplayPrices:
    """The replay feed's prices (module docstring). ``server`` may run in another thread or
    process-local event loop: only its virtual clock and tables are read."""

    def __init__(self, server: ReplayServer, *, half_spread_bps: float = 1.0) -> None:
        if half_spread_bps < 0:
            raise ConfigError(f"half_spread_bps must be >= 0, got {half_spread_bps}")
        self.server = server
        self.half_spread_bps = half_spread_bps

    def quote(self, symbol: str) -> tuple[float, float] | None:
        """The last closed bar's close ∓ the half spread; None before the first close or
        for a symbol the replay does not serve."""
        close = self.server.last_closed_close(symbol)
        return None if close is None else _spread(close, self.half_spread_bps)


class FeedPrices:
    """A replay feed's prices over REST (module docstring). Each quote reads the feed's
    clock (one small request on loopback); a bar's close is fetched once and served until
    the clock passes the next close."""

    def __init__(self, rest_url: str, *, half_spread_bps: float = 1.0,
                 timeout_s: float = 2.0) -> None:
        if half_spread_bps < 0:
            raise ConfigError(f"half_spread_bps must be >= 0, got {half_spread_bps}")
        self.rest_url = rest_url.rstrip("/")
        self.half_spread_bps = half_spread_bps
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, float, float]] = {}
        """symbol -> (close, feed time of the next close (ms), wall time fetched)."""
        self._clock: tuple[int, float] | None = None
        """(feed time, monotonic time) of the last clock reading."""

    def _get(self, path: str, params: Mapping[str, str]) -> object:
        url = f"{self.rest_url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
            return json.loads(resp.read())

    def _feed_now(self) -> int:
        raw = self._get("/api/v3/time", {})
        if not isinstance(raw, dict) or not isinstance(raw.get("serverTime"), int):
            raise ValueError(f"{self.rest_url}/api/v3/time: unexpected answer {raw!r}")
        self._clock = (int(raw["serverTime"]), time.monotonic())
        return self._clock[0]

    def quote(self, symbol: str) -> tuple[float, float] | None:
        """The last closed bar's close ∓ the half spread; None if the feed has no closed
        bar for ``symbol`` or cannot be reached."""
        sym = symbol.upper()
        with self._lock:
            try:
                now = self._feed_now()
                cached = self._cache.get(sym)
                if cached is None or now >= cached[1]:
                    rows = self._get("/api/v3/klines", {"symbol": sym, "limit": "2"})
                    closed = [r for r in rows if isinstance(r, list) and int(r[6]) < now] \
                        if isinstance(rows, list) else []
                    if not closed:
                        return None
                    last = closed[-1]
                    step = int(last[6]) + 1 - int(last[0])
                    cached = (float(last[4]), int(last[6]) + 1 + step, time.monotonic())
                    self._cache[sym] = cached
            except (OSError, ValueError, IndexError, TypeError):
                return None
        return _spread(cached[0], self.half_spread_bps)
