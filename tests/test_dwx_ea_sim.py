"""The DWX EA simulator as a separate process on real files, replaying the real EURUSD hourly
bars shipped inside the ``backtesting`` package.

Commands are written by hand in the DWX Connect form (``<:id|COMMAND|content:>``) into the
lowest free ``DWX_Commands_<i>.txt``, as the Darwinex Python client does; answers are read
back from the EA's files, tolerating the half-written files the real EA can leave, and
compared with the simulator's own truth file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import backtesting
import pytest
from raytrade.actors.simulators.dwx_ea import SimulatedEa
from raytrade.actors.simulators.dwx_ea_bars import load_ea_bars
from raytrade.actors.simulators.dwx_ea_broker import Broker, BrokerSpec, MtError
from raytrade.actors.simulators.dwx_ea_faults import EaFault, parse_faults
from raytrade.actors.simulators.dwx_ea_files import EaSettings, decode_command
from raytrade.actors.simulators.dwx_ea_format import server_epoch
from raytrade.actors.simulators.dwx_ea_process import EaOptions, EaProcess, start_ea
from raytrade.envs.errors import ConfigError, DataValidationError

from tests.live_setup import wait_for

EURUSD = Path(backtesting.__file__).parent / "test" / "EURUSD.csv"
ACCOUNT_KEYS = ["name", "number", "currency", "leverage", "free_margin", "balance", "equity"]
ORDER_KEYS = ["magic", "symbol", "lots", "type", "open_price", "open_time", "SL", "TP", "pnl",
              "commission", "swap", "comment"]


def _send(dwx: Path, command_id: int, command: str, content: str = "") -> Path:
    """Write a command to the lowest free command file (atomically, by rename)."""
    for i in range(50):
        if not (dwx / f"DWX_Commands_{i}.txt").exists():
            return _put(dwx, i, command_id, command, content)
    raise AssertionError("all 50 command files are taken")


def _put(dwx: Path, index: int, command_id: int, command: str, content: str) -> Path:
    """Write a command to command file ``index`` (atomically, by rename)."""
    path = dwx / f"DWX_Commands_{index}.txt"
    tmp = path.with_suffix(".txt.tmp")
    tmp.write_text(f"<:{command_id}|{command}|{content}:>")
    tmp.replace(path)
    return path


def _read_json(path: Path) -> Any | None:
    """The file's JSON, or None while it is missing, empty or half written."""
    try:
        text = path.read_bytes().decode("cp1252").strip()
        return json.loads(text) if text else None
    except (OSError, json.JSONDecodeError):
        return None


def _wait(what: str, probe: Callable[[], Any], timeout_s: float = 5.0) -> Any:
    """``live_setup.wait_for``, polling the EA's files every 20 ms."""
    return wait_for(probe, timeout_s, what, poll_s=0.02)


