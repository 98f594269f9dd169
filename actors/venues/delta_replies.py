"""Delta Exchange REST and private-stream replies parsed into the order side's plain data
(``execution.py``), every field checked (``replies.py``: a reply that is not what the
endpoint documents is a ``MalformedReplyError`` naming the endpoint and the field).

Formats: Delta's API documentation (https://docs.delta.exchange: "Products", "Orders",
"Positions", "Wallet", "Private Channels: Orders"). Sizes are integer numbers of
**contracts**; a contract is ``contract_value`` units of the underlying (``0.001`` BTC for
``BTCUSD``), so base quantity = contracts x contract_value. Prices and balances are
decimal strings; times are microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from raytrade.actors.venues.execution import (
    ExecutionReport,
    OrderSide,
    OrderState,
    OrderStatus,
    SymbolFilters,
)
from raytrade.actors.venues.replies import MalformedReplyError, decimal, integer, obj, text

SIDES: Mapping[str, OrderSide] = {"buy": "buy", "sell": "sell"}
ORDER_STATES = ("open", "pending", "closed", "cancelled")
"""Delta's order states: ``closed`` is fully filled, ``cancelled`` is cancelled with
``unfilled_size > 0`` (what was filled before stays filled)."""


@dataclass(frozen=True)
class Product:
    """The parts of a Delta product the order side uses."""

    id: int
    """Delta's product id (differs between testnet and mainnet)."""
    symbol: str
    contract_type: str
    notional_type: str
    """``vanilla`` (PnL in the settling asset) or ``inverse``."""
    contract_value: float
    """Base units per contract."""
    tick_size: float
    state: str
    trading_status: str
    underlying: str
    settling: str
    position_size_limit: int
    """Largest position in contracts (0: not stated)."""
    quanto: bool = False
    """``is_quanto``: PnL in another asset than the quote (not traded here)."""

    def filters(self) -> SymbolFilters:
        """The trading rules in base units: the quantity step and the minimum are one
        contract; the maximum is the position size limit."""
        limit = self.position_size_limit * self.contract_value
        return SymbolFilters(symbol=self.symbol, base_asset=self.underlying,
                             quote_asset=self.settling, tick_size=self.tick_size,
                             step_size=self.contract_value, min_qty=self.contract_value,
                             max_qty=limit if limit > 0 else math.inf, min_notional=0.0)

    def contracts(self, qty: float) -> int:
        """Whole contracts of a base quantity on the step grid; ``ValueError`` if ``qty`` is
        not a whole number of contracts."""
        n = round(qty / self.contract_value)
        if n < 1 or abs(n * self.contract_value - qty) > 1e-9 * max(qty, self.contract_value):
            raise ValueError(f"{qty} {self.underlying} is not a whole number of {self.symbol} "
                             f"contracts of {self.contract_value:g}")
        return n


def _asset(d: Mapping[str, Any], key: str, where: str) -> str:
    return text(obj(d.get(key), f"{where} {key}"), "symbol", f"{where} {key}")


def parse_product(data: Any, where: str) -> Product:
    """One product object (``GET /v2/products/{symbol}``)."""
    d = obj(data, where)
    product = Product(
        id=integer(d, "id", where), symbol=text(d, "symbol", where),
        contract_type=text(d, "contract_type", where),
        notional_type=text(d, "notional_type", where),
        contract_value=decimal(d, "contract_value", where),
        tick_size=decimal(d, "tick_size", where), state=text(d, "state", where),
        trading_status=text(d, "trading_status", where),
        underlying=_asset(d, "underlying_asset", where),
        settling=_asset(d, "settling_asset", where),
        position_size_limit=integer(d, "position_size_limit", where)
        if d.get("position_size_limit") is not None else 0,
        quanto=d.get("is_quanto") is True)
    for name in ("contract_value", "tick_size"):
        if not getattr(product, name) > 0:
            raise MalformedReplyError(f"{where}: field {name!r} is {getattr(product, name)}, "
                                      "must be > 0")
    return product


def _status(state: str, size: int, unfilled: int, where: str) -> OrderStatus:
    if state == "closed":
        return "filled"
    if state == "cancelled":
        return "canceled"
    if state in ("open", "pending"):
        return "partially_filled" if unfilled < size else "new"
    raise MalformedReplyError(f"{where}: field 'state' is {state!r}, not one of "
                              f"{', '.join(ORDER_STATES)}")


def _side(d: Mapping[str, Any], where: str) -> OrderSide:
    raw = d.get("side")
    if not isinstance(raw, str) or raw not in SIDES:
        raise MalformedReplyError(f"{where}: field 'side' is {raw!r}, not buy or sell")
    return SIDES[raw]


def _sizes(d: Mapping[str, Any], where: str) -> tuple[int, int]:
    size, unfilled = integer(d, "size", where), integer(d, "unfilled_size", where)
    if size < 1 or not 0 <= unfilled <= size:
        raise MalformedReplyError(f"{where}: size {size} and unfilled_size {unfilled} "
                                  "break 0 <= unfilled_size <= size, size >= 1")
    return size, unfilled


def _avg_price(d: Mapping[str, Any], filled: int, where: str) -> float | None:
    if filled == 0:
        return None
    avg = decimal(d, "average_fill_price", where)
    if avg <= 0:
        raise MalformedReplyError(f"{where}: {filled} contracts filled at average_fill_price "
                                  f"{d.get('average_fill_price')!r}")
    return avg


