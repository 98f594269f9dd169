"""Greedy evaluation of a Q-function on a held-out split, with baselines, in shared metrics.

The policy plays one episode over the whole split (no random start, no step limit) in the
same TradingEnv the learner trained in, so costs and risk rules are identical. Baselines
on the same bars and costs: flat (never trades), buy-and-hold (long from the first bar)
and random (seeded uniform actions). On planted-signal markets (``synthetic:`` sources)
also the oracle, which knows the hidden signal, and ``oracle_fraction``: the greedy
policy's log growth as a share of the oracle's (1 = all of it, 0 = none, < 0 = lost).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from raytrade.algos.experiment import ExperimentConfig
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.market import MarketData, load_markets, synthetic_source
from raytrade.envs.metrics import performance
from raytrade.envs.multi_dataset_env import MultiDatasetTradingEnv

QFunction = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.floating[Any]]]


def split_markets(exp: ExperimentConfig, split: str) -> list[MarketData]:
    """The experiment's datasets restricted to ``split`` (normalizer from training rows)."""
    markets, _ = load_markets(list(exp.data.sources), spec=exp.features, split=split,
                              reference=exp.data.reference, train=exp.data.train,
                              validation=exp.data.validation, window=exp.env.window,
                              costs=exp.env.costs)
    return markets


Policy = Callable[[npt.NDArray[np.float32], int], int]
"""Action index from the observation and the decision bar's index in the series."""


def play(markets: list[MarketData], config: EnvConfig, dataset: int,
         choose: Policy) -> dict[str, Any]:
    """Play one full-split episode on ``markets[dataset]``; equity and positions per bar."""
    env = MultiDatasetTradingEnv(markets, config=config)
    obs, info = env.reset(seed=0, options={"dataset": dataset,
                                           "start": markets[dataset].first})
    equity, position = [info["equity"]], [info["position"]]
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(choose(obs, int(info["bar"])))
        equity.append(info["equity"])
        position.append(info["position"])
        done = terminated or truncated
    return {"equity": np.asarray(equity), "position": np.asarray(position),
            "trades": info["trades"], "fees": info["fees"]}


def evaluate(q_values: QFunction, exp: ExperimentConfig, split: str = "validation",
             seed: int = 0) -> dict[str, Any]:
    """Greedy policy and baselines on every dataset of ``split``: shared metrics each."""
    markets = split_markets(exp, split)
    config = EnvConfig(**{**vars(exp.env), "random_start": False, "max_episode_steps": None})
    positions = np.asarray(exp.env.positions)
    flat = int(np.argmin(np.abs(positions)))
    longest = int(np.argmax(positions))
    rng = np.random.default_rng(seed)
    policies: dict[str, Policy] = {
        "greedy": lambda obs, _: int(np.argmax(q_values(obs[None])[0])),
        "flat": lambda obs, _: flat,
        "buy_and_hold": lambda obs, _: longest,
        "random": lambda obs, _: int(rng.integers(len(positions))),
    }
    oracles = oracle_actions(exp)
    interval = int(markets[0].ts[1] - markets[0].ts[0])
    out: dict[str, Any] = {"split": split, "datasets": {}}
    for d, market in enumerate(markets):
        per: dict[str, Any] = {}
        chosen = dict(policies)
        if oracles is not None:
            chosen["oracle"] = _follow(oracles[d])
        for name, choose in chosen.items():
            run = play(markets, config, d, choose)
            perf = performance(run["equity"], run["position"], interval,
                               fills=int(run["trades"])).to_dict()
            perf["final_equity"] = float(run["equity"][-1])
            perf["fees"] = float(run["fees"])
            per[name] = perf
        if "oracle" in per:
            per["oracle_fraction"] = oracle_fraction(per["greedy"]["final_equity"],
                                                     per["oracle"]["final_equity"],
                                                     exp.env.initial_equity)
        out["datasets"][market.name] = per
    return out


def _follow(actions: npt.NDArray[np.int64]) -> Policy:
    """The policy that plays ``actions[bar]`` at every decision bar."""
    return lambda obs, bar: int(actions[bar])


def oracle_actions(exp: ExperimentConfig) -> list[npt.NDArray[np.int64]] | None:
    """Per dataset, the action index nearest the oracle's target at every bar; None
    unless every source is a planted-signal market."""
    if not all(src.startswith("synthetic:") for src in exp.data.sources):
        return None
    positions = np.asarray(exp.env.positions, dtype=np.float64)
    out = []
    for src in exp.data.sources:
        target = synthetic_source(src).oracle_position
        out.append(np.abs(target[:, None] - positions[None, :]).argmin(axis=1))
    return out


def oracle_fraction(final: float, oracle_final: float, initial: float) -> float | None:
    """Log growth of ``final`` as a share of the oracle's; None if the oracle did not grow."""
    if oracle_final <= initial or final <= 0:
        return None
    return float(np.log(final / initial) / np.log(oracle_final / initial))
