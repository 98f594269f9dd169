"""Binance's JSON for the loopback exchange's state: order objects, order responses
(ACK, RESULT, FULL), accounts, positions, ``exchangeInfo`` and the user-stream events,
with Binance's field names and string decimals (spot: 8 decimals; futures: the symbol's
price and quantity precision, amounts in USDT with 8).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from raytrade.actors.simulators.exchange_book import (
    ZERO,
    ExchangeBook,
    Order,
    OrderUpdate,
    SymbolSpec,
)

SPOT_RATE_LIMITS: list[dict[str, Any]] = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000}]
FUTURES_RATE_LIMITS: list[dict[str, Any]] = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300}]


def s8(d: Decimal) -> str:
    """Spot decimal: 8 places."""
    return f"{d:.8f}"


def fq(spec: SymbolSpec, d: Decimal) -> str:
    """Futures quantity at the symbol's quantity precision."""
    return f"{d:.{spec.quantity_precision}f}"


def fp(spec: SymbolSpec, d: Decimal) -> str:
    """Futures price at the symbol's price precision."""
    return f"{d:.{spec.price_precision}f}"


def _plain(d: Decimal) -> str:
    return f"{d.normalize():f}"


# ---- exchangeInfo
def spot_symbol_info(spec: SymbolSpec) -> dict[str, Any]:
    """One entry of spot ``exchangeInfo.symbols``."""
    return {
        "symbol": spec.symbol, "status": "TRADING", "baseAsset": spec.base,
        "baseAssetPrecision": 8, "quoteAsset": spec.quote, "quotePrecision": 8,
        "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT",
                       "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True,
        "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False, "permissions": [], "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": s8(spec.min_price),
             "maxPrice": s8(spec.max_price), "tickSize": s8(spec.tick_size)},
            {"filterType": "LOT_SIZE", "minQty": s8(spec.min_qty),
             "maxQty": s8(spec.max_qty), "stepSize": s8(spec.step_size)},
            {"filterType": "MARKET_LOT_SIZE", "minQty": s8(ZERO),
             "maxQty": s8(spec.market_max_qty), "stepSize": s8(ZERO)},
            {"filterType": "NOTIONAL", "minNotional": s8(spec.min_notional),
             "applyMinToMarket": True, "maxNotional": s8(Decimal(9_000_000)),
             "applyMaxToMarket": False, "avgPriceMins": 5}]}


def futures_symbol_info(spec: SymbolSpec) -> dict[str, Any]:
    """One entry of futures ``exchangeInfo.symbols``."""
    return {
        "symbol": spec.symbol, "pair": spec.symbol, "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
        "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
        "baseAsset": spec.base, "quoteAsset": spec.quote, "marginAsset": spec.quote,
        "pricePrecision": spec.price_precision,
        "quantityPrecision": spec.quantity_precision, "baseAssetPrecision": 8,
        "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [],
        "settlePlan": 0, "triggerProtect": "0.0500", "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": _plain(spec.min_price),
             "maxPrice": _plain(spec.max_price), "tickSize": _plain(spec.tick_size)},
            {"filterType": "LOT_SIZE", "minQty": _plain(spec.min_qty),
             "maxQty": _plain(spec.max_qty), "stepSize": _plain(spec.step_size)},
            {"filterType": "MARKET_LOT_SIZE", "minQty": _plain(spec.min_qty),
             "maxQty": _plain(spec.market_max_qty), "stepSize": _plain(spec.step_size)},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MIN_NOTIONAL", "notional": _plain(spec.min_notional)},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500",
             "multiplierDown": "0.9500", "multiplierDecimal": "4"}],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                       "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"]}


def exchange_info(book: ExchangeBook, market: str, specs: list[SymbolSpec],
                  now_ms: int) -> dict[str, Any]:
    """The whole ``exchangeInfo`` answer for ``specs``."""
    if market == "spot":
        return {"timezone": "UTC", "serverTime": now_ms, "rateLimits": SPOT_RATE_LIMITS,
                "exchangeFilters": [], "symbols": [spot_symbol_info(s) for s in specs]}
    assets = sorted({s.quote for s in specs})
    return {"timezone": "UTC", "serverTime": now_ms, "futuresType": "U_MARGINED",
            "rateLimits": FUTURES_RATE_LIMITS, "exchangeFilters": [],
            "assets": [{"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"}
                       for a in assets],
            "symbols": [futures_symbol_info(s) for s in specs]}


