"""Walk-forward: rolling folds of train-then-test windows across every dataset of an
experiment.

For fold ``k`` the training window is ``[start + k*step, + train)`` and the test window the
``test`` that follows it. Per fold:

1. every source (and the reference asset) is cut to the training window and written to
   the fold's folder; the training driver (``algos.train.train``, local or on a cluster)
   trains on those files only, so its normalizer is fitted on that window only (checked
   against the bundle's ``fit_end_ts`` before anything is evaluated);
2. the fold's policy is published to the walk-forward store's ``candidate`` channel;
3. the policy and the baselines (``backtest.play_all``) play the test window: features
   are computed over the history up to the test window's end (they are causal), and
   decisions are taken on test-window bars only;
4. the same on the training window gives the in-sample numbers, for the gap.

Every fold's policy is tested, whether or not it qualified: the walk-forward reports the
method. Beside it, ``deployed`` is what the system would have traded in that window: the
policy when it passes the experiment's publication gate on its own validation split (the
end of its training window; ``[selection] require_beat_flat`` and ``min_evidence_t``,
``publish_decision.deployable``), flat otherwise. The fold records ``deployed`` (bool) and
``deploy_reason``.

The aggregate out-of-sample curve chains the folds' test curves (each fold restarts from
the initial equity; returns are compounded), measured with the shared metrics module.

Every fold's records carry the cost metrics of ``run_metrics.run_performance`` (net and
gross return, cost drag, fees, slippage, borrow, turnover, trades per day, holding time,
``halted``); the aggregate adds, per policy, the median and the largest fold cost drag and
the number of folds the drawdown halt or ruin cut short.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from raytrade.algos.backtest import env_config, play_all
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.policy import Policy
from raytrade.algos.publish_decision import deployable
from raytrade.algos.storage.policy_store import PolicyStore, version_name
from raytrade.algos.train import train
from raytrade.envs.bars import BarTable
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.errors import ConfigError
from raytrade.envs.io import load_bars
from raytrade.envs.market import MarketData, load_markets, resolve_sources, restrict_range
from raytrade.envs.metrics import performance
from raytrade.envs.resample import align

_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def duration_ms(text: str) -> int:
    """``"60d"``, ``"12h"``, ``"2w"``, ``"90m"`` in milliseconds."""
    m = _DURATION.match(text.strip())
    if m is None or int(m.group(1)) <= 0:
        raise ConfigError(f"bad duration {text!r}: expected e.g. 60d, 12h, 2w")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


@dataclass(frozen=True)
class Fold:
    """One fold's windows, open times in ms UTC, ends exclusive."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int


def make_folds(first_ms: int, end_ms: int, train_ms: int, test_ms: int,
               step_ms: int) -> list[Fold]:
    """Every fold whose test window ends by ``end_ms`` (exclusive), stepping ``step_ms``."""
    if min(train_ms, test_ms, step_ms) <= 0:
        raise ConfigError("train, test and step must be positive")
    folds: list[Fold] = []
    start = first_ms
    while start + train_ms + test_ms <= end_ms:
        folds.append(Fold(len(folds), start, start + train_ms, start + train_ms,
                          start + train_ms + test_ms))
        start += step_ms
    if not folds:
        raise ConfigError(f"the data ({(end_ms - first_ms) / 86_400_000:.1f} days) is "
                          "shorter than one train + test window")
    return folds


@dataclass
class WalkForwardResult:
    """Per-fold results and the aggregate; ``to_json`` for machines, curves included."""

    config: dict[str, Any]
    folds: list[dict[str, Any]] = field(default_factory=list)
    aggregate: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config, "folds": self.folds, "aggregate": self.aggregate}


def _tables(exp: ExperimentConfig) -> tuple[list[BarTable], BarTable | None]:
    paths = resolve_sources(exp.data.sources)
    ref_path = resolve_sources((exp.data.reference,))[0] if exp.data.reference else None
    cal = exp.env.calendar
    loaded = [load_bars(p, calendar=cal) for p in paths] + (
        [load_bars(ref_path, calendar=cal)] if ref_path else [])
    aligned = align(loaded)
    return aligned[:len(paths)], (aligned[-1] if ref_path else None)


