"""The loopback Delta exchange's books: perpetual products, one USD wallet and isolated
positions per account, and orders sized in integer contracts, filled against a
``PriceSource`` (``exchange_prices``).

Delta's model (docs.delta.exchange, "General Information", "Place Order", the ``Product``
and ``Position`` schemas): an order's ``size`` is a whole number of contracts, each worth
``contract_value`` units of the underlying (0.001 BTC for BTCUSD); a position's ``size`` is
signed (long > 0); margin and P&L are in the settling asset (USD); a fill pays the taker
commission rate on its notional (``size x contract_value x price``); the margin an order
blocks is its notional divided by the product's leverage (``POST /v2/products/{id}/orders/
leverage``). The simulator models isolated margin without liquidation: enough to refuse an
order that the wallet cannot margin (``insufficient_margin``, with
``additional_margin_required``) and to show realised P&L and fees in the balance.

Fills: a market order takes the ask (buy) or the bid (sell) for its whole size; a limit
order fills at that price only when it is marketable (``ask <= limit`` to buy), an IOC rest
is cancelled, a GTC rest waits in the book and fills once a later quote crosses it
(``match_resting``). ``partial`` fills only part first (the ``partial_fill`` fault).

Every change is returned as ``Event``s (the order as it stood, its fill if any) for the
private websocket and kept for ``/sim/state``. Used from the exchange's event loop only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Literal

from raytrade.actors.simulators.delta_auth import bad_schema, coded
from raytrade.actors.simulators.delta_products import DeltaProduct
from raytrade.actors.simulators.exchange_accounts import AccountConfig
from raytrade.actors.simulators.exchange_prices import PriceSource
from raytrade.envs.errors import ConfigError

Side = Literal["buy", "sell"]
OrderType = Literal["market_order", "limit_order"]
OrderState = Literal["open", "pending", "closed", "cancelled"]
CLIENT_ORDER_ID_MAX = 32
"""``client_order_id`` is at most 32 characters (Delta changelog 08.10.25)."""


@dataclass(frozen=True)
class Order:
    """An order as it stands (replaced, never mutated)."""

    id: int
    account: str
    product: DeltaProduct
    side: Side
    order_type: OrderType
    size: int
    unfilled_size: int
    limit_price: Decimal | None
    time_in_force: str
    reduce_only: bool
    client_order_id: str | None
    state: OrderState
    created_us: int
    paid_commission: Decimal = Decimal(0)
    filled_value: Decimal = Decimal(0)
    """Sum of fill size x price (contracts x USD), for the average fill price."""
    cancellation_reason: str | None = None

    @property
    def average_fill_price(self) -> Decimal | None:
        """Size-weighted fill price (USD), None before the first fill."""
        filled = self.size - self.unfilled_size
        if filled == 0:
            return None
        return (self.filled_value / filled).quantize(self.product.tick_size / 100)


@dataclass(frozen=True)
class Fill:
    """One trade of an order."""

    fill_id: str
    size: int
    price: Decimal
    commission: Decimal
    position_after: int
    time_us: int


@dataclass(frozen=True)
class Event:
    """An order change: ``create``, ``update`` (``reason`` ``fill``) or ``delete``."""

    action: Literal["create", "update", "delete"]
    order: Order
    fill: Fill | None = None


@dataclass
class Position:
    """Signed contracts, average entry (None when flat), realised P&L since opened."""

    size: int = 0
    entry_price: Decimal | None = None
    realized_pnl: Decimal = Decimal(0)


@dataclass
class Account:
    """One API key's wallet (USD), leverage per product id, positions."""

    key: str
    secret: str = field(repr=False)
    balance: Decimal
    leverage: dict[int, int] = field(default_factory=dict)
    positions: dict[int, Position] = field(default_factory=lambda: defaultdict(Position))
    fees_paid: Decimal = Decimal(0)