# ---- orders: spot
def spot_order(o: Order) -> dict[str, Any]:
    """``GET /api/v3/order`` (and ``openOrders``) object."""
    return {"symbol": o.symbol, "orderId": o.order_id, "orderListId": -1,
            "clientOrderId": o.client_order_id, "price": s8(o.price),
            "origQty": s8(o.orig_qty), "executedQty": s8(o.executed_qty),
            "cummulativeQuoteQty": s8(o.cum_quote), "status": o.status,
            "timeInForce": o.time_in_force, "type": o.type, "side": o.side,
            "stopPrice": s8(ZERO), "icebergQty": s8(ZERO), "time": o.time_ms,
            "updateTime": o.update_ms, "isWorking": True, "workingTime": o.time_ms,
            "origQuoteOrderQty": s8(ZERO), "selfTradePreventionMode": "EXPIRE_MAKER"}


def spot_new_order(o: Order, resp_type: str) -> dict[str, Any]:
    """``POST /api/v3/order`` answer in ``resp_type`` ACK, RESULT or FULL."""
    ack = {"symbol": o.symbol, "orderId": o.order_id, "orderListId": -1,
           "clientOrderId": o.client_order_id, "transactTime": o.time_ms}
    if resp_type == "ACK":
        return ack
    result = {**ack, "price": s8(o.price), "origQty": s8(o.orig_qty),
              "executedQty": s8(o.executed_qty), "origQuoteOrderQty": s8(ZERO),
              "cummulativeQuoteQty": s8(o.cum_quote), "status": o.status,
              "timeInForce": o.time_in_force, "type": o.type, "side": o.side,
              "workingTime": o.time_ms, "selfTradePreventionMode": "EXPIRE_MAKER"}
    if resp_type == "RESULT":
        return result
    return {**result, "fills": [{"price": s8(f.price), "qty": s8(f.qty),
                                 "commission": s8(f.commission),
                                 "commissionAsset": f.commission_asset,
                                 "tradeId": f.trade_id} for f in o.fills]}


def spot_canceled(o: Order, cancel_id: str, now_ms: int) -> dict[str, Any]:
    """``DELETE /api/v3/order`` answer."""
    return {"symbol": o.symbol, "origClientOrderId": o.client_order_id,
            "orderId": o.order_id, "orderListId": -1, "clientOrderId": cancel_id,
            "transactTime": now_ms, "price": s8(o.price), "origQty": s8(o.orig_qty),
            "executedQty": s8(o.executed_qty), "origQuoteOrderQty": s8(ZERO),
            "cummulativeQuoteQty": s8(o.cum_quote), "status": o.status,
            "timeInForce": o.time_in_force, "type": o.type, "side": o.side,
            "selfTradePreventionMode": "EXPIRE_MAKER"}


# ---- orders: futures
def futures_order(spec: SymbolSpec, o: Order, *, ack: bool = False,
                  with_time: bool = True) -> dict[str, Any]:
    """Futures order object (``GET``/``DELETE /fapi/v1/order``; ``POST`` with
    ``with_time=False``; an ACK answer shows the order as NEW, unfilled)."""
    executed, cum_quote, status = (ZERO, ZERO, "NEW") if ack else \
        (o.executed_qty, o.cum_quote, o.status)
    avg = cum_quote / executed if executed else ZERO
    out: dict[str, Any] = {
        "orderId": o.order_id, "symbol": o.symbol, "status": status,
        "clientOrderId": o.client_order_id, "price": fp(spec, o.price),
        "avgPrice": f"{avg:.8f}", "origQty": fq(spec, o.orig_qty),
        "executedQty": fq(spec, executed), "cumQty": fq(spec, executed),
        "cumQuote": f"{cum_quote:.8f}", "timeInForce": o.time_in_force, "type": o.type,
        "reduceOnly": o.reduce_only, "closePosition": False, "side": o.side,
        "positionSide": "BOTH", "stopPrice": "0", "workingType": "CONTRACT_PRICE",
        "priceProtect": False, "origType": o.type, "priceMatch": "NONE",
        "selfTradePreventionMode": "NONE", "goodTillDate": 0, "updateTime": o.update_ms}
    if with_time:
        out["time"] = o.time_ms
    return out


# ---- accounts
def spot_account(book: ExchangeBook, key: str, now_ms: int) -> dict[str, Any]:
    """``GET /api/v3/account``."""
    acct = book.accounts[key]
    bps = int(book.fees.spot * 10_000)
    return {"makerCommission": bps, "takerCommission": bps, "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {"maker": s8(book.fees.spot), "taker": s8(book.fees.spot),
                                "buyer": s8(ZERO), "seller": s8(ZERO)},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False,
            "updateTime": acct.update_ms or now_ms, "accountType": "SPOT",
            "balances": [{"asset": a, "free": s8(v), "locked": s8(ZERO)}
                         for a, v in sorted(acct.spot.items())],
            "permissions": ["SPOT"], "uid": 100_000 + list(book.accounts).index(key)}


