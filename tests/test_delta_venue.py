"""The Delta Exchange venue end to end against the loopback Delta simulator
(``raytrade exchange sim --venue delta``, its own process): paper trading on its public
candles decides as the backtest does, and the live trader survives every injected fault
reconciled; plus the client's own rules (signing, keys, symbols, client ids, closed bars
from the candlestick channel, refused input) on real code without a server."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from raytrade.actors.events import KlineEvent, MessageRejectedError, QuoteEvent
from raytrade.actors.journal import Journal
from raytrade.actors.live_config import LiveConfig, LiveLimits
from raytrade.actors.live_ledger import LiveLedger
from raytrade.actors.live_session import LiveSession
from raytrade.actors.paper_config import PaperConfig
from raytrade.actors.paper_session import PaperSession
from raytrade.actors.simulators.delta_exchange import DeltaExchangeSim
from raytrade.actors.simulators.delta_market import DeltaReplay
from raytrade.actors.simulators.exchange_accounts import parse_accounts
from raytrade.actors.venues.api_keys import ApiKeys, install_redaction
from raytrade.actors.venues.delta import DeltaVenue
from raytrade.actors.venues.delta_auth import load_keys, signature_payload
from raytrade.actors.venues.delta_orders import DeltaExecution, delta_client_id
from raytrade.actors.venues.delta_replies import Product, order_report, parse_order
from raytrade.actors.venues.delta_rest import DeltaCandles, parse_candles
from raytrade.actors.venues.delta_setup import load_settings
from raytrade.actors.venues.execution import RateLimitedError, SymbolFilters, VenueAuthError
from raytrade.actors.venues.execution_registry import execution_venue
from raytrade.actors.venues.protocol import Subscription, VenueEndpoints
from raytrade.actors.venues.replies import MalformedReplyError
from raytrade.envs.errors import ConfigError

from tests.exchange_setup import KEY, SECRET, Alerts, run_sessions, sim_state
from tests.live_setup import (
    BAR_MS,
    backtest,
    banner_process,
    bars,
    live_store,
    paper_store,
    speed_for,
    write_csv,
)

START = 300  # the quick FeatureSpec needs about 140 bars of warm-up


@pytest.fixture
def delta_sim(tmp_path: Path) -> Iterator[Any]:
    """A factory: ``raytrade exchange sim --venue delta`` on the first ``n`` bundled ETH
    and BTC bars (traded as ETHUSD and BTCUSD), one account of 10,000 USD; yields its
    banner (``rest_url``, ``public_ws_url``, ``private_ws_url``) and the bar files."""
    import contextlib

    stack = contextlib.ExitStack()

    def start(n: int, bar_s: float, faults: list[dict[str, Any]] | None = None
              ) -> tuple[dict[str, Any], list[Path]]:
        eth, btc = bars(n)
        data = [write_csv(eth, tmp_path), write_csv(btc, tmp_path)]
        accounts = tmp_path / "accounts.json"
        accounts.write_text(json.dumps([{"key": KEY, "secret": SECRET,
                                         "futures_wallet": "10000"}]))
        os.chmod(accounts, 0o600)
        cmd = [sys.executable, "-m", "raytrade.scripts.cli", "exchange", "sim", "--venue",
               "delta", "--accounts", str(accounts), "--replay", *map(str, data),
               "--speed", str(speed_for(bar_s)), "--start", str(START),
               "--start-on-connect", "--rate-quota", "1000000"]
        if faults:
            path = tmp_path / "faults.json"
            path.write_text(json.dumps({"faults": faults}))
            cmd += ["--faults", str(path)]
        return dict(stack.enter_context(banner_process(cmd))), data

    with stack:
        yield start


def feed_config(tmp_path: Path, info: dict[str, Any], bar_s: float, actor: str,
                **kw: Any) -> PaperConfig:
    """A session on the simulator's public socket and candles, trading ETHUSD."""
    base: dict[str, Any] = {
        "actor": actor, "symbol": "ETHUSD", "venue": "delta",
        "feed_url": info["public_ws_url"], "rest_url": info["rest_url"],
        "journal_dir": str(tmp_path / f"journal-{actor}"), "speed": speed_for(bar_s),
        "stale_after_bars": 100, "export_every_s": 1.0}
    return PaperConfig(**{**base, **kw})


