"""The checkpoint store and the hot-swapping executor, on a local folder and on moto's S3
server over HTTP: every checkpoint-store and hot-swap row of the README's fault model."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from raytrade.actors.executor import Compatibility, NoPolicyError, PolicyExecutor
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.export import random_bundle
from raytrade.algos.manifest import MANIFEST, WEIGHTS, PolicyRejectedError, verify_bundle
from raytrade.algos.policy import Policy
from raytrade.algos.storage.blobstore import (
    LocalBlobStore,
    NotFoundError,
    PreconditionFailedError,
    S3BlobStore,
    StoreUnavailableError,
    open_blobstore,
)
from raytrade.algos.storage.policy_store import OlderVersionError, PolicyStore
from raytrade.envs.errors import ConfigError
from raytrade.scripts.s3_local import MotoServer
from safetensors.numpy import save


def _exp(**env: object) -> ExperimentConfig:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    exp = dataclasses.replace(exp, network=dataclasses.replace(exp.network, hidden=(16,)))
    if env:
        exp = dataclasses.replace(exp, env=dataclasses.replace(exp.env, **env))
    return exp


EXP = _exp()


def _bundle(seed: int = 0, exp: ExperimentConfig = EXP) -> dict[str, bytes]:
    return random_bundle(exp, seed=seed)


def _with_manifest(bundle: dict[str, bytes], **changes: object) -> dict[str, bytes]:
    manifest = json.loads(bundle[MANIFEST])
    manifest.update(changes)
    return {**bundle, MANIFEST: json.dumps(manifest).encode()}


def _raw_publish(store: PolicyStore, files: dict[str, bytes]) -> int:
    """Write a version past publish()'s checks, as a buggy or hostile writer would."""
    version = (store.latest() or 0) + 1
    store.blobs.put(f"claims/v{version:06d}", b"{}", if_none_match=True)
    manifest = json.loads(files[MANIFEST])
    manifest["version"] = version
    out = {**files, MANIFEST: json.dumps(manifest).encode()}
    for name, data in out.items():
        if name != MANIFEST:
            store.blobs.put(f"policies/v{version:06d}/{name}", data)
    store.blobs.put(f"policies/v{version:06d}/{MANIFEST}", out[MANIFEST])
    return version


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _executor(store: PolicyStore, channel: str = "candidate", **kw: object
              ) -> tuple[PolicyExecutor, FakeClock]:
    clock = FakeClock()
    ex = PolicyExecutor(store, channel, poll_interval_s=1.0, max_backoff_s=60.0, clock=clock,
                        seed=0, **kw)  # type: ignore[arg-type]
    return ex, clock


def _obs(policy: Policy, n: int = 8) -> np.ndarray:
    return policy.canned_observations(n, seed=5)


# -- the store -----------------------------------------------------------------------
def test_publish_versions_channels_and_move_log(store_uri: str) -> None:
    store = PolicyStore(store_uri, actor="alice@desk")
    assert store.versions() == [] and store.channel("candidate") is None
    v1 = store.publish(_bundle(1), reason="iteration 10")
    v2 = store.publish(_bundle(2), reason="iteration 20")
    assert (v1, v2) == (1, 2) and store.versions() == [1, 2]
    assert store.manifest(2)["version"] == 2
    verify_bundle(store.files(2), 2)  # what was stored is what was checksummed
    pointer = store.channel("candidate")
    assert pointer is not None and (pointer.version, pointer.previous) == (2, 1)
    store.move("paper", 2, reason="evaluation gate")
    moves = store.history()
    assert [(m.channel, m.from_version, m.to_version, m.kind) for m in moves] == [
        ("candidate", None, 1, "publish"), ("candidate", 1, 2, "publish"),
        ("paper", None, 2, "promote")]
    assert all(m.by == "alice@desk" and m.reason for m in moves)
    with pytest.raises(ConfigError, match="reason"):
        store.move("live", 2, reason=" ")
    with pytest.raises(ConfigError, match="unknown channel"):
        store.move("prod", 2, reason="x")
    with pytest.raises(NotFoundError):
        store.move("live", 7, reason="no such version")


