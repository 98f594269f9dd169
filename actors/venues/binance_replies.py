"""Binance REST replies (spot ``/api/v3``, USD-M futures ``/fapi``) parsed into the order
side's plain data (``execution.py``), every field checked.

A reply that is not what the endpoint documents is a ``MalformedReplyError`` naming the
endpoint and the field: the order side never guesses a quantity or a status. Decimals
arrive as strings (``"0.00100000"``), ids and times as integers (ms UTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raytrade.actors.venues.execution import (
    MarketKind,
    OrderSide,
    OrderState,
    OrderStatus,
    SymbolFilters,
    Trade,
)
from raytrade.actors.venues.replies import MalformedReplyError
from raytrade.actors.venues.replies import decimal as decimal
from raytrade.actors.venues.replies import integer as integer
from raytrade.actors.venues.replies import items as items
from raytrade.actors.venues.replies import obj as obj
from raytrade.actors.venues.replies import text as text

STATUSES: Mapping[str, OrderStatus] = {
    "NEW": "new",
    "PENDING_NEW": "new",
    "PENDING_CANCEL": "new",  # still open until the cancel is done
    "PARTIALLY_FILLED": "partially_filled",
    "FILLED": "filled",
    "CANCELED": "canceled",
    "REJECTED": "rejected",
    "EXPIRED": "expired",
    "EXPIRED_IN_MATCH": "expired",  # self-trade prevention expired it
}
"""Binance order status -> ``OrderStatus``."""
SIDES: Mapping[str, OrderSide] = {"BUY": "buy", "SELL": "sell"}


def status(d: Mapping[str, Any], key: str, where: str) -> OrderStatus:
    """A Binance order status mapped to ``OrderStatus``."""
    raw = d.get(key)
    if not isinstance(raw, str) or raw not in STATUSES:
        raise MalformedReplyError(f"{where}: field {key!r} is {raw!r}, not a known order "
                                  f"status ({', '.join(STATUSES)})")
    return STATUSES[raw]


def side(d: Mapping[str, Any], key: str, where: str) -> OrderSide:
    """``BUY``/``SELL`` -> ``buy``/``sell``."""
    raw = d.get(key)
    if not isinstance(raw, str) or raw not in SIDES:
        raise MalformedReplyError(f"{where}: field {key!r} is {raw!r}, not BUY or SELL")
    return SIDES[raw]


def parse_order(data: Any, market: MarketKind, where: str) -> OrderState:
    """An order object (place with ``RESULT``/``FULL``, query, cancel, open orders).

    A spot cancel reply names the cancelled order ``origClientOrderId`` (its
    ``clientOrderId`` is the cancel request's own id); futures keep the order's id."""
    d = obj(data, where)
    cid = d.get("origClientOrderId") or text(d, "clientOrderId", where)
    if not isinstance(cid, str):
        raise MalformedReplyError(f"{where}: field 'origClientOrderId' is {cid!r}")
    qty = decimal(d, "origQty", where)
    filled = decimal(d, "executedQty", where)
    if filled > qty * (1 + 1e-9):
        raise MalformedReplyError(f"{where}: executedQty {filled} exceeds origQty {qty}")
    avg: float | None = None
    if market == "spot":
        quote = decimal(d, "cummulativeQuoteQty", where)
        if filled > 0:
            avg = quote / filled
    else:
        if filled > 0:
            avg = decimal(d, "avgPrice", where)
            if avg <= 0 and "cumQuote" in d:
                avg = decimal(d, "cumQuote", where) / filled
            if avg <= 0:
                raise MalformedReplyError(f"{where}: filled {filled} at avgPrice "
                                          f"{d.get('avgPrice')!r}")
    update = 0
    for key in ("updateTime", "transactTime", "workingTime", "time"):
        if key in d:
            update = integer(d, key, where)
            break
    trades: list[Trade] = []
    for i, fill in enumerate(d.get("fills") or ()):  # spot FULL replies
        f = obj(fill, f"{where} fills[{i}]")
        trades.append(Trade(integer(f, "tradeId", where), decimal(f, "qty", where),
                            decimal(f, "price", where), decimal(f, "commission", where),
                            text(f, "commissionAsset", where)))
    if trades and abs(sum(t.qty for t in trades) - filled) > 1e-9 * max(filled, 1.0):
        raise MalformedReplyError(f"{where}: fills add up to {sum(t.qty for t in trades)}, "
                                  f"executedQty is {filled}")
    return OrderState(client_order_id=cid, venue_order_id=str(integer(d, "orderId", where)),
                      symbol=text(d, "symbol", where), side=side(d, "side", where),
                      status=status(d, "status", where), qty=qty, filled_qty=filled,
                      avg_price=avg, update_ms=update, trades=tuple(trades))


def parse_orders(data: Any, market: MarketKind, where: str) -> list[OrderState]:
    """A list of order objects (``openOrders``)."""
    if not isinstance(data, list):
        raise MalformedReplyError(f"{where}: expected a JSON array, got "
                                  f"{type(data).__name__}")
    return [parse_order(item, market, f"{where} item {i}") for i, item in enumerate(data)]


@dataclass(frozen=True)
class ExchangeSymbol:
    """One ``exchangeInfo`` symbol: its filters and trading status."""

    filters: SymbolFilters
    status: str


def parse_symbols(data: Any, where: str) -> dict[str, ExchangeSymbol]:
    """Every symbol of an ``exchangeInfo`` reply (spot or futures)."""
    out = {}
    for at, e in items(obj(data, where), "symbols", where):
        name = text(e, "symbol", at)
        out[name] = ExchangeSymbol(parse_filters(e, f"{where} {name}"),
                                   text(e, "status", f"{where} {name}"))
    return out


def parse_filters(entry: Mapping[str, Any], where: str) -> SymbolFilters:
    """``SymbolFilters`` from one symbol's ``filters``: PRICE_FILTER (tick), LOT_SIZE and
    MARKET_LOT_SIZE (one step, minimum and maximum satisfying both, since the same
    quantity may go out as a market or a marketable limit order; a zero in
    MARKET_LOT_SIZE means "as LOT_SIZE"), and NOTIONAL (spot ``minNotional``) or
    MIN_NOTIONAL (spot ``minNotional``, futures ``notional``; none: 0)."""
    raw = entry.get("filters")
    if not isinstance(raw, list):
        raise MalformedReplyError(f"{where}: field 'filters' is not an array")
    by_type: dict[str, Mapping[str, Any]] = {}
    for i, f in enumerate(raw):
        fo = obj(f, f"{where} filters[{i}]")
        by_type[text(fo, "filterType", f"{where} filters[{i}]")] = fo
    for needed in ("PRICE_FILTER", "LOT_SIZE"):
        if needed not in by_type:
            raise MalformedReplyError(f"{where}: no {needed} filter")
    tick = decimal(by_type["PRICE_FILTER"], "tickSize", f"{where} PRICE_FILTER")
    lot = by_type["LOT_SIZE"]
    step = decimal(lot, "stepSize", f"{where} LOT_SIZE")
    min_qty = decimal(lot, "minQty", f"{where} LOT_SIZE")
    max_qty = decimal(lot, "maxQty", f"{where} LOT_SIZE")
    for name, value in (("PRICE_FILTER tickSize", tick), ("LOT_SIZE stepSize", step),
                        ("LOT_SIZE maxQty", max_qty)):
        if value <= 0:
            raise MalformedReplyError(f"{where}: {name} is {value}, must be > 0")
    if "MARKET_LOT_SIZE" in by_type:
        m = by_type["MARKET_LOT_SIZE"]
        m_step = decimal(m, "stepSize", f"{where} MARKET_LOT_SIZE")
        m_min = decimal(m, "minQty", f"{where} MARKET_LOT_SIZE")
        m_max = decimal(m, "maxQty", f"{where} MARKET_LOT_SIZE")
        step = max(step, m_step)
        min_qty = max(min_qty, m_min)
        if m_max > 0:
            max_qty = min(max_qty, m_max)
    min_notional = 0.0
    if "NOTIONAL" in by_type:
        min_notional = decimal(by_type["NOTIONAL"], "minNotional", f"{where} NOTIONAL")
    elif "MIN_NOTIONAL" in by_type:
        mn = by_type["MIN_NOTIONAL"]
        key = "notional" if "notional" in mn else "minNotional"
        min_notional = decimal(mn, key, f"{where} MIN_NOTIONAL")
    return SymbolFilters(symbol=text(entry, "symbol", where),
                         base_asset=text(entry, "baseAsset", where),
                         quote_asset=text(entry, "quoteAsset", where), tick_size=tick,
                         step_size=step, min_qty=min_qty, max_qty=max_qty,
                         min_notional=min_notional)


def parse_spot_balances(data: Any, where: str) -> dict[str, float]:
    """Asset -> free + locked, non-zero only, from ``GET /api/v3/account``."""
    out = {}
    for at, r in items(obj(data, where), "balances", where):
        total = decimal(r, "free", at) + decimal(r, "locked", at)
        if total:
            out[text(r, "asset", at)] = total
    return out


@dataclass(frozen=True)
class FuturesAccount:
    """The parts of ``GET /fapi/v2/account`` the snapshot needs."""

    wallet: float
    """``totalWalletBalance`` (margin asset)."""
    unrealized: float
    """``totalUnrealizedProfit``."""
    balances: dict[str, float]
    """Asset -> wallet balance, non-zero only."""
    positions: dict[str, float]
    """Symbol -> signed ``positionAmt`` (one-way mode), non-zero only."""


def parse_futures_account(data: Any, where: str) -> FuturesAccount:
    """``GET /fapi/v2/account``."""
    d = obj(data, where)
    balances: dict[str, float] = {}
    positions: dict[str, float] = {}
    for key in ("assets", "positions"):
        if not isinstance(d.get(key), list):
            raise MalformedReplyError(f"{where}: field {key!r} is not an array")
    for at, r in items(d, "assets", where):
        wb = decimal(r, "walletBalance", at, signed=True)
        if wb:
            balances[text(r, "asset", at)] = wb
    for at, r in items(d, "positions", where):
        amt = decimal(r, "positionAmt", at, signed=True)
        if amt:
            sym = text(r, "symbol", at)
            positions[sym] = positions.get(sym, 0.0) + amt
    return FuturesAccount(decimal(d, "totalWalletBalance", where, signed=True),
                          decimal(d, "totalUnrealizedProfit", where, signed=True),
                          balances, positions)


def parse_price(data: Any, key: str, symbol: str, where: str) -> float:
    """A positive price field of a ticker/premium-index reply for ``symbol``."""
    d = obj(data, where)
    if d.get("symbol") != symbol:
        raise MalformedReplyError(f"{where}: field 'symbol' is {d.get('symbol')!r}, asked "
                                  f"for {symbol!r}")
    price = decimal(d, key, where)
    if price <= 0:
        raise MalformedReplyError(f"{where}: field {key!r} is {price}, must be > 0")
    return price