def _write(table: BarTable, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{table.symbol}_{table.interval}.csv"
    table.to_frame().to_csv(path, index=False)
    return str(path)


def _window(markets: list[MarketData], start_ms: int, end_ms: int) -> list[MarketData]:
    """The markets with decisions restricted to bars in ``[start_ms, end_ms)`` (the fill
    bar of the last decision still inside)."""
    return [restrict_range(m, start_ms, end_ms) for m in markets]


def _play(policy: Policy, tables: list[BarTable], ref: BarTable | None, folder: Path,
          start_ms: int, end_ms: int, seed: int, momentum_bars: int) -> dict[str, Any]:
    """Policy and baselines on ``[start_ms, end_ms)``, features over the history before."""
    config = env_config(policy)
    folder = folder / f"{start_ms}_{end_ms}"  # load_markets caches by path: one per window
    files = [_write(t.between(end_ms=end_ms), folder) for t in tables]
    ref_file = _write(ref.between(end_ms=end_ms), folder / "ref") if ref else None
    markets, _ = load_markets(files, spec=policy.feature_spec, split="all",
                              reference=ref_file, window=config.window, costs=config.costs,
                              normalizer=policy.normalizer, calendar=config.calendar)
    return play_all(policy, _window(markets, start_ms, end_ms), config, seed=seed,
                    momentum_bars=momentum_bars, curve_points=None)


def run_walkforward(exp: ExperimentConfig, work_dir: str | Path, store: PolicyStore, *,
                    train_ms: int, test_ms: int, step_ms: int,
                    iterations: int | None = None, time_budget_s: float | None = None,
                    address: str | None = None, momentum_bars: int = 48,
                    progress: Callable[[str], None] = print) -> WalkForwardResult:
    """Train, publish and test every fold (module docstring)."""
    work = Path(work_dir).resolve()
    tables, ref = _tables(exp)
    ts = tables[0].ts
    folds = make_folds(int(ts[0]), int(ts[-1]) + tables[0].interval_ms, train_ms, test_ms,
                       step_ms)
    result = WalkForwardResult({
        "experiment": exp.name, "seed": exp.seed, "sources": list(exp.data.sources),
        "train_ms": train_ms, "test_ms": test_ms, "step_ms": step_ms,
        "iterations": iterations, "time_budget_s": time_budget_s,
        "momentum_bars": momentum_bars, "store": store.uri, "initial_equity": 10_000.0})
    for fold in folds:
        folder = work / f"fold_{fold.index:02d}"
        data = folder / f"train_data_{fold.train_start}_{fold.train_end}"
        sources = tuple(_write(t.between(fold.train_start, fold.train_end), data)
                        for t in tables)
        reference = _write(ref.between(fold.train_start, fold.train_end), data / "ref") \
            if ref is not None else None
        # every fold's selected policy is tested, whether or not it beat flat on its
        # validation split: the walk-forward reports the method, it promotes nothing
        fold_exp = dataclasses.replace(
            exp, name=f"{exp.name}-fold{fold.index}",
            data=dataclasses.replace(exp.data, sources=sources, reference=reference),
            selection=dataclasses.replace(exp.selection, require_beat_flat=False))
        progress(f"fold {fold.index}: training on {fold.train_start}..{fold.train_end}")
        trained = train(fold_exp, folder / "run", iterations=iterations,
                        time_budget_s=time_budget_s, address=address,
                        eval_every=10**9, checkpoint_every=10**9, progress=progress)
        local = PolicyStore((folder / "run").as_uri())
        version = local.latest()
        if version is None:
            raise ConfigError(f"fold {fold.index}: training published no policy")
        files = local.files(version)
        policy = Policy(files, version)
        if policy.normalizer.fit_end_ts >= fold.test_start:
            raise ConfigError(f"fold {fold.index}: the normalizer saw bars up to "
                              f"{policy.normalizer.fit_end_ts}, inside the test window")
        published = store.publish(files, channel="candidate",
                                  reason=f"walk-forward {exp.name} fold {fold.index}")
        progress(f"fold {fold.index}: published {version_name(published)}; testing")
        oos = _play(policy, tables, ref, folder / "test_data", fold.test_start,
                    fold.test_end, exp.seed, momentum_bars)
        ins = _play(policy, tables, ref, folder / "in_sample_data", fold.train_start,
                    fold.train_end, exp.seed, momentum_bars)
        deploy, why = deployable(policy.manifest.evaluation, exp.selection,
                                 exp.env.initial_equity)
        progress(f"fold {fold.index}: {'deployed' if deploy else 'not deployed'}: {why}")
        for played in (oos, ins):
            for per in played.values():
                per["deployed"] = per["policy" if deploy else "flat"]
        result.folds.append({
            **dataclasses.asdict(fold), "version": published, "deployed": deploy,
            "deploy_reason": why,
            "iterations": trained.iterations, "env_steps_trained": trained.env_steps_trained,
            "normalizer_fit": [policy.normalizer.fit_start_ts, policy.normalizer.fit_end_ts],
            "out_of_sample": oos, "in_sample": {d: {p: {k: v for k, v in r.items()
                                                         if k not in ("curves", "trade_list")}
                                                     for p, r in per.items()}
                                                 for d, per in ins.items()}})
    # the folds played bars of the FeatureSpec's interval (1h resampled from 5m files, say)
    # one equity point per decision: ``every_bars`` bars with a decision interval
    result.aggregate = aggregate(result.folds,
                                 exp.features.interval_ms * exp.env.decision.every_bars,
                                 exp.env.calendar, exp.env.decision.every_bars)
    return result


def aggregate(folds: list[dict[str, Any]], interval_ms: int,
              calendar: TradingCalendar = ALWAYS, every_bars: int = 1) -> dict[str, Any]:
    """Per dataset and policy: the chained out-of-sample curve's shared metrics (one point
    per ``every_bars`` bars, annualized with ``calendar``'s bars per year), and the mean
    in-sample minus out-of-sample gap of Sharpe and total return."""
    out: dict[str, Any] = {}
    for dataset in folds[0]["out_of_sample"]:
        per_policy: dict[str, Any] = {}
        for name in folds[0]["out_of_sample"][dataset]:
            equity: list[float] = []
            position: list[float] = []
            for f in folds:  # each fold restarts at the initial equity: compound them
                c = f["out_of_sample"][dataset][name]["curves"]
                eq = np.asarray(c["equity"], dtype=np.float64)
                if not equity:
                    equity.extend(eq.tolist())
                    position.extend(c["position"])
                else:
                    equity.extend((eq[1:] / eq[0] * equity[-1]).tolist())
                    position.extend(c["position"][1:])
            perf = performance(np.asarray(equity), np.asarray(position), interval_ms,
                               calendar=calendar, every_bars=every_bars)
            gaps_sharpe = [_gap(f, dataset, name, "sharpe") for f in folds]
            gaps_ret = [_gap(f, dataset, name, "total_return") for f in folds]
            drags = [f["out_of_sample"][dataset][name].get("cost_drag") for f in folds]
            kept = [float(x) for x in drags if x is not None]
            per_policy[name] = {**perf.to_dict(), "final_equity": equity[-1],
                                "sharpe_gap_in_minus_out": _mean(gaps_sharpe),
                                "return_gap_in_minus_out": _mean(gaps_ret),
                                "median_fold_cost_drag": float(np.median(kept)) if kept
                                else None,
                                "max_fold_cost_drag": max(kept) if kept else None,
                                "halted_folds": sum(bool(f["out_of_sample"][dataset][name]
                                                         .get("halted")) for f in folds)}
        out[dataset] = per_policy
    return out


def _gap(fold: dict[str, Any], dataset: str, name: str, key: str) -> float | None:
    a = fold["in_sample"][dataset][name].get(key)
    b = fold["out_of_sample"][dataset][name].get(key)
    return None if a is None or b is None else float(a) - float(b)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def dashboard_summary(result: WalkForwardResult, name: str) -> dict[str, Any]:
    """The compact report the dashboard's walk-forward page lists: one row per fold and
    dataset (out-of-sample and in-sample Sharpe and return of the policy and of
    buy-and-hold; the policy's out-of-sample gross return, cost drag, turnover, trades per
    day and whether it was halted), and the aggregate."""
    rows = []
    for f in result.folds:
        for dataset, per in f["out_of_sample"].items():
            ins = f["in_sample"][dataset]
            rows.append({"fold": f["index"], "dataset": dataset,
                         "version": version_name(f["version"]),
                         "test_start": f["test_start"], "test_end": f["test_end"],
                         "oos_sharpe": per["policy"]["sharpe"],
                         "oos_return": per["policy"]["total_return"],
                         "oos_buy_and_hold_return": per["buy_and_hold"]["total_return"],
                         "oos_gross_return": per["policy"].get("gross_return"),
                         "oos_cost_drag": per["policy"].get("cost_drag"),
                         "oos_turnover": per["policy"].get("turnover"),
                         "oos_trades_per_day": per["policy"].get("trades_per_day"),
                         "oos_halted": per["policy"].get("halted"),
                         "deployed": f.get("deployed"),
                         "in_sample_sharpe": ins["policy"]["sharpe"],
                         "in_sample_return": ins["policy"]["total_return"]})
    return {"name": name, **{k: v for k, v in result.config.items()
                             if isinstance(v, int | float | str)},
            "folds": rows, "aggregate": result.aggregate}
