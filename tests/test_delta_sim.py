"""The loopback Delta Exchange (``raytrade exchange sim --venue delta``) on a real loopback
port: REST signed by hand as Delta documents it (not a production client), both websockets
with a real client, replayed bars, every fault kind of the shared schedule and the command
line."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from raytrade.actors.simulators.delta_exchange import DeltaExchangeSim
from raytrade.actors.simulators.delta_market import DeltaReplay
from raytrade.actors.simulators.exchange_accounts import AccountConfig
from raytrade.actors.simulators.exchange_faults import Fault
from raytrade.actors.simulators.exchange_prices import FixedPrices
from raytrade.envs.bars import BarTable
from raytrade.envs.io import load_bars
from raytrade.envs.market import resolve_sources
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.live_setup import banner_process

KEY, SECRET = "delta-test-key", "delta-test-secret-do-not-log"
Reply = tuple[int, dict[str, str], Any]


def rest(sim: DeltaExchangeSim, method: str, path: str, body: dict[str, Any] | None = None,
         query: str = "", *, key: str = KEY, secret: str = SECRET, ts_offset_s: int = 0,
         signature: str | None = None, user_agent: str = "raytrade-test",
         timeout: float = 5.0, sign: bool = True) -> Reply:
    """One request, signed as Delta documents: hex HMAC-SHA256 over method + timestamp +
    path + ?query + body."""
    text = json.dumps(body, separators=(",", ":")) if body is not None else ""
    ts = str(int(time.time()) + ts_offset_s)
    q = f"?{query}" if query else ""
    headers = {"Content-Type": "application/json"}
    if user_agent is not None:
        headers["User-Agent"] = user_agent
    if sign:
        headers.update({"api-key": key, "timestamp": ts, "signature": signature or hmac.new(
            secret.encode(), (method + ts + path + q + text).encode(),
            hashlib.sha256).hexdigest()})
    req = urllib.request.Request(f"{sim.rest_url}{path}{q}", data=text.encode() or None,
                                 method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, _lower(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, _lower(exc.headers), json.loads(raw)
        except ValueError:
            return exc.code, _lower(exc.headers), raw.decode()


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def order(sim: DeltaExchangeSim, cid: str, side: str = "buy", size: int = 5,
          timeout: float = 5.0, **extra: Any) -> Reply:
    return rest(sim, "POST", "/v2/orders", {"product_id": 27, "size": size, "side": side,
                                            "order_type": "market_order",
                                            "client_order_id": cid, **extra},
                timeout=timeout)


@contextlib.contextmanager
def private(sim: DeltaExchangeSim, channels: tuple[str, ...] = ("orders", "v2/user_trades",
                                                                 "positions")
            ) -> Iterator[ClientConnection]:
    """An authenticated private socket following ``channels`` on BTCUSD, snapshots read."""
    with connect(sim.private_ws_url, open_timeout=5) as ws:
        yield _authenticated(ws, channels)


def _authenticated(ws: ClientConnection, channels: tuple[str, ...]) -> ClientConnection:
    ts = int(time.time())
    sig = hmac.new(SECRET.encode(), f"GET{ts}/live".encode(), hashlib.sha256).hexdigest()
    ws.send(json.dumps({"type": "key-auth", "payload": {"api-key": KEY, "signature": sig,
                                                         "timestamp": ts}}))
    assert json.loads(ws.recv(timeout=3)) == {"type": "key-auth", "success": True,
                                              "status_code": 200, "status": "authenticated"}
    ws.send(json.dumps({"type": "subscribe", "payload": {"channels": [
        {"name": c, "symbols": ["BTCUSD"]} for c in channels]}}))
    assert json.loads(ws.recv(timeout=3))["type"] == "subscriptions"
    for _ in set(channels) & {"orders", "positions"}:
        assert json.loads(ws.recv(timeout=3))["action"] == "snapshot"
    return ws


def frames(ws: ClientConnection, n: int, timeout: float = 3.0) -> list[dict[str, Any]]:
    return [json.loads(ws.recv(timeout=timeout)) for _ in range(n)]


def start_sim(**kw: Any) -> DeltaExchangeSim:
    account = AccountConfig(KEY, SECRET, {}, Decimal(10_000))
    prices = kw.pop("prices", FixedPrices({"BTCUSDT": 40_000.0}, half_spread_bps=1.0))
    return DeltaExchangeSim([account], prices, symbols=["BTCUSDT"], **kw).start()


@pytest.fixture()
def sim() -> Iterator[DeltaExchangeSim]:
    server = start_sim()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def btc() -> BarTable:
    return load_bars(resolve_sources(("sample:BTCUSDT",))[0]).slice(0, 400)


def test_delta_sim_signed_requests_as_documented_accepted_others_refused(
        sim: DeltaExchangeSim) -> None:
    status, headers, body = rest(sim, "GET", "/v2/orders", query="product_ids=27&states=open")
    assert status == 200 and body == {"success": True, "result": [],
                                      "meta": {"after": None, "before": None}}
    assert abs(int(headers["request-in-time"]) / 1e6 - time.time()) < 5
    assert rest(sim, "GET", "/v2/wallet/balances", signature="0" * 64)[::2] == (
        401, {"success": False, "error": {"code": "Signature Mismatch"}})
    assert rest(sim, "GET", "/v2/wallet/balances", key="nope")[::2] == (
        401, {"success": False, "error": {"code": "invalid_api_key"}})
    status, _, body = rest(sim, "GET", "/v2/wallet/balances", ts_offset_s=-10)
    assert status == 401 and body["error"]["code"] == "expired_signature"
    assert body["error"]["context"]["server_time"] - body["error"]["context"][
        "request_time"] >= 9
    assert rest(sim, "GET", "/v2/wallet/balances", sign=False)[::2] == (
        401, {"error": "unauthorized", "success": False})
    status, _, page = rest(sim, "GET", "/v2/wallet/balances", user_agent="")
    assert status == 403 and "Request blocked by CDN" in page
    assert sim.state()["order_requests"] == 0


def test_delta_sim_market_order_fills_into_position_wallet_and_private_stream(
        sim: DeltaExchangeSim) -> None:
    with connect(sim.private_ws_url, open_timeout=5) as anon:
        anon.send(json.dumps({"type": "subscribe", "payload": {"channels": [
            {"name": "orders", "symbols": ["BTCUSD"]}]}}))
        assert json.loads(anon.recv(timeout=3))["channels"] == [
            {"name": "orders", "error": "subscription forbidden on orders. Unauthorized user"}]
        anon.send(json.dumps({"type": "key-auth", "payload": {
            "api-key": KEY, "signature": "ab", "timestamp": int(time.time())}}))
        assert json.loads(anon.recv(timeout=3))["status"] == "invalid_signature"
    assert rest(sim, "POST", "/v2/products/27/orders/leverage", {"leverage": 20})[2][
        "result"] == {"leverage": 20, "order_margin": "0", "product_id": 27}
    with private(sim) as ws:
        status, _, body = order(sim, "entry-1")
        assert status == 200 and body["result"]["state"] == "closed"
        assert body["result"]["average_fill_price"] == "40004"  # the ask, on the 0.5 tick
        create, fill, trade, pos = frames(ws, 4)
        assert (create["action"], create["state"], create["unfilled_size"]) == ("create", "open", 5)
        assert (fill["reason"], fill["state"], fill["client_order_id"]) == ("fill", "closed",
                                                                            "entry-1")
        assert (trade["type"], trade["s"], trade["p"], trade["po"], trade["c"]) == (
            "v2/user_trades", 5, "40004", 5, "entry-1")
        assert (pos["action"], pos["size"], pos["entry_price"]) == ("create", 5, "40004")
        assert rest(sim, "GET", "/v2/positions", query="product_id=27")[2]["result"] == {
            "size": 5, "entry_price": "40004"}
        fee = Decimal("5") * Decimal("0.001") * Decimal("40004") * Decimal("0.0005")
        wallet = rest(sim, "GET", "/v2/wallet/balances")[2]
        assert Decimal(wallet["result"][0]["balance"]) == Decimal(10_000) - fee
        assert Decimal(wallet["result"][0]["position_margin"]) == Decimal("10.001")  # lev 20
        assert rest(sim, "GET", "/v2/orders/client_order_id/entry-1")[2]["result"]["id"] == \
            body["result"]["id"]
        status, _, closing = order(sim, "exit-1", side="sell", reduce_only=True)
        assert closing["result"]["average_fill_price"] == "39996"
        assert [f.get("action") for f in frames(ws, 4)][-1] == "delete"
        margined = rest(sim, "GET", "/v2/positions/margined")[2]["result"]
        assert margined == []
        # realised: 5 x 0.001 x (39996 - 40004) = -0.04, and two fees
        fee2 = Decimal("5") * Decimal("0.001") * Decimal("39996") * Decimal("0.0005")
        wallet = rest(sim, "GET", "/v2/wallet/balances")[2]["result"][0]
        assert Decimal(wallet["balance"]) == Decimal(10_000) - fee - fee2 - Decimal("0.04")


def test_delta_sim_order_rules_refused_with_delta_codes(sim: DeltaExchangeSim) -> None:
    def code(**body: Any) -> tuple[int, Any]:
        status, _, reply = rest(sim, "POST", "/v2/orders", {
            "product_id": 27, "side": "buy", "order_type": "market_order", **body})
        return status, reply["error"]["code"]

    assert code(size=0) == (400, "bad_schema")
    assert code(size=1.5) == (400, "bad_schema")
    assert code(size=1, limit_price="0") == (400, "bad_schema")
    assert code(size=1, client_order_id="x" * 33) == (400, "bad_schema")
    assert code(size=100_000) == (400, "insufficient_margin")  # 4000 USD notional x 25
    assert code(size=1, product_id=999) == (400, "invalid_contract")
    assert code(size=1, reduce_only=True) == (400, "reduce_only_violation")
    status, _, body = rest(sim, "GET", "/v2/orders/client_order_id/never")
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert rest(sim, "DELETE", "/v2/orders", {"id": 12345, "product_id": 27})[2][
        "error"]["code"] == "open_order_not_found"
    status, _, body = rest(sim, "POST", "/v2/orders", {
        "product_id": 27, "size": 2, "side": "buy", "order_type": "limit_order",
        "limit_price": "30000", "time_in_force": "gtc", "client_order_id": "rest-1"})
    assert body["result"]["state"] == "open"
    cancelled = rest(sim, "DELETE", "/v2/orders", {"client_order_id": "rest-1",
                                                    "product_id": 27})[2]["result"]
    assert (cancelled["state"], cancelled["cancellation_reason"]) == ("cancelled",
                                                                       "cancelled_by_user")


def test_delta_sim_candles_and_public_stream_agree_with_the_bars(btc: BarTable) -> None:
    replay = DeltaReplay([btc], speed=6000.0, start=300, start_on_connect=True)
    sim_ = DeltaExchangeSim([AccountConfig(KEY, SECRET, {}, Decimal(1000))], replay=replay,
                            heartbeat_s=0.05)
    with sim_ as sim, connect(sim.public_ws_url, open_timeout=5) as ws:
        ws.send(json.dumps({"type": "enable_heartbeat"}))
        ws.send(json.dumps({"type": "subscribe", "payload": {"channels": [
            {"name": "candlestick_5m", "symbols": ["BTCUSD"]},
            {"name": "ticker", "symbols": ["BTCUSD"]}]}}))
        assert json.loads(ws.recv(timeout=3)) == {"type": "subscriptions", "channels": [
            {"name": "candlestick_5m", "symbols": ["BTCUSD"]},
            {"name": "ticker", "symbols": ["BTCUSD"]}]}
        ws.send(json.dumps({"type": "ping"}))
        seen: list[dict[str, Any]] = []
        while sum(1 for m in seen if m.get("type") == "ticker") < 3:
            seen.append(json.loads(ws.recv(timeout=3)))
        assert {"type": "pong"} in seen and {"type": "heartbeat"} in seen
        res_us = 300_000_000
        candles = [m for m in seen if m.get("type") == "candlestick_5m"]
        finals = [m for m, nxt in itertools.pairwise(candles)
                  if (nxt["ts"] - nxt["ts"] % res_us) > (m["ts"] - m["ts"] % res_us)]
        assert len(finals) >= 2
        for m in finals:
            i = int(((m["ts"] - m["ts"] % res_us) // 1000 - int(btc.ts[0])) // 300_000)
            bar = btc.bar(i)
            assert (m["o"], m["h"], m["l"], m["c"], m["v"]) == (
                bar.open, bar.high, bar.low, bar.close, bar.volume)
        tick = [m for m in seen if m.get("type") == "ticker"][-1]
        assert tick["d"][0]["i"] == 27 and tick["sy"] == "BTCUSD"
        server_us = rest(sim, "GET", "/v2/settings", sign=False)[2]["result"]["server_time"]
        t_end = server_us // 1_000_000
        rows = rest(sim, "GET", "/v2/history/candles", sign=False,
                    query=f"resolution=5m&symbol=BTCUSD&start={t_end - 3600}&end={t_end}"
                    )[2]["result"]
        times = [r["time"] for r in rows]
        assert times == sorted(times, reverse=True) and len(rows) == 12
        assert rows[0]["time"] + 300 > t_end  # the forming candle is included
        for r in rows[2:]:
            bar = btc.bar(int((r["time"] * 1000 - int(btc.ts[0])) // 300_000))
            assert (r["open"], r["high"], r["low"], r["close"], r["volume"]) == (
                bar.open, bar.high, bar.low, bar.close, bar.volume)


REFUSALS = [("error_5xx_before", 503, "unavailable"), ("rate_limit", 429,
                                                       "rate_limit_exceeded"),
            ("timestamp", 401, "expired_signature"),
            ("insufficient_balance", 400, "insufficient_margin"),
            ("filter_lot_size", 400, "bad_schema"), ("ban", 429, "rate_limit_exceeded")]


def test_delta_sim_refusing_faults_answer_as_delta_and_place_nothing(
        sim: DeltaExchangeSim) -> None:
    sim.schedule(Fault(kind, at_order=i, retry_after_s=0.3)  # type: ignore[arg-type]
                 for i, (kind, _, _) in enumerate(REFUSALS))
    for i, (kind, status, code) in enumerate(REFUSALS):
        got, headers, body = order(sim, f"refused-{i}")
        assert (got, body["error"]["code"]) == (status, code), kind
        if status == 429:
            assert 0 < int(headers["x-rate-limit-reset"]) <= 300
    assert rest(sim, "GET", "/v2/wallet/balances")[0] == 429  # banned for 0.3 s
    time.sleep(0.35)
    assert rest(sim, "GET", "/v2/wallet/balances")[0] == 200
    state = sim.state()
    assert state["accounts"][KEY]["orders"] == []
    assert state["faults_fired"] == {kind: 1 for kind, _, _ in REFUSALS}


def test_delta_sim_faults_after_placing_leave_an_order_to_find(sim: DeltaExchangeSim) -> None:
    sim.schedule([Fault("accept_then_timeout", 0, delay_s=0.5), Fault("error_5xx_after", 1),
                  Fault("place_late", 2, delay_s=0.3)])
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        order(sim, "held-1", timeout=0.2)
    assert rest(sim, "GET", "/v2/orders/client_order_id/held-1")[2]["result"]["state"] == \
        "closed"
    assert order(sim, "after-1")[0] == 503
    assert rest(sim, "GET", "/v2/orders/client_order_id/after-1")[2]["result"]["state"] == \
        "closed"
    assert order(sim, "late-1")[0] == 503
    assert rest(sim, "GET", "/v2/orders/client_order_id/late-1")[0] == 404
    time.sleep(0.4)
    assert rest(sim, "GET", "/v2/orders/client_order_id/late-1")[2]["result"]["state"] == \
        "closed"


def test_delta_sim_partial_fill_market_rest_later_limit_ioc_rest_cancelled(
        sim: DeltaExchangeSim) -> None:
    sim.schedule([Fault("partial_fill", 0, fraction=0.4, delay_s=0.2),
                  Fault("partial_fill", 1, fraction=0.5)])
    with private(sim, ("v2/user_trades",)) as ws:
        first = order(sim, "part-1", size=10)[2]["result"]
        assert (first["state"], first["unfilled_size"]) == ("open", 6)
        assert [t["s"] for t in frames(ws, 2)] == [4, 6]
        assert rest(sim, "GET", "/v2/orders/client_order_id/part-1")[2]["result"]["state"] == \
            "closed"
        ioc = rest(sim, "POST", "/v2/orders", {
            "product_id": 27, "size": 4, "side": "sell", "order_type": "limit_order",
            "limit_price": "39000", "time_in_force": "ioc", "client_order_id": "part-2"}
                   )[2]["result"]
        assert (ioc["state"], ioc["unfilled_size"]) == ("cancelled", 2)
        assert frames(ws, 1)[0]["s"] == 2


@pytest.mark.parametrize(("kind", "close_code"), [("drop_user_stream", None),
                                                  ("expire_listen_key", 1001)])
def test_delta_sim_private_stream_faults_cut_sockets_and_lose_fills(
        kind: str, close_code: int | None) -> None:
    sim = start_sim(faults=[Fault(kind, 0)])  # type: ignore[arg-type]
    try:
        with private(sim, ("orders",)) as ws:
            assert order(sim, "cut-1")[2]["result"]["state"] == "closed"
            assert frames(ws, 1)[0]["action"] == "create"
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=3)
        rcvd = info.value.rcvd
        assert (rcvd.code if rcvd else None) == close_code
        assert sim.state()["sockets"]["private"] == 0
    finally:
        sim.stop()


def test_delta_sim_loopback_controls_change_state_behind_the_traders_back(
        sim: DeltaExchangeSim) -> None:
    with private(sim, ("positions",)) as ws:
        assert sim.adjust_position("BTCUSD", 3) == 3
        assert (frames(ws, 1)[0]["action"], rest(sim, "GET", "/v2/positions",
                                                 query="product_id=27")[2]["result"]) == (
            "create", {"size": 3, "entry_price": "40000"})
    assert sim.adjust_balance("-100") == Decimal(9_900)
    req = urllib.request.Request(f"{sim.rest_url}/sim/adjust", method="POST",
                                 data=json.dumps({"symbol": "BTCUSD"}).encode())
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 400 and "position_delta" in json.loads(err.value.read())["error"]
    with connect(sim.public_ws_url, open_timeout=5) as ws:
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=3)) == {"type": "pong"}
        assert sim.drop_sockets("public", 1000) == 1
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=3)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


def test_delta_sim_rate_quota_exceeded_answers_429_with_reset_header(
        sim: DeltaExchangeSim) -> None:
    sim.rate_quota = 7
    assert rest(sim, "GET", "/v2/wallet/balances")[0] == 200  # weight 3
    assert rest(sim, "GET", "/v2/wallet/balances")[0] == 200  # 6
    status, headers, body = rest(sim, "GET", "/v2/wallet/balances")
    assert (status, body) == (429, {"success": False, "error": {"code":
                                                                "rate_limit_exceeded"}})
    assert 0 < int(headers["x-rate-limit-reset"]) <= 300_000


def test_delta_sim_command_line_serves_products_from_the_replay(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps([{"key": KEY, "secret": SECRET,
                                     "futures_wallet": "1000"}]))
    os.chmod(accounts, 0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "raytrade.scripts.cli", "exchange", "sim", "--venue",
           "delta", "--accounts", str(accounts), "--replay", "sample:ETHUSDT", "--port",
           str(port), "--start", "100"]
    with banner_process(cmd) as banner:
        assert banner["symbols"] == ["ETHUSD"] and banner["product_ids"] == {"ETHUSD": 3136}
        assert banner["private_ws_url"] == f"ws://127.0.0.1:{port}/private"
        with urllib.request.urlopen(f"{banner['rest_url']}/v2/products/ETHUSD",
                                    timeout=5) as resp:
            product = json.loads(resp.read())["result"]
        assert (product["id"], product["contract_value"], product["tick_size"]) == (
            3136, "0.01", "0.05")
