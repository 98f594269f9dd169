"""What the DWX Connect EA writes, as validated records (formats: ``dwx_files.py`` and the
EA sources ``mql/DWX_Server_MT4.mq4`` / ``mql/DWX_Server_MT5.mq5`` of
``github.com/darwinex/dwxconnect``).

- ``DWX_Orders.txt``: ``{"account_info": {"name", "number", "currency", "leverage",
  "free_margin", "balance", "equity"}, "orders": {"<ticket>": {"magic", "symbol", "lots",
  "type", "open_price", "open_time", "SL", "TP", "pnl", "commission", "swap",
  "comment"}}}`` -> ``OrdersFile`` (``AccountInfo`` and ``Ticket``s);
- ``DWX_Messages.txt``: ``{"<millis>": {"type": "INFO", "time", "message"} | {"type":
  "ERROR", "time", "error_type", "description"}}`` -> ``Message``s, oldest first;
- ``DWX_Market_Data.txt``: ``{"EURUSD": {"bid", "ask", "tick_value"}}`` -> ``Tick``s;
- ``DWX_Bar_Data.txt``: ``{"EURUSD_H1": {"time", "open", "high", "low", "close",
  "tick_volume"}}`` (the last *closed* bar: the EA copies rates from position 1) and
  ``DWX_Historic_Data.txt``: ``{"EURUSD_H1": {"<time>": {"open", ..., "tick_volume"}}}``
  -> ``Bar``s;
- ``DWX_Historic_Trades.txt``: ``{"<ticket>": {... as an order, plus "close_time",
  "close_price"}}`` -> ``ClosedTrade``s.

Times in these files are MetaTrader *server* time, written ``YYYY.MM.DD HH:MM`` (bars) or
``YYYY.MM.DD HH:MM:SS`` (orders), with no zone: ``server_time_ms`` converts them with the
broker's offset from UTC (``server_utc_offset_s``; many brokers run at UTC+2, UTC+3 in
summer). Message times are the EA's ``TimeGMT()`` (UTC). A record that fails validation
raises ``MessageRejectedError`` naming the file's key and the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from raytrade.actors.events import MessageRejectedError
from raytrade.actors.venues.schema import check_ohlc, field, number, text
from raytrade.envs.bars import Bar

MARKET_TYPES = ("buy", "sell")
PENDING_TYPES = ("buylimit", "selllimit", "buystop", "sellstop")


def server_time_ms(value: str, offset_s: int, where: str) -> int:
    """A server-time string as ms UTC (module docstring)."""
    for fmt in ("%Y.%m.%d %H:%M:%S", "%Y.%m.%d %H:%M"):
        try:
            naive = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return int(naive.replace(tzinfo=UTC).timestamp()) * 1000 - offset_s * 1000
    raise MessageRejectedError(f"{where}: time {value!r} is not 'YYYY.MM.DD HH:MM[:SS]'",
                               value)


def format_server_time(ms: int, offset_s: int) -> str:
    """ms UTC as the EA's ``YYYY.MM.DD HH:MM`` in server time (the simulator's side)."""
    return datetime.fromtimestamp(ms / 1000 + offset_s, UTC).strftime("%Y.%m.%d %H:%M")


def _signed(obj: Mapping[str, Any], key: str, where: str, default: float = 0.0) -> float:
    if key not in obj:
        return default
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise MessageRejectedError(f"{where}: field {key!r} is {value!r}, not a number", "")
    try:
        x = float(value)
    except ValueError:
        raise MessageRejectedError(f"{where}: field {key!r} is {value!r}, not a number",
                                   "") from None
    if not math.isfinite(x):
        raise MessageRejectedError(f"{where}: field {key!r} is {value!r}, not finite", "")
    return x


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MessageRejectedError(f"{where}: not a JSON object", str(value)[:160])
    return value


def _num(obj: Mapping[str, Any], key: str, where: str, *, positive: bool = False) -> float:
    try:
        return number(obj, key, "", positive=positive)
    except MessageRejectedError as exc:
        raise MessageRejectedError(f"{where}: {exc.reason}", str(dict(obj))[:160]) from None


def _text(obj: Mapping[str, Any], key: str, where: str, *, empty: bool = False) -> str:
    if empty:
        value = field(obj, key, "") if key in obj else ""
        if not isinstance(value, str):
            raise MessageRejectedError(f"{where}: field {key!r} is {value!r}, not a string",
                                       "")
        return value
    try:
        return text(obj, key, "")
    except MessageRejectedError as exc:
        raise MessageRejectedError(f"{where}: {exc.reason}", str(dict(obj))[:160]) from None


@dataclass(frozen=True)
class AccountInfo:
    """The account line of ``DWX_Orders.txt`` (money in the account currency)."""

    name: str
    number: int
    currency: str
    leverage: float
    free_margin: float
    balance: float
    equity: float
    trade_mode: str | None
    """``demo``, ``real`` or ``contest`` when the EA reports it (``ACCOUNT_TRADE_MODE``;
    the stock EAs do not): None when it cannot be told."""


@dataclass(frozen=True)
class Ticket:
    """One open order (market position or pending order) of ``DWX_Orders.txt``."""

    ticket: int
    magic: int
    symbol: str
    lots: float
    type: str
    """``buy``, ``sell`` (positions) or a pending type (``buylimit`` ...)."""
    open_price: float
    open_ms: int
    pnl: float
    commission: float
    swap: float
    comment: str

    @property
    def signed_lots(self) -> float:
        """Lots, negative for a sell position, 0 for a pending order."""
        return self.lots if self.type == "buy" else -self.lots if self.type == "sell" else 0.0


@dataclass(frozen=True)
class OrdersFile:
    """``DWX_Orders.txt``: the account and every open order by ticket."""

    account: AccountInfo
    tickets: Mapping[int, Ticket]


@dataclass(frozen=True)
class Message:
    """One INFO or ERROR message (``millis``: the EA's unique, rising message key)."""

    millis: int
    kind: str
    """``INFO`` or ``ERROR``."""
    error_type: str
    """The ERROR's type (``OPEN_ORDER_LOTSIZE_OUT_OF_RANGE`` ...); empty for INFO."""
    text: str
    """The INFO's message or the ERROR's description."""

    def __str__(self) -> str:
        return f"{self.kind} {self.error_type} {self.text}".replace("  ", " ")


@dataclass(frozen=True)
class Tick:
    """A symbol's best bid and ask and the value of one tick per lot (account currency)."""

    symbol: str
    bid: float
    ask: float
    tick_value: float | None


@dataclass(frozen=True)
class ClosedTrade:
    """One closed ticket of ``DWX_Historic_Trades.txt``."""

    ticket: int
    magic: int
    symbol: str
    lots: float
    type: str
    open_price: float
    close_price: float
    close_ms: int
    pnl: float
    commission: float
    swap: float
    comment: str


def parse_ticket_key(key: str, where: str) -> int:
    """A ticket number key (``"12345"``)."""
    if not key.isdigit():
        raise MessageRejectedError(f"{where}: ticket {key!r} is not a number", key)
    return int(key)


def parse_orders(data: Any, offset_s: int, where: str) -> OrdersFile:
    """``DWX_Orders.txt`` (module docstring)."""
    top = _obj(data, where)
    acc = _obj(top.get("account_info"), f"{where} account_info")
    w = f"{where} account_info"
    mode = acc.get("trade_mode")
    account = AccountInfo(
        name=_text(acc, "name", w, empty=True), number=int(_num(acc, "number", w)),
        currency=_text(acc, "currency", w), leverage=_num(acc, "leverage", w),
        free_margin=_signed(acc, "free_margin", w), balance=_signed(acc, "balance", w),
        equity=_signed(acc, "equity", w),
        trade_mode=str(mode).lower() if isinstance(mode, str) and mode else None)
    orders = _obj(top.get("orders"), f"{where} orders")
    tickets = {}
    for key, value in orders.items():
        n = parse_ticket_key(key, where)
        o = _obj(value, f"{where} order {key}")
        wo = f"{where} order {key}"
        kind = _text(o, "type", wo)
        if kind not in MARKET_TYPES + PENDING_TYPES:
            raise MessageRejectedError(f"{wo}: type {kind!r} is not one of "
                                       f"{MARKET_TYPES + PENDING_TYPES}", kind)
        tickets[n] = Ticket(n, int(_signed(o, "magic", wo)), _text(o, "symbol", wo),
                            _num(o, "lots", wo, positive=True), kind,
                            _num(o, "open_price", wo),
                            server_time_ms(_text(o, "open_time", wo), offset_s, wo),
                            _signed(o, "pnl", wo), _signed(o, "commission", wo),
                            _signed(o, "swap", wo), _text(o, "comment", wo, empty=True))
    return OrdersFile(account, tickets)


def parse_messages(data: Any, where: str) -> list[Message]:
    """``DWX_Messages.txt``, oldest first (module docstring)."""
    out = []
    for key, value in _obj(data, where).items():
        if not key.isdigit():
            raise MessageRejectedError(f"{where}: message key {key!r} is not a number", key)
        m = _obj(value, f"{where} message {key}")
        w = f"{where} message {key}"
        kind = _text(m, "type", w)
        if kind == "INFO":
            out.append(Message(int(key), kind, "", _text(m, "message", w, empty=True)))
        elif kind == "ERROR":
            out.append(Message(int(key), kind, _text(m, "error_type", w),
                               _text(m, "description", w, empty=True)))
        else:
            raise MessageRejectedError(f"{w}: type {kind!r} is neither INFO nor ERROR", kind)
    out.sort(key=lambda m: m.millis)
    return out


def parse_market_data(data: Any, where: str) -> dict[str, Tick]:
    """``DWX_Market_Data.txt`` (module docstring)."""
    out = {}
    for symbol, value in _obj(data, where).items():
        q = _obj(value, f"{where} {symbol}")
        w = f"{where} {symbol}"
        tick_value = _num(q, "tick_value", w) if "tick_value" in q else None
        out[symbol] = Tick(symbol, _num(q, "bid", w), _num(q, "ask", w), tick_value)
    return out


def _bar(q: Mapping[str, Any], ts: int, where: str) -> Bar:
    o, h, lo, c = (_num(q, k, where, positive=True) for k in ("open", "high", "low", "close"))
    v = _num(q, "tick_volume", where)
    try:
        check_ohlc(o, h, lo, c, "")
    except MessageRejectedError as exc:
        raise MessageRejectedError(f"{where}: {exc.reason}", "") from None
    return Bar(ts, o, h, lo, c, v)


def split_key(key: str, where: str) -> tuple[str, str]:
    """``EURUSD_H1`` -> (``EURUSD``, ``H1``); symbols may hold underscores."""
    symbol, sep, timeframe = key.rpartition("_")
    if not sep or not symbol or not timeframe:
        raise MessageRejectedError(f"{where}: key {key!r} is not SYMBOL_TIMEFRAME", key)
    return symbol, timeframe


def parse_bar_data(data: Any, offset_s: int, where: str) -> dict[tuple[str, str], Bar]:
    """``DWX_Bar_Data.txt``: (symbol, timeframe) -> its last closed bar."""
    out = {}
    for key, value in _obj(data, where).items():
        q = _obj(value, f"{where} {key}")
        w = f"{where} {key}"
        out[split_key(key, where)] = _bar(q, server_time_ms(_text(q, "time", w), offset_s,
                                                            w), w)
    return out


def parse_historic_data(data: Any, offset_s: int, where: str
                        ) -> dict[tuple[str, str], list[Bar]]:
    """``DWX_Historic_Data.txt``: (symbol, timeframe) -> bars, oldest first."""
    out = {}
    for key, rows in _obj(data, where).items():
        bars = []
        for t, value in _obj(rows, f"{where} {key}").items():
            w = f"{where} {key} {t}"
            bars.append(_bar(_obj(value, w), server_time_ms(t, offset_s, w), w))
        bars.sort(key=lambda b: b.ts)
        out[split_key(key, where)] = bars
    return out


def parse_historic_trades(data: Any, offset_s: int, where: str) -> dict[int, ClosedTrade]:
    """``DWX_Historic_Trades.txt``: ticket -> closed trade, market orders only (the file
    also lists balance operations and deleted pending orders). MT4 lists closed orders
    (``open_price``, ``close_price``, ``close_time``); MT5 lists deals (``deal_price``,
    ``deal_time``, ``entry``): a deal is read as a trade opened and closed at its price."""
    out = {}
    for key, value in _obj(data, where).items():
        n = parse_ticket_key(key, where)
        o = _obj(value, f"{where} trade {key}")
        w = f"{where} trade {key}"
        kind = o.get("type")
        if kind not in MARKET_TYPES:
            continue
        deal = "deal_time" in o
        price = _num(o, "deal_price" if deal else "close_price", w)
        out[n] = ClosedTrade(n, int(_signed(o, "magic", w)), _text(o, "symbol", w),
                             _num(o, "lots", w), str(kind),
                             price if deal else _num(o, "open_price", w), price,
                             server_time_ms(_text(o, "deal_time" if deal else "close_time", w),
                                            offset_s, w),
                             _signed(o, "pnl", w), _signed(o, "commission", w),
                             _signed(o, "swap", w), _text(o, "comment", w, empty=True))
    return out