class Messages:
    """Reads the EA's messages file, remembering which keys it has seen."""

    def __init__(self, dwx: Path) -> None:
        self.path = dwx / "DWX_Messages.txt"
        self.last = 0

    def next(self, timeout_s: float = 5.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            data = _read_json(self.path) or {}
            fresh = sorted((int(k), v) for k, v in data.items() if int(k) > self.last)
            if not fresh:
                return None
            self.last = fresh[0][0]
            message: dict[str, Any] = fresh[0][1]
            return message
        result: dict[str, Any] = _wait("a message", probe, timeout_s)
        return result


def _orders(dwx: Path) -> dict[str, Any]:
    data: dict[str, Any] = _wait("the orders file", lambda: _read_json(dwx / "DWX_Orders.txt"))
    return data


def _start(tmp_path: Path, faults: tuple[EaFault, ...] = (), **options: Any) -> EaProcess:
    opts = EaOptions(bar_seconds=0.4, start_bar=300, maximum_orders=3, maximum_lot_size=1.0,
                     min_lot=0.05, lot_step=0.05, **options)
    return start_ea(tmp_path / "Files", EURUSD, faults=faults, options=opts)


def test_dwx_ea_sim_commands_consumed_answered_and_trades_round_trip(tmp_path: Path) -> None:
    with _start(tmp_path) as ea:
        dwx, msgs = ea.dwx_dir, Messages(ea.dwx_dir)
        first = _orders(dwx)
        assert list(first["account_info"]) == ACCOUNT_KEYS  # the stock EA: no demo/real field
        assert first["orders"] == {}
        assert ea.banner["symbol"] == "EURUSD" and ea.state()["account_kind"] == "demo"

        path = _send(dwx, 1, "SUBSCRIBE_SYMBOLS", "EURUSD")
        assert msgs.next() == {"type": "INFO", "time": msgs_time(dwx, msgs),
                               "message": "Successfully subscribed to: EURUSD"}
        assert not path.exists()
        _send(dwx, 2, "SUBSCRIBE_SYMBOLS_BAR_DATA", "EURUSD,H1")
        assert msgs.next()["message"] == "Successfully subscribed to bar data: EURUSD,H1"
        bar = _wait("bar data", lambda: _read_json(dwx / "DWX_Bar_Data.txt"))["EURUSD_H1"]
        truth = ea.state()
        assert truth["cursor"] >= 300
        # the published bar is a CLOSED one: it opened at most one hour before the server now
        assert server_epoch(bar["time"]) <= truth["server_time"] - 3600
        assert (dwx / "DWX_Bar_Data.txt").read_bytes().endswith(b"}\r\n")

        _send(dwx, 3, "OPEN_ORDER", "EURUSD,buy,0.10,0,0,0,77,rt:abc,0")
        opened = msgs.next()["message"]
        assert opened.startswith("Successfully sent order ") and ": EURUSD, buy, 0.10, " in opened
        ticket = opened.split()[3].rstrip(":")
        # file 1 first, then file 0 holding a repeated id: the EA deletes file 0 without a
        # word, stops for that tick, and next ticks stop at the missing file 0, so file 1
        # waits until a newer command fills file 0 and then runs AFTER it
        stranded = _put(dwx, 1, 4, "OPEN_ORDER", "EURUSD,sell,0.07,0,0,0,77,bad,0")
        _put(dwx, 0, 3, "OPEN_ORDER", "EURUSD,buy,0.10,0,0,0,77,dup,0")
        assert _wait("the duplicate consumed", lambda: not (dwx / "DWX_Commands_0.txt").exists())
        time.sleep(0.2)
        assert stranded.exists()
        _send(dwx, 5, "OPEN_ORDER", "EURUSD,buy,0.01,0,0,0,77,small,0")
        assert msgs.next()["description"] == ("Lot size out of range (min: 0.050000, max: "
                                              "100.000000): 0.010000")
        assert msgs.next() == {"type": "ERROR", "time": msgs_time(dwx, msgs),
                               "error_type": "OPEN_ORDER",
                               "description": "Could not open order: invalid trade volume"}
        order = _wait("the order", lambda: _orders(dwx)["orders"].get(ticket))
        assert list(order) == ORDER_KEYS
        assert (order["type"], order["lots"], order["magic"], order["comment"]) == (
            "buy", 0.1, 77, "rt:abc")
        assert list(ea.state()["broker"]["orders"][0].values())[:3] == [int(ticket), "EURUSD",
                                                                         "buy"]

        _send(dwx, 6, "CLOSE_ORDER", f"{ticket},0.05")  # MT4: the rest gets a new ticket
        assert msgs.next()["message"] == f"Successfully closed order: {ticket}, EURUSD, 0.05"
        rest_ticket, rest = _wait("the rest", lambda: [
            (t, o) for t, o in _orders(dwx)["orders"].items() if t != ticket])[0]
        assert rest_ticket != ticket and rest["comment"] == f"from #{ticket}"
        assert (rest["lots"], rest["open_price"]) == (0.05, order["open_price"])
        bid = ea.state()["broker"]["bid"]
        sl, tp = round(bid - 0.05, 5), round(bid + 0.05, 5)
        _send(dwx, 7, "MODIFY_ORDER", f"{rest_ticket},0.05,0,{sl},{tp},0")
        assert msgs.next()["message"].startswith(f"Successfully modified order {rest_ticket}")
        assert _wait("the new stops", lambda: _orders(dwx)["orders"][rest_ticket]["SL"] == sl)
        _send(dwx, 8, "MODIFY_ORDER", f"{rest_ticket},0.05,0,{sl},{tp},0")
        assert msgs.next()["description"] == f"Error in modifying order {rest_ticket}: no error"
        _send(dwx, 9, "CLOSE_ORDERS_BY_MAGIC", "77")
        assert msgs.next()["message"] == "Successfully closed 1 orders with magic 77."
        _send(dwx, 10, "CLOSE_ORDER", f"{ticket},0")
        assert msgs.next()["description"] == f"Could not close position {ticket}: invalid ticket"

        _send(dwx, 11, "GET_HISTORIC_TRADES", "30")
        assert msgs.next()["message"] == "Successfully read historic trades."
        trades = _read_json(dwx / "DWX_Historic_Trades.txt")
        assert trades[ticket]["comment"] == f"to #{rest_ticket}"
        assert trades[rest_ticket]["comment"] == f"from #{ticket}"
        assert {trades[t]["magic"] for t in (ticket, rest_ticket)} == {77}
        assert [v["type"] for v in trades.values()][-1] == "unknown"  # the deposit
        state = ea.state()["broker"]
        booked = round(sum(h["profit"] for h in state["history"]), 2)
        assert state["orders"] == [] and abs(booked - state["balance"]) < 1e-6
        assert _wait("the booked balance", lambda: _orders(dwx)["account_info"]["balance"]
                     == pytest.approx(state["balance"]))

        now = ea.state()["server_time"]
        _send(dwx, 12, "GET_HISTORIC_DATA", f"EURUSD,H1,{now - 10 * 3600},{now}")
        assert msgs.next()["message"] == "Successfully read historic data for EURUSD_H1."
        rates = _read_json(dwx / "DWX_Historic_Data.txt")["EURUSD_H1"]
        bars = load_ea_bars(EURUSD, "H1")
        index = {int(t): i for i, t in enumerate(bars.ts)}
        for key, got in rates.items():  # the real bars; CopyRates adds the forming one
            i = index[server_epoch(key)]
            real = [round(float(c[i]), 5) for c in (bars.open, bars.high, bars.low, bars.close)]
            one_tick = got["open"] == got["close"] and got["tick_volume"] == 1.0
            assert real == [got[k] for k in ("open", "high", "low", "close")] or (
                key == list(rates)[-1] and one_tick), key
        assert server_epoch(next(iter(rates))) >= now - 10 * 3600


def msgs_time(dwx: Path, msgs: Messages) -> str:
    """The "time" field of the message ``msgs`` last returned (the PC's UTC clock)."""
    data = _read_json(dwx / "DWX_Messages.txt") or {}
    value: str = data[str(msgs.last)]["time"]
    assert time.strptime(value, "%Y.%m.%d %H:%M:%S")
    return value


def test_dwx_ea_sim_each_fault_kind_is_observable_and_a_kill_resumes(tmp_path: Path) -> None:
    faults = (EaFault("leave_unread", 0, delay_s=1.0), EaFault("reject", 1),
              EaFault("half_written", 2, delay_s=0.6, file="messages"),
              EaFault("restart", 3, delay_s=0.8))
    ea = _start(tmp_path, faults, account="real", trade_mode_field=True)
    try:
        dwx, msgs = ea.dwx_dir, Messages(ea.dwx_dir)
        assert _orders(dwx)["account_info"]["trade_mode"] == "real"
        left = _send(dwx, 1, "SUBSCRIBE_SYMBOLS", "EURUSD")
        time.sleep(0.5)
        assert left.exists(), "leave_unread: the command file is still unread"
        assert msgs.next(timeout_s=3)["message"] == "Successfully subscribed to: EURUSD"
        assert not left.exists()

        _send(dwx, 2, "OPEN_ORDER", "EURUSD,buy,0.10,0,0,0,5,rejected,0")
        assert msgs.next()["description"] == "Could not open order: off quotes"
        assert ea.state()["broker"]["orders"] == []

        _send(dwx, 3, "GET_HISTORIC_TRADES", "1")
        path = dwx / "DWX_Messages.txt"

        def truncated() -> bool:
            raw = path.read_bytes() if path.exists() else b""
            return bool(raw) and _read_json(path) is None
        assert _wait("a half-written messages file", truncated, timeout_s=3)
        assert msgs.next()["message"] == "Successfully read historic trades."

        _send(dwx, 4, "OPEN_ORDER", "EURUSD,sell,0.10,0,0,0,5,kept,0")
        assert _wait("the restart", lambda: not ea.state()["ea_running"], timeout_s=3)
        assert not path.exists(), "OnDeinit deleted the messages file"
        orders = _orders(dwx)["orders"]  # rewritten by OnInit's first tick
        ticket = next(iter(orders))
        assert orders[ticket]["comment"] == "kept" and ea.state()["restarts"] == 1
        market = dwx / "DWX_Market_Data.txt"
        assert _wait("market data", market.exists)
        assert _read_json(market) == {}, "subscriptions were forgotten"
        msgs.last = 0
        _send(dwx, 1, "SUBSCRIBE_SYMBOLS", "EURUSD")  # ids were forgotten: id 1 runs again
        assert msgs.next()["message"] == "Successfully subscribed to: EURUSD"
        balance = ea.state()["broker"]["balance"]
    finally:
        ea.kill()
    assert (dwx / "DWX_Orders.txt").exists(), "a crash leaves the files behind"
    with _start(tmp_path, account="real") as again:
        assert again.banner["resumed"] is True
        state = again.state()
        assert [o["ticket"] for o in state["broker"]["orders"]] == [int(ticket)]
        assert state["broker"]["balance"] == balance
        assert ticket in _orders(dwx)["orders"]


def test_dwx_ea_bars_bad_row_names_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "eurusd.csv"
    lines = EURUSD.read_text().splitlines()[:6]
    lines[4] = lines[4].replace(lines[4].split(",")[2], "0.5", 1)  # high below open
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError, match=r"high_ge_open_close' broken at 5"):
        load_ea_bars(bad, "H1")
    assert len(load_ea_bars(EURUSD, "H1")) == 5000  # weekends are closures, not errors


