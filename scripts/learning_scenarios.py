"""The learning benchmark's scenarios: which market, which experiment, what is measured on
the out-of-sample (test) split, and the targets the numbers are judged against.

- ``planted``: the planted-regime market at a 1 bp fee (``synthetic_regime``), the
  README's historical numbers: the greedy policy's share of the oracle's and of the Bayes
  filter's log growth.
- ``regime-costly``: the same kind of market at realistic costs (``synthetic_regime_costly``:
  a 10 bp fee plus the modelled slippage of ``envs/costs.py`` on ETH-like volume). The
  yardstick is the best causal policy after costs: the Bayes filter played through the
  same env, costs and accounting as the agent, both as evaluation plays it (cost-blind:
  the sign of the predicted regime) and trading through a cost band
  (``SyntheticMarket.causal_position(switch_cost)``: it changes position only when the
  evidence against the held one crosses the band that pays the trade, calibrated on a
  separate market with the same parameters); the better of the two after costs is
  "the filter". Target: the greedy log growth is >= 90 % of the filter's (median over
  seeds), >= 80 % on the worst seed.
- ``weak-drift``: the same experiment on a regime market whose drift (0.3 bp per bar
  under 20 bp of noise) cannot pay the costs (no cost band of the filter earns anything
  after them): the agent should stay out.
- ``no-signal``: the same experiment on a random walk of the same volatility and volume
  (no drift, nothing to learn): the agent should stay out; target: net return >= -0.5 %
  and at most 5 position changes per 1,000 bars.

Targets are judged on what the system deploys (``deployed`` in :func:`scenario_metrics`):
the selected policy when it passes the publication gate's evidence rules on its validation
record (it beat flat after costs there, by ``[selection] min_evidence_t`` standard errors:
``publish_decision.deployable``), flat when nothing qualified. The selected network's own
greedy numbers are reported beside it, qualified or not, so a gate that merely hides a bad
network is visible.

The three cost scenarios share one experiment file and differ only in the source, so any
difference between them is the market's: the same agent, network, budget and costs.
Every scenario also reports the random policy's position changes per 1,000 bars (the
yardstick of "trades far less than random").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from raytrade.algos.evaluation import Policy, play
from raytrade.algos.experiment import ExperimentConfig
from raytrade.envs.costs import CostModel
from raytrade.envs.errors import ConfigError
from raytrade.envs.market import M_QUOTE_VOLUME, M_SIGMA, MarketData, synthetic_source

WEAK_DRIFT_SOURCE = "synthetic:regime:seed=1:n=30000:drift=0.3:volume=1000"
NO_SIGNAL_SOURCE = "synthetic:randomwalk:seed=1:n=30000:volume=1000"


@dataclass(frozen=True)
class Target:
    """A goal on one summarized number: ``statistic`` (``median``, ``min`` or ``max``
    over the runs) of the per-dataset metric ``metric`` (a path into a
    :func:`scenario_metrics` row, e.g. ``greedy/net_return``) compared by ``op`` (``>=``
    or ``<=``) with ``threshold``."""

    metric: str
    statistic: str
    op: str
    threshold: float

    def check(self, summary: Mapping[str, Mapping[str, Any]],
              prefix: str) -> dict[str, Any]:
        """``{"metric", "statistic", "op", "threshold", "value", "met"}`` of the summary
        entry ``prefix + metric``; ``met`` is False when the value is missing (None: not
        finite in any run)."""
        value = summary.get(prefix + self.metric, {}).get(self.statistic)
        met = value is not None and (value >= self.threshold if self.op == ">="
                                     else value <= self.threshold)
        return {**dataclasses.asdict(self), "metric": prefix + self.metric, "value": value,
                "met": bool(met)}


@dataclass(frozen=True)
class Scenario:
    """One benchmark scenario (module docstring)."""

    name: str
    experiment: str
    """Shipped experiment file (``algos/experiments/NAME.toml``)."""
    source: str | None
    """The market replacing the experiment's sources; None keeps them."""
    about: str
    targets: tuple[Target, ...] = ()


_STAY_OUT = (Target("deployed/net_return", "median", ">=", -0.005),
             Target("deployed/changes_per_1000", "median", "<=", 5.0))

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("planted", "synthetic_regime", None,
             "planted regime market at a 1 bp fee: shares of the oracle and the filter"),
    Scenario("regime-costly", "synthetic_regime_costly", None,
             "planted regime market at a 10 bp fee plus modelled slippage",
             (Target("deployed/filter_share", "median", ">=", 0.9),
              Target("deployed/filter_share", "min", ">=", 0.8))),
    Scenario("weak-drift", "synthetic_regime_costly", WEAK_DRIFT_SOURCE,
             "regime market whose drift cannot pay the costs: stay out", _STAY_OUT),
    Scenario("no-signal", "synthetic_regime_costly", NO_SIGNAL_SOURCE,
             "random walk of the same volatility and costs: stay out", _STAY_OUT),
)}


def scenario_experiment(scenario: Scenario, exp: ExperimentConfig,
                        source: str | None = None) -> ExperimentConfig:
    """``exp`` on the scenario's market (``source``, when given, overrides it)."""
    chosen = source or scenario.source
    if chosen is None:
        return exp
    return dataclasses.replace(exp, data=dataclasses.replace(exp.data, sources=(chosen,)))


def changes_per_1000(perf: Mapping[str, Any], decisions: int) -> float:
    """Position changes (fills: a reversal is one) per 1,000 bars played: the record's
    ``bars`` (an episode the drawdown halt or ruin ended early played fewer), else
    ``decisions``."""
    return 1000.0 * float(perf["trades"]) / max(int(perf.get("bars", decisions)), 1)


