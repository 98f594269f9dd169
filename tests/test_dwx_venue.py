"""The DWX Connect venue (``actors/venues/dwx*.py``) against the EA simulator
(``raytrade dwx sim``: its own process on a temporary folder, replaying the real EURUSD
hourly bars shipped inside the ``backtesting`` package), and its file layer and config on
real files.

The EA's failure modes each get their turn in one simulator run (a command file left
unread, a half-written orders file, a broker rejection, the EA restarting and reloading
its orders); the live trader trades through the EA (open, reduce, reverse, and the kill
switch's flatten) and its journal must agree with the simulator's truth; the paper actor
replays EURUSD through the EA decision for decision like the backtest
(``tests/test_paper_parity.py`` for the websocket venues).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import backtesting
import numpy as np
import pytest
from raytrade.actors.journal import Journal
from raytrade.actors.live_config import LiveConfig, LiveLimits
from raytrade.actors.live_ledger import LiveLedger
from raytrade.actors.live_session import LiveSession
from raytrade.actors.paper_config import PaperConfig
from raytrade.actors.simulators.dwx_ea_faults import EaFault
from raytrade.actors.simulators.dwx_ea_process import EaOptions, EaProcess, start_ea
from raytrade.actors.venues import dwx_files as f
from raytrade.actors.venues import dwx_requests as req
from raytrade.actors.venues.dwx import DwxHistory, DwxVenue, build_execution, timeframe
from raytrade.actors.venues.dwx_book import check_account_kind, comment_matches, order_comment
from raytrade.actors.venues.dwx_client import (
    ClientConfig,
    CommandNotReadError,
    DwxClient,
    EaError,
    ReplyTimeoutError,
)
from raytrade.actors.venues.dwx_orders import DwxExecution
from raytrade.actors.venues.dwx_reader import EaReader
from raytrade.actors.venues.dwx_records import AccountInfo
from raytrade.actors.venues.dwx_symbols import load_venue_config, parse_venue_config
from raytrade.actors.venues.execution import OrderFateUnknownError, OrderRequest
from raytrade.actors.venues.execution_registry import ExecutionSetup, execution_venue
from raytrade.actors.venues.protocol import Subscription, VenueEndpoints
from raytrade.algos.storage.live_commands import issue_command
from raytrade.envs.decision import DecisionRule
from raytrade.envs.errors import ConfigError, TemporaryError
from raytrade.envs.io import load_bars

from tests.dwx_setup import (
    bundled_eurusd_store,
    eurusd_backtest,
    eurusd_csv,
    eurusd_experiment,
    eurusd_store,
)
from tests.exchange_setup import run_sessions
from tests.live_setup import paper_until_exported

EURUSD = Path(backtesting.__file__).parent / "test" / "EURUSD.csv"
VENUE_TOML = """\
[server]
utc_offset_hours = 0

[symbols.EURUSD]
contract_size = 100000
pip_size = 0.0001
pip_value = 10.0
min_lot = 0.01
lot_step = 0.01
max_lot = 100
magic = 4242
"""
EA = EaOptions(bar_seconds=30.0, maximum_orders=10, maximum_lot_size=10.0)
"""A simulated terminal whose EA inputs allow several tickets of several lots."""


def venue_config(folder: Path) -> Path:
    path = folder / "raytrade-dwx.toml"
    path.write_text(VENUE_TOML)
    return path


def ea_tickets(ea: EaProcess) -> dict[int, dict[str, Any]]:
    """The simulator's open orders by ticket (its truth file)."""
    return {int(o["ticket"]): o for o in ea.state()["broker"]["orders"]}


async def ea_truth(ea: EaProcess, check: Callable[[dict[str, Any]], bool],
                   timeout_s: float = 3.0) -> bool:
    """True once the simulator's truth (``ea.state()``) passes ``check``: it saves its
    truth file just after the EA's files, so a client that read a reply or a market-data
    file may be a moment ahead of it."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check(ea.state()):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def ea_shows(ea: EaProcess, check: Callable[[dict[int, dict[str, Any]]], bool],
                   timeout_s: float = 3.0) -> bool:
    """True once the simulator's open orders (``ea_tickets``) pass ``check``."""
    return await ea_truth(ea, lambda _: check(ea_tickets(ea)), timeout_s)


async def ea_settles_at(ea: EaProcess, position: float, timeout_s: float = 3.0) -> bool:
    """True once the simulator's truth shows ``position`` (see ``ea_shows``)."""
    return await ea_shows(ea, lambda _: ea_position(ea) == position, timeout_s)


