"""Shared set-up for the live-side tests: a policy trained-shape bundle on the bundled
ETH/BTC experiment, the real bars, a store serving it on ``paper``, and the backtest
reference the live actor must agree with."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from raytrade.actors.paper_config import PaperConfig
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.export import random_bundle
from raytrade.algos.policy import Policy
from raytrade.algos.storage import keys
from raytrade.algos.storage.blobstore import NotFoundError
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.envs.bars import BarTable
from raytrade.envs.decision import DecisionRule
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.env_spec import EnvSpec
from raytrade.envs.io import load_bars
from raytrade.envs.market import MarketData, load_markets
from raytrade.envs.sample import sample_path
from raytrade.envs.trading_env import TradingEnv


@functools.lru_cache(maxsize=1)
def experiment() -> ExperimentConfig:
    """The bundled ETH/BTC 5m experiment, deciding plain greedy on every bar (and no
    calibration of the rule on validation): the live-side tests check the plumbing bar by
    bar whatever rule the shipped file tunes, and the parity test adds its own rule case
    (``bundle(rule=...)``)."""
    exp = ExperimentConfig.load(files("raytrade.algos.experiments") / "eth_btc_5m.toml")
    return dataclasses.replace(exp, env=dataclasses.replace(exp.env, decision=DecisionRule()),
                               selection=dataclasses.replace(exp.selection,
                                                             calibrate_cost_multiples=()))


@functools.lru_cache(maxsize=1)
def fitted_spec() -> EnvSpec:
    """The env spec training would use on the bundled data (its normalizer fitted)."""
    return experiment().fit_env_spec()


@functools.lru_cache(maxsize=1)
def quick_experiment() -> ExperimentConfig:
    """The bundled experiment with a light FeatureSpec (no higher timeframes, two pivot
    levels): its features are complete after about 140 bars instead of about 9,400, for
    the session tests that do not compare with training."""
    exp = experiment()
    spec = dataclasses.replace(exp.features, higher_timeframes=(), pivot_levels=2,
                               smc_level=1, regime_vol_long=96)
    return dataclasses.replace(exp, features=spec)


BAR_MS = 300_000


def speed_for(bar_s: float) -> float:
    """Replay speed with one 5m bar every ``bar_s`` seconds."""
    return BAR_MS / (bar_s * 1000)


def wait_for(check: Callable[[], Any], timeout_s: float, what: str,
             poll_s: float = 0.05) -> Any:
    """Poll ``check()`` every ``poll_s`` seconds until it is truthy; its value.

    Raises:
        AssertionError: still falsy after ``timeout_s`` seconds (names ``what``).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}")


def bundle(seed: int = 3, rule: DecisionRule | None = None) -> dict[str, bytes]:
    """A randomly initialized policy (it trades often: good for exercising the path),
    deciding by ``rule`` (default: the experiment's)."""
    exp, spec = experiment(), fitted_spec()
    if rule is not None:
        env = dataclasses.replace(exp.env, decision=rule)
        exp, spec = dataclasses.replace(exp, env=env), dataclasses.replace(spec, env=env)
    return random_bundle(exp, seed=seed, spec=spec)


def bars(n: int) -> tuple[BarTable, BarTable]:
    """The first ``n`` bundled ETH and BTC bars."""
    return (load_bars(sample_path("ETHUSDT")).slice(0, n),
            load_bars(sample_path("BTCUSDT")).slice(0, n))


def write_csv(table: BarTable, folder: Path) -> Path:
    """``table`` as ``<symbol>_5m.csv`` in ``folder`` (the name carries the symbol)."""
    path = folder / f"{table.symbol}_5m.csv"
    table.to_frame().to_csv(path, index=False)
    return path


def paper_store(root: Path, seed: int = 3, *, quick: bool = False,
                rule: DecisionRule | None = None) -> tuple[PolicyStore, Policy]:
    """A local store whose ``paper`` channel serves ``bundle(seed, rule)`` (``quick``: a
    random policy of ``quick_experiment`` with an identity normalizer)."""
    store = PolicyStore(root.as_uri())
    files_ = random_bundle(quick_experiment(), seed=seed) if quick else bundle(seed, rule)
    version = store.publish(files_, channel="paper", reason="test policy")
    return store, Policy(files_, version)


