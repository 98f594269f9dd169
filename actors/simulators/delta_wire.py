"""Delta's JSON for the loopback exchange: products, orders, positions, wallets and the
private socket's ``orders``, ``v2/user_trades`` and ``positions`` messages.

Shapes follow docs.delta.exchange (github.com/delta-exchange/slate
``delta-exchange-api-docs.md``): the ``Product``, ``Order``, ``Position`` and wallet
schemas of the REST API, "Private Channels" for the socket. Big decimals travel as strings,
integers (sizes, ids) unquoted, timestamps in microseconds (``created_at`` as a string of
them, as the docs' examples show).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from raytrade.actors.simulators.delta_book import DeltaBook, Event, Order
from raytrade.actors.simulators.delta_products import DeltaProduct


def dstr(d: Decimal | None) -> str | None:
    """A decimal as Delta writes it (plain notation), or None."""
    if d is None:
        return None
    s = format(d.normalize(), "f")
    return s if s != "-0" else "0"


def _asset(symbol: str, asset_id: int) -> dict[str, Any]:
    return {"id": asset_id, "symbol": symbol, "precision": 8, "deposit_status": "enabled",
            "withdrawal_status": "enabled", "base_withdrawal_fee": "0",
            "min_withdrawal_amount": "0"}


def product(p: DeltaProduct) -> dict[str, Any]:
    """One ``Product``."""
    usd = _asset("USD", 14)
    return {"id": p.id, "symbol": p.symbol, "description": f"{p.underlying} Perpetual "
            "futures, quoted, settled & margined in USD", "created_at": "2023-12-18T13:10:39Z",
            "updated_at": "2024-11-15T02:47:50Z", "settlement_time": None,
            "notional_type": "vanilla", "impact_size": 10000,
            "initial_margin": dstr(Decimal(100) / p.max_leverage),
            "maintenance_margin": dstr(Decimal(50) / p.max_leverage),
            "contract_value": dstr(p.contract_value), "contract_unit_currency": p.underlying,
            "tick_size": dstr(p.tick_size), "product_specs": {
                "funding_clamp_value": 0.05, "only_reduce_only_orders_allowed": False,
                "rate_exchange_interval": 28800},
            "state": "live", "trading_status": "operational",
            "max_leverage_notional": "100000", "default_leverage": str(p.default_leverage),
            "taker_commission_rate": dstr(p.taker_rate),
            "maker_commission_rate": dstr(p.maker_rate), "liquidation_penalty_factor": "0.5",
            "contract_type": "perpetual_futures",
            "position_size_limit": p.position_size_limit, "is_quanto": False,
            "funding_method": "mark_price", "price_band": "2.5",
            "underlying_asset": _asset(p.underlying, 1000 + p.id), "quoting_asset": usd,
            "settling_asset": usd, "spot_index": {"symbol": f".DE{p.underlying}USD"}}


def order(book: DeltaBook, o: Order) -> dict[str, Any]:
    """One ``Order`` (REST)."""
    return {"id": o.id, "user_id": book.user_ids[o.account], "size": o.size,
            "unfilled_size": o.unfilled_size, "side": o.side, "order_type": o.order_type,
            "limit_price": dstr(o.limit_price), "stop_order_type": None, "stop_price": None,
            "paid_commission": dstr(o.paid_commission),
            "commission": "0", "reduce_only": o.reduce_only,
            "client_order_id": o.client_order_id, "state": o.state,
            "created_at": str(o.created_us), "product_id": o.product.id,
            "product_symbol": o.product.symbol,
            "average_fill_price": dstr(o.average_fill_price),
            "time_in_force": o.time_in_force, "cancellation_reason": o.cancellation_reason}


def order_message(e: Event, seq_no: int, ts_us: int) -> dict[str, Any]:
    """The ``orders`` channel's update for ``e``."""
    o = e.order
    return {"type": "orders", "action": e.action, "reason": "fill" if e.fill else None,
            "symbol": o.product.symbol, "product_id": o.product.id, "order_id": o.id,
            "client_order_id": o.client_order_id, "size": o.size,
            "unfilled_size": o.unfilled_size,
            "average_fill_price": dstr(o.average_fill_price),
            "limit_price": dstr(o.limit_price), "side": o.side,
            "cancellation_reason": o.cancellation_reason, "stop_order_type": None,
            "bracket_order": False, "state": o.state, "seq_no": seq_no, "timestamp": ts_us}


