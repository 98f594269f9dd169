"""Parity, the proof that matters: replay server -> websocket -> PaperTrader (a Ray actor)
gives the decisions, positions and equity of the backtest env on the same real bars.

The two sides start their history in different places, as in production: the backtest
computes features from the first bar of the file; the actor, like a live one, fetches only
``feature_warmup_bars`` (about 9,400 bars for this FeatureSpec) over REST before its first
decision at bar 14,000, so its features start about 4,600 bars later. A feature that
depended on where history starts (a running sum, an unbounded memory, a moving average
still carrying its start-up value) would show up here as a different action or an equity
gap far above the tolerance.

Tolerance: actions and decided targets exactly equal; equity within a relative 1e-9. The
remaining difference is float rounding: the paper broker takes its half spread from the
replayed ``bookTicker`` (a quote of close * (1 -/+ 1 bp)), the backtest from the cost
model's ``half_spread_bps`` = 1, and the features' start-up contributions have decayed
below double precision after the warm-up (measured: 2e-15 relative on equity, no action
differs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import ray
from raytrade.actors.journal import Journal
from raytrade.actors.paper_config import PaperConfig
from raytrade.algos.storage import keys
from raytrade.envs.decision import DecisionRule
from raytrade.envs.features.warmup import feature_warmup_bars

from tests.live_setup import (
    backtest,
    bars,
    paper_store,
    paper_until_exported,
    replay_process,
    write_csv,
)

N_BARS = 14_300
START = 14_000  # live from here; the actor warms up over REST on the bars before it
BAR_S = 0.03  # one replayed 5m bar every 30 ms


RULE = DecisionRule(margin=0.0, cost_multiple=0.25, every_bars=3)
"""A cost-aware rule: decide every 3rd bar (epoch-aligned 15 minutes), switch only when
the Q advantage pays a quarter of the trade's fee and half spread in Q units (this random
policy then changes position on 18 of 100 decisions instead of 36)."""


# BTCUSDT is the FeatureSpec's reference asset: the session joins the symbol with itself.
# The third case serves a bundle with a decision rule: the paper trader and the backtest
# env must apply it identically (the same decision bars, the same held switches).
@pytest.mark.parametrize(("symbol", "rule"), [("ETHUSDT", None), ("BTCUSDT", None),
                                              ("ETHUSDT", RULE)])
def test_paper_actor_on_replayed_real_bars_matches_backtest(
        tmp_path: Path, local_ray: None, symbol: str, rule: DecisionRule | None) -> None:
    eth, btc = bars(N_BARS)
    eth_csv, btc_csv = write_csv(eth, tmp_path), write_csv(btc, tmp_path)
    mine, mine_csv = (eth, eth_csv) if symbol == "ETHUSDT" else (btc, btc_csv)
    actor = symbol.lower()
    store, policy = paper_store(tmp_path / "store", rule=rule)
    speed = 300_000 / (BAR_S * 1000)
    with replay_process([eth_csv, btc_csv], speed=speed, start=START) as info:
        config = PaperConfig(actor=actor, symbol=symbol, venue="replay",
                             feed_url=str(info["ws_url"]), rest_url=str(info["rest_url"]),
                             journal_dir=str(tmp_path / "journal"), warmup_bars=None,
                             speed=speed / 1000, stale_after_bars=100, export_every_s=1)
        # the replay lasts (N_BARS - START) * BAR_S = 9 s; warm-up adds a few seconds.
        # Stop once the export holds every live bar (120 s at most: an actor that compiles
        # its feature kernels on a cold Numba cache beside other work has taken 40-60 s,
        # and 30 s then cut the run after its first bar)
        finals = paper_until_exported([config], store, actor,
                                      lambda lines: len(lines) >= N_BARS - START, 120)
    assert finals[0]["error"] is None
    path = backtest(policy, mine_csv, btc_csv, START)

    journal = Journal(tmp_path / "journal" / f"{actor}.sqlite")
    rows = journal.db.execute("SELECT ts, action, decided, reason FROM decisions WHERE "
                              "symbol=? ORDER BY ts", (symbol,)).fetchall()
    assert [r[0] for r in rows] == [int(t) for t in mine.ts[START:]]
    between = [r for r in rows if r[3].startswith("between decision bars")]
    decided = [r for r in rows if not r[3].startswith("between decision bars")]
    reasons = {r[3] for r in decided}
    if rule is None:
        assert not between and reasons == {"policy"}, f"every live bar decided: {reasons}"
    else:
        # decisions on every 3rd bar only; the margin kept some of the greedy switches
        assert all((int(r[0]) // 300_000) % 3 == 0 for r in decided)
        assert len(between) > len(decided) and "margin: held" in reasons, reasons
    first_bar = journal.db.execute("SELECT MIN(ts) FROM bars WHERE symbol=?",
                                   (symbol,)).fetchone()[0]
    warmup = feature_warmup_bars(policy.feature_spec, policy.manifest.env.window)
    # the paper side's history starts where live starts it, not where the backtest's does
    assert START - warmup > 0 and first_bar == int(mine.ts[START - warmup])
    n = len(path.actions)  # the env stops before the data ends (no next bar to fill)
    assert [r[0] for r in decided[:n]] == [int(mine.ts[b]) for b in path.bars]
    assert len(decided) - n in (0, 1)
    assert [r[1] for r in decided[:n]] == path.actions
    assert [r[2] for r in decided[:n]] == path.targets
    acct = journal.equity_rows(symbol)
    marked = {ts: e for ts, e, _, _ in acct}  # equity marked at each bar's close
    live_equity = [marked[int(mine.ts[b])] for b in path.marked_at]
    np.testing.assert_allclose(live_equity, path.equity, rtol=1e-9)
    assert journal.count("fills") > 10, "the policy traded: fills exercised"
    # the export the dashboard and the promotion gate read
    exported = store.blobs.get(keys.paper_key(actor, keys.EQUITY)).data.decode().splitlines()
    assert len(exported) == len(acct)
    assert json.loads(exported[-1])["version"] == policy.version
    journal.close()
    assert not ray.util.list_named_actors()