def ea_position(ea: EaProcess, magic: int = 4242) -> float:
    """Net EURUSD base units of ``magic``'s tickets, from the truth file."""
    lots = sum((o["lots"] if o["type"] == "buy" else -o["lots"])
               for o in ea_tickets(ea).values() if o["magic"] == magic)
    return round(lots * 100_000, 6)


# ---- the file layer and the config, on real files

def test_command_slots_fill_the_lowest_free_slot_never_overwrite_and_withdraw(
        tmp_path: Path) -> None:
    paths = f.DwxPaths(tmp_path)
    paths.check()
    slots = f.CommandSlots(paths)
    a, b = f.command_text(1, "OPEN_ORDER", "EURUSD,buy,0.01"), f.command_text(2, "X", "")
    assert a == "<:1|OPEN_ORDER|EURUSD,buy,0.01:>"
    assert (slots.write(a), slots.write(b)) == (0, 1)
    paths.command(0).unlink()  # the EA consumed slot 0: the next command goes there
    assert slots.write(f.command_text(3, "X", "")) == 0
    assert slots.read(1) == b  # never overwritten
    assert slots.withdraw(1, b) and slots.read(1) is None  # taken back unread
    assert not slots.withdraw(1, b)  # nothing left to take back
    assert not list(paths.folder.glob(".raytrade-*"))  # no temporary file left behind
    with pytest.raises(ConfigError, match="ASCII without"):
        f.command_text(4, "OPEN_ORDER", "EURUSD,buy|sell")


