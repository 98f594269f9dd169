"""Shared set-up for the DWX tests: a EURUSD hourly experiment on the real bars shipped
inside the ``backtesting`` package (forex calendar, no reference asset, a light
FeatureSpec), a store serving a random policy of it, and the backtest reference the paper
actor on the EA simulator must agree with."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import backtesting
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.export import random_bundle
from raytrade.algos.policy import Policy
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.envs.decision import DecisionRule
from raytrade.envs.market import load_markets

from tests.live_setup import BacktestPath, run_backtest

EURUSD = Path(backtesting.__file__).parent / "test" / "EURUSD.csv"
"""5000 real EURUSD hourly bars (2017-04-19 .. 2018-02-07, UTC), weekends and the
Christmas and New Year holidays missing, as a broker's history has them."""


@functools.lru_cache(maxsize=4)
def eurusd_experiment(positions: tuple[float, ...] = (-1.0, 0.0, 1.0)) -> ExperimentConfig:
    """EURUSD 1h, long/flat/short by default, 1 bp fee, the forex calendar with Christmas
    and New Year closed; features complete after about 140 bars."""
    return ExperimentConfig.from_dict({
        "name": "eurusd_1h_dwx_test", "seed": 0,
        "data": {"sources": [str(EURUSD)], "train": 0.7, "validation": 0.15},
        "features": {"base_interval": "1h", "higher_timeframes": [], "reference_symbol": "",
                     "pivot_levels": 2, "smc_level": 1, "regime_vol_long": 96},
        "env": {"positions": list(positions), "window": 16, "costs": {"fee_bps": 1.0},
                "calendar": {"kind": "forex", "holidays": ["12-25", "01-01"]}},
    }, "tests/dwx_setup.py")


def eurusd_store(root: Path, *, channel: str, seed: int = 3,
                 positions: tuple[float, ...] = (-1.0, 0.0, 1.0),
                 rule: DecisionRule | None = None) -> tuple[PolicyStore, Policy]:
    """A local store whose ``channel`` serves a random policy of ``eurusd_experiment``."""
    exp = eurusd_experiment(positions)
    if rule is not None:
        exp = dataclasses.replace(exp, env=dataclasses.replace(exp.env, decision=rule))
    spec = exp.fit_env_spec()
    files = random_bundle(exp, seed=seed, spec=spec)
    store = PolicyStore(root.as_uri())
    version = store.publish(files, channel=channel, reason="test policy")
    return store, Policy(files, version)


def bundled_eurusd_store(root: Path, *, channel: str, seed: int = 3,
                         rule: DecisionRule | None = None) -> tuple[PolicyStore, Policy]:
    """A local store whose ``channel`` serves a policy of the shipped forex experiment
    ``algos/experiments/eurusd_1h.toml`` (its features with 4h bars, costs, calendar and
    decision rule, or ``rule``; weights initialized with ``seed``)."""
    exp = ExperimentConfig.load(experiment_path("eurusd_1h"))
    if rule is not None:
        exp = dataclasses.replace(exp, env=dataclasses.replace(exp.env, decision=rule))
    files = random_bundle(exp, seed=seed, spec=exp.fit_env_spec())
    store = PolicyStore(root.as_uri())
    version = store.publish(files, channel=channel, reason="test policy")
    return store, Policy(files, version)


def eurusd_csv(folder: Path, n: int) -> Path:
    """The first ``n`` EURUSD bars as a CSV in the ``backtesting`` layout (the pandas
    index column holds the times), for the simulator and the backtest alike."""
    path = folder / "EURUSD_1h.csv"
    with EURUSD.open() as src:
        path.write_text("".join(line for _, line in zip(range(n + 1), src, strict=False)))
    return path


def eurusd_backtest(policy: Policy, csv: Path, start: int) -> BacktestPath:
    """The policy through the backtest env on ``csv`` from bar ``start`` (moved to its
    first decision bar), deciding as ``Policy.decide`` does with the held position."""
    cfg = dataclasses.replace(policy.manifest.env, random_start=False, max_episode_steps=None)
    markets, _ = load_markets([str(csv)], spec=policy.feature_spec, split="all",
                              window=cfg.window, costs=cfg.costs,
                              normalizer=policy.normalizer, calendar=cfg.calendar)
    return run_backtest(policy, markets, cfg, start)