def _position_numbers(book: ExchangeBook, spec: SymbolSpec, key: str
                      ) -> tuple[Decimal, Decimal, Decimal, Decimal, int]:
    acct = book.accounts[key]
    pos = acct.positions.get(spec.symbol)
    amount = pos.amount if pos else ZERO
    entry = pos.entry if pos else ZERO
    mark = book.mark(spec) or entry
    return amount, entry, mark, (mark - entry) * amount if amount else ZERO, \
        pos.update_ms if pos else 0


def futures_account(book: ExchangeBook, key: str, now_ms: int) -> dict[str, Any]:
    """``GET /fapi/v2/account`` (every futures symbol's position, zero or not)."""
    acct = book.accounts[key]
    upnl = book.unrealized(acct)
    margin = book.initial_margin(acct)
    available = acct.wallet + upnl - margin
    positions = []
    for spec in book.symbols("futures"):
        amount, entry, mark, up, upd = _position_numbers(book, spec, key)
        im = abs(amount) * mark / book.leverage(acct, spec.symbol)
        positions.append({
            "symbol": spec.symbol, "initialMargin": f"{im:.8f}", "maintMargin": "0",
            "unrealizedProfit": f"{up:.8f}", "positionInitialMargin": f"{im:.8f}",
            "openOrderInitialMargin": "0", "leverage": str(book.leverage(acct, spec.symbol)),
            "isolated": False, "entryPrice": f"{entry:.8f}", "breakEvenPrice": "0.0",
            "maxNotional": "1000000", "bidNotional": "0", "askNotional": "0",
            "positionSide": "BOTH", "positionAmt": fq(spec, amount),
            "notional": f"{amount * mark:.8f}", "isolatedWallet": "0", "updateTime": upd})
    wallet, upnl_s, margin_s = f"{acct.wallet:.8f}", f"{upnl:.8f}", f"{margin:.8f}"
    avail = f"{available:.8f}"
    quote = "USDT"
    return {"feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True,
            "feeBurn": False, "tradeGroupId": -1, "updateTime": 0, "multiAssetsMargin": False,
            "totalInitialMargin": margin_s, "totalMaintMargin": "0.00000000",
            "totalWalletBalance": wallet, "totalUnrealizedProfit": upnl_s,
            "totalMarginBalance": f"{acct.wallet + upnl:.8f}",
            "totalPositionInitialMargin": margin_s,
            "totalOpenOrderInitialMargin": "0.00000000", "totalCrossWalletBalance": wallet,
            "totalCrossUnPnl": upnl_s, "availableBalance": avail, "maxWithdrawAmount": avail,
            "assets": [{"asset": quote, "walletBalance": wallet, "unrealizedProfit": upnl_s,
                        "marginBalance": f"{acct.wallet + upnl:.8f}",
                        "maintMargin": "0.00000000", "initialMargin": margin_s,
                        "positionInitialMargin": margin_s,
                        "openOrderInitialMargin": "0.00000000",
                        "crossWalletBalance": wallet, "crossUnPnl": upnl_s,
                        "availableBalance": avail, "maxWithdrawAmount": avail,
                        "marginAvailable": True, "updateTime": acct.update_ms}],
            "positions": positions}


def position_risk(book: ExchangeBook, key: str, specs: list[SymbolSpec]) -> list[dict[str, Any]]:
    """``GET /fapi/v2/positionRisk``."""
    acct = book.accounts[key]
    out = []
    for spec in specs:
        amount, entry, mark, up, upd = _position_numbers(book, spec, key)
        lev = book.leverage(acct, spec.symbol)
        liq = entry * (1 - Decimal(1) / lev) if amount > 0 and lev > 1 else ZERO
        out.append({"symbol": spec.symbol, "positionAmt": fq(spec, amount),
                    "entryPrice": f"{entry:.8f}", "breakEvenPrice": "0.0",
                    "markPrice": f"{mark:.8f}", "unRealizedProfit": f"{up:.8f}",
                    "liquidationPrice": f"{liq:.8f}", "leverage": str(lev),
                    "maxNotionalValue": "1000000", "marginType": "cross",
                    "isolatedMargin": "0.00000000", "isAutoAddMargin": "false",
                    "positionSide": "BOTH", "notional": f"{amount * mark:.8f}",
                    "isolatedWallet": "0", "updateTime": upd})
    return out


