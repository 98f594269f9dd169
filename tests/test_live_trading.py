"""The live trader end to end on real processes over loopback: the loopback Binance
exchange (``raytrade exchange sim``, its own process, with the replay feed it fills on),
the real Binance client (signed REST, user data stream), real SQLite journals, and the
paper trader beside it on the same bars."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from raytrade.actors.live_config import LiveLimits
from raytrade.actors.live_ledger import LiveLedger
from raytrade.actors.live_session import LiveSession
from raytrade.actors.paper_session import PaperSession
from raytrade.algos.storage.live_commands import issue_command
from raytrade.dashboard.live_reader import LiveReader
from raytrade.envs.errors import ConfigError

from tests.exchange_setup import (
    KEY,
    SECRET,
    Alerts,
    account,
    exchange_process,
    execution,
    live_config,
    paper_config,
    run_sessions,
    sim_post,
    sim_state,
)
from tests.live_setup import BAR_MS, bars, live_store, speed_for, wait_for, write_csv
from tests.test_dashboard_live import live_page, texts

START = 300  # the quick FeatureSpec needs about 140 bars of warm-up


def market(tmp_path: Path, live_bars: int) -> tuple[int, list[Path]]:
    """ETH (traded) and BTC (reference) files; the last bar's open time."""
    eth, btc = bars(START + live_bars)
    return int(eth.ts[-1]), [write_csv(eth, tmp_path), write_csv(btc, tmp_path)]


def rows(path: Path | str, sql: str) -> list[tuple[Any, ...]]:
    """Read a journal after its session closed it."""
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def done_at(session: PaperSession, last_ts: int) -> bool:
    """The session traded its last bar."""
    return session.trader is not None and (session.trader.last_ts or 0) >= last_ts


def orders_on_exchange(info: dict[str, Any]) -> list[dict[str, Any]]:
    """Every order of the test account, on both markets."""
    state = account(info)
    return list(state["orders"])


def ledger_of(session: LiveSession) -> LiveLedger:
    """The closed session's orders journal, reopened."""
    return LiveLedger(session.live.orders_journal_path)


def assert_reconciled(session: LiveSession, info: dict[str, Any], symbol: str = "ETHUSDT",
                      base: str = "ETH", market: str = "spot", *,
                      mismatches: bool = False) -> None:
    """The orders journal and the exchange agree: the position, and every order the
    exchange has is journaled once with the same filled quantity (nothing lost, nothing
    doubled)."""
    ledger = ledger_of(session)
    try:
        state = account(info)
        ours = {o["clientOrderId"]: o for o in state["orders"]}
        assert len(ours) == len(state["orders"]), "a client order id was placed twice"
        for cid, order in ours.items():
            row = ledger.order(cid)
            assert row is not None, f"order {cid} on the exchange is not journaled"
            assert float(row["filled_qty"]) == pytest.approx(float(order["executedQty"]),
                                                             abs=1e-12), cid
        book = ledger.book(symbol)
        assert book is not None
        held = (float(state["spot"].get(base, 0.0)) if market == "spot" else
                float(state["positions"].get(symbol, {}).get("amount", 0.0)))
        assert book.position == pytest.approx(held, abs=1e-9)
        if not mismatches:
            assert not ledger.events(kind="mismatch"), ledger.events(kind="mismatch")
        assert session.last_reconcile is not None and session.last_reconcile["ok"]
    finally:
        ledger.close()


@pytest.mark.parametrize(("venue", "positions", "base"),
                         [("binance-spot", (0.0, 1.0), "ETH"),
                          ("binance-futures", (-1.0, 0.0, 1.0), "ETH")])
