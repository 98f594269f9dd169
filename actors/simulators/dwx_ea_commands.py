"""What the simulated DWX EA does with each command, with the real EA's checks and texts.

Public protocol: ``mql/DWX_Server_MT4.mq4`` in github.com/darwinex/dwxconnect (functions
``OpenOrder``, ``CloseOrder``, ``CloseAllOrders``, ``CloseOrdersBySymbol``,
``CloseOrdersByMagic``, ``ModifyOrder``, ``SubscribeSymbols``, ``SubscribeSymbolsBarData``,
``GetHistoricData``, ``GetHistoricTrades``). The checks run in the EA's order and answer with
its INFO/ERROR texts; MQL's lenient parsing is kept (``StringToDouble("x")`` is 0, so a bad
number becomes a zero that a later check refuses) and so are its quirks: ``CLOSE_ALL_ORDERS``
with nothing open answers both "No orders to close." and "Successfully closed 0 orders.",
a subscription list keeps an empty slot where a symbol failed, the history answer lists the
initial deposit as type "unknown". The trade server itself is ``dwx_ea_broker.Broker``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raytrade.actors.simulators.dwx_ea_bars import TIMEFRAME_SECONDS
from raytrade.actors.simulators.dwx_ea_broker import MARKET, PENDING, MtError, SimOrder
from raytrade.actors.simulators.dwx_ea_format import (
    OrderLine,
    error_description,
    historic_data_text,
    history_text,
)

if TYPE_CHECKING:
    from raytrade.actors.simulators.dwx_ea import SimulatedEa

_FLOAT = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INT = re.compile(r"\s*[+-]?\d+")


def atof(text: str) -> float:
    """MQL ``StringToDouble``: the leading number of ``text``, 0 when there is none."""
    m = _FLOAT.match(text)
    return float(m.group(0)) if m else 0.0


def atoi(text: str) -> int:
    """MQL ``StringToInteger``/``(int)string``: the leading integer, 0 when none (int32)."""
    m = _INT.match(text)
    value = int(m.group(0)) if m else 0
    return (value + 2**31) % 2**32 - 2**31


def split(text: str, sep: str = ",") -> list[str]:
    """MQL ``StringSplit``: no parts for an empty string, else every part, empty ones too."""
    return text.split(sep) if text else []


def mt_type(order: SimOrder) -> str:
    """The EA's ``OrderTypeToString``: balance operations print ``unknown``."""
    return order.type if order.type in MARKET + PENDING else "unknown"


def order_line(o: SimOrder, pnl: float) -> OrderLine:
    """An order as the EA prints it."""
    return OrderLine(o.ticket, o.magic, o.symbol, o.lots, mt_type(o), o.open_price,
                     o.open_time, o.sl, o.tp, pnl, o.comment, o.close_price, o.close_time,
                     o.commission)


def _resized(items: list[Any], size: int, fill: Any) -> list[Any]:
    return items[:size] + [fill] * (size - len(items))


