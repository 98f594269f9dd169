"""One live actor's settings (``LiveConfig``): where its market data and its orders go,
how much it may trade, and how it reaches real money only when told to.

A live actor is a paper actor (``PaperConfig``: the feed, the journal of decisions, the
channel it follows, by default ``live``) plus an order side: the execution venue
(``binance-spot``: long/flat; ``binance-futures``: USD-M perpetuals, long/short), the
network (``testnet`` by default; ``mainnet`` only when spelled out; ``loopback`` for the
project's simulator on 127.0.0.1), the risk limits and the order style. Keys are *not*
part of the config (it is written to the journal): they come from the environment or an
owner-only file when the actor starts (``actors/venues/binance_auth.py``).

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
from raytrade.actors.venues.execution_registry import DEFAULT_EXECUTION_VENUE, execution_venue
from raytrade.envs.errors import ConfigError

Network = Literal["testnet", "mainnet", "loopback"]


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
    (``binance-spot``, ``binance-futures``)."""
    network: Network = "testnet"
    """``testnet`` (default), ``mainnet`` (real money) or ``loopback`` (the simulator)."""
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
    key_env_prefix: str = "RAYTRADE_BINANCE"
    """Environment variables ``<prefix>_API_KEY`` and ``<prefix>_API_SECRET``."""
    limits: LiveLimits = field(default_factory=LiveLimits)

    def __post_init__(self) -> None:
        execution_venue(self.venue)
        if self.network not in ("testnet", "mainnet", "loopback"):
            raise ConfigError(f"network {self.network!r}: testnet, mainnet or loopback")
        if self.network == "loopback":
            for name in ("rest_url", "ws_url"):
                url = getattr(self, name)
                host = urllib.parse.urlparse(url or "").hostname
                if host not in ("127.0.0.1", "localhost", "::1"):
                    raise ConfigError(f"loopback network needs {name} on 127.0.0.1, got "
                                      f"{url!r}")
        elif self.rest_url or self.ws_url:
            raise ConfigError("custom order URLs are for the loopback network only: "
                              "testnet and mainnet use Binance's endpoints")
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

    def endpoints(self) -> tuple[str, str]:
        """(REST base URL, websocket base URL) of the order side."""
        if self.network == "loopback":
            assert self.rest_url is not None and self.ws_url is not None
            return self.rest_url, self.ws_url
        return execution_venue(self.venue).endpoints[self.network]

    @property
    def orders_journal_path(self) -> str:
        """The orders journal, beside the decisions journal."""
        return str(self.paper.journal_path.with_suffix(".orders.sqlite"))