def test_live_and_paper_trade_the_same_targets_and_differ_only_by_fill_prices(
        tmp_path: Path, venue: str, positions: tuple[float, ...], base: str) -> None:
    bar_s = 0.15
    last_ts, data = market(tmp_path, 40)
    store, policy = live_store(tmp_path / "store", positions=positions)
    with exchange_process(tmp_path, data, speed=speed_for(bar_s), start=START) as info:
        live = LiveSession(live_config(tmp_path, info, speed_for(bar_s), venue=venue), store,
                           execution(info, "spot" if venue == "binance-spot" else "futures"))
        paper = PaperSession(paper_config(tmp_path, info, speed_for(bar_s), "paper-eth"),
                             store)
        run_sessions([live, paper], 60,
                     lambda: done_at(live, last_ts) and done_at(paper, last_ts))
        assert_reconciled(live, info, market="spot" if venue == "binance-spot" else "futures")
    decided = "SELECT d.ts, d.decided FROM decisions d JOIN bars b ON b.ts = d.ts AND " \
              "b.symbol = d.symbol WHERE b.kind = 'live' ORDER BY d.ts"
    live_targets = dict(rows(live.config.journal_path, decided))
    paper_targets = dict(rows(paper.config.journal_path, decided))
    common = sorted(set(live_targets) & set(paper_targets))
    assert len(common) >= 30
    assert [live_targets[t] for t in common] == [paper_targets[t] for t in common]
    ledger = ledger_of(live)
    try:
        marks = ledger.equity_rows("ETHUSDT")
        fills = ledger.fills()
    finally:
        ledger.close()
    # after each live bar's orders the position is the decided fraction of the
    # allocation's equity, up to the quantity step and the commission
    traded = [m for m in marks if m["ts"] in set(common)]
    exposure = np.array([m["position"] * m["price"] / m["equity"] for m in traded])
    target = np.array([m["target"] for m in traded])
    assert np.abs(exposure - target).max() < 0.01
    assert len(fills) >= 8 and any(f["side"] == "sell" for f in fills)
    if venue == "binance-futures":
        assert min(m["position"] for m in marks) < 0 < max(m["position"] for m in marks)
    # equity: live's return differs from paper's by what its fill prices gave or took,
    # and by the exchange's commission against the cost model's fee (the loopback
    # futures taker fee is 5 bp, the policy's model charges 10 bp)
    compared = [f for f in fills if f["paper_price"] is not None]
    assert len(compared) >= len(fills) - 2  # the last bar's paper fill is after the stop
    price_effect = sum((1 if f["side"] == "sell" else -1) * (f["price"] - f["paper_price"])
                       * f["qty"] for f in compared) / 1000.0
    fee_bps = policy.manifest.env.costs.fee_bps
    fee_effect = sum(fee_bps / 1e4 * f["qty"] * f["paper_price"] - (
        f["commission"] * f["price"] if f["commission_asset"] == base else f["commission"])
        for f in compared) / 1000.0
    paper_equity = {m["ts"]: m["paper_equity"] for m in marks}
    first, end = traded[0], traded[-1]
    live_return = end["equity"] / first["equity"] - 1
    paper_return = paper_equity[end["ts"]] / paper_equity[first["ts"]] - 1
    print(f"{venue}: live {live_return:+.4%}, paper {paper_return:+.4%}, fill prices "
          f"{price_effect:+.4%}, commission against the modelled fee {fee_effect:+.4%}, "
          f"{len(compared)} fills")
    assert abs((live_return - paper_return) - price_effect - fee_effect) < 0.003


FAULTS = ["error_5xx_before", "error_5xx_after", "place_late", "rate_limit", "timestamp",
          "insufficient_balance", "filter_lot_size", "partial_fill", "expire_listen_key",
          "drop_user_stream", "accept_then_timeout", "ban"]
"""In order; the ban comes last: it halts the symbol until a person resumes."""