def open_order(ea: SimulatedEa, content: str) -> None:
    """``OPEN_ORDER|symbol,type,lots,price,sl,tp,magic,comment,expiration``."""
    data, spec, broker = split(content), ea.spec, ea.broker
    if len(data) != 9:
        ea.send_error("OPEN_ORDER_WRONG_FORMAT", f"Wrong format for OPEN_ORDER command: {content}")
        return
    count = len(broker.orders)
    if count >= ea.settings.maximum_orders:
        ea.send_error("OPEN_ORDER_MAXIMUM_NUMBER", f"Number of orders ({count}) larger than or "
                      f"equal to MaximumOrders ({ea.settings.maximum_orders}).")
        return
    symbol, type_ = data[0], data[1]
    known = symbol == spec.symbol
    digits = spec.digits if known else 0
    lots = round(atof(data[2]), ea.settings.lot_size_digits)
    price, sl, tp = (round(atof(x), digits) for x in data[3:6])
    magic, comment, expiration = atoi(data[6]), data[7], atoi(data[8])
    if price == 0 and type_ == "buy" and known:
        price = broker.ask
    if price == 0 and type_ == "sell" and known:
        price = broker.bid
    if type_ not in MARKET + PENDING:
        ea.send_error("OPEN_ORDER_TYPE", f"Order type could not be parsed: {-1:f} ({0:f})")
        return
    low, high = (spec.min_lot, spec.max_lot) if known else (0.0, 0.0)
    if lots < low or lots > high:
        ea.send_error("OPEN_ORDER_LOTSIZE_OUT_OF_RANGE",
                      f"Lot size out of range (min: {low:f}, max: {high:f}): {lots:f}")
        return
    if lots > ea.settings.maximum_lot_size:
        ea.send_error("OPEN_ORDER_LOTSIZE_TOO_LARGE", f"Lot size ({lots:.2f}) larger than "
                      f"MaximumLotSize ({ea.settings.maximum_lot_size:.2f}).")
        return
    if price == 0:
        ea.send_error("OPEN_ORDER_PRICE_ZERO", f"Price is zero: {content}")
        return
    try:
        order = ea.trade(broker.open, symbol, type_, lots, price, sl, tp, magic, comment,
                         expiration)
    except MtError as exc:
        ea.send_error("OPEN_ORDER", f"Could not open order: {error_description(exc.code)}")
        return
    ea.send_info(f"Successfully sent order {order.ticket}: {symbol}, {type_}, "
                 f"{lots:.{ea.settings.lot_size_digits}f}, {price:.{digits}f}")


def close_order(ea: SimulatedEa, content: str) -> None:
    """``CLOSE_ORDER|ticket,lots`` (lots 0: all)."""
    data = split(content)
    if len(data) != 2:
        ea.send_error("CLOSE_ORDER_WRONG_FORMAT",
                      f"Wrong format for CLOSE_ORDER command: {content}")
        return
    ticket, lots = atoi(data[0]), round(atof(data[1]), ea.settings.lot_size_digits)
    order = ea.broker.select(ticket)
    if order is None:
        ea.send_error("CLOSE_ORDER_SELECT_TICKET", f"Could not select order with ticket: {ticket}")
        return
    try:
        if order.type in MARKET:
            lots = lots or order.lots
            ea.trade(ea.broker.close, ticket, lots)
        else:
            ea.trade(ea.broker.delete, ticket)
    except MtError as exc:
        ea.send_error("CLOSE_ORDER_TICKET",
                      f"Could not close position {ticket}: {error_description(exc.code)}")
        return
    ea.send_info(f"Successfully closed order: {ticket}, {order.symbol}, "
                 f"{lots:.{ea.settings.lot_size_digits}f}")


def _close_where(ea: SimulatedEa, keep: Callable[[SimOrder], bool]) -> tuple[int, int]:
    closed = errors = 0
    for order in reversed(list(ea.broker.orders.values())):
        if not keep(order):
            continue
        try:
            if order.type in MARKET:
                ea.trade(ea.broker.close, order.ticket, order.lots)
            else:
                ea.trade(ea.broker.delete, order.ticket)
            closed += 1
        except MtError:
            errors += 1
    return closed, errors


def close_all_orders(ea: SimulatedEa, content: str) -> None:
    """``CLOSE_ALL_ORDERS|`` (the EA's missing ``else`` kept: module docstring)."""
    del content
    closed, errors = _close_where(ea, lambda o: True)
    if closed == 0 and errors == 0:
        ea.send_info("No orders to close.")
    if errors > 0:
        ea.send_error("CLOSE_ORDER_ALL", f"Error during closing of {errors} orders.")
    else:
        ea.send_info(f"Successfully closed {closed} orders.")


def _close_selected(ea: SimulatedEa, keep: Callable[[SimOrder], bool], error_code: str,
                    which: str) -> None:
    """Close the orders ``keep`` selects and report as the EA's by-symbol and by-magic
    handlers do: one message, naming the selection ``which`` ("with symbol EURUSD")."""
    closed, errors = _close_where(ea, keep)
    if closed == 0 and errors == 0:
        ea.send_info(f"No orders to close {which}.")
    elif errors > 0:
        ea.send_error(error_code, f"Error during closing of {errors} orders {which}.")
    else:
        ea.send_info(f"Successfully closed {closed} orders {which}.")