def test_dwx_ea_faults_unknown_field_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"faults\[0\]: unknown fields \['at_order'\]"):
        parse_faults({"faults": [{"kind": "reject", "at_order": 1}]})
    assert parse_faults({"faults": [{"kind": "restart", "at_command": 2}]})[0].seconds == 1.0


def test_dwx_ea_broker_stops_pending_and_margin_follow_mt4() -> None:
    broker = Broker(BrokerSpec(leverage=100, commission_per_lot=7.0), balance=1_000.0,
                    server_time=0, bid=1.10000)
    with pytest.raises(MtError) as money:  # 1 lot of EURUSD needs 1,100 USD at 1:100
        broker.open("EURUSD", "buy", 1.0, broker.ask, 0, 0, 1, "", 0)
    assert money.value.code == 134
    with pytest.raises(MtError) as stops:  # a buy's stop loss above the bid
        broker.open("EURUSD", "buy", 0.1, broker.ask, 1.2, 0, 1, "", 0)
    assert stops.value.code == 130
    buy = broker.open("EURUSD", "buy", 0.1, broker.ask, 1.09, 1.13, 1, "x" * 40, 0)
    assert len(buy.comment) == 31 and buy.open_price == 1.1001
    assert buy.commission == -0.7 and broker.equity() == pytest.approx(1_000 - 1.0 - 0.7)
    limit = broker.open("EURUSD", "selllimit", 0.1, 1.12, 0, 0, 2, "lim", 0)
    broker.bar_closed(1.1205, 1.0950, 1.1000, server_time=3600)  # reaches 1.12: the limit fills
    assert broker.orders[limit.ticket].type == "sell"
    assert broker.orders[limit.ticket].open_time == 3600
    broker.bar_closed(1.1010, 1.0890, 1.0900, server_time=7200)  # the buy's stop loss
    closed = broker.history[buy.ticket]
    assert (closed.close_price, closed.comment[-4:], closed.profit) == (1.09, "[sl]", -101.0)
    assert broker.balance == 899.0 - 0.7  # the stop's loss and the buy's commission
    assert broker.orders[limit.ticket].commission == -0.7  # charged when the limit filled