def test_every_injected_fault_ends_reconciled_with_nothing_lost_or_doubled(
        tmp_path: Path) -> None:
    bar_s = 0.15
    last_ts, data = market(tmp_path, 90)
    store, _ = live_store(tmp_path / "store", seed=5)
    faults: list[dict[str, Any]] = [{"kind": k, "at_order": 2 * i + 1}
                                    for i, k in enumerate(FAULTS)]
    faults[FAULTS.index("accept_then_timeout")]["delay_s"] = 2.5  # beyond the 1 s timeout
    faults[FAULTS.index("place_late")]["delay_s"] = 0.8  # after the 503, in recvWindow
    alerts = Alerts()
    with exchange_process(tmp_path, data, speed=speed_for(bar_s), start=START,
                          faults=faults) as info:
        live = LiveSession(live_config(tmp_path, info, speed_for(bar_s)), store,
                           execution(info), notifiers=[alerts])
        run_sessions([live], 90, lambda: done_at(live, last_ts))
        state = sim_state(info)
        assert_reconciled(live, info)
    fired = set(state["faults_fired"])
    assert fired == set(FAULTS), f"not reached: {set(FAULTS) - fired}"
    ledger = ledger_of(live)
    try:
        events = {e["kind"] for e in ledger.events()}
        statuses = [o["status"] for o in ledger.orders()]
        rejected = [o["reason"] for o in ledger.orders() if o["status"] == "rejected"]
    finally:
        ledger.close()
    assert {"fate_unknown", "rate_limited", "stream_down", "stream_up", "banned"} <= events
    # the 418 halted the symbol: no order after the banned one
    assert state["order_requests"] == 2 * FAULTS.index("ban") + 2
    assert live.final_health["halted"]["kind"] == "banned"
    assert any("-2010" in r for r in rejected) and any("-1013" in r for r in rejected)
    assert "sending" not in statuses
    assert "reconciliation" not in alerts.kinds()
    # the order placed after its 503 was found by its id, not sent a second time
    late = [o for o in state["accounts"][KEY]["orders"]]
    assert len({o["clientOrderId"] for o in late}) == len(late)


def test_a_position_changed_behind_the_journal_halts_alerts_and_adopt_resumes(
        tmp_path: Path) -> None:
    bar_s = 0.2
    last_ts, data = market(tmp_path, 60)
    store, _ = live_store(tmp_path / "store", seed=5)
    alerts = Alerts()
    seen: dict[str, Any] = {}
    with exchange_process(tmp_path, data, speed=speed_for(bar_s), start=START) as info:
        live = LiveSession(live_config(tmp_path, info, speed_for(bar_s)), store,
                           execution(info), notifiers=[alerts])

        def during() -> None:
            ledger = live.ledger
            if ledger is None or live.trader is None or (live.trader.last_ts or 0) < \
                    int(bars(START)[0].ts[-1]) + 10 * BAR_MS:
                return
            if "adjusted" not in seen:
                sim_post(info, "/sim/adjust", {"asset": "ETH", "delta": "0.25"})
                seen["adjusted"] = len(orders_on_exchange(info))
            elif "halted" not in seen and "reconciliation" in alerts.kinds():
                at_mismatch = len(orders_on_exchange(info))
                time.sleep(4 * bar_s)  # bars pass while halted: nothing may be sent
                seen["halted"] = len(orders_on_exchange(info))
                seen["sent_while_halted"] = seen["halted"] - at_mismatch
                issue_command(store.blobs, "adopt", by="alice", reason="my manual buy",
                              actors=(live.live.actor,))
            elif "halted" in seen and len(orders_on_exchange(info)) > seen["halted"]:
                seen["resumed"] = True

        run_sessions([live], 60, lambda: done_at(live, last_ts) or "resumed" in seen,
                     during)
        orders_end = len(orders_on_exchange(info))
        assert_reconciled(live, info, mismatches=True)
    assert "reconciliation" in alerts.kinds()
    ledger = ledger_of(live)
    try:
        events = ledger.events()
        kinds = [e["kind"] for e in events]
        adopt = [e for e in events if e["kind"] == "adopt"]
    finally:
        ledger.close()
    assert seen["sent_while_halted"] == 0
    assert kinds.index("mismatch") < kinds.index("adopt")
    assert adopt and adopt[0]["by"] == "alice"
    assert orders_end > seen["halted"], "trading did not resume after adopt"