def test_json_file_half_written_is_held_and_a_lasting_invalid_file_is_reported_by_name(
        tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "DWX_Orders.txt"
    reader = f.JsonFile(path, invalid_after_s=2.0, clock=lambda: now[0])
    path.write_bytes(b'{"account_info": {"name": "x"}, "ord')  # the EA mid-write
    assert reader.poll() is None and reader.invalid == 1
    path.write_bytes(b'{"a": 1}\r\n')  # finished: read at once
    change = reader.poll()
    assert change is not None and change.data == {"a": 1}
    assert reader.poll() is None  # unchanged: not parsed again
    path.write_bytes(b'{"a": ')
    assert reader.poll() is None
    now[0] = 2.5  # still the same broken text: reported once, naming the file
    with pytest.raises(f.InvalidFileError, match=r"DWX_Orders\.txt: not valid JSON"):
        reader.poll()
    assert reader.poll() is None
    path.write_bytes("\ufeff".encode("utf-16-le") + '{"b": 2}'.encode("utf-16-le"))
    change = reader.poll()  # the MT5 EA's UTF-16
    assert change is not None and change.data == {"b": 2}


def _orders_text(equity: float, comment: str = "rt-1", kind: str = "buy") -> str:
    """A ``DWX_Orders.txt`` as the stock EA writes it (comments unescaped)."""
    return ('{"account_info": {"name": "x", "number": 7, "currency": "USD", "leverage": 100, '
            f'"free_margin": 1000.0, "balance": 1000.0, "equity": {equity:f}}}, '
            '"orders": {"11": {"magic": 4242, "symbol": "EURUSD", "lots": 0.01, '
            f'"type": "{kind}", "open_price": 1.1, "open_time": "2024.01.02 10:00:00", '
            '"SL": 0.0, "TP": 0.0, "pnl": 0.0, "commission": 0.0, "swap": 0.0, '
            f'"comment": "{comment}"}}}}}}')


def test_ea_reader_orders_file_broken_or_rejected_is_never_current_and_reported(
        tmp_path: Path) -> None:
    now = [0.0]
    paths = f.DwxPaths(tmp_path)
    paths.check()
    orders = paths.file(f.ORDERS)
    reader = EaReader(paths, clock=lambda: now[0], invalid_after_s=2.0, stale_after_s=5.0,
                      offset_s=0, on_restart=lambda: None)
    orders.write_text(_orders_text(1000.0))
    reader.poll()
    assert reader.alive and reader.orders_error == "" and reader.state.orders is not None
    # a manual order's comment with a quote: the EA rewrites the broken file every second
    # with a new equity; it is reported once, timed from the last valid read
    for i in range(1, 8):
        now[0] = i * 0.5
        orders.write_text(_orders_text(1000.0 + i, comment='my "best" trade'))
        reader.poll()
        assert "DWX_Orders.txt: not valid JSON" in reader.orders_error
    assert reader.faults["invalid_file"] == 1
    now[0] = 5.5  # never valid since 0.0: not alive for orders, though the EA runs (its
    reader.poll()  # bars and ticks still count)
    assert not reader.alive and reader.running
    orders.write_text(_orders_text(1001.0))
    reader.poll()
    assert reader.alive and reader.orders_error == ""
    # valid JSON failing the record checks (an MT5 stop-limit ticket): the same
    base = now[0]
    for i in range(1, 6):
        now[0] = base + i * 0.5
        orders.write_text(_orders_text(1000.0 + i, kind="buystoplimit"))
        reader.poll()
        assert "type 'buystoplimit' is not one of" in reader.orders_error
    assert reader.faults["rejected_record"] == 1 and reader.state.orders is not None
    assert reader.state.orders.account.equity == 1001  # the last good one, never used


def test_venue_config_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    config = load_venue_config(venue_config(tmp_path))
    spec = config.spec("EURUSD")
    filters = spec.filters()
    assert (filters.step_size, filters.min_qty, filters.max_qty) == (1000.0, 1000.0, 1e7)
    assert (filters.base_asset, filters.quote_asset, spec.tick_size) == ("EUR", "USD", 1e-5)
    assert spec.lots(23_000.0) == 0.23
    spec.check_tick_value(1.0, "USD", "x.toml")  # 10 USD a pip = 1 USD a point
    with pytest.raises(ConfigError, match=r"x.toml: symbols.EURUSD.pip_value 10 .*value 2"):
        spec.check_tick_value(2.0, "USD", "x.toml")
    with pytest.raises(ConfigError, match=r"no \[symbols\.GBPUSD\] section"):
        config.spec("GBPUSD")
    bad = VENUE_TOML.replace("lot_step = 0.01", "lot_step = -1")
    with pytest.raises(ConfigError, match=r"bad.toml: symbols.EURUSD.lot_step: -1 must be"):
        parse_venue_config(tomllib.loads(bad), "bad.toml")
    with pytest.raises(ConfigError, match=r"symbols.EURUSD.min_lot: 0.015 is not a multiple"):
        parse_venue_config(tomllib.loads(
            VENUE_TOML.replace("min_lot = 0.01", "min_lot = 0.015")), "c.toml")
    with pytest.raises(ConfigError, match=r"c.toml: symbols.EURUSD.lot_step: 0.001 is not a "
                       r"multiple of 0.01: the DWX EA rounds"):
        parse_venue_config(tomllib.loads(
            VENUE_TOML.replace("lot_step = 0.01", "lot_step = 0.001")), "c.toml")
    cid = "rt-" + "x" * 40
    assert order_comment("rt-1a2b3c4d-lz3k0-7-0") == "rt-1a2b3c4d-lz3k0-7-0"
    # 27 characters: the broker's "[sl]" still fits MT's 31
    assert len(order_comment(cid)) == 27 and order_comment(cid) == order_comment(cid)
    assert comment_matches("rt-a-1-1[sl]", "rt-a-1-1") and comment_matches("rt-a-1-1[s",
                                                                           "rt-a-1-1")
    assert not comment_matches("rt-a-1-12", "rt-a-1-1")


def test_account_kind_and_venue_rules_refuse_what_cannot_be_proven(tmp_path: Path) -> None:
    def account(mode: str | None) -> AccountInfo:
        return AccountInfo("x", 7, "USD", 100, 1e4, 1e4, 1e4, mode)

    folder = tmp_path / "DWX"
    assert "cannot be verified" in check_account_kind(account(None), "testnet", folder)
    assert check_account_kind(account(None), "mainnet", folder) == ""  # spelled out
    assert check_account_kind(account("demo"), "testnet", folder) == ""
    with pytest.raises(ConfigError, match="account 7 is a real account, but network testnet"):
        check_account_kind(account("real"), "testnet", folder)
    with pytest.raises(ConfigError, match="is a demo account, but network mainnet"):
        check_account_kind(account("demo"), "mainnet", folder)
    with pytest.raises(ConfigError, match="holds no simulator"):
        check_account_kind(account("demo"), "loopback", folder)
    assert timeframe("1h", 7200) == "H1"
    with pytest.raises(ConfigError, match="4h bars open at server midnight, 2 h off UTC"):
        timeframe("4h", 7200)
    with pytest.raises(ConfigError, match="dwx serves 1m, 5m"):
        timeframe("2h", 0)
    with pytest.raises(ConfigError, match="--files-dir"):
        DwxVenue(VenueEndpoints())
    venue = DwxVenue(VenueEndpoints(files_dir=str(tmp_path)))
    assert venue.execution is None  # no venue config in the folder
    with pytest.raises(ConfigError, match="no websocket stream"):
        venue.stream(Subscription(("EURUSD",), "1h"))
    setup = ExecutionSetup("testnet", None, None, str(tmp_path), None, None, 5.0, 5000, None)
    with pytest.raises(ConfigError, match=r"raytrade-dwx\.toml\): lots and magic numbers"):
        build_execution(setup)


# ---- the client against the simulated EA's failure modes

def test_dwx_client_survives_unread_command_half_written_file_rejection_and_ea_restart(
        tmp_path: Path) -> None:
    files = tmp_path / "MQL4" / "Files"
    faults = (EaFault("reject", at_command=3),
              EaFault("leave_unread", at_command=4, delay_s=1.6),
              EaFault("half_written", at_command=5, file="orders", delay_s=0.4),
              EaFault("restart", at_command=6, delay_s=0.8))
    config = parse_venue_config(tomllib.loads(VENUE_TOML), "venue.toml")
    with start_ea(files, EURUSD, faults=faults, options=EA) as ea:
        async def scenario() -> None:
            client = DwxClient(files, ClientConfig(command_timeout_s=1.0, reply_timeout_s=1.5,
                                                   invalid_after_s=1.0))
            # a demo (testnet) run on an EA that does not say the account kind: refused at
            # start, before any command, unless it is a dry run
            with pytest.raises(ConfigError, match="cannot be verified"):
                await DwxExecution(client, config, network="testnet").ready()
            execution = DwxExecution(client, config, network="loopback")
            await execution.ready()  # commands 0 (RESET_COMMAND_IDS) and 1 (ticks)
            opened = await execution.place(OrderRequest("rt-t-1", "EURUSD", "buy", 3000.0))
            assert (opened.status, opened.filled_qty) == ("filled", 3000.0)  # command 2
            assert await ea_settles_at(ea, 3000.0)
            # 3: the broker refuses the close ("off quotes"): rejected, nothing changed
            refused = await execution.place(OrderRequest("rt-t-2", "EURUSD", "sell", 1000.0,
                                                         reduce_only=True))
            assert refused.status == "rejected" and "off quotes" in refused.reason
            assert await ea_settles_at(ea, 3000.0)
            # 4: the EA leaves the command unread: withdrawn, reported, it never runs
            with pytest.raises(OrderFateUnknownError, match="did not read command"):
                await execution.place(OrderRequest("rt-t-3", "EURUSD", "sell", 1000.0))
            assert client.faults["command_not_read"] == 1
            assert await execution.query("EURUSD", "rt-t-3") is None
            await asyncio.sleep(1.0)  # the EA reads again; the withdrawn file is gone
            assert await ea_settles_at(ea, 3000.0) and ea.state()["commands_read"] == 4
            # the same client id again continues the order, sent once, filled once: the
            # close (4) and the closed trades for its price (5)
            invalid_before = client.files[f.ORDERS].invalid
            again = await execution.place(OrderRequest("rt-t-3", "EURUSD", "sell", 1000.0))
            assert (again.status, again.filled_qty) == ("filled", 1000.0)
            assert await ea_settles_at(ea, 2000.0)
            # after 5 the EA's next orders file stays half written for 0.4 s: held, unused
            await asyncio.sleep(1.6)
            await client.wait_poll()
            assert client.files[f.ORDERS].invalid > invalid_before
            assert client.faults["invalid_file"] == 0 and client.faults["rejected_record"] == 0
            snapshot = await execution.account(("EURUSD",))
            assert snapshot.positions["EURUSD"] == 2000.0 and await ea_settles_at(ea, 2000.0)
            # 6: the EA opens the order, then restarts before its reply reaches us: files
            # deleted, subscriptions and ids forgotten, the broker's orders reloaded
            with pytest.raises(OrderFateUnknownError, match="no reply from the EA"):
                await execution.place(OrderRequest("rt-t-4", "EURUSD", "buy", 2000.0))
            found = await execution.query("EURUSD", "rt-t-4")  # by its comment
            assert found is not None and (found.status, found.filled_qty) == ("filled", 2000.0)
            assert await ea_settles_at(ea, 4000.0)
            deadline = asyncio.get_running_loop().time() + 8.0
            while client.faults["ea_restart"] == 0 or "EURUSD" not in client.state.ticks:
                assert asyncio.get_running_loop().time() < deadline, client.faults
                await client.wait_poll()
            assert await ea_truth(ea, lambda st: st["restarts"] == 1
                                  and st["market_symbols"] == ["EURUSD"]), ea.state()
            flat = await execution.place(OrderRequest("rt-t-5", "EURUSD", "sell", 4000.0))
            assert flat.status == "filled" and await ea_settles_at(ea, 0.0)
            short = await execution.place(OrderRequest("rt-t-6", "EURUSD", "sell", 1000.0))
            assert short.status == "filled" and await ea_settles_at(ea, -1000.0)
            tickets = ea_tickets(ea)
            assert [t["comment"] for t in tickets.values()] == ["rt-t-6"]
            found = await execution.query("EURUSD", "rt-t-6")
            ticket = next(iter(tickets))
            assert found is not None and found.venue_order_id == str(ticket)
            # the rest of the command set: stops on the ticket, then close by magic number
            price = tickets[ticket]["open_price"]
            reply = await req.modify_order(client, ticket, 0.01, stop_loss=price + 0.01,
                                           take_profit=price - 0.01)
            assert reply.text.startswith(f"Successfully modified order {ticket}:")
            assert await ea_shows(
                ea, lambda t: t[ticket]["sl"] == pytest.approx(price + 0.01)), ea_tickets(ea)
            with pytest.raises(EaError, match="MODIFY_ORDER: Error in modifying order"):
                await req.modify_order(client, ticket, 0.01, stop_loss=price - 0.01)
            reply = await req.close_orders_by(client, magic=4242)
            assert reply.text == "Successfully closed 1 orders with magic 4242."
            reply = await req.close_orders_by(client, symbol="EURUSD")
            assert reply.text == "No orders to close with symbol EURUSD."
            assert await ea_settles_at(ea, 0.0)
            bars = await req.historic_bars(client, "EURUSD", "H1", 1_492_592_400_000,
                                           1_492_592_400_000 + 5 * 3_600_000)
            assert [b.ts for b in bars] == [1_492_592_400_000 + i * 3_600_000 for i in range(6)]
            # a lot step finer than the EA's 0.01 (refused in a config file, forced here):
            # the EA opens 0.01 lots for 0.006; the fill is the ticket's, and reported
            fine = dataclasses.replace(config.spec("EURUSD"), lot_step=0.001, min_lot=0.001)
            finer = DwxExecution(client, dataclasses.replace(config, symbols={"EURUSD": fine}),
                                 network="loopback")
            odd = await finer.place(OrderRequest("rt-t-81", "EURUSD", "buy", 600.0))
            assert (odd.status, odd.filled_qty) == ("filled", 1000.0)
            assert client.faults["lots_mismatch"] == 1 and await ea_settles_at(ea, 1000.0)
            # order rt-t-8 was never sent: rt-t-81's ticket is not taken for it
            assert await execution.query("EURUSD", "rt-t-8") is None
            # a manual order whose comment holds a quote: the EA writes it unescaped, the
            # orders file stays broken while the ticket is open: orders are refused naming
            # the file, the fault is reported, and trading resumes once it is closed
            manual = await client.request(
                "OPEN_ORDER", 'EURUSD,buy,0.01,0,0,0,7,my "best",0',
                lambda m: m.text.startswith("Successfully sent order"), family="OPEN_ORDER")
            with pytest.raises(TemporaryError, match=r"DWX_Orders\.txt: not valid JSON"):
                await execution.place(OrderRequest("rt-t-7", "EURUSD", "buy", 1000.0))
            assert client.faults["invalid_file"] == 1 and await ea_settles_at(ea, 1000.0)
            await req.close_order(client, int(manual.text.split()[3].rstrip(":")), 0.0)
            snapshot = await execution.account(("EURUSD",))
            assert snapshot.positions["EURUSD"] == 1000.0
            await client.stop()

        asyncio.run(scenario())


def test_dwx_client_sends_again_a_subscription_the_starting_ea_deleted_unread(
        tmp_path: Path) -> None:
    files = tmp_path / "MQL4" / "Files"
    config = parse_venue_config(tomllib.loads(VENUE_TOML), "venue.toml")
    first = start_ea(files, EURUSD, options=EA)

    async def scenario() -> None:
        client = DwxClient(files, ClientConfig(command_timeout_s=20.0, reply_timeout_s=1.5,
                                               tick_stale_s=0.4))
        await client.start()
        first.kill()  # the terminal dies; its files stay
        pending = asyncio.create_task(client.subscribe_ticks(("EURUSD",)))
        await asyncio.sleep(0.3)
        assert client.slots.read(0) is not None  # waiting in slot 0, unread
        # the EA starts again: OnInit deletes every command file, ours unread, unanswered
        second = await asyncio.to_thread(start_ea, files, EURUSD, options=EA)
        try:
            with pytest.raises(ReplyTimeoutError, match="SUBSCRIBE_SYMBOLS"):
                await pending
            assert client.tick_symbols == set()  # not taken as subscribed
            await client.subscribe_ticks(("EURUSD",))  # the next call sends it again
            deadline = asyncio.get_running_loop().time() + 5.0
            while "EURUSD" not in client.state.ticks:
                assert asyncio.get_running_loop().time() < deadline
                await client.wait_poll()
            assert await ea_truth(second, lambda st: st["market_symbols"] == ["EURUSD"]), \
                second.state()
            # the EA forgets the subscription without the orders file showing it (a restart
            # the poll missed): the market-data file drops EURUSD, the client subscribes
            # again, and the stale EURUSD tick is not kept
            await client.send("SUBSCRIBE_SYMBOLS", "")
            deadline = asyncio.get_running_loop().time() + 5.0
            while client.faults["subscriptions_lost"] == 0:
                assert asyncio.get_running_loop().time() < deadline
                await client.wait_poll()
            assert "EURUSD" not in client.state.ticks
            while "EURUSD" not in client.state.ticks:
                assert asyncio.get_running_loop().time() < deadline
                await client.wait_poll()
            assert await ea_truth(second, lambda st: st["market_symbols"] == ["EURUSD"]), \
                second.state()
            # the EA's history holds the forming bar: dropped once the EA's own last closed
            # bar is known, whatever the UTC offset says
            await client.subscribe_bars((("EURUSD", "H1"),))
            deadline = asyncio.get_running_loop().time() + 5.0
            while ("EURUSD", "H1") not in client.state.bars:
                assert asyncio.get_running_loop().time() < deadline
                await client.wait_poll()
            closed = client.state.bars[("EURUSD", "H1")].ts
            fetched = await DwxHistory(client).fetch("EURUSD", "1h", closed - 7_200_000,
                                                     closed + 7_200_000)
            assert [b.ts for b in fetched] == [closed - 3_600_000 * i for i in (2, 1, 0)]
            # the bid/ask then stays unchanged (the simulator moves it once a bar) beyond
            # tick_stale_s: a limit order is refused, not checked against it
            execution = DwxExecution(client, config, network="loopback")
            await execution.ready()
            while (client.reader.tick_age("EURUSD") or 0.0) <= 0.45:
                await asyncio.sleep(0.05)
            with pytest.raises(TemporaryError, match="bid/ask has not changed for more than"):
                await execution.place(OrderRequest("rt-s-1", "EURUSD", "buy", 1000.0,
                                                   kind="limit", limit_price=0.5))
            assert not ea_tickets(second)
        finally:
            second.stop()
            await client.stop()

    try:
        asyncio.run(scenario())
    finally:
        first.stop()


def test_dwx_client_late_reply_is_not_taken_for_the_next_command_of_its_family(
        tmp_path: Path) -> None:
    files = tmp_path / "MQL4" / "Files"
    # the first order's answer stays invisible (messages file half written) past the
    # reply timeout; the same order again must get its own answer, not the late one
    faults = (EaFault("half_written", at_command=1, file="messages", delay_s=0.7),)
    with start_ea(files, EURUSD, faults=faults, options=EA) as ea:
        async def scenario() -> None:
            client = DwxClient(files, ClientConfig(reply_timeout_s=0.4))
            await client.start()  # command 0
            with pytest.raises(ReplyTimeoutError, match="OPEN_ORDER"):
                await req.open_order(client, "EURUSD", "buy", 0.01, magic=1, comment="late-1")
            second = await req.open_order(client, "EURUSD", "buy", 0.01, magic=1,
                                          comment="late-2")
            assert second.ticket is not None
            assert await ea_shows(ea, lambda t: t.get(second.ticket, {}).get(
                "comment") == "late-2"), ea_tickets(ea)
            await client.stop()

        asyncio.run(scenario())


def test_dwx_client_without_an_ea_reports_the_command_and_refuses_a_second_client(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        client = DwxClient(tmp_path, ClientConfig(command_timeout_s=0.3, poll_s=0.01))
        with pytest.raises(CommandNotReadError, match=r"DWX_Commands_0.txt\); withdrawn"):
            await client.start()  # RESET_COMMAND_IDS: nobody reads it
        assert not list((tmp_path / "DWX").glob("DWX_Commands_*"))  # nothing left to run
        # the EA keeps one subscription list: a second client would clobber it
        with pytest.raises(ConfigError, match="already used by another raytrade client"):
            await DwxClient(tmp_path).start()
        await client.stop()

    asyncio.run(scenario())


# ---- paper parity: the EA replaying real EURUSD bars against the backtest

PARITY_BARS = 520
PARITY_START = 300
PARITY_BAR_S = 0.04
PARITY_WARMUP = 300
"""Warm-up history, more than the FeatureSpec's 140 bars: the slippage model's volatility
(an EWMA of span 20) keeps (1 - 2/21)**n of where its history starts, 1e-6 after 140 bars,
below 1e-12 after 300, so equity can be held to 1e-9 like the websocket venues'."""


def test_paper_actor_on_the_ea_replaying_eurusd_matches_backtest(
        tmp_path: Path, local_ray: None) -> None:
    csv = eurusd_csv(tmp_path, PARITY_BARS)
    table = load_bars(csv, calendar=eurusd_experiment().env.calendar)
    # the shipped forex experiment (algos/experiments/eurusd_1h.toml), paper-traded; its
    # 4-hour decisions without the cost threshold, and weights (seed 6) that trade: 17
    # position changes in the 54 decisions of the backtest below
    store, policy = bundled_eurusd_store(tmp_path / "store", channel="paper", seed=6,
                                         rule=DecisionRule(cost_multiple=0.0, every_bars=4))
    files = tmp_path / "MQL4" / "Files"
    options = dataclasses.replace(EA, bar_seconds=PARITY_BAR_S, start_bar=PARITY_START,
                                  start_on_subscribe=True)
    with start_ea(files, csv, options=options):
        config = PaperConfig(actor="eurusd", symbol="EURUSD", venue="dwx", interval="1h",
                             files_dir=str(files), journal_dir=str(tmp_path / "journal"),
                             warmup_bars=PARITY_WARMUP, speed=3600 / PARITY_BAR_S,
                             stale_after_bars=200,
                             export_every_s=1, use_quote_spread=False)
        last_ts = int(table.ts[-2])
        finals = paper_until_exported(
            [config], store, "eurusd",
            lambda lines: bool(lines) and int(json.loads(lines[-1])["ts"]) >= last_ts, 120)
    assert finals[0]["error"] is None
    journal = Journal(tmp_path / "journal" / "eurusd.sqlite")
    live = journal.db.execute("SELECT d.ts, d.action, d.decided FROM decisions d JOIN bars b "
                              "ON b.ts = d.ts AND b.symbol = d.symbol WHERE b.kind = 'live' "
                              "ORDER BY d.ts").fetchall()
    first = int(np.searchsorted(table.ts, live[0][0]))
    assert int(table.ts[first]) == live[0][0] and first >= PARITY_START - 1
    # every later bar was decided live, weekends and holidays stepped over, none missing
    assert [r[0] for r in live] == [int(t) for t in table.ts[first:len(live) + first]]
    assert len(live) >= 100
    assert any(b - a > 3_600_000 for a, b in itertools.pairwise(r[0] for r in live))
    path = eurusd_backtest(policy, csv, first)
    # the experiment decides on the 4-hour marks: compare on the backtest's decision bars
    decided = {r[0]: (r[1], r[2]) for r in live}
    bt_ts = [int(table.ts[b]) for b in path.bars]
    n = sum(1 for t in bt_ts if t in decided)
    assert n >= 25 and all(t in decided for t in bt_ts[:n])
    assert [decided[t][0] for t in bt_ts[:n]] == path.actions[:n]
    assert [decided[t][1] for t in bt_ts[:n]] == path.targets[:n]
    marked = {ts: e for ts, e, _, _ in journal.equity_rows("EURUSD")}
    live_equity = [marked[int(table.ts[b])] for b in path.marked_at[:n] if
                   int(table.ts[b]) in marked]
    assert len(live_equity) >= n - 1
    np.testing.assert_allclose(live_equity, path.equity[:len(live_equity)], rtol=1e-9)
    assert journal.count("fills") > 5, "the policy traded: fills exercised"
    journal.close()


# ---- the live trader through the EA

LIVE_BAR_S = 0.3
LIVE_SEED = 5
"""A random policy of (-1, 0.5, 1) that reduces a long and reverses within 24 bars from
any first live bar in 400..440 (checked on the backtest: the live decisions are its)."""


def test_live_trader_through_the_ea_opens_reduces_reverses_and_the_kill_switch_flattens(
        tmp_path: Path) -> None:
    csv = eurusd_csv(tmp_path, 520)
    store, _ = eurusd_store(tmp_path / "store", channel="live", seed=LIVE_SEED,
                            positions=(-1.0, 0.5, 1.0))
    files = tmp_path / "MQL4" / "Files"
    options = dataclasses.replace(EA, bar_seconds=LIVE_BAR_S, start_bar=400,
                                  commission_per_lot=7.0)
    with start_ea(files, csv, options=options) as ea:
        paper = PaperConfig(actor="live-eurusd", symbol="EURUSD", venue="dwx", interval="1h",
                            files_dir=str(files), journal_dir=str(tmp_path / "journal"),
                            channel="live", speed=3600 / LIVE_BAR_S, stale_after_bars=40,
                            export_every_s=0.5, use_quote_spread=False)
        config = LiveConfig(
            paper=paper, venue="dwx", network="loopback",
            venue_config=str(venue_config(tmp_path)), capital=5000.0, order_timeout_s=1.0,
            fill_timeout_s=1.0, command_poll_s=0.1, reconcile_every_s=1.0,
            limits=LiveLimits(stale_after_s=86_400.0, max_orders_per_minute=1000,
                              max_symbol_notional=20_000.0, max_total_notional=20_000.0,
                              daily_loss_limit=2_000.0))
        live = LiveSession(config, store, execution_venue("dwx").build(config.setup()))
        marks: dict[str, float] = {}

        def during() -> None:
            ledger = live.ledger
            book = ledger.book("EURUSD") if ledger is not None else None
            if ledger is None or book is None:
                return
            held = [m["position"] for m in ledger.equity_rows("EURUSD")]  # after each bar
            reduced = any(0 < abs(b) < abs(a) and a * b > 0 for a, b in itertools.pairwise(held))
            # a reversal is two legs: the close (leg 0), then the opening (leg 1)
            reversed_ = any(o["leg"] == 1 and o["status"] == "filled"
                            for o in ledger.orders())
            if "flatten" not in marks and reduced and reversed_ and book.position != 0:
                marks["flatten"] = book.position
                issue_command(store.blobs, "flatten", by="carol", reason="kill switch")
            elif "flatten" in marks and any(h.kind == "flatten" for h in
                                            ledger.halts("EURUSD")) and \
                    book.position == 0 and ea_position(ea) == 0 and \
                    not ledger.orders(open_only=True):
                marks["flat"] = 1.0

        run_sessions([live], 45, lambda: "flat" in marks, during)
        assert "flat" in marks, marks
        state = ea.state()["broker"]
    ledger = LiveLedger(config.orders_journal_path)
    try:
        book = ledger.book("EURUSD")
        assert book is not None and book.position == 0.0
        assert ledger.halts("EURUSD")[0].kind == "flatten"
        assert ("flatten", "carol") in [(e["kind"], e["by"]) for e in ledger.events()]
        assert not ledger.events(kind="mismatch")
        orders = ledger.orders()
        filled = [o for o in orders if o["status"] == "filled"]
        # every order that opened a ticket carries its client id in the ticket's comment
        # (MT4 renames a partially closed ticket's comment "to #<the remainder's ticket>")
        comment = {int(o["ticket"]): o["comment"] for o in state["orders"] + state["history"]}
        opened = [o for o in filled if not o["reduce_only"]]
        tickets = [int(str(o["venue_order_id"]).split(",")[-1]) for o in opened]
        assert opened and all(comment[t] == o["cid"] or comment[t].startswith("to #")
                              for o, t in zip(opened, tickets, strict=True))
        # the journal's fills add up to what the broker did: flat on both sides
        assert sum(f["qty"] if f["side"] == "buy" else -f["qty"]
                   for f in ledger.fills()) == pytest.approx(0.0, abs=1e-6)
        assert not [o for o in state["orders"] if o["magic"] == 4242]
        assert len(ledger.fills()) >= 4
        # the commission the broker charged (MT4: on opening, 7 USD a lot) is journaled
        charged = -sum(o["commission"] for o in state["orders"] + state["history"]
                       if o["magic"] == 4242)
        assert charged > 0 and sum(f["commission"] for f in ledger.fills()) == \
            pytest.approx(charged, abs=0.011)
        # and the money: flat again, the allocation's cash moved by the broker's realized
        # PnL and commission (each rounded to the cent by the broker), so every open and
        # close was journaled at the broker's price
        closed = [o for o in state["history"] if o["magic"] == 4242]
        realized = sum(o["profit"] + o["commission"] for o in closed)
        assert book.cash - 5000.0 == pytest.approx(realized, abs=0.01 * len(closed) + 1e-6)
    finally:
        ledger.close()
