"""The loopback Binance exchange (``raytrade exchange sim``), on a real loopback port: REST
with hand-written HMAC signing (not the production client), the user stream over a real
websocket, every scheduled fault, the loopback extras and the command line."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
from raytrade.actors.simulators.binance_exchange import BinanceExchangeSim
from raytrade.actors.simulators.exchange_accounts import AccountConfig, load_accounts
from raytrade.actors.simulators.exchange_book import (
    ExchangeBook,
    ExchangeError,
    NewOrder,
    SymbolSpec,
)
from raytrade.actors.simulators.exchange_faults import Fault, load_faults, parse_faults
from raytrade.actors.simulators.exchange_gate import Limits
from raytrade.actors.simulators.exchange_prices import FeedPrices, FixedPrices, ReplayPrices
from raytrade.actors.simulators.replay_server import ReplayServer
from raytrade.envs.bars import BarTable
from raytrade.envs.errors import ConfigError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

KEY, SECRET = "test-key", "test-secret-do-not-log"
SPOT = "/api/v3"
FUT = "/fapi/v1"

EXECUTION_REPORT_KEYS = {"e", "E", "s", "c", "S", "o", "f", "q", "p", "P", "F", "g", "C", "x",
                         "X", "r", "i", "l", "z", "L", "n", "N", "T", "t", "v", "I", "w", "m",
                         "M", "O", "Z", "Y", "Q", "W", "V"}
ORDER_TRADE_UPDATE_KEYS = {"s", "c", "S", "o", "f", "q", "p", "ap", "sp", "x", "X", "i", "l",
                           "z", "L", "N", "n", "T", "t", "b", "a", "m", "R", "wt", "ot", "ps",
                           "cp", "rp", "pP", "si", "ss", "V", "pm", "gtd"}
SPOT_FULL_KEYS = {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime", "price",
                  "origQty", "executedQty", "origQuoteOrderQty", "cummulativeQuoteQty",
                  "status", "timeInForce", "type", "side", "workingTime",
                  "selfTradePreventionMode", "fills"}
FUTURES_ORDER_KEYS = {"clientOrderId", "cumQty", "cumQuote", "executedQty", "orderId",
                      "avgPrice", "origQty", "price", "reduceOnly", "side", "positionSide",
                      "status", "stopPrice", "closePosition", "symbol", "timeInForce", "type",
                      "origType", "updateTime", "workingType", "priceProtect", "priceMatch",
                      "selfTradePreventionMode", "goodTillDate"}


Reply = tuple[int, dict[str, str], Any]


def http(method: str, url: str, headers: dict[str, str] | None = None, body: str = "",
         timeout: float = 5.0) -> Reply:
    """One request; (status, headers, JSON body)."""
    req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                                 headers=headers or {})
    if body:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def signed(sim: BinanceExchangeSim, method: str, path: str, params: dict[str, Any], *,
           key: str = KEY, secret: str = SECRET, body: dict[str, Any] | None = None,
           ts_offset_ms: int = 0, timeout: float = 5.0, signature: str | None = None) -> Reply:
    """A SIGNED request as Binance documents it: HMAC-SHA256 over query string + body."""
    params = {**params, "timestamp": int(time.time() * 1000) + ts_offset_ms}
    query = urllib.parse.urlencode(params)
    form = urllib.parse.urlencode(body or {})
    sig = signature or hmac.new(secret.encode(), (query + form).encode(),
                                hashlib.sha256).hexdigest()
    return http(method, f"{sim.rest_url}{path}?{query}&signature={sig}",
                {"X-MBX-APIKEY": key}, form, timeout=timeout)


def order(sim: BinanceExchangeSim, market: str, cid: str, side: str = "BUY",
          qty: str = "0.01", **extra: Any) -> Reply:
    path = f"{SPOT}/order" if market == "spot" else f"{FUT}/order"
    return signed(sim, "POST", path, {"symbol": "BTCUSDT", "side": side, "type": "MARKET",
                                      "quantity": qty, "newClientOrderId": cid, **extra})


def listen_key(sim: BinanceExchangeSim, market: str) -> str:
    path = f"{SPOT}/userDataStream" if market == "spot" else f"{FUT}/listenKey"
    status, _, body = http("POST", sim.rest_url + path, {"X-MBX-APIKEY": KEY})
    assert status == 200
    return str(body["listenKey"])


def stream(sim: BinanceExchangeSim, market: str) -> tuple[str, ClientConnection]:
    """A listen key and a websocket following it, registered on the server."""
    lk = listen_key(sim, market)
    ws = connect(f"{sim.ws_url}/ws/{lk}", open_timeout=5)
    deadline = time.monotonic() + 5
    while not any(k["listenKey"] == lk and k["connections"] for k in
                  sim.state()["listen_keys"]):
        assert time.monotonic() < deadline, "stream never registered"
        time.sleep(0.005)
    return lk, ws


def events(ws: ClientConnection, n: int, timeout: float = 3.0) -> list[dict[str, Any]]:
    return [json.loads(ws.recv(timeout=timeout)) for _ in range(n)]


def start_sim(**kw: Any) -> BinanceExchangeSim:
    account = AccountConfig(KEY, SECRET, {"USDT": Decimal(10_000), "BTC": Decimal(1)},
                            Decimal(10_000))
    prices = kw.pop("prices", FixedPrices({"BTCUSDT": 40_000.0}, half_spread_bps=1.0))
    return BinanceExchangeSim([account], prices, symbols=["BTCUSDT"], **kw)


@pytest.fixture()
def sim() -> Iterator[BinanceExchangeSim]:
    server = start_sim().start()
    yield server
    server.stop()


def account_orders(sim: BinanceExchangeSim) -> list[dict[str, Any]]:
    return list(sim.state()["accounts"][KEY]["orders"])


# ---- signing and time
def test_signed_request_bad_signature_is_1022(sim: BinanceExchangeSim) -> None:
    status, _, body = signed(sim, "GET", f"{SPOT}/account", {}, secret="wrong")
    assert (status, body) == (400, {"code": -1022, "msg": "Signature for this request is "
                                                          "not valid."})


def test_signed_request_unknown_key_is_2015(sim: BinanceExchangeSim) -> None:
    for path in (f"{SPOT}/account", "/fapi/v2/account"):
        status, _, body = signed(sim, "GET", path, {}, key="nobody")
        assert (status, body) == (401, {"code": -2015, "msg": "Invalid API-key, IP, or "
                                                              "permissions for action."})


@pytest.mark.parametrize("offset_ms", [-6000, 1500])
def test_signed_request_timestamp_outside_window_is_1021(sim: BinanceExchangeSim,
                                                         offset_ms: int) -> None:
    status, _, body = signed(sim, "GET", f"{SPOT}/account", {}, ts_offset_ms=offset_ms)
    assert (status, body) == (400, {"code": -1021, "msg": "Timestamp for this request is "
                                                          "outside of the recvWindow."})
    if offset_ms < 0:  # a wider window accepts it
        assert signed(sim, "GET", f"{SPOT}/account", {"recvWindow": 10_000},
                      ts_offset_ms=offset_ms)[0] == 200


def test_server_time_skew_moves_the_window() -> None:
    with start_sim(skew_ms=20_000) as sim:
        _, _, t = http("GET", f"{sim.rest_url}/fapi/v1/time")
        assert abs(t["serverTime"] - time.time() * 1000 - 20_000) < 2000
        assert signed(sim, "GET", "/fapi/v2/account", {})[2]["code"] == -1021
        assert signed(sim, "GET", "/fapi/v2/account", {}, ts_offset_ms=20_000)[0] == 200


def test_signed_params_split_between_query_and_body_accepted(sim: BinanceExchangeSim) -> None:
    status, _, body = signed(sim, "POST", f"{SPOT}/order",
                             {"symbol": "BTCUSDT", "side": "BUY"},
                             body={"type": "MARKET", "quantity": "0.001",
                                   "newClientOrderId": "split-1"})
    assert status == 200 and body["status"] == "FILLED"


def test_signature_over_percent_encoded_params_verifies(sim: BinanceExchangeSim) -> None:
    status, _, body = order(sim, "spot", "x:y/z.1_-", qty="0.001")
    assert (status, body["clientOrderId"]) == (200, "x:y/z.1_-")


def test_every_response_carries_weight_and_order_counts(sim: BinanceExchangeSim) -> None:
    into_window = time.time() % 10  # rate windows are fixed 10 s / 1 min slots
    if into_window > 9.0:
        time.sleep(10.05 - into_window)
    _, h1, _ = http("GET", f"{sim.rest_url}{SPOT}/time")
    _, h2, _ = http("GET", f"{sim.rest_url}{SPOT}/exchangeInfo")
    assert int(h2["x-mbx-used-weight-1m"]) == int(h1["x-mbx-used-weight-1m"]) + 20
    _, h, _ = order(sim, "spot", "count-1", qty="0.001")
    assert (h["x-mbx-order-count-10s"], h["x-mbx-order-count-1d"]) == ("1", "1")
    _, h, _ = order(sim, "futures", "count-2")
    assert h["x-mbx-order-count-1m"] == "1" and "x-mbx-used-weight-1m" in h


def test_keep_alive_requests_answer_without_delayed_ack_stall(sim: BinanceExchangeSim
                                                               ) -> None:
    conn = HTTPConnection("127.0.0.1", sim.port, timeout=5)
    latencies = []
    for _ in range(15):
        t0 = time.perf_counter()
        conn.request("GET", "/api/v3/time")
        conn.getresponse().read()
        latencies.append(time.perf_counter() - t0)
    conn.close()
    assert sorted(latencies)[7] < 0.02  # Nagle + delayed ACK would make it ~40 ms


def test_rate_limits_answer_429_with_retry_after() -> None:
    with start_sim(limits=Limits(spot_weight_1m=40, spot_orders_10s=2)) as sim:
        into_window = time.time() % 10  # rate windows are fixed 10 s / 1 min slots
        if into_window > 9.0:
            time.sleep(10.05 - into_window)
        assert [order(sim, "spot", f"rl-{i}", qty="0.001")[0] for i in range(3)] == \
            [200, 200, 429]
        assert order(sim, "spot", "rl-3", qty="0.001")[2]["code"] == -1015
        assert http("GET", f"{sim.rest_url}{SPOT}/exchangeInfo")[0] == 200  # weight 24
        status, headers, body = http("GET", f"{sim.rest_url}{SPOT}/exchangeInfo")
        assert (status, body["code"]) == (429, -1003) and int(headers["retry-after"]) >= 1
        assert http("GET", f"{sim.rest_url}{FUT}/time")[0] == 200  # futures weigh apart
        assert [o["clientOrderId"] for o in account_orders(sim)] == ["rl-0", "rl-1"]


# ---- exchangeInfo and prices
def test_exchange_info_spot_filters_as_binance(sim: BinanceExchangeSim) -> None:
    _, _, info = http("GET", f"{sim.rest_url}{SPOT}/exchangeInfo?symbol=BTCUSDT")
    (sym,) = info["symbols"]
    assert (sym["symbol"], sym["baseAsset"], sym["quoteAsset"]) == ("BTCUSDT", "BTC", "USDT")
    filters = {f["filterType"]: f for f in sym["filters"]}
    assert filters["PRICE_FILTER"] == {"filterType": "PRICE_FILTER", "minPrice": "0.01000000",
                                       "maxPrice": "1000000.00000000",
                                       "tickSize": "0.01000000"}
    assert filters["LOT_SIZE"] == {"filterType": "LOT_SIZE", "minQty": "0.00001000",
                                   "maxQty": "9000.00000000", "stepSize": "0.00001000"}
    assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
    assert filters["NOTIONAL"]["applyMinToMarket"] is True
    q = urllib.parse.quote('["BTCUSDT"]')
    assert len(http("GET", f"{sim.rest_url}{SPOT}/exchangeInfo?symbols={q}")[2]["symbols"]) == 1
    assert http("GET", f"{sim.rest_url}{SPOT}/exchangeInfo?symbol=NOPEUSDT")[2] == \
        {"code": -1121, "msg": "Invalid symbol."}


def test_exchange_info_futures_filters_as_binance(sim: BinanceExchangeSim) -> None:
    _, _, info = http("GET", f"{sim.rest_url}{FUT}/exchangeInfo")
    (sym,) = info["symbols"]
    assert (sym["contractType"], sym["marginAsset"], sym["pricePrecision"],
            sym["quantityPrecision"]) == ("PERPETUAL", "USDT", 1, 3)
    filters = {f["filterType"]: f for f in sym["filters"]}
    assert filters["LOT_SIZE"] == {"filterType": "LOT_SIZE", "minQty": "0.001",
                                   "maxQty": "1000", "stepSize": "0.001"}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.1"
    assert filters["MIN_NOTIONAL"] == {"filterType": "MIN_NOTIONAL", "notional": "100"}


def test_ticker_and_premium_index_follow_the_price_source(sim: BinanceExchangeSim) -> None:
    assert http("GET", f"{sim.rest_url}{SPOT}/ticker/price?symbol=BTCUSDT")[2] == \
        {"symbol": "BTCUSDT", "price": "40000.00000000"}
    fut = http("GET", f"{sim.rest_url}{FUT}/ticker/price?symbol=BTCUSDT")[2]
    assert fut["price"] == "40000.0" and isinstance(fut["time"], int)
    mark = http("GET", f"{sim.rest_url}{FUT}/premiumIndex?symbol=BTCUSDT")[2]
    assert mark["markPrice"] == "40000.00000000"


# ---- spot orders
def test_spot_market_buy_full_response_charges_base_commission(sim: BinanceExchangeSim) -> None:
    status, _, body = order(sim, "spot", "buy-1", qty="0.01000")
    assert status == 200 and set(body) == SPOT_FULL_KEYS
    assert (body["status"], body["executedQty"], body["cummulativeQuoteQty"],
            body["orderListId"], body["price"]) == ("FILLED", "0.01000000", "400.04000000",
                                                    -1, "0.00000000")
    (fill,) = body["fills"]
    assert (fill["price"], fill["qty"], fill["commission"], fill["commissionAsset"]) == \
        ("40004.00000000", "0.01000000", "0.00001000", "BTC")
    _, _, acct = signed(sim, "GET", f"{SPOT}/account", {})
    balances = {b["asset"]: b["free"] for b in acct["balances"]}
    assert balances == {"BTC": "1.00999000", "USDT": "9599.96000000"}
    _, _, sell = order(sim, "spot", "sell-1", side="SELL", qty="0.01")
    assert sell["fills"][0]["commissionAsset"] == "USDT"
    assert sell["fills"][0]["commission"] == "0.39996000"  # 0.01 * 39996 * 0.1 %
    _, _, q = signed(sim, "GET", f"{SPOT}/order", {"symbol": "BTCUSDT",
                                                     "origClientOrderId": "buy-1"})
    assert (q["status"], q["clientOrderId"], q["stopPrice"], q["isWorking"]) == \
        ("FILLED", "buy-1", "0.00000000", True)


def test_spot_ack_and_result_response_types(sim: BinanceExchangeSim) -> None:
    _, _, ack = order(sim, "spot", "ack-1", qty="0.001", newOrderRespType="ACK")
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    _, _, res = order(sim, "spot", "res-1", qty="0.001", newOrderRespType="RESULT")
    assert set(res) == SPOT_FULL_KEYS - {"fills"}


def test_limit_ioc_beyond_the_touch_expires_unfilled(sim: BinanceExchangeSim) -> None:
    _, _, body = order(sim, "spot", "lim-1", qty="0.001", type="LIMIT", price="39000.00",
                       timeInForce="IOC")
    assert (body["status"], body["executedQty"]) == ("EXPIRED", "0.00000000")
    _, _, body = order(sim, "spot", "lim-2", qty="0.001", type="LIMIT", price="41000.00",
                       timeInForce="IOC")
    assert (body["status"], body["fills"][0]["price"]) == ("FILLED", "40004.00000000")


def test_query_unknown_order_is_2013_and_cancel_unknown_is_2011(sim: BinanceExchangeSim
                                                                ) -> None:
    for path in (f"{SPOT}/order", f"{FUT}/order"):
        ref = {"symbol": "BTCUSDT", "origClientOrderId": "never-sent"}
        assert signed(sim, "GET", path, ref)[2] == {"code": -2013,
                                                    "msg": "Order does not exist."}
        assert signed(sim, "DELETE", path, ref)[2] == {"code": -2011,
                                                       "msg": "Unknown order sent."}
    order(sim, "spot", "final-1", qty="0.001")
    assert signed(sim, "DELETE", f"{SPOT}/order", {"symbol": "BTCUSDT",
                                                   "origClientOrderId": "final-1"})[2] == \
        {"code": -2011, "msg": "Unknown order sent."}


@pytest.mark.parametrize(("market", "code", "msg"), [
    ("spot", -2010, "Duplicate order sent."),
    ("futures", -4116, "ClientOrderId is duplicated.")])
def test_duplicate_open_client_id_refused_final_one_reusable(market: str, code: int,
                                                             msg: str) -> None:
    with start_sim(faults=[Fault("partial_fill", 0, delay_s=30.0)]) as sim:
        _, _, first = order(sim, market, "dup-1", qty="0.010")
        assert first["status"] == ("PARTIALLY_FILLED" if market == "spot" else "NEW")
        path = f"{SPOT}/openOrders" if market == "spot" else f"{FUT}/openOrders"
        assert [o["clientOrderId"] for o in signed(sim, "GET", path, {})[2]] == ["dup-1"]
        assert order(sim, market, "dup-1", qty="0.010")[2] == {"code": code, "msg": msg}
        opath = f"{SPOT}/order" if market == "spot" else f"{FUT}/order"
        status, _, canceled = signed(sim, "DELETE", opath, {"symbol": "BTCUSDT",
                                                            "origClientOrderId": "dup-1"})
        assert status == 200 and canceled["status"] == "CANCELED"
        assert canceled["executedQty"].rstrip("0") == "0.005"
        _, _, again = order(sim, market, "dup-1", qty="0.010", newOrderRespType="RESULT")
        assert again["status"] == "FILLED"
        _, _, q = signed(sim, "GET", opath, {"symbol": "BTCUSDT", "origClientOrderId": "dup-1"})
        assert q["orderId"] == again["orderId"]  # the newest order with that id


@pytest.mark.parametrize(("market", "params", "code", "msg"), [
    ("spot", {"quantity": "0.000015"}, -1013, "Filter failure: LOT_SIZE"),
    ("spot", {"quantity": "0.00001"}, -1013, "Filter failure: NOTIONAL"),
    ("spot", {"quantity": "101"}, -1013, "Filter failure: MARKET_LOT_SIZE"),
    ("spot", {"type": "LIMIT", "price": "40000.005", "timeInForce": "IOC"}, -1013,
     "Filter failure: PRICE_FILTER"),
    ("spot", {"quantity": "0.5"}, -2010,
     "Account has insufficient balance for requested action."),
    ("spot", {"symbol": "ETHUSDT"}, -1121, "Invalid symbol."),
    ("spot", {"newClientOrderId": "bad id!"}, -1100,
     "Illegal characters found in parameter 'newClientOrderId'; legal range is "
     "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'."),
    ("futures", {"quantity": "0.0015"}, -1111,
     "Precision is over the maximum defined for this asset."),
    ("futures", {"quantity": "0"}, -4003, "Quantity less than or equal to zero."),
    ("futures", {"quantity": "0.001"}, -4164,
     "Order's notional must be no smaller than 100 (unless you choose reduce only)."),
    ("futures", {"quantity": "0.3"}, -2019, "Margin is insufficient."),
    ("futures", {"reduceOnly": "true"}, -2022, "ReduceOnly Order is rejected."),
    ("futures", {"type": "LIMIT", "price": "40000.05", "timeInForce": "IOC"}, -4014,
     "Price not increased by tick size."),
])
def test_order_breaking_a_rule_is_refused_with_binance_code(sim: BinanceExchangeSim,
                                                            market: str,
                                                            params: dict[str, str],
                                                            code: int, msg: str) -> None:
    status, _, body = order(sim, market, "rule-1", **params)
    assert (status, body) == (400, {"code": code, "msg": msg})
    assert account_orders(sim) == []


def test_order_without_a_price_is_refused_market_closed() -> None:
    prices = FixedPrices({"BTCUSDT": 40_000.0})
    with start_sim(prices=prices) as sim:
        prices.remove("BTCUSDT")
        assert order(sim, "spot", "closed-1", qty="0.001")[2] == \
            {"code": -1013, "msg": "Market is closed."}


# ---- futures
def test_futures_market_orders_track_position_entry_and_wallet(sim: BinanceExchangeSim
                                                               ) -> None:
    status, _, body = order(sim, "futures", "f-1", qty="0.010", newOrderRespType="RESULT")
    assert status == 200 and set(body) == FUTURES_ORDER_KEYS
    assert (body["status"], body["avgPrice"], body["executedQty"], body["positionSide"]) == \
        ("FILLED", "40004.00000000", "0.010", "BOTH")
    _, _, ack = order(sim, "futures", "f-2", qty="0.005")
    assert (ack["status"], ack["executedQty"]) == ("NEW", "0.000")  # ACK: the default
    (risk,) = signed(sim, "GET", "/fapi/v2/positionRisk", {"symbol": "BTCUSDT"})[2]
    assert (risk["positionAmt"], risk["leverage"], risk["marginType"]) == ("0.015", "1",
                                                                           "cross")
    assert Decimal(risk["entryPrice"]) == Decimal("40004")
    _, _, flip = order(sim, "futures", "f-3", side="SELL", qty="0.025",
                       newOrderRespType="RESULT")
    assert flip["avgPrice"] == "39996.00000000"
    _, _, acct = signed(sim, "GET", "/fapi/v2/account", {})
    (pos,) = acct["positions"]
    assert (pos["positionAmt"], Decimal(pos["entryPrice"])) == ("-0.010", Decimal("39996"))
    realized = Decimal("0.015") * (Decimal("39996") - Decimal("40004"))
    fees = (Decimal("0.015") * 40004 + Decimal("0.025") * 39996) * Decimal("0.0005")
    assert Decimal(acct["totalWalletBalance"]) == 10_000 + realized - fees
    assert Decimal(acct["assets"][0]["walletBalance"]) == 10_000 + realized - fees


def test_book_reduce_only_closes_and_realizes_pnl() -> None:
    prices = FixedPrices({"BTCUSDT": 40_000.0})
    book = ExchangeBook([AccountConfig("a", "s", {}, Decimal(1000))],
                        [SymbolSpec.default("BTCUSDT", "futures", 40_000.0)], prices)
    book.place("a", "futures", NewOrder("BTCUSDT", "BUY", "MARKET", Decimal("0.02")), 1)
    prices.set("BTCUSDT", 41_000.0)
    with pytest.raises(ExchangeError) as err:
        book.place("a", "futures", NewOrder("BTCUSDT", "SELL", "MARKET", Decimal("0.03"),
                                            reduce_only=True), 2)
    assert err.value.code == -2022
    ups = book.place("a", "futures", NewOrder("BTCUSDT", "SELL", "MARKET", Decimal("0.02"),
                                              reduce_only=True), 3)
    assert ups[-1].fill is not None and ups[-1].fill.realized_pnl == Decimal(20)
    assert book.accounts["a"].positions["BTCUSDT"].amount == 0
    assert book.accounts["a"].wallet == 1000 + 20 - Decimal("0.4") - Decimal("0.41")


# ---- user stream
def test_spot_user_stream_sends_new_trade_then_balances(sim: BinanceExchangeSim) -> None:
    _, ws = stream(sim, "spot")
    with ws:
        _, _, body = order(sim, "spot", "ev-1", qty="0.01")
        new, trade, balances = events(ws, 3)
    assert set(new) == EXECUTION_REPORT_KEYS and set(trade) == EXECUTION_REPORT_KEYS
    assert (new["x"], new["X"], new["c"], new["t"], new["N"], new["i"]) == \
        ("NEW", "NEW", "ev-1", -1, None, body["orderId"])
    assert (trade["x"], trade["X"], trade["l"], trade["z"], trade["L"], trade["n"],
            trade["N"], trade["t"], trade["Z"]) == \
        ("TRADE", "FILLED", "0.01000000", "0.01000000", "40004.00000000", "0.00001000",
         "BTC", body["fills"][0]["tradeId"], "400.04000000")
    assert balances["e"] == "outboundAccountPosition"
    assert {b["a"]: b["f"] for b in balances["B"]} == {"BTC": "1.00999000",
                                                        "USDT": "9599.96000000"}


def test_futures_user_stream_sends_order_trade_updates_and_account(
        sim: BinanceExchangeSim) -> None:
    _, ws = stream(sim, "futures")
    with ws:
        order(sim, "futures", "fev-1", qty="0.010")
        new, trade, account = events(ws, 3)
    assert new["e"] == trade["e"] == "ORDER_TRADE_UPDATE"
    assert set(new["o"]) == ORDER_TRADE_UPDATE_KEYS == set(trade["o"])
    assert (new["o"]["x"], new["o"]["X"], new["o"]["t"]) == ("NEW", "NEW", 0)
    o = trade["o"]
    assert (o["x"], o["X"], o["l"], o["z"], o["L"], o["N"], o["ap"], o["ps"], o["R"]) == \
        ("TRADE", "FILLED", "0.010", "0.010", "40004.0", "USDT", "40004.00000000", "BOTH",
         False)
    assert Decimal(o["n"]) == Decimal("0.20002")
    assert account["e"] == "ACCOUNT_UPDATE" and account["a"]["m"] == "ORDER"
    (p,) = account["a"]["P"]
    assert (p["s"], p["pa"], Decimal(p["ep"]), p["ps"]) == ("BTCUSDT", "0.010",
                                                             Decimal(40004), "BOTH")
    assert Decimal(account["a"]["B"][0]["wb"]) == Decimal(10_000) - Decimal("0.20002")


def test_spot_cancel_event_carries_cancel_id_and_original_id() -> None:
    with start_sim(faults=[Fault("partial_fill", 0, delay_s=30.0)]) as sim:
        _, ws = stream(sim, "spot")
        with ws:
            order(sim, "spot", "cx-1", qty="0.010")
            events(ws, 3)
            signed(sim, "DELETE", f"{SPOT}/order", {"symbol": "BTCUSDT",
                                                    "origClientOrderId": "cx-1",
                                                    "newClientOrderId": "cx-cancel"})
            (ev,) = events(ws, 1)
    assert (ev["x"], ev["X"], ev["c"], ev["C"]) == ("CANCELED", "CANCELED", "cx-cancel",
                                                   "cx-1")


def test_listen_key_keepalive_extends_and_expiry_closes_the_stream() -> None:
    with start_sim(listen_key_ttl_s=0.6) as sim:
        lk, ws = stream(sim, "spot")
        with ws:
            for _ in range(3):
                time.sleep(0.3)
                status, _, body = http("PUT", f"{sim.rest_url}{SPOT}/userDataStream?"
                                       f"listenKey={lk}", {"X-MBX-APIKEY": KEY})
                assert (status, body) == (200, {})
            assert listen_key(sim, "spot") == lk  # an account's live key is reused
            (expired,) = events(ws, 1, timeout=3)
            assert expired["e"] == "listenKeyExpired" and expired["listenKey"] == lk
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=2)
        status, _, body = http("PUT", f"{sim.rest_url}{SPOT}/userDataStream?listenKey={lk}",
                               {"X-MBX-APIKEY": KEY})
        assert (status, body) == (400, {"code": -1125, "msg": "This listenKey does not "
                                                              "exist."})
        assert listen_key(sim, "spot") != lk


def test_listen_key_delete_and_unknown_key_refused(sim: BinanceExchangeSim) -> None:
    lk = listen_key(sim, "futures")
    assert http("DELETE", f"{sim.rest_url}{FUT}/listenKey", {"X-MBX-APIKEY": KEY})[:3:2] == \
        (200, {})
    assert http("PUT", f"{sim.rest_url}{FUT}/listenKey", {"X-MBX-APIKEY": KEY})[2]["code"] \
        == -1125
    with pytest.raises(Exception, match="403"):
        connect(f"{sim.ws_url}/ws/{lk}", open_timeout=3)


# ---- faults
@pytest.mark.parametrize(("kind", "market", "status", "code"), [
    ("error_5xx_before", "spot", 503, -1008),
    ("rate_limit", "spot", 429, -1003),
    ("timestamp", "futures", 400, -1021),
    ("insufficient_balance", "spot", 400, -2010),
    ("insufficient_balance", "futures", 400, -2019),
    ("filter_lot_size", "spot", 400, -1013),
    ("filter_lot_size", "futures", 400, -1111),
])
def test_refusing_fault_answers_and_places_nothing(kind: str, market: str, status: int,
                                                   code: int) -> None:
    with start_sim(faults=[Fault(kind, 1)]) as sim:  # type: ignore[arg-type]
        assert order(sim, market, "ok-0")[0] == 200
        got, headers, body = order(sim, market, "hit-1")
        assert (got, body["code"]) == (status, code)
        if kind == "rate_limit":
            assert headers["retry-after"] == "1"
        assert order(sim, market, "ok-2")[0] == 200
        state = sim.state()
    assert [o["clientOrderId"] for o in state["accounts"][KEY]["orders"]] == ["ok-0", "ok-2"]
    assert state["faults_fired"] == {kind: 1} and state["order_requests"] == 3


def test_ban_fault_refuses_every_request_until_it_ends() -> None:
    with start_sim(faults=[Fault("ban", 0, retry_after_s=1.0)]) as sim:
        status, headers, body = order(sim, "spot", "ban-1", qty="0.001")
        assert status == 418 and headers["retry-after"] == "1"
        assert body["msg"].startswith("Way too many requests; IP(127.0.0.1) banned until ")
        assert http("GET", f"{sim.rest_url}{SPOT}/time")[0] == 418
        time.sleep(1.05)
        assert http("GET", f"{sim.rest_url}{SPOT}/time")[0] == 200
        assert account_orders(sim) == []


@pytest.mark.parametrize("kind", ["accept_then_timeout", "error_5xx_after"])
def test_fault_after_placing_leaves_a_filled_order_to_query(kind: str) -> None:
    fault = Fault(kind, 0, delay_s=1.0) if kind == "accept_then_timeout" else Fault(kind, 0)
    with start_sim(faults=[fault]) as sim:
        if kind == "accept_then_timeout":
            with pytest.raises((TimeoutError, urllib.error.URLError)):
                signed(sim, "POST", f"{SPOT}/order",
                       {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                        "quantity": "0.001", "newClientOrderId": "lost-1"}, timeout=0.3)
        else:
            status, _, body = order(sim, "spot", "lost-1", qty="0.001")
            assert (status, body["code"]) == (503, -1007)
        _, _, q = signed(sim, "GET", f"{SPOT}/order", {"symbol": "BTCUSDT",
                                                       "origClientOrderId": "lost-1"})
        assert (q["status"], q["executedQty"]) == ("FILLED", "0.00100000")


def test_partial_fill_market_fills_rest_in_a_second_trade() -> None:
    with start_sim(faults=[Fault("partial_fill", 0, fraction=0.25, delay_s=0.1)]) as sim:
        _, ws = stream(sim, "spot")
        with ws:
            _, _, body = order(sim, "spot", "part-1", qty="0.01")
            assert (body["status"], body["executedQty"]) == ("PARTIALLY_FILLED", "0.00250000")
            evs = [e for e in events(ws, 5) if e["e"] == "executionReport"]
    assert [(e["x"], e["X"], e["l"]) for e in evs] == [
        ("NEW", "NEW", "0.00000000"), ("TRADE", "PARTIALLY_FILLED", "0.00250000"),
        ("TRADE", "FILLED", "0.00750000")]
    assert evs[1]["t"] != evs[2]["t"]


def test_partial_fill_limit_ioc_expires_the_rest() -> None:
    with start_sim(faults=[Fault("partial_fill", 0)]) as sim:
        _, _, body = order(sim, "futures", "part-2", qty="0.010", type="LIMIT",
                           price="40100.0", timeInForce="IOC", newOrderRespType="RESULT")
        assert (body["status"], body["executedQty"]) == ("EXPIRED", "0.005")


def test_expire_listen_key_fault_ends_every_stream() -> None:
    with start_sim(faults=[Fault("expire_listen_key", 0)]) as sim:
        lk, ws = stream(sim, "futures")
        with ws:
            order(sim, "futures", "exp-1")
            evs = events(ws, 4)
            assert [e["e"] for e in evs] == ["ORDER_TRADE_UPDATE", "ORDER_TRADE_UPDATE",
                                             "ACCOUNT_UPDATE", "listenKeyExpired"]
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=2)
        assert sim.state()["listen_keys"] == []
        assert listen_key(sim, "futures") != lk


def test_drop_user_stream_fault_cuts_sockets_and_loses_trade_events() -> None:
    with start_sim(faults=[Fault("drop_user_stream", 0)]) as sim:
        _, ws = stream(sim, "spot")
        with ws:
            order(sim, "spot", "drop-1", qty="0.001")
            (new,) = events(ws, 1)
            assert new["x"] == "NEW"
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=2)
            assert closed.value.rcvd is None  # no close frame: 1006
        _, ws2 = stream(sim, "spot")
        with ws2, pytest.raises(TimeoutError):
            ws2.recv(timeout=0.3)  # the TRADE happened while nobody listened
        _, _, q = signed(sim, "GET", f"{SPOT}/order", {"symbol": "BTCUSDT",
                                                       "origClientOrderId": "drop-1"})
        assert q["status"] == "FILLED"
        assert sim.state()["user_streams_dropped"] == 1


def test_sim_faults_endpoint_schedules_and_rejects_bad_fields(sim: BinanceExchangeSim
                                                              ) -> None:
    ok = json.dumps({"faults": [{"kind": "timestamp", "at_order": 0}]})
    assert http("POST", f"{sim.rest_url}/sim/faults", body=ok)[2]["scheduled"] == 1
    assert order(sim, "spot", "t-1", qty="0.001")[2]["code"] == -1021
    bad = json.dumps({"faults": [{"kind": "partial_fill", "at_order": 1, "fraction": 2}]})
    status, _, body = http("POST", f"{sim.rest_url}/sim/faults", body=bad)
    assert status == 400 and "faults[0]" in body["error"] and "'fraction'" in body["error"]


def test_faults_file_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({"faults": [{"kind": "ban", "at_order": 2,
                                            "retry_after_s": 3}]}))
    assert load_faults(path) == (Fault("ban", 2, retry_after_s=3.0),)
    for raw, field in [({"faults": [{"kind": "meteor", "at_order": 0}]}, "'kind'"),
                       ({"faults": [{"kind": "ban", "at_order": -1}]}, "'at_order'"),
                       ({"faults": [{"kind": "ban", "at_order": 0, "fraction": 0.5}]},
                        "['fraction']")]:
        with pytest.raises(ConfigError, match=f"faults\\[0\\].*{field.replace('[', '.')}"):
            parse_faults(raw, str(path))


# ---- behind the trader's back
def test_sim_adjust_changes_balance_and_position(sim: BinanceExchangeSim) -> None:
    status, _, body = http("POST", f"{sim.rest_url}/sim/adjust",
                           body=json.dumps({"asset": "BTC", "delta": "0.5"}))
    assert (status, body) == (200, {"asset": "BTC", "balance": "1.5"})
    _, _, body = http("POST", f"{sim.rest_url}/sim/adjust",
                      body=json.dumps({"symbol": "BTCUSDT", "position_delta": "0.1"}))
    assert body == {"symbol": "BTCUSDT", "positionAmt": "0.1"}
    (risk,) = signed(sim, "GET", "/fapi/v2/positionRisk", {})[2]
    assert (risk["positionAmt"], Decimal(risk["entryPrice"])) == ("0.100", Decimal(40000))
    assert sim.adjust_position("BTCUSDT", "-0.1") == 0
    assert sim.adjust_balance("USDT", -100) == Decimal(9900)
    status, _, body = http("POST", f"{sim.rest_url}/sim/adjust",
                           body=json.dumps({"asset": "BTC", "delta": "lots"}))
    assert status == 400 and "'delta'" in body["error"]


# ---- prices and accounts
def test_replay_prices_quote_the_last_closed_bar(btc: BarTable) -> None:
    server = ReplayServer([btc.slice(0, 50)], start=10)  # clock not started: at bar 10
    prices = ReplayPrices(server, half_spread_bps=10.0)
    close = float(btc.close[9])
    assert prices.quote("btcusdt") == pytest.approx((close * 0.999, close * 1.001))
    assert prices.quote("ETHUSDT") is None
    assert ReplayPrices(ReplayServer([btc.slice(0, 50)], start=0)).quote("BTCUSDT") is None


def test_feed_prices_read_a_running_replay_over_rest(btc: BarTable) -> None:
    server = ReplayServer([btc.slice(0, 50)], start=10, speed=1.0)
    ready, stop = threading.Event(), threading.Event()

    async def serve() -> None:
        async with server:
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.01)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert ready.wait(5)
        feed = FeedPrices(server.rest_url, half_spread_bps=10.0)
        assert feed.quote("BTCUSDT") == ReplayPrices(server, half_spread_bps=10.0).quote(
            "BTCUSDT")
        assert feed.quote("ETHUSDT") is None
        assert FeedPrices("http://127.0.0.1:9", timeout_s=0.5).quote("BTCUSDT") is None
    finally:
        stop.set()
        thread.join(5)


def test_accounts_file_readable_by_others_or_malformed_refused(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps([{"key": "k", "secret": "s", "spot": {"usdt": "5"},
                                 "futures_wallet": 7}]))
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by group or others"):
        load_accounts(path)
    path.chmod(0o600)
    (acct,) = load_accounts(path)
    assert (acct.spot, acct.futures_wallet) == ({"USDT": Decimal(5)}, Decimal(7))
    assert "s" not in repr(acct).replace("spot", "").replace("futures", "").replace(
        "key", "")
    path.write_text(json.dumps([{"key": "k", "secret": "s", "spot": {"BTC": "x"}}]))
    with pytest.raises(ConfigError, match=r"accounts\[0\]: spot.BTC"):
        load_accounts(path)
    path.write_text(json.dumps([{"key": "k"}]))
    with pytest.raises(ConfigError, match=r"accounts\[0\]: 'secret'"):
        load_accounts(path)


# ---- the command line
def test_cli_exchange_sim_prints_urls_serves_and_exits_on_sigterm(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps([{"key": KEY, "secret": SECRET,
                                     "spot": {"USDT": 1000}, "futures_wallet": 1000}]))
    accounts.chmod(0o600)
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"faults": [{"kind": "rate_limit", "at_order": 4}]}))
    proc = subprocess.Popen([sys.executable, "-m", "raytrade.scripts.cli", "exchange", "sim",
                             "--accounts", str(accounts), "--replay", "sample:BTCUSDT",
                             "--start", "100", "--faults", str(faults)],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["rest_url"].startswith("http://127.0.0.1:")
        assert info["replay"]["ws_url"].startswith("ws://127.0.0.1:")
        _, _, t = http("GET", f"{info['rest_url']}/api/v3/time")
        assert abs(t["serverTime"] - time.time() * 1000) < 5000
        _, _, tick = http("GET", f"{info['rest_url']}/api/v3/ticker/price?symbol=BTCUSDT")
        assert float(tick["price"]) > 0
        _, _, state = http("GET", f"{info['rest_url']}/sim/state")
        assert state["faults_pending"] == [{"kind": "rate_limit", "at_order": 4,
                                            "retry_after_s": 1.0}]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0
        assert SECRET not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps([{"key": KEY, "secret": SECRET}]))
    accounts.chmod(0o644)
    from raytrade.scripts.cli import main

    assert main(["exchange", "sim", "--accounts", str(accounts), "--replay",
                 "sample:BTCUSDT"]) == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        accounts.chmod(0o600)
        assert main(["exchange", "sim", "--accounts", str(accounts), "--replay",
                     "sample:BTCUSDT", "--port", str(port)]) == 1