def test_halt_and_flatten_act_within_one_bar_and_journal_who(tmp_path: Path) -> None:
    bar_s = 0.6  # a bar long enough that a loaded CI machine still shows one bar
    last_ts, data = market(tmp_path, 50)
    store, _ = live_store(tmp_path / "store", seed=5)
    marks: dict[str, Any] = {}
    with exchange_process(tmp_path, data, speed=speed_for(bar_s), start=START) as info:
        live = LiveSession(live_config(tmp_path, info, speed_for(bar_s)), store,
                           execution(info))

        def during() -> None:
            ledger = live.ledger
            if ledger is None or live.trader is None:
                return
            book = ledger.book("ETHUSDT")
            if "halt" not in marks and book is not None and book.position > 0.01:
                marks["halt"] = time.monotonic()
                issue_command(store.blobs, "halt", by="bob", reason="news")
                marks["orders_at_halt"] = len(orders_on_exchange(info))
            elif "halt" in marks and "checked" not in marks and \
                    time.monotonic() - marks["halt"] > 5 * bar_s:
                marks["checked"] = len(orders_on_exchange(info))
                marks["held"] = ledger.book("ETHUSDT").position  # type: ignore[union-attr]
                marks["flatten"] = time.monotonic()
                issue_command(store.blobs, "flatten", by="carol", reason="risk off")
            elif "flatten" in marks and "flat_after_s" not in marks and \
                    abs(ledger.book("ETHUSDT").position) < 0.0001:  # type: ignore[union-attr]
                marks["flat_after_s"] = time.monotonic() - marks["flatten"]

        run_sessions([live], 60, lambda: done_at(live, last_ts) or "flat_after_s" in marks,
                     during)
        assert_reconciled(live, info)
    # one order may already be in flight when the halt lands, none after it
    assert marks["checked"] - marks["orders_at_halt"] <= 1
    assert marks["held"] > 0.01  # a halt keeps the position
    assert marks["flat_after_s"] < bar_s
    ledger = ledger_of(live)
    try:
        who = [(e["kind"], e["by"]) for e in ledger.events() if e["kind"] in
               ("halt", "flatten", "operator")]
    finally:
        ledger.close()
    assert ("operator", "bob") in who and ("flatten", "carol") in who


