"""The order side of a venue: what the live trader asks of an exchange, venue-neutral.

A venue that can trade hands out an ``OrderExecution`` (``Venue.execution``) for one
account (its keys) and one market kind: ``spot`` (long/flat: a position is the base asset
balance) or ``futures`` (USD-M perpetuals, one-way mode: a position is a signed base
quantity). Everything here is plain data; the Binance implementation is
``binance_orders.py`` and the loopback exchange ``actors/simulators/binance_exchange.py``.

- ``filters(symbol)``: the exchange's trading rules for a symbol (price tick, quantity
  step, minimum quantity and notional), which an order must satisfy before it is sent;
  refreshed from the exchange periodically.
- ``place(order)``: submit an order identified by a client order id chosen by the caller.
  The id is deterministic (actor, bar time, policy version, leg), so a retry or a restart
  never creates a second order: before sending anything after a failure, the caller asks
  ``query`` for the id's fate.
- ``query`` and ``cancel`` by the same client order id; ``open_orders`` and ``account``
  for reconciliation; ``user_stream`` for fills as they happen.

Errors decide control flow:
- a refusal by the exchange (insufficient balance, filter failure, unknown symbol) is an
  ``OrderState`` with status ``rejected`` and the exchange's code and message in
  ``reason``: nothing was placed, nothing to retry;
- ``OrderFateUnknownError``: the request may have reached the exchange (timeout, 5xx after
  sending): the caller must ``query`` the client id before sending anything else;
- ``RateLimitedError`` (HTTP 429, ``retry_after_s``) and other ``TemporaryError``: nothing
  was placed; retry after the hint;
- ``VenueBannedError`` (HTTP 418: the IP is banned for ignoring 429s): halt, send nothing
  until ``retry_after_s`` has passed and a person has looked.

Quantities are in base units, prices in quote currency, times in integer milliseconds UTC.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from raytrade.envs.errors import ConfigError, OperationalError, TemporaryError

MarketKind = Literal["spot", "futures"]
OrderSide = Literal["buy", "sell"]
OrderKind = Literal["market", "limit"]
OrderStatus = Literal["new", "partially_filled", "filled", "canceled", "rejected", "expired"]
FINAL_STATUSES: frozenset[str] = frozenset({"filled", "canceled", "rejected", "expired"})
"""Statuses after which an order can no longer fill."""


class OrderFateUnknownError(TemporaryError):
    """The request may have reached the exchange but no answer came back (timeout, 5xx,
    broken connection after sending): query the client order id before anything else."""


class RateLimitedError(TemporaryError):
    """HTTP 429: over a rate limit; nothing was placed. Wait ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class VenueBannedError(OperationalError):
    """HTTP 418: the exchange banned this IP for ignoring rate limits. Halt."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class VenueAuthError(OperationalError):
    """The exchange refused the keys or the signature (HTTP 401, codes -2014/-2015/-1022):
    nothing will work until a person fixes the configuration."""


@dataclass(frozen=True)
class SymbolFilters:
    """An exchange's trading rules for one symbol."""

    symbol: str
    base_asset: str
    """``BTC`` for ``BTCUSDT``: the spot position's balance."""
    quote_asset: str
    """``USDT``: the currency of equity, notional and PnL."""
    tick_size: float
    """Smallest price increment (quote currency)."""
    step_size: float
    """Smallest quantity increment (base units), for market and limit orders alike."""
    min_qty: float
    """Smallest order quantity (base units)."""
    max_qty: float
    """Largest order quantity (base units; market orders use the market lot limit)."""
    min_notional: float
    """Smallest order value, quantity times price (quote currency)."""

    def floor_qty(self, qty: float) -> float:
        """``qty`` (>= 0) rounded down to the step, without binary noise."""
        steps = math.floor(qty / self.step_size + 1e-9)
        return _clean(steps * self.step_size, self.step_size)

    def round_price(self, price: float, side: OrderSide) -> float:
        """``price`` on the tick grid, rounded away from the book for a marketable limit:
        up for a buy, down for a sell."""
        ticks = price / self.tick_size
        n = math.ceil(ticks - 1e-9) if side == "buy" else math.floor(ticks + 1e-9)
        return _clean(n * self.tick_size, self.tick_size)


def _clean(value: float, step: float) -> float:
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 8
    return round(value, decimals + 2)


@dataclass(frozen=True)
class OrderRequest:
    """One order to submit."""

    client_order_id: str
    """The caller's idempotency key (at most 36 characters of ``[A-Za-z0-9._:/-]``)."""
    symbol: str
    """The venue's spelling."""
    side: OrderSide
    qty: float
    """Base units, > 0, on the step grid."""
    kind: OrderKind = "market"
    limit_price: float | None = None
    """Required for ``limit`` orders (quote currency, on the tick grid). Limit orders are
    immediate-or-cancel: a marketable limit is a market order with a price band."""
    reduce_only: bool = False
    """Futures: the order may only shrink the position."""

    def checked_limit_price(self) -> float | None:
        """The limit price to send: a limit order's (finite, > 0; quote currency), None
        for a market order.

        Raises:
            ConfigError: a limit order without a valid price, or a market order with one.
        """
        cid, price = self.client_order_id, self.limit_price
        if self.kind == "limit":
            if price is None or not (math.isfinite(price) and price > 0):
                raise ConfigError(f"order {cid}: a limit order needs a limit price > 0, got "
                                  f"{price}")
            return price
        if price is not None:
            raise ConfigError(f"order {cid}: a market order takes no limit price")
        return None