def close_orders_by_symbol(ea: SimulatedEa, symbol: str) -> None:
    """``CLOSE_ORDERS_BY_SYMBOL|symbol``."""
    _close_selected(ea, lambda o: o.symbol == symbol, "CLOSE_ORDER_SYMBOL",
                    f"with symbol {symbol}")


def close_orders_by_magic(ea: SimulatedEa, content: str) -> None:
    """``CLOSE_ORDERS_BY_MAGIC|magic``."""
    magic = atoi(content)
    _close_selected(ea, lambda o: o.magic == magic, "CLOSE_ORDER_MAGIC",
                    f"with magic {magic}")


def modify_order(ea: SimulatedEa, content: str) -> None:
    """``MODIFY_ORDER|ticket,lots,price,sl,tp,expiration`` (SL/TP 0 remove them)."""
    data, spec = split(content), ea.spec
    if len(data) != 6:
        ea.send_error("MODIFY_ORDER_WRONG_FORMAT",
                      f"Wrong format for MODIFY_ORDER command: {content}")
        return
    ticket = atoi(data[0])
    order = ea.broker.select(ticket)
    if order is None:
        ea.send_error("MODIFY_ORDER_SELECT_TICKET", f"Could not select order with ticket: {ticket}")
        return
    known = order.symbol == spec.symbol
    digits = spec.digits if known else 0
    lots = round(atof(data[1]), ea.settings.lot_size_digits)
    price, sl, tp = (round(atof(x), digits) for x in data[2:5])
    expiration = atoi(data[5])
    price = price or order.open_price
    low, high = (spec.min_lot, spec.max_lot) if known else (0.0, 0.0)
    if lots < low or lots > high:
        ea.send_error("MODIFY_ORDER_LOTSIZE_OUT_OF_RANGE",
                      f"Lot size out of range (min: {low:f}, max: {high:f}): {lots:f}")
        return
    try:
        ea.trade(ea.broker.modify, ticket, price, sl, tp, expiration)
    except MtError as exc:
        ea.send_error("MODIFY_ORDER",
                      f"Error in modifying order {ticket}: {error_description(exc.code)}")
        return
    ea.send_info(f"Successfully modified order {ticket}: {order.symbol}, {mt_type(order)}, "
                 f"{lots:.2f}, {price:.5f}, {sl:.5f}, {tp:.5f}")


def subscribe_symbols(ea: SimulatedEa, content: str) -> None:
    """``SUBSCRIBE_SYMBOLS|A,B`` (replaces the list; empty: unsubscribe)."""
    data = split(content)
    if not data:
        ea.market_symbols = []
        ea.send_info("Unsubscribed from all tick data because of empty symbol list.")
        return
    ok: list[str] = []
    bad: list[str] = []
    for i, symbol in enumerate(data):
        if symbol == ea.spec.symbol:
            ea.market_symbols = _resized(ea.market_symbols, i + 1, "")
            ea.market_symbols[i] = symbol
            ok.append(symbol)
        else:
            bad.append(symbol)
    if bad:
        ea.send_error("SUBSCRIBE_SYMBOL", "Could not subscribe to symbols: " + ", ".join(bad))
    if ok:
        ea.send_info("Successfully subscribed to: " + ", ".join(ok))