# ---- user stream events
def execution_report(u: OrderUpdate, now_ms: int, event_no: int,
                     cancel_id: str = "") -> dict[str, Any]:
    """Spot ``executionReport`` for one order update (a CANCELED one carries the cancel
    request's id in ``c`` and the order's own in ``C``, as on Binance)."""
    o, f = u.order, u.fill
    canceled = u.execution == "CANCELED"
    return {"e": "executionReport", "E": now_ms, "s": o.symbol,
            "c": cancel_id if canceled else o.client_order_id, "S": o.side, "o": o.type,
            "f": o.time_in_force, "q": s8(o.orig_qty), "p": s8(o.price), "P": s8(ZERO),
            "F": s8(ZERO), "g": -1, "C": o.client_order_id if canceled else "",
            "x": u.execution, "X": o.status, "r": "NONE", "i": o.order_id,
            "l": s8(f.qty if f else ZERO), "z": s8(o.executed_qty),
            "L": s8(f.price if f else ZERO), "n": s8(f.commission if f else ZERO),
            "N": f.commission_asset if f else None, "T": f.time_ms if f else o.update_ms,
            "t": f.trade_id if f else -1, "v": 0, "I": event_no, "w": o.is_open,
            "m": False, "M": f is not None, "O": o.time_ms, "Z": s8(o.cum_quote),
            "Y": s8(f.qty * f.price if f else ZERO), "Q": s8(ZERO), "W": o.time_ms,
            "V": "EXPIRE_MAKER"}


def outbound_account_position(book: ExchangeBook, key: str, assets: list[str],
                              now_ms: int) -> dict[str, Any]:
    """Spot ``outboundAccountPosition`` for the assets that changed."""
    spot = book.accounts[key].spot
    return {"e": "outboundAccountPosition", "E": now_ms, "u": now_ms,
            "B": [{"a": a, "f": s8(spot.get(a, ZERO)), "l": s8(ZERO)} for a in assets]}


def order_trade_update(spec: SymbolSpec, u: OrderUpdate, now_ms: int) -> dict[str, Any]:
    """Futures ``ORDER_TRADE_UPDATE`` for one order update."""
    o, f = u.order, u.fill
    return {"e": "ORDER_TRADE_UPDATE", "E": now_ms, "T": f.time_ms if f else o.update_ms,
            "o": {"s": o.symbol, "c": o.client_order_id, "S": o.side, "o": o.type,
                  "f": o.time_in_force, "q": fq(spec, o.orig_qty), "p": fp(spec, o.price),
                  "ap": f"{o.avg_price:.8f}", "sp": "0", "x": u.execution, "X": o.status,
                  "i": o.order_id, "l": fq(spec, f.qty if f else ZERO),
                  "z": fq(spec, o.executed_qty), "L": fp(spec, f.price if f else ZERO),
                  "N": f.commission_asset if f else spec.quote,
                  "n": f"{f.commission if f else ZERO:.8f}",
                  "T": f.time_ms if f else o.update_ms, "t": f.trade_id if f else 0,
                  "b": "0", "a": "0", "m": False, "R": o.reduce_only, "wt": "CONTRACT_PRICE",
                  "ot": o.type, "ps": "BOTH", "cp": False,
                  "rp": f"{f.realized_pnl if f else ZERO:.8f}", "pP": False, "si": 0,
                  "ss": 0, "V": "NONE", "pm": "NONE", "gtd": 0}}


def account_update(book: ExchangeBook, key: str, symbol: str, reason: str,
                   now_ms: int) -> dict[str, Any]:
    """Futures ``ACCOUNT_UPDATE`` (wallet and the symbol's position) after ``reason``
    (``ORDER``, ``ADJUSTMENT``)."""
    acct = book.accounts[key]
    spec = book.spec("futures", symbol)
    amount, entry, _, up, _ = _position_numbers(book, spec, key)
    pos = acct.positions.get(spec.symbol)
    return {"e": "ACCOUNT_UPDATE", "E": now_ms, "T": now_ms,
            "a": {"m": reason,
                  "B": [{"a": spec.quote, "wb": f"{acct.wallet:.8f}",
                         "cw": f"{acct.wallet:.8f}", "bc": "0"}],
                  "P": [{"s": spec.symbol, "pa": fq(spec, amount), "ep": f"{entry:.8f}",
                         "cr": f"{pos.realized if pos else ZERO:.8f}", "up": f"{up:.8f}",
                         "mt": "cross", "iw": "0", "ps": "BOTH"}]}}
