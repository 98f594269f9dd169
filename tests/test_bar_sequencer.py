"""Closed bars in order with no gap: REST backfill before the next decision, or a stale
hold that the journal hears about; then joined with the reference asset's bars."""

from __future__ import annotations

import asyncio

from raytrade.actors.bar_joiner import BarJoiner, JoinedBar
from raytrade.actors.bar_sequencer import CATCHUP, LIVE, WARMUP, BarSequencer, SequencedBar
from raytrade.actors.health import FeedHealth
from raytrade.actors.venues.http import RestUnavailableError
from raytrade.envs.bars import Bar, BarTable

MS = 300_000


def test_sequencer_warmup_gap_backfill_and_stale_hold(btc: BarTable) -> None:
    table = btc.slice(0, 40)
    calls: list[tuple[int, int]] = []
    failing = {"on": False}

    async def backfill(symbol: str, start: int, end: int) -> list[Bar]:
        calls.append((start, end))
        if failing["on"]:
            raise RestUnavailableError("HTTP 503")
        return [b for b in table if start <= b.ts < end]

    gaps: list[tuple[str, int, int, str]] = []
    health = FeedHealth()
    seq = BarSequencer("BTCUSDT", MS, backfill, health, warmup_bars=10,
                       on_gap=lambda *g: gaps.append(g))

    async def main() -> None:
        out = await seq.offer(table.bar(12))
        assert [s.kind for s in out] == [WARMUP] * 10 + [LIVE]
        assert [s.bar.ts for s in out] == [int(t) for t in table.ts[2:13]]
        # a gap: bars 13-14 never came; REST fills them before bar 15 is released
        out = await seq.offer(table.bar(15))
        assert [(s.bar.ts, s.kind) for s in out] == [
            (int(table.ts[13]), CATCHUP), (int(table.ts[14]), CATCHUP),
            (int(table.ts[15]), LIVE)]
        # duplicates and older bars are dropped
        assert await seq.offer(table.bar(15)) == [] and await seq.offer(table.bar(3)) == []
        # REST down: a gap cannot be filled; hold, flag stale, tell the journal once
        failing["on"] = True
        assert await seq.offer(table.bar(18)) == []
        assert await seq.offer(table.bar(19)) == []
        assert seq.stale and len(gaps) == 1 and gaps[0][1:3] == (int(table.ts[16]),
                                                                 int(table.ts[18]))
        # REST back: the retry releases the gap and the waiting bars, all as catch-up
        failing["on"] = False
        out = await seq.retry()
        assert [s.bar.ts for s in out] == [int(t) for t in table.ts[16:20]]
        assert {s.kind for s in out} == {CATCHUP} and not seq.stale
        # the next bar in time is live again
        assert [s.kind for s in await seq.offer(table.bar(20))] == [LIVE]

    asyncio.run(main())
    c = health.counters
    assert c["gaps"] == 2 and c["gaps_backfilled"] == 2 and c["gaps_unfilled"] == 1
    assert c["rest_errors"] >= 2 and c["duplicates"] == 1 and c["out_of_order"] == 1


def test_sequencer_rejects_rest_bars_that_do_not_cover_the_gap(btc: BarTable) -> None:
    table = btc.slice(0, 20)

    async def holey(symbol: str, start: int, end: int) -> list[Bar]:
        return [b for b in table if start <= b.ts < end and b.ts != table.ts[6]]

    seq = BarSequencer("BTCUSDT", MS, holey, FeedHealth(), last_ts=int(table.ts[4]))

    async def main() -> None:
        assert await seq.offer(table.bar(9)) == []
    asyncio.run(main())
    assert seq.stale


def test_joiner_pairs_symbol_and_reference_by_open_time_in_order(btc: BarTable,
                                                                   eth: BarTable) -> None:
    joiner = BarJoiner("ETHUSDT", "BTCUSDT")
    assert joiner.symbols == ("ETHUSDT", "BTCUSDT")

    def sb(table: BarTable, i: int, kind: str) -> SequencedBar:
        return SequencedBar(table.symbol, table.bar(i), kind)

    # ETH 3..6 arrive first; BTC's history starts at 4: ETH 3 can never be joined
    for i in range(3, 7):
        joiner.add(sb(eth, i, LIVE if i == 6 else CATCHUP))
    assert joiner.pop_next(None) is None  # nothing of BTC yet: wait
    joiner.add(sb(btc, 4, WARMUP))
    joiner.add(sb(btc, 5, CATCHUP))
    first = joiner.pop_next(None)
    assert first == JoinedBar(eth.bar(4), WARMUP, float(btc.close[4]))  # warm-up wins
    assert joiner.pop_next(int(eth.ts[4])) == JoinedBar(eth.bar(5), CATCHUP,
                                                        float(btc.close[5]))
    assert joiner.pop_next(int(eth.ts[5])) is None  # ETH 6 waits for BTC 6
    joiner.add(sb(btc, 6, LIVE))
    assert joiner.pop_next(int(eth.ts[5])) == JoinedBar(eth.bar(6), LIVE, float(btc.close[6]))
    # already traded bars are dropped; no reference: a bar is its own pair
    joiner.add(sb(eth, 6, LIVE))
    assert joiner.pop_next(int(eth.ts[6])) is None and joiner.waiting() == 0
    alone = BarJoiner("BTCUSDT", "BTCUSDT")
    assert alone.symbols == ("BTCUSDT",)
    alone.add(sb(btc, 9, LIVE))
    assert alone.pop_next(None) == JoinedBar(btc.bar(9), LIVE, float(btc.close[9]))
