"""The loopback exchange's state and matching, synchronous and free of any server: the
accounts (spot balances; a USD-M futures USDT wallet with one-way positions), the symbols
and their filters, and the orders, filled against a ``PriceSource``.

Rules (Binance's, for the subset the live trader uses):
- Orders are MARKET, or LIMIT with ``timeInForce=IOC`` (a marketable limit: it fills at
  the touch if the limit allows, else expires). A MARKET buy fills at the ask, a sell at
  the bid, both rounded to the tick away from the trader (the book's prices are on the
  tick grid). Nothing rests on the book, so the only open orders are partially filled
  market orders waiting for their second trade (the ``partial_fill`` fault).
- Filters, checked in Binance's order: PRICE_FILTER (limit price on the tick grid, within
  bounds), LOT_SIZE / MARKET_LOT_SIZE (quantity on the step grid, within bounds), NOTIONAL
  (quantity times the fill or limit price at least the minimum; futures: unless reduce
  only). Error codes differ between spot and futures exactly as on Binance (``ExchangeError``).
- A new order whose client id equals one of the account's OPEN orders is refused (spot
  -2010 "Duplicate order sent.", futures -4116); a final order's id may be reused, and a
  query by client id then finds the newest order.
- Spot commission: on a buy in the base asset (the buyer receives qty - commission), on a
  sell in the quote asset. Futures commission in USDT; the wallet moves by realized PnL
  minus commission. Futures margin: cross, leverage 1 by default; an order that grows the
  position needs the total initial margin of all positions (at the mark, the new one at the
  fill price) to fit in wallet + unrealized PnL - commission, else -2019.
- Reduce-only (futures): refused (-2022) unless it shrinks the position without flipping it.

Decimals are ``Decimal`` throughout; times are integer milliseconds (passed in by the
caller, so tests control them).
"""

from __future__ import annotations

import math
import re
import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from typing import Any, Literal

from raytrade.actors.simulators.exchange_accounts import AccountConfig
from raytrade.actors.simulators.exchange_prices import PriceSource
from raytrade.envs.errors import ConfigError

Market = Literal["spot", "futures"]
Side = Literal["BUY", "SELL"]
OrderType = Literal["MARKET", "LIMIT"]
ExecType = Literal["NEW", "TRADE", "CANCELED", "EXPIRED"]

CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY")
_EIGHT = Decimal("0.00000001")
ZERO = Decimal(0)


class ExchangeError(Exception):
    """A refusal in Binance's form: HTTP status, code and message."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code, self.msg, self.status = code, msg, status


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` -> ``("BTC", "USDT")`` by the known quote assets."""
    s = symbol.upper()
    for q in _QUOTES:
        if s.endswith(q) and len(s) > len(q):
            return s[: -len(q)], q
    raise ConfigError(f"{symbol}: cannot tell the quote asset (known: {list(_QUOTES)})")


def decimals(step: Decimal) -> int:
    """Digits after the point of a tick or step (``0.001`` -> 3)."""
    return max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]