def traded_last(session: PaperSession, last_ts: int) -> bool:
    """The session has decided on its last bar."""
    return session.trader is not None and (session.trader.last_ts or 0) >= last_ts


# ---- (1) paper parity

def test_delta_paper_session_on_simulated_candles_decides_as_the_backtest(
        tmp_path: Path, delta_sim: Any) -> None:
    live_bars, bar_s = 120, 0.05
    # one bar more than is checked: a candle closes when the next one opens
    info, (eth_csv, btc_csv) = delta_sim(START + live_bars + 1, bar_s)
    eth, _ = bars(START + live_bars)
    store, policy = paper_store(tmp_path / "store", quick=True)
    session = PaperSession(feed_config(tmp_path, info, bar_s, "delta-eth"), store)
    run_sessions([session], 60, lambda: traded_last(session, int(eth.ts[-1])))
    path = backtest(policy, eth_csv, btc_csv, START, quick=True)

    journal = Journal(session.config.journal_path)
    try:
        rows = journal.db.execute("SELECT d.ts, d.action, d.decided FROM decisions d JOIN "
                                  "bars b ON b.ts = d.ts AND b.symbol = d.symbol WHERE "
                                  "b.kind = 'live' AND d.symbol = 'ETHUSD' ORDER BY d.ts"
                                  ).fetchall()
        marked = {ts: e for ts, e, _, _ in journal.equity_rows("ETHUSD")}
        fills = journal.count("fills")
    finally:
        journal.close()
    # every live bar arrived closed, once, in order, from the candlestick channel
    assert [r[0] for r in rows] == [int(t) for t in eth.ts[START:]]
    n = len(path.actions)  # the env stops before the data ends (no next bar to fill)
    assert [r[0] for r in rows[:n]] == [int(eth.ts[b]) for b in path.bars]
    assert [r[1] for r in rows[:n]] == path.actions
    assert [r[2] for r in rows[:n]] == path.targets
    checked = [(b, e) for b, e in zip(path.marked_at, path.equity, strict=True)
               if b < len(eth)]  # the extra bar is never closed on the stream
    assert len(checked) >= n - 1
    np.testing.assert_allclose([marked[int(eth.ts[b])] for b, _ in checked],
                               [e for _, e in checked], rtol=1e-9)
    assert fills > 5, "the policy traded: fills exercised"


# ---- (2) the live trader under the fault schedule

FAULTS = ["error_5xx_before", "error_5xx_after", "place_late", "rate_limit", "timestamp",
          "insufficient_balance", "filter_lot_size", "partial_fill", "expire_listen_key",
          "drop_user_stream", "accept_then_timeout", "ban"]
"""The loopback Binance exchange's kinds, in its test's order; on Delta a ``ban`` is a
1 s refusal of every request (HTTP 429), after which trading goes on."""


