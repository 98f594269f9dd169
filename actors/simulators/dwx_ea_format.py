"""The text of the files the DWX Connect EA writes, as its MQL4 ``StringFormat`` calls print it.

Public protocol: ``mql/DWX_Server_MT4.mq4`` in github.com/darwinex/dwxconnect (functions
``CheckOpenOrders``, ``SendInfo``/``SendError``/``SendMessage``, ``CheckMarketData``,
``CheckBarData``, ``GetHistoricData``, ``GetHistoricTrades``). The EA builds its JSON by string
formatting, not with a JSON library, so this module does the same: numbers with the EA's
``%f``/``%.5f``/``%.2f``/``%d`` widths, keys in its order and spacing (``"tick_volume":%d``
without a space in the bar data), and strings **unescaped** (a ``"`` in an order comment makes
the real EA's orders file invalid JSON; the simulator reproduces that rather than hide it).

Times: ``TimeToString(t)`` prints ``YYYY.MM.DD HH:MM``, with ``TIME_SECONDS`` also ``:SS``;
``t`` is the terminal's server time as MQL ``datetime`` (seconds "since 1970" of the
broker's wall clock), so the simulator passes server-time epoch seconds here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

MT4_ERRORS: dict[int, str] = {
    0: "no error", 1: "no error", 2: "common error", 3: "invalid trade parameters",
    4: "trade server is busy", 6: "no connection with trade server", 8: "too frequent requests",
    64: "account disabled", 128: "trade timeout", 129: "invalid price", 130: "invalid stops",
    131: "invalid trade volume", 132: "market is closed", 133: "trade is disabled",
    134: "not enough money", 135: "price changed", 136: "off quotes", 138: "requote",
    139: "order is locked", 141: "too many requests", 145:
    "modification denied because order too close to market", 146: "trade context is busy",
    147: "expirations are denied by broker",
    148: "amount of open and pending orders has reached the limit",
    149: "hedging is prohibited", 150: "prohibited by FIFO rules",
    4066: "requested history data in update state", 4106: "unknown symbol",
    4108: "invalid ticket"}
"""The MT4 error texts (the EA's ``ErrorDescription`` table) the simulator can produce."""


def error_description(code: int) -> str:
    """``ErrorDescription(code)`` of the MT4 EA (``"ErrorCode: <n>"`` when not listed)."""
    return MT4_ERRORS.get(code, f"ErrorCode: {code}")


def time_to_string(epoch_s: int, *, seconds: bool = False) -> str:
    """MQL ``TimeToString``: ``YYYY.MM.DD HH:MM`` (``TIME_DATE|TIME_MINUTES``), with
    ``seconds`` ``YYYY.MM.DD HH:MM:SS`` (``TIME_DATE|TIME_SECONDS``)."""
    when = datetime.fromtimestamp(epoch_s, UTC)
    return when.strftime("%Y.%m.%d %H:%M:%S" if seconds else "%Y.%m.%d %H:%M")


def server_epoch(text: str) -> int:
    """The inverse of :func:`time_to_string` (either width), for tests and the truth file."""
    fmt = "%Y.%m.%d %H:%M:%S" if text.count(":") == 2 else "%Y.%m.%d %H:%M"
    return int(datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class AccountLine:
    """What ``CheckOpenOrders`` prints of the account (no margin, no demo/real field)."""

    name: str
    number: int
    currency: str
    leverage: int
    free_margin: float
    balance: float
    equity: float
    trade_mode: str | None = None
    """``"demo"``/``"real"`` only with the simulator's ``--trade-mode-field`` (not in the
    real EA: module docstring of ``dwx_ea``)."""


@dataclass(frozen=True)
class OrderLine:
    """One order as the EA prints it (open orders and history share these fields)."""

    ticket: int
    magic: int
    symbol: str
    lots: float
    type: str
    open_price: float
    open_time: int
    sl: float
    tp: float
    pnl: float
    comment: str
    close_price: float = 0.0
    close_time: int = 0
    commission: float = 0.0
    swap: float = 0.0


def orders_text(account: AccountLine, orders: Iterable[OrderLine]) -> str:
    """``DWX_Orders.txt``: ``{"account_info": {...}, "orders": {"<ticket>": {...}, ...}}``."""
    a = account
    head = (f'{{"account_info": {{"name": "{a.name}", "number": {a.number}, '
            f'"currency": "{a.currency}", "leverage": {a.leverage}, '
            f'"free_margin": {a.free_margin:f}, "balance": {a.balance:f}, '
            f'"equity": {a.equity:f}')
    if a.trade_mode is not None:
        head += f', "trade_mode": "{a.trade_mode}"'
    parts = [f'"{o.ticket}": {{"magic": {o.magic}, "symbol": "{o.symbol}", '
             f'"lots": {o.lots:.2f}, "type": "{o.type}", "open_price": {o.open_price:.5f}, '
             f'"open_time": "{time_to_string(o.open_time, seconds=True)}", '
             f'"SL": {o.sl:.5f}, "TP": {o.tp:.5f}, "pnl": {o.pnl:.2f}, '
             f'"commission": {o.commission:.2f}, "swap": {o.swap:.2f}, '
             f'"comment": "{o.comment}"}}' for o in orders]
    return head + '}, "orders": {' + ", ".join(parts) + "}}"


def history_text(trades: Iterable[OrderLine]) -> str:
    """``DWX_Historic_Trades.txt``: closed orders keyed by ticket, as ``GetHistoricTrades``."""
    parts = [f'"{o.ticket}": {{"magic": {o.magic}, "symbol": "{o.symbol}", '
             f'"lots": {o.lots:.2f}, "type": "{o.type}", '
             f'"open_time": "{time_to_string(o.open_time, seconds=True)}", '
             f'"close_time": "{time_to_string(o.close_time, seconds=True)}", '
             f'"open_price": {o.open_price:.5f}, "close_price": {o.close_price:.5f}, '
             f'"SL": {o.sl:.5f}, "TP": {o.tp:.5f}, "pnl": {o.pnl:.2f}, '
             f'"commission": {o.commission:.2f}, "swap": {o.swap:.2f}, '
             f'"comment": "{o.comment}"}}' for o in trades]
    return "{" + ", ".join(parts) + "}"


def info_message(gmt: datetime, message: str) -> str:
    """One INFO entry of the messages file (``SendInfo``); ``gmt`` is the PC's UTC clock."""
    return (f'{{"type": "INFO", "time": "{gmt.strftime("%Y.%m.%d %H:%M:%S")}", '
            f'"message": "{message}"}}')


def error_message(gmt: datetime, error_type: str, description: str) -> str:
    """One ERROR entry of the messages file (``SendError``)."""
    return (f'{{"type": "ERROR", "time": "{gmt.strftime("%Y.%m.%d %H:%M:%S")}", '
            f'"error_type": "{error_type}", "description": "{description}"}}')


def messages_text(entries: Sequence[tuple[int, str]]) -> str:
    """``DWX_Messages.txt``: ``{"<millis>": <entry>, ...}``, oldest first."""
    return "{" + ", ".join(f'"{millis}": {entry}' for millis, entry in entries) + "}"


def market_data_text(quotes: Sequence[tuple[str, float, float, float]]) -> str:
    """``DWX_Market_Data.txt`` from ``(symbol, bid, ask, tick_value)`` rows."""
    return "{" + ", ".join(f'"{s}": {{"bid": {b:.5f}, "ask": {a:.5f}, "tick_value": {t:.5f}}}'
                           for s, b, a, t in quotes) + "}"


@dataclass(frozen=True)
class RateLine:
    """One MQL ``MqlRates`` row: open time (server epoch s), OHLC and tick volume."""

    time: int
    open: float
    high: float
    low: float
    close: float
    tick_volume: int


def bar_data_text(bars: Sequence[tuple[str, RateLine]]) -> str:
    """``DWX_Bar_Data.txt`` from ``(name, bar)`` rows, name = ``SYMBOL_TIMEFRAME``."""
    return "{" + ", ".join(
        f'"{name}": {{"time": "{time_to_string(r.time)}", "open": {r.open:f}, '
        f'"high": {r.high:f}, "low": {r.low:f}, "close": {r.close:f}, '
        f'"tick_volume":{r.tick_volume}}}' for name, r in bars) + "}"


def historic_data_text(name: str, rates: Sequence[RateLine]) -> str:
    """``DWX_Historic_Data.txt``: ``{"<name>": {"<bar open time>": {...}, ...}}``."""
    rows = ", ".join(f'"{time_to_string(r.time)}": {{"open": {r.open:.5f}, "high": '
                     f'{r.high:.5f}, "low": {r.low:.5f}, "close": {r.close:.5f}, '
                     f'"tick_volume": {float(r.tick_volume):.5f}}}' for r in rates)
    return f'{{"{name}": {{{rows}}}}}'
