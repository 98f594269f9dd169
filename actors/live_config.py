"""One live actor's settings (``LiveConfig``): where its market data and its orders go,
how much it may trade, and how it reaches real money only when told to.

A live actor is a paper actor (``PaperConfig``: the feed, the journal of decisions, the
channel it follows, by default ``live``) plus an order side: the execution venue
(``binance-spot``: long/flat; ``binance-futures``: USD-M perpetuals, long/short; the
registry lists them all), the network (``testnet`` by default; ``mainnet`` only when
spelled out; ``loopback`` for the project's simulators), the risk limits and the order
style. Keys are *not* part of the config (it is written to the journal): the venue loads
them from the environment or an owner-only file when the actor starts.

Market data and orders are separate on purpose: features come from the venue the policy
was trained on (public mainnet klines by default, read-only), while orders go to the
testnet until ``--mainnet``.
"""

from __future__ import annotations

import math
import urllib.parse
from dataclasses import dataclass, field
from typing import Literal

from raytrade.actors.paper_config import PaperConfig
from raytrade.actors.venues.execution import MarketKind
from raytrade.actors.venues.execution_registry import (
    DEFAULT_EXECUTION_VENUE,
    ExecutionSetup,
    Network,
    execution_venue,
)
from raytrade.envs.errors import ConfigError

__all__ = ["LiveConfig", "LiveLimits", "Network"]


@dataclass(frozen=True)
class LiveLimits:
    """Risk limits enforced before an order leaves. Money in quote currency."""

    max_symbol_notional: float = 1_000.0
    """Largest absolute position value of this actor's symbol after the order."""
    max_total_notional: float = 5_000.0
    """Largest sum of absolute position values over the run's symbols on the account
    (as the exchange reports them) after the order."""
    daily_loss_limit: float = 100.0
    """Loss of this actor's allocation since 00:00 UTC at which it flattens and halts
    until the next UTC day."""
    max_orders_per_minute: int = 10
    """Orders this actor may send in any 60 s window; more are refused."""
    stale_after_s: float | None = None
    """A bar whose close is older than this (market time: the wall clock live, the
    replay's clock in replays) is stale: no policy orders on it. None: two bar
    intervals."""

    def __post_init__(self) -> None:
        for name in ("max_symbol_notional", "max_total_notional", "daily_loss_limit"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"LiveLimits.{name} must be a positive number, got {value}")
        if self.max_orders_per_minute < 1:
            raise ConfigError("LiveLimits.max_orders_per_minute must be >= 1")
        if self.stale_after_s is not None and not self.stale_after_s > 0:
            raise ConfigError("LiveLimits.stale_after_s must be > 0")


