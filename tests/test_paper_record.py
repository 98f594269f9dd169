"""A paper actor's record survives the actor moving to another node, and an export never
replaces a longer record with a shorter one. Real SQLite journals, a real replay server on
loopback, the real session; stores on a local folder and on moto's S3 server."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from raytrade.actors.journal import Journal
from raytrade.actors.paper_broker import BrokerConfig, PaperBroker
from raytrade.actors.paper_export import (
    SHRINK_FAULT,
    SNAPSHOT_EVERY_BARS,
    paper_objects,
    restore_journal,
    upload_paper,
)
from raytrade.actors.paper_session import PaperSession
from raytrade.actors.symbol_trader import SymbolTrader
from raytrade.algos.run_metrics import record_performance
from raytrade.algos.storage import keys
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.algos.storage.promotion import read_equity, unresolved_faults
from raytrade.envs.accounting import BORROW, FEES, SLIPPAGE

from tests.journal_worker import make_trader
from tests.live_setup import bars, paper_store, quick_experiment, replay_process
from tests.test_paper_session import SPEED, START, finished, market, run_session, session_config

T0 = 1_700_000_000_000
BAR = 300_000


def _objects(first: int, n: int) -> dict[str, bytes]:
    rows = [json.dumps({"ts": T0 + (first + i) * BAR, "equity": 10_000.0 + i,
                        "position": 0.0, "version": 1, "close": 1.0}) for i in range(n)]
    return {keys.EQUITY: "".join(r + "\n" for r in rows).encode(), keys.TRADES: b"",
            keys.HEALTH: json.dumps({"unresolved_faults": []}).encode()}


def test_export_never_replaces_a_longer_record_with_a_shorter_one(store_uri: str) -> None:
    store = PolicyStore(store_uri)
    assert upload_paper(store.blobs, "eth", _objects(0, 10))
    # a restarted actor with an empty journal: 3 rows from a later bar
    assert not upload_paper(store.blobs, "eth", _objects(20, 3))
    assert len(read_equity(store, "eth")) == 10, "the store's record is kept"
    faults = unresolved_faults(store, "eth")
    assert len(faults) == 1 and faults[0].startswith(SHRINK_FAULT)
    assert "3 equity rows" in faults[0] and "has 10" in faults[0]
    record = json.loads(store.blobs.get(keys.paper_key("eth", keys.RECORD)).data)
    assert record == {"equity_rows": 10, "first_ts": T0, "last_ts": T0 + 9 * BAR,
                      "refused_exports": 1}
    # more rows but a later start: history would be lost all the same
    assert not upload_paper(store.blobs, "eth", _objects(5, 30))
    assert len(read_equity(store, "eth")) == 10
    # the record continuing (a restored journal that caught up) is written, fault cleared
    assert upload_paper(store.blobs, "eth", _objects(0, 12))
    assert len(read_equity(store, "eth")) == 12 and unresolved_faults(store, "eth") == []
    health = json.loads(store.blobs.get(keys.paper_key("eth", keys.HEALTH)).data)
    assert health["record"] == {"refused_exports": 2, "refusal": None}


def test_export_of_a_record_written_before_record_json_is_guarded_too(tmp_path: Path) -> None:
    store = PolicyStore(tmp_path.as_uri())
    store.blobs.put(keys.paper_key("eth", keys.EQUITY), _objects(0, 8)[keys.EQUITY])
    assert not upload_paper(store.blobs, "eth", _objects(0, 2))
    assert len(read_equity(store, "eth")) == 8


def _journal(path: Path, n: int, store_root: Path) -> Journal:
    _, policy = paper_store(store_root)
    journal = Journal(path)
    trader = make_trader(journal, policy)
    trader.restore()
    eth, btc = bars(n)
    for i in range(n):
        trader.process(eth.bar(i), "live", float(btc.close[i]))
    return journal


def test_journal_snapshot_restores_a_missing_or_stale_journal_and_keeps_a_newer_one(
        store_uri: str, tmp_path: Path) -> None:
    store = PolicyStore(store_uri)
    journal = _journal(tmp_path / "node-a" / "eth.sqlite", 30, tmp_path / "policy")
    objects = paper_objects(journal, "ETHUSDT", {"unresolved_faults": []})
    assert keys.JOURNAL_SNAPSHOT in objects, "the first export snapshots"
    assert keys.JOURNAL_SNAPSHOT not in paper_objects(journal, "ETHUSDT", {}), "not due"
    assert upload_paper(store.blobs, "eth", objects)
    rows = journal.equity_rows("ETHUSDT")
    journal.close()
    # node b: no journal at all
    moved = tmp_path / "node-b" / "eth.sqlite"
    assert restore_journal(store.blobs, "eth", "ETHUSDT", moved) == "restored"
    restored = Journal(moved)
    assert restored.equity_rows("ETHUSDT") == rows
    assert restored.count("bars") == 30
    restored.close()
    # node a again, its journal as new as the snapshot: kept untouched
    assert restore_journal(store.blobs, "eth", "ETHUSDT",
                           tmp_path / "node-a" / "eth.sqlite") == "kept"
    # a journal behind the snapshot (left on a node the actor moved away from) is replaced
    stale = _journal(tmp_path / "node-c" / "eth.sqlite", 10, tmp_path / "policy2")
    stale.close()
    assert restore_journal(store.blobs, "eth", "ETHUSDT",
                           tmp_path / "node-c" / "eth.sqlite") == "restored"
    assert len(list((tmp_path / "node-c").glob("eth.sqlite.stale-*"))) == 1
    assert restore_journal(store.blobs, "other", "ETHUSDT", tmp_path / "x.sqlite") == \
        "no snapshot"


@pytest.mark.slow
def test_session_restarted_without_its_journal_continues_the_record(tmp_path: Path) -> None:
    eth, data = market(tmp_path, 240)
    store, _ = paper_store(tmp_path / "store", quick=True)
    with replay_process(data, speed=SPEED, start=START) as info:
        config = session_config(tmp_path, info)
        first = PaperSession(config, store)
        run_session(first, 60, finished(int(eth.ts[START + 60])))
        before = read_equity(store, "eth")  # exported at shutdown, snapshot included
        assert len(before) > 60
        # the node is lost: Ray restarts the actor elsewhere, without the journal folder
        shutil.rmtree(config.journal_path.parent)
        second = PaperSession(config, store)
        run_session(second, 60, finished(int(eth.ts[-1])))
    after = read_equity(store, "eth")
    assert unresolved_faults(store, "eth") == []
    assert len(after) > len(before)
    # the equity history keeps its earlier rows: exactly up to the last snapshot, and every
    # bar after it again (fetched over REST and processed as catch-up after the restore)
    exact = len(before) - SNAPSHOT_EVERY_BARS
    assert after[:exact] == before[:exact]
    assert [r["ts"] for r in after[:len(before)]] == [r["ts"] for r in before]
    assert after[-1]["ts"] == int(eth.ts[-1])
    starts = Journal(config.journal_path)
    try:
        assert starts.db.execute("SELECT count(*) FROM events WHERE kind='start'"
                                 ).fetchone()[0] == 2, "the restored journal has both starts"
    finally:
        starts.close()


def test_paper_export_carries_the_account_costs_and_their_metrics(tmp_path: Path) -> None:
    # a random policy of the quick experiment (short feature warm-up), short positions
    # paying borrow
    exp = quick_experiment()
    _, policy = paper_store(tmp_path / "policy", quick=True)
    costs = dataclasses.replace(exp.env.costs, borrow_bps_per_bar=0.5)
    broker = PaperBroker(BrokerConfig(costs=costs, risk=exp.env.risk), "ETHUSDT", "t")
    journal = Journal(tmp_path / "eth.sqlite")
    trader = SymbolTrader("ETHUSDT", exp.features, exp.env.window, broker, journal,
                          lambda: policy)
    eth, btc = bars(600)
    for i in range(600):
        trader.process(eth.bar(i), "live", float(btc.close[i]))
    objects = paper_objects(journal, "ETHUSDT", {"unresolved_faults": []})
    rows = [json.loads(line) for line in objects[keys.EQUITY].splitlines()]
    fills = journal.fills("ETHUSDT")
    _, state = journal.last_account("ETHUSDT")  # type: ignore[misc]
    journal.close()
    assert len(fills) >= 2, "the policy trades in this record"
    last = rows[-1]
    acct = state["acct"]
    assert last["fees"] == acct[FEES] == pytest.approx(sum(f["fee"] for f in fills))
    assert last["slippage"] == acct[SLIPPAGE] == pytest.approx(sum(f["slippage"]
                                                                   for f in fills))
    assert last["borrow"] == acct[BORROW] > 0 and last["trades"] == len(fills)
    assert last["traded_notional"] == pytest.approx(sum(f["notional"] for f in fills))
    assert rows[0]["fees"] == 0.0 and last["halted"] is False
    # performance.json: the shared metrics with costs, of the record and per version
    perf = json.loads(objects[keys.PERFORMANCE])
    record = perf["record"]
    assert record == json.loads(json.dumps(record_performance(rows)))
    assert record["cost_drag"] == pytest.approx(
        (last["fees"] + last["slippage"] + last["borrow"]) / rows[0]["equity"])
    assert record["gross_return"] == pytest.approx(record["total_return"]
                                                   + record["cost_drag"])
    assert record["trades"] == len(fills) and record["halted"] is False
    assert set(perf["versions"]) == {str(r["version"]) for r in rows}
    store = PolicyStore((tmp_path / "store").as_uri())
    assert upload_paper(store.blobs, "eth", objects)
    stored = json.loads(store.blobs.get(keys.paper_key("eth", keys.PERFORMANCE)).data)
    assert stored == perf