def subscribe_bar_data(ea: SimulatedEa, content: str) -> None:
    """``SUBSCRIBE_SYMBOLS_BAR_DATA|SYM,TF,SYM,TF`` (replaces the list; empty: unsubscribe);
    on success the bar data file is written at once."""
    data = split(content)
    if not data:
        ea.bar_instruments = []
        ea.send_info("Unsubscribed from all bar data because of empty symbol list.")
        return
    if len(data) < 2 or len(data) % 2:
        ea.send_error("BAR_DATA_WRONG_FORMAT", f"Wrong format to subscribe to bar data: {content}")
        return
    bad: list[str] = []
    for s in range(len(data) // 2):
        symbol, timeframe = data[2 * s], data[2 * s + 1]
        if symbol == ea.spec.symbol:
            ea.bar_instruments = _resized(ea.bar_instruments, s + 1, ["", "", 0])
            ea.bar_instruments[s] = [symbol, timeframe, 0]
        else:
            bad.append(f"'{symbol}'")
    if bad:
        ea.send_error("SUBSCRIBE_BAR_DATA",
                      "Could not subscribe to bar data for: [" + ", ".join(bad) + "]")
        return
    ea.send_info(f"Successfully subscribed to bar data: {content}")
    ea.check_bar_data()


def get_historic_data(ea: SimulatedEa, content: str) -> None:
    """``GET_HISTORIC_DATA|symbol,timeframe,start,end`` (server-time epoch seconds): every
    bar whose open time is in [start, end], the forming one included."""
    data = split(content)
    if len(data) != 4:
        ea.send_error("HISTORIC_DATA_WRONG_FORMAT",
                      f"Wrong format for GET_HISTORIC_DATA command: {content}")
        return
    symbol, timeframe, start, end = data[0], data[1], atoi(data[2]), atoi(data[3])
    if not symbol:
        ea.send_error("HISTORIC_DATA_SYMBOL", f"Could not read symbol: {content}")
        return
    if symbol != ea.spec.symbol:
        ea.send_error("HISTORIC_DATA_SELECT_SYMBOL", f"Could not select symbol {symbol} in "
                      f"market watch. Error: {error_description(4106)}")
    rates = ea.rates_between(start, end) if (
        symbol == ea.spec.symbol and timeframe == ea.bars.timeframe) else []
    if not rates:
        time.sleep(10 * 0.2)  # the EA retries CopyRates 10 times, 200 ms apart, blocking
        ea.send_error("HISTORIC_DATA", f"Could not get historic data for {symbol}_{timeframe}: "
                      f"{error_description(4073)}")
        return
    days = abs(rates[0].time - start) / 86400
    if (TIMEFRAME_SECONDS[timeframe] < TIMEFRAME_SECONDS["W1"] and days > 3) or (
            timeframe == "W1" and days > 10) or (timeframe == "MN1" and days > 33):
        ea.send_info(f"The difference between requested start date and returned start date is "
                     f"relatively large ({days:.1f} days). Maybe the data is not available on "
                     f"MetaTrader.")
    for _ in range(5):
        if ea.write_file("historic_data", historic_data_text(f"{symbol}_{timeframe}", rates)):
            break
        time.sleep(0.1)
    ea.send_info(f"Successfully read historic data for {symbol}_{timeframe}.")


def get_historic_trades(ea: SimulatedEa, content: str) -> None:
    """``GET_HISTORIC_TRADES|lookback_days``: history entries opened within the lookback."""
    days = atoi(content)
    if days <= 0:
        ea.send_error("HISTORIC_TRADES", f"Lookback days smaller or equal to zero: {content}")
        return
    since = ea.broker.server_time - days * 86400
    history = sorted(ea.broker.history.values(), key=lambda o: (o.close_time, o.ticket))
    lines = [order_line(o, o.profit) for o in reversed(history) if o.open_time >= since]
    for _ in range(5):
        if ea.write_file("historic_trades", history_text(lines)):
            break
        time.sleep(0.1)
    ea.send_info("Successfully read historic trades.")


HANDLERS: dict[str, Callable[[SimulatedEa, str], None]] = {
    "OPEN_ORDER": open_order, "CLOSE_ORDER": close_order, "CLOSE_ALL_ORDERS": close_all_orders,
    "CLOSE_ORDERS_BY_SYMBOL": close_orders_by_symbol,
    "CLOSE_ORDERS_BY_MAGIC": close_orders_by_magic, "MODIFY_ORDER": modify_order,
    "SUBSCRIBE_SYMBOLS": subscribe_symbols, "SUBSCRIBE_SYMBOLS_BAR_DATA": subscribe_bar_data,
    "GET_HISTORIC_TRADES": get_historic_trades, "GET_HISTORIC_DATA": get_historic_data}
"""Command name -> handler; RESET_COMMAND_IDS is the EA loop's own."""