def log_growth(final_equity: float, initial: float) -> float | None:
    """``log(final / initial)``; None when the account was ruined (final <= 0)."""
    return math.log(final_equity / initial) if final_equity > 0 else None


def unit_trade_cost(costs: CostModel, market: MarketData, equity: float) -> float:
    """The cost of trading one unit of equity, a fraction: the fee plus the slippage the
    cost model charges a full-equity order on the training split's median bar (median
    quote volume and volatility; the fixed slippage when the model is off)."""
    fee = costs.fee_bps / 1e4
    if costs.fixed_slippage_bps is not None:
        return fee + costs.fixed_slippage_bps / 1e4
    lo, hi = market.splits.train.start, market.splits.train.stop
    qv = float(np.nanmedian(market.market[M_QUOTE_VOLUME, lo:hi]))
    sigma = float(np.nanmedian(market.market[M_SIGMA, lo:hi]))
    slip = costs.half_spread_bps / 1e4 + costs.impact_coef * sigma * math.sqrt(equity / qv)
    return fee + min(slip, costs.max_slippage_bps / 1e4)


def cost_aware_filter(exp: ExperimentConfig, split: str) -> dict[str, dict[str, Any]]:
    """Per dataset, the Bayes filter trading through its cost band (module docstring),
    played through the experiment's env (costs, accounting, risk rules) on ``split``:
    ``{"final_equity", "trades", "fees", "bars", "switch_cost"}``. Empty unless every
    source is a regime market."""
    if not all(s.startswith("synthetic:regime") for s in exp.data.sources):
        return {}
    spec = exp.fit_env_spec()
    markets = spec.markets(split)
    config = dataclasses.replace(spec.env, random_start=False, max_episode_steps=None)
    positions = np.asarray(config.positions, dtype=np.float64)
    out: dict[str, dict[str, Any]] = {}
    for d, (src, market) in enumerate(zip(exp.data.sources, markets, strict=True)):
        cost = unit_trade_cost(config.costs, market, config.initial_equity)
        target = synthetic_source(src).causal_position(switch_cost=cost)
        actions = np.abs(target[:, None] - positions[None, :]).argmin(axis=1)
        run = play(markets, config, d, _follow(actions))
        out[market.name] = {"final_equity": float(run["equity"][-1]),
                            "trades": int(run["trades"]), "fees": float(run["fees"]),
                            "bars": int(run["bar"][-1] - run["bar"][0]),
                            "switch_cost": cost}
    return out


def _follow(actions: npt.NDArray[np.int64]) -> Policy:
    """The policy playing ``actions[bar]`` at every decision bar."""
    return lambda obs, bar, held: int(actions[bar])


def scenario_metrics(evaluation: Mapping[str, Any], exp: ExperimentConfig,
                     filters: Mapping[str, Mapping[str, Any]] | None = None,
                     published: bool | None = None) -> dict[str, Any]:
    """What the scenarios measure on one evaluation record (``evaluation.evaluate``), per
    dataset: for the greedy, random and flat policies (and the planted baselines where
    present) the net return, log growth, bars played (the split's ``decisions`` unless
    the drawdown halt ended the episode) and position changes per 1,000 bars played;
    on regime markets also the cost-aware filter (``filters``, from
    :func:`cost_aware_filter` on the same split) and ``filter_share``, the greedy log
    growth as a share of the better filter's after costs (None unless that grew).

    With ``published`` (whether the run's selected policy passes the publication gate's
    evidence rules on validation, ``publish_decision.deployable``) also ``deployed``: what
    the system trades on the split, the greedy policy's row when it qualified, the flat
    baseline's when nothing did (no policy is paper-traded then)."""
    initial = exp.env.initial_equity
    split = evaluation["split"]
    decisions = {m.name: m.n_decisions for m in exp.fit_env_spec().markets(split)}
    out: dict[str, Any] = {}
    for name, per in evaluation["datasets"].items():
        n = decisions[name]
        row: dict[str, Any] = {"decisions": n}
        for policy in ("greedy", "random", "flat", "buy_and_hold", "oracle", "bayes_filter"):
            if policy in per:
                perf = per[policy]
                row[policy] = {"net_return": perf["total_return"],
                               "log_growth": log_growth(perf["final_equity"], initial),
                               "changes_per_1000": changes_per_1000(perf, n),
                               "bars": int(perf.get("bars", n)),
                               "sharpe": perf["sharpe"],
                               "fees_fraction": perf["fees"] / initial}
        aware = (filters or {}).get(name)
        if aware is not None:
            row["bayes_filter_costs"] = {
                "net_return": aware["final_equity"] / initial - 1.0,
                "log_growth": log_growth(aware["final_equity"], initial),
                "changes_per_1000": changes_per_1000(aware, n), "bars": aware["bars"],
                "fees_fraction": aware["fees"] / initial,
                "switch_cost": aware["switch_cost"]}
        filters_growth = [g for g in (row.get("bayes_filter", {}).get("log_growth"),
                                      row.get("bayes_filter_costs", {}).get("log_growth"))
                          if g is not None]
        best = max(filters_growth) if filters_growth else None
        greedy = row["greedy"]["log_growth"]
        row["greedy"]["filter_share"] = (greedy / best if greedy is not None and best
                                         and best > 0 else None)
        row["filter_log_growth"] = best
        if published is not None:
            row["published"] = bool(published)
            row["deployed"] = dict(row["greedy"] if published else row["flat"])
            deployed = row["deployed"]["log_growth"]
            row["deployed"]["filter_share"] = (deployed / best if deployed is not None
                                               and best and best > 0 else None)
        out[name] = row
    return out


def scenario(name: str) -> Scenario:
    """The scenario called ``name``; a clear error listing the others."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ConfigError(f"unknown scenario {name!r}: one of {', '.join(SCENARIOS)}") from None