def test_delta_live_trader_every_injected_fault_ends_reconciled_nothing_lost_or_doubled(
        tmp_path: Path, delta_sim: Any) -> None:
    live_bars, bar_s = 80, 0.15
    faults: list[dict[str, Any]] = [{"kind": k, "at_order": i + 1}
                                    for i, k in enumerate(FAULTS)]
    faults[FAULTS.index("accept_then_timeout")]["delay_s"] = 2.5  # beyond the 1 s timeout
    faults[FAULTS.index("place_late")]["delay_s"] = 0.8  # after the 503, in the window
    info, _ = delta_sim(START + live_bars + 1, bar_s, faults)
    eth, _ = bars(START + live_bars)
    store, _ = live_store(tmp_path / "store", seed=5, positions=(-1.0, 0.0, 1.0))
    keys = tmp_path / "delta-keys.json"
    keys.write_text(json.dumps({"api_key": KEY, "api_secret": SECRET}))
    os.chmod(keys, 0o600)
    settings = tmp_path / "delta.toml"
    settings.write_text("[leverage]\ndefault = 2\n")
    config = LiveConfig(
        paper=feed_config(tmp_path, info, bar_s, "live-delta", channel="live",
                          stale_after_bars=40, export_every_s=0.5),
        venue="delta-futures", network="loopback", rest_url=info["rest_url"],
        ws_url=info["private_ws_url"], key_file=str(keys), venue_config=str(settings),
        capital=1000.0, order_timeout_s=1.0, fill_timeout_s=1.0, command_poll_s=0.1,
        reconcile_every_s=1.0, limits=LiveLimits(stale_after_s=86_400.0,
                                                 max_orders_per_minute=1000,
                                                 max_symbol_notional=5000.0))
    alerts = Alerts()
    live = LiveSession(config, store, execution_venue(config.venue).build(config.setup()),
                       notifiers=[alerts])
    run_sessions([live], 90, lambda: traded_last(live, int(eth.ts[-1])))
    state = sim_state(info)
    account = state["accounts"][KEY]
    assert set(state["faults_fired"]) == set(FAULTS), \
        f"not reached: {set(FAULTS) - set(state['faults_fired'])}"

    ledger = LiveLedger(config.orders_journal_path)
    try:
        orders = account["orders"]
        ids = [o["client_order_id"] for o in orders]
        assert len(set(ids)) == len(ids), "a client order id was placed twice"
        ours = {delta_client_id(str(o["cid"])): o for o in ledger.orders()}
        for o in orders:  # every order on the exchange journaled, filled alike
            row = ours.get(o["client_order_id"])
            assert row is not None, f"order {o['client_order_id']} is not journaled"
            filled = (o["size"] - o["unfilled_size"]) * 0.01  # ETHUSD: 0.01 ETH a contract
            assert float(row["filled_qty"]) == pytest.approx(filled, abs=1e-9)
        book = ledger.book("ETHUSD")
        assert book is not None
        held = account["positions"]["ETHUSD"]["size"] * 0.01
        assert book.position == pytest.approx(held, abs=1e-9)
        events = {e["kind"] for e in ledger.events()}
        statuses = [str(o["status"]) for o in ledger.orders()]
        rejected = [str(o["reason"]) for o in ledger.orders() if o["status"] == "rejected"]
        assert not ledger.events(kind="mismatch"), ledger.events(kind="mismatch")
    finally:
        ledger.close()
    assert {"fate_unknown", "rate_limited", "stream_down", "stream_up"} <= events
    assert any("insufficient_margin" in r for r in rejected)
    assert any("bad_schema" in r for r in rejected)
    assert "sending" not in statuses
    assert "reconciliation" not in alerts.kinds()
    assert live.last_reconcile is not None and live.last_reconcile["ok"]
    sides = {o["side"] for o in account["orders"] if o["size"] > o["unfilled_size"]}
    assert sides == {"buy", "sell"}


# ---- (3) the client's rules, and bad input refused with a clear error

def test_delta_signature_payload_and_hmac_match_the_documented_example() -> None:
    # Delta's "Signing a Message" example: the prehash of GET /v2/orders with a query
    assert signature_payload("GET", "1542110948", "/v2/orders", "product_id=1&state=open") \
        == "GET1542110948/v2/orders?product_id=1&state=open"
    assert signature_payload("post", "1", "/v2/orders", "", '{"size":1}') == \
        'POST1/v2/orders{"size":1}'
    # the example's published signature was computed on the pre-v2 path /orders
    keys = ApiKeys("a207900b7693435a8fa9230a38195d",
                   "7b6f39dcf660ec1c7c664f612c60410a2bd0c258416b498bf0311f94228f")
    assert keys.sign(signature_payload("GET", "1542110948", "/orders",
                                       "product_id=1&state=open")) == \
        "ad767fead0bdbe91ba1e4feb142079245fecd66aa5e47a70b40ba1a4c9b4e3db"


