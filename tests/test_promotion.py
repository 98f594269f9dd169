"""Promotion gates on paper-trading evidence, and the store commands of the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.export import random_bundle
from raytrade.algos.manifest import MANIFEST
from raytrade.algos.storage.policy_store import PolicyStore, default_actor
from raytrade.algos.storage.promotion import (
    GateLimits,
    PaperLimits,
    live_gate,
    paper_gate,
    promote,
)
from raytrade.envs.errors import ConfigError
from raytrade.envs.metrics import performance
from raytrade.scripts.cli import main

EXP = ExperimentConfig.load(experiment_path("synthetic_regime"))
EXP = dataclasses.replace(EXP, network=dataclasses.replace(EXP.network, hidden=(16,)))
FIVE_MIN = 300_000


def _evaluated(seed: int, sharpe: float | None = 1.5,
               greedy: float = 11_000.0) -> dict[str, bytes]:
    """A bundle whose manifest carries a validation evaluation: the greedy policy ended
    at ``greedy``, flat at the starting 10,000."""
    files = random_bundle(EXP, seed=seed)
    manifest = json.loads(files[MANIFEST])
    manifest["evaluation"] = None if sharpe is None else {
        "split": "validation", "datasets": {"SYNTHUSDT": {
            "greedy": {"sharpe": sharpe, "final_equity": greedy},
            "flat": {"sharpe": None, "final_equity": 10_000.0}}}}
    return {**files, MANIFEST: json.dumps(manifest).encode()}


def _paper_record(store: PolicyStore, actor: str, version: int, bars: int,
                  drift: float = 2e-4, crash_at: int | None = None, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    r = drift + 1e-3 * rng.standard_normal(bars)
    if crash_at is not None:
        r[crash_at] = -0.5
    equity = 10_000 * np.exp(np.cumsum(r))
    lines = [json.dumps({"ts": 1_700_000_000_000 + i * FIVE_MIN, "equity": float(e),
                         "position": 1.0, "version": version}) for i, e in enumerate(equity)]
    store.blobs.put(f"paper/{actor}/equity.jsonl", ("\n".join(lines) + "\n").encode())


@pytest.fixture()
def store(store_uri: str) -> PolicyStore:
    s = PolicyStore(store_uri, actor="ops")
    s.publish(_evaluated(1))
    return s


def test_candidate_to_paper_needs_an_evaluation(store: PolicyStore) -> None:
    verdict, pointer = promote(store, "paper", reason="looks sane")
    assert verdict.passed and pointer is not None and pointer.version == 1
    store.publish(_evaluated(2, sharpe=None))
    verdict, pointer = promote(store, "paper", reason="no evidence")
    assert not verdict.passed and pointer is None
    assert "no validation evaluation" in verdict.summary()
    assert store.channel("paper").version == 1  # type: ignore[union-attr]


def test_paper_gate_by_default_refuses_a_candidate_that_does_not_beat_flat(
        store: PolicyStore, capsys: pytest.CaptureFixture[str]) -> None:
    losing = store.publish(_evaluated(2, sharpe=-17.0, greedy=9_800.0))
    verdict, pointer = promote(store, "paper", reason="finite is not enough")
    assert not verdict.passed and pointer is None
    assert verdict.reasons == ["SYNTHUSDT: does not beat flat after costs on validation "
                               "(greedy 9,800.00 vs flat 10,000.00, excess log growth "
                               "-2.02 %)"]
    assert verdict.actors["SYNTHUSDT"]["excess_log_growth"] == pytest.approx(np.log(0.98))
    # a policy that never traded ties flat: it does not beat it either
    tied = store.publish(_evaluated(3, sharpe=0.0, greedy=10_000.0))
    assert "does not beat flat" in paper_gate(store, tied).summary()
    # configurable: any finite validation result passes when beating flat is not required
    assert paper_gate(store, losing, PaperLimits(require_beat_flat=False)).passed
    uri = ["--store", store.uri, "--channel", "paper", "--version", "v2"]
    assert main(["promote", *uri, "--reason", "try"]) == 1
    assert "does not beat flat" in capsys.readouterr().err
    assert main(["promote", *uri, "--reason", "accepted below flat",
                 "--allow-below-flat"]) == 0
    assert store.channel("paper").version == losing  # type: ignore[union-attr]
    assert store.history("paper")[-1].kind == "promote"


def test_paper_gate_can_ask_for_the_publication_rules_evidence(
        store: PolicyStore, capsys: pytest.CaptureFixture[str]) -> None:
    def with_t(seed: int, t: float | None) -> int:
        files = _evaluated(seed)
        manifest = json.loads(files[MANIFEST])
        manifest["evaluation"]["datasets"]["SYNTHUSDT"]["greedy"]["t_stat"] = t
        return store.publish({**files, MANIFEST: json.dumps(manifest).encode()})

    weak, strong, unmeasured = with_t(2, 1.2), with_t(3, 2.6), with_t(4, None)
    assert paper_gate(store, weak).passed  # off by default
    verdict = paper_gate(store, weak, PaperLimits(min_evidence_t=2.0))
    assert verdict.reasons == ["SYNTHUSDT: beats flat on validation, but its returns are "
                               "1.20 standard errors above zero, fewer than 2"]
    assert verdict.actors["SYNTHUSDT"]["greedy_t_stat"] == 1.2
    assert paper_gate(store, strong, PaperLimits(min_evidence_t=2.0)).passed
    assert "not measured" in paper_gate(store, unmeasured,
                                        PaperLimits(min_evidence_t=2.0)).summary()
    uri = ["--store", store.uri, "--channel", "paper", "--reason", "evidence"]
    assert main(["promote", *uri, "--version", "v2", "--min-evidence-t", "2"]) == 1
    assert "1.20 standard errors" in capsys.readouterr().err
    assert main(["promote", *uri, "--version", "v3", "--min-evidence-t", "2"]) == 0
    assert store.channel("paper").version == strong  # type: ignore[union-attr]


def test_paper_gate_refuses_a_bundle_no_executor_would_load(store: PolicyStore) -> None:
    # written past publish()'s checks (an older writer, a damaged upload) but carrying a
    # fine evaluation: the gate must not move what every executor would then reject
    files = _evaluated(2)
    manifest = json.loads(files[MANIFEST])
    del manifest["env"]["dsr_eta"]
    store.blobs.put("claims/v000002", b"{}", if_none_match=True)
    store.blobs.put("policies/v000002/weights.safetensors", files["weights.safetensors"])
    store.blobs.put("policies/v000002/" + MANIFEST, json.dumps(manifest).encode())
    verdict = paper_gate(store, 2)
    assert not verdict.passed
    assert "v000002 does not verify" in verdict.summary() and "env.dsr_eta" in \
        verdict.summary()


def test_live_gate_reads_the_paper_record(store: PolicyStore) -> None:
    promote(store, "paper", reason="start paper")
    limits = GateLimits(min_bars=500, min_sharpe=0.5, max_drawdown=0.2)
    assert "no paper-trading record" in live_gate(store, limits).summary()
    _paper_record(store, "BTCUSDT", 1, bars=200)
    assert "200 bars" in live_gate(store, limits).summary()
    _paper_record(store, "BTCUSDT", 1, bars=1000)
    _paper_record(store, "ETHUSDT", 1, bars=1000, seed=1)
    verdict = live_gate(store, limits)
    assert verdict.passed, verdict.summary()
    # the numbers are the shared metrics module's
    rows = [json.loads(x) for x in
            store.blobs.get("paper/BTCUSDT/equity.jsonl").data.splitlines()]
    expected = performance(np.array([r["equity"] for r in rows]), np.ones(len(rows)),
                           FIVE_MIN)
    assert verdict.actors["BTCUSDT"]["sharpe"] == pytest.approx(expected.sharpe)
    # rows of another version do not count for this one
    _paper_record(store, "ETHUSDT", 7, bars=1000)
    assert set(live_gate(store, limits).actors) == {"BTCUSDT"}
    _paper_record(store, "BTCUSDT", 1, bars=1000, crash_at=500)
    assert "max drawdown" in live_gate(store, limits).summary()
    _paper_record(store, "BTCUSDT", 1, bars=1000)
    store.blobs.put("paper/ETHUSDT/health.json",
                    json.dumps({"unresolved_faults": ["feed down 600 s"]}).encode())
    verdict, pointer = promote(store, "live", reason="try", limits=limits)
    assert pointer is None and "feed down" in verdict.summary()
    store.blobs.put("paper/ETHUSDT/health.json", b'{"unresolved_faults": []}')
    verdict, pointer = promote(store, "live", reason="a week of paper", limits=limits)
    assert verdict.passed and pointer is not None and pointer.kind == "promote"


def test_force_is_logged_with_the_verdict_it_overrode(store: PolicyStore) -> None:
    promote(store, "paper", reason="start paper")
    verdict, pointer = promote(store, "live", reason="CEO says so", force=True)
    assert not verdict.passed and pointer is not None and pointer.kind == "force"
    last = store.history("live")[-1]
    assert last.kind == "force" and "CEO says so" in last.reason
    assert "forced past" in last.reason and "no paper-trading record" in last.reason


def test_malformed_paper_record_names_the_line(store: PolicyStore) -> None:
    promote(store, "paper", reason="start paper")
    store.blobs.put("paper/BTCUSDT/equity.jsonl", b'{"ts": 1, "equity": 1, "position": 0, '
                    b'"version": 1}\n{"ts": 2, "equity": "x"}\n')
    with pytest.raises(ConfigError, match=r"equity\.jsonl line 2"):
        live_gate(store, GateLimits())


def test_cli_store_ls_promote_and_rollback(store: PolicyStore,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    store.publish(_evaluated(2))
    uri = ["--store", store.uri]
    assert main(["promote", *uri, "--channel", "paper", "--version", "v1",
                 "--reason", "first"]) == 0
    assert main(["promote", *uri, "--channel", "paper", "--reason", "second"]) == 0
    assert main(["promote", *uri, "--channel", "live", "--reason", "no record"]) == 1
    assert "not promoted" in capsys.readouterr().err
    assert main(["rollback", *uri, "--channel", "paper", "--reason", "bad fills"]) == 0
    assert "paper -> v000001 (was v000002)" in capsys.readouterr().out
    assert main(["store", "ls", *uri, "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["channels"] == {"candidate": 2, "paper": 1, "live": None}
    assert [v["version"] for v in listing["versions"]] == ["v000001", "v000002"]
    assert listing["versions"][0]["channels"] == ["paper"]
    assert main(["store", "ls", *uri]) == 0
    # the CLI records this user as the mover, with the reason given
    assert f"rollback by {default_actor()}" in capsys.readouterr().out
    assert main(["rollback", *uri, "--channel", "live", "--reason", "x"]) == 1
    assert "never set" in capsys.readouterr().err


def test_cli_rollback_repeated_walks_back_and_never_reactivates_the_bad_version(
        store: PolicyStore, capsys: pytest.CaptureFixture[str]) -> None:
    for seed in (2, 3):
        store.publish(_evaluated(seed))
    uri = ["--store", store.uri]
    for v in ("v1", "v2", "v3"):
        assert main(["promote", *uri, "--channel", "paper", "--version", v,
                     "--reason", f"serve {v}"]) == 0
    capsys.readouterr()
    assert main(["rollback", *uri, "--channel", "paper", "--reason", "v3 bad"]) == 0
    assert "paper -> v000002 (was v000003)" in capsys.readouterr().out
    assert main(["rollback", *uri, "--channel", "paper", "--reason", "v2 bad too"]) == 0
    assert "paper -> v000001 (was v000002)" in capsys.readouterr().out
    assert main(["rollback", *uri, "--channel", "paper", "--reason", "and v1?"]) == 1
    assert "no earlier version" in capsys.readouterr().err
    assert store.channel("paper").version == 1  # type: ignore[union-attr]
