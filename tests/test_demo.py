"""``raytrade demo`` end to end, the way a user runs it: a subprocess with a short training
budget, watched from outside through its run folder and its dashboard, then stopped with
Ctrl-C (SIGINT). Every stage must leave its mark: metrics written, a policy published,
promoted and served, paper decisions and fills journaled, live transitions ingested by the
learner, the dashboard answering, and a clean shutdown (exit 0, journals closed, helper
servers gone, logs in the run folder and not on the terminal).

Plus the demo's small parts: the run-folder rule, the data stage, the JSONL tail reader
and the child-process group stop.
"""

from __future__ import annotations

import http.client
import http.server
import io
import json
import math
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from raytrade.actors.journal import Journal
from raytrade.algos.experiments import experiment_path
from raytrade.algos.export import random_bundle
from raytrade.algos.manifest import MANIFEST
from raytrade.algos.storage.policy_store import PolicyStore, version_name
from raytrade.envs.errors import ConfigError, OperationalError
from raytrade.scripts.child_process import ChildProcess
from raytrade.scripts.demo import Demo, DemoOptions, check_run_dir, last_record, load_demo_data
from raytrade.scripts.demo_display import Display
from raytrade.scripts.s3_local import free_port
from rich.console import Console

from tests.live_setup import experiment
from tests.port_holders import GrpcLikeServer, HealthyServer, process_gone


