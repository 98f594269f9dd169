"""The DWX Connect commands with answers, as typed calls on a ``DwxClient``: open, modify
and close orders by ticket, close by symbol or magic number, historic bars and trades.

Command contents and the EA's INFO/ERROR texts are those of ``mql/DWX_Server_MT4.mq4``
(``github.com/darwinex/dwxconnect``); the MT5 EA's success texts differ slightly (its
``OPEN_ORDER`` reply names no ticket), so a new order's ticket is always learnt from the
orders file (``DwxExecution`` in ``dwx_orders.py``), never from the text alone.
Each call returns the EA's INFO reply or raises ``EaError`` with its ERROR (the broker's
or the EA's refusal), ``CommandNotReadError`` (the EA did not read it; it will not run)
or ``ReplyTimeoutError`` (read, unanswered: its effect is unknown).

Fields are joined with ``,``: a symbol or comment holding ``,`` ``|`` ``"`` or ``\\`` would
break the EA's parsing or its JSON, so they are refused here (``ConfigError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from dataclasses import dataclass

from raytrade.actors.venues import dwx_files as f
from raytrade.actors.venues import dwx_records as r
from raytrade.actors.venues.dwx_client import DwxClient, ReplyTimeoutError
from raytrade.envs.bars import Bar
from raytrade.envs.errors import ConfigError

ORDER_TYPES = r.MARKET_TYPES + r.PENDING_TYPES
TIMEFRAMES = ("M1", "M5", "M15", "M30", "H1", "H4", "D1", "W1", "MN1")
_UNSAFE = re.compile(r'[,|"\\\r\n]')
_TICKET = re.compile(r"Successfully sent order (\d+):")


def safe_field(value: str, name: str) -> str:
    """``value`` if it can travel in a comma-separated command field."""
    if _UNSAFE.search(value) or not value.isascii():
        raise ConfigError(f"DWX {name} {value!r}: must be ASCII without , | \" \\ or line "
                          "breaks")
    return value


def lots_text(lots: float) -> str:
    """Lots as the EA parses them (it rounds to 2 digits; we send what we mean)."""
    if not (math.isfinite(lots) and lots >= 0):
        raise ConfigError(f"DWX lots {lots} must be finite and >= 0")
    return f"{lots:.8f}".rstrip("0").rstrip(".") or "0"


def price_text(price: float) -> str:
    """A price (0: market / none)."""
    if not (math.isfinite(price) and price >= 0):
        raise ConfigError(f"DWX price {price} must be finite and >= 0")
    return f"{price:.10f}".rstrip("0").rstrip(".") or "0"


@dataclass(frozen=True)
class OpenReply:
    """The EA's INFO to ``OPEN_ORDER``; ``ticket`` when its text names it (MT4)."""

    message: r.Message
    ticket: int | None


async def open_order(client: DwxClient, symbol: str, order_type: str, lots: float, *,
                     price: float = 0.0, stop_loss: float = 0.0, take_profit: float = 0.0,
                     magic: int = 0, comment: str = "", expiration_s: int = 0,
                     command_id: int | None = None) -> OpenReply:
    """``OPEN_ORDER``: a market order (price 0) or a pending one; SL/TP absolute prices
    (0: none); ``expiration_s`` server-time epoch seconds (0: none)."""
    if order_type not in ORDER_TYPES:
        raise ConfigError(f"DWX order type {order_type!r}: one of {ORDER_TYPES}")
    content = ",".join([safe_field(symbol, "symbol"), order_type, lots_text(lots),
                        price_text(price), price_text(stop_loss), price_text(take_profit),
                        str(int(magic)), safe_field(comment, "comment"),
                        str(int(expiration_s))])

    # MT4: "Successfully sent order <ticket>: <symbol>, <type>, <lots>, <price>"; MT5
    # names no ticket. Symbol, type and lots must be this order's.
    mine = re.compile(rf"Successfully sent order(?: \d+)?: {re.escape(symbol)}, "
                      rf"{order_type}, {lots:.2f},")

    def match(m: r.Message) -> bool:
        return (m.kind == "INFO" and mine.match(m.text) is not None) or \
            (m.kind == "ERROR" and m.error_type.startswith("OPEN_ORDER"))

    reply = await client.request("OPEN_ORDER", content, match, family="OPEN_ORDER",
                                 command_id=command_id)
    found = _TICKET.match(reply.text)
    return OpenReply(reply, int(found.group(1)) if found else None)


async def close_order(client: DwxClient, ticket: int, lots: float = 0.0, *,
                      command_id: int | None = None) -> r.Message:
    """``CLOSE_ORDER``: close ``lots`` of a position (0: all) or delete a pending order."""

    def match(m: r.Message) -> bool:
        if m.kind == "INFO":
            return m.text.startswith(f"Successfully closed order: {ticket},")
        return m.error_type == "CLOSE_ORDER_WRONG_FORMAT" or (
            m.error_type.startswith("CLOSE_ORDER_") and re.search(rf"\b{ticket}\b", m.text)
            is not None)

    return await client.request("CLOSE_ORDER", f"{int(ticket)},{lots_text(lots)}", match,
                                family="CLOSE_ORDER", command_id=command_id)


