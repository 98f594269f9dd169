"""Backtest a published policy bundle on bar files, with baselines, in shared metrics.

The policy plays one episode over each dataset in the same ``TradingEnv`` it trained in
(``evaluation.play``): the bundle's own FeatureSpec, normalizer, positions, window,
costs, risk rules and latency, so the accounting is the env's and the paper broker's.
Which bars it decides on (the whole file, one split, a date range) and where the
reference asset's bars come from is ``backtest_selection.py``; ``BacktestResult.decisions``
says, per dataset, the first decision bar and how much warm-up it took.
Costs are on unless the bundle trained without them. Beside it, on the same bars and
costs: flat, buy-and-hold, random (seeded) and a momentum rule (long while the close is
above the close ``momentum_bars`` earlier, else flat).

The result is plain JSON (``BacktestResult.to_json``): per dataset and policy the
metrics of ``envs.metrics.performance`` with the costs (``run_metrics.run_performance``:
net and gross return, cost drag, fees, slippage and borrow as amounts and fractions,
turnover, trades per day, average holding bars, and ``halted`` / ``halted_bar`` /
``halted_ts`` when the drawdown halt or ruin ended the run early), the trade list, and
curves of equity, drawdown and position for the report. ``SUMMARY_KEYS`` are the metrics
the command line prints per policy.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from raytrade.algos.backtest_selection import Selection, decision_range, resolve_reference, select
from raytrade.algos.evaluation import Policy as Chooser
from raytrade.algos.evaluation import play
from raytrade.algos.policy import Policy
from raytrade.algos.run_metrics import run_performance
from raytrade.algos.storage.policy_store import PolicyStore, version_name
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.episodes import bar_interval_ms
from raytrade.envs.errors import ConfigError
from raytrade.envs.market import M_CLOSE, M_OPEN, MarketData, load_markets
from raytrade.envs.metrics import drawdown_curve

_REF = re.compile(r"^(?P<uri>.+?)(?:@v?(?P<version>\d+))?$")
CURVE_POINTS = 3000
SUMMARY_KEYS = ("total_return", "gross_return", "cost_drag", "fees_fraction",
                "slippage_fraction", "borrow_fraction", "sharpe", "max_drawdown", "trades",
                "trades_per_day", "turnover", "avg_holding_bars", "fees", "slippage", "borrow",
                "halted", "halted_bar")
"""Per policy, what ``raytrade backtest`` prints: net beside gross return and every cost."""


def load_policy(ref: str, *, endpoint_url: str | None = None) -> Policy:
    """``URI[@version]`` -> the verified bundle (default: the newest complete version)."""
    m = _REF.match(ref)
    if m is None:
        raise ConfigError(f"--policy {ref!r}: expected STORE_URI[@VERSION]")
    store = PolicyStore(m["uri"], endpoint_url=endpoint_url)
    version = int(m["version"]) if m["version"] else store.latest()
    if version is None:
        raise ConfigError(f"{store.uri} holds no complete policy version")
    return Policy(store.files(version), version)


def env_config(policy: Policy, initial_equity: float | None = None) -> EnvConfig:
    """The manifest's EnvConfig (every trading rule the bundle was trained under), over
    whole episodes from the first bar, starting with ``initial_equity``."""
    if initial_equity is None:
        initial_equity = policy.manifest.env.initial_equity
    return dataclasses.replace(policy.manifest.env, initial_equity=initial_equity,
                               max_episode_steps=None, random_start=False)


def momentum(market: MarketData, positions: Sequence[float], bars: int) -> Chooser:
    """Long (the largest position) while close > close ``bars`` earlier, else flat."""
    close = market.market[M_CLOSE]
    pos = np.asarray(positions)
    long, flat = int(np.argmax(pos)), int(np.argmin(np.abs(pos)))
    return lambda obs, bar, held: long if bar >= bars and close[bar] > close[bar - bars] \
        else flat


@dataclass
class BacktestResult:
    """Everything a report needs; ``to_json`` is the machine-readable part."""

    policy_version: int
    config: dict[str, Any]
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per dataset, the bars decided on and the warm-up before them (``decision_range``)."""

    def to_json(self) -> dict[str, Any]:
        """Metrics, fees, turnover and trades per dataset and policy (curves left out),
        and the decision range of each dataset."""
        return {"policy_version": self.policy_version, "config": self.config,
                "decisions": self.decisions,
                "datasets": {d: {p: {k: v for k, v in r.items() if k != "curves"}
                                 for p, r in per.items()}
                             for d, per in self.datasets.items()}}