def test_dwx_ea_clock_pace_closes_the_market_over_a_weekend(tmp_path: Path) -> None:
    bars = load_ea_bars(EURUSD, "H1")
    friday = next(i for i in range(len(bars) - 1) if bars.ts[i + 1] - bars.ts[i] > 3600)
    gap = int(bars.ts[friday + 1] - bars.ts[friday]) // 3600
    ea = SimulatedEa(EaSettings(tmp_path, bar_seconds=0.01, start_bar=friday, pace="clock"),
                     BrokerSpec(), bars)
    ea.on_init()
    ea.next_bar_at = time.monotonic()  # Friday's last bar closes now
    ea.step()
    assert not ea.broker.market_open and ea.cursor == friday + 1
    assert ea.broker.server_time == bars.ts[friday] + 3600
    _put(ea.settings.dwx_dir, 0, 1, "OPEN_ORDER", "EURUSD,buy,0.01,0,0,0,1,weekend,0")
    ea.step()
    messages = _read_json(ea.settings.dwx_dir / "DWX_Messages.txt")
    assert [m["description"] for m in messages.values()] == [
        "Could not open order: market is closed"]
    time.sleep(0.01 * (gap - 1) + 0.02)
    ea.step()
    assert ea.broker.market_open and ea.broker.server_time >= bars.ts[friday + 1]
    ea.on_deinit()


