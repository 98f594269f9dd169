"""Backtest a published policy bundle on bar files, with baselines, in shared metrics.

The policy plays one episode over each dataset in the same ``TradingEnv`` it trained in
(``evaluation.play``): the bundle's own FeatureSpec, normalizer, positions, window,
costs, risk rules and latency, so the accounting is the env's and the paper broker's.
Which bars it decides on (``Selection``): the whole file, one split of it by the split
fractions the policy trained with (the manifest's ``data``, so ``test`` means the same
bars as in training when the file is the training file), or a date range. Features are
always computed from the file's first bar, so the history before the selection feeds the
warm-up causally; the first decision falls on the first selected bar whose feature window
is complete, and ``BacktestResult.decisions`` says, per dataset, which bar that is and
how much warm-up it took.
Costs are on unless the bundle trained without them. Beside it, on the same bars and
costs: flat, buy-and-hold, random (seeded) and a momentum rule (long while the close is
above the close ``momentum_bars`` earlier, else flat).

The result is plain JSON (``BacktestResult.to_json``): per dataset and policy the
metrics of ``envs.metrics.performance``, fees, turnover, the trade list, and curves of
equity, drawdown and position for the report.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from raytrade.algos.evaluation import Policy as Chooser
from raytrade.algos.evaluation import play
from raytrade.algos.policy import Policy
from raytrade.algos.storage.policy_store import PolicyStore, version_name
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.errors import ConfigError, RaytradeError
from raytrade.envs.intervals import duration_text
from raytrade.envs.io import load_bars
from raytrade.envs.market import (
    M_CLOSE,
    M_OPEN,
    SPLITS,
    MarketData,
    load_markets,
    resolve_sources,
    restrict_range,
)
from raytrade.envs.metrics import drawdown_curve, performance
from raytrade.envs.sample import sample_path

_REF = re.compile(r"^(?P<uri>.+?)(?:@v?(?P<version>\d+))?$")
CURVE_POINTS = 3000


@dataclass(frozen=True)
class Selection:
    """The bars a backtest decides on: a split, or a date range (module docstring)."""

    split: str = "all"
    """``train``, ``validation``, ``test`` (by the manifest's fractions) or ``all``."""
    start_ms: int | None = None
    """First open time of the range, ms UTC (None: the data's first bar)."""
    end_ms: int | None = None
    """End of the range (exclusive), ms UTC (None: the end of the data)."""

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got "
                              f"{self.split!r}")
        ranged = self.start_ms is not None or self.end_ms is not None
        if ranged and self.split != "all":
            raise ConfigError(f"--split {self.split} and --start/--end both select bars: "
                              "give one of them")
        if self.start_ms is not None and self.end_ms is not None \
                and not self.start_ms < self.end_ms:
            raise ConfigError(f"--start ({utc(self.start_ms)}) must be before --end "
                              f"({utc(self.end_ms)})")

    @property
    def ranged(self) -> bool:
        """True for a date range."""
        return self.start_ms is not None or self.end_ms is not None


def utc(ms: int) -> str:
    """``ms`` UTC as ``YYYY-MM-DD HH:MM UTC``."""
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M} UTC"


