"""The loopback simulators tell the exchanges' story about a bar: trades that rebuild it,
and (like Binance's REST klines) the bar still in progress, partial until it closes."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import numpy as np
import pytest
from raytrade.actors.simulators.bar_script import bar_in_progress, bar_trades
from raytrade.actors.simulators.coinbase_server import CoinbaseServer
from raytrade.actors.simulators.replay_server import (
    ReplayServer,
    book_message,
    kline_message,
    replay_tables,
    trade_messages,
)
from raytrade.actors.venues.binance_rest import RestKlines
from raytrade.actors.venues.coinbase_rest import CoinbaseCandles
from raytrade.actors.venues.http import RestUnavailableError
from raytrade.envs.bars import Bar, BarTable
from raytrade.envs.errors import DataError
from raytrade.envs.resample import align, resample
from websockets.asyncio.client import connect

MS = 300_000


def test_bar_script_trades_rebuild_the_bar_and_it_is_final_only_at_its_close(
        btc: BarTable) -> None:
    i = 101
    bar, t0 = btc.bar(i), int(btc.ts[i])
    trades = bar_trades(btc, i)
    prices = [t.price for t in trades]
    assert (prices[0], max(prices), min(prices), prices[-1]) == \
        (bar.open, bar.high, bar.low, bar.close)
    assert sum(t.qty for t in trades) == pytest.approx(bar.volume)
    assert all(t0 <= t.ts < t0 + MS for t in trades)
    prev = float(btc.close[i - 1])
    assert bar_in_progress(btc, i, t0) == Bar(t0, prev, prev, prev, prev, 0.0)
    for now in (t0 + MS // 5, t0 + MS // 2, t0 + MS - 2):
        partial = bar_in_progress(btc, i, now)
        assert partial.open == bar.open and partial.volume < bar.volume


def test_replay_rest_klines_end_with_the_kline_in_progress_like_binance(
        btc: BarTable) -> None:
    start = 50

    async def main() -> list[Bar]:
        # 5m bars at 30x: each lasts 10 s, so the request lands early in bar ``start``
        async with ReplayServer([btc.slice(0, 100)], speed=30.0, start=start) as server:
            return await RestKlines(server.rest_url).fetch(
                "BTCUSDT", "5m", int(btc.ts[start - 3]), int(btc.ts[start + 10]))

    bars = asyncio.run(main())
    assert [b.ts for b in bars] == [int(t) for t in btc.ts[start - 3:start + 1]]
    assert bars[:3] == [btc.bar(i) for i in range(start - 3, start)]  # closed: final
    assert bars[3] != btc.bar(start)  # in progress: partial, its close in the future
    assert bars[3].volume < btc.bar(start).volume


def test_replay_tables_serve_1h_klines_resampled_causally_from_5m_files(
        btc: BarTable, eth: BarTable) -> None:
    # a policy trained on 1h bars built from the bundled 5m files paper-trades on 1h
    # klines: the replay builds them exactly as training did (resample.resample)
    tables = replay_tables([eth.slice(0, 1200), btc.slice(0, 1200)], "1h")
    want = align([resample(eth.slice(0, 1200), "1h"), resample(btc.slice(0, 1200), "1h")])
    for got, expected in zip(tables, want, strict=True):
        assert got.interval == "1h"
        np.testing.assert_array_equal(got.ts, expected.ts)
        np.testing.assert_array_equal(got.ohlcv(), expected.ohlcv())
    start = 60
    hourly = tables[0]

    async def main() -> list[Bar]:
        # 1h bars at 360x: each lasts 10 s; the request lands early in bar ``start``
        async with ReplayServer(tables, speed=360.0, start=start) as server:
            assert server.interval == "1h"
            return await RestKlines(server.rest_url).fetch(
                "ETHUSDT", "1h", int(hourly.ts[start - 3]), int(hourly.ts[start + 10]))

    bars = asyncio.run(main())
    assert [b.ts for b in bars] == [int(t) for t in hourly.ts[start - 3:start + 1]]
    assert bars[:3] == [hourly.bar(i) for i in range(start - 3, start)]


def test_replay_tables_refuse_an_interval_finer_than_the_files(btc: BarTable) -> None:
    with pytest.raises(DataError, match="its 5m bars cannot make 1m bars"):
        replay_tables([btc.slice(0, 100)], "1m")


def test_coinbase_server_refuses_a_bad_candles_request_with_a_reason(
        btc: BarTable) -> None:
    tables = {"BTC-USD": dataclasses.replace(btc.slice(0, 20), symbol="BTC-USD")}

    async def main() -> str:
        async with CoinbaseServer(tables, start=10, bar_s=1.0) as server:
            with pytest.raises(RestUnavailableError, match="HTTP 400") as err:
                await CoinbaseCandles(server.rest_url).fetch("ETH-USD", "5m",
                                                             int(btc.ts[0]), int(btc.ts[5]))
            good = await CoinbaseCandles(server.rest_url).fetch(
                "BTC-USD", "5m", int(btc.ts[1]), int(btc.ts[5]))
            assert [b.ts for b in good] == [int(t) for t in btc.ts[1:5]]
            return str(err.value)

    assert "ETH-USD" in asyncio.run(main())


def test_replay_server_every_subscriber_gets_binance_frames_byte_for_byte(
        btc: BarTable, eth: BarTable) -> None:
    # the frames of a bar close are encoded once and shared by every connection: each
    # subscriber still gets exactly its streams, in Binance's order and wording
    start, bars = 40, 2
    tables = align([btc.slice(0, 60), eth.slice(0, 60)])
    btc_t, eth_t = tables
    streams = "btcusdt@kline_5m/btcusdt@bookTicker/ethusdt@trade"

    async def read(url: str, n: int) -> list[str]:
        async with connect(url) as ws:
            return [str(await asyncio.wait_for(ws.recv(), 10)) for _ in range(n)]

    async def main() -> tuple[list[str], list[str], list[str]]:
        # 5m bars at 3000x: a bar every 100 ms
        async with ReplayServer(tables, speed=3000.0, start=start) as server:
            per_bar = 3 + 4  # kline in progress, book, closed kline; ETH's four trades
            a, b, c = await asyncio.gather(
                read(f"{server.ws_url}/stream?streams={streams}", per_bar * bars),
                read(f"{server.ws_url}/stream?streams={streams}", per_bar * bars),
                read(f"{server.ws_url}/ws/btcusdt@kline_5m", 2 * bars))
            return a, b, c

    def expected(i0: int, combined: bool) -> list[str]:
        out: list[str] = []
        for i in range(i0, i0 + bars):
            close = int(btc_t.ts[i]) + MS
            middle = close - MS // 2
            progress = kline_message("BTCUSDT", "5m", MS, bar_in_progress(btc_t, i, middle),
                                     False, middle, i * 4)
            final = kline_message("BTCUSDT", "5m", MS, btc_t.bar(i), True, close, i * 4)
            if not combined:
                out += [json.dumps(progress), json.dumps(final)]
                continue
            out += [json.dumps({"stream": "btcusdt@kline_5m", "data": progress}),
                    json.dumps({"stream": "btcusdt@bookTicker",
                                "data": book_message("BTCUSDT", btc_t, i, 1e-4)}),
                    json.dumps({"stream": "btcusdt@kline_5m", "data": final}),
                    *(json.dumps({"stream": "ethusdt@trade", "data": m})
                      for m in trade_messages("ETHUSDT", eth_t, i))]
        return out

    def first_bar(frames: list[str]) -> int:
        msg = json.loads(frames[0])
        t = int(msg.get("data", msg)["k"]["t"])
        return int(np.searchsorted(btc_t.ts, t))

    for frames, is_combined in zip(asyncio.run(main()), (True, True, False), strict=True):
        assert frames == expected(first_bar(frames), is_combined)