def test_delta_keys_env_file_and_redaction_never_show_a_secret(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = {"RAYTRADE_DELTA_API_KEY": KEY, "RAYTRADE_DELTA_API_SECRET": SECRET}
    assert load_keys(environ=env) == ApiKeys(KEY, SECRET)
    with pytest.raises(ConfigError, match="RAYTRADE_DELTA_API_SECRET") as err:
        load_keys(environ={"RAYTRADE_DELTA_API_KEY": KEY})
    assert KEY not in str(err.value)
    f = tmp_path / "k.json"
    f.write_text(json.dumps({"api_key": KEY, "api_secret": SECRET}))
    f.chmod(0o644)
    with pytest.raises(ConfigError, match=r"Delta keys file has mode 0644"):
        load_keys(path=f)
    install_redaction(ApiKeys(KEY, SECRET))
    with caplog.at_level(logging.INFO):
        logging.getLogger("delta-test").info(
            "auth frame %s", json.dumps({"type": "key-auth", "payload": {
                "api-key": KEY, "signature": "ab12" * 16, "timestamp": 1}}))
    text = caplog.text
    assert KEY not in text and "ab12ab12" not in text and "<redacted>" in text


def test_delta_symbols_client_ids_settings_and_windows_follow_delta_rules(
        tmp_path: Path) -> None:
    venue = DeltaVenue(VenueEndpoints())
    assert [venue.venue_symbol(s) for s in ("BTCUSDT", "ethusdc", "BTCUSD")] == \
        ["BTCUSD", "ETHUSD", "BTCUSD"]
    with pytest.raises(ConfigError, match="no Delta perpetual for 'BTCEUR'"):
        venue.venue_symbol("BTCEUR")
    short, long_ = "rt-0123abcd-m3k9z1a0-12-0", "rt-0123abcd-m3k9z1a0-123456789-10"
    assert delta_client_id(short) == short
    mapped = delta_client_id(long_)
    assert len(mapped) == 32 and mapped == delta_client_id(long_) and mapped != \
        delta_client_id(long_[:-1] + "1")
    slashed = delta_client_id("a/b:c.d")  # it travels in a URL path when queried
    assert slashed.startswith("a-b-c-d-") and len(slashed) == 19
    with pytest.raises(ConfigError, match="shorter than Delta's 5 s signature window"):
        DeltaExecution("http://127.0.0.1:9", "ws://127.0.0.1:9", ApiKeys(KEY, SECRET),
                       recv_window_ms=1500)
    bad = tmp_path / "delta.toml"
    bad.write_text("[leverage]\nBTCUSD = 0.5\n")
    with pytest.raises(ConfigError, match=r"leverage\.BTCUSD is 0\.5"):
        load_settings(bad)
    bad.write_text("lots = 1\n")
    with pytest.raises(ConfigError, match=r"unknown settings \['lots'\]"):
        load_settings(bad)


def _candle(ts_us: int, o: float, h: float, lo: float, c: float, v: float = 1.0,
            res: str = "5m") -> str:
    return json.dumps({"c": c, "h": h, "l": lo, "o": o, "res": res, "sy": "BTCUSD",
                       "ts": ts_us, "type": f"candlestick_{res}", "v": v})


def test_delta_stream_closes_a_candle_on_rollover_and_never_across_a_reconnect() -> None:
    stream = DeltaVenue(VenueEndpoints()).stream(Subscription(("BTCUSD",), "5m"))
    t0 = 1_700_000_100_000  # a 5-minute bar open, ms
    frames = [frame for _, frame in stream.subscribe_requests(1)]
    assert json.loads(frames[0]) == {"type": "enable_heartbeat"}
    assert json.loads(frames[1])["payload"]["channels"] == [
        {"name": "candlestick_5m", "symbols": ["BTCUSD"]},
        {"name": "ticker", "symbols": ["BTCUSD"]}]
    assert stream.parse(_candle(t0 * 1000 + 5, 100, 101, 99, 100.5))[0].closed is False
    stream.parse(_candle((t0 + 299_999) * 1000, 100, 102, 99, 101.5, 7.0))
    rolled = stream.parse(_candle((t0 + BAR_MS) * 1000 + 1, 101.5, 101.5, 101.5, 101.5))
    closed = [e for e in rolled if isinstance(e, KlineEvent) and e.closed]
    assert [(e.bar.ts, e.bar.high, e.bar.close, e.bar.volume) for e in closed] == \
        [(t0, 102.0, 101.5, 7.0)]
    # a reconnect: the forming candle may have lost its last updates, so it never closes
    stream.subscribe_requests(3)
    after = stream.parse(_candle((t0 + 2 * BAR_MS) * 1000, 103, 103, 103, 103))
    assert not [e for e in after if isinstance(e, KlineEvent) and e.closed]
    quote = stream.parse(json.dumps({"type": "ticker", "ts": 5, "sy": "BTCUSD", "d": [
        {"s": "BTCUSD", "q": ["101.6", "12", None, None, None]}]}))
    assert quote == [QuoteEvent("BTCUSD", 5, 0.0, 0.0, 101.6, 12.0)]
    assert stream.parse('{"type": "heartbeat"}') == []
    with pytest.raises(MessageRejectedError, match="inconsistent OHLC"):
        stream.parse(_candle(t0 * 1000, 100, 99, 101, 100))
    with pytest.raises(MessageRejectedError, match="resolution '1m'"):
        stream.parse(json.dumps({**json.loads(_candle(t0 * 1000, 1, 1, 1, 1)),
                                 "res": "1m"}))


def test_delta_candles_malformed_row_and_unknown_product_are_refused_by_name() -> None:
    good = {"time": 1_700_000_100, "open": 1, "high": 2, "low": 0.5, "close": 1.5,
            "volume": 3}
    assert [b.ts for b in parse_candles([{**good, "time": good["time"] + 300}, good],
                                        "BTCUSD", BAR_MS, "src")] == \
        [1_700_000_100_000, 1_700_000_400_000]  # newest first in, oldest first out
    cases = [({**good, "high": 0.9}, "row 1: inconsistent OHLC"),
             ({k: v for k, v in good.items() if k != "close"}, "row 1: missing field 'close'"),
             ({**good, "volume": "abc"}, "row 1: field 'volume' is 'abc', not a number"),
             ({**good, "time": good["time"] + 7}, "row 1: open time 1700000107 s is not "
              "aligned"),
             (good, "two candles open at")]
    for row, message in cases:
        with pytest.raises(MessageRejectedError, match=message):
            parse_candles([good, row], "BTCUSD", BAR_MS, "src")
    # the simulator answers an unknown symbol as Delta does (400 invalid_contract)
    eth, btc = bars(START + 2)
    sim = DeltaExchangeSim(parse_accounts([{"key": KEY, "secret": SECRET,
                                            "futures_wallet": "100"}], "accounts"),
                           replay=DeltaReplay([eth, btc], start=START))
    with sim:
        with pytest.raises(ConfigError, match="Delta has no such product"):
            DeltaCandles(sim.rest_url, timeout_s=5).fetch_sync("DOGEUSD", "5m", 0, BAR_MS)

        async def rules() -> SymbolFilters:
            execution = DeltaExecution(sim.rest_url, sim.private_ws_url,
                                       ApiKeys(KEY, SECRET), timeout_s=5)
            try:
                with pytest.raises(ConfigError, match=r"DOGEUSD: Delta .* no such product"):
                    await execution.filters("DOGEUSD")
                return await execution.filters("ETHUSD")
            finally:
                await execution.close()

        filters = asyncio.run(rules())
    assert (filters.base_asset, filters.quote_asset, filters.step_size, filters.min_qty) == \
        ("ETH", "USD", 0.01, 0.01)


def test_delta_transport_learns_skew_and_maps_429_and_wrong_keys_to_the_contract() -> None:
    eth, btc = bars(START + 2)
    sim = DeltaExchangeSim(parse_accounts([{"key": KEY, "secret": SECRET,
                                            "futures_wallet": "100"}], "accounts"),
                           replay=DeltaReplay([eth, btc], start=START), skew_ms=20_000)

    async def scenario() -> None:
        good = DeltaExecution(sim.rest_url, sim.private_ws_url, ApiKeys(KEY, SECRET),
                              timeout_s=5)
        bad = DeltaExecution(sim.rest_url, sim.private_ws_url, ApiKeys(KEY, SECRET[::-1]),
                             timeout_s=5)
        try:
            # the server runs 20 s ahead: its first reply (an unsigned product) sets the
            # clock, so no signature expires
            snapshot = await good.account(("ETHUSD",))
            assert snapshot.balances == {"USD": 100.0} and snapshot.positions == {
                "ETHUSD": 0.0}
            assert abs(good.transport.offset_s - 20.0) < 1.0
            assert good.transport.counts["expired_signature"] == 0
            # loading the product set its leverage (the simulator's default is 10)
            product = await good.product("ETHUSD")
            env = await good.transport.call("GET", f"/v2/products/{product.id}/orders/"
                                            "leverage", signed=True)
            assert float(env["result"]["leverage"]) == 1.0
            # a clock lost again: the signed request is refused as expired, the reply's
            # server time adopted, and the retry passes
            good.transport.offset_s = 0.0
            await good.transport.call("GET", "/v2/wallet/balances", signed=True)
            assert good.transport.counts["expired_signature"] == 1
            assert abs(good.transport.offset_s - 20.0) < 1.0
            # a wrong secret: an auth error on REST and on the order stream, never a retry
            with pytest.raises(VenueAuthError, match="Signature Mismatch"):
                await bad.account(("ETHUSD",))
            with pytest.raises(VenueAuthError, match="invalid_signature"):
                await asyncio.wait_for(bad.user_stream().run(lambda r: None,
                                                             lambda up, why: None), 10)
            # over the quota: 429 with the window's reset as the hint, then held locally
            sim.rate_quota = 0
            with pytest.raises(RateLimitedError) as err:
                await good.transport.call("GET", "/v2/tickers/ETHUSD")
            assert 0 < err.value.retry_after_s <= 300
            sent = good.transport.requests
            with pytest.raises(RateLimitedError, match="not sent"):
                await good.transport.call("GET", "/v2/tickers/ETHUSD")
            assert good.transport.requests == sent
        finally:
            await good.close()
            await bad.close()

    with sim:
        asyncio.run(scenario())


def test_delta_order_replies_become_base_units_states_and_named_errors() -> None:
    eth = Product(id=3136, symbol="ETHUSD", contract_type="perpetual_futures",
                  notional_type="vanilla", contract_value=0.01, tick_size=0.05, state="live",
                  trading_status="operational", underlying="ETH", settling="USD",
                  position_size_limit=0)
    order = {"id": 7, "product_id": 3136, "size": 30, "unfilled_size": 10, "side": "sell",
             "state": "cancelled", "average_fill_price": "1811.5",
             "client_order_id": "rt-x", "created_at": "2021-04-29T07:25:59Z"}
    state = parse_order(order, eth, lambda c: f"mine:{c}", "GET /v2/orders/7")
    assert (state.client_order_id, state.status, state.qty, state.filled_qty,
            state.avg_price, state.update_ms) == ("mine:rt-x", "canceled", 0.3,
                                                  pytest.approx(0.2), 1811.5, 1619681159000)
    report = order_report({**order, "order_id": 7, "state": "open", "client_order_id": None,
                           "timestamp": 1_596_015_289_339_699}, eth, str, "orders update")
    assert (report.client_order_id, report.status, report.cum_qty, report.event_ms) == \
        ("delta-order-7", "partially_filled", pytest.approx(0.2), 1_596_015_289_339)
    assert report.cum_quote == pytest.approx(0.2 * 1811.5) and report.trade_id == -1
    with pytest.raises(MalformedReplyError, match=r"GET /v2/orders/7: field 'state' is "
                                                  r"'weird'"):
        parse_order({**order, "state": "weird"}, eth, str, "GET /v2/orders/7")
    with pytest.raises(MalformedReplyError, match="unfilled_size 31 break"):
        parse_order({**order, "unfilled_size": 31}, eth, str, "GET /v2/orders/7")
    with pytest.raises(MalformedReplyError, match=r"asked about ETHUSD \(3136\)"):
        parse_order({**order, "product_id": 27}, eth, str, "GET /v2/orders/7")
    with pytest.raises(ValueError, match="not a whole number of ETHUSD contracts"):
        eth.contracts(0.015)
    assert eth.contracts(0.3) == 30 and eth.filters().step_size == 0.01