def test_halts_of_each_kind_are_lifted_only_by_their_own_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's halt survives an adopt; a flatten while the journal disagrees with
    the exchange closes the exchange's position and keeps the mismatch halt; a command
    stamped by a clock far behind is still applied; resume lifts what it may."""
    bar_s = 0.2
    last_ts, data = market(tmp_path, 80)
    store, _ = live_store(tmp_path / "store", seed=5)
    steps: dict[str, Any] = {}
    with exchange_process(tmp_path, data, speed=speed_for(bar_s), start=START) as info:
        live = LiveSession(live_config(tmp_path, info, speed_for(bar_s)), store,
                           execution(info))

        def halts() -> set[str]:
            ledger = live.ledger
            return {h.kind for h in ledger.halts("ETHUSDT")} if ledger else set()

        def during() -> None:
            ledger = live.ledger
            if ledger is None or ledger.book("ETHUSDT") is None:
                return
            if "halt" not in steps and ledger.book("ETHUSDT").position > 0.01:  # type: ignore[union-attr]
                steps["halt"] = True  # stamped an hour in the past: a slow clock
                issue_command(store.blobs, "halt", by="ann", reason="slow clock",
                              at_ms=int(time.time() * 1000) - 3_600_000)
            elif "halt" in steps and "adjust" not in steps and "operator" in halts():
                steps["adjust"] = True
                sim_post(info, "/sim/adjust", {"asset": "ETH", "delta": "0.3"})
            elif "adjust" in steps and "adopt" not in steps and "reconciliation" in halts():
                steps["adopt"] = True
                issue_command(store.blobs, "adopt", by="ben", reason="looked",
                              actors=(live.live.actor,))
            elif "adopt" in steps and "flatten" not in steps and \
                    halts() == {"operator"}:
                steps["orders_before_flatten"] = len(orders_on_exchange(info))
                steps["flatten"] = True
                sim_post(info, "/sim/adjust", {"asset": "ETH", "delta": "0.2"})
            elif "flatten" in steps and "flattened" not in steps and \
                    "reconciliation" in halts():
                steps["flattened"] = True
                issue_command(store.blobs, "flatten", by="cy", reason="risk off")
            elif "flattened" in steps and "resume" not in steps and \
                    float(account(info)["spot"].get("ETH", 0)) < 0.0001:
                steps["resume"] = True
                issue_command(store.blobs, "resume", by="dee", reason="done")
            elif "resume" in steps and "after_resume" not in steps and \
                    "operator" not in halts() and "flatten" not in halts():
                steps["after_resume"] = halts()

        run_sessions([live], 60, lambda: done_at(live, last_ts) or "after_resume" in steps,
                     during)
    assert steps.get("flatten"), steps  # the operator's halt outlived the adopt
    assert steps.get("resume"), steps  # the flatten sold what the exchange held
    assert steps["after_resume"] == {"reconciliation"}  # resume cannot lift a mismatch
    # the dashboard reads this real record (flatten orders carry no policy version)
    record = LiveReader(store.blobs).record("live-eth")
    assert record.errors == () and record.health is not None
    assert record.health.halted is not None and record.health.halted.kind == "reconciliation"
    assert any(o.version is None for o in record.orders)
    page = live_page(monkeypatch, store.uri)
    assert any("reconciliation" in t for t in texts(page))


def test_a_dry_run_journals_the_orders_it_would_send_and_sends_none(tmp_path: Path) -> None:
    bar_s = 0.15
    last_ts, data = market(tmp_path, 30)
    store, _ = live_store(tmp_path / "store")
    with exchange_process(tmp_path, data, speed=speed_for(bar_s), start=START) as info:
        live = LiveSession(live_config(tmp_path, info, speed_for(bar_s), dry_run=True),
                           store, execution(info))
        run_sessions([live], 60, lambda: done_at(live, last_ts))
        assert orders_on_exchange(info) == []
        assert sim_state(info)["order_requests"] == 0
    statuses = rows(live.live.orders_journal_path, "SELECT status FROM orders")
    assert statuses and {s for (s,) in statuses} == {"dry_run"}
    assert live.final_health["dry_run"] and live.final_health["last_reconcile"]["ok"]


def test_the_daily_loss_limit_flattens_and_halts_for_the_day(tmp_path: Path) -> None:
    bar_s = 0.15
    last_ts, data = market(tmp_path, 40)
    store, _ = live_store(tmp_path / "store")
    with exchange_process(tmp_path, data, speed=speed_for(bar_s), start=START) as info:
        # 1 USDT of loss on a 1,000 USDT allocation: a round trip's commission
        limits = LiveLimits(stale_after_s=86_400.0, max_orders_per_minute=1000,
                            max_symbol_notional=5000.0, daily_loss_limit=1.0)
        live = LiveSession(live_config(tmp_path, info, speed_for(bar_s), limits=limits),
                           store, execution(info))
        run_sessions([live], 60, lambda: done_at(live, last_ts))
        held = float(account(info)["spot"].get("ETH", 0.0))
        assert_reconciled(live, info)
    assert live.final_health["halted"]["kind"] == "daily_loss"
    assert held < 0.0001  # flattened
    journal = live.live.orders_journal_path
    halted_at = rows(journal, "SELECT at_ms FROM events WHERE kind='daily_loss'")[0][0]
    after = rows(journal, f"SELECT side FROM orders WHERE sent_ms > {halted_at}")
    assert all(side == "sell" for (side,) in after)  # only the flatten


def test_a_spot_trader_refuses_a_policy_that_goes_short(tmp_path: Path) -> None:
    _, data = market(tmp_path, 5)
    store, _ = live_store(tmp_path / "store", positions=(-1.0, 0.0, 1.0))
    with exchange_process(tmp_path, data, speed=speed_for(0.2), start=START) as info:
        live = LiveSession(live_config(tmp_path, info, speed_for(0.2)), store,
                           execution(info))
        with pytest.raises(ConfigError, match="long/flat: trade it on binance-futures"):
            run_sessions([live], 30, lambda: False)
        assert orders_on_exchange(info) == []


def start_worker(tmp_path: Path, info: dict[str, Any], store_uri: str, speed: float,
                 log: Path, **live: Any) -> subprocess.Popen[bytes]:
    """``tests.live_worker`` with the account's keys in its environment."""
    paper = {"actor": "live-eth", "symbol": "ETHUSDT", "venue": "replay",
             "feed_url": info["replay"]["ws_url"], "rest_url": info["replay"]["rest_url"],
             "journal_dir": str(tmp_path / "journal"), "channel": "live", "speed": speed,
             "stale_after_bars": 40, "export_every_s": 0.5}
    cfg = {"venue": "binance-spot", "network": "loopback", "rest_url": info["rest_url"],
           "ws_url": info["ws_url"], "capital": 1000.0, "fill_timeout_s": 1.0,
           "command_poll_s": 0.1, "limits": {"stale_after_s": 86_400.0}, **live}
    path = tmp_path / "worker.json"
    path.write_text(json.dumps({"store": store_uri, "paper": paper, "live": cfg}))
    env = {**os.environ, "RAYTRADE_BINANCE_API_KEY": KEY,
           "RAYTRADE_BINANCE_API_SECRET": SECRET}
    return subprocess.Popen([sys.executable, "-m", "tests.live_worker", str(path)],
                            env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)