def parse_time(flag: str, text: str) -> int:
    """``--start``/``--end`` value: ms UTC (digits) or an ISO date or date-time (UTC unless
    it carries an offset) -> ms UTC; ``ConfigError`` naming ``flag`` otherwise."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected an ISO date (2025-06-01, "
                          "2025-06-01T12:00) or milliseconds since the epoch (UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


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
    return lambda obs, bar: long if bar >= bars and close[bar] > close[bar - bars] else flat


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
        interval = int(market.ts[1] - market.ts[0])
        choosers: dict[str, Chooser] = {
            "policy": lambda obs, _: policy.decide(obs).action,
            "buy_and_hold": lambda obs, _: int(np.argmax(pos)),
            "flat": lambda obs, _: int(np.argmin(np.abs(pos))),
            "random": lambda obs, _: int(rng.integers(n_actions)),
            "momentum": momentum(market, config.positions, momentum_bars)}
        per: dict[str, Any] = {}
        for name, choose in choosers.items():
            run = play(list(markets), config, d, choose)
            perf = performance(run["equity"], run["position"], interval,
                               traded_notional=float(run["traded_notional"]),
                               fills=int(run["trades"])).to_dict()
            per[name] = {**perf, "final_equity": float(run["equity"][-1]),
                         "fees": float(run["fees"]),
                         "traded_notional": float(run["traded_notional"]),
                         "bars": int(len(run["equity"]) - 1),
                         "trade_list": _trades(run, market),
                         "curves": _curves(run, market, curve_points)}
        out[market.name] = per
    return out


def resolve_reference(policy: Policy, sources: Sequence[str], reference: str | None
                      ) -> str | None:
    """The reference-asset bars for the policy's features, when ``reference`` is not given.

    None when the features use no reference, or when a traded file is the reference
    symbol itself (``market.load_markets`` takes it from the sources). Otherwise the
    manifest's own reference, or the source of its training data that holds the reference
    symbol, when it can be read here.

    Raises:
        ConfigError: the features need a reference and none of the above resolves; says
            what was looked for.
    """
    symbol = policy.feature_spec.reference_symbol
    if reference is not None or not symbol:
        return reference
    if any(load_bars(path).symbol == symbol for path in resolve_sources(tuple(sources))
           if not path.startswith("synthetic:")):
        return None
    data = policy.manifest.data
    tried = []
    for candidate in ([data.reference] if data and data.reference else []) + \
            list(data.sources if data else ()):
        tried.append(candidate)
        try:
            path = resolve_sources((candidate,))[0]
            if not path.startswith("synthetic:") and load_bars(path).symbol == symbol:
                return path
        except RaytradeError:
            continue
    try:
        sample_path(symbol)
        bundled = f" (or the bundled sample: --reference sample:{symbol})"
    except RaytradeError:
        bundled = ""
    looked = f"nor do the manifest's data sources ({', '.join(tried)})" if tried else \
        "and the manifest records no training data to take it from"
    raise ConfigError(f"the policy's features need {symbol} bars as reference: no traded "
                      f"file is {symbol}, {looked} resolve to {symbol} bars here; give "
                      f"--reference FILE{bundled}")


def select(markets: Sequence[MarketData], selection: Selection) -> list[MarketData]:
    """Restrict each market's decisions to ``selection``'s date range (a split is applied
    by ``load_markets``); the range must lie inside every dataset.

    Raises:
        ConfigError: ``--start`` or ``--end`` outside a dataset, naming the flag and the
            dataset's span.
        DataError: no decision bar left in the range after the warm-up.
    """
    if not selection.ranged:
        return list(markets)
    out = []
    for m in markets:
        lo, hi = int(m.ts[0]), int(m.ts[-1]) + int(m.ts[1] - m.ts[0])
        span = f"{m.name} holds {utc(lo)} .. {utc(hi)}"
        start = lo if selection.start_ms is None else selection.start_ms
        end = hi if selection.end_ms is None else selection.end_ms
        if not lo <= start < hi:
            raise ConfigError(f"--start {utc(start)} is outside the data: {span}")
        if not lo < end <= hi:
            raise ConfigError(f"--end {utc(end)} is outside the data: {span}")
        if not start < end:
            raise ConfigError(f"--start ({utc(start)}) must be before --end ({utc(end)})")
        out.append(restrict_range(m, start, end))
    return out


def decision_range(market: MarketData, window: int, selection: Selection) -> dict[str, Any]:
    """Which bars ``market`` decides on and the warm-up before the first one.

    ``warmup_bars`` counts the bars before the earliest bar that could decide: the
    features' warm-up (``feature_warmup_bars``, until every feature is finite) plus the
    ``window - 1`` earlier rows the observation holds. Indices are bars of the prepared
    series (after any resampling to the policy's interval).
    """
    interval = int(market.ts[1] - market.ts[0])
    warm = market.first_valid + window - 1
    if selection.ranged:
        lo = 0 if selection.start_ms is None else int(np.searchsorted(market.ts,
                                                                      selection.start_ms))
    else:
        lo = 0 if market.split == "all" else getattr(market.splits, market.split).start
    return {"selection": market.split if not selection.ranged else "range",
            "selected_from_ms": int(market.ts[lo]),
            "first_decision_bar": market.first, "first_decision_ms": int(market.ts[market.first]),
            "first_decision_utc": utc(int(market.ts[market.first])),
            "last_decision_bar": market.last, "last_decision_ms": int(market.ts[market.last]),
            "last_decision_utc": utc(int(market.ts[market.last])),
            "decisions": market.n_decisions, "interval": duration_text(interval),
            "feature_warmup_bars": market.first_valid, "window": window,
            "warmup_bars": warm, "warmup": duration_text(warm * interval),
            "warmup_in_selection_bars": max(0, market.first - lo)}


def header_lines(result: BacktestResult) -> list[str]:
    """The decision range of every dataset, for people (``raytrade backtest`` prints it)."""
    lines = []
    for name, d in result.decisions.items():
        label = {"all": "all bars", "range": "date range"}.get(
            d["selection"], f"{d['selection']} split")
        lines.append(f"{name}: {label} from {utc(d['selected_from_ms'])} "
                     f"({d['interval']} bars)")
        lines.append(f"  warm-up: {d['warmup_bars']} bars ({d['warmup']}): features complete "
                     f"at bar {d['feature_warmup_bars']}, window {d['window']}"
                     + (f"; {d['warmup_in_selection_bars']} selected bars went to warm-up"
                        if d["warmup_in_selection_bars"] else ""))
        lines.append(f"  first decision: bar {d['first_decision_bar']}, "
                     f"{d['first_decision_utc']}; last: bar {d['last_decision_bar']}, "
                     f"{d['last_decision_utc']}; {d['decisions']} decisions")
    return lines


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
                              normalizer=policy.normalizer)
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
    result.decisions = {m.name: decision_range(m, config.window, selection) for m in markets}
    result.datasets = play_all(policy, markets, config, seed=seed,
                               momentum_bars=momentum_bars)
    return result