def _micros(d: Mapping[str, Any], key: str, where: str) -> int:
    """A time as ms from µs (an integer or a decimal string: the order channel, the
    simulator) or ISO 8601 (``"2021-04-29T07:25:59Z"``, as Delta's REST replies show
    times); 0 when absent."""
    value = d.get(key)
    if value is None:
        return 0
    if isinstance(value, str) and value.isdigit():
        return int(value) // 1000
    if isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            raise MalformedReplyError(f"{where}: field {key!r} is {value!r}, not a time in "
                                      "µs or ISO 8601") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return int(stamp.timestamp() * 1000)
    return integer(d, key, where) // 1000


def _client_id(d: Mapping[str, Any], order_id: int, cid_of: Callable[[str], str]) -> str:
    """The caller's id of an order; one placed without a client id (by hand, by another
    bot) is named by Delta's order id, so reconciliation can say which it is."""
    cid = d.get("client_order_id")
    return cid_of(cid) if isinstance(cid, str) and cid else f"delta-order-{order_id}"


def parse_order(data: Any, product: Product, cid_of: Callable[[str], str],
                where: str) -> OrderState:
    """An Order object (place, query, cancel, open orders). ``cid_of`` turns Delta's
    ``client_order_id`` back into the caller's id (``delta_orders.py`` maps long ids)."""
    d = obj(data, where)
    if d.get("product_id") != product.id:
        raise MalformedReplyError(f"{where}: field 'product_id' is {d.get('product_id')!r}, "
                                  f"asked about {product.symbol} ({product.id})")
    size, unfilled = _sizes(d, where)
    order_id = integer(d, "id", where)
    cv = product.contract_value
    return OrderState(
        client_order_id=_client_id(d, order_id, cid_of),
        venue_order_id=str(order_id), symbol=product.symbol,
        side=_side(d, where), status=_status(text(d, "state", where), size, unfilled, where),
        qty=size * cv, filled_qty=(size - unfilled) * cv,
        avg_price=_avg_price(d, size - unfilled, where),
        reason=str(d.get("cancellation_reason") or ""),
        update_ms=_micros(d, "updated_at", where) or _micros(d, "created_at", where))


def parse_orders(data: Any, product: Product, cid_of: Callable[[str], str],
                 where: str) -> list[OrderState]:
    """A list of Order objects."""
    if not isinstance(data, list):
        raise MalformedReplyError(f"{where}: expected a JSON array, got "
                                  f"{type(data).__name__}")
    return [parse_order(item, product, cid_of, f"{where} item {i}")
            for i, item in enumerate(data)]


def parse_position(data: Any, product: Product, where: str) -> float:
    """The signed position of ``GET /v2/positions?product_id=`` in base units."""
    d = obj(data, where)
    size = d.get("size", 0)
    if isinstance(size, bool) or not isinstance(size, int):
        raise MalformedReplyError(f"{where}: field 'size' is {size!r}, not an integer")
    return size * product.contract_value


def parse_wallet(envelope: Mapping[str, Any], where: str) -> tuple[dict[str, float],
                                                                   float | None]:
    """Asset -> ``balance`` (non-zero only) and the account's ``meta.net_equity`` (None
    when the reply does not state it) of ``GET /v2/wallet/balances``."""
    rows = envelope.get("result")
    if not isinstance(rows, list):
        raise MalformedReplyError(f"{where}: field 'result' is not an array")
    balances: dict[str, float] = {}
    for i, row in enumerate(rows):
        at = f"{where} result[{i}]"
        r = obj(row, at)
        value = decimal(r, "balance", at, signed=True)
        if value:
            balances[text(r, "asset_symbol", at)] = value
    meta = envelope.get("meta")
    equity = None
    if isinstance(meta, dict) and meta.get("net_equity") is not None:
        equity = decimal(meta, "net_equity", f"{where} meta", signed=True)
    return balances, equity


def parse_mark_price(data: Any, product: Product, where: str) -> float:
    """``mark_price`` of ``GET /v2/tickers/{symbol}``."""
    d = obj(data, where)
    if d.get("symbol") != product.symbol:
        raise MalformedReplyError(f"{where}: field 'symbol' is {d.get('symbol')!r}, asked "
                                  f"for {product.symbol!r}")
    price = decimal(d, "mark_price", where)
    if price <= 0:
        raise MalformedReplyError(f"{where}: field 'mark_price' is {price}, must be > 0")
    return price


def order_report(d: Mapping[str, Any], product: Product, cid_of: Callable[[str], str],
                 where: str) -> ExecutionReport:
    """An ``orders`` channel update (or a snapshot row: ``id`` for ``order_id``) as an
    ``ExecutionReport``. The channel states the order's cumulative fill (size minus
    unfilled size, at ``average_fill_price``) but no per-trade detail and no commission:
    the report carries ``last_qty`` 0 and ``trade_id`` -1, so the router books the new
    fill from the cumulative state with an estimated commission."""
    size, unfilled = _sizes(d, where)
    order_id = d.get("order_id", d.get("id"))
    if isinstance(order_id, bool) or not isinstance(order_id, int):
        raise MalformedReplyError(f"{where}: field 'order_id' is {order_id!r}, not an "
                                  "integer")
    cv = product.contract_value
    filled = size - unfilled
    avg = _avg_price(d, filled, where)
    return ExecutionReport(
        client_order_id=_client_id(d, order_id, cid_of),
        venue_order_id=str(order_id), symbol=product.symbol, side=_side(d, where),
        status=_status(text(d, "state", where), size, unfilled, where), qty=size * cv,
        last_qty=0.0, last_price=0.0, cum_qty=filled * cv,
        cum_quote=filled * cv * (avg or 0.0), commission=0.0, commission_asset="",
        trade_id=-1, event_ms=_micros(d, "timestamp", where),
        reason=str(d.get("cancellation_reason") or ""))
