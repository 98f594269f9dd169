"""The order side of a venue: the typed slot live order execution will fill.

No venue implements it yet: ``Venue.execution`` is ``None`` everywhere and
``Capabilities.execution`` is False, so nothing can place an order. This module fixes the
shape now so that market data and execution of one venue live side by side in
``actors/venues/`` and the session wiring does not change when orders arrive:

- ``filters(symbol)``: the exchange's trading rules for a symbol (price tick, quantity
  step, minimum quantity and notional), which an order must satisfy before it is sent;
- ``place(order)``: submit an order identified by a client order id chosen by the caller
  (deterministic, like the paper broker's fill ids, so a retry after a crash cannot
  submit twice);
- ``cancel`` and ``query``: by the same client order id.

Every call is a coroutine (network I/O); failures the caller should retry are
``TemporaryError``; a refusal by the exchange is an ``OrderState`` with status
``rejected`` and its reason. Quantities are in base units, prices in quote currency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

OrderSide = Literal["buy", "sell"]
OrderKind = Literal["market", "limit"]
OrderStatus = Literal["new", "partially_filled", "filled", "canceled", "rejected", "expired"]


@dataclass(frozen=True)
class SymbolFilters:
    """An exchange's trading rules for one symbol."""

    symbol: str
    tick_size: float
    """Smallest price increment (quote currency)."""
    step_size: float
    """Smallest quantity increment (base units)."""
    min_qty: float
    """Smallest order quantity (base units)."""
    min_notional: float
    """Smallest order value (quote currency)."""


@dataclass(frozen=True)
class OrderRequest:
    """One order to submit."""

    client_order_id: str
    """The caller's idempotency key."""
    symbol: str
    """The venue's spelling."""
    side: OrderSide
    qty: float
    """Base units, > 0."""
    kind: OrderKind = "market"
    limit_price: float | None = None
    """Required for ``limit`` orders (quote currency)."""


@dataclass(frozen=True)
class OrderState:
    """What the venue reports about one order."""

    client_order_id: str
    venue_order_id: str | None
    symbol: str
    status: OrderStatus
    filled_qty: float
    """Base units filled so far."""
    avg_price: float | None
    """Average fill price (quote currency), None before a fill."""
    reason: str = ""
    """Why it was rejected or expired."""


class OrderExecution(Protocol):
    """A venue's order side (module docstring)."""

    async def filters(self, symbol: str) -> SymbolFilters:
        """Trading rules for ``symbol``."""
        ...

    async def place(self, order: OrderRequest) -> OrderState:
        """Submit ``order``; resubmitting the same client order id returns its state."""
        ...

    async def cancel(self, symbol: str, client_order_id: str) -> OrderState:
        """Cancel an open order."""
        ...

    async def query(self, symbol: str, client_order_id: str) -> OrderState:
        """The order's current state."""
        ...