@contextlib.contextmanager
def replay_process(data: list[Path], *, speed: float, start: int,
                   faults: dict[str, object] | None = None) -> Iterator[dict[str, object]]:
    """``raytrade feed replay`` in its own process (a busy client in the same process
    would slow its clock), clock started by the first subscription; yields its JSON
    banner (``ws_url``, ``rest_url``, ...)."""
    cmd = [sys.executable, "-m", "raytrade.scripts.cli", "feed", "replay", "--data",
           *map(str, data), "--speed", str(speed), "--start", str(start),
           "--port", "0", "--start-on-connect"]
    if faults:
        cmd += ["--faults", json.dumps(faults)]
    with banner_process(cmd) as banner:
        yield banner


@contextlib.contextmanager
def banner_process(cmd: list[str], stop_timeout_s: float = 15.0
                   ) -> Iterator[dict[str, object]]:
    """A server command that prints one JSON line once it listens: yields that line,
    then stops the server (SIGTERM)."""
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        yield json.loads(server.stdout.readline())
    finally:
        server.terminate()
        server.wait(stop_timeout_s)


@dataclasses.dataclass
class BacktestPath:
    """Per decision of the backtest env: the decision bar's index, the action, the decided
    target, and the equity marked at the close before the next decision (``marked_at``:
    that bar's index)."""

    bars: list[int]
    actions: list[int]
    targets: list[float]
    equity: list[float]
    marked_at: list[int]


def backtest(policy: Policy, eth_csv: Path, btc_csv: Path, start: int, *,
             quick: bool = False) -> BacktestPath:
    """The policy through the backtest env from bar ``start`` (moved to its first decision
    bar), deciding as ``Policy.decide`` does with the held position: its rule applies
    (``quick``: features of ``quick_experiment``, as ``paper_store(quick=True)`` serves)."""
    exp = quick_experiment() if quick else experiment()
    cfg = dataclasses.replace(policy.manifest.env, random_start=False, max_episode_steps=None)
    markets, _ = load_markets([str(eth_csv)], spec=exp.features, split="all",
                              reference=str(btc_csv), window=cfg.window, costs=cfg.costs,
                              normalizer=policy.normalizer)
    return run_backtest(policy, markets, cfg, start)


def run_backtest(policy: Policy, markets: Sequence[MarketData], cfg: EnvConfig,
                 start: int) -> BacktestPath:
    """``policy`` through a ``TradingEnv`` on ``markets`` with ``cfg`` from bar ``start``
    (moved to its first decision bar), deciding as ``Policy.decide`` does with the held
    position; the path it took (``BacktestPath``)."""
    env = TradingEnv(markets, config=cfg)
    obs, info = env.reset(options={"start": start})
    path = BacktestPath([], [], [], [], [])
    while True:
        a = policy.decide(obs, float(info["position"])).action
        path.bars.append(int(info["bar"]))
        obs, _, term, trunc, info = env.step(a)
        path.actions.append(a)
        path.targets.append(float(info["position"]))
        path.equity.append(float(info["equity"]))
        path.marked_at.append(int(info["bar"]))
        if term or trunc:
            return path


def paper_until_exported(configs: Sequence[PaperConfig], store: PolicyStore, actor: str,
                         reached: Callable[[list[bytes]], bool],
                         duration_s: float) -> list[dict[str, Any]]:
    """``run_paper(configs)`` on ``store`` until ``reached`` holds for the lines of
    ``paper/<actor>/equity.jsonl`` (checked every 0.5 s) or ``duration_s`` seconds pass;
    the actors' final states."""
    from raytrade.actors.paper_actor import run_paper  # imports ray: only where it runs

    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            try:
                data = store.blobs.get(keys.paper_key(actor, keys.EQUITY)).data
            except NotFoundError:
                continue
            if reached(data.splitlines()):
                done.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        return run_paper(configs, store.uri, duration_s=duration_s, check_every_s=1,
                         stop_event=done)
    finally:
        done.set()
        watcher.join()


def as_array(x: list[float]) -> np.ndarray:
    """float64 array."""
    return np.asarray(x, dtype=np.float64)


def live_store(root: Path, seed: int = 3, *, positions: tuple[float, ...] = (0.0, 1.0),
               channel: str = "live") -> tuple[PolicyStore, Policy]:
    """A local store whose ``channel`` serves a random policy of ``quick_experiment``
    trading ``positions`` (long/flat by default, for spot) with an identity normalizer,
    deciding on every bar."""
    exp = quick_experiment()
    exp = dataclasses.replace(exp, env=dataclasses.replace(exp.env, positions=positions))
    store = PolicyStore(root.as_uri())
    files_ = random_bundle(exp, seed=seed)
    version = store.publish(files_, channel=channel, reason="test policy")
    return store, Policy(files_, version)
