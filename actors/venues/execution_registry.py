"""The order-side registry: every venue the live trader can send orders to, by name.

``LiveConfig.venue`` and ``raytrade live --venue`` accept exactly these names; the live
actor builds its ``OrderExecution`` here, so nothing outside the venue wing switches on
an execution venue's name. Each entry knows its market kind (``spot``: long/flat;
``futures``: long/short) and its public endpoints per network. ``loopback`` (the
project's simulator) has no public endpoints: its URLs are given and must be on
127.0.0.1.

Adding an execution venue: implement ``execution.OrderExecution`` (as
``binance_orders.BinanceExecution`` does) and add an ``ExecutionVenue`` below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from raytrade.actors.venues.binance_auth import ApiKeys
from raytrade.actors.venues.binance_orders import BinanceExecution
from raytrade.actors.venues.execution import MarketKind, OrderExecution
from raytrade.envs.errors import ConfigError

Builder = Callable[[str, str, ApiKeys, float, int], OrderExecution]
"""(REST URL, websocket URL, keys, request timeout in s, recvWindow in ms) -> the order
side."""


@dataclass(frozen=True)
class ExecutionVenue:
    """One order-side venue."""

    name: str
    market: MarketKind
    endpoints: Mapping[str, tuple[str, str]]
    """Network (``testnet``, ``mainnet``) -> (REST base URL, user-stream websocket URL)."""
    build: Builder


def _binance(market: MarketKind) -> Builder:
    def build(rest_url: str, ws_url: str, keys: ApiKeys, timeout_s: float,
              recv_window_ms: int) -> OrderExecution:
        return BinanceExecution(market, rest_url, ws_url, keys, timeout_s=timeout_s,
                                recv_window_ms=recv_window_ms)
    return build


_ENTRIES = (
    ExecutionVenue("binance-spot", "spot", {
        "mainnet": ("https://api.binance.com", "wss://stream.binance.com:9443"),
        "testnet": ("https://testnet.binance.vision", "wss://stream.testnet.binance.vision"),
    }, _binance("spot")),
    ExecutionVenue("binance-futures", "futures", {
        "mainnet": ("https://fapi.binance.com", "wss://fstream.binance.com"),
        "testnet": ("https://testnet.binancefuture.com", "wss://fstream.binancefuture.com"),
    }, _binance("futures")),
)
EXECUTION_VENUES: Mapping[str, ExecutionVenue] = {e.name: e for e in _ENTRIES}
DEFAULT_EXECUTION_VENUE = _ENTRIES[0].name


def execution_venue_names() -> tuple[str, ...]:
    """Registered names, sorted."""
    return tuple(sorted(EXECUTION_VENUES))


def execution_venue(name: str) -> ExecutionVenue:
    """The entry ``name``; ``ConfigError`` naming the known ones otherwise."""
    try:
        return EXECUTION_VENUES[name]
    except KeyError:
        raise ConfigError(f"unknown execution venue {name!r}: known are "
                          f"{', '.join(execution_venue_names())}") from None