@dataclass(frozen=True)
class LiveConfig:
    """One live actor (module docstring)."""

    paper: PaperConfig
    """Market data, journal of decisions, the channel followed (``live``)."""
    venue: str = DEFAULT_EXECUTION_VENUE
    """Where orders go: a name in ``actors/venues/execution_registry.py``
    (``binance-spot``, ``binance-futures``, ...)."""
    network: Network = "testnet"
    """``testnet`` (default; a terminal's demo account on a file bridge), ``mainnet``
    (real money) or ``loopback`` (the project's simulator)."""
    rest_url: str | None = None
    """Order REST base URL; None: the network's (required for ``loopback``)."""
    ws_url: str | None = None
    """User-stream websocket base URL; None: the network's (required for ``loopback``)."""
    dry_run: bool = False
    """Journal the orders it would send and send none."""
    symbols: tuple[str, ...] = ()
    """Every symbol of the run (the total notional cap sums them); empty: this one."""
    capital: float = 1_000.0
    """Quote currency allocated to this symbol: the policy's target fraction is of this
    allocation's equity (capital plus its PnL)."""
    order_type: Literal["limit", "market"] = "limit"
    """``limit``: a marketable limit order, immediate-or-cancel, priced ``price_band_bps``
    through the last price (price protection); ``market``: a plain market order."""
    price_band_bps: float = 50.0
    """How far through the last close a marketable limit may fill (basis points)."""
    order_timeout_s: float = 5.0
    """An order request without an answer after this is of unknown fate (queried)."""
    recv_window_ms: int = 5000
    """Binance's ``recvWindow``: a signed request older than this when it reaches the
    exchange is refused, so an order of unknown fate that is still absent this long
    after it was sent (plus a second) was never placed."""
    fill_timeout_s: float = 3.0
    """Wait this long for the user stream to report an order final before asking REST."""
    reconcile_every_s: float = 60.0
    """Reconcile at least this often between bars (and after every bar)."""
    command_poll_s: float = 1.0
    """How often operator commands are read from the store."""
    key_file: str | None = None
    """An owner-only JSON file with the API key and secret; None: environment variables."""
    key_env_prefix: str | None = None
    """Environment variables ``<prefix>_API_KEY`` and ``<prefix>_API_SECRET``; None: the
    venue's own prefix (``RAYTRADE_BINANCE`` for Binance)."""
    venue_config: str | None = None
    """The execution venue's own settings file, for venues that need one (a file bridge's
    lot sizes per symbol)."""
    limits: LiveLimits = field(default_factory=LiveLimits)

    def __post_init__(self) -> None:
        entry = execution_venue(self.venue)
        if self.network not in ("testnet", "mainnet", "loopback"):
            raise ConfigError(f"network {self.network!r}: testnet, mainnet or loopback")
        if entry.transport == "files":
            if self.rest_url or self.ws_url:
                raise ConfigError(f"venue {self.venue!r} talks to a terminal through files: "
                                  "it takes no order URLs (set paper.files_dir)")
            if not self.paper.files_dir:
                raise ConfigError(f"venue {self.venue!r} needs paper.files_dir (the "
                                  "terminal's files folder, or the simulator's)")
        elif self.network == "loopback":
            for name in ("rest_url", "ws_url"):
                url = getattr(self, name)
                host = urllib.parse.urlparse(url or "").hostname
                if host not in ("127.0.0.1", "localhost", "::1"):
                    raise ConfigError(f"loopback network needs {name} on 127.0.0.1, got "
                                      f"{url!r}")
        elif self.rest_url or self.ws_url:
            raise ConfigError("custom order URLs are for the loopback network only: "
                              f"testnet and mainnet use {self.venue}'s endpoints")
        if self.paper.channel != "live" and self.network == "mainnet":
            raise ConfigError("real-money orders follow the live channel only (the channel "
                              "the promotion gate guards), not "
                              f"{self.paper.channel!r}")
        if not (math.isfinite(self.capital) and self.capital > 0):
            raise ConfigError(f"capital must be a positive amount, got {self.capital}")
        if not 500 <= self.recv_window_ms <= 60_000:
            raise ConfigError("recv_window_ms must be in [500, 60000] (Binance's limit)")
        if not 0 < self.price_band_bps <= 1_000:
            raise ConfigError("price_band_bps must be in (0, 1000]")
        for name in ("order_timeout_s", "fill_timeout_s", "reconcile_every_s",
                     "command_poll_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"LiveConfig.{name} must be > 0")

    @property
    def actor(self) -> str:
        """The actor's name (journal files, ``live/<actor>/``)."""
        return self.paper.actor

    @property
    def symbol(self) -> str:
        """The traded symbol (the venue's spelling)."""
        return self.paper.symbol

    @property
    def market(self) -> MarketKind:
        """``spot`` or ``futures``."""
        return execution_venue(self.venue).market

    @property
    def run_symbols(self) -> tuple[str, ...]:
        """The symbols the total cap sums over."""
        return self.symbols or (self.symbol,)

    def endpoints(self) -> tuple[str | None, str | None]:
        """(REST base URL, websocket base URL) of the order side; (None, None) for a
        file bridge."""
        entry = execution_venue(self.venue)
        if entry.transport == "files":
            return None, None
        if self.network == "loopback":
            return self.rest_url, self.ws_url
        return entry.endpoints[self.network]

    def setup(self) -> ExecutionSetup:
        """What the execution venue's builder needs (``execution_registry``)."""
        rest_url, ws_url = self.endpoints()
        return ExecutionSetup(network=self.network, rest_url=rest_url, ws_url=ws_url,
                              files_dir=self.paper.files_dir,
                              key_env_prefix=self.key_env_prefix, key_file=self.key_file,
                              timeout_s=self.order_timeout_s,
                              recv_window_ms=self.recv_window_ms,
                              venue_config=self.venue_config, dry_run=self.dry_run)

    @property
    def orders_journal_path(self) -> str:
        """The orders journal, beside the decisions journal."""
        return str(self.paper.journal_path.with_suffix(".orders.sqlite"))