@dataclass(frozen=True)
class Trade:
    """One fill of an order as its acknowledgement lists it (spot ``FULL`` replies)."""

    trade_id: int
    qty: float
    """Base units."""
    price: float
    commission: float
    commission_asset: str


@dataclass(frozen=True)
class OrderState:
    """What the venue reports about one order."""

    client_order_id: str
    venue_order_id: str | None
    symbol: str
    side: OrderSide
    status: OrderStatus
    qty: float
    """Ordered quantity (base units)."""
    filled_qty: float
    """Base units filled so far."""
    avg_price: float | None
    """Average fill price (quote currency), None before a fill."""
    reason: str = ""
    """Why it was rejected or expired (the exchange's code and message)."""
    update_ms: int = 0
    """When the exchange last changed it."""
    trades: tuple[Trade, ...] = ()
    """Its fills with their commissions, when the reply lists them (spot ``FULL``);
    empty otherwise (then only ``filled_qty`` and ``avg_price`` are known)."""

    @property
    def final(self) -> bool:
        """It can no longer fill."""
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class ExecutionReport:
    """One order update from the user data stream (``executionReport`` on spot,
    ``ORDER_TRADE_UPDATE`` on futures)."""

    client_order_id: str
    venue_order_id: str
    symbol: str
    side: OrderSide
    status: OrderStatus
    qty: float
    """Ordered quantity (base units)."""
    last_qty: float
    """Filled by this update (base units; 0 for updates without a trade)."""
    last_price: float
    """Price of this update's trade (quote currency; 0 without a trade)."""
    cum_qty: float
    """Filled so far (base units)."""
    cum_quote: float
    """Quote value filled so far."""
    commission: float
    """Commission of this update's trade."""
    commission_asset: str
    trade_id: int
    """The exchange's trade id (-1 without a trade): a fill's identity."""
    event_ms: int
    reason: str = ""
    """Rejection or expiry reason, if any."""


@dataclass(frozen=True)
class AccountSnapshot:
    """An account as the exchange reports it, for reconciliation and sizing."""

    at_ms: int
    """The exchange's time of the snapshot."""
    balances: Mapping[str, float]
    """Asset -> total balance (free plus locked), every asset with a non-zero balance."""
    positions: Mapping[str, float]
    """Symbol -> signed position in base units, for the requested symbols (spot: the base
    asset's total balance; futures: ``positionAmt``)."""
    prices: Mapping[str, float]
    """Symbol -> the exchange's current price (spot: last trade; futures: mark price)."""
    equity: float
    """Account value in the quote asset (spot: quote balance plus the requested symbols'
    positions at ``prices``; futures: wallet balance plus unrealized PnL)."""
    open_orders: tuple[OrderState, ...] = field(default_factory=tuple)
    """Open orders on the requested symbols."""


class UserStream(Protocol):
    """The account's private websocket: order updates as they happen.

    ``run`` keeps the stream up until cancelled: it creates the listen key, connects, keeps
    the key alive, re-creates it on expiry and reconnects after a drop, calling
    ``on_report`` for each order update and ``on_state(True/False, why)`` when the stream
    goes up or down (while it is down the caller falls back to REST queries)."""

    async def run(self, on_report: Callable[[ExecutionReport], None],
                  on_state: Callable[[bool, str], None]) -> None:
        """Run until cancelled (class docstring)."""
        ...


class OrderExecution(Protocol):
    """A venue's order side for one account and market kind (module docstring)."""

    @property
    def market(self) -> MarketKind:
        """``spot`` or ``futures``."""
        ...

    async def filters(self, symbol: str) -> SymbolFilters:
        """Trading rules for ``symbol`` (cached; refreshed from the exchange when older
        than the refresh period). ``ConfigError`` for a symbol the exchange does not
        trade."""
        ...

    async def place(self, order: OrderRequest) -> OrderState:
        """Submit ``order`` and return the exchange's acknowledgement (errors: module
        docstring)."""
        ...

    async def cancel(self, symbol: str, client_order_id: str) -> OrderState:
        """Cancel an open order; its state afterwards."""
        ...

    async def query(self, symbol: str, client_order_id: str) -> OrderState | None:
        """The order's current state; None if the exchange has no such order (it was
        never placed)."""
        ...

    async def open_orders(self, symbol: str) -> list[OrderState]:
        """Orders on ``symbol`` that can still fill."""
        ...

    async def account(self, symbols: tuple[str, ...], *,
                      open_orders_for: tuple[str, ...] | None = None) -> AccountSnapshot:
        """Balances, positions and prices for ``symbols``, and the open orders of
        ``open_orders_for`` (None: of ``symbols``)."""
        ...

    def user_stream(self) -> UserStream:
        """The account's order-update stream."""
        ...

    async def close(self) -> None:
        """Release connections (the user stream's listen key is closed by ``run``)."""
        ...


OrderCall = Callable[[], Awaitable[OrderState]]
"""A deferred order call (the order manager retries and times them)."""