@dataclass(frozen=True)
class SymbolSpec:
    """A tradable symbol of one market and its filters (prices in quote currency,
    quantities in base units)."""

    symbol: str
    market: Market
    base: str
    quote: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    """LOT_SIZE maximum (limit orders)."""
    market_max_qty: Decimal
    """MARKET_LOT_SIZE maximum (market orders)."""
    min_notional: Decimal
    min_price: Decimal
    max_price: Decimal

    def __post_init__(self) -> None:
        if not (self.tick_size > 0 and self.step_size > 0 and 0 < self.min_qty <= self.max_qty
                and self.min_notional >= 0 and 0 < self.min_price < self.max_price):
            raise ConfigError(f"{self.symbol} ({self.market}): filters must have tick, step, "
                              f"min_qty > 0, min_qty <= max_qty, min_price < max_price")

    @property
    def price_precision(self) -> int:
        """Decimals of a price."""
        return decimals(self.tick_size)

    @property
    def quantity_precision(self) -> int:
        """Decimals of a quantity."""
        return decimals(self.step_size)

    @classmethod
    def default(cls, symbol: str, market: Market, reference_price: float | None) -> SymbolSpec:
        """Filters like Binance's for a symbol of this price level: BTCUSDT at ~40,000 gets
        spot tick 0.01, step 0.00001, min notional 5 and futures tick 0.1, step 0.001, min
        notional 100; cheaper symbols get finer ticks and coarser steps in proportion."""
        base, quote = split_symbol(symbol)
        e = 4 if reference_price is None or reference_price <= 0 else \
            math.floor(math.log10(reference_price))
        scale = Decimal(10) ** max(0, 4 - e)  # quantity limits: the same notional reach
        if market == "spot":
            tick = Decimal(10) ** max(-8, e - 6)
            step = Decimal(10) ** min(0, max(-8, -(e + 1)))
            return cls(symbol.upper(), market, base, quote, tick, step, step,
                       Decimal(9000) * scale, Decimal(100) * scale, Decimal(5), tick,
                       Decimal(1_000_000) * Decimal(10) ** max(0, e - 4))
        tick = Decimal(10) ** max(-7, e - 5)
        step = Decimal(10) ** min(0, max(-3, -(e - 1)))
        return cls(symbol.upper(), market, base, quote, tick, step, step,
                   Decimal(1000) * scale, Decimal(120) * scale, Decimal(100), tick,
                   Decimal(4_529_764) * Decimal(10) ** max(0, e - 4))


def default_specs(symbols: Iterable[str], prices: PriceSource,
                  reference: Mapping[str, float] | None = None) -> list[SymbolSpec]:
    """Spot and futures ``SymbolSpec.default`` for each symbol, scaled by its price in
    ``reference`` (symbol -> price), else its price now."""
    out: list[SymbolSpec] = []
    for s in symbols:
        ref = (reference or {}).get(s.upper())
        if ref is None:
            q = prices.quote(s)
            ref = None if q is None else (q[0] + q[1]) / 2
        out += [SymbolSpec.default(s, "spot", ref), SymbolSpec.default(s, "futures", ref)]
    return out


@dataclass(frozen=True)
class Fees:
    """Taker commission rates (fractions): spot 0.1 %, futures 0.05 %."""

    spot: Decimal = Decimal("0.001")
    futures: Decimal = Decimal("0.0005")


@dataclass(frozen=True)
class NewOrder:
    """A validated-for-form order request (values parsed, not yet checked by filters)."""

    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None = None
    time_in_force: str | None = None
    client_order_id: str | None = None
    reduce_only: bool = False


@dataclass(frozen=True)
class Fill:
    """One trade of an order."""

    trade_id: int
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    realized_pnl: Decimal
    """Futures: PnL realized by this trade (USDT); spot 0."""
    time_ms: int


@dataclass(frozen=True)
class Order:
    """An order as the exchange holds it (``replace``d on every change)."""

    market: Market
    account: str
    order_id: int
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    time_in_force: str
    orig_qty: Decimal
    price: Decimal
    """The limit price (0 for MARKET)."""
    reduce_only: bool
    time_ms: int
    update_ms: int
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    fills: tuple[Fill, ...] = ()

    @property
    def is_open(self) -> bool:
        """It can still fill."""
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def avg_price(self) -> Decimal:
        """Average fill price (0 before a fill)."""
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO

    @property
    def realized_pnl(self) -> Decimal:
        """Futures PnL realized by all its trades."""
        return sum((f.realized_pnl for f in self.fills), ZERO)


@dataclass(frozen=True)
class OrderUpdate:
    """One change of an order, as the user stream reports it: the order after the change,
    the execution type and, for a TRADE, its fill."""

    order: Order
    execution: ExecType
    fill: Fill | None = None