def test_kill_9_between_send_and_ack_resolves_the_order_by_client_id_never_twice(
        tmp_path: Path) -> None:
    bar_s = 0.3
    _, data = market(tmp_path, 200)
    store, _ = live_store(tmp_path / "store", seed=5)
    log = tmp_path / "worker.log"
    # the reply is held and the user stream is cut before the fill is reported: the
    # journal knows the order was sent, not what became of it
    faults = [{"kind": "accept_then_timeout", "at_order": 0, "delay_s": 60.0},
              {"kind": "drop_user_stream", "at_order": 0}]
    with exchange_process(tmp_path, data, speed=speed_for(bar_s), start=START,
                          faults=faults) as info:
        worker = start_worker(tmp_path, info, store.uri, speed_for(bar_s), log,
                              order_timeout_s=30.0)
        try:
            wait_for(lambda: "accept_then_timeout" in sim_state(info)["faults_fired"], 60,
                     "the first order to be accepted with its reply held")
            time.sleep(0.2)
            os.kill(worker.pid, signal.SIGKILL)  # sent, accepted, not acknowledged
            worker.wait(10)
        finally:
            if worker.poll() is None:
                worker.kill()
        [first] = orders_on_exchange(info)
        cid = first["clientOrderId"]
        journal = tmp_path / "journal" / "live-eth.orders.sqlite"
        [(status, filled)] = rows(journal, f"SELECT status, filled_qty FROM orders "
                                           f"WHERE cid='{cid}'")
        assert status in ("sending", "new") and filled == 0.0
        assert first["status"] == "FILLED"
        worker = start_worker(tmp_path, info, store.uri, speed_for(bar_s), log,
                              order_timeout_s=5.0)
        try:
            wait_for(lambda: len(orders_on_exchange(info)) >= 4, 60,
                     "the restarted trader to trade on")
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0
        orders = orders_on_exchange(info)
        assert [o["clientOrderId"] for o in orders].count(cid) == 1
        status = rows(journal, "SELECT cid, status, filled_qty FROM orders ORDER BY sent_ms")
        assert status[0] == (cid, "filled", pytest.approx(float(first["executedQty"])))
        resolved = rows(journal, "SELECT detail FROM events WHERE kind='resolved'")
        assert any(cid in d and "filled" in d for (d,) in resolved)
        held = float(account(info)["spot"].get("ETH", 0.0))
        book = rows(journal, "SELECT position FROM book WHERE symbol='ETHUSDT'")
        assert book[0][0] == pytest.approx(held, abs=1e-9)
        assert not rows(journal, "SELECT * FROM events WHERE kind='mismatch'")
    # the keys appear in no journal, export, log or state the run wrote
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name not in ("accounts.json", "worker.json"):
            data_ = path.read_bytes()
            assert KEY.encode() not in data_ and SECRET.encode() not in data_, path


