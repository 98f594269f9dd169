"""``raytrade demo``: the whole loop on one machine, in the order a user meets it.

1. **data**: the experiment's bar files are loaded (validated) and described;
2. **ray**: a private local Ray (its session logs are copied to the run folder at the end);
3. **dashboard**: ``raytrade dashboard`` on the run store, so training can be watched;
4. **train**: the Ape-X DQN trains in a background thread; after every ``train_budget_s``
   seconds of training it evaluates the greedy policy on validation and publishes it to
   ``candidate``. With online learning it also drains the live-experience queue;
   Training publishes to ``candidate`` only its best validation policy, and only when it
   beats the current candidate (and flat after costs: the experiment's ``[selection]``);
5. **promote**: each new candidate goes to ``paper`` only through the paper gate, which by
   default requires beating flat after costs on validation. Until a candidate qualifies
   the demo says so on the terminal (with the numbers) and training goes on; no paper
   trader starts before one does. ``paper_override`` (``--paper-override``) is the demo's
   only exception, off by default: training then also publishes policies that lose to flat
   (with the configured decision rule: a cost multiple chosen on validation from policies
   that all lose would be one that never trades, which shows no loop), and the first
   candidate that verifies and has a finite validation result goes to paper
   even if the gate refuses it, as a *forced* move logged in the store's channel history
   with the verdict it overrode, and printed as a demo override. Later candidates still
   need the gate;
6. **feed**: ``raytrade feed replay`` streams the test split (bars the policy was neither
   trained nor selected on) at ``speed``; the bars before it are REST history for warm-up;
7. **paper**: one ``PaperTrader`` Ray actor per symbol follows ``paper`` and hot-swaps each
   promoted policy; with online learning their transitions go back to the learner;
8. **live** (``live_stage``, ``--live-stage``): the feed comes from ``raytrade exchange
   sim``, a loopback Binance exchange filling at the replay's prices, and one
   ``LiveTrader`` per symbol sends it signed orders (USD-M futures for a policy that can
   go short, spot otherwise), following ``paper`` (the loopback exchange holds no money).

It then shows status until Ctrl-C, SIGTERM or ``duration_s`` (counted from the start).
The shutdown stops the traders (journals closed, open positions logged), judges the live
gate on their record, stops the feed, the learner (final evaluation, checkpoint and
policy) and the dashboard, and writes ``summary.json``. Run folder::

    store/      the file:// run store: metrics, checkpoints, policies, channels, paper/
    journals/   the paper traders' SQLite journals
    logs/       demo.log (this process), replay.log (or exchange.log with the live
                stage), dashboard.log, ray/ (Ray's logs)
    exchange-*.json   the loopback account and its keys (live stage; owner-only)
    data.json   what was loaded; summary.json: what happened
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raytrade.actors.live_actor import run_live
from raytrade.actors.live_config import LiveConfig as LiveTraderConfig
from raytrade.actors.live_config import LiveLimits
from raytrade.actors.paper_actor import actor_name, run_paper
from raytrade.actors.paper_config import PaperConfig
from raytrade.algos.experiment import ExperimentConfig, LiveConfig, SelectionConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.storage.keys import SELECTION_METRICS, TRAIN_METRICS
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.algos.storage.promotion import (
    GateLimits,
    PaperLimits,
    live_gate,
    paper_gate,
    promote,
)
from raytrade.algos.train import TrainResult, ray_session, train
from raytrade.envs.errors import ConfigError, OperationalError
from raytrade.envs.features.warmup import feature_warmup_bars
from raytrade.envs.intervals import interval_to_ms, ms_to_interval
from raytrade.envs.io import describe, load_bars
from raytrade.envs.market import resolve_sources
from raytrade.envs.resample import align
from raytrade.envs.sample import sample_path
from raytrade.envs.splits import split_by_fraction
from raytrade.scripts.child_process import ChildProcess
from raytrade.scripts.demo_display import DemoStatus, Display, TraderRow, fmt_or_dash
from raytrade.scripts.s3_local import free_port

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoOptions:
    """What ``raytrade demo`` runs. Times in seconds; money in quote currency."""

    run_dir: Path
    """A new or empty folder (a journal left there would resume an older session)."""
    config: str | None = None
    """Experiment TOML; None: the bundled ETH/BTC 5m experiment."""
    train_budget_s: float = 180.0
    """Training before the first policy, and between later ones."""
    duration_s: float | None = None
    """Stop this long after the start; None: run until Ctrl-C, SIGTERM or the end of
    the replay."""
    speed: float = 600.0
    """Replay clock: virtual ms per real ms (600: a 5m bar every 0.5 s, so a policy on
    paper for a 180 s training budget trades the live gate's 288 bars)."""
    port: int = 8501
    """Dashboard port; a free one is taken if it is busy."""
    online_learning: bool = True
    """Paper traders push their transitions to the learner's live-experience queue."""
    initial_equity: float = 10_000.0
    """Each paper trader's starting balance."""
    status_every_s: float = 2.0
    """Status refresh and candidate check period."""
    paper_override: bool = False
    """Demo override (module docstring): paper-trade the first candidate even when it
    does not beat flat after costs on validation; the forced move is logged and printed."""
    live_stage: bool = False
    """Also run one live trader per symbol against a loopback Binance exchange
    (``raytrade exchange sim``, filling at the replay's prices): real signed orders, user
    data stream, reconciliation, its orders journal and ``live/<actor>/`` record. It
    follows the ``paper`` channel: no policy reaches ``live`` in a short demo, and the
    loopback exchange holds no money."""

    def __post_init__(self) -> None:
        if not self.train_budget_s > 0 or not self.speed > 0 or self.status_every_s <= 0:
            raise ConfigError("demo: train budget, speed and status period must be > 0")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError("demo: --duration must be > 0 seconds")


@dataclass(frozen=True)
class DemoData:
    """The experiment and the bars the replay feed serves."""

    exp: ExperimentConfig
    files: list[str]
    symbols: list[str]
    interval: str
    replay_start: int
    bars: int
    last_ts: int
    """Open time of the last bar the replay serves (ms UTC)."""


def load_demo_data(options: DemoOptions) -> tuple[DemoData, dict[str, Any]]:
    """Load and validate the experiment's bar files (and the reference asset's), and pick
    where the replay starts: the test split, or later if the warm-up needs more history."""
    path = options.config or str(experiment_path("eth_btc_5m"))
    exp = ExperimentConfig.load(path)
    exp = dataclasses.replace(exp, live=dataclasses.replace(
        exp.live, enabled=options.online_learning) if options.online_learning else
        LiveConfig(enabled=False))
    if options.paper_override:  # candidates that lose to flat are published (and judged)
        exp = dataclasses.replace(exp, selection=dataclasses.replace(
            exp.selection, require_beat_flat=False, calibrate_cost_multiples=()))
    files = resolve_sources(exp.data.sources)
    if any(f.startswith("synthetic:") for f in files):
        raise ConfigError(f"{path}: the demo replays bar files over a websocket; synthetic "
                          "sources have no exchange symbol to paper-trade")
    tables = [load_bars(f) for f in files]
    for f, table in zip(files, tables, strict=True):
        if not table.symbol:
            raise ConfigError(f"{f}: no symbol in the file name (e.g. ETHUSDT_5m.csv); the "
                              "paper trader needs one")
    symbols = [t.symbol or "" for t in tables]
    served = list(files)
    ref = exp.features.reference_symbol
    if ref and ref not in symbols:
        extra = resolve_sources((exp.data.reference,))[0] if exp.data.reference \
            else str(sample_path(ref))
        tables.append(load_bars(extra))
        served.append(extra)
    aligned = align(tables)
    ts = aligned[0].ts
    interval_ms = int(ts[1] - ts[0])
    test = split_by_fraction(ts, interval_ms, train=exp.data.train,
                             validation=exp.data.validation).test
    warmup = feature_warmup_bars(exp.features, exp.env.window)
    start = max(test.start, warmup)
    if start >= len(ts) - 1:
        raise ConfigError(f"{path}: {len(ts)} shared bars leave nothing to stream after "
                          f"the {warmup}-bar feature warm-up")
    info = {"experiment": exp.name, "config": path, "files": served,
            "tables": [describe(t) for t in tables], "shared_bars": len(ts),
            "test_split_start": test.start, "feature_warmup_bars": warmup,
            "replay_start": start, "replay_bars": len(ts) - start}
    return DemoData(exp, served, symbols, ms_to_interval(interval_ms), start,
                    len(ts) - start, int(ts[-1])), info


DASHBOARD_BIND_ATTEMPTS = 3
"""Dashboard starts tried when the chosen port is taken before Streamlit binds it."""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def last_record(path: Path, tail_bytes: int = 16_384) -> dict[str, Any] | None:
    """The last complete JSON line of a growing JSONL file (None if there is none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - tail_bytes))
            lines = fh.read().split(b"\n")
    except FileNotFoundError:
        return None
    for line in reversed(lines[:-1]):  # the part after the last newline may be partial
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            return record
    return None


class Demo:
    """One run of the local loop (module docstring). ``run`` blocks until it is over."""

    def __init__(self, options: DemoOptions, display: Display) -> None:
        self.o = options
        self.display = display
        self.run_dir = options.run_dir.resolve()
        self.logs = self.run_dir / "logs"
        self.store_dir = self.run_dir / "store"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.store = PolicyStore(self.store_dir.as_uri())
        self.stop = threading.Event()
        self.force = threading.Event()
        self.stopped_by: str | None = None
        self.started = time.monotonic()
        self.children: dict[str, ChildProcess] = {}
        self.dashboard_url: str | None = None
        self.train_thread: threading.Thread | None = None
        self.train_result: TrainResult | None = None
        self.train_error: str | None = None
        self.paper_thread: threading.Thread | None = None
        self.paper_finals: list[dict[str, Any]] = []
        self.paper_error: str | None = None
        self.configs: list[PaperConfig] = []
        self.live_thread: threading.Thread | None = None
        self.live_finals: list[dict[str, Any]] = []
        self.live_error: str | None = None
        self.live_configs: list[LiveTraderConfig] = []
        self.judged: set[int] = set()
        self.promotions: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {"run_dir": str(self.run_dir),
                                        "store": self.store.uri}

    # -- control -----------------------------------------------------------------------

    def request_stop(self, why: str) -> None:
        """Begin the clean shutdown (idempotent; the first reason is kept)."""
        if not self.stop.is_set():
            self.stopped_by = why
            self.stop.set()

    def on_signal(self, name: str) -> None:
        """Ctrl-C or SIGTERM: the first stops cleanly, the second stops waiting."""
        if not self.stop.is_set():
            self.request_stop(name)
            self.display.warn(f"{name}: stopping cleanly (press Ctrl-C again to force)")
        elif not self.force.is_set():
            self.force.set()
            self.display.warn("forcing: not waiting for the learner and traders")

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGINT, lambda *_: self.on_signal("Ctrl-C"))
        signal.signal(signal.SIGTERM, lambda *_: self.on_signal("SIGTERM"))

    def _time_left(self) -> float | None:
        if self.o.duration_s is None:
            return None
        return self.o.duration_s - (time.monotonic() - self.started)

    def _should_go_on(self) -> bool:
        left = self._time_left()
        if left is not None and left <= 0:
            self.request_stop("duration")
        if self.train_thread is not None and not self.train_thread.is_alive() \
                and not self.stop.is_set():
            self.request_stop(f"error: the learner stopped: {self.train_error}")
            self.display.error(f"the learner stopped: {self.train_error} "
                               f"(see {self.logs / 'demo.log'})")
        for name, child in self.children.items():
            if not child.alive() and not self.stop.is_set():
                self.request_stop(f"error: {name} exited")
                self.display.error(f"{name} exited (code {child.proc.poll()}); see "
                                   f"{child.log}")
        return not self.stop.is_set()

    # -- the run -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Every stage, then the shutdown; returns the summary (also in summary.json)."""
        data, info = load_demo_data(self.o)
        (self.run_dir / "data.json").write_text(json.dumps(info, indent=2))
        self.summary["data"] = {k: info[k] for k in ("experiment", "files", "shared_bars",
                                                     "replay_start", "replay_bars")}
        self.display.stage("data", f"{data.exp.name}: " + ", ".join(
            f"{t['symbol']} {t['bars']:,} bars {t['first'][:10]}..{t['last'][:10]}"
            for t in info["tables"]) + f" (validated; {self.run_dir / 'data.json'})")
        with ray_session(None, keep_logs=self.logs / "ray"):
            self._install_signals()
            self.display.stage("ray", f"private local Ray, {os.cpu_count()} CPUs (logs: "
                               f"{self.logs / 'ray'} at the end)")
            try:
                self._start_dashboard()
                self._start_training(data.exp)
                if self._first_policy() and self._go_on_with_paper():
                    self._start_feed_and_paper(data)
                    self._watch(data)
            finally:
                self.request_stop("finished")
                self._shutdown()
        self.summary["stopped_by"] = self.stopped_by
        (self.run_dir / "summary.json").write_text(json.dumps(self.summary, indent=2,
                                                              default=str))
        self._print_summary()
        return self.summary

    def _start_dashboard(self) -> None:
        """Start the dashboard on ``--port``, or on a free port when that one is busy.

        A port found free can still be taken before Streamlit binds it (another server
        started meanwhile; Ray's own servers bind ephemeral ports too): Streamlit then
        exits with "Port N is not available", and the dashboard is started again on a
        fresh free port, up to ``DASHBOARD_BIND_ATTEMPTS`` times (each retry in the demo
        log). It counts as started once the health check answers and Streamlit's own
        output shows its URL on that port (``raytrade dashboard`` always prints it), so
        another Streamlit on the port is not taken for it.
        """
        port = self.o.port if _port_free(self.o.port) else free_port()
        for attempt in range(1, DASHBOARD_BIND_ATTEMPTS + 1):
            child = ChildProcess("dashboard", [sys.executable, "-m", "raytrade.scripts.cli",
                                               "dashboard", "--store", self.store.uri,
                                               "--port", str(port), "--refresh", "5"],
                                 self.logs / "dashboard.log")
            self.children["dashboard"] = child
            url = f"http://127.0.0.1:{port}"
            try:
                child.wait_http(f"{url}/_stcore/health", b"ok", timeout_s=120,
                                log_marker=re.compile(rf"URL: http\S*:{port}(?!\d)"))
                break
            except OperationalError:
                child.stop()
                lost = f"Port {port} is not available" in child.output()
                if not lost or attempt == DASHBOARD_BIND_ATTEMPTS or self.stop.is_set():
                    raise
                log.warning("dashboard: port %d was taken before it bound; retrying", port)
                port = free_port()
        else:  # not reached: the loop breaks or raises
            raise AssertionError("unreachable")
        if port != self.o.port:
            self.display.warn(f"port {self.o.port} is busy; the dashboard uses {port}")
        self.dashboard_url = url
        self.summary["dashboard"] = url
        self.display.stage("dashboard", "(training, evaluation, paper trading and models, "
                           "refreshed every 5 s)", emphasis=url)

    def _start_training(self, exp: ExperimentConfig) -> None:
        def target() -> None:
            try:
                self.train_result = train(
                    exp, self.store_dir, publish_every_s=self.o.train_budget_s,
                    stop=self.stop, eval_every=10**9, checkpoint_every=10**9,
                    progress=lambda line: log.info("train: %s", line))
            except BaseException as exc:  # reported by the watcher and in summary.json
                self.train_error = f"{exc.__class__.__name__}: {exc}"
                log.exception("training failed")

        self.train_thread = threading.Thread(target=target, name="learner", daemon=True)
        self.train_thread.start()
        live = "on" if exp.live.enabled else "off"
        sel: SelectionConfig = exp.selection
        flat = "beating flat after costs and " if sel.require_beat_flat else ""
        self.display.stage("train", f"Ape-X DQN ({exp.resources.num_env_runners} env "
                           f"runners x {exp.resources.num_envs_per_env_runner} envs), "
                           f"the best validation policy published every "
                           f"{self.o.train_budget_s:.0f} s of training if {flat}better than "
                           f"the candidate by {sel.metric}, online learning {live}")

    def _first_policy(self) -> bool:
        """Wait (with a progress bar) until a candidate reaches ``paper``: each new one
        goes through the paper gate (``_promote``); while none qualifies the demo says
        why (training's own publication decisions, then the gate's verdicts) and waits
        for the next. True when paper trading can start."""
        metrics = self.store_dir / TRAIN_METRICS
        decisions = self.store_dir / SELECTION_METRICS
        shown: set[int] = set()  # iterations whose "not published" decision was shown
        budget = self.o.train_budget_s
        with self.display.training(budget) as bar:
            while self._should_go_on():
                pointer = self.store.channel("candidate")
                if pointer is not None and pointer.version not in self.judged:
                    at = last_record(metrics) or {}
                    self.display.stage("train", f"v{pointer.version:06d} published to "
                                       f"candidate after {at.get('iteration')} iterations, "
                                       f"{fmt_or_dash(at.get('env_steps_sampled'), ',.0f')}"
                                       " env steps")
                    if self._promote(pointer.version, first=True):
                        return True
                decision = last_record(decisions)
                if decision is not None and decision.get("kind") == "publication" and \
                        decision.get("version") is None and \
                        decision.get("iteration") not in shown:
                    shown.add(int(decision["iteration"]))
                    self.display.warn(f"nothing qualifies for paper yet: training did not "
                                      f"publish at iteration {decision['iteration']}: "
                                      f"{decision['reason']}; training goes on")
                record = last_record(metrics)
                if record is None:
                    bar.update(0.0, "starting the learner and env runners")
                else:
                    t = float(record["time_s"])
                    bar.update(t if t < budget else t % budget, f"iter {record['iteration']}"
                               f" | sampled {fmt_or_dash(record['env_steps_sampled'], ',.0f')}"
                               f" | return {fmt_or_dash(record['episode_return_mean'], '.3f')}"
                               f" | loss {fmt_or_dash(record['qf_loss'], '.3g')}")
                self.stop.wait(0.5)
        return False

    def _promote(self, version: int, *, first: bool = False) -> bool:
        """Move ``version`` to ``paper`` if the paper gate passes; True if it moved. With
        ``first`` and ``paper_override``, a candidate refused only for not beating flat
        (it verifies and has a finite validation result) is forced there instead."""
        self.judged.add(version)
        verdict, pointer = promote(self.store, "paper", version=version,
                                   reason=f"demo: candidate v{version:06d}")
        override = False
        if pointer is None and first and self.o.paper_override and \
                paper_gate(self.store, version, PaperLimits(require_beat_flat=False)).passed:
            override = True
            verdict, pointer = promote(self.store, "paper", version=version, force=True,
                                       reason=f"demo override (--paper-override): "
                                       f"candidate v{version:06d}")
        sharpe = ", ".join(f"{name} {fmt_or_dash(v.get('greedy_sharpe'), '+.2f')}"
                           for name, v in verdict.actors.items())
        self.promotions.append({"version": version, "passed": verdict.passed,
                                "reasons": verdict.reasons, "validation_sharpe": sharpe,
                                "override": override})
        if override:
            self.display.warn(f"demo override: v{version:06d} does not qualify for paper "
                              f"({verdict.summary()}); paper-trading it anyway to show the "
                              "loop (--paper-override; logged as a forced move)")
        elif pointer is not None:
            self.display.stage("promote", f"v{version:06d} -> paper (paper gate passed; "
                               f"validation Sharpe {sharpe})")
        elif first:
            self.display.warn(f"nothing qualifies for paper yet: v{version:06d} stays on "
                              f"candidate: {verdict.summary()}; training goes on and each "
                              "new candidate is judged (--paper-override paper-trades one "
                              "anyway)")
        else:
            self.display.warn(f"v{version:06d} stays on candidate: {verdict.summary()}")
        return pointer is not None

    def _go_on_with_paper(self) -> bool:
        if self.store.channel("paper") is None:
            self.request_stop("error: nothing on the paper channel")
            return False
        return self._should_go_on()

    def _start_feed_and_paper(self, data: DemoData) -> None:
        replay_args = [*data.files, "--speed", str(self.o.speed), "--start",
                       str(data.replay_start), "--start-on-connect"]
        if self.o.live_stage:  # the exchange starts the replay it fills on
            key, secret = secrets.token_hex(16), secrets.token_hex(24)
            accounts = self.run_dir / "exchange-accounts.json"
            _owner_only(accounts, json.dumps([{"key": key, "secret": secret,
                                               "spot": {"USDT": "100000"},
                                               "futures_wallet": "100000"}]))
            _owner_only(self.run_dir / "exchange-keys.json",
                        json.dumps({"api_key": key, "api_secret": secret}))
            replay = ChildProcess("replay feed", [
                sys.executable, "-m", "raytrade.scripts.cli", "exchange", "sim",
                "--accounts", str(accounts), "--port", "0",
                # the replay compresses time by ``speed``: so are the per-minute limits
                "--weight-limit", str(int(6000 * max(1.0, self.o.speed))),
                "--futures-weight-limit", str(int(2400 * max(1.0, self.o.speed))),
                "--replay", *replay_args],
                self.logs / "exchange.log", banner=True)
        else:
            replay = ChildProcess("replay feed", [
                sys.executable, "-m", "raytrade.scripts.cli", "feed", "replay", "--data",
                *replay_args, "--port", "0"], self.logs / "replay.log", banner=True)
        self.children["replay feed"] = replay
        banner = replay.read_banner()
        exchange = None
        if self.o.live_stage:
            exchange, banner = banner, {**banner["replay"], "symbols": banner["symbols"]}
        seconds_per_bar = interval_to_ms(data.interval) / 1000 / self.o.speed
        self.summary["replay"] = {**banner, "speed": self.o.speed,
                                  "start": data.replay_start}
        self.display.stage("feed", f"replaying {data.bars:,} test-split bars of "
                           f"{', '.join(banner.get('symbols', []))} at {banner['ws_url']} "
                           f"(a {data.interval} bar every {seconds_per_bar:.2g} s)")
        journals = self.run_dir / "journals"
        self.configs = [PaperConfig(
            actor=f"demo-{s.lower()}", symbol=s, venue="replay", interval=data.interval,
            feed_url=str(banner["ws_url"]), rest_url=str(banner["rest_url"]),
            journal_dir=str(journals), channel="paper",
            initial_equity=self.o.initial_equity, speed=self.o.speed,
            online_learning=self.o.online_learning) for s in data.symbols]

        self.paper_thread = self._in_thread(
            "paper", lambda: run_paper(self.configs, self.store.uri, stop_event=self.stop))
        self.display.stage("paper", f"{len(self.configs)} paper traders on the paper "
                           f"channel ({', '.join(c.actor for c in self.configs)}), "
                           f"journals in {journals}; warming up over REST")
        if exchange is not None:
            self._start_live(data, exchange, journals)

    def _in_thread(self, stage: str, run: Callable[[], list[dict[str, Any]]]
                   ) -> threading.Thread:
        """Run the ``paper`` or ``live`` traders in a daemon thread: their final statuses
        go to ``<stage>_finals``, an error to ``<stage>_error`` (and the log)."""
        def target() -> None:
            try:
                setattr(self, f"{stage}_finals", run())
            except BaseException as exc:
                setattr(self, f"{stage}_error", f"{exc.__class__.__name__}: {exc}")
                log.exception("%s trading failed", stage)

        thread = threading.Thread(target=target, name=stage, daemon=True)
        thread.start()
        return thread

    def _start_live(self, data: DemoData, exchange: dict[str, Any], journals: Path) -> None:
        """One live trader per symbol on the loopback exchange (``live_stage``)."""
        interval_s = interval_to_ms(data.interval) / 1000
        # a policy that can go short trades USD-M futures; a long/flat one spot
        venue = "binance-futures" if min(data.exp.env.positions) < 0 else "binance-spot"
        self.live_configs = [LiveTraderConfig(
            paper=dataclasses.replace(c, actor=f"demo-live-{c.symbol.lower()}",
                                      online_learning=False),
            venue=venue, network="loopback", rest_url=str(exchange["rest_url"]),
            ws_url=str(exchange["ws_url"]), symbols=tuple(data.symbols), capital=1000.0,
            key_file=str(self.run_dir / "exchange-keys.json"),
            # a loaded 2-core demo may lag a replayed bar by a second: four bars of
            # market time before a bar counts as stale
            limits=LiveLimits(stale_after_s=4 * interval_s))
            for c in self.configs]

        self.live_thread = self._in_thread(
            "live", lambda: run_live(self.live_configs, self.store.uri, stop_event=self.stop))
        self.display.stage("live", f"{len(self.live_configs)} live traders "
                           f"({', '.join(c.actor for c in self.live_configs)}) sending "
                           f"signed orders to the loopback exchange at "
                           f"{exchange['rest_url']} (following paper; no money)")

    def _watch(self, data: DemoData) -> None:
        import ray

        if self.o.duration_s is None:
            self.display.note("running until Ctrl-C")
        else:
            self.display.note(f"running until {self.o.duration_s:.0f} s after the start "
                              "(or Ctrl-C)")
        with self.display.live() as board:
            while self._should_go_on():
                candidate = self.store.channel("candidate")
                if candidate is not None and candidate.version not in self.judged:
                    self._promote(candidate.version)
                if self.paper_thread is not None and not self.paper_thread.is_alive():
                    self.request_stop(f"error: paper trading stopped: {self.paper_error}")
                    self.display.error(f"paper trading stopped: {self.paper_error}")
                    break
                board.update(self._status(ray, data))
                self.stop.wait(self.o.status_every_s)

    def _status(self, ray: Any, data: DemoData) -> DemoStatus:
        rows = []
        finished = 0
        for config in self.configs:
            try:
                actor = ray.get_actor(actor_name(config))
                status = ray.get(actor.status.remote(), timeout=5)
            except Exception as exc:  # starting or restarting: show it, keep watching
                log.info("status of %s unavailable: %s", config.actor, exc)
                rows.append(TraderRow(config.actor, "starting", 0, None, None, None))
                continue
            trader = status.get("trader") or {}
            last = trader.get("last_ts")
            if isinstance(last, int) and last >= data.last_ts - interval_to_ms(data.interval):
                finished += 1
            state = str(status.get("state") or "starting")
            if status.get("error") and not status.get("running"):
                state = f"error: {status['error']}"
            rows.append(TraderRow(
                config.actor, state, int(trader.get("decisions") or 0),
                trader.get("position"), trader.get("equity"),
                (status.get("executor") or {}).get("version"),
                datetime.fromtimestamp(last / 1000, UTC).strftime("%Y-%m-%d %H:%M")
                if isinstance(last, int | float) else "", status.get("pushed_transitions")))
        if finished == len(self.configs):
            self.request_stop("replay finished")
        record = last_record(self.store_dir / TRAIN_METRICS) or {}
        candidate, paper = self.store.channel("candidate"), self.store.channel("paper")
        return DemoStatus(rows, record.get("iteration"),
                          record.get("live_transitions_ingested"),
                          candidate.version if candidate else None,
                          paper.version if paper else None, self._time_left())

    # -- shutdown ----------------------------------------------------------------------

    def _join(self, thread: threading.Thread | None, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while thread is not None and thread.is_alive():
            if self.force.is_set() or time.monotonic() > deadline:
                return False
            thread.join(0.5)
        return True

    def _shutdown(self) -> None:
        self.display.note("shutting down: paper traders, feed, learner, dashboard")
        if self.paper_thread is not None:
            if not self._join(self.paper_thread, 180):
                self.display.warn("paper traders did not stop in time")
            self.summary["paper"] = self._paper_summary()
            verdict = live_gate(self.store, GateLimits())
            self.summary["live_gate"] = {"passed": verdict.passed, "version": verdict.version,
                                         "reasons": verdict.reasons,
                                         "actors": verdict.actors}
        if self.live_thread is not None:
            if not self._join(self.live_thread, 180):
                self.display.warn("live traders did not stop in time")
            finals = {f.get("actor"): f.get("live") or {} for f in self.live_finals}
            self.summary["live"] = [{
                "actor": c.actor, "symbol": c.symbol, "error": self.live_error,
                **{k: finals.get(c.actor, {}).get(k) for k in (
                    "position_qty", "equity", "halted", "last_reconcile",
                    "order_latency_ms", "bar_to_ack_ms", "unresolved_faults")}}
                for c in self.live_configs]
        replay = self.children.pop("replay feed", None)
        if replay is not None:
            replay.stop()
        if self.train_thread is not None:
            if not self._join(self.train_thread, 300):
                self.display.warn("the learner did not stop in time; its last checkpoint "
                                  "may be missing")
            r = self.train_result
            record = last_record(self.store_dir / TRAIN_METRICS) or {}
            self.summary["training"] = {
                "iterations": r.iterations if r else record.get("iteration"),
                "env_steps_sampled": r.env_steps_sampled if r else
                record.get("env_steps_sampled"),
                "live_transitions_ingested": record.get("live_transitions_ingested"),
                "published": [v for v in self.store.versions()],
                "checkpoint": str(r.checkpoint) if r and r.checkpoint else None,
                "error": self.train_error}
        self.summary["promotions"] = self.promotions
        for child in self.children.values():
            child.stop()
        self.children.clear()

    def _paper_summary(self) -> list[dict[str, Any]]:
        from raytrade.actors.journal import Journal, JournalError

        out = []
        finals = {f.get("actor"): f for f in self.paper_finals}
        for config in self.configs:
            final = finals.get(config.actor, {})
            trader = final.get("trader") or {}
            row: dict[str, Any] = {
                "actor": config.actor, "symbol": config.symbol,
                "processed_bars": final.get("processed_bars"),
                "equity": trader.get("equity"), "position": trader.get("position"),
                "policy_version": (final.get("executor") or {}).get("version"),
                "pushed_transitions": final.get("pushed_transitions"),
                "error": final.get("error") or self.paper_error,
                "journal": str(config.journal_path)}
            try:
                journal = Journal(config.journal_path)
            except JournalError as exc:
                row["journal_error"] = str(exc)
            else:
                try:
                    row.update({f"journaled_{t}": journal.count(t)
                                for t in ("bars", "decisions", "fills")})
                    row["buy_and_hold_return"] = _hold_return(journal, config.symbol)
                    row.update(_paper_costs(journal, config.symbol))
                finally:
                    journal.close()
            out.append(row)
        return out

    def _print_summary(self) -> None:
        for row in self.summary.get("paper", []):
            equity = row.get("equity")
            ret = "" if equity is None else \
                f", return {equity / self.o.initial_equity - 1:+.2%}"
            hold = row.get("buy_and_hold_return")
            if hold is not None:
                ret += f" (buy-and-hold on the same bars, no fees: {hold:+.2%})"
            costs = "" if row.get("cost_drag") is None else (
                f"; gross {row['gross_return']:+.2%}, cost drag {row['cost_drag']:.2%}, "
                f"{fmt_or_dash(row.get('trades_per_day'), '.1f')} trades/day"
                + (", halted by the drawdown rule" if row.get("halted") else ""))
            self.display.stage("paper", f"{row['actor']}: {row.get('journaled_decisions')} "
                               f"decisions, {row.get('journaled_fills')} fills journaled, "
                               f"equity {fmt_or_dash(equity, ',.2f')}{ret}{costs}")
        for row in self.summary.get("live", []):
            latency = row.get("bar_to_ack_ms") or {}
            self.display.stage("live", f"{row['actor']}: position "
                               f"{fmt_or_dash(row.get('position_qty'), '.6g')}, allocation "
                               f"equity {fmt_or_dash(row.get('equity'), ',.2f')}, bar close to "
                               f"order acknowledged p50 {fmt_or_dash(latency.get('p50'), '.1f')}"
                               f" ms, last reconciliation "
                               f"{'ok' if (row.get('last_reconcile') or {}).get('ok') else '-'}"
                               + (f", ERROR {row['error']}" if row.get("error") else ""))
        training = self.summary.get("training")
        if training:
            self.display.stage("learner", f"{training['iterations']} iterations, "
                               f"{fmt_or_dash(training['live_transitions_ingested'], ',.0f')} live "
                               f"transitions ingested, policies published: "
                               f"{', '.join(f'v{v}' for v in training['published']) or 'none'}")
        if "paper" not in self.summary:
            self.display.stage("paper", "no paper trader ran: no candidate qualified for "
                               "paper (the gate needs a policy that beats flat after costs "
                               "on validation; --paper-override paper-trades one anyway)")
        gate = self.summary.get("live_gate")
        if gate:
            self.display.stage("live gate", ("passed" if gate["passed"] else "refused") +
                               (": " + "; ".join(gate["reasons"]) if gate["reasons"] else ""))
        self.display.stage("done", f"stopped by {self.stopped_by}; everything is in "
                           f"{self.run_dir} (summary.json, logs/)")


def _paper_costs(journal: Any, symbol: str) -> dict[str, Any]:
    """The cost metrics of the trader's record (as its export computes them: net and gross
    return, cost drag, fees, slippage, borrow, turnover, trades per day, holding, halted)."""
    from raytrade.actors.paper_export import equity_records
    from raytrade.algos.run_metrics import COST_COLUMNS, record_performance

    perf = record_performance(equity_records(journal, symbol))
    return {k: perf.get(k) for k in COST_COLUMNS}


def _hold_return(journal: Any, symbol: str) -> float | None:
    """Close-to-close return of holding ``symbol`` over the bars a policy traded (from the
    first policy-served bar to the last one); None before two such bars."""
    served = [ts for ts, _, _, version in journal.equity_rows(symbol) if version is not None]
    closes = journal.closes(symbol)
    if len(served) < 2 or served[0] not in closes or served[-1] not in closes:
        return None
    return float(closes[served[-1]] / closes[served[0]] - 1.0)


def default_run_dir() -> Path:
    """``runs/demo/<UTC time>``: every demo gets a fresh folder."""
    return Path("runs") / "demo" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def check_run_dir(run_dir: Path) -> None:
    """Refuse a non-empty folder: journals or a store left there would mix two runs."""
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir} is not empty; the demo needs a new folder (a journal "
                          "left there would resume an older paper session)")



def _owner_only(path: Path, text: str) -> None:
    """Write a secrets file readable by its owner only (created so, never widened)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
