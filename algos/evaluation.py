"""Greedy evaluation of a Q-function on a held-out split, with baselines, in shared metrics.

The policy plays one episode over the whole split (no random start, no step limit) in the
same TradingEnv the learner trained in, so costs and risk rules are identical. Baselines
on the same bars and costs: flat (never trades), buy-and-hold (long from the first bar)
and random (seeded uniform actions). On planted-signal markets (``synthetic:`` sources)
also the oracle, which knows the hidden signal, and the Bayes filter, the best a policy
that sees only past prices can do (``SyntheticMarket.causal_position``);
``oracle_fraction`` and ``filter_fraction`` are the greedy policy's log growth as a share
of theirs (1 = all of it, 0 = none, < 0 = lost).

Every policy's record carries the cost metrics of ``run_metrics.run_performance`` (net and
gross return, cost drag, fees, slippage and borrow, turnover, trades per day, holding time,
``halted`` with ``halted_bar`` when the drawdown halt or ruin ended its episode early); the
greedy policy's also ``q_gap``, the distribution of its Q gaps against the cost of
switching (``run_metrics.QGapRecorder``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.run_metrics import QGapRecorder, run_performance
from raytrade.envs.decision import choose as rule_choice
from raytrade.envs.decision import held_actions, switch_thresholds
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.env_spec import EnvSpec
from raytrade.envs.episodes import bar_interval_ms
from raytrade.envs.market import MarketData, synthetic_source
from raytrade.envs.multi_dataset_env import MultiDatasetTradingEnv

QFunction = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.floating[Any]]]


Policy = Callable[[npt.NDArray[np.float32], int, float], int]
"""Action index from the observation, the decision bar's index in the series and the
position held (target fraction of equity) before the decision."""


def play(markets: list[MarketData], config: EnvConfig, dataset: int,
         choose: Policy) -> dict[str, Any]:
    """Play one full-split episode on ``markets[dataset]``: equity, position and the bar
    index (into the market's series) after the reset and after every step (one step per
    decision: with ``config.decision.every_bars > 1`` the env holds between decision
    bars); the account's cumulative ``trades``, ``fees``, ``slippage``, ``borrow`` and
    ``traded_notional`` at the end; ``halted_bar``: the bar whose close ended the episode
    when the drawdown halt or ruin terminated it (None when it played to the end of the
    split)."""
    env = MultiDatasetTradingEnv(markets, config=config)
    obs, info = env.reset(seed=0, options={"dataset": dataset,
                                           "start": markets[dataset].first})
    equity, position = [info["equity"]], [info["position"]]
    bars = [int(info["bar"])]
    done = terminated = False
    while not done:
        obs, _, terminated, truncated, info = env.step(
            choose(obs, int(info["bar"]), float(info["position"])))
        equity.append(info["equity"])
        position.append(info["position"])
        bars.append(int(info["bar"]))
        done = terminated or truncated
    return {"equity": np.asarray(equity), "position": np.asarray(position),
            "bar": np.asarray(bars, dtype=np.int64), "trades": info["trades"],
            "fees": info["fees"], "traded_notional": info["traded_notional"],
            "slippage": info["slippage"], "borrow": info["borrow"],
            "halted_bar": int(info["bar"]) if terminated else None}


def evaluate(q_values: QFunction, exp: ExperimentConfig, split: str = "validation",
             seed: int = 0, curves: dict[str, Any] | None = None,
             curve_points: int = 2000, *, spec: EnvSpec | None = None) -> dict[str, Any]:
    """Greedy policy and baselines on every dataset of ``split``: shared metrics each.

    ``spec`` is the env spec the policy trained in (its split fractions and normalizer;
    default ``exp.fit_env_spec()``); the training driver passes the one its runners use.

    With ``curves`` (a dict to fill), also the equity curve of every policy on every
    dataset, subsampled to at most ``curve_points`` points (first and last kept), as
    ``curves["datasets"][dataset][policy] = [equity, ...]`` for the dashboard, and each
    point's bar open time (ms UTC) in ``curves["ts"][dataset][policy]``: a curve that ends
    before the others stopped early (the drawdown halt or ruin terminated the episode).
    """
    spec = spec or exp.fit_env_spec()
    markets = spec.markets(split)
    config = full_split_config(spec.env)
    positions = np.asarray(exp.env.positions)
    flat = flat_action(exp.env)
    longest = int(np.argmax(positions))
    rng = np.random.default_rng(seed)
    gaps = QGapRecorder(q_values, config)  # the greedy policy's Q gap at each decision
    q_values = gaps
    policies: dict[str, Policy] = {
        "greedy": rule_policy(q_values, spec.env),
        "flat": lambda obs, bar, pos: flat,
        "buy_and_hold": lambda obs, bar, pos: longest,
        "random": lambda obs, bar, pos: int(rng.integers(len(positions))),
    }
    planted = planted_actions(exp)
    step_ms = decision_step_ms(markets, config)
    out: dict[str, Any] = {"split": split, "datasets": {}}
    for d, market in enumerate(markets):
        per: dict[str, Any] = {}
        chosen = dict(policies)
        for name, actions in (planted or {}).items():
            chosen[name] = _follow(actions[d])
        for name, choose in chosen.items():
            gaps.reset()
            run = play(markets, config, d, choose)
            per[name] = run_performance(run, step_ms, config.calendar)
            per[name]["bars"] = int(run["bar"][-1] - run["bar"][0])  # fewer if halted
            if name == "greedy":
                per[name]["q_gap"] = gaps.summary()
            if curves is not None:
                eq = np.asarray(run["equity"], dtype=np.float64)
                idx = np.unique(np.linspace(0, len(eq) - 1, min(len(eq), curve_points))
                                .round().astype(np.int64))
                curves.setdefault("split", split)
                curves.setdefault("datasets", {}).setdefault(market.name, {})[name] = \
                    [round(float(x), 4) for x in eq[idx]]
                curves.setdefault("ts", {}).setdefault(market.name, {})[name] = \
                    market.ts[run["bar"][idx]].tolist()  # each point's bar open time, ms
        for name, key in (("oracle", "oracle_fraction"), ("bayes_filter", "filter_fraction")):
            if name in per:
                per[key] = oracle_fraction(per["greedy"]["final_equity"],
                                           per[name]["final_equity"], exp.env.initial_equity)
        out["datasets"][market.name] = per
    return out


def full_split_config(env: EnvConfig) -> EnvConfig:
    """``env`` for an evaluation episode: the whole split, from its first bar, no step
    limit."""
    return dataclasses.replace(env, random_start=False, max_episode_steps=None)


def flat_action(env: EnvConfig) -> int:
    """The action whose target position is nearest zero (the flat baseline)."""
    return int(np.argmin(np.abs(np.asarray(env.positions))))


def decision_step_ms(markets: list[MarketData], config: EnvConfig) -> int:
    """The metrics' period: one equity point per decision, so ``every_bars`` bars (the
    episode's last step may be shorter)."""
    return bar_interval_ms(markets[0]) * config.decision.every_bars  # median: weekends too