def test_raytrade_live_cli_trades_on_ray_and_the_kill_switch_reaches_it(
        tmp_path: Path) -> None:
    bar_s = 0.5
    _, data = market(tmp_path, 400)
    store, _ = live_store(tmp_path / "store", seed=5)
    out = tmp_path / "cli.log"
    with exchange_process(tmp_path, data, speed=speed_for(bar_s), start=START) as info:
        env = {**os.environ, "RAYTRADE_BINANCE_API_KEY": KEY,
               "RAYTRADE_BINANCE_API_SECRET": SECRET}
        cli = [sys.executable, "-m", "raytrade.scripts.cli", "live"]
        proc = subprocess.Popen(
            [*cli, "--store", store.uri, "--symbols", "ETHUSDT", "--feed", "replay",
             "--feed-url", info["replay"]["ws_url"], "--rest-url", info["replay"]["rest_url"],
             "--speed", str(speed_for(bar_s)), "--order-rest-url", info["rest_url"],
             "--order-ws-url", info["ws_url"], "--journal", str(tmp_path / "journals"),
             "--max-orders-per-minute", "1000", "--stale-after-s", "86400",
             "--export-every-s", "0.5", "--duration", "90"],
            env=env, stdout=subprocess.PIPE, stderr=out.open("wb"), text=True)
        try:
            wait_for(lambda: len(orders_on_exchange(info)) >= 2, 80, "the actor's orders")
            subprocess.run([*cli, "halt", "--store", store.uri, "--reason", "cli test",
                            "--by", "dave"], check=True, capture_output=True)
            halted = wait_for(lambda: _halted(store.uri), 20, "the halt in live/")
            sent = len(orders_on_exchange(info))
            time.sleep(3 * bar_s)
            assert len(orders_on_exchange(info)) == sent
        finally:
            proc.send_signal(signal.SIGINT)
            stdout, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, out.read_text()[-3000:]
    assert halted["by"] == "dave" and halted["kind"] == "operator"
    final = json.loads(stdout)
    assert final[0]["actor"] == "live-ethusdt" and final[0]["live"]["halted"]
    status = subprocess.run([*cli, "status", "--store", store.uri], check=True,
                            capture_output=True, text=True)
    assert json.loads(status.stdout)[0]["halted"]["reason"] == "cli test"
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "accounts.json":
            blob = path.read_bytes()
            assert KEY.encode() not in blob and SECRET.encode() not in blob, path


def _halted(store_uri: str) -> dict[str, Any] | None:
    from raytrade.algos.storage import keys
    from raytrade.algos.storage.blobstore import NotFoundError, open_blobstore

    try:
        health = json.loads(open_blobstore(store_uri).get(
            keys.live_key("live-ethusdt", keys.LIVE_HEALTH)).data)
    except NotFoundError:
        return None
    return health.get("halted")


def test_an_account_snapshot_over_many_symbols_asks_once_for_filters_and_prices() -> None:
    import asyncio
    from decimal import Decimal

    from raytrade.actors.simulators.binance_exchange import BinanceExchangeSim
    from raytrade.actors.simulators.exchange_accounts import AccountConfig
    from raytrade.actors.simulators.exchange_prices import FixedPrices

    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")
    prices = FixedPrices({"BTCUSDT": 40_000.0, "ETHUSDT": 2_000.0, "SOLUSDT": 150.0,
                          "XRPUSDT": 0.5}, half_spread_bps=0.0)
    account_ = AccountConfig(KEY, SECRET, {"USDT": Decimal(1000), "SOL": Decimal(2)})
    with BinanceExchangeSim([account_], prices, symbols=symbols) as sim:
        client = execution({"rest_url": sim.rest_url, "ws_url": sim.ws_url})

        async def snapshot() -> Any:
            try:
                return await client.account(symbols, open_orders_for=("ETHUSDT",))
            finally:
                await client.close()

        snap = asyncio.run(snapshot())
        requests = sim.state()["requests"]
    assert snap.positions == {"BTCUSDT": 0.0, "ETHUSDT": 0.0, "SOLUSDT": 2.0, "XRPUSDT": 0.0}
    assert snap.prices["SOLUSDT"] == 150.0 and snap.equity == pytest.approx(1300.0)
    assert requests["GET /api/v3/exchangeInfo"] == 1
    assert requests["GET /api/v3/ticker/price"] == 1
    assert requests["GET /api/v3/openOrders"] == 1
