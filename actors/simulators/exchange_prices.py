"""Where the loopback exchange gets its prices: a ``PriceSource`` answers ``quote(symbol)``
with the current ``(bid, ask)`` in quote currency, or None when it has no price (the
exchange then refuses orders on the symbol: "Market is closed.").

- ``FixedPrices``: prices a test sets and changes at will (thread-safe for single
  assignments, so a test thread may move prices while the exchange's thread reads them).
- ``ReplayPrices``: the prices of a running replay feed (``replay_server.ReplayServer``):
  the close of the last bar CLOSED on the replay's virtual clock, plus and minus a half
  spread in basis points. Orders filled on the exchange therefore see exactly the bars a
  trader following that feed has seen, and none of the future.
"""

from __future__ import annotations

import threading
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