def user_trade_message(book: DeltaBook, e: Event, seq: int) -> dict[str, Any]:
    """The ``v2/user_trades`` message of ``e``'s fill."""
    assert e.fill is not None
    o, f = e.order, e.fill
    return {"type": "v2/user_trades", "sy": o.product.symbol, "f": f.fill_id, "R": "normal",
            "u": book.user_ids[o.account], "o": o.id, "S": o.side, "s": f.size,
            "p": dstr(f.price), "po": f.position_after, "r": "taker",
            "c": o.client_order_id, "t": f.time_us, "se": seq}


def position_row(book: DeltaBook, key: str, p: DeltaProduct) -> dict[str, Any]:
    """One ``/v2/positions/margined`` row (also the positions snapshot's)."""
    pos = book.accounts[key].positions[p.id]
    mark = book.mark(p)
    upnl = Decimal(0)
    if pos.size and pos.entry_price is not None and mark is not None:
        upnl = (mark - pos.entry_price) * pos.size * p.contract_value
    return {"user_id": book.user_ids[key], "size": pos.size,
            "entry_price": dstr(pos.entry_price), "margin": dstr(book.position_margin(key, p)),
            "liquidation_price": None, "bankruptcy_price": None, "adl_level": 0,
            "product_id": p.id, "product_symbol": p.symbol, "symbol": p.symbol,
            "commission": "0", "realized_pnl": dstr(pos.realized_pnl),
            "realized_funding": "0", "unrealized_pnl": dstr(upnl),
            "mark_price": dstr(mark), "auto_topup": False}


def position_message(book: DeltaBook, key: str, p: DeltaProduct, action: str
                     ) -> dict[str, Any]:
    """The ``positions`` channel's update."""
    row = position_row(book, key, p)
    return {"type": "positions", "action": action, "reason": None, "symbol": p.symbol,
            "product_id": p.id, "size": row["size"], "margin": row["margin"],
            "entry_price": row["entry_price"], "liquidation_price": None,
            "bankruptcy_price": None, "commission": "0"}


def wallet(book: DeltaBook, key: str) -> dict[str, Any]:
    """``GET /v2/wallet/balances`` (the whole body: ``meta`` sits beside ``result``)."""
    acc = book.accounts[key]
    blocked = book.blocked_margin(key)
    available = acc.balance - blocked
    upnl = sum((Decimal(position_row(book, key, p)["unrealized_pnl"])
                for p in book.products.values()), Decimal(0))
    row = {"asset_id": 14, "asset_symbol": "USD", "available_balance": dstr(available),
           "available_balance_for_robo": dstr(available), "balance": dstr(acc.balance),
           "blocked_margin": dstr(blocked), "commission": "0", "cross_asset_liability": "0",
           "cross_commission": "0", "cross_locked_collateral": "0", "cross_order_margin": "0",
           "cross_position_margin": "0", "id": book.user_ids[key],
           "interest_credit": "0", "order_margin": "0", "pending_referral_bonus": "0",
           "pending_trading_fee_credit": "0", "portfolio_margin": "0",
           "position_margin": dstr(blocked), "trading_fee_credit": "0",
           "unvested_amount": "0", "user_id": book.user_ids[key]}
    return {"meta": {"net_equity": dstr(acc.balance + upnl), "robo_trading_equity": "0"},
            "result": [row], "success": True}
