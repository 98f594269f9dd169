"""Greedy evaluation of a Q-function on a held-out split, with baselines, in shared metrics.

The policy plays one episode over the whole split (no random start, no step limit) in the
same TradingEnv the learner trained in, so costs and risk rules are identical. Baselines
on the same bars and costs: flat (never trades), buy-and-hold (long from the first bar)
and random (seeded uniform actions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from raytrade.algos.experiment import ExperimentConfig
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.market import MarketData, load_markets
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


def play(markets: list[MarketData], config: EnvConfig, dataset: int,
         choose: Callable[[npt.NDArray[np.float32]], int]) -> dict[str, Any]:
    """Play one full-split episode on ``markets[dataset]``; equity and positions per bar."""
    env = MultiDatasetTradingEnv(markets, config=config)
    obs, info = env.reset(seed=0, options={"dataset": dataset,
                                           "start": markets[dataset].first})
    equity, position = [info["equity"]], [info["position"]]
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(choose(obs))
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
    policies: dict[str, Callable[[npt.NDArray[np.float32]], int]] = {
        "greedy": lambda obs: int(np.argmax(q_values(obs[None])[0])),
        "flat": lambda obs: flat,
        "buy_and_hold": lambda obs: longest,
        "random": lambda obs: int(rng.integers(len(positions))),
    }
    interval = int(markets[0].ts[1] - markets[0].ts[0])
    out: dict[str, Any] = {"split": split, "datasets": {}}
    for d, market in enumerate(markets):
        per: dict[str, Any] = {}
        for name, choose in policies.items():
            run = play(markets, config, d, choose)
            perf = performance(run["equity"], run["position"], interval,
                               fills=int(run["trades"])).to_dict()
            perf["final_equity"] = float(run["equity"][-1])
            perf["fees"] = float(run["fees"])
            per[name] = perf
        out["datasets"][market.name] = per
    return out
