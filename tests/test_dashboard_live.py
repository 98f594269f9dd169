"""The dashboard's Live page on two seeded live actors (one halted), through Streamlit's
AppTest on both store backends: the tables and numbers it shows, the kill switch (absent
without ``--enable-actions``; with it, a command written only with a reason, the
confirmation and a known viewer, recorded as issued by that viewer), and the reading of
the live record: malformed lines and health objects skipped and named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from raytrade.algos.storage import keys
from raytrade.algos.storage.live_commands import read_commands
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.dashboard.context import UNAUTHENTICATED
from raytrade.dashboard.live_actions import operator_command
from raytrade.dashboard.live_reader import LiveReader
from raytrade.dashboard.live_records import LiveFill, LiveOrder, Side, parse_record
from raytrade.dashboard.live_tables import orders_table, slippage_summary
from raytrade.dashboard.navigation import VIEWS
from raytrade.envs.errors import ConfigError, DataError
from streamlit.testing.v1 import AppTest

from tests.dashboard_seed import HALTED_BY, seed_live

LIVE = str(VIEWS / "live.py")
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s" * 32,
        "client_id": "x", "client_secret": "y",
        "server_metadata_url": "https://login.example.com/.well-known/openid-configuration"}


def live_page(monkeypatch: pytest.MonkeyPatch, uri: str, user: dict[str, Any] | None = None,
              **env: str) -> AppTest:
    monkeypatch.setenv("RAYTRADE_DASHBOARD_STORE", uri)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(LIVE, default_timeout=60)
    if user is not None:
        at.user = user
        at.secrets["auth"] = AUTH
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> list[str]:
    return [str(p.value) for p in (*at.markdown, *at.info, *at.warning, *at.error,
                                   *at.success, *at.caption, *at.subheader)]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


@pytest.fixture
def live_store(tmp_path: Path) -> tuple[PolicyStore, dict[str, Any]]:
    store = PolicyStore((tmp_path / "store").as_uri())
    return store, seed_live(store.blobs)


def _bps_from_prices(fills: list[dict[str, Any]]) -> list[float]:
    """Slippage against paper from the seeded prices (positive: live paid more)."""
    return [(f["price"] - f["paper_price"]) / f["paper_price"] * 1e4 *
            (1 if f["side"] == "buy" else -1) for f in fills if f["paper_price"] is not None]


def test_live_page_shows_positions_halts_and_slippage_of_each_actor(
        store_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = PolicyStore(store_uri)
    exports = seed_live(store.blobs)
    at = live_page(monkeypatch, store_uri)
    # every actor at a glance
    actors = at.dataframe[0].value.set_index("actor")
    assert list(actors.index) == ["btc", "eth"]
    for actor, files in exports.items():
        health = files[keys.LIVE_HEALTH]
        assert actors.loc[actor, "position"] == pytest.approx(health["position_qty"])
        assert actors.loc[actor, "equity"] == pytest.approx(health["equity"])
        assert actors.loc[actor, "network"] == health["network"]
    assert actors.loc["btc", "halted"] == f"operator by {HALTED_BY}"
    assert actors.loc["eth", "halted"] == "no"
    # the first actor (btc): mainnet in red, halted by whom and why
    btc = exports["btc"]
    shown = texts(at)
    assert any(":red-badge[MAINNET" in t for t in shown), shown
    assert f"HALTED (operator) by {HALTED_BY} at 2025-04-03 03:25:00 UTC: " \
           "exchange maintenance" in shown
    m = metrics(at)
    assert m["Position"] == f"{btc[keys.LIVE_HEALTH]['position_qty']:+,.8g}"
    assert m["Day PnL"] == f"{btc[keys.LIVE_HEALTH]['day_pnl']:+,.2f}"
    # slippage: median and p90 of live against paper on the same bars, one unmatched fill
    bps = _bps_from_prices(btc[keys.LIVE_FILLS])
    assert len(bps) == len(btc[keys.LIVE_FILLS]) - 1
    assert m["Fills compared"] == str(len(bps))
    assert m["Median slippage (bps)"] == f"{np.median(bps):,.2f}"
    assert m["p90 slippage (bps)"] == f"{np.percentile(bps, 90):,.2f}"
    assert "1 fills had no paper fill on their bar." in shown
    opened, orders, fills, slippage, events = (d.value for d in at.dataframe[1:6])
    assert list(opened["status"]) == ["new"] and list(opened["kind"]) == ["limit"]
    ids = {o["client_order_id"] for o in btc[keys.LIVE_ORDERS]}
    assert len(orders) == len(ids), "one row per order: its latest state"
    assert set(orders["status"]) == {"filled", "rejected", "new"}
    assert len(fills) == len(slippage) == len(btc[keys.LIVE_FILLS])
    assert sorted(slippage["slippage bps"].dropna()) == pytest.approx(sorted(bps))
    assert events.iloc[0]["kind"] == "halt" and events.iloc[0]["by"] == HALTED_BY
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2, "equity and position"
    data = charts[0].proto.datasets[0].data.data  # Arrow IPC: paper did not export equity
    assert set(pa.ipc.open_stream(data).read_pandas()["series"]) == {"live"}
    # the other actor: testnet, trading, paper's equity beside live's
    at.selectbox(key="live_actor").set_value("eth").run()
    assert not at.exception
    shown = texts(at)
    assert not any("MAINNET" in t for t in shown) and "Trading (running)" in shown
    data = at.get("vega_lite_chart")[0].proto.datasets[0].data.data  # Arrow IPC
    assert set(pa.ipc.open_stream(data).read_pandas()["series"]) == {"live", "paper"}
    eth_bps = _bps_from_prices(exports["eth"][keys.LIVE_FILLS])
    assert metrics(at)["Median slippage (bps)"] == f"{np.median(eth_bps):,.2f}"
    # no kill switch without --enable-actions
    assert not at.button and "Kill switch" not in shown


def test_live_page_names_a_malformed_line_and_still_shows_the_rest(
        live_store: tuple[PolicyStore, dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    store, exports = live_store
    key = keys.live_key("btc", keys.LIVE_FILLS)
    good = store.blobs.get(key).data
    store.blobs.put(key, good + b'{"fill_id": "x"}\n')
    at = live_page(monkeypatch, store.uri)
    lines = len(exports["btc"][keys.LIVE_FILLS]) + 1
    assert f"skipped: {key} line {lines}: field 'client_order_id' is missing" in texts(at)
    assert len(at.dataframe[3].value) == len(exports["btc"][keys.LIVE_FILLS])


def _halt_all(at: AppTest, reason: str, confirm: bool = True) -> AppTest:
    if reason:
        at.text_input(key="all_reason").input(reason)
    if confirm:
        at.checkbox(key="all_ok").check()
    next(b for b in at.button if b.label == "Halt all").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_live_halt_all_writes_a_command_issued_by_the_viewer(
        live_store: tuple[PolicyStore, dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = live_store
    at = live_page(monkeypatch, store.uri, RAYTRADE_DASHBOARD_ACTIONS="1")
    assert [b.label for b in at.button] == ["Halt all", "Flatten all", "Halt", "Flatten",
                                            "Resume"]
    _halt_all(at, "venue outage")
    (command,), errors = read_commands(store.blobs)
    assert errors == []
    assert (command.action, command.actors, command.by, command.reason) == \
        ("halt", (), UNAUTHENTICATED, "venue outage")
    assert any(t.startswith(f"halt sent to every live actor as {UNAUTHENTICATED}")
               for t in texts(at))
    shown = at.dataframe[-1].value
    assert list(shown["id"]) == [command.id] and list(shown["by"]) == [UNAUTHENTICATED]
    assert list(shown["actors"]) == ["all"]


def test_live_flatten_of_one_actor_is_issued_by_the_logged_in_viewer(
        live_store: tuple[PolicyStore, dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = live_store
    at = live_page(monkeypatch, store.uri, {"is_logged_in": True, "email": "bob@example.com"},
                   RAYTRADE_DASHBOARD_ACTIONS="1", RAYTRADE_DASHBOARD_ALLOW="bob@example.com")
    at.selectbox(key="command_actor").set_value("eth")
    at.text_input(key="one_reason").input("position too large")
    at.checkbox(key="one_ok").check()
    next(b for b in at.button if b.label == "Flatten").click().run()
    assert not at.exception, [e.value for e in at.exception]
    (command,), _ = read_commands(store.blobs)
    assert (command.action, command.actors, command.by) == \
        ("flatten", ("eth",), "bob@example.com (dashboard login)")


def test_live_halt_all_without_reason_or_confirmation_writes_nothing(
        live_store: tuple[PolicyStore, dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = live_store
    at = live_page(monkeypatch, store.uri, RAYTRADE_DASHBOARD_ACTIONS="1")
    _halt_all(at, "", confirm=True)
    assert "A reason and the confirmation are both required: nothing was sent." in texts(at)
    _halt_all(at, "venue outage", confirm=False)
    assert read_commands(store.blobs) == ([], [])


def test_live_halt_all_with_an_unknown_viewer_writes_nothing_and_says_why(
        live_store: tuple[PolicyStore, dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = live_store
    # a proxy identity header is configured but the request carries none
    at = live_page(monkeypatch, store.uri, RAYTRADE_DASHBOARD_ACTIONS="1",
                   RAYTRADE_DASHBOARD_IDENTITY_HEADER="X-Forwarded-Email")
    assert any("your identity is unknown, so nothing can be sent" in t for t in texts(at))
    _halt_all(at, "venue outage")
    assert any(t.startswith("Your identity is unknown") for t in texts(at))
    assert read_commands(store.blobs) == ([], [])


def test_operator_command_refuses_without_reason_confirmation_or_viewer(
        tmp_path: Path) -> None:
    store = PolicyStore((tmp_path / "s").as_uri())
    for reason, confirmed, by in (("", True, "me"), ("x", False, "me"), ("x", True, None)):
        with pytest.raises(ConfigError, match="nothing was sent"):
            operator_command(store.blobs, "halt", actors=(), reason=reason,
                             confirmed=confirmed, by=by)
    assert read_commands(store.blobs) == ([], [])


def _fill(side: Side, price: float, paper: float | None, bps: float | None = None
          ) -> LiveFill:
    return LiveFill("f", "c", "ETHUSDT", side, 1.0, price, 0.0, "USDT", 0, 0, paper, bps)


def test_slippage_summary_signs_live_against_paper_and_counts_unmatched_fills() -> None:
    fills = [_fill("buy", 101.0, 100.0), _fill("sell", 99.5, 100.0),
             _fill("sell", 100.2, 100.0), _fill("buy", 100.0, 100.0, bps=7.0),
             _fill("buy", 100.0, None)]
    summary = slippage_summary(fills)
    values = [100.0, 50.0, -20.0, 7.0]  # buy higher, sell lower: positive; exported as is
    assert (summary.compared, summary.unmatched) == (4, 1)
    assert summary.median_bps == pytest.approx(np.median(values))
    assert summary.p90_bps == pytest.approx(np.percentile(values, 90))
    assert summary.mean_bps == pytest.approx(np.mean(values))
    empty = slippage_summary([_fill("buy", 100.0, None)])
    assert (empty.compared, empty.unmatched, empty.median_bps, empty.p90_bps) == \
        (0, 1, None, None)


def test_live_reader_skips_malformed_lines_naming_key_line_and_field(tmp_path: Path) -> None:
    store = PolicyStore((tmp_path / "s").as_uri())
    key = keys.live_key("eth", keys.LIVE_FILLS)
    good = {"fill_id": "a", "client_order_id": "c", "symbol": "ETHUSDT", "side": "buy",
            "qty": 1, "price": 1800.5, "commission": 0.1, "commission_asset": "USDT",
            "at_ms": 1_743_638_400_000.0, "bar_ts": 1_743_638_400_000, "paper_price": None,
            "slippage_bps": None}
    lines = [good, "{not json", {**good, "price": "1800"}, {**good, "side": "hold"},
             {**good, "qty": True}, [1, 2], {**good, "at_ms": 1.5}]
    store.blobs.put(key, "".join((x if isinstance(x, str) else json.dumps(x)) + "\n"
                                 for x in lines).encode())
    reader = LiveReader(store.blobs)
    record = reader.record("eth")
    assert [f.price for f in record.fills] == [1800.5]
    assert record.fills[0].qty == 1.0 and record.fills[0].at_ms == 1_743_638_400_000
    errors = list(record.errors)
    assert errors[0].startswith(f"{key} line 2: not JSON")
    assert errors[1:] == [
        f"{key} line 3: field 'price' must be a number, got '1800'",
        f"{key} line 4: field 'side' must be one of 'buy', 'sell', got 'hold'",
        f"{key} line 5: field 'qty' must be a number, got True",
        f"{key} line 6: not a JSON object",
        f"{key} line 7: field 'at_ms' must be an integer, got 1.5"]
    # appended lines are read (and checked) incrementally
    store.blobs.put(key, store.blobs.get(key).data + (json.dumps({**good, "fill_id": "b"})
                                                      + "\n").encode())
    assert [f.fill_id for f in reader.record("eth").fills] == ["a", "b"]
    assert reader._tails[key].parsed_lines == len(lines) + 1


def test_live_reader_names_a_malformed_health_and_keeps_the_record(
        live_store: tuple[PolicyStore, dict[str, Any]]) -> None:
    store, exports = live_store
    key = keys.live_key("btc", keys.LIVE_HEALTH)
    health = exports["btc"][keys.LIVE_HEALTH]
    reader = LiveReader(store.blobs)
    for broken, message in (
            ({**health, "network": "prod"}, "field 'network' must be one of 'testnet', "
                                            "'mainnet', 'loopback', got 'prod'"),
            ({**health, "halted": {**health["halted"], "by": 5}},
             "field 'halted': field 'by' must be a string, got 5"),
            ({**health, "open_orders": [{}]}, "field 'open_orders' item 0: field "
                                              "'client_order_id' is missing")):
        store.blobs.put(key, json.dumps(broken).encode())
        record = reader.record("btc")
        assert record.health is None and record.errors == (f"{key}: {message}",)
        assert len(record.fills) == len(exports["btc"][keys.LIVE_FILLS])
    store.blobs.put(key, b"{")
    assert reader.record("btc").errors[0].startswith(f"{key}: not JSON")
    # a halt of a kind this dashboard does not know is still shown, never hidden
    store.blobs.put(key, json.dumps({**health, "halted": {**health["halted"],
                                                          "kind": "stale_data"}}).encode())
    record = reader.record("btc")
    assert record.errors == () and record.health is not None
    assert record.health.halted is not None and record.health.halted.kind == "stale_data"


def test_live_reader_lists_actors_without_commands_and_names_bad_folders(
        live_store: tuple[PolicyStore, dict[str, Any]]) -> None:
    store, _ = live_store
    operator_command(store.blobs, "halt", actors=(), reason="test", confirmed=True, by="me")
    store.blobs.put("live/-bad/health.json", b"{}")
    actors, errors = LiveReader(store.blobs).actors()
    assert actors == ["btc", "eth"]
    assert len(errors) == 1 and errors[0].startswith("live/-bad/: live actor name '-bad'")


def test_orders_table_shows_each_orders_latest_state_newest_first() -> None:
    base = {"client_order_id": "a", "symbol": "ETHUSDT", "bar_ts": 0, "version": 3,
            "leg": 0, "side": "buy", "qty": 2.0, "kind": "market", "limit_price": None,
            "reduce_only": False, "status": "new", "venue_order_id": "9",
            "filled_qty": 0.0, "avg_price": None, "reason": "target change",
            "sent_ms": 10, "ack_ms": 14, "updated_ms": 14}
    states = [base, {**base, "client_order_id": "b", "updated_ms": 20},
              {**base, "status": "partially_filled", "filled_qty": 1.0, "updated_ms": 30},
              {**base, "status": "filled", "filled_qty": 2.0, "avg_price": 5.0,
               "updated_ms": 40}]
    orders = [parse_record(LiveOrder, s, "test") for s in states]
    table = orders_table(orders)
    assert list(table["client order id"]) == ["a", "b"]
    assert list(table["status"]) == ["filled", "new"]
    assert table["filled"].iloc[0] == 2.0 and table["ack latency ms"].iloc[0] == 4


def test_parse_record_refuses_a_non_object_naming_the_record() -> None:
    with pytest.raises(DataError, match="test: a LiveOrder record is a JSON object, got list"):
        parse_record(LiveOrder, [], "test")