class DeltaBook:
    """Products, accounts and orders (module docstring)."""

    def __init__(self, accounts: Sequence[AccountConfig], products: Sequence[DeltaProduct],
                 prices: PriceSource) -> None:
        if not products:
            raise ConfigError("the Delta exchange needs at least one product")
        self.products = {p.symbol: p for p in products}
        self.by_id = {p.id: p for p in products}
        if len(self.by_id) != len(self.products):
            raise ConfigError("two products share an id")
        self.accounts = {a.key: Account(a.key, a.secret, a.futures_wallet) for a in accounts}
        self.prices = prices
        self.orders: dict[int, Order] = {}
        self._next_order = 1_000_001
        self._next_fill = 1
        self.user_ids = {k: 100 + i for i, k in enumerate(self.accounts)}

    # ---- lookups
    def secret(self, key: str) -> str | None:
        """The API key's secret, or None for an unknown key."""
        acc = self.accounts.get(key)
        return None if acc is None else acc.secret

    def product(self, ref: object) -> DeltaProduct:
        """By id (int or digits) or symbol; 400 ``invalid_contract`` otherwise."""
        if isinstance(ref, int) and not isinstance(ref, bool) and ref in self.by_id:
            return self.by_id[ref]
        if isinstance(ref, str):
            if ref.isdigit() and int(ref) in self.by_id:
                return self.by_id[int(ref)]
            if ref.upper() in self.products:
                return self.products[ref.upper()]
        raise coded(400, "invalid_contract")

    def quote(self, product: DeltaProduct) -> tuple[Decimal, Decimal] | None:
        """``(bid, ask)`` on the product's tick grid, or None without a price."""
        q = self.prices.quote(product.feed_symbol)
        if q is None:
            return None
        tick = product.tick_size
        bid = (Decimal(repr(q[0])) / tick).quantize(Decimal(1), ROUND_DOWN) * tick
        ask = (Decimal(repr(q[1])) / tick).quantize(Decimal(1), ROUND_HALF_UP) * tick
        return bid, max(ask, bid)

    def mark(self, product: DeltaProduct) -> Decimal | None:
        """Mid of the quote on the tick grid (USD), or None without a price."""
        q = self.quote(product)
        return None if q is None else ((q[0] + q[1]) / 2).quantize(product.tick_size)

    def leverage(self, key: str, product: DeltaProduct) -> int:
        """The account's leverage on ``product`` (its default until set)."""
        return self.accounts[key].leverage.get(product.id, product.default_leverage)

    def set_leverage(self, key: str, product: DeltaProduct, raw: object) -> int:
        """Set leverage from the request's ``leverage`` (number or string, 1..max);
        400 ``bad_schema`` otherwise."""
        try:
            lev = int(Decimal(str(raw)))
        except ArithmeticError:
            raise bad_schema("leverage", "leverage must be a number") from None
        if isinstance(raw, bool) or not 1 <= lev <= product.max_leverage:
            raise bad_schema("leverage", f"leverage must be 1..{product.max_leverage}")
        self.accounts[key].leverage[product.id] = lev
        return lev

    def position_margin(self, key: str, product: DeltaProduct) -> Decimal:
        """Margin the position blocks: entry notional / leverage (USD)."""
        pos = self.accounts[key].positions.get(product.id)
        if pos is None or pos.size == 0 or pos.entry_price is None:
            return Decimal(0)
        return (abs(pos.size) * product.contract_value * pos.entry_price /
                self.leverage(key, product)).quantize(Decimal("0.0001"))

    def blocked_margin(self, key: str) -> Decimal:
        """Margin all the account's positions block (USD)."""
        return sum((self.position_margin(key, p) for p in self.products.values()), Decimal(0))

    def available(self, key: str) -> Decimal:
        """Wallet balance minus blocked margin (USD)."""
        return self.accounts[key].balance - self.blocked_margin(key)

    def open_orders(self, key: str, product: DeltaProduct | None = None) -> list[Order]:
        """The account's open orders (on ``product`` only, if given)."""
        return [o for o in self.orders.values() if o.account == key and o.state == "open"
                and (product is None or o.product == product)]

    def find(self, key: str, order_id: int | None = None, client_order_id: str | None = None
             ) -> Order | None:
        """The account's order by id or client order id (the latest with that id)."""
        if order_id is None and client_order_id is None:
            return None
        for o in reversed(self.orders.values()):
            if o.account == key and order_id in (None, o.id) and \
                    client_order_id in (None, o.client_order_id):
                return o
        return None

    # ---- placing
    def place(self, key: str, body: Mapping[str, object], now_us: int,
              partial: float | None = None) -> list[Event]:
        """Validate and place ``body`` (a ``POST /v2/orders`` JSON object); the events
        (``create`` then fills, or a ``delete``). ``partial``: fill only this fraction now."""
        product = self.product(body.get("product_id", body.get("product_symbol")))
        side, typ = body.get("side"), body.get("order_type")
        if side not in ("buy", "sell"):
            raise bad_schema("side", "side must be buy or sell")
        if typ not in ("market_order", "limit_order"):
            raise bad_schema("order_type", "order_type must be market_order or limit_order")
        size = body.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise bad_schema("size", "size must be a positive integer number of contracts")
        if size > product.position_size_limit:
            raise bad_schema("size", f"size exceeds {product.position_size_limit}")
        cid = body.get("client_order_id")
        if cid is not None and (not isinstance(cid, str) or not 0 < len(cid) <=
                                CLIENT_ORDER_ID_MAX):
            raise bad_schema("client_order_id", "client_order_id must be at most 32 "
                             "characters")
        if cid is not None and any(o.client_order_id == cid for o in self.open_orders(key)):
            raise bad_schema("client_order_id", "client_order_id already used by an open "
                             "order")
        limit = self._limit_price(body, typ)
        tif = body.get("time_in_force", "gtc")
        if tif not in ("gtc", "ioc"):
            raise bad_schema("time_in_force", "time_in_force must be gtc or ioc")
        reduce_only = body.get("reduce_only", False) in (True, "true")
        pos = self.accounts[key].positions[product.id]
        signed = size if side == "buy" else -size
        if reduce_only and (pos.size == 0 or (pos.size > 0) == (signed > 0) or
                            abs(signed) > abs(pos.size)):
            raise coded(400, "reduce_only_violation")
        quote = self.quote(product)
        if quote is None:
            raise coded(400, "order_size_exceed_available")
        price = quote[1] if side == "buy" else quote[0]
        self._check_margin(key, product, pos.size, signed, price)
        order = Order(id=self._next_order, account=key, product=product, side=side,
                      order_type=typ, size=size, unfilled_size=size, limit_price=limit,
                      time_in_force="ioc" if typ == "market_order" else str(tif),
                      reduce_only=reduce_only, client_order_id=cid, state="open",
                      created_us=now_us)
        self._next_order += 1
        self.orders[order.id] = order
        events = [Event("create", order)]
        marketable = limit is None or (price <= limit if side == "buy" else price >= limit)
        if marketable:
            first = size if partial is None or size == 1 else min(size - 1, max(1, int(
                size * partial)))
            events.append(self._fill(order.id, first, price, now_us))
        order = self.orders[order.id]
        if order.unfilled_size and order.time_in_force == "ioc" and (
                typ == "limit_order" or not marketable):
            events.append(self._cancel(order.id, None))
        return events

    @staticmethod
    def _limit_price(body: Mapping[str, object], typ: object) -> Decimal | None:
        raw = body.get("limit_price")
        if typ == "market_order" and raw is None:
            return None
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            raise bad_schema("limit_price", "limit_price is required for limit orders")
        try:
            limit = Decimal(str(raw))
        except ArithmeticError:
            raise bad_schema("limit_price", "limit_price must be a decimal string") from None
        if not limit.is_finite() or limit <= 0:
            raise bad_schema("limit_price", "limit_price must be > 0")  # changelog 15.04.26
        return None if typ == "market_order" else limit

    def _check_margin(self, key: str, product: DeltaProduct, have: int, signed: int,
                      price: Decimal) -> None:
        added = max(0, abs(have + signed) - abs(have))
        if added == 0:
            return
        notional = added * product.contract_value * price
        need = notional / self.leverage(key, product) + notional * product.taker_rate
        short = need - self.available(key)
        if short > 0:
            raise coded(400, "insufficient_margin", {
                "additional_margin_required": str(short.quantize(Decimal("0.0001")))})

    def _fill(self, order_id: int, size: int, price: Decimal, now_us: int) -> Event:
        order = self.orders[order_id]
        acc = self.accounts[order.account]
        product = order.product
        commission = (size * product.contract_value * price * product.taker_rate).quantize(
            Decimal("0.00000001"))
        new = self._move(acc, product, size if order.side == "buy" else -size, price)
        acc.balance -= commission
        acc.fees_paid += commission
        unfilled = order.unfilled_size - size
        order = replace(order, unfilled_size=unfilled, state="closed" if unfilled == 0 else
                        "open", paid_commission=order.paid_commission + commission,
                        filled_value=order.filled_value + size * price)
        self.orders[order_id] = order
        fill = Fill(f"sim-{self._next_fill:08d}", size, price, commission, new, now_us)
        self._next_fill += 1
        return Event("update", order, fill)

    @staticmethod
    def _move(acc: Account, product: DeltaProduct, signed: int, price: Decimal) -> int:
        """Trade ``signed`` contracts at ``price`` into the account's position: realise the
        P&L of what it closes (into the balance), average the entry of what it adds; the
        new size."""
        pos = acc.positions[product.id]
        if pos.size == 0:
            pos.realized_pnl = Decimal(0)
        if pos.size != 0 and (pos.size > 0) != (signed > 0):
            closed = min(abs(signed), abs(pos.size))
            assert pos.entry_price is not None
            sign = 1 if pos.size > 0 else -1
            pnl = (price - pos.entry_price) * closed * product.contract_value * sign
            pos.realized_pnl += pnl
            acc.balance += pnl
        new = pos.size + signed
        if new == 0:
            pos.entry_price = None
        elif pos.size == 0 or (new > 0) != (pos.size > 0):
            pos.entry_price = price
        elif abs(new) > abs(pos.size):
            assert pos.entry_price is not None
            pos.entry_price = ((pos.entry_price * abs(pos.size) + price * abs(signed)) /
                               abs(new)).quantize(product.tick_size / 1000)
        pos.size = new
        return new

    def _cancel(self, order_id: int, reason: str | None) -> Event:
        order = replace(self.orders[order_id], state="cancelled", cancellation_reason=reason)
        self.orders[order_id] = order
        return Event("delete", order)

    # ---- later changes
    def fill_rest(self, order_id: int, now_us: int) -> list[Event]:
        """Fill what a partly filled market order still lacks (at the current quote)."""
        order = self.orders.get(order_id)
        if order is None or order.state != "open" or order.unfilled_size == 0:
            return []
        quote = self.quote(order.product)
        if quote is None:
            return [self._cancel(order_id, None)]
        price = quote[1] if order.side == "buy" else quote[0]
        return [self._fill(order_id, order.unfilled_size, price, now_us)]

    def cancel(self, key: str, order_id: int | None, client_order_id: str | None
               ) -> list[Event]:
        """Cancel an open order; 400 ``open_order_not_found`` otherwise."""
        order = self.find(key, order_id, client_order_id)
        if order is None or order.state != "open":
            raise coded(400, "open_order_not_found")
        return [self._cancel(order.id, "cancelled_by_user")]

    def match_resting(self, now_us: int) -> list[Event]:
        """Fill resting GTC limit orders that the current quotes cross."""
        events: list[Event] = []
        for order in [o for o in self.orders.values() if o.state == "open"
                      and o.time_in_force == "gtc" and o.limit_price is not None]:
            quote = self.quote(order.product)
            if quote is None:
                continue
            price = quote[1] if order.side == "buy" else quote[0]
            assert order.limit_price is not None
            if (price <= order.limit_price) if order.side == "buy" else \
                    (price >= order.limit_price):
                events.append(self._fill(order.id, order.unfilled_size, order.limit_price,
                                         now_us))
        return events

    # ---- behind the trader's back (loopback extras)
    def adjust_position(self, key: str, product: DeltaProduct, contracts: int) -> int:
        """Move the position by ``contracts`` at the mark, with no order and no fee (a
        trade made elsewhere); the new size. 400 ``order_size_exceed_available`` without a
        price."""
        mark = self.mark(product)
        if mark is None:
            raise coded(400, "order_size_exceed_available")
        return self._move(self.accounts[key], product, contracts, mark)

    def adjust_balance(self, key: str, delta: Decimal) -> Decimal:
        """Change the wallet balance by ``delta`` USD (a transfer); the new balance."""
        self.accounts[key].balance += delta
        return self.accounts[key].balance