def rule_policy(q_values: QFunction, config: EnvConfig) -> Policy:
    """The Q-function's actions under ``config``'s decision rule (``decision.choose``, the
    function ``Policy.decide`` applies in the backtest, paper trading and the executor)."""
    thresholds = switch_thresholds(config)

    def choose_action(obs: npt.NDArray[np.float32], bar: int, position: float) -> int:
        q = q_values(obs[None])
        return int(rule_choice(q, held_actions(config, position), thresholds)[0])

    return choose_action


def _follow(actions: npt.NDArray[np.int64]) -> Policy:
    """The policy that plays ``actions[bar]`` at every decision bar."""
    return lambda obs, bar, pos: int(actions[bar])


def planted_actions(exp: ExperimentConfig) -> dict[str, list[npt.NDArray[np.int64]]] | None:
    """``{"oracle": ..., "bayes_filter": ...}``: per dataset, the action index nearest each
    planted policy's target at every bar; None unless every source is a planted market."""
    if not all(src.startswith("synthetic:") for src in exp.data.sources):
        return None
    positions = np.asarray(exp.env.positions, dtype=np.float64)
    out: dict[str, list[npt.NDArray[np.int64]]] = {"oracle": [], "bayes_filter": []}
    for src in exp.data.sources:
        market = synthetic_source(src)
        for name, target in (("oracle", market.oracle_position),
                             ("bayes_filter", market.causal_position())):
            out[name].append(np.abs(target[:, None] - positions[None, :]).argmin(axis=1))
    return out


def oracle_fraction(final: float, oracle_final: float, initial: float) -> float | None:
    """Log growth of ``final`` as a share of ``oracle_final``'s (a planted policy's); None
    if that did not grow."""
    if oracle_final <= initial or final <= 0:
        return None
    return float(np.log(final / initial) / np.log(oracle_final / initial))