async def modify_order(client: DwxClient, ticket: int, lots: float, *, price: float = 0.0,
                       stop_loss: float = 0.0, take_profit: float = 0.0,
                       expiration_s: int = 0) -> r.Message:
    """``MODIFY_ORDER``: new SL/TP (0 removes them), a pending order's price (0 keeps
    it); ``lots`` must be the order's (the EA range-checks it and changes nothing)."""
    content = ",".join([str(int(ticket)), lots_text(lots), price_text(price),
                        price_text(stop_loss), price_text(take_profit), str(int(expiration_s))])

    def match(m: r.Message) -> bool:
        if m.kind == "INFO":
            return m.text.startswith(f"Successfully modified order {ticket}:")
        return m.error_type.startswith("MODIFY_ORDER")

    return await client.request("MODIFY_ORDER", content, match, family="MODIFY_ORDER")


async def close_orders_by(client: DwxClient, *, symbol: str | None = None,
                          magic: int | None = None) -> r.Message:
    """``CLOSE_ORDERS_BY_SYMBOL`` or ``CLOSE_ORDERS_BY_MAGIC`` (exactly one of them)."""
    if (symbol is None) == (magic is None):
        raise ConfigError("close_orders_by: give a symbol or a magic number")
    if symbol is not None:
        command, value, what, error = ("CLOSE_ORDERS_BY_SYMBOL", safe_field(symbol, "symbol"),
                                       "symbol", "CLOSE_ORDER_SYMBOL")
    else:
        command, value, what, error = ("CLOSE_ORDERS_BY_MAGIC", str(int(magic or 0)),
                                       "magic", "CLOSE_ORDER_MAGIC")
    tail = f"with {what} {value}."

    def match(m: r.Message) -> bool:
        if m.kind == "INFO":
            return m.text.endswith(tail) and ("closed" in m.text or "No orders" in m.text)
        return m.error_type == error and m.text.endswith(tail)

    return await client.request(command, value, match, family="CLOSE_ORDERS_BY")


async def _take_file(client: DwxClient, name: str, timeout_s: float) -> object:
    """The answer file the EA wrote before its INFO: read (a half-written one again
    until ``timeout_s``), then deleted as the protocol expects of the client."""
    reader = f.JsonFile(client.paths.file(name), invalid_after_s=timeout_s, clock=client.clock)
    deadline = client.clock() + timeout_s
    while True:
        try:
            change = reader.poll()
        except f.InvalidFileError as exc:
            client.report_fault("invalid_file", str(exc))
            raise ReplyTimeoutError(str(exc)) from None
        if change is not None:
            with contextlib.suppress(FileNotFoundError):
                client.paths.file(name).unlink()
            return change.data
        if client.clock() >= deadline:
            raise ReplyTimeoutError(f"{client.paths.file(name)}: the EA announced it but "
                                    f"it was not readable within {timeout_s:g} s")
        await asyncio.sleep(client.config.poll_s)


async def historic_bars(client: DwxClient, symbol: str, timeframe: str, start_ms: int,
                        end_ms: int) -> list[Bar]:
    """``GET_HISTORIC_DATA``: the bars opening in [start, end] (ms UTC; sent as server
    time), oldest first, the one still forming included when the range reaches it."""
    if timeframe not in TIMEFRAMES:
        raise ConfigError(f"DWX timeframe {timeframe!r}: one of {TIMEFRAMES}")
    offset = client.config.server_utc_offset_s
    content = ",".join([safe_field(symbol, "symbol"), timeframe,
                        str(start_ms // 1000 + offset), str(end_ms // 1000 + offset)])
    key = f"{symbol}_{timeframe}"

    def match(m: r.Message) -> bool:
        if m.kind == "INFO":
            return m.text == f"Successfully read historic data for {key}."
        return m.error_type.startswith("HISTORIC_DATA") and (
            symbol in m.text or m.error_type == "HISTORIC_DATA_WRONG_FORMAT")

    async with client.exclusive("HISTORIC_DATA"):
        with contextlib.suppress(FileNotFoundError):  # an answer nobody collected
            client.paths.file(f.HISTORIC_DATA).unlink()
        await client.request("GET_HISTORIC_DATA", content, match, family="GET_HISTORIC_DATA")
        data = await _take_file(client, f.HISTORIC_DATA, client.config.reply_timeout_s)
    parsed = r.parse_historic_data(data, offset, str(client.paths.file(f.HISTORIC_DATA)))
    return parsed.get((symbol, timeframe), [])


async def historic_trades(client: DwxClient, lookback_days: int = 30
                          ) -> dict[int, r.ClosedTrade]:
    """``GET_HISTORIC_TRADES``: closed market orders opened in the last ``lookback_days``."""
    if lookback_days <= 0:
        raise ConfigError(f"lookback_days must be > 0, got {lookback_days}")

    def match(m: r.Message) -> bool:
        if m.kind == "INFO":
            return m.text == "Successfully read historic trades."
        return m.error_type == "HISTORIC_TRADES"

    async with client.exclusive("HISTORIC_TRADES"):
        with contextlib.suppress(FileNotFoundError):
            client.paths.file(f.HISTORIC_TRADES).unlink()
        await client.request("GET_HISTORIC_TRADES", str(int(lookback_days)), match,
                             family="GET_HISTORIC_TRADES")
        data = await _take_file(client, f.HISTORIC_TRADES, client.config.reply_timeout_s)
    return r.parse_historic_trades(data, client.config.server_utc_offset_s,
                                   str(client.paths.file(f.HISTORIC_TRADES)))
