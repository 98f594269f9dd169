"""The Binance order client (``actors/venues/binance_*.py``): keys and signing, clock and
rate limits, reply parsing, and its HTTP and websocket behaviour against a small scripted
Binance on loopback (``tests/binance_fake.py``: real sockets, canned replies)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import pickle
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from raytrade.actors.events import KlineEvent, MessageRejectedError, QuoteEvent, TradeEvent
from raytrade.actors.venues.binance_auth import ApiKeys, install_redaction, load_keys
from raytrade.actors.venues.binance_clock import (
    RateLimitTracker,
    ServerClock,
    parse_rate_limits,
)
from raytrade.actors.venues.binance_orders import BinanceExecution
from raytrade.actors.venues.binance_replies import STATUSES, parse_order, parse_symbols
from raytrade.actors.venues.binance_signed import (
    BinanceApiError,
    ClockSkewError,
    MalformedReplyError,
    decimal_text,
)
from raytrade.actors.venues.binance_user_stream import BinanceUserStream, parse_event
from raytrade.actors.venues.execution import (
    ExecutionReport,
    OrderExecution,
    OrderFateUnknownError,
    OrderRequest,
    RateLimitedError,
    VenueAuthError,
    VenueBannedError,
)
from raytrade.actors.venues.http import RestUnavailableError
from raytrade.actors.venues.protocol import Subscription, VenueEndpoints
from raytrade.actors.venues.registry import build_venue
from raytrade.envs.errors import ConfigError, TemporaryError

from tests.binance_fake import Canned, FakeBinance, FakeUserStream

# Binance's documented signing example (public API docs, "SIGNED endpoint examples")
DOC_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_QUERY = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
             "&recvWindow=5000&timestamp=1499827319559")
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
KEYS = ApiKeys(DOC_KEY, DOC_SECRET)
T = TypeVar("T")

SPOT_INFO = {
    "timezone": "UTC", "serverTime": 1, "exchangeFilters": [],
    "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
         "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000}],
    "symbols": [{
        "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01000000",
             "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
             "stepSize": "0.00001000"},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000",
             "maxQty": "100.00000000", "stepSize": "0.00000000"},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False,
             "avgPriceMins": 5}]}]}
FUTURES_INFO = {
    "timezone": "UTC", "serverTime": 1, "rateLimits": [], "exchangeFilters": [],
    "assets": [],
    "symbols": [{
        "symbol": "BTCUSDT", "pair": "BTCUSDT", "contractType": "PERPETUAL",
        "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT", "marginAsset": "USDT",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764",
             "tickSize": "0.10"},
            {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000",
             "stepSize": "0.001"},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "120",
             "stepSize": "0.001"},
            {"filterType": "MIN_NOTIONAL", "notional": "100"}]},
        {"symbol": "ETHUSDT", "status": "SETTLING", "baseAsset": "ETH", "quoteAsset": "USDT",
         "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.01"},
                     {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "10000",
                      "stepSize": "0.001"}]}]}


def spot_order(cid: str = "a1", status: str = "FILLED", executed: str = "0.01000000",
               quote: str = "430.00000000", **extra: Any) -> dict[str, Any]:
    return {"symbol": "BTCUSDT", "orderId": 28, "orderListId": -1, "clientOrderId": cid,
            "transactTime": 1507725176595, "price": "0.00000000", "origQty": "0.01000000",
            "executedQty": executed, "origQuoteOrderQty": "0.00000000",
            "cummulativeQuoteQty": quote, "status": status, "timeInForce": "GTC",
            "type": "MARKET", "side": "BUY", "workingTime": 1507725176595,
            "selfTradePreventionMode": "EXPIRE_MAKER", **extra}


def futures_order(cid: str = "f1", status: str = "FILLED") -> dict[str, Any]:
    return {"clientOrderId": cid, "cumQty": "0.010", "cumQuote": "430.00",
            "executedQty": "0.010", "orderId": 22542179, "avgPrice": "43000.00",
            "origQty": "0.010", "price": "0", "reduceOnly": True, "side": "SELL",
            "positionSide": "BOTH", "status": status, "stopPrice": "0",
            "closePosition": False, "symbol": "BTCUSDT", "timeInForce": "GTC",
            "type": "MARKET", "origType": "MARKET", "updateTime": 1566818724722,
            "workingType": "CONTRACT_PRICE", "priceProtect": False}


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro
    return asyncio.run(main())


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    server = FakeBinance(DOC_KEY, DOC_SECRET)
    yield server
    server.close()


def execution(fake: FakeBinance, market: str = "spot", **kw: Any) -> BinanceExecution:
    return BinanceExecution(market, fake.url, "ws://127.0.0.1:9", KEYS,  # type: ignore[arg-type]
                            **{"timeout_s": 2.0, **kw})


BUY = OrderRequest("a1", "BTCUSDT", "buy", 0.01)


# ---- keys and signing

def test_sign_binance_documented_example_matches_its_signature() -> None:
    assert KEYS.sign(DOC_QUERY) == DOC_SIGNATURE


def test_api_keys_repr_str_and_pickle_never_show_the_values() -> None:
    for shown in (repr(KEYS), str(KEYS), f"{KEYS}", f"{[KEYS]}"):
        assert DOC_KEY not in shown and DOC_SECRET not in shown
        assert KEYS.fingerprint in shown
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(KEYS)


def test_load_keys_environment_with_prefix_loads_the_pair() -> None:
    env = {"RAYTRADE_BINANCE_TESTNET_API_KEY": DOC_KEY,
           "RAYTRADE_BINANCE_TESTNET_API_SECRET": DOC_SECRET}
    assert load_keys(prefix="RAYTRADE_BINANCE_TESTNET", environ=env) == KEYS


def test_load_keys_missing_secret_names_the_variable_and_no_value() -> None:
    with pytest.raises(ConfigError, match="RAYTRADE_BINANCE_API_SECRET") as err:
        load_keys(environ={"RAYTRADE_BINANCE_API_KEY": DOC_KEY})
    assert DOC_KEY not in str(err.value)
    with pytest.raises(ConfigError, match="RAYTRADE_BINANCE_KEYS_FILE"):
        load_keys(environ={})


def test_load_keys_owner_only_json_and_toml_files_load(tmp_path: Path) -> None:
    js, tm = tmp_path / "k.json", tmp_path / "k.toml"
    js.write_text(json.dumps({"api_key": DOC_KEY, "api_secret": DOC_SECRET}))
    tm.write_text(f'api_key = "{DOC_KEY}"\napi_secret = "{DOC_SECRET}"\n')
    for f in (js, tm):
        f.chmod(0o600)
        assert load_keys(path=f) == KEYS
    assert load_keys(environ={"RAYTRADE_BINANCE_KEYS_FILE": str(js)}) == KEYS


def test_load_keys_group_readable_file_is_refused_naming_file_and_mode(
        tmp_path: Path) -> None:
    f = tmp_path / "k.json"
    f.write_text(json.dumps({"api_key": DOC_KEY, "api_secret": DOC_SECRET}))
    f.chmod(0o640)
    with pytest.raises(ConfigError, match=r"k\.json.*mode 0640") as err:
        load_keys(path=f)
    assert DOC_SECRET not in str(err.value)


def test_load_keys_file_missing_field_or_bad_syntax_named_without_values(
        tmp_path: Path) -> None:
    f = tmp_path / "k.json"
    f.write_text(json.dumps({"api_key": DOC_KEY}))
    f.chmod(0o600)
    with pytest.raises(ConfigError, match="missing or empty field api_secret"):
        load_keys(path=f)
    f.write_text('{"api_key": "' + DOC_KEY + '", "api_secret": ')
    with pytest.raises(ConfigError, match="not valid JSON") as err:
        load_keys(path=f)
    assert DOC_KEY not in str(err.value)


def test_redaction_hides_keys_signatures_and_tracebacks_from_later_handlers() -> None:
    install_redaction(KEYS)
    stream = io.StringIO()
    # a logger of its own, made and given a handler after the redaction was installed
    logger = logging.getLogger("raytrade.test.redaction")
    logger.propagate = False
    logger.addHandler(logging.StreamHandler(stream))
    logger.setLevel(logging.INFO)
    try:
        logger.info("key %s secret %s", DOC_KEY, DOC_SECRET)
        logger.info("GET /api/v3/account?timestamp=1&signature=%s", DOC_SIGNATURE)
        try:
            raise RuntimeError(f"boom {DOC_SECRET}")
        except RuntimeError:
            logger.exception("failed with %s", DOC_KEY)
    finally:
        logger.handlers.clear()
    out = stream.getvalue()
    assert DOC_KEY not in out and DOC_SECRET not in out and DOC_SIGNATURE not in out
    assert out.count("<redacted>") >= 5 and "RuntimeError: boom" in out


# ---- clock and rate limits

def test_server_clock_offset_is_server_minus_midpoint_and_resyncs_on_schedule() -> None:
    wall = iter([1000.0, 1010.0, 1020.0, 5000.0, 5004.0, 5006.0])
    mono = [0.0]
    clock = ServerClock(lambda: 2005 if clock.syncs == 0 else 6002, resync_s=60,
                        wall_ms=lambda: next(wall), monotonic=lambda: mono[0])
    assert clock.now_ms() == 1020 + 1000  # offset 2005 - 1005
    mono[0] = 61.0  # past the resync period
    assert clock.now_ms() == 5006 + 1000 and clock.syncs == 2  # offset 6002 - 5002


def test_rate_limit_tracker_reads_headers_and_exchange_limits() -> None:
    t = RateLimitTracker()
    t.set_limits(parse_rate_limits(SPOT_INFO["rateLimits"]))
    t.observe([("x-mbx-used-weight-1m", "1500"), ("X-MBX-ORDER-COUNT-10S", "90"),
               ("X-MBX-ORDER-COUNT-1D", "12"), ("X-MBX-USED-WEIGHT-1M", "junk")])
    assert t.usage() == {"REQUEST_WEIGHT 1M": (1500, 6000), "ORDERS 10S": (90, 100),
                         "ORDERS 1D": (12, 200000)}
    assert t.headroom() == pytest.approx(0.1) and t.counts["malformed_headers"] == 1


def test_rate_limit_tracker_429_and_418_windows_refuse_requests() -> None:
    now = [0.0]
    t = RateLimitTracker(monotonic=lambda: now[0])
    assert t.on_429("2") == 2.0
    with pytest.raises(RateLimitedError) as rl:
        t.check("GET /x")
    assert rl.value.retry_after_s == pytest.approx(2.0)
    now[0] = 2.5
    t.check("GET /x")
    banned_until_ms = int((time.time() + 300) * 1000)
    t.on_418(None, f"Way too many requests; IP banned until {banned_until_ms}.")
    with pytest.raises(VenueBannedError) as ban:
        t.check("GET /x")
    assert 290 < ban.value.retry_after_s <= 300


# ---- reply parsing

def test_statuses_map_every_binance_status() -> None:
    expected = {"NEW": "new", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled",
                "CANCELED": "canceled", "REJECTED": "rejected", "EXPIRED": "expired",
                "EXPIRED_IN_MATCH": "expired", "PENDING_CANCEL": "new"}
    assert {k: STATUSES[k] for k in expected} == expected
    with pytest.raises(MalformedReplyError, match="'status' is 'WEIRD'"):
        parse_order(spot_order(status="WEIRD"), "spot", "GET /api/v3/order")


def test_parse_symbols_spot_and_futures_filters() -> None:
    spot = parse_symbols(SPOT_INFO, "spot")["BTCUSDT"].filters
    assert (spot.tick_size, spot.step_size, spot.min_qty, spot.max_qty, spot.min_notional,
            spot.base_asset, spot.quote_asset) == (0.01, 1e-5, 1e-5, 100.0, 5.0, "BTC", "USDT")
    fut = parse_symbols(FUTURES_INFO, "futures")
    f = fut["BTCUSDT"].filters
    assert (f.tick_size, f.step_size, f.min_qty, f.max_qty, f.min_notional) == \
        (0.1, 0.001, 0.001, 120.0, 100.0)
    assert fut["ETHUSDT"].status == "SETTLING" and fut["ETHUSDT"].filters.min_notional == 0


def test_parse_symbols_missing_lot_size_names_symbol_and_filter() -> None:
    info = json.loads(json.dumps(SPOT_INFO))
    del info["symbols"][0]["filters"][1]
    with pytest.raises(MalformedReplyError, match="exchangeInfo BTCUSDT: no LOT_SIZE"):
        parse_symbols(info, "exchangeInfo")


def test_parse_order_spot_futures_and_spot_cancel() -> None:
    s = parse_order(spot_order(), "spot", "POST /api/v3/order")
    assert (s.client_order_id, s.venue_order_id, s.status, s.qty, s.filled_qty, s.side) == \
        ("a1", "28", "filled", 0.01, 0.01, "buy")
    assert s.avg_price == pytest.approx(43000.0) and s.update_ms == 1507725176595
    f = parse_order(futures_order(), "futures", "POST /fapi/v1/order")
    assert (f.status, f.side, f.avg_price, f.filled_qty) == ("filled", "sell", 43000.0, 0.01)
    c = parse_order(spot_order(cid="cancel-xyz", status="CANCELED", executed="0",
                               quote="0", origClientOrderId="a1"), "spot", "DELETE")
    assert (c.client_order_id, c.status, c.avg_price) == ("a1", "canceled", None)


def test_parse_order_malformed_field_names_endpoint_and_field() -> None:
    with pytest.raises(MalformedReplyError, match=r"GET /api/v3/order: field 'executedQty'"):
        parse_order(spot_order(executed="lots"), "spot", "GET /api/v3/order")
    with pytest.raises(MalformedReplyError, match="'orderId'"):
        parse_order({**spot_order(), "orderId": "28"}, "spot", "GET /api/v3/order")


def test_decimal_text_never_uses_exponents() -> None:
    assert [decimal_text(x) for x in (1e-05, 100.0, 0.1, 43000.01)] == \
        ["0.00001", "100", "0.1", "43000.01"]


EXEC_TRADE = {"e": "executionReport", "E": 1499405658658, "s": "BTCUSDT", "c": "a1",
              "S": "BUY", "o": "MARKET", "f": "GTC", "q": "0.01000000", "p": "0.00000000",
              "P": "0.00000000", "F": "0.00000000", "g": -1, "C": "", "x": "TRADE",
              "X": "PARTIALLY_FILLED", "r": "NONE", "i": 4293153, "l": "0.00400000",
              "z": "0.00400000", "L": "43000.00000000", "n": "0.00000400", "N": "BTC",
              "T": 1499405658657, "t": 77, "v": 0, "I": 8641984, "w": False, "m": False,
              "M": True, "O": 1499405658657, "Z": "172.00000000", "Y": "172.00000000",
              "Q": "0.00000000", "W": 1499405658657, "V": "EXPIRE_MAKER"}

FUTURES_UPDATE = {"e": "ORDER_TRADE_UPDATE", "E": 1568879465651, "T": 1568879465650, "o": {
    "s": "BTCUSDT", "c": "f1", "S": "SELL", "o": "MARKET", "f": "GTC", "q": "0.010",
    "p": "0", "ap": "43000", "sp": "0", "x": "TRADE", "X": "FILLED", "i": 8886774,
    "l": "0.010", "z": "0.010", "L": "43000", "N": "USDT", "n": "0.172",
    "T": 1568879465650, "t": 12, "b": "0", "a": "0", "m": False, "R": True,
    "wt": "CONTRACT_PRICE", "ot": "MARKET", "ps": "BOTH", "cp": False, "rp": "1.5"}}


def test_parse_event_spot_trade_cancel_and_futures_update() -> None:
    r = parse_event(json.dumps(EXEC_TRADE), "spot")
    assert isinstance(r, ExecutionReport)
    assert (r.client_order_id, r.status, r.last_qty, r.last_price, r.cum_qty, r.cum_quote,
            r.commission, r.commission_asset, r.trade_id, r.venue_order_id) == \
        ("a1", "partially_filled", 0.004, 43000.0, 0.004, 172.0, 4e-6, "BTC", 77, "4293153")
    cancel = {**EXEC_TRADE, "c": "cxl-1", "C": "a1", "x": "CANCELED", "X": "CANCELED",
              "l": "0", "L": "0", "N": None, "t": -1}
    c = parse_event(json.dumps(cancel), "spot")
    assert isinstance(c, ExecutionReport)
    assert (c.client_order_id, c.status, c.trade_id, c.commission) == ("a1", "canceled", -1, 0)
    f = parse_event(json.dumps(FUTURES_UPDATE), "futures")
    assert isinstance(f, ExecutionReport)
    assert (f.client_order_id, f.side, f.status, f.cum_quote, f.commission, f.trade_id,
            f.event_ms) == ("f1", "sell", "filled", 430.0, 0.172, 12, 1568879465651)
    assert parse_event('{"e": "outboundAccountPosition", "E": 1}', "spot") is None
    assert parse_event('{"e": "listenKeyExpired", "E": 1, "listenKey": "k"}', "spot") == \
        "expired"
    with pytest.raises(MalformedReplyError, match="executionReport: field 'z'"):
        parse_event(json.dumps({**EXEC_TRADE, "z": None}), "spot")


# ---- HTTP behaviour against the scripted server

def test_execution_satisfies_the_order_execution_protocol(fake: FakeBinance) -> None:
    ex: OrderExecution = execution(fake)
    assert ex.market == "spot"
    run(ex.close())


FULL_FILLS = [{"price": "42990.00000000", "qty": "0.00400000", "commission": "0.00000400",
               "commissionAsset": "BTC", "tradeId": 56},
              {"price": "43006.66666667", "qty": "0.00600000", "commission": "0.00000600",
               "commissionAsset": "BTC", "tradeId": 57}]


def test_place_spot_market_signed_request_returns_filled_state(fake: FakeBinance) -> None:
    fake.on("POST", "/api/v3/order", Canned(200, spot_order(fills=FULL_FILLS),
                                            {"X-MBX-ORDER-COUNT-10S": "1"}))
    ex = execution(fake)
    state = run(ex.place(BUY))
    assert (state.status, state.filled_qty) == ("filled", 0.01)
    # the FULL reply's fills, with their commissions, come with the state
    assert [(t.trade_id, t.qty, t.commission, t.commission_asset) for t in state.trades] == [
        (56, 0.004, 0.000004, "BTC"), (57, 0.006, 0.000006, "BTC")]
    sent = fake.seen("POST", "/api/v3/order")[0]
    assert sent.api_key == DOC_KEY
    assert {k: sent.params[k] for k in ("symbol", "side", "type", "quantity",
                                        "newClientOrderId", "newOrderRespType")} == \
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01",
         "newClientOrderId": "a1", "newOrderRespType": "FULL"}
    assert ex.transport.tracker.usage()["ORDERS 10S"] == (1, None)
    run(ex.close())


def test_a_full_reply_whose_fills_do_not_add_up_is_refused_naming_them() -> None:
    bad = spot_order(fills=FULL_FILLS[:1])  # 0.004 listed, 0.01 executed
    with pytest.raises(MalformedReplyError, match=r"fills add up to 0\.004"):
        parse_order(bad, "spot", "POST /api/v3/order")


def test_place_futures_limit_reduce_only_sends_ioc_and_reduce_only(
        fake: FakeBinance) -> None:
    fake.on("POST", "/fapi/v1/order", Canned(200, futures_order()))
    ex = execution(fake, "futures")
    order = OrderRequest("f1", "BTCUSDT", "sell", 0.01, "limit", 42900.1, reduce_only=True)
    assert run(ex.place(order)).status == "filled"
    p = fake.seen("POST", "/fapi/v1/order")[0].params
    assert (p["type"], p["timeInForce"], p["price"], p["reduceOnly"]) == \
        ("LIMIT", "IOC", "42900.1", "true")
    run(ex.close())


def test_place_exchange_refusals_return_rejected_states(fake: FakeBinance) -> None:
    fake.on("POST", "/api/v3/order",
            Canned(400, {"code": -2010, "msg": "Account has insufficient balance for "
                                               "requested action."}),
            Canned(400, {"code": -1013, "msg": "Filter failure: LOT_SIZE"}))
    ex = execution(fake)
    first, second = run(ex.place(BUY)), run(ex.place(BUY))
    assert (first.status, first.reason) == \
        ("rejected", "-2010 Account has insufficient balance for requested action.")
    assert second.reason == "-1013 Filter failure: LOT_SIZE" and second.filled_qty == 0
    run(ex.close())


def test_place_illegal_client_order_id_refused_before_sending(fake: FakeBinance) -> None:
    ex = execution(fake)
    for cid in ("has space", "x" * 37, "é"):
        with pytest.raises(ConfigError, match="client order id"):
            run(ex.place(OrderRequest(cid, "BTCUSDT", "buy", 0.01)))
    with pytest.raises(ConfigError, match="futures only"):
        run(ex.place(OrderRequest("a1", "BTCUSDT", "sell", 0.01, reduce_only=True)))
    assert not fake.seen("POST", "/api/v3/order")
    run(ex.close())


def test_place_timestamp_error_resyncs_clock_and_retries_once(fake: FakeBinance) -> None:
    skew = {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
    fake.on("POST", "/api/v3/order", Canned(400, skew), Canned(200, spot_order()))
    ex = execution(fake)
    assert run(ex.place(BUY)).status == "filled"
    assert len(fake.seen("POST", "/api/v3/order")) == 2
    assert len(fake.seen("GET", "/api/v3/time")) == 2  # first sync, then the resync
    fake.on("POST", "/api/v3/order", Canned(400, skew), Canned(400, skew))
    with pytest.raises(ClockSkewError, match="again after a clock resync"):
        run(ex.place(BUY))
    run(ex.close())


def test_place_429_backs_off_without_sending_until_retry_after(fake: FakeBinance) -> None:
    fake.on("POST", "/api/v3/order",
            Canned(429, {"code": -1003, "msg": "Too many requests; current limit is 10."},
                   {"Retry-After": "1"}), Canned(200, spot_order()))
    ex = execution(fake)
    with pytest.raises(RateLimitedError) as err:
        run(ex.place(BUY))
    assert err.value.retry_after_s == 1.0
    with pytest.raises(RateLimitedError):  # refused locally: nothing sent
        run(ex.query("BTCUSDT", "a1"))
    assert len(fake.requests) == 2  # the clock sync and the order
    time.sleep(1.05)
    assert run(ex.place(BUY)).status == "filled"
    run(ex.close())


def test_place_too_many_orders_code_is_rate_limited_whatever_the_status(
        fake: FakeBinance) -> None:
    fake.on("POST", "/api/v3/order", Canned(400, {
        "code": -1015, "msg": "Too many new orders; current limit is 100 orders per 10 "
                              "SECOND."}, {"Retry-After": "0"}))
    ex = execution(fake)
    with pytest.raises(RateLimitedError, match="-1015"):
        run(ex.place(BUY))
    run(ex.close())


def test_place_unreadable_2xx_reply_is_fate_unknown(fake: FakeBinance) -> None:
    fake.on("POST", "/api/v3/order", Canned(200, b"<html>ok</html>"),
            Canned(200, {**spot_order(), "executedQty": None}))
    ex = execution(fake)
    with pytest.raises(OrderFateUnknownError, match="not JSON"):
        run(ex.place(BUY))
    with pytest.raises(OrderFateUnknownError, match="'executedQty'"):
        run(ex.place(BUY))
    run(ex.close())


def test_place_418_bans_every_request_until_the_ban_ends(fake: FakeBinance) -> None:
    fake.on("POST", "/api/v3/order",
            Canned(418, {"code": -1003, "msg": "Way too many requests; IP banned until "
                                               f"{int(time.time() * 1000) + 600_000}."},
                   {"Retry-After": "600"}))
    ex = execution(fake)
    with pytest.raises(VenueBannedError) as err:
        run(ex.place(BUY))
    assert 590 < err.value.retry_after_s <= 600
    sent = len(fake.requests)
    for call in (ex.place(BUY), ex.open_orders("BTCUSDT"), ex.filters("BTCUSDT")):
        with pytest.raises(VenueBannedError):
            run(call)
    assert len(fake.requests) == sent
    run(ex.close())


def test_place_timeout_is_fate_unknown_and_read_timeout_is_temporary(
        fake: FakeBinance) -> None:
    fake.on("POST", "/api/v3/order", Canned(200, spot_order(), delay_s=1.0))
    fake.on("GET", "/api/v3/order", Canned(200, spot_order(), delay_s=1.0))
    ex = execution(fake, timeout_s=0.3)
    with pytest.raises(OrderFateUnknownError, match="may have reached the exchange"):
        run(ex.place(BUY))
    with pytest.raises(RestUnavailableError) as err:
        run(ex.query("BTCUSDT", "a1"))
    assert not isinstance(err.value, OrderFateUnknownError)
    run(ex.close())


def test_place_5xx_is_fate_unknown_and_read_5xx_is_temporary(fake: FakeBinance) -> None:
    fake.on("POST", "/api/v3/order", Canned(503, b"<html>Service Unavailable</html>"))
    fake.on("GET", "/api/v3/openOrders", Canned(502, b"bad gateway"))
    ex = execution(fake)
    with pytest.raises(OrderFateUnknownError, match="HTTP 503"):
        run(ex.place(BUY))
    with pytest.raises(TemporaryError, match="HTTP 502") as err:
        run(ex.open_orders("BTCUSDT"))
    assert not isinstance(err.value, OrderFateUnknownError)
    run(ex.close())


def test_place_connection_refused_is_temporary_not_fate_unknown() -> None:
    server = FakeBinance(DOC_KEY, DOC_SECRET)
    server.on("GET", "/api/v3/time", Canned(200, {"serverTime": server.now_ms()},
                                            {"Connection": "close"}))
    ex = BinanceExecution("spot", server.url, "ws://127.0.0.1:9", KEYS, timeout_s=2.0)
    ex.transport.clock.sync()  # the connection closes after the reply
    server.close()
    with pytest.raises(RestUnavailableError, match=r"cannot connect.*nothing was sent") as err:
        run(ex.place(BUY))
    assert not isinstance(err.value, OrderFateUnknownError)
    run(ex.close())


def test_place_after_server_closed_idle_connection_uses_a_new_one(
        fake: FakeBinance) -> None:
    fake.on("GET", "/api/v3/time", Canned(200, {"serverTime": fake.now_ms()},
                                          close_after=True))
    fake.on("POST", "/api/v3/order", Canned(200, spot_order()))
    ex = execution(fake)
    ex.transport.clock.sync()
    time.sleep(0.05)  # the server's FIN arrives
    assert run(ex.place(BUY)).status == "filled"
    assert ex.transport.connections_opened == 2
    run(ex.close())


def test_wrong_secret_is_an_auth_error_without_keys_in_the_message(
        fake: FakeBinance) -> None:
    bad = ApiKeys(DOC_KEY, "x" * 64)
    ex = BinanceExecution("spot", fake.url, "ws://127.0.0.1:9", bad, timeout_s=2.0)
    with pytest.raises(VenueAuthError, match="-1022") as err:
        run(ex.place(BUY))
    assert DOC_KEY not in str(err.value) and "x" * 64 not in str(err.value)
    run(ex.close())


def test_requests_reuse_one_keepalive_connection(fake: FakeBinance) -> None:
    for _ in range(10):
        fake.on("GET", "/api/v3/order", Canned(200, spot_order()))
    ex = execution(fake)

    async def many() -> None:
        for _ in range(10):
            await ex.query("BTCUSDT", "a1")
    run(many())
    assert ex.transport.connections_opened == 1
    assert len({r.client_port for r in fake.requests}) == 1
    run(ex.close())


def test_query_unknown_is_none_and_cancel_of_final_order_returns_it(
        fake: FakeBinance) -> None:
    missing = Canned(400, {"code": -2013, "msg": "Order does not exist."})
    unknown = Canned(400, {"code": -2011, "msg": "Unknown order sent."})
    fake.on("GET", "/api/v3/order", missing, Canned(200, spot_order()))
    fake.on("DELETE", "/api/v3/order", unknown)
    ex = execution(fake)
    assert run(ex.query("BTCUSDT", "zz")) is None
    state = run(ex.cancel("BTCUSDT", "a1"))
    assert (state.client_order_id, state.status) == ("a1", "filled")
    fake.on("DELETE", "/api/v3/order", unknown)
    fake.on("GET", "/api/v3/order", missing)
    with pytest.raises(BinanceApiError, match="no order 'zz'"):
        run(ex.cancel("BTCUSDT", "zz"))
    run(ex.close())


def test_filters_cached_refreshed_and_unknown_symbol_is_config_error(
        fake: FakeBinance) -> None:
    fake.on("GET", "/api/v3/exchangeInfo", Canned(200, SPOT_INFO), Canned(200, SPOT_INFO),
            Canned(400, {"code": -1121, "msg": "Invalid symbol."}))
    ex = execution(fake, filters_refresh_s=0.3)
    first = run(ex.filters("BTCUSDT"))
    assert run(ex.filters("BTCUSDT")) == first
    assert len(fake.seen("GET", "/api/v3/exchangeInfo")) == 1
    assert ex.transport.tracker.limits[("ORDERS", "10S")] == 100
    time.sleep(0.35)
    run(ex.filters("BTCUSDT"))
    assert len(fake.seen("GET", "/api/v3/exchangeInfo")) == 2
    with pytest.raises(ConfigError, match="NOPEUSDT: not traded"):
        run(ex.filters("NOPEUSDT"))
    run(ex.close())


def test_futures_filters_refuse_a_symbol_not_trading(fake: FakeBinance) -> None:
    fake.on("GET", "/fapi/v1/exchangeInfo", Canned(200, FUTURES_INFO))
    ex = execution(fake, "futures")
    assert run(ex.filters("BTCUSDT")).min_notional == 100.0
    with pytest.raises(ConfigError, match="ETHUSDT: status SETTLING"):
        run(ex.filters("ETHUSDT"))
    assert len(fake.seen("GET", "/fapi/v1/exchangeInfo")) == 1
    run(ex.close())


def test_account_spot_values_base_at_last_price_plus_quote(fake: FakeBinance) -> None:
    fake.on("GET", "/api/v3/exchangeInfo", Canned(200, SPOT_INFO))
    fake.on("GET", "/api/v3/account", Canned(200, {
        "makerCommission": 10, "canTrade": True, "updateTime": 1, "accountType": "SPOT",
        "balances": [{"asset": "BTC", "free": "0.40000000", "locked": "0.10000000"},
                     {"asset": "USDT", "free": "1000.00000000", "locked": "0.00000000"},
                     {"asset": "ETH", "free": "0.00000000", "locked": "0.00000000"}],
        "permissions": ["SPOT"], "uid": 1}))
    fake.on("GET", "/api/v3/ticker/price",
            Canned(200, {"symbol": "BTCUSDT", "price": "40000.00000000"}))
    fake.on("GET", "/api/v3/openOrders", Canned(200, [spot_order(status="NEW",
                                                                 executed="0", quote="0")]))
    ex = execution(fake)
    snap = run(ex.account(("BTCUSDT",)))
    assert snap.balances == {"BTC": 0.5, "USDT": 1000.0}
    assert snap.positions == {"BTCUSDT": 0.5} and snap.prices == {"BTCUSDT": 40000.0}
    assert snap.equity == pytest.approx(21000.0)
    assert [o.status for o in snap.open_orders] == ["new"] and snap.at_ms > 0
    run(ex.close())


def test_account_futures_equity_is_wallet_plus_unrealized(fake: FakeBinance) -> None:
    fake.on("GET", "/fapi/v1/exchangeInfo", Canned(200, FUTURES_INFO))
    fake.on("GET", "/fapi/v2/account", Canned(200, {
        "totalWalletBalance": "10000.00", "totalUnrealizedProfit": "-25.50",
        "totalMarginBalance": "9974.50", "availableBalance": "9000",
        "assets": [{"asset": "USDT", "walletBalance": "10000.00", "unrealizedProfit": "-25.5"}],
        "positions": [{"symbol": "BTCUSDT", "positionAmt": "-0.010", "entryPrice": "40000",
                       "unrealizedProfit": "-25.5", "positionSide": "BOTH"},
                      {"symbol": "ETHUSDT", "positionAmt": "0.000"}]}))
    fake.on("GET", "/fapi/v1/premiumIndex", Canned(200, {
        "symbol": "BTCUSDT", "markPrice": "42550.00", "indexPrice": "42549",
        "lastFundingRate": "0.0001", "nextFundingTime": 1, "interestRate": "0.0001",
        "time": 1}))
    fake.on("GET", "/fapi/v1/openOrders", Canned(200, []))
    ex = execution(fake, "futures")
    snap = run(ex.account(("BTCUSDT",)))
    assert snap.positions == {"BTCUSDT": -0.01} and snap.prices == {"BTCUSDT": 42550.0}
    assert snap.equity == pytest.approx(9974.5) and snap.balances == {"USDT": 10000.0}
    run(ex.close())


# ---- the user stream

async def _stream_session(fake: FakeBinance, body: Callable[
        [FakeUserStream, BinanceUserStream, list[ExecutionReport], list[tuple[bool, str]]],
        Awaitable[None]], market: str = "spot", initial_backoff_s: float = 0.05,
        **kw: Any) -> BinanceUserStream:
    ws = FakeUserStream(fake)
    await ws.start()
    ex = BinanceExecution(market, fake.url, ws.url, KEYS, timeout_s=2.0)  # type: ignore[arg-type]
    stream = BinanceUserStream(ex.transport, ex.market, ex.paths.listen_key, ws.url,
                               initial_backoff_s=initial_backoff_s, **kw)
    reports: list[ExecutionReport] = []
    states: list[tuple[bool, str]] = []
    task = asyncio.create_task(stream.run(reports.append,
                                          lambda up, why: states.append((up, why))))
    try:
        await ws.wait_connected()
        await body(ws, stream, reports, states)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await ws.close()
        await ex.close()
    return stream


async def _until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_user_stream_reports_survive_drop_and_expiry_and_key_is_closed(
        fake: FakeBinance) -> None:
    async def body(ws: FakeUserStream, stream: BinanceUserStream,
                   reports: list[ExecutionReport], states: list[tuple[bool, str]]) -> None:
        await ws.send_all(EXEC_TRADE)
        await ws.send_all("{not json")
        await _until(lambda: len(reports) == 1 and stream.counts["malformed"] == 1)
        ws.drop_all()  # no close frame
        await ws.wait_connected()
        assert len(set(fake.keys_issued)) == 1  # the same key after a plain drop
        await ws.expire_all()
        await ws.wait_connected()
        assert len(set(fake.keys_issued)) == 2 and stream.counts["expired"] == 1
        await ws.send_all({**EXEC_TRADE, "x": "TRADE", "X": "FILLED", "t": 78})
        await _until(lambda: len(reports) == 2)
        assert [up for up, _ in states] == [True, False, True, False, True]
        assert "listen key expired" in states[3][1]

    run(_stream_session(fake, body))
    deleted = fake.seen("DELETE", "/api/v3/userDataStream")
    assert len(deleted) == 1 and deleted[0].params["listenKey"] not in fake.listen_keys
    assert all(r.api_key == DOC_KEY for r in fake.seen("POST", "/api/v3/userDataStream"))


def test_user_stream_keepalive_refused_recreates_the_listen_key(fake: FakeBinance) -> None:
    async def body(ws: FakeUserStream, stream: BinanceUserStream,
                   reports: list[ExecutionReport], states: list[tuple[bool, str]]) -> None:
        await _until(lambda: stream.counts["keepalives"] >= 1)
        with fake.lock:
            fake.listen_keys.clear()  # the exchange forgot the key
        await ws.wait_connected()
        assert len(set(fake.keys_issued)) == 2
        assert any("keepalive refused: -1125" in why for up, why in states if not up)

    run(_stream_session(fake, body, keepalive_s=0.1))
    assert fake.seen("PUT", "/api/v3/userDataStream")[0].params["listenKey"]



def test_user_stream_malformed_listen_key_reply_retries_and_key_loss_loop_backs_off(
        fake: FakeBinance) -> None:
    fake.on("POST", "/api/v3/userDataStream", Canned(200, {"listenKey": "../x"}))

    async def body(ws: FakeUserStream, stream: BinanceUserStream,
                   reports: list[ExecutionReport], states: list[tuple[bool, str]]) -> None:
        assert states[0][0] is False and "'listenKey'" in states[0][1]
        t0 = time.monotonic()
        await ws.expire_all()
        await ws.wait_connected()  # a first loss: a new key at once
        first = time.monotonic() - t0
        t0 = time.monotonic()
        await ws.expire_all()
        await ws.wait_connected()  # lost again within a minute: after the back-off
        again = time.monotonic() - t0
        assert first < 0.9 <= 1.0 <= again, (first, again)

    stream = run(_stream_session(fake, body, initial_backoff_s=1.0))
    assert stream.counts["expired"] == 2


def test_user_stream_futures_keepalive_without_key_param_and_key_left_open(
        fake: FakeBinance) -> None:
    async def body(ws: FakeUserStream, stream: BinanceUserStream,
                   reports: list[ExecutionReport], states: list[tuple[bool, str]]) -> None:
        await ws.send_all({"e": "ACCOUNT_UPDATE", "E": 1, "T": 1, "a": {"m": "ORDER"}})
        await ws.send_all(FUTURES_UPDATE)
        await _until(lambda: len(reports) == 1 and stream.counts["keepalives"] >= 1)
        assert (reports[0].client_order_id, reports[0].status) == ("f1", "filled")
        assert stream.counts["ignored"] == 1

    run(_stream_session(fake, body, "futures", keepalive_s=0.05, close_key=False))
    assert fake.seen("PUT", "/fapi/v1/listenKey")[0].params == {}
    assert not fake.seen("DELETE", "/fapi/v1/listenKey") and fake.listen_keys


# ---- the futures market-data venue

def test_futures_venue_subscribes_agg_trades_and_parses_its_frames() -> None:
    venue = build_venue("binance-futures", VenueEndpoints())
    adapter = venue.stream(Subscription(("BTCUSDT",), "5m", trades=True))
    assert adapter.url() == "wss://fstream.binance.com/stream"
    assert json.loads(adapter.subscribe_requests(1)[0][1])["params"] == \
        ["btcusdt@kline_5m", "btcusdt@aggTrade", "btcusdt@bookTicker"]
    kline = {"stream": "btcusdt@kline_5m", "data": {
        "e": "kline", "E": 1638747660000, "s": "BTCUSDT", "k": {
            "t": 1638747600000, "T": 1638747899999, "s": "BTCUSDT", "i": "5m", "f": 1,
            "L": 2, "o": "0.0010", "c": "0.0020", "h": "0.0025", "l": "0.0010",
            "v": "1000", "n": 100, "x": True, "q": "1.0", "V": "500", "Q": "0.5",
            "B": "123"}}}
    agg = {"e": "aggTrade", "E": 123456789, "s": "BTCUSDT", "a": 5933014, "p": "0.001",
           "q": "100", "f": 100, "l": 105, "T": 123456785, "m": True}
    book = {"e": "bookTicker", "u": 400900217, "E": 1568014460893, "T": 1568014460891,
            "s": "BTCUSDT", "b": "25.35190000", "B": "31.21000000", "a": "25.36520000",
            "A": "40.66000000"}
    (k,), (t,), (q,) = (adapter.parse(json.dumps(x)) for x in (kline, agg, book))
    assert isinstance(k, KlineEvent) and k.closed and k.bar.close == 0.002
    assert isinstance(t, TradeEvent) and (t.trade_id, t.price, t.qty) == (5933014, 0.001, 100)
    assert isinstance(q, QuoteEvent) and (q.bid, q.ask) == (25.3519, 25.3652)
    with pytest.raises(MessageRejectedError, match="'a'"):
        adapter.parse(json.dumps({**agg, "a": "x"}))


def test_futures_venue_history_reads_fapi_klines(fake: FakeBinance) -> None:
    row = [300_000, "10.0", "11.0", "9.5", "10.5", "3.0", 599_999, "31.0", 5, "1.0", "10.0",
           "0"]
    fake.on("GET", "/fapi/v1/klines", Canned(200, [row]))
    history = build_venue("binance-futures", VenueEndpoints(rest_url=fake.url)).history()
    bars = run(history.fetch("BTCUSDT", "5m", 300_000, 600_000))
    assert [(b.ts, b.close) for b in bars] == [(300_000, 10.5)]
    assert fake.seen("GET", "/fapi/v1/klines")[0].params["symbol"] == "BTCUSDT"