def test_dwx_ea_server_clock_offset_and_utf16_files(tmp_path: Path) -> None:
    bars = load_ea_bars(EURUSD, "H1")
    ea = SimulatedEa(EaSettings(tmp_path, start_bar=10, server_utc_offset_h=2.0,
                                encoding="utf-16"), BrokerSpec(), bars)
    ea.on_init()
    ea.tick()
    assert ea.broker.server_time == bars.ts[10] + 7200  # a UTC+2 broker's clock
    assert ea.closed_rate(9).time == bars.ts[9] + 7200
    raw = (ea.settings.dwx_dir / "DWX_Market_Data.txt").read_bytes()
    assert raw == b"\xff\xfe" + "{}\r\n".encode("utf-16-le")
    assert decode_command(b"\xff\xfe" + "<:1|X|\r\n:>".encode("utf-16-le")) == "<:1|X|:>"
    ea.on_deinit()
    assert not (ea.settings.dwx_dir / "DWX_Orders.txt").exists()


def test_dwx_ea_restart_fault_runs_the_command_and_never_writes_its_answer(
        tmp_path: Path) -> None:
    ea = SimulatedEa(EaSettings(tmp_path, start_bar=10), BrokerSpec(), load_ea_bars(EURUSD, "H1"),
                     faults=(EaFault("restart", 1, delay_s=5.0),))
    ea.on_init()
    messages = ea.settings.dwx_dir / "DWX_Messages.txt"
    seen_at_deinit: list[Any] = []
    deinit = ea.on_deinit

    def on_deinit() -> None:  # what a client could have read before the files went
        seen_at_deinit.append(_read_json(messages))
        deinit()

    ea.on_deinit = on_deinit  # type: ignore[method-assign]
    _put(ea.settings.dwx_dir, 0, 1, "SUBSCRIBE_SYMBOLS", "EURUSD")
    _put(ea.settings.dwx_dir, 1, 2, "OPEN_ORDER", "EURUSD,buy,0.01,0,0,0,5,lost_reply,0")
    ea.tick()
    # command 0 answered; command 1 ran at the broker, then the terminal went down unanswered
    assert [m["message"] for m in seen_at_deinit[0].values()] == [
        "Successfully subscribed to: EURUSD"]
    assert [o.comment for o in ea.broker.orders.values()] == ["lost_reply"]
    assert ea.restarts == 1 and not ea.state()["ea_running"] and not messages.exists()
    assert not ea.going_down
    ea.on_deinit()
