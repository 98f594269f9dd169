"""The live orders journal: intents before sends, fills applied once from cumulative
reports whoever sends them, spot commission in the base asset, halts with who and why,
and operator commands through the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from raytrade.actors.journal import JournalError
from raytrade.actors.live_export import live_objects
from raytrade.actors.live_ledger import Halt, LiveLedger
from raytrade.actors.venues.execution import OrderRequest, OrderState
from raytrade.algos.storage import keys
from raytrade.algos.storage.blobstore import LocalBlobStore
from raytrade.algos.storage.live_commands import issue_command, read_commands
from raytrade.envs.errors import ConfigError


@pytest.fixture()
def ledger(tmp_path: Path) -> LiveLedger:
    led = LiveLedger(tmp_path / "a.orders.sqlite", base_asset="BTC", quote_asset="USDT")
    led.set_baseline("BTCUSDT", 0.0, 1000.0, 0, by="test", why="first start")
    return led


def _buy(cid: str = "rt-1", qty: float = 0.01) -> OrderRequest:
    return OrderRequest(cid, "BTCUSDT", "buy", qty, "limit", 40200.0)


def test_intent_is_recorded_once_per_client_id(ledger: LiveLedger) -> None:
    assert ledger.intent(_buy(), bar_ts=1, version=3, leg=0, ref_price=40000.0, at_ms=5)
    assert not ledger.intent(_buy(), bar_ts=1, version=3, leg=0, ref_price=40000.0, at_ms=6)
    assert [r["status"] for r in ledger.orders(open_only=True)] == ["sending"]


def test_fills_apply_once_from_cumulative_reports_in_any_order(ledger: LiveLedger) -> None:
    ledger.intent(_buy(), bar_ts=1, version=3, leg=0, ref_price=40000.0, at_ms=5)
    first = ledger.progress("rt-1", 0.004, 160.0, 10, fill_id="t1", commission=0.000004,
                            commission_asset="BTC", estimated=False)
    assert first is not None and first.qty == pytest.approx(0.004)
    # the same report again (stream redelivery), then REST's view of the same state
    assert ledger.progress("rt-1", 0.004, 160.0, 11, fill_id="t1", commission=0.000004,
                           commission_asset="BTC", estimated=False) is None
    assert ledger.progress("rt-1", 0.004, 160.0, 12, fill_id="rt-1:cum:0.004",
                           commission=0.000004, commission_asset="BTC",
                           estimated=True) is None
    second = ledger.progress("rt-1", 0.01, 400.6, 13, fill_id="t2", commission=0.000006,
                             commission_asset="BTC", estimated=False)
    assert second is not None and second.price == pytest.approx(240.6 / 0.006)
    book = ledger.book("BTCUSDT")
    assert book is not None
    # spot: the buy's commission is paid in BTC, so the position is qty less commission
    assert book.position == pytest.approx(0.01 - 0.00001)
    assert book.cash == pytest.approx(1000.0 - 400.6)
    assert [f["fill_id"] for f in ledger.fills()] == ["t1", "t2"]


def test_a_sell_pays_commission_in_quote_and_a_final_order_is_never_reopened(
        ledger: LiveLedger) -> None:
    ledger.set_baseline("BTCUSDT", 0.02, 0.0, 1, by="test", why="seeded")
    ledger.intent(OrderRequest("rt-s", "BTCUSDT", "sell", 0.02), bar_ts=2, version=1,
                  leg=0, ref_price=40000.0, at_ms=5)
    ledger.progress("rt-s", 0.02, 800.0, 6, fill_id="t9", commission=0.8,
                    commission_asset="USDT", estimated=False)
    ledger.acknowledge(OrderState("rt-s", "77", "BTCUSDT", "sell", "filled", 0.02, 0.02,
                                  40000.0), 7)
    ledger.acknowledge(OrderState("rt-s", "77", "BTCUSDT", "sell", "new", 0.02, 0.0, None),
                       8)  # a late NEW event
    assert ledger.order("rt-s")["status"] == "filled"  # type: ignore[index]
    book = ledger.book("BTCUSDT")
    assert book is not None and book.position == pytest.approx(0.0)
    assert book.cash == pytest.approx(799.2)


def test_halts_record_who_and_why_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "b.orders.sqlite"
    led = LiveLedger(path, base_asset="BTC", quote_asset="USDT")
    assert led.add_halt("BTCUSDT", Halt("operator", "news", "alice", 9),
                        detail="halt by alice: news")
    assert not led.add_halt("BTCUSDT", Halt("operator", "again", "bob", 10), detail="x")
    with pytest.raises(JournalError, match="locked"):
        LiveLedger(path)
    led.close()
    again = LiveLedger(path)
    assert again.halt("BTCUSDT") == Halt("operator", "news", "alice", 9)
    assert [(e["kind"], e["by"]) for e in again.events()] == [("operator", "alice")]


def test_each_halt_kind_is_lifted_on_its_own(ledger: LiveLedger) -> None:
    ledger.add_halt("BTCUSDT", Halt("operator", "news", "alice", 1), detail="news")
    ledger.add_halt("BTCUSDT", Halt("reconciliation", "moved", "raytrade", 2), detail="moved")
    assert ledger.halt("BTCUSDT").kind == "reconciliation"  # type: ignore[union-attr]
    # an adopt lifts the mismatch, never the operator's halt
    assert ledger.lift_halts("BTCUSDT", ("reconciliation",), event="adopt", by="bob",
                             detail="adopt by bob", at_ms=3) == ["reconciliation"]
    assert [h.kind for h in ledger.halts("BTCUSDT")] == ["operator"]
    assert ledger.lift_halts("BTCUSDT", ("reconciliation",), event="adopt", by="bob",
                             detail="again", at_ms=4) == []
    lifted = ledger.lift_halts("BTCUSDT", ("operator", "flatten"), event="resume", by="carol",
                               detail="resume by carol", at_ms=5)
    assert lifted == ["operator"] and ledger.halt("BTCUSDT") is None


def test_export_carries_slippage_against_the_paper_fill(ledger: LiveLedger) -> None:
    ledger.intent(_buy(), bar_ts=100, version=3, leg=0, ref_price=40000.0, at_ms=5)
    ledger.progress("rt-1", 0.01, 401.0, 10, fill_id="t1", commission=0.00001,
                    commission_asset="BTC", estimated=False)
    ledger.set_paper_price("BTCUSDT", 100, 40000.0)
    objects = live_objects(ledger, "BTCUSDT", {"actor": "a"})
    fill = json.loads(objects[keys.LIVE_FILLS])
    assert fill["paper_price"] == 40000.0 and fill["slippage_bps"] == pytest.approx(25.0)
    order = json.loads(objects[keys.LIVE_ORDERS])
    assert order["avg_price"] == pytest.approx(40100.0) and order["status"] == "sending"


def test_commands_round_trip_through_the_store_in_order(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "store")
    first = issue_command(blobs, "halt", by="alice", reason="news", at_ms=1000)
    second = issue_command(blobs, "adopt", by="bob", actors=("live-btc",), at_ms=2000)
    commands, errors = read_commands(blobs)
    assert [c.id for c in commands] == [first.id, second.id] and errors == []
    assert first.applies_to("anyone") and not second.applies_to("live-eth")
    assert read_commands(blobs, after=first.id)[0] == [second]
    assert read_commands(blobs, skip={first.id})[0] == [second]
    blobs.put(keys.live_command_key(3000, "zz"), b'{"id": "x"}')
    commands, errors = read_commands(blobs, after=second.id)
    assert commands == [] and "field 'action'" in errors[0]


def test_commands_refuse_unknown_actions_an_adopt_for_everyone_and_no_author(
        tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "store")
    with pytest.raises(ConfigError, match="not one of"):
        issue_command(blobs, "sell-everything", by="alice")
    with pytest.raises(ConfigError, match="name the actors"):
        issue_command(blobs, "adopt", by="alice")
    with pytest.raises(ConfigError, match="who issued"):
        issue_command(blobs, "halt", by=" ")
