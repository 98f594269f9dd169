"""The order-side registry: every venue the live trader can send orders to, by name.

``LiveConfig.venue`` and ``raytrade live --venue`` accept exactly these names; the live
actor builds its ``OrderExecution`` here, so nothing outside the venue wing switches on
an execution venue's name. Each entry knows its market kind (``spot``: long/flat;
``futures``: long/short), its transport, its public endpoints per network, and builds
its own order side from an ``ExecutionSetup`` (loading its keys and installing their
log redaction first). ``loopback`` (the project's simulator) has no public endpoints:
an ``http`` venue's URLs are given and must be on 127.0.0.1, a ``files`` venue's folder
is given.

Adding an execution venue: implement ``execution.OrderExecution`` (as
``binance_orders.BinanceExecution`` does) and add an ``ExecutionVenue`` below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from raytrade.actors.venues.binance_auth import install_redaction, load_keys
from raytrade.actors.venues.binance_orders import BinanceExecution
from raytrade.actors.venues.delta_setup import ENDPOINTS as DELTA_ENDPOINTS
from raytrade.actors.venues.delta_setup import build_delta_execution
from raytrade.actors.venues.dwx import build_execution as build_dwx
from raytrade.actors.venues.execution import MarketKind, OrderExecution
from raytrade.envs.errors import ConfigError

Network = Literal["testnet", "mainnet", "loopback"]
"""``testnet`` (the default: an exchange's testnet, a terminal's demo account),
``mainnet`` (real money, only when spelled out) or ``loopback`` (the project's
simulator)."""
Transport = Literal["http", "files"]
"""How orders travel: REST and a user-stream websocket (``http``), or a file bridge to a
trading terminal (``files``: the network then names the terminal's account kind)."""


@dataclass(frozen=True)
class ExecutionSetup:
    """Everything a venue needs to build its order side, resolved by the live config."""

    network: Network
    rest_url: str | None
    """The network's REST base URL, or the loopback exchange's (``http`` venues)."""
    ws_url: str | None
    """The network's user-stream websocket base URL, or the loopback's."""
    files_dir: str | None
    """The terminal's files folder (``files`` venues)."""
    key_env_prefix: str | None
    """Environment variables ``<prefix>_API_KEY`` / ``_API_SECRET``; None: the venue's
    default prefix."""
    key_file: str | None
    """An owner-only key file, instead of the environment."""
    timeout_s: float
    """Request timeout, seconds."""
    recv_window_ms: int
    """How long a signed request stays valid after it is sent, ms (venues that have
    such a window)."""
    venue_config: str | None
    """The venue's own settings file (a file bridge's lot sizes per symbol), if any."""
    dry_run: bool = False
    """The live trader sends no orders (a venue that cannot verify its account kind may
    still serve a dry run, and must refuse to start otherwise)."""


Builder = Callable[[ExecutionSetup], OrderExecution]
"""Builds a venue's order side; loads its keys and installs their log redaction first."""


@dataclass(frozen=True)
class ExecutionVenue:
    """One order-side venue."""

    name: str
    market: MarketKind
    """``spot`` (long/flat) or ``futures`` (a signed position: perpetuals, margin forex)."""
    endpoints: Mapping[str, tuple[str, str]]
    """Network (``testnet``, ``mainnet``) -> (REST base URL, user-stream websocket URL);
    empty for ``files`` venues."""
    build: Builder
    transport: Transport = "http"
    default_key_prefix: str = ""
    """The key environment variables' prefix when the config names none."""


def _binance(market: MarketKind) -> Builder:
    def build(setup: ExecutionSetup) -> OrderExecution:
        assert setup.rest_url is not None and setup.ws_url is not None
        keys = load_keys(prefix=setup.key_env_prefix or "RAYTRADE_BINANCE",
                         path=setup.key_file)
        install_redaction(keys)
        return BinanceExecution(market, setup.rest_url, setup.ws_url, keys,
                                timeout_s=setup.timeout_s,
                                recv_window_ms=setup.recv_window_ms)
    return build


_ENTRIES = (
    ExecutionVenue("binance-spot", "spot", {
        "mainnet": ("https://api.binance.com", "wss://stream.binance.com:9443"),
        "testnet": ("https://testnet.binance.vision", "wss://stream.testnet.binance.vision"),
    }, _binance("spot"), default_key_prefix="RAYTRADE_BINANCE"),
    ExecutionVenue("binance-futures", "futures", {
        "mainnet": ("https://fapi.binance.com", "wss://fstream.binance.com"),
        "testnet": ("https://testnet.binancefuture.com", "wss://fstream.binancefuture.com"),
    }, _binance("futures"), default_key_prefix="RAYTRADE_BINANCE"),
    ExecutionVenue("delta-futures", "futures", DELTA_ENDPOINTS, build_delta_execution,
                   default_key_prefix="RAYTRADE_DELTA"),
    ExecutionVenue("dwx", "futures", {}, build_dwx, transport="files"),
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
