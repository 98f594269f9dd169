"""The dashboard on seeded run data and on an empty store, through Streamlit's AppTest:
every page runs without an exception, shows the seeded values (the paper metrics equal
``envs.metrics.performance`` on the same record), and says what is missing when a run has
no data yet. Both store backends: a local folder and moto's S3 server over HTTP."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from raytrade.algos.storage.policy_store import PolicyStore, version_name
from raytrade.algos.storage.promotion import GateLimits, live_gate
from raytrade.dashboard.cost_tables import COST_LABELS, Q_GAP_LABELS
from raytrade.dashboard.eval_curves import STEP, CurveError, dataset_curves
from raytrade.dashboard.jsonl_tail import JsonlTail
from raytrade.dashboard.navigation import PAGES, VIEWS
from streamlit.testing.v1 import AppTest

from tests.dashboard_seed import demo_evaluation, seed_store
from tests.live_setup import quick_experiment

PAGE_NAMES = tuple(p.name for p in PAGES)


def page(name: str, monkeypatch: pytest.MonkeyPatch, uri: str, **env: str) -> AppTest:
    monkeypatch.setenv("RAYTRADE_DASHBOARD_STORE", uri)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts: list[Any] = [*at.markdown, *at.info, *at.warning, *at.error, *at.success,
                        *at.caption, *at.subheader, *at.title]
    return "\n".join(str(p.value) for p in parts)


@pytest.fixture
def seeded(store_uri: str) -> tuple[str, dict[str, Any]]:
    return store_uri, seed_store(PolicyStore(store_uri))


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_every_page_on_an_empty_store_says_what_is_missing(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = page(name, monkeypatch, (tmp_path / "empty").as_uri())
    assert "yet." in texts(at), texts(at)


def test_overview_shows_run_channels_and_actors(seeded: tuple[str, dict[str, Any]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    uri, seed = seeded
    at = page("overview", monkeypatch, uri)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Iteration"] == "30"
    assert metrics["Env steps trained"] == "120,000"
    channels = at.dataframe[0].value.set_index("channel")["version"]
    v1, v2 = seed["versions"]
    assert channels["candidate"] == v2 and channels["paper"] == v1 and channels["live"] == v1
    actors = at.dataframe[1].value
    assert list(actors["actor"]) == ["eth"] and actors["faults"].iloc[0] == 0
    assert "No unresolved faults." in texts(at)


def test_training_charts_every_panel_with_epsilon_per_runner(
        seeded: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    at = page("training", monkeypatch, seeded[0])
    charts = at.get("vega_lite_chart")
    assert len(charts) == 8, "seven panels plus epsilon"
    assert "not reported" not in texts(at)


def test_evaluation_page_on_demo_records_draws_every_curve_and_marks_halts(
        seeded: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    uri, seed = seeded
    at = page("evaluation", monkeypatch, uri)
    record = seed["evaluation"]
    latest = at.dataframe[0].value
    greedy = latest[(latest["policy"] == "greedy") & (latest["dataset"] == "ETHUSDT")]
    expected = record["datasets"]["ETHUSDT"]["greedy"]
    assert greedy["total_return"].iloc[0] == pytest.approx(expected["total_return"])
    assert greedy["sharpe"].iloc[0] == pytest.approx(expected["sharpe"])
    assert "Latest evaluation (iteration 20)" in texts(at)
    # costs per policy: net beside gross return, the costs between them, halts marked
    costs = at.dataframe[1].value.set_index(["dataset", "policy"])
    for dataset, per in record["datasets"].items():
        for name, perf in per.items():
            if not isinstance(perf, dict):
                continue
            row = costs.loc[(dataset, f"{name} (halted)" if perf["halted"] else name)]
            for col, label in COST_LABELS.items():
                want = math.nan if perf[col] is None else perf[col]  # JSON null: NaN
                assert row[label] == pytest.approx(want, nan_ok=True), (name, label)
    assert any(name.endswith("(halted)") for _, name in costs.index), "random halts"
    gaps = at.dataframe[2].value.set_index("dataset")
    for dataset, per in record["datasets"].items():
        for key, label in Q_GAP_LABELS.items():
            assert gaps.loc[dataset, label] == pytest.approx(per["greedy"]["q_gap"][key])
    # per dataset: returns against baselines, then equity and drawdown of the curves
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2 + 2 * 2
    # every early stop is named under its dataset's charts and marked in both charts
    stops = [stop for dc in dataset_curves(seed["curves"]) for stop in dc.stops]
    assert {s.policy for s in stops} >= {"random"}, "the demo's random baseline halts"
    captions = [str(c.value) for c in at.caption]
    for stop in stops:
        assert stop.describe() in captions
    marked = [json.loads(c.proto.spec) for c in charts[2:]]
    assert all(any(layer.get("mark", {}).get("shape") == "cross"
                   for layer in spec.get("layer", [])) for spec in marked)


def test_eval_curves_of_the_demo_align_on_bar_times_and_stop_where_the_halt_fired(
        ) -> None:
    record, curves = demo_evaluation(20, seed=2)
    markets = {m.name: m for m in quick_experiment().fit_env_spec().markets("validation")}
    for dc in dataset_curves(curves):
        per = curves["datasets"][dc.dataset]
        times = curves["ts"][dc.dataset]
        assert dc.aligned_on_time
        # the full episode runs from the first decision bar to the fill of the last one
        market = markets[dc.dataset]
        assert times["flat"][0] == market.ts[market.first]
        assert times["flat"][-1] == market.ts[market.last + 1]
        # shaped like the demo's: subsampled curves, and ones that end early
        assert len(per["flat"]) == 2000 and {len(v) for v in per.values()} != {2000}
        end = pd.to_datetime(times["flat"][-1], unit="ms", utc=True)
        assert dc.table["x"].max() == end
        halted = {p for p, v in record["datasets"][dc.dataset].items()
                  if isinstance(v, dict) and v["max_drawdown"] <= -0.5}
        assert halted and {s.policy for s in dc.stops} == halted
        for stop in dc.stops:
            assert stop.reason == "drawdown halt"
            assert stop.at == pd.to_datetime(times[stop.policy][-1], unit="ms", utc=True)
            assert stop.at < end
            assert stop.equity == pytest.approx(
                record["datasets"][dc.dataset][stop.policy]["final_equity"], abs=1e-3)
            assert stop.drawdown == pytest.approx(-0.5, abs=0.01)
        # a subsampled curve still spans its episode: first and last bar kept
        for policy, ts in times.items():
            rows = dc.table[dc.table["policy"] == policy]
            assert rows["x"].iloc[0] == pd.to_datetime(ts[0], unit="ms", utc=True)


def test_eval_curves_without_times_align_on_point_index_and_still_mark_the_stop() -> None:
    record = {"datasets": {"ETHUSDT": {"flat": [10_000.0] * 5,
                                       "random": [10_000.0, 8_000.0, 5_000.0]}}}
    (dc,) = dataset_curves(record)
    assert not dc.aligned_on_time and dc.x == STEP
    (stop,) = dc.stops
    assert (stop.policy, stop.at, stop.equity) == ("random", 2, 5_000.0)
    assert stop.drawdown == pytest.approx(-0.5) and stop.reason == "drawdown halt"
    ruined = {"datasets": {"X": {"flat": [1.0, 1.0, 1.0], "greedy": [1.0, 0.0]}}}
    assert dataset_curves(ruined)[0].stops[0].reason == "ruin"


@pytest.mark.parametrize(("record", "message"), [
    ({"datasets": {"ETHUSDT": {"flat": [1.0, 2.0]}}, "ts": {"ETHUSDT": {"flat": [1]}}},
     "dataset ETHUSDT, policy flat: 1 bar times for 2 equity points"),
    ({"datasets": {"ETHUSDT": {"flat": [1.0, 2.0]}}, "ts": {"ETHUSDT": {}}},
     "dataset ETHUSDT, policy flat: no bar times"),
    ({"datasets": {"ETHUSDT": {"flat": "10000"}}}, "policy flat: equity must be"),
    ({"datasets": {"ETHUSDT": {"flat": [1.0, 2.0]}}, "ts": {"ETHUSDT": {"flat": [2, 1]}}},
     "bar times must increase"),
])
def test_eval_curves_malformed_record_is_refused_naming_dataset_and_policy(
        record: dict[str, Any], message: str) -> None:
    with pytest.raises(CurveError, match=message):
        dataset_curves(record)


def test_evaluation_page_shows_a_malformed_curves_record_as_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = PolicyStore((tmp_path / "s").as_uri())
    record, curves = demo_evaluation(5, seed=1)
    store.blobs.put("metrics/eval.jsonl", (json.dumps(record) + "\n").encode())
    curves["ts"]["ETHUSDT"]["flat"] = curves["ts"]["ETHUSDT"]["flat"][:-1]
    store.blobs.put("metrics/eval_curves/000005_validation.json", json.dumps(curves).encode())
    at = page("evaluation", monkeypatch, store.uri)
    errors = [str(e.value) for e in at.error]
    assert errors == ["curves of iteration 5 (validation): dataset ETHUSDT, policy flat: "
                      "1999 bar times for 2000 equity points (one time per point)"], errors


def test_paper_metrics_equal_the_shared_metrics_module(seeded: tuple[str, dict[str, Any]],
                                                       monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    uri, seed = seeded
    at = page("paper", monkeypatch, uri)
    perf = seed["paper_perf"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Bars"] == str(seed["bars"])
    assert metrics["Sharpe"] == f"{perf.sharpe:.2f}"
    assert metrics["Max drawdown"] == f"{perf.max_drawdown:.2%}"
    assert metrics["Total return"] == f"{perf.total_return:.2%}"
    assert metrics["Reconnects"] == "2" and metrics["Rejected messages"] == "4"
    # costs of the version traded and of the whole record, from the exported counters
    costs = at.dataframe[0].value.set_index("policy")
    expected = seed["paper_cost_perf"].to_dict()
    for name in (version_name(seed["versions"][0]), "all versions"):
        for col, label in COST_LABELS.items():
            assert costs.loc[name, label] == pytest.approx(expected[col]), (name, label)
    assert costs.loc["all versions", "slippage"] > 0 and costs.loc["all versions", "borrow"] > 0
    trades = at.dataframe[1].value
    assert len(trades) == seed["fills"]
    # the live gate's verdict for the version on paper, as the gate itself gives it: the
    # seeded record has 400 bars, more than the default 288, so only Sharpe and drawdown
    # decide
    verdict = live_gate(PolicyStore(uri), GateLimits())
    shown = [str(e.value) for e in (*at.success, *at.warning)]
    assert verdict.summary() in shown, shown
    assert "bars" not in verdict.summary()


def test_models_lists_versions_history_and_hides_actions_unless_enabled(
        seeded: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    uri, seed = seeded
    at = page("models", monkeypatch, uri)
    versions = at.dataframe[0].value
    assert list(versions["version"]) == [version_name(v) for v in seed["versions"][::-1]]
    history = at.dataframe[1].value
    assert set(history["channel"]) >= {"candidate", "paper", "live"}
    assert not at.button and len(at.radio) == 0, "no actions unless enabled"


def test_models_rollback_needs_reason_and_confirmation(
        seeded: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    uri, seed = seeded
    v1, v2 = seed["versions"]
    store = PolicyStore(uri)
    store.move("paper", v2, reason="newer")
    at = page("models", monkeypatch, uri, RAYTRADE_DASHBOARD_ACTIONS="1")
    at.radio[0].set_value("roll back paper")
    at.button[0].click().run()
    assert "A reason and the confirmation are both required." in texts(at)
    assert store.channel("paper").version == v2
    at.text_input[0].input("bad fills on v2")
    at.checkbox[0].check()
    at.button[0].click().run()
    assert not at.exception
    assert f"paper rolled back to {version_name(v1)}" in texts(at)
    pointer = store.channel("paper")
    assert pointer.version == v1 and pointer.reason == "bad fills on v2"


def test_walk_forward_report_is_shown_when_present(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = PolicyStore((tmp_path / "s").as_uri())
    store.blobs.put("reports/walk_forward/run1.json",
                    b'{"name": "run1", "folds": [{"fold": 0, "oos_sharpe": 1.5}], '
                    b'"aggregate": {"ETHUSDT": {"policy": {"sharpe": 0.7}}}}')
    at = page("walk_forward", monkeypatch, store.uri)
    assert at.dataframe[0].value["sharpe"].iloc[0] == 0.7
    assert at.dataframe[1].value["oos_sharpe"].iloc[0] == 1.5


def test_jsonl_tail_parses_only_appended_lines_and_names_bad_ones(tmp_path: Path) -> None:
    store = PolicyStore((tmp_path / "s").as_uri())
    tail = JsonlTail("metrics/train.jsonl")
    assert tail.read(store.blobs) == []
    store.blobs.put("metrics/train.jsonl", b'{"a": 1}\n{"a": 2}\n')
    assert [r["a"] for r in tail.read(store.blobs)] == [1, 2]
    store.blobs.put("metrics/train.jsonl", b'{"a": 1}\n{"a": 2}\n{"a": 3\n{"a": 4}\n{"a"')
    assert [r["a"] for r in tail.read(store.blobs)] == [1, 2, 4]
    assert tail.parsed_lines == 4, "only the appended lines were parsed"
    assert len(tail.errors) == 1
    assert tail.errors[0].startswith("metrics/train.jsonl line 3: not JSON")
    # the half-written last line completes
    store.blobs.put("metrics/train.jsonl",
                    b'{"a": 1}\n{"a": 2}\n{"a": 3\n{"a": 4}\n{"a": 5}\n')
    assert [r["a"] for r in tail.read(store.blobs)] == [1, 2, 4, 5]
    # a rewrite (not an append) is read again from the start
    store.blobs.put("metrics/train.jsonl", b'{"a": 9}\n')
    assert [r["a"] for r in tail.read(store.blobs)] == [9]
    assert tail.errors == []


def test_cli_refuses_a_public_address_without_authentication(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from raytrade.scripts.cli import main
    from raytrade.scripts.dashboard_cli import streamlit_command

    code = main(["dashboard", "--store", (tmp_path / "s").as_uri(), "--host", "0.0.0.0"])
    assert code == 1 and "--allow" in capsys.readouterr().err
    # the command it runs: loopback, no error details for viewers
    import argparse
    args = argparse.Namespace(host="127.0.0.1", port=8501, dev=False)
    cmd = streamlit_command(args)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--client.showErrorDetails") + 1] == "none"


def test_allow_list_requires_a_login_before_any_data(seeded: tuple[str, dict[str, Any]],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # no login provider configured: refuse, say how to configure it
    at = page("paper", monkeypatch, seeded[0], RAYTRADE_DASHBOARD_ALLOW="quant@example.com")
    assert "no login provider" in texts(at)
    assert not at.metric and not at.dataframe, "nothing of the run is shown"
    # with one: a login button, and still nothing of the run
    at = AppTest.from_file(str(VIEWS / "paper.py"), default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback",
                          "cookie_secret": "x" * 32, "client_id": "id",
                          "client_secret": "secret", "server_metadata_url":
                          "https://idp.example/.well-known/openid-configuration"}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "This dashboard needs a login." in texts(at)
    assert not at.metric and not at.dataframe
    assert at.button[0].label == "Log in"
