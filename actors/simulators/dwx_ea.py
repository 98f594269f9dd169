"""A simulated DWX Connect Expert Advisor: the MetaTrader side of the DWX file protocol.

DWX Connect (github.com/darwinex/dwxconnect, BSD-3) links a program to a MetaTrader 4/5
terminal through text files in the terminal's ``MQL4/Files`` (``MQL5/Files``) folder: the
client writes commands to ``DWX/DWX_Commands_<i>.txt`` and the EA (``mql/DWX_Server_MT4.mq4``)
answers in ``DWX/DWX_Orders.txt``, ``DWX_Messages.txt``, ``DWX_Market_Data.txt``,
``DWX_Bar_Data.txt``, ``DWX_Historic_Data.txt`` and ``DWX_Historic_Trades.txt``. This class
plays that EA, byte for byte, on a folder, so our client can be tested without a terminal:

- every timer tick (``timer_ms``, the EA's ``MILLISECOND_TIMER`` = 25 ms) it reads command
  files 0, 1, 2, ... up to the first missing one, deleting each before checking it, skipping
  ids it has seen among the last 1000 (``RESET_COMMAND_IDS`` forgets them), then rewrites the
  orders file (when its text changed, and at least once a second), the market data (when it
  changed) and the bar data (when a subscribed pair has a newly closed bar);
- its files are written the EA's way: opened with truncation, written, closed, ``\\r\\n``
  appended; never atomically (the ``half_written`` fault stretches that window);
- start and stop (OnInit/OnDeinit) delete its files and every command file; a restart
  forgets ids, subscriptions and messages while the broker keeps the orders.

The market: ``EaBars`` replayed at ``bar_seconds`` of wall time per bar from ``start_bar``.
Bar ``i`` forms while ``i - 1`` is the last closed one; the server time is bar ``i``'s open
time plus ``server_utc_offset_h`` (a broker's clock, often UTC+2). The forming bar holds one
tick at the last close; bid = that close, ask = bid + the spread. When the file runs out the
market stands still. The terminal's own state (the account, orders, history, the bar
position) is saved in ``DWX/sim_state.json`` after every change, atomically; a new process on
the same folder resumes from it, as a terminal does after a crash. Tests read that file as
the simulator's truth (it is not part of the protocol).

Not modelled: several symbols (others are unknown to this terminal), timeframes other than
the replayed one (subscriptions to them never publish, historic requests answer an error),
swap (always 0.00), MT5's differences (listed in the README section).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
from raytrade.actors.simulators.dwx_ea_bars import EaBars
from raytrade.actors.simulators.dwx_ea_broker import Broker, BrokerSpec, MtError
from raytrade.actors.simulators.dwx_ea_commands import HANDLERS, atoi, order_line
from raytrade.actors.simulators.dwx_ea_faults import EaFault
from raytrade.actors.simulators.dwx_ea_files import (
    FILE_NAMES,
    MAX_COMMAND_FILES,
    EaSettings,
    decode_command,
    encode_ea_text,
    load_state,
    reset_folder,
    save_state,
    tick_count,
    write_ea_file,
)
from raytrade.actors.simulators.dwx_ea_format import (
    AccountLine,
    RateLine,
    bar_data_text,
    error_description,
    error_message,
    info_message,
    market_data_text,
    messages_text,
    orders_text,
)
from raytrade.envs.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")


class SimulatedEa:
    """The EA's loop and its files (module docstring); commands: ``dwx_ea_commands``."""

    def __init__(self, settings: EaSettings, spec: BrokerSpec, bars: EaBars,
                 faults: tuple[EaFault, ...] = ()) -> None:
        if not 1 <= settings.start_bar < len(bars):
            raise ConfigError(f"start bar {settings.start_bar} must be in 1..{len(bars) - 1} "
                              f"({bars.source} has {len(bars)} bars)")
        self.settings, self.spec, self.bars, self.faults = settings, spec, bars, faults
        self.offset_s = round(settings.server_utc_offset_h * 3600)
        self.restarts = 0
        self.stopped = False
        previous = load_state(settings.state_path, spec.symbol, len(bars))
        self.resumed = previous is not None
        """True when a previous process's state was taken over (a terminal after a crash)."""
        if previous is not None:
            self.cursor = int(previous["cursor"])
            self.broker = Broker.from_json(previous["broker"], spec)
            self.restarts = int(previous.get("restarts", 0)) + 1
        else:
            self.cursor = settings.start_bar
            self.broker = Broker(spec, balance=settings.balance,
                                 server_time=self._server_time(self.cursor),
                                 bid=round(float(bars.close[self.cursor - 1]), spec.digits))
        self.commands_read = 0
        self.current_command = -1
        self.fired: set[int] = set()
        self.unread_until = 0.0
        self.down_until: float | None = None
        self.cut: EaFault | None = None
        self.going_down = False
        """A ``restart`` is due at the running command: its answer is never written."""
        self.next_bar_at = 0.0
        self.replaying = False
        """With ``start_on_subscribe``: a client has subscribed to bars, the replay runs."""
        self._reset_memory()
        self._last_state = ""

    # -- lifecycle ----------------------------------------------------------------------
    def _reset_memory(self) -> None:
        self.command_ids: list[int] = [-1] * 1000
        self.command_index = 0
        self.messages: collections.deque[tuple[int, str]] = collections.deque(
            maxlen=self.settings.num_last_messages)
        self.last_message_millis = 0
        self.market_symbols: list[str] = []
        self.bar_instruments: list[list[Any]] = []
        self.last_texts: dict[str, str] = {}
        self.last_orders_ms = tick_count()

    def on_init(self) -> None:
        """OnInit: ResetFolder, forget command ids, messages and subscriptions."""
        reset_folder(self.settings.dwx_dir)
        self._reset_memory()

    def on_deinit(self) -> None:
        """OnDeinit: ResetFolder."""
        reset_folder(self.settings.dwx_dir)

    def run(self, stop: Callable[[], bool], on_ready: Callable[[], None] | None = None) -> None:
        """Serve until ``stop()`` is true: OnInit, ticks every ``timer_ms``, OnDeinit."""
        self.on_init()
        self.next_bar_at = time.monotonic() + self.settings.bar_seconds
        self.tick()
        self.save_state()
        if on_ready is not None:
            on_ready()
        while not stop():
            time.sleep(self.settings.timer_ms / 1000)
            self.step()
        self.on_deinit()
        self.stopped = True
        self.save_state()

    def step(self) -> None:
        """One timer event: bars that are due close, then the EA's tick unless it is down."""
        now = time.monotonic()
        if self.settings.start_on_subscribe and not self.replaying:
            if any(inst[0] for inst in self.bar_instruments):
                self.replaying = True  # the first bar subscription starts the clock
            self.next_bar_at = now + self.settings.bar_seconds
        while now >= self.next_bar_at and (
                not self.broker.market_open or self.cursor < len(self.bars) - 1):
            self.next_bar_at += self._next_market_event()
        if self.down_until is not None:
            if now < self.down_until:
                self.save_state()
                return
            self.down_until = None
            self.on_init()
        self.tick()
        self.save_state()

    # -- market -------------------------------------------------------------------------
    def _server_time(self, index: int) -> int:
        return int(self.bars.ts[index]) + self.offset_s

    def _next_market_event(self) -> float:
        """The forming bar closes (or, after a closure, the next one opens); the wall
        seconds until the following event."""
        bars, pace = self.bars, self.settings.bar_seconds
        if not self.broker.market_open:
            self.broker.reopen(self._server_time(self.cursor))
            return pace
        i = self.cursor
        self.cursor += 1
        gap = (int(bars.ts[i + 1]) - int(bars.ts[i])) // bars.seconds
        closure = self.settings.pace == "clock" and gap > 1
        self.broker.bar_closed(float(bars.high[i]), float(bars.low[i]), float(bars.close[i]),
                               self._server_time(i) + bars.seconds if closure
                               else self._server_time(self.cursor), market_open=not closure)
        if self.cursor == len(bars) - 1:
            log.info("the replayed bars end: the market stands still from now on")
        return pace * (gap - 1) if closure else pace

    def closed_rate(self, index: int) -> RateLine:
        """Bar ``index`` (closed) as ``MqlRates``."""
        b, d = self.bars, self.spec.digits
        return RateLine(self._server_time(index), round(float(b.open[index]), d),
                        round(float(b.high[index]), d), round(float(b.low[index]), d),
                        round(float(b.close[index]), d), int(b.volume[index]))

    def rates_between(self, start: int, end: int) -> list[RateLine]:
        """``CopyRates(symbol, tf, start, end)``: bars opened in [start, end] (server time),
        the forming one (one tick at the bid) included."""
        times = self.bars.ts[: self.cursor + 1] + self.offset_s
        lo = int(np.searchsorted(times, start, side="left"))
        hi = int(np.searchsorted(times, end, side="right"))
        out = [self.closed_rate(j) for j in range(lo, min(hi, self.cursor))]
        if hi > self.cursor and self.broker.market_open:
            bid = self.broker.bid
            out.append(RateLine(self._server_time(self.cursor), bid, bid, bid, bid, 1))
        return out

    # -- the tick -----------------------------------------------------------------------
    def tick(self) -> None:
        """OnTick: commands, open orders, market data, bar data."""
        self.check_commands()
        if self.down_until is None:
            self.check_open_orders()
            self.check_market_data()
            self.check_bar_data()

    def check_commands(self) -> None:
        """Read command files 0..49 up to the first missing one (module docstring)."""
        if time.monotonic() < self.unread_until:
            return
        for i in range(MAX_COMMAND_FILES):
            path = self.settings.dwx_dir / f"DWX_Commands_{i}.txt"
            if not path.exists():
                return
            if self._fault_due("leave_unread", self.commands_read) is not None:
                return
            try:
                raw = path.read_bytes()
            except OSError:
                return
            for _ in range(10):
                try:
                    path.unlink()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    continue
            self.current_command = self.commands_read
            self.commands_read += 1
            cut = self._fault_due("half_written", self.current_command)
            if cut is not None:
                self.cut = cut
            # a restart due at this command takes the terminal down before the EA writes
            # its answer: the command runs at the broker, the client never sees the reply
            self.going_down = self._fault_pending("restart", self.current_command)
            try:
                go_on = self._execute(decode_command(raw))
            finally:
                self.going_down = False
            self._after_command(self.current_command)
            if not go_on or self.down_until is not None:
                return

    def _execute(self, text: str) -> bool:
        if text[:2] != "<:":
            self.send_error("WRONG_FORMAT_START_IDENTIFIER",
                            f"Start identifier not found for command: {text}")
            return False
        if text[-2:] != ":>":
            self.send_error("WRONG_FORMAT_END_IDENTIFIER",
                            f"End identifier not found for command: {text}")
            return False
        text = text[2:-2]
        data = text.split("|") if text else []
        if len(data) != 3:
            self.send_error("WRONG_FORMAT_COMMAND", f"Wrong format for command: {text}")
            return False
        command_id, command, content = atoi(data[0]), data[1], data[2]
        if command != "RESET_COMMAND_IDS" and command_id in self.command_ids:
            log.info("Not executing command because ID already exists. commandID: %d, "
                     "command: %s, content: %s ", command_id, command, content)
            return False
        self.command_ids[self.command_index] = command_id
        self.command_index = (self.command_index + 1) % len(self.command_ids)
        if command == "RESET_COMMAND_IDS":
            log.info("Resetting stored command IDs.")
            self.command_ids = [-1] * 1000
            self.command_index = 0
        elif command in HANDLERS:
            HANDLERS[command](self, content)
        return True

    def check_open_orders(self) -> None:
        """Rewrite the orders file when it changed, and at least once a second."""
        b = self.broker
        account = AccountLine(
            self.spec.account_name, self.spec.account_number, self.spec.currency,
            self.spec.leverage, b.free_margin(), b.balance, b.equity(),
            self.spec.account_kind if self.settings.trade_mode_field else None)
        text = orders_text(account, [order_line(o, b.floating(o))
                                     for o in reversed(list(b.orders.values()))])
        now = tick_count()
        if text == self.last_texts.get("orders") and now < self.last_orders_ms + 1000:
            return
        if self.write_file("orders", text):
            self.last_orders_ms = now
            self.last_texts["orders"] = text

    def check_market_data(self) -> None:
        """Bid/ask of the subscribed symbols, written when the text changed."""
        quotes: list[tuple[str, float, float, float]] = []
        for symbol in self.market_symbols:
            if symbol == self.spec.symbol:
                quotes.append((symbol, self.broker.bid, self.broker.ask, self.broker.tick_value))
            else:
                self.send_error("GET_BID_ASK", f"Could not get bid/ask for {symbol}. Last "
                                f"error: {error_description(4106)}")
        text = market_data_text(quotes)
        if text != self.last_texts.get("market_data") and self.write_file("market_data", text):
            self.last_texts["market_data"] = text

    def check_bar_data(self) -> None:
        """The newest closed bar of each subscribed pair that has one not yet published."""
        fresh: list[tuple[str, RateLine]] = []
        for inst in self.bar_instruments:
            symbol, timeframe, last = inst
            if symbol != self.spec.symbol or timeframe != self.bars.timeframe:
                continue
            rate = self.closed_rate(self.cursor - 1)
            if rate.time > last:
                fresh.append((f"{symbol}_{timeframe}", rate))
                inst[2] = rate.time
        if not fresh:
            return
        for _ in range(5):
            if self.write_file("bar_data", bar_data_text(fresh)):
                break
            time.sleep(0.1)

    # -- messages and files -------------------------------------------------------------
    def send_info(self, message: str) -> None:
        """SendInfo."""
        log.info("INFO: %s", message)
        self._send(info_message(datetime.now(UTC), message))

    def send_error(self, error_type: str, description: str) -> None:
        """SendError."""
        log.info("ERROR: %s | %s", error_type, description)
        self._send(error_message(datetime.now(UTC), error_type, description))

    def _send(self, entry: str) -> None:
        millis = tick_count()
        if millis <= self.last_message_millis:
            millis = self.last_message_millis + 1
        self.last_message_millis = millis
        self.messages.append((millis, entry))
        text = messages_text(list(self.messages))
        if text != self.last_texts.get("messages") and self.write_file("messages", text):
            self.last_texts["messages"] = text

    def write_file(self, kind: str, text: str) -> bool:
        """WriteToFile (``dwx_ea_files``); a pending ``half_written`` fault cuts it, and
        nothing is written while the terminal goes down (a ``restart`` due at the command
        that is running)."""
        if self.going_down:
            return False
        cut = self.cut if self.cut is not None and self.cut.file in (None, kind) else None
        if cut is not None:
            self.cut = None
        return write_ea_file(self.settings.dwx_dir / FILE_NAMES[kind],
                             encode_ea_text(text, self.settings.encoding),
                             None if cut is None else cut.seconds)

    # -- faults -------------------------------------------------------------------------
    def _fault_pending(self, kind: str, index: int) -> bool:
        """A fault of ``kind`` would fire at command ``index`` (``_fault_due``, not fired)."""
        return any(fault.kind == kind and n not in self.fired and fault.at_command <= index
                   for n, fault in enumerate(self.faults))

    def _fault_due(self, kind: str, index: int) -> EaFault | None:
        for n, fault in enumerate(self.faults):
            if fault.kind == kind and n not in self.fired and fault.at_command <= index:
                self.fired.add(n)
                if kind == "leave_unread":
                    self.unread_until = time.monotonic() + fault.seconds
                return fault
        return None

    def _after_command(self, index: int) -> None:
        restart = self._fault_due("restart", index)
        if restart is not None:
            log.info("fault: the EA restarts (down for %.1f s)", restart.seconds)
            self.on_deinit()
            self.restarts += 1
            self.down_until = time.monotonic() + restart.seconds

    def trade(self, operation: Callable[..., T], *args: Any) -> T:
        """A trade-server call of the current command (a due ``reject`` fault refuses it)."""
        fault = self._fault_due("reject", self.current_command)
        if fault is not None:
            raise MtError(fault.error_code)
        return operation(*args)

    # -- the truth file -----------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What ``sim_state.json`` holds."""
        return {"pid": os.getpid(), "symbol": self.spec.symbol, "timeframe": self.bars.timeframe,
                "account_kind": self.spec.account_kind, "cursor": self.cursor,
                "bars": len(self.bars), "server_time": self.broker.server_time,
                "last_closed_time": self._server_time(self.cursor - 1),
                "server_utc_offset_s": self.offset_s,
                "ea_running": self.down_until is None and not self.stopped,
                "market_open": self.broker.market_open,
                "restarts": self.restarts, "commands_read": self.commands_read,
                "market_symbols": list(self.market_symbols),
                "bar_instruments": [list(i) for i in self.bar_instruments],
                "broker": self.broker.to_json()}

    def save_state(self) -> None:
        """Write the truth file (atomically) when it changed."""
        text = json.dumps(self.state(), indent=1)
        if text != self._last_state:
            save_state(self.settings.state_path, text)
            self._last_state = text