@dataclass(frozen=True)
class Position:
    """A one-way futures position: signed base quantity and average entry price."""

    amount: Decimal = ZERO
    entry: Decimal = ZERO
    realized: Decimal = ZERO
    """Cumulative realized PnL (USDT)."""
    update_ms: int = 0


@dataclass
class _Account:
    config: AccountConfig
    spot: dict[str, Decimal]
    wallet: Decimal
    positions: dict[str, Position] = field(default_factory=dict)
    leverage: dict[str, int] = field(default_factory=dict)
    update_ms: int = 0


def _floor_to(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def _on_grid(value: Decimal, step: Decimal) -> bool:
    return value % step == 0


def _random_id() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(22))


class ExchangeBook:
    """The exchange's state (module docstring). Not thread-safe: the server calls it from
    its event loop only."""

    def __init__(self, accounts: Sequence[AccountConfig], specs: Sequence[SymbolSpec],
                 prices: PriceSource, *, fees: Fees = Fees(), default_leverage: int = 1) -> None:
        if not accounts:
            raise ConfigError("the exchange needs at least one account")
        self.accounts = {a.key: _Account(a, dict(a.spot), a.futures_wallet) for a in accounts}
        if len(self.accounts) != len(accounts):
            raise ConfigError("two accounts share an API key")
        self.specs: dict[tuple[Market, str], SymbolSpec] = {(s.market, s.symbol): s
                                                            for s in specs}
        self.prices = prices
        self.fees = fees
        if default_leverage < 1:
            raise ConfigError("default_leverage must be >= 1")
        self.default_leverage = default_leverage
        self.orders: dict[int, Order] = {}
        self._by_client: dict[tuple[str, Market, str, str], int] = {}
        self._next_order_id = 1_000_001
        self._next_trade_id = 500_001

    # ---- lookups
    def secret(self, key: str) -> str | None:
        """The secret of API key ``key``, None if no such account."""
        acct = self.accounts.get(key)
        return None if acct is None else acct.config.secret

    def spec(self, market: Market, symbol: str) -> SymbolSpec:
        """The symbol's filters; -1121 if the market does not trade it."""
        spec = self.specs.get((market, symbol.upper()))
        if spec is None:
            raise ExchangeError(-1121, "Invalid symbol.")
        return spec

    def symbols(self, market: Market) -> list[SymbolSpec]:
        """The market's symbols, sorted."""
        return sorted((s for (m, _), s in self.specs.items() if m == market),
                      key=lambda s: s.symbol)

    def quote(self, spec: SymbolSpec) -> tuple[Decimal, Decimal] | None:
        """``(bid, ask)`` on the tick grid (bid down, ask up), or None."""
        q = self.prices.quote(spec.symbol)
        if q is None:
            return None
        # float() first: a source may hand numpy scalars, whose repr is not a number
        bid = Decimal(repr(float(q[0]))).quantize(spec.tick_size, rounding=ROUND_FLOOR)
        ask = Decimal(repr(float(q[1]))).quantize(spec.tick_size, rounding=ROUND_CEILING)
        return max(bid, spec.tick_size), max(ask, bid)

    def mark(self, spec: SymbolSpec) -> Decimal | None:
        """Mid price (futures mark price), None without a quote."""
        q = self.quote(spec)
        return None if q is None else (q[0] + q[1]) / 2

    def _account(self, key: str) -> _Account:
        acct = self.accounts.get(key)
        if acct is None:
            raise ExchangeError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return acct

    def find(self, key: str, market: Market, symbol: str, client_order_id: str | None,
             order_id: int | None) -> Order:
        """An order by client id (the newest with it) or exchange id; -2013 if none."""
        self.spec(market, symbol)
        oid = order_id if client_order_id is None else \
            self._by_client.get((key, market, symbol.upper(), client_order_id))
        order = self.orders.get(oid) if oid is not None else None
        if order is None or order.account != key or order.market != market or \
                order.symbol != symbol.upper():
            raise ExchangeError(-2013, "Order does not exist.")
        return order

    def open_orders(self, key: str, market: Market, symbol: str | None) -> list[Order]:
        """The account's open orders on ``symbol`` (all symbols if None)."""
        if symbol is not None:
            self.spec(market, symbol)
        return [o for o in self.orders.values() if o.account == key and o.market == market
                and o.is_open and (symbol is None or o.symbol == symbol.upper())]

    # ---- orders
    def place(self, key: str, market: Market, req: NewOrder, now_ms: int,
              partial_fraction: float | None = None) -> list[OrderUpdate]:
        """Check ``req`` (module docstring), then place and match it. Returns the order's
        updates (NEW, then each TRADE, then EXPIRED for an IOC remainder); the last one
        holds the order's state. With ``partial_fraction`` only that share fills now: a
        MARKET order stays PARTIALLY_FILLED for ``fill_rest``, a LIMIT expires the rest.

        Raises:
            ExchangeError: the refusal (nothing placed).
        """
        acct = self._account(key)
        spec = self.spec(market, req.symbol)
        cid = req.client_order_id or _random_id()
        self._check_form(market, spec, req)
        quote = self.quote(spec)
        if quote is None:
            raise ExchangeError(-1013, "Market is closed.")
        touch = quote[1] if req.side == "BUY" else quote[0]
        marketable = req.type == "MARKET" or (
            req.price is not None and (touch <= req.price if req.side == "BUY"
                                       else touch >= req.price))
        notional_price = touch if req.type == "MARKET" else req.price or touch
        self._check_notional(market, spec, req, notional_price)
        key_c = (key, market, spec.symbol, cid)
        prev = self.orders.get(self._by_client.get(key_c, -1))
        if prev is not None and prev.is_open:
            raise (ExchangeError(-2010, "Duplicate order sent.") if market == "spot" else
                   ExchangeError(-4116, "ClientOrderId is duplicated."))
        if market == "spot":
            self._check_spot_balance(acct, spec, req, notional_price)
        else:
            self._check_futures(acct, spec, req, notional_price)
        order = Order(market=market, account=key, order_id=self._next_order_id,
                      client_order_id=cid, symbol=spec.symbol, side=req.side, type=req.type,
                      time_in_force="GTC" if req.type == "MARKET" else "IOC",
                      orig_qty=req.quantity, price=req.price or ZERO,
                      reduce_only=req.reduce_only, time_ms=now_ms, update_ms=now_ms)
        self._next_order_id += 1
        self.orders[order.order_id] = order
        self._by_client[key_c] = order.order_id
        updates = [OrderUpdate(order, "NEW")]
        if not marketable:
            updates.append(OrderUpdate(self._set(replace(order, status="EXPIRED")), "EXPIRED"))
            return updates
        qty = req.quantity
        if partial_fraction is not None:
            part = _floor_to(qty * Decimal(repr(partial_fraction)), spec.step_size)
            qty = part if ZERO < part < qty else qty
        updates.append(self._trade(acct, order, spec, qty, touch, now_ms))
        rest = updates[-1].order
        if rest.is_open and req.type == "LIMIT":
            updates.append(OrderUpdate(self._set(replace(rest, status="EXPIRED")), "EXPIRED"))
        return updates

    def fill_rest(self, order_id: int, now_ms: int) -> list[OrderUpdate]:
        """The second trade of a partially filled market order at the price now; the rest
        expires if there is no price or the account can no longer pay for it. Nothing if
        the order is no longer open (canceled meanwhile)."""
        order = self.orders[order_id]
        if not order.is_open:
            return []
        acct = self.accounts[order.account]
        spec = self.spec(order.market, order.symbol)
        qty = order.orig_qty - order.executed_qty
        quote = self.quote(spec)
        try:
            if quote is None:
                raise ExchangeError(-1013, "Market is closed.")
            touch = quote[1] if order.side == "BUY" else quote[0]
            req = NewOrder(order.symbol, order.side, order.type, qty,
                           reduce_only=order.reduce_only)
            if order.market == "spot":
                self._check_spot_balance(acct, spec, req, touch)
            else:
                self._check_futures(acct, spec, req, touch)
        except ExchangeError:
            return [OrderUpdate(self._set(replace(order, status="EXPIRED", update_ms=now_ms)),
                                "EXPIRED")]
        return [self._trade(acct, order, spec, qty, touch, now_ms)]

    def cancel(self, key: str, market: Market, symbol: str, client_order_id: str | None,
               order_id: int | None, now_ms: int) -> Order:
        """Cancel an open order; -2011 if unknown or already final."""
        try:
            order = self.find(key, market, symbol, client_order_id, order_id)
        except ExchangeError as exc:
            raise ExchangeError(-2011, "Unknown order sent.") from exc
        if not order.is_open:
            raise ExchangeError(-2011, "Unknown order sent.")
        return self._set(replace(order, status="CANCELED", update_ms=now_ms))

    def _set(self, order: Order) -> Order:
        self.orders[order.order_id] = order
        return order

    def _check_form(self, market: Market, spec: SymbolSpec, req: NewOrder) -> None:
        spot = market == "spot"
        if req.type == "LIMIT":
            price = req.price
            if price is None or price <= 0:
                raise ExchangeError(-1102, "Mandatory parameter 'price' was not sent, was "
                                    "empty/null, or malformed.")
            if req.time_in_force is None:
                raise ExchangeError(-1102, "Mandatory parameter 'timeInForce' was not sent, "
                                    "was empty/null, or malformed.")
            if req.time_in_force != "IOC":
                # the simulator supports immediate-or-cancel limits only (nothing rests)
                raise ExchangeError(-1115, "Invalid timeInForce.")
            if price < spec.min_price:
                raise (ExchangeError(-1013, "Filter failure: PRICE_FILTER") if spot else
                       ExchangeError(-4013, "Price less than min price."))
            if price > spec.max_price:
                raise (ExchangeError(-1013, "Filter failure: PRICE_FILTER") if spot else
                       ExchangeError(-4016, f"Limit price can't be higher than "
                                            f"{spec.max_price.normalize():f}."))
            if not _on_grid(price, spec.tick_size):
                raise (ExchangeError(-1013, "Filter failure: PRICE_FILTER") if spot else
                       ExchangeError(-4014, "Price not increased by tick size."))
        qty = req.quantity
        lot = "MARKET_LOT_SIZE" if req.type == "MARKET" else "LOT_SIZE"
        max_qty = spec.market_max_qty if req.type == "MARKET" else spec.max_qty
        if spot:
            if qty <= 0 or qty < spec.min_qty or not _on_grid(qty, spec.step_size):
                raise ExchangeError(-1013, "Filter failure: LOT_SIZE")
            if qty > max_qty:
                raise ExchangeError(-1013, f"Filter failure: {lot}")
            return
        if qty <= 0:
            raise ExchangeError(-4003, "Quantity less than or equal to zero.")
        if not _on_grid(qty, spec.step_size):
            raise ExchangeError(-1111, "Precision is over the maximum defined for this asset.")
        if qty < spec.min_qty:
            raise ExchangeError(-4004, "Quantity less than min quantity.")
        if qty > max_qty:
            raise ExchangeError(-4005, "Quantity greater than max quantity.")

    def _check_notional(self, market: Market, spec: SymbolSpec, req: NewOrder,
                        price: Decimal) -> None:
        if req.quantity * price >= spec.min_notional:
            return
        if market == "spot":
            raise ExchangeError(-1013, "Filter failure: NOTIONAL")
        if not req.reduce_only:
            raise ExchangeError(-4164, f"Order's notional must be no smaller than "
                                f"{spec.min_notional.normalize():f} (unless you choose "
                                "reduce only).")

    def _check_spot_balance(self, acct: _Account, spec: SymbolSpec, req: NewOrder,
                            price: Decimal) -> None:
        need, asset = (req.quantity * price, spec.quote) if req.side == "BUY" else \
            (req.quantity, spec.base)
        if acct.spot.get(asset, ZERO) < need:
            raise ExchangeError(-2010, "Account has insufficient balance for requested "
                                "action.")

    def leverage(self, acct: _Account, symbol: str) -> int:
        """The symbol's leverage for this account."""
        return acct.leverage.get(symbol, self.default_leverage)

    def unrealized(self, acct: _Account) -> Decimal:
        """Unrealized PnL of all futures positions at the mark (USDT)."""
        total = ZERO
        for sym, pos in acct.positions.items():
            mark = self.mark(self.spec("futures", sym)) if pos.amount else None
            if mark is not None:
                total += (mark - pos.entry) * pos.amount
        return total

    def initial_margin(self, acct: _Account, override: tuple[str, Decimal, Decimal] | None
                       = None) -> Decimal:
        """Initial margin of all positions at the mark (``override``: one symbol's
        amount and price instead)."""
        total = ZERO
        syms = set(acct.positions) | ({override[0]} if override else set())
        for sym in syms:
            if override is not None and sym == override[0]:
                amount, price = override[1], override[2]
            else:
                amount = acct.positions[sym].amount
                price = self.mark(self.spec("futures", sym)) or acct.positions[sym].entry
            total += abs(amount) * price / self.leverage(acct, sym)
        return total

    def available(self, acct: _Account) -> Decimal:
        """Futures available balance: wallet + unrealized PnL - initial margin (USDT)."""
        return acct.wallet + self.unrealized(acct) - self.initial_margin(acct)

    def _check_futures(self, acct: _Account, spec: SymbolSpec, req: NewOrder,
                       price: Decimal) -> None:
        pos = acct.positions.get(spec.symbol, Position()).amount
        signed = req.quantity if req.side == "BUY" else -req.quantity
        new = pos + signed
        if req.reduce_only and (pos == 0 or (pos > 0) == (signed > 0) or abs(signed) >
                                abs(pos)):
            raise ExchangeError(-2022, "ReduceOnly Order is rejected.")
        if abs(new) <= abs(pos) and (new == 0 or (new > 0) == (pos > 0)):
            return  # only shrinks the position
        fee = req.quantity * price * self.fees.futures
        need = self.initial_margin(acct, (spec.symbol, new, price))
        if need > acct.wallet + self.unrealized(acct) - fee:
            raise ExchangeError(-2019, "Margin is insufficient.")

    def _trade(self, acct: _Account, order: Order, spec: SymbolSpec, qty: Decimal,
               price: Decimal, now_ms: int) -> OrderUpdate:
        quote_qty = qty * price
        realized = ZERO
        if order.market == "spot":
            base, quote = spec.base, spec.quote
            if order.side == "BUY":
                commission = (qty * self.fees.spot).quantize(_EIGHT, rounding=ROUND_DOWN)
                asset = base
                acct.spot[quote] = acct.spot.get(quote, ZERO) - quote_qty
                acct.spot[base] = acct.spot.get(base, ZERO) + qty - commission
            else:
                commission = (quote_qty * self.fees.spot).quantize(_EIGHT, rounding=ROUND_DOWN)
                asset = quote
                acct.spot[base] = acct.spot.get(base, ZERO) - qty
                acct.spot[quote] = acct.spot.get(quote, ZERO) + quote_qty - commission
        else:
            commission = (quote_qty * self.fees.futures).quantize(_EIGHT, rounding=ROUND_DOWN)
            asset = spec.quote
            realized = self._move_position(acct, spec.symbol,
                                           qty if order.side == "BUY" else -qty, price,
                                           now_ms)
            acct.wallet += realized - commission
        acct.update_ms = now_ms
        fill = Fill(self._next_trade_id, price, qty, commission, asset, realized, now_ms)
        self._next_trade_id += 1
        executed = order.executed_qty + qty
        status = "FILLED" if executed >= order.orig_qty else "PARTIALLY_FILLED"
        done = self._set(replace(order, executed_qty=executed,
                                 cum_quote=order.cum_quote + quote_qty, status=status,
                                 update_ms=now_ms, fills=(*order.fills, fill)))
        return OrderUpdate(done, "TRADE", fill)

    def _move_position(self, acct: _Account, symbol: str, signed: Decimal, price: Decimal,
                       now_ms: int) -> Decimal:
        """Apply a signed trade to the one-way position; the PnL it realizes (USDT)."""
        pos = acct.positions.get(symbol, Position())
        amount, entry, realized = pos.amount, pos.entry, ZERO
        if amount == 0 or (amount > 0) == (signed > 0):
            new = amount + signed
            entry = (abs(amount) * entry + abs(signed) * price) / abs(new)
        else:
            closing = min(abs(signed), abs(amount))
            realized = closing * (price - entry) * (1 if amount > 0 else -1)
            new = amount + signed
            if new == 0:
                entry = ZERO
            elif (new > 0) != (amount > 0):
                entry = price
        acct.positions[symbol] = Position(new, entry, pos.realized + realized, now_ms)
        return realized

    # ---- behind the trader's back
    def adjust_balance(self, key: str, asset: str, delta: Decimal, now_ms: int) -> Decimal:
        """Add ``delta`` to a spot balance (a deposit or withdrawal); the new balance."""
        acct = self._account(key)
        a = asset.upper()
        new = acct.spot.get(a, ZERO) + delta
        if new < 0:
            raise ConfigError(f"adjust: {a} balance would become negative ({new})")
        acct.spot[a] = new
        acct.update_ms = now_ms
        return new

    def adjust_position(self, key: str, symbol: str, delta: Decimal, now_ms: int) -> Position:
        """Move a futures position by ``delta`` base units at the current mark, without
        commission (a trade the trader did not make); the new position."""
        acct = self._account(key)
        spec = self.spec("futures", symbol)
        mark = self.mark(spec)
        if mark is None:
            raise ConfigError(f"adjust: no price for {spec.symbol}")
        acct.wallet += self._move_position(acct, spec.symbol, delta, mark, now_ms)
        acct.update_ms = now_ms
        return acct.positions[spec.symbol]

    # ---- state
    def state(self) -> dict[str, Any]:
        """Every account's balances, positions and orders (decimals as strings; no
        secrets), for ``/sim/state``."""
        out: dict[str, Any] = {}
        for key, acct in self.accounts.items():
            out[key] = {
                "spot": {a: str(v) for a, v in sorted(acct.spot.items())},
                "futures_wallet": str(acct.wallet),
                "positions": {s: {"amount": str(p.amount), "entry": str(p.entry),
                                  "realized": str(p.realized)}
                              for s, p in sorted(acct.positions.items())},
                "orders": [_order_state(o) for o in self.orders.values() if o.account == key],
            }
        return out


def _order_state(o: Order) -> dict[str, Any]:
    return {"market": o.market, "orderId": o.order_id, "clientOrderId": o.client_order_id,
            "symbol": o.symbol, "side": o.side, "type": o.type, "status": o.status,
            "origQty": str(o.orig_qty), "executedQty": str(o.executed_qty),
            "cumQuote": str(o.cum_quote), "price": str(o.price),
            "fills": [{"tradeId": f.trade_id, "price": str(f.price), "qty": str(f.qty),
                       "commission": str(f.commission), "commissionAsset": f.commission_asset,
                       "realizedPnl": str(f.realized_pnl)} for f in o.fills]}