def _trades(run: dict[str, Any], market: MarketData) -> list[dict[str, Any]]:
    pos, bars = run["position"], run["bar"]
    out = []
    for k in np.flatnonzero(np.diff(pos) != 0) + 1:
        bar = int(bars[k])
        out.append({"ts": int(market.ts[bar]), "from": float(pos[k - 1]),
                    "to": float(pos[k]), "open": float(market.market[M_OPEN, bar])})
    return out


def _curves(run: dict[str, Any], market: MarketData, points: int | None
            ) -> dict[str, list[float]]:
    eq = np.asarray(run["equity"], dtype=np.float64)
    idx = np.arange(len(eq)) if points is None else np.unique(
        np.linspace(0, len(eq) - 1, min(len(eq), points)).round().astype(np.int64))
    bars = run["bar"][idx]
    return {"ts": [int(t) for t in market.ts[bars]],
            "equity": [float(x) for x in eq[idx]],
            "drawdown": [float(x) for x in drawdown_curve(eq)[idx]],
            "position": [float(x) for x in np.asarray(run["position"])[idx]],
            "close": [float(x) for x in market.market[M_CLOSE, bars]]}


def play_all(policy: Policy, markets: Sequence[MarketData], config: EnvConfig, *,
             seed: int = 0, momentum_bars: int = 48, curve_points: int | None = CURVE_POINTS
             ) -> dict[str, dict[str, Any]]:
    """``policy`` and the baselines over each market's decision range: per dataset and
    policy the shared metrics, costs, trade list and curves (``curve_points`` points;
    None: every bar)."""
    rng = np.random.default_rng(seed)
    n_actions = len(config.positions)
    pos = np.asarray(config.positions)
    out: dict[str, dict[str, Any]] = {}
    for d, market in enumerate(markets):
        # one equity point per decision (``every_bars`` bars with a decision interval); the
        # median spacing, so a file that starts before a weekend still reads its interval
        step_ms = bar_interval_ms(market) * config.decision.every_bars
        choosers: dict[str, Chooser] = {
            "policy": lambda obs, bar, held: policy.decide(obs, held).action,
            "buy_and_hold": lambda obs, bar, held: int(np.argmax(pos)),
            "flat": lambda obs, bar, held: int(np.argmin(np.abs(pos))),
            "random": lambda obs, bar, held: int(rng.integers(n_actions)),
            "momentum": momentum(market, config.positions, momentum_bars)}
        per: dict[str, Any] = {}
        for name, choose in choosers.items():
            run = play(list(markets), config, d, choose)
            per[name] = {**run_performance(run, step_ms, config.calendar),
                         "bars": int(run["bar"][-1] - run["bar"][0]),
                         "halted_ts": None if run["halted_bar"] is None
                         else int(market.ts[run["halted_bar"]]),
                         "trade_list": _trades(run, market),
                         "curves": _curves(run, market, curve_points)}
        out[market.name] = per
    return out


def run_backtest(policy: Policy, sources: Sequence[str], *, reference: str | None = None,
                 selection: Selection | None = None, seed: int = 0, momentum_bars: int = 48,
                 initial_equity: float | None = None) -> BacktestResult:
    """``policy`` and the baselines on every source, on the selected bars (module
    docstring); the reference is found by ``resolve_reference`` when not given.

    Raises:
        ConfigError: a split asked of a policy that records no split fractions, a range
            outside the data, or no reference to be found.
    """
    selection = selection or Selection()
    spec = policy.feature_spec
    reference = resolve_reference(policy, sources, reference)
    data = policy.manifest.data
    if selection.split != "all" and data is None:
        raise ConfigError(f"--split {selection.split}: the policy's manifest records no "
                          "split fractions (it never saw data); give --start/--end instead")
    train, validation = (data.train, data.validation) if data else (0.7, 0.15)
    config = env_config(policy, initial_equity)
    markets, _ = load_markets(list(sources), spec=spec, split=selection.split,
                              reference=reference, train=train, validation=validation,
                              window=config.window, costs=config.costs,
                              normalizer=policy.normalizer, calendar=config.calendar)
    markets = select(markets, selection)
    result = BacktestResult(policy.version or 0, {
        "policy": version_name(policy.version or 0), "sources": list(sources),
        "reference": reference, "split": selection.split, "start_ms": selection.start_ms,
        "end_ms": selection.end_ms, "split_fractions": [train, validation],
        "seed": seed, "momentum_bars": momentum_bars,
        "initial_equity": config.initial_equity, "positions": list(config.positions),
        "window": config.window, "latency_bars": config.latency_bars,
        "fee_bps": config.costs.fee_bps, "half_spread_bps": config.costs.half_spread_bps,
        "feature_spec_hash": spec.hash})
    result.decisions = {m.name: decision_range(m, config.window, selection,
                                               config.decision.every_bars) for m in markets}
    result.datasets = play_all(policy, markets, config, seed=seed,
                               momentum_bars=momentum_bars)
    return result