def _lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _answers(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return bytes(response.read())
    except (OSError, http.client.HTTPException):
        return None


def _dashboard_url(terminal: list[str]) -> str | None:
    """The dashboard address the demo printed (``--port``, or the free port it moved to
    when that one was busy or taken before Streamlit bound it)."""
    found = re.search(r"dashboard (http://127\.0\.0\.1:\d+)", "".join(terminal))
    return found[1] if found else None


def _fed(terminal: list[str]) -> dict[str, int]:
    """Transitions each trader has sent to the learner, from the last plain status line."""
    for line in reversed(list(terminal)):
        if line.lstrip().startswith("status ") and "fed=" in line:
            found = (re.match(r"\s*(?:status\s+)?(\S+) .* fed=(\d+)$", part.rstrip())
                     for part in line.split(" | "))
            return {m[1]: int(m[2]) for m in found if m}
    return {}


def _publish_until_judged(store: PolicyStore, terminal: list[str],
                          proc: subprocess.Popen[str], deadline: float,
                          published: list[int]) -> int:
    """Publish a policy with no validation evaluation to ``candidate`` while the demo runs
    and wait until the demo's paper gate has judged it (its terminal names the version);
    returns that version. If the learner's next candidate replaces it before the demo
    looked (the demo checks the channel every ``--status-every`` seconds), publish another.
    Every version published here is appended to ``published``.
    """
    while True:
        version = store.publish(random_bundle(experiment(), seed=9),
                                reason="test: a candidate with no evaluation")
        published.append(version)
        while True:
            assert proc.poll() is None, "demo exited early:\n" + "".join(terminal)
            assert time.monotonic() < deadline, "never judged:\n" + "".join(terminal)
            out = "".join(terminal)
            if f"{version_name(version)} stays on candidate" in out or \
                    f"{version_name(version)} -> paper" in out:
                return version
            candidate = store.channel("candidate")
            if candidate is None or candidate.version != version:
                break  # replaced before the demo looked: try again
            time.sleep(0.5)


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _every_bar_config(folder: Path) -> Path:
    """The bundled ETH/BTC experiment deciding on every bar: the shipped one decides on the
    full hour, and this test needs a chunk of 64 decisions per trader within its budget
    (the decision rule itself is tested in test_decision.py and test_paper_parity.py)."""
    text = experiment_path("eth_btc_5m").read_text()
    assert "every_bars = 12" in text
    path = folder / "eth_btc_5m_every_bar.toml"
    path.write_text(text.replace("every_bars = 12", "every_bars = 1"))
    return path


def test_demo_runs_the_whole_loop_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    run = tmp_path / "demo"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "raytrade.scripts.cli", "demo", "--run-dir", str(run),
         "--config", str(_every_bar_config(tmp_path)),
         "--train-budget", "15", "--speed", "600", "--port", str(port),
         "--status-every", "5", "--paper-override", "--live-stage"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    terminal: list[str] = []
    reader = threading.Thread(target=lambda: terminal.extend(proc.stdout or []), daemon=True)
    reader.start()
    store_dir = run / "store"
    url: str | None = None  # the dashboard's, once the demo has printed it
    seen_page = False
    try:
        deadline = time.monotonic() + 420
        while True:
            assert proc.poll() is None, "demo exited early:\n" + "".join(terminal)
            assert time.monotonic() < deadline, "timed out; terminal:\n" + "".join(terminal)
            url = url or _dashboard_url(terminal)
            if url is None:
                time.sleep(2)
                continue
            page = _answers(url)
            seen_page = seen_page or (page is not None and b"<html" in page.lower())
            fills = sum(len(_lines(p)) for p in (store_dir / "paper").glob("*/trades.jsonl"))
            train = _lines(store_dir / "metrics" / "train.jsonl")
            ingested = max((r.get("live_transitions_ingested") or 0 for r in train),
                           default=0)
            fed = _fed(terminal)  # every trader has fed the learner one chunk
            live_orders = sum(len(_lines(p)) for p in
                              (store_dir / "live").glob("*/orders.jsonl"))
            if seen_page and fills > 0 and live_orders > 0 and \
                    isinstance(ingested, float | int) and \
                    ingested > 0 and len(fed) == 2 and min(fed.values()) >= 64 and \
                    _answers(f"{url}/_stcore/health") == b"ok":
                break
            time.sleep(2)
        store = PolicyStore(store_dir.as_uri())
        ours: list[int] = []  # every unevaluated version the test published
        unevaluated = _publish_until_judged(store, terminal, proc, deadline, ours)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(300) == 0, "".join(terminal)
    finally:
        if proc.poll() is None:  # a failed check: stop it cleanly, its helper servers too
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()  # its helpers (own process groups) may outlive it
                proc.wait()
    reader.join(10)
    out = "".join(terminal)

    # the terminal shows the demo's own lines, not Ray's or RLlib's
    assert url is not None and f"dashboard {url}" in out
    dashboard_port = int(url.rsplit(":", 1)[1])
    # on the port asked for, unless that one was busy and the terminal said so
    assert dashboard_port == port or \
        f"port {port} is busy; the dashboard uses {dashboard_port}" in out
    assert "Ctrl-C: stopping cleanly" in out
    assert "Traceback" not in out and "WARNING" not in out
    assert len(terminal) < 120, out
    log = (run / "logs" / "demo.log").read_text()
    assert "Started a local Ray instance" in log  # library chatter went to the log
    assert any((run / "logs" / "ray").iterdir()), "Ray's session logs are kept"
    assert (run / "logs" / "exchange.log").exists() and (run / "logs" / "dashboard.log").exists()

    # training: metrics, validation evaluations with curves, a final checkpoint
    train = _lines(store_dir / "metrics" / "train.jsonl")
    evals = _lines(store_dir / "metrics" / "eval.jsonl")
    assert len(train) >= 5 and evals and evals[0]["split"] == "validation"
    assert all(r["sampled_per_s"] and r["sampled_per_s"] > 0 for r in train[1:])
    assert any((store_dir / "metrics" / "eval_curves").iterdir())
    assert (store_dir / "checkpoints" / "latest").exists()

    # published, promoted through the gate, served
    versions = store.versions()
    paper = store.channel("paper")
    assert versions and paper is not None and paper.version in versions
    # the best validation policy, published after a training budget when it beat the
    # candidate, each with the validation evidence the paper gate reads (and the test's
    # unevaluated one)
    trained = [v for v in versions if v not in ours]
    assert trained
    for version in trained:
        manifest = store.manifest(version)
        assert manifest["evaluation"]["split"] == "validation"
        # --paper-override publishes with the configured rule, not one chosen on validation
        assert manifest["env"]["decision"]["cost_multiple"] == 1.0
        assert "calibration" not in manifest["evaluation"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_by"] == "Ctrl-C"
    # the paper gate judged every candidate on its evidence: the unevaluated one was
    # refused and never reached paper; a trained one passed only if it beat flat after
    # costs on every validation dataset. The first went to paper either through the gate
    # or, with --paper-override, as a forced move the terminal and the move log show
    promotions = {p["version"]: p for p in summary["promotions"]}
    first = summary["promotions"][0]
    assert first["passed"] or first["override"], "paper trading needs the first"
    assert promotions[unevaluated]["passed"] is False
    assert promotions[unevaluated]["reasons"] == [
        f"{version_name(unevaluated)} has no validation evaluation"]
    moved = store.history("paper")
    assert moved[0].to_version == first["version"]
    assert moved[0].kind == ("force" if first["override"] else "promote"), moved
    assert (f"demo override: {version_name(first['version'])}" in out) == first["override"]
    assert all(m.kind == "promote" for m in moved[1:]), moved
    assert {m.to_version for m in moved} == {
        v for v, p in promotions.items() if p["passed"] or p["override"]}
    assert not set(ours) & {m.to_version for m in moved}
    for version, promotion in promotions.items():
        if version in ours:
            assert promotion["passed"] is False  # judged after the learner replaced it
            continue
        evidence = store.manifest(version)["evaluation"]["datasets"]
        assert set(evidence) == {"ETHUSDT", "BTCUSDT"}
        beats = all(per["greedy"]["final_equity"] > per["flat"]["final_equity"]
                    for per in evidence.values())
        assert promotion["passed"] is beats, promotion
        assert beats or any("does not beat flat" in r for r in promotion["reasons"])
        for dataset, per in evidence.items():
            sharpe = per["greedy"]["sharpe"]
            assert isinstance(sharpe, float) and math.isfinite(sharpe)
            assert f"{dataset} {sharpe:+.2f}" in promotion["validation_sharpe"]
    assert summary["training"]["error"] is None
    assert summary["training"]["live_transitions_ingested"] > 0
    assert summary["live_gate"]["version"] == paper.version
    total_fills = 0
    for row in summary["paper"]:
        assert row["error"] is None, row
        assert row["journaled_decisions"] > 0
        assert row["policy_version"] in versions
        assert row["pushed_transitions"] >= 64  # one chunk at least
        served = {int(r["version"]) for r in  # type: ignore[call-overload]
                  _lines(store_dir / "paper" / row["actor"] / "equity.jsonl")}
        assert served and served <= set(versions), "every exported bar names a published policy"
        journal = Journal(row["journal"])
        try:
            reasons = {r[0] for r in journal.db.execute("SELECT reason FROM decisions")}
            assert "policy" in reasons
            kinds = [r[0] for r in journal.db.execute("SELECT kind FROM events ORDER BY id")]
            assert kinds[-1] == "shutdown", "the session closed its journal cleanly"
            total_fills += journal.count("fills")
            # the trader's costs, as its export computes them, in the summary and the store
            if journal.count("fills"):
                assert row["cost_drag"] > 0 and row["gross_return"] == pytest.approx(
                    row["total_return"] + row["cost_drag"])
            exported = json.loads((store_dir / "paper" / row["actor"] / "performance.json")
                                  .read_text())
            assert {"cost_drag", "slippage_fraction", "halted"} <= set(exported["record"])
        finally:
            journal.close()
    assert total_fills > 0, "paper fills journaled"

    # the live stage: signed orders on the loopback exchange, reconciled, keys kept out
    assert [r["actor"] for r in summary["live"]] == ["demo-live-ethusdt", "demo-live-btcusdt"]
    for row in summary["live"]:
        assert row["error"] is None and row["last_reconcile"]["ok"], row
    acked = [o for p in (store_dir / "live").glob("*/orders.jsonl") for o in _lines(p)
             if o["status"] in ("filled", "partially_filled", "expired")]
    assert acked, "live orders acknowledged by the loopback exchange"
    keys_file = run / "exchange-keys.json"
    assert keys_file.stat().st_mode & 0o077 == 0
    secret = json.loads(keys_file.read_text())["api_secret"]
    assert secret not in out and secret not in log

    # nothing left running
    assert _port_closed(dashboard_port), "dashboard stopped"
    replay = summary["replay"]["ws_url"].rsplit(":", 1)[1]
    assert _port_closed(int(replay)), "replay feed stopped"


@pytest.mark.parametrize("holder", [GrpcLikeServer, HealthyServer],
                         ids=["grpc-like", "another-streamlit"])
def test_demo_dashboard_moves_to_a_free_port_when_its_port_is_taken_before_it_binds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        holder: type[GrpcLikeServer | HealthyServer]) -> None:
    """The race the end-to-end run met once: ``--port`` was free when the demo looked and
    another server held it when Streamlit bound: a gRPC one (binary frames), or one that
    even answers the health check as Streamlit does. The demo starts the dashboard again
    on a free port, says so, and serves from its own Streamlit."""
    import raytrade.scripts.demo as demo_module

    foreign = holder()
    monkeypatch.setattr(demo_module, "_port_free", lambda port: True)  # looked too early
    demo, out = _quiet_demo(tmp_path, port=foreign.port)
    try:
        demo._start_dashboard()
        url = demo.dashboard_url
        assert url is not None and not url.endswith(f":{foreign.port}")
        assert _answers(f"{url}/_stcore/health") == b"ok"
        assert demo.children["dashboard"].alive()
        moved_to = int(url.rsplit(":", 1)[1])
        assert f"port {foreign.port} is busy; the dashboard uses {moved_to}" in out.getvalue()
        assert out.getvalue().count("is busy") == 1
        log = (demo.logs / "dashboard.log").read_text()
        assert f"Port {foreign.port} is not available" in log  # the first start's exit
        assert f"URL: {url}" in log
    finally:
        for child in demo.children.values():
            child.stop()
        foreign.close()
    assert _port_closed(moved_to)


def test_child_wait_http_takes_a_non_http_answer_as_no_answer(tmp_path: Path) -> None:
    """A foreign server's binary answer on the port is not an error of its own: waiting
    goes on until the child answers, exits (named, with its log) or the time runs out."""
    foreign = GrpcLikeServer()
    try:
        with pytest.raises(http.client.HTTPException):  # what urllib makes of its answer
            urllib.request.urlopen(f"http://127.0.0.1:{foreign.port}/", timeout=5)
        child = ChildProcess("quitter", ["sh", "-c", "sleep 1; echo gave up; exit 3"],
                             tmp_path / "quitter.log")
        with pytest.raises(OperationalError, match=r"quitter exited before it answered "
                                                   r"\(exit code 3\)(.|\n)*gave up"):
            child.wait_http(f"http://127.0.0.1:{foreign.port}/", b"ok", timeout_s=30)
        child.stop()
        sleeper = ChildProcess("sleeper", ["sleep", "60"], tmp_path / "sleeper.log")
        with pytest.raises(OperationalError, match="sleeper did not answer"):
            sleeper.wait_http(f"http://127.0.0.1:{foreign.port}/", b"ok", timeout_s=1)
        sleeper.stop()
    finally:
        foreign.close()


def test_child_output_is_this_starts_own_and_stopping_twice_is_harmless(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Restarts append to one log; each start's ``output`` (what its errors quote and
    what ``wait_http``'s marker is looked for in) leaves the earlier starts' text out."""
    log = tmp_path / "child.log"
    first = ChildProcess("first", ["sh", "-c", "echo first start; exit 4"], log)
    first.proc.wait(10)
    assert first.output() == "first start\n"
    assert first.stop() == 4
    signalled: list[int] = []  # the group id may belong to another process by now
    monkeypatch.setattr("raytrade.scripts.child_process.os.killpg",
                        lambda pgid, sig: signalled.append(pgid))
    assert first.stop() == 4 and signalled == []  # the second stop does nothing
    monkeypatch.undo()
    second = ChildProcess("second", ["sh", "-c", "echo second start; exit 5"], log)
    second.proc.wait(10)
    assert second.output() == "second start\n"
    assert log.read_text() == "first start\nsecond start\n"
    with pytest.raises(OperationalError, match=r"(?s)exit code 5.*second start") as err:
        second.wait_http("http://127.0.0.1:9/", b"ok", timeout_s=5)
    assert "first start" not in str(err.value)
    second.stop()


def test_demo_refuses_a_used_run_folder(tmp_path: Path) -> None:
    check_run_dir(tmp_path / "new")  # absent: fine
    check_run_dir(tmp_path)  # empty: fine
    (tmp_path / "journals").mkdir()
    with pytest.raises(ConfigError, match="not empty"):
        check_run_dir(tmp_path)


def test_demo_data_stage_replays_the_test_split_after_the_warmup(tmp_path: Path) -> None:
    data, info = load_demo_data(DemoOptions(run_dir=tmp_path))
    assert data.symbols == ["ETHUSDT", "BTCUSDT"] and data.interval == "5m"
    assert info["shared_bars"] == 25_920
    # 70 % train, 15 % validation: the test split starts at bar 22,032, after the warm-up
    assert data.replay_start == info["test_split_start"] == 22_032
    assert data.replay_start >= info["feature_warmup_bars"]
    assert data.bars == 25_920 - 22_032
    assert data.exp.live.enabled  # online learning on by default
    off, _ = load_demo_data(DemoOptions(run_dir=tmp_path, online_learning=False))
    assert not off.exp.live.enabled


def test_demo_refuses_synthetic_sources(tmp_path: Path) -> None:
    from raytrade.algos.experiments import experiment_path

    with pytest.raises(ConfigError, match="synthetic sources"):
        load_demo_data(DemoOptions(run_dir=tmp_path,
                                   config=str(experiment_path("synthetic_regime"))))


def test_last_record_skips_a_half_written_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    assert last_record(path) is None
    path.write_text('{"iteration": 1}\n{"iteration": 2}\n{"iterat')
    assert last_record(path) == {"iteration": 2}
    path.write_text('{"iteration": 1}\n' + "x" * 20_000 + '\n{"iteration": 3}\n')
    assert last_record(path) == {"iteration": 3}


def test_child_process_stop_ends_its_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    child = ChildProcess("sleeper", ["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"],
                         tmp_path / "sleeper.log")
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    assert child.stop(timeout_s=5) is not None
    deadline = time.monotonic() + 5
    while not process_gone(grandchild):
        assert time.monotonic() < deadline, "the group's other process survived"
        time.sleep(0.05)


def _losing_candidate(store: PolicyStore) -> int:
    """A candidate whose validation evaluation verifies and is finite but lost to flat."""
    files = random_bundle(experiment(), seed=3)
    manifest = json.loads(files[MANIFEST])
    manifest["evaluation"] = {"split": "validation", "datasets": {"ETHUSDT": {
        "greedy": {"final_equity": 9_500.0, "sharpe": -17.0},
        "flat": {"final_equity": 10_000.0, "sharpe": None}}}}
    return store.publish({**files, MANIFEST: json.dumps(manifest).encode()})


def _quiet_demo(tmp_path: Path, **options: Any) -> tuple[Demo, io.StringIO]:
    out = io.StringIO()
    display = Display(Console(file=out, width=400, force_terminal=False), plain_every_s=1e9)
    return Demo(DemoOptions(run_dir=tmp_path, **options), display), out


def test_demo_first_policy_nothing_qualifies_says_why_and_starts_no_paper(
        tmp_path: Path) -> None:
    demo, out = _quiet_demo(tmp_path, duration_s=1.5)
    (demo.store_dir / "metrics").mkdir(parents=True)
    (demo.store_dir / "metrics" / "selection.jsonl").write_text(json.dumps({
        "kind": "publication", "iteration": 7, "version": None,
        "reason": "the best policy (iteration 7) does not beat flat; "
                  "[selection] require_beat_flat"}) + "\n")
    version = _losing_candidate(demo.store)
    assert demo._first_policy() is False  # waited for a qualifying one until the duration
    text = out.getvalue()
    # printed as written: a [section] in a reason is text, not console markup
    assert "nothing qualifies for paper yet: training did not publish at iteration 7: " \
        "the best policy (iteration 7) does not beat flat; [selection] require_beat_flat; " \
        "training goes on" in text
    assert f"nothing qualifies for paper yet: {version_name(version)} stays on candidate: " \
        "gate failed: ETHUSDT: does not beat flat after costs on validation (greedy " \
        "9,500.00 vs flat 10,000.00, excess log growth -5.13 %)" in text
    assert demo.store.channel("paper") is None and demo.promotions[0]["passed"] is False
    demo._print_summary()
    assert "no paper trader ran: no candidate qualified for paper" in out.getvalue()


def test_demo_paper_override_forces_the_first_candidate_and_logs_it(tmp_path: Path) -> None:
    demo, out = _quiet_demo(tmp_path, paper_override=True, duration_s=30)
    version = _losing_candidate(demo.store)
    assert demo._first_policy() is True
    assert f"demo override: {version_name(version)} does not qualify for paper" in \
        out.getvalue()
    move = demo.store.history("paper")[-1]
    assert move.kind == "force" and move.to_version == version
    assert "does not beat flat" in move.reason and "demo override" in move.reason
    assert demo.promotions == [{"version": version, "passed": False, "override": True,
                                "reasons": demo.promotions[0]["reasons"],
                                "validation_sharpe": "ETHUSDT -17.00"}]
    # later candidates still need the gate
    later = _losing_candidate(demo.store)
    assert demo._promote(later) is False
    assert demo.store.channel("paper").version == version  # type: ignore[union-attr]
    # an unevaluated first candidate is not forced, even with the override
    other, _ = _quiet_demo(tmp_path / "other", paper_override=True)
    unevaluated = other.store.publish(random_bundle(experiment(), seed=4))
    assert other._promote(unevaluated, first=True) is False