def test_trainer_dying_mid_upload_leaves_an_invisible_version(store_uri: str) -> None:
    store = PolicyStore(store_uri)
    store.publish(_bundle(1))
    ex, clock = _executor(store)
    assert ex.poll() and ex.version == 1
    # a trainer claimed v2 and uploaded the weights, then died before the manifest
    store.blobs.put("claims/v000002", b"{}", if_none_match=True)
    store.blobs.put(f"policies/v000002/{WEIGHTS}", _bundle(2)[WEIGHTS])
    assert store.versions() == [1] and store.latest() == 1
    clock.t += 5
    assert not ex.poll() and ex.version == 1
    assert store.publish(_bundle(3)) == 3  # the dead claim's number is never reused
    clock.t += 5
    assert ex.poll() and ex.version == 3


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_weights_are_rejected_and_the_current_policy_kept(
        store_uri: str, damage: str) -> None:
    store = PolicyStore(store_uri)
    store.publish(_bundle(1))
    events: list[str] = []
    ex, clock = _executor(store, on_event=lambda e: events.append(e.kind))
    ex.poll()
    weights = bytearray(_bundle(2)[WEIGHTS])
    if damage == "truncate":
        weights = weights[: len(weights) // 2]
    else:
        weights[len(weights) // 2] ^= 0x01
    files = _bundle(2)
    store.publish(files)  # v2 is fine; damage it in place after publishing
    store.blobs.put(f"policies/v000002/{WEIGHTS}", bytes(weights))
    obs = _obs(ex.policy)  # type: ignore[arg-type]
    before = ex.decide(obs[0])
    clock.t += 5
    assert not ex.poll()
    assert ex.version == 1 and ex.decide(obs[0]) == before
    assert "sha256" in ex.status().rejected[2] and events[-1] == "rejected"
    clock.t += 5
    ex.poll()  # rejected for good: no retry storm, no new event
    assert events.count("rejected") == 1


def test_missing_file_and_malformed_manifest_are_rejected(store_uri: str) -> None:
    store = PolicyStore(store_uri)
    store.publish(_bundle(1))
    ex, clock = _executor(store)
    ex.poll()
    good = _bundle(2)
    listed = json.loads(good[MANIFEST])["files"]
    v2 = _raw_publish(store, _with_manifest(good, files={**listed, "extra.bin": "00" * 32}))
    store.move("candidate", v2, reason="test")
    clock.t += 5
    ex.poll()
    assert ex.version == 1 and "extra.bin" in ex.status().rejected[v2]
    v3 = store.publish(_bundle(3), channel=None)
    store.blobs.put(f"policies/v{v3:06d}/{MANIFEST}", b"{not json")
    store.blobs.put("channels/candidate.json", json.dumps({
        "version": v3, "previous": v2, "kind": "promote", "by": "x", "reason": "x",
        "moved_ms": 1}).encode())
    clock.t += 5
    ex.poll()
    assert ex.version == 1 and "malformed" in ex.status().rejected[v3]


@pytest.mark.parametrize("change", ["window", "positions", "features"])
def test_incompatible_policies_are_rejected_before_the_swap(store_uri: str,
                                                           change: str) -> None:
    store = PolicyStore(store_uri)
    store.publish(_bundle(1))
    ex, clock = _executor(store)
    ex.poll()
    if change == "window":
        other = _exp(window=EXP.env.window + 2)
    elif change == "positions":
        other = _exp(positions=(-0.5, 0.0, 0.5))
    else:
        other = dataclasses.replace(EXP, features=dataclasses.replace(
            EXP.features, rsi_period=EXP.features.rsi_period + 1))
    store.publish(_bundle(2, other))
    clock.t += 5
    assert not ex.poll() and ex.version == 1
    reason = ex.status().rejected[2]
    assert {"window": "obs_shape", "positions": "positions",
            "features": "feature_spec_hash"}[change] in reason


@pytest.mark.parametrize(("change", "field"), [
    ({"costs": "fee"}, "costs.fee_bps"), ({"latency_bars": 3}, "latency_bars"),
    ({"reward": "drawdown_penalized"}, "reward"), ({"dsr_eta": 0.05}, "dsr_eta"),
    ({"risk": "drawdown"}, "risk.max_drawdown")])
def test_policy_trained_under_other_trading_rules_is_never_swapped_in(
        store_uri: str, change: dict[str, object], field: str) -> None:
    # the trader's broker and online-learning rewards are built from the serving policy's
    # manifest: a swap to other costs, risk, latency or reward rules would trade the new
    # policy under the old rules
    store = PolicyStore(store_uri)
    store.publish(_bundle(1))
    ex, clock = _executor(store)
    ex.poll()
    env = dict(change)
    if env.get("costs") == "fee":
        env["costs"] = dataclasses.replace(EXP.env.costs, fee_bps=EXP.env.costs.fee_bps * 10)
    if env.get("risk") == "drawdown":
        env["risk"] = dataclasses.replace(EXP.env.risk, max_drawdown=0.05)
    store.publish(_bundle(2, _exp(**env)))
    clock.t += 5
    assert not ex.poll() and ex.version == 1
    reason = ex.status().rejected[2]
    assert "incompatible trading rules" in reason and field in reason, reason
    # episode settings are training-only: a policy that differs only there swaps in
    store.publish(_bundle(3, _exp(max_episode_steps=77, random_start=False)))
    clock.t += 5
    assert ex.poll() and ex.version == 3
    assert ex.policy is not None and ex.policy.manifest.env.trading_rules() == \
        EXP.env.trading_rules()


def test_explicit_compatibility_rejects_even_the_first_version(store_uri: str) -> None:
    store = PolicyStore(store_uri)
    store.publish(_bundle(1))
    want = Compatibility((3,), (-1.0, 0.0, 1.0), "0" * 64, EXP.env.trading_rules())
    ex, _ = _executor(store, expect=want)
    assert not ex.poll()
    with pytest.raises(NoPolicyError):
        ex.decide(np.zeros(3))


def test_weights_giving_nan_are_rejected(store_uri: str) -> None:
    store = PolicyStore(store_uri)
    store.publish(_bundle(1))
    ex, clock = _executor(store)
    ex.poll()
    from safetensors.numpy import load

    tensors = load(_bundle(2)[WEIGHTS])
    tensors["advantage.0.bias"] = np.full_like(tensors["advantage.0.bias"], np.nan)
    weights = save(tensors)
    files = _with_manifest(_bundle(2), files={WEIGHTS: hashlib.sha256(weights).hexdigest()})
    store.publish({**files, WEIGHTS: weights})
    clock.t += 5
    ex.poll()
    assert ex.version == 1 and "non-finite" in ex.status().rejected[2]


def test_older_version_is_ignored_unless_rolled_back(store_uri: str) -> None:
    store = PolicyStore(store_uri)
    store.publish(_bundle(1))
    store.publish(_bundle(2))
    ex, clock = _executor(store)
    ex.poll()
    assert ex.version == 2
    with pytest.raises(OlderVersionError):
        store.move("candidate", 1, reason="stale trainer")
    # a stale writer that bypasses the check (an older tool) cannot pull the executor back
    current = store.channel("candidate")
    assert current is not None
    store.blobs.put("channels/candidate.json", json.dumps({
        "version": 1, "previous": 2, "kind": "publish", "by": "old", "reason": "late",
        "moved_ms": 2}).encode(), if_match=current.etag)
    clock.t += 5
    ex.poll()
    assert ex.version == 2 and ex.events[-1].kind == "ignored_older"
    store.rollback("candidate", to=1, reason="v2 misbehaves")
    clock.t += 5
    assert ex.poll() and ex.version == 1
    # the version going down is reported with the reason (the paper journal records it)
    assert ex.events[-1].kind == "swapped"
    assert "was v000002; rollback" in ex.events[-1].reason
    assert "v2 misbehaves" in ex.events[-1].reason


def test_rollback_moves_back_and_is_logged(store_uri: str) -> None:
    store = PolicyStore(store_uri, actor="ops")
    for seed in (1, 2, 3):
        store.publish(_bundle(seed), channel=None)
    store.move("live", 2, reason="gate passed")
    store.move("live", 3, reason="gate passed")
    pointer = store.rollback("live", reason="drawdown breach")
    assert (pointer.version, pointer.previous, pointer.kind) == (2, 3, "rollback")
    last = store.history("live")[-1]
    assert (last.from_version, last.to_version, last.kind, last.reason, last.by) == (
        3, 2, "rollback", "drawdown breach", "ops")
    with pytest.raises(ConfigError):
        store.rollback("paper", reason="never set")


def test_rollback_repeated_walks_back_past_versions_rolled_back_from(store_uri: str) -> None:
    store = PolicyStore(store_uri, actor="ops")
    for seed in (1, 2, 3, 4):
        store.publish(_bundle(seed), channel=None)
    for v in (1, 2, 3):
        store.move("live", v, reason="gate passed")
    assert store.rollback("live", reason="v3 bad").version == 2
    second = store.rollback("live", reason="v2 bad too")
    assert (second.version, second.previous, second.kind) == (1, 2, "rollback")
    assert second.rolled_back_from == (2, 3)
    # nothing older than v1 was served, and v2, v3 were both rolled back from
    with pytest.raises(ConfigError, match=r"no earlier version.*give --to"):
        store.rollback("live", reason="again")
    assert store.channel("live").version == 1  # type: ignore[union-attr]
    # a deliberate move clears a version; the next default rollback returns to v1, never v4
    store.move("live", 4, reason="new model")
    assert store.rollback("live", reason="v4 bad").version == 1
    # naming a version clears it, and marks the one left as rolled back from
    pointer = store.rollback("live", to=3, reason="v3 was fine after all, v1 is not")
    assert pointer.rolled_back_from == (1, 2, 4)
    with pytest.raises(ConfigError, match="no earlier version"):
        store.rollback("live", reason="no fallback left")
    assert [m.to_version for m in store.history("live")] == [1, 2, 3, 2, 1, 4, 1, 3]


def test_rollback_skips_a_version_retention_deleted(store_uri: str) -> None:
    store = PolicyStore(store_uri, actor="ops")
    for seed in (1, 2, 3, 4):
        store.publish(_bundle(seed), channel=None)
    for v in (1, 2, 3, 4):
        store.move("paper", v, reason="next")
    assert store.retain(keep=1) == [1, 2, 3]  # only the pinned v4 is kept
    with pytest.raises(ConfigError, match="no earlier version"):
        store.rollback("paper", reason="v4 bad")
    store.publish(_bundle(5), channel=None)
    store.publish(_bundle(6), channel=None)
    store.move("paper", 5, reason="next")
    store.move("paper", 6, reason="next")
    assert store.retain(keep=2) == [4]
    assert store.rollback("paper", reason="v6 bad").version == 5


def test_rollback_of_a_pointer_without_a_trail_never_returns_to_what_it_left(
        store_uri: str) -> None:
    store = PolicyStore(store_uri, actor="ops")
    for seed in (1, 2, 3):
        store.publish(_bundle(seed), channel=None)
    store.move("live", 3, reason="x")
    current = store.channel("live")
    assert current is not None
    # a pointer as older releases wrote it: rolled back from v3 to v2, no trail
    store.blobs.put("channels/live.json", json.dumps({
        "version": 2, "previous": 3, "kind": "rollback", "by": "old", "reason": "v3 bad",
        "moved_ms": 5}).encode(), if_match=current.etag)
    with pytest.raises(ConfigError, match="no earlier version"):
        store.rollback("live", reason="v2 bad")
    assert store.rollback("live", to=1, reason="v2 bad").version == 1


@pytest.mark.parametrize("writers", [2, 8])
def test_racing_writers_exactly_one_wins(store_uri: str, writers: int) -> None:
    store = PolicyStore(store_uri)
    for seed in range(writers + 1):
        store.publish(_bundle(seed), channel=None)
    store.move("paper", 1, reason="start")
    seen = store.channel("paper")
    barrier = threading.Barrier(writers)
    results: list[object] = [None] * writers

    def write(i: int) -> None:
        mine = PolicyStore(store_uri, actor=f"writer{i}")
        barrier.wait()
        try:
            results[i] = mine.move("paper", 2 + i, reason=f"writer {i}", expected=seen)
        except PreconditionFailedError as exc:
            results[i] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if not isinstance(r, PreconditionFailedError)]
    assert len(winners) == 1
    final = store.channel("paper")  # parses: no torn pointer
    assert final is not None and final.version == winners[0].version  # type: ignore[attr-defined]


def test_publishers_racing_never_share_a_version(store_uri: str) -> None:
    versions: list[int] = []
    lock = threading.Lock()

    def publish(seed: int) -> None:
        v = PolicyStore(store_uri).publish(_bundle(seed), channel=None)
        with lock:
            versions.append(v)

    threads = [threading.Thread(target=publish, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == [1, 2, 3, 4]
    assert PolicyStore(store_uri).versions() == [1, 2, 3, 4]


def test_swap_during_decisions_each_decision_uses_one_version(store_uri: str) -> None:
    store = PolicyStore(store_uri)
    store.publish(_bundle(1))
    ex, clock = _executor(store)
    ex.poll()
    reference = {1: ex.policy}
    obs = _obs(ex.policy, 4)  # type: ignore[arg-type]
    decisions = []
    stop = threading.Event()

    def decide_loop() -> None:
        i = 0
        while not stop.is_set():
            decisions.append((i % 4, ex.decide(obs[i % 4])))
            i += 1

    thread = threading.Thread(target=decide_loop)
    thread.start()
    for seed in (2, 3, 4):
        v = store.publish(_bundle(seed))
        clock.t += 5
        assert ex.poll()
        reference[v] = ex.policy
    while not decisions or decisions[-1][1].version != 4:  # a decision on the last one
        threading.Event().wait(0.001)
    stop.set()
    thread.join()
    assert {d.version for _, d in decisions} >= {1, 4}
    for i, d in decisions:  # the Q-values are exactly those of the version it names
        policy = reference[d.version]  # type: ignore[index]
        assert policy is not None
        np.testing.assert_array_equal(d.q_values, policy.q_values(obs[i])[0])


def test_store_unreachable_keeps_trading_and_backs_off(tmp_path: Path) -> None:
    with MotoServer() as server:
        bucket = server.new_bucket()
        store = PolicyStore(S3BlobStore(bucket, "r", endpoint_url=server.endpoint_url,
                                        connect_timeout_s=0.5, read_timeout_s=1.0,
                                        max_attempts=1))
        store.publish(_bundle(1))
        ex, clock = _executor(store)
        ex.poll()
    # the server is gone
    obs = _obs(ex.policy)  # type: ignore[arg-type]
    waits = []
    for _ in range(4):
        clock.t = ex.status().next_check_at
        assert not ex.poll()
        assert ex.decide(obs[0]).version == 1  # still trading on the current policy
        s = ex.status()
        waits.append(s.next_check_at - clock.t)
    assert s.consecutive_failures == 4 and "unreachable" in (s.last_error or "")
    assert waits[-1] > waits[0]  # exponential backoff
    assert all(w <= 60.0 for w in waits)
    assert ex.events[-1].kind == "unavailable"


def test_retention_keeps_pinned_versions_and_a_deleted_load_retries(store_uri: str) -> None:
    store = PolicyStore(store_uri)
    for seed in range(1, 7):
        store.publish(_bundle(seed), channel=None)
    store.move("live", 2, reason="old but live")
    store.move("candidate", 6, reason="new")
    assert store.retain(keep=2) == [1, 3, 4]
    assert store.versions() == [2, 5, 6]
    # retention races a loader: the version it follows vanishes while it loads
    store.move("paper", 5, reason="paper")
    ex, clock = _executor(store, "paper")
    real_files = store.files

    def files_then_gone(version: int) -> dict[str, bytes]:
        store.move("paper", 6, reason="moved on")
        assert store.retain(keep=1) == [5]
        return real_files(version)

    store.files = files_then_gone  # type: ignore[method-assign]
    assert not ex.poll()  # clean failure, backing off
    assert ex.version is None and ex.status().consecutive_failures == 1
    store.files = real_files  # type: ignore[method-assign]
    clock.t = ex.status().next_check_at
    assert ex.poll() and ex.version == 6
    with pytest.raises(ConfigError):
        store.retain(keep=0)


def test_a_pickle_planted_as_weights_is_never_unpickled(store_uri: str,
                                                        tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (str(marker),))  # type: ignore[return-value]

    payload = pickle.dumps(Exploit())
    files = _with_manifest(_bundle(2), files={WEIGHTS: hashlib.sha256(payload).hexdigest()})
    files[WEIGHTS] = payload  # checksums match: the writer itself is hostile
    with pytest.raises(PolicyRejectedError, match="not a safetensors file"):
        Policy(files)
    store = PolicyStore(store_uri)
    store.publish(_bundle(1))
    ex, clock = _executor(store)
    ex.poll()
    store.publish(files)
    clock.t += 5
    ex.poll()
    assert ex.version == 1 and "safetensors" in ex.status().rejected[2]
    assert not marker.exists()


def test_blobstore_uris_and_conditional_writes(tmp_path: Path) -> None:
    local = open_blobstore((tmp_path / "a").as_uri())
    assert isinstance(local, LocalBlobStore)
    assert isinstance(open_blobstore(str(tmp_path / "b")), LocalBlobStore)
    for bad in ("ftp://x/y", "s3:///nobucket", "file://host/path"):
        with pytest.raises(ConfigError):
            open_blobstore(bad)
    etag = local.put("k/x.json", b"1", if_none_match=True)
    with pytest.raises(PreconditionFailedError):
        local.put("k/x.json", b"2", if_none_match=True)
    with pytest.raises(PreconditionFailedError):
        local.put("k/x.json", b"2", if_match="stale")
    local.put("k/x.json", b"3", if_match=etag)
    assert local.get("k/x.json").data == b"3" and local.list("k/") == ["k/x.json"]
    with pytest.raises(ConfigError):
        local.get("../escape")
    local.put_tree("t/", {"a": b"1", "m": b"2"}, last="m")
    with pytest.raises(PreconditionFailedError):
        local.put_tree("t/", {"a": b"1", "m": b"2"}, last="m")


def test_missing_bucket_is_a_clear_unavailable_error(moto_server: MotoServer) -> None:
    store = S3BlobStore("no-such-bucket-rt", endpoint_url=moto_server.endpoint_url)
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        store.put("x", b"1")


def test_policy_loads_without_ray() -> None:
    code = ("import sys; import raytrade.actors.executor, raytrade.algos.storage.policy_store; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_unforeseen_failure_while_loading_backs_off_and_keeps_serving(
        tmp_path: Path) -> None:
    store = PolicyStore(tmp_path.as_uri())
    store.publish(_bundle(1))
    ex, clock = _executor(store)
    ex.poll()
    store.publish(_bundle(2))
    real_files = store.files

    def broken(version: int) -> dict[str, bytes]:
        raise RuntimeError("disk on fire")

    store.files = broken  # type: ignore[method-assign]
    clock.t += 5
    assert not ex.poll() and ex.version == 1
    status = ex.status()
    assert status.consecutive_failures == 1 and "disk on fire" in (status.last_error or "")
    assert status.next_check_at > clock.t
    store.files = real_files  # type: ignore[method-assign]
    clock.t = status.next_check_at
    assert ex.poll() and ex.version == 2
