"""Walk-forward over the bundled real 5 m bars: what the agent earns out of sample after
costs, fold by fold, next to flat, buy-and-hold and momentum; prints JSON.

The bundled ``eth_btc_5m`` experiment (or ``--config``) trained on ``--symbols`` (any of
the bundled samples: ETHUSDT, BTCUSDT, SOLUSDT, BNBUSDT, XRPUSDT; BTCUSDT is the
reference asset of the features and is added as the reference when it is not traded),
``--train 60d --test 15d --step 15d`` rolling folds, each fold trained for ``--budget-s``
seconds (or ``--iterations``) on its training window only (``algos/walkforward.py``: the
normalizer and every selection see that window alone; the test window is played once).
``--days`` keeps only the first days of the data.

Reported per fold, dataset and policy (the fold's trained ``policy``, ``deployed``,
``flat``, ``buy_and_hold``, ``momentum``, ``random``): net and gross return (before
costs), Sharpe, cost drag (fees, slippage and borrow paid as a fraction of the starting
equity), turnover per year and position changes per 1,000 bars; and the aggregates the
targets need: the largest fold cost drag (target <= 2 %) and the median fold Sharpe
against buy-and-hold's (target: at least as high), each with whether it is met.
``targets`` judges ``deployed``, what the system would have traded: the fold's policy
when it passed the publication gate on its own validation split (beat flat after costs,
by ``[selection] min_evidence_t`` standard errors), flat otherwise; ``targets_policy``
judges the trained policy of every fold, qualified or not.

``--quick`` (for CI: it proves the script runs and prints every field, not what the
agent learns): ETHUSDT only, light features, the first 10 days, one fold of 8 days'
training and 2 days' test, one training iteration with one env runner.

Usage: ``python scripts/bench_walkforward.py [--symbols ETHUSDT BTCUSDT SOLUSDT BNBUSDT
XRPUSDT] [--budget-s 60] [--train 60d] [--test 15d] [--step 15d] [--quick]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.algos.train import ray_session
from raytrade.algos.walkforward import duration_ms, run_walkforward
from raytrade.envs.io import load_bars, write_bars
from raytrade.envs.sample import SYMBOLS, sample_path

POLICIES = ("policy", "deployed", "flat", "buy_and_hold", "momentum", "random")
MAX_COST_DRAG = 0.02
"""Target: no fold's cost drag above 2 % of the starting equity."""
COST_KEYS = ("fees", "slippage", "borrow")
"""The costs a play record may carry (quote currency); what is there is summed."""


def cost_fields(record: Mapping[str, Any], initial: float) -> dict[str, Any]:
    """Gross return and cost drag of one play record (``backtest.play_all``).

    Uses the record's own ``gross_return`` and ``cost_drag`` when it has them; otherwise
    sums the costs it carries (:data:`COST_KEYS`) as a fraction of ``initial`` and adds
    them back to the net PnL for the gross return (the PnL of the same trades before
    costs). ``cost_parts`` names what was summed, so a drag without slippage says so.
    """
    if "gross_return" in record and "cost_drag" in record:
        return {"gross_return": record["gross_return"], "cost_drag": record["cost_drag"],
                "cost_parts": [k for k in COST_KEYS if k in record] or ["record"]}
    parts = [k for k in COST_KEYS if record.get(k) is not None]
    paid = sum(float(record[k]) for k in parts)
    return {"gross_return": (float(record["final_equity"]) + paid) / initial - 1.0,
            "cost_drag": paid / initial, "cost_parts": parts}


def fold_rows(folds: Sequence[Mapping[str, Any]], initial: float) -> list[dict[str, Any]]:
    """Per fold and dataset, the out-of-sample numbers of every policy (module
    docstring)."""
    rows: list[dict[str, Any]] = []
    for fold in folds:
        for dataset, per in fold["out_of_sample"].items():
            row: dict[str, Any] = {"fold": fold["index"], "dataset": dataset,
                                   "deployed_policy": fold.get("deployed"),
                                   "deploy_reason": fold.get("deploy_reason"),
                                   "test_start": fold["test_start"],
                                   "test_end": fold["test_end"],
                                   "iterations": fold["iterations"],
                                   "env_steps_trained": fold["env_steps_trained"]}
            for name in POLICIES:
                if name not in per:
                    continue
                r = per[name]
                bars = max(int(r.get("bars", 0)), 1)
                row[name] = {"net_return": r["total_return"], **cost_fields(r, initial),
                             "sharpe": r["sharpe"],
                             "turnover_per_year": r["turnover_per_year"],
                             "changes_per_1000": 1000.0 * float(r["trades"]) / bars,
                             "max_drawdown": r["max_drawdown"]}
            rows.append(row)
    return rows


def _median(values: Sequence[float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return statistics.median(kept) if kept else None


def _fold_sharpe(record: Mapping[str, Any]) -> float | None:
    """A fold's Sharpe for the medians: a record that never held a position (no trades,
    no return: flat throughout) counts as 0, the Sharpe of staying out; otherwise the
    record's (None when undefined)."""
    if record["sharpe"] is None and not record["changes_per_1000"] and \
            not record["net_return"]:
        return 0.0
    return None if record["sharpe"] is None else float(record["sharpe"])


def targets(rows: Sequence[Mapping[str, Any]], agent: str = "policy") -> dict[str, Any]:
    """The aggregates the targets read for ``agent`` (``policy``: the fold's trained policy,
    qualified or not; ``deployed``: what the publication gate let trade, else flat), over
    every fold and dataset: the largest cost drag and the median Sharpe against
    buy-and-hold's (a fold flat throughout counts as Sharpe 0; one whose Sharpe is
    otherwise undefined is left out). Keys end in ``_<agent>``; ``deployed_rows`` counts
    the fold rows whose policy passed the gate, and ``vacuous`` says the deployed targets
    were met (or not) by staying flat in every fold."""
    drags = [r[agent]["cost_drag"] for r in rows]
    mine = _median([_fold_sharpe(r[agent]) for r in rows])
    hold = _median([r["buy_and_hold"]["sharpe"] for r in rows])
    per_dataset = {d: {f"median_sharpe_{agent}": _median([_fold_sharpe(r[agent])
                                                          for r in rows if r["dataset"] == d]),
                       "median_sharpe_buy_and_hold": _median(
                           [r["buy_and_hold"]["sharpe"] for r in rows if r["dataset"] == d]),
                       f"max_cost_drag_{agent}": max(r[agent]["cost_drag"] for r in rows
                                                     if r["dataset"] == d)}
                   for d in dict.fromkeys(r["dataset"] for r in rows)}
    deployed = sum(bool(r.get("deployed_policy")) for r in rows)
    return {"agent": agent, "rows": len(rows), "deployed_rows": deployed,
            # judged on what was deployed when nothing was: flat everywhere, Sharpe 0 and
            # no costs; the targets then say nothing about the agent
            "vacuous": agent == "deployed" and deployed == 0,
            f"max_fold_cost_drag_{agent}": max(drags),
            "max_fold_cost_drag_target": MAX_COST_DRAG,
            "cost_drag_met": max(drags) <= MAX_COST_DRAG,
            f"median_fold_sharpe_{agent}": mine,
            "median_fold_sharpe_buy_and_hold": hold,
            "sharpe_met": mine is not None and hold is not None and mine >= hold,
            f"median_fold_net_return_{agent}": _median([r[agent]["net_return"]
                                                        for r in rows]),
            "median_fold_net_return_buy_and_hold": _median([r["buy_and_hold"]["net_return"]
                                                            for r in rows]),
            "per_dataset": per_dataset}


def light_features(exp: ExperimentConfig) -> ExperimentConfig:
    """``exp`` with no higher timeframes and two pivot levels: a warm-up of about 140 bars
    instead of thousands (for the quick mode's short windows)."""
    return dataclasses.replace(exp, features=dataclasses.replace(
        exp.features, higher_timeframes=(), pivot_levels=2, smc_level=1, regime_vol_long=96))


def sample_sources(symbols: Sequence[str], days: float | None, folder: Path
                   ) -> tuple[tuple[str, ...], str | None]:
    """The bundled files of ``symbols`` (cut to the first ``days`` when given, written
    under ``folder``) and the BTCUSDT reference when it is not traded."""
    reference = None if "BTCUSDT" in symbols else "BTCUSDT"

    def path(symbol: str) -> str:
        if days is None:
            return str(sample_path(symbol))
        bars = load_bars(sample_path(symbol))
        cut = bars.between(end_ms=int(bars.ts[0] + days * 86_400_000))
        return str(write_bars(cut, folder / f"{symbol}_5m.csv"))

    return tuple(path(s) for s in symbols), (path(reference) if reference else None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=None, help="experiment file (default eth_btc_5m)")
    ap.add_argument("--symbols", nargs="+", default=list(SYMBOLS), choices=SYMBOLS,
                    metavar="SYMBOL", help=f"bundled samples to trade ({', '.join(SYMBOLS)})")
    ap.add_argument("--budget-s", "--budget", dest="budget_s", type=float, default=60.0,
                    help="training seconds per fold")
    ap.add_argument("--iterations", type=int, default=None,
                    help="training iterations per fold (instead of the budget)")
    ap.add_argument("--train", default="60d")
    ap.add_argument("--test", default="15d")
    ap.add_argument("--step", default="15d")
    ap.add_argument("--days", type=float, default=None,
                    help="use only the first DAYS of the data")
    ap.add_argument("--quick", action="store_true",
                    help="CI size: ETHUSDT, light features, 10 days, one fold, 1 iteration")
    args = ap.parse_args(argv)
    exp = ExperimentConfig.load(args.config or experiment_path("eth_btc_5m"))
    if args.quick:
        args.symbols, args.days, args.iterations = ["ETHUSDT"], 10.0, 1
        args.train, args.test, args.step = "8d", "2d", "2d"
        exp = light_features(exp)
        exp = dataclasses.replace(exp, resources=dataclasses.replace(
            exp.resources, num_env_runners=1, num_envs_per_env_runner=4))
    symbols = list(dict.fromkeys(s.upper() for s in args.symbols))
    marks: list[tuple[float, str]] = []

    def progress(line: str) -> None:
        if line.startswith("fold "):
            marks.append((time.perf_counter(), line))

    with tempfile.TemporaryDirectory(prefix="raytrade-bench-wf-") as tmp:
        sources, reference = sample_sources(symbols, args.days, Path(tmp) / "data")
        exp = dataclasses.replace(exp, data=dataclasses.replace(
            exp.data, sources=sources, reference=reference))
        store = PolicyStore((Path(tmp) / "store").as_uri())
        t0 = time.perf_counter()
        with ray_session(None):  # one private Ray for every fold
            result = run_walkforward(
                exp, Path(tmp) / "folds", store, train_ms=duration_ms(args.train),
                test_ms=duration_ms(args.test), step_ms=duration_ms(args.step),
                iterations=args.iterations,
                time_budget_s=None if args.iterations else args.budget_s,
                progress=progress)
        total = time.perf_counter() - t0
    marks.append((t0 + total, "end"))
    timing = []
    for f in result.folds:
        start = next(t for t, m in marks if m.startswith(f"fold {f['index']}: training"))
        tested = next(t for t, m in marks if m.startswith(f"fold {f['index']}: published"))
        end = next(t for t, _ in marks if t > tested)  # the next fold starts, or the end
        timing.append({"fold": f["index"], "train_s": round(tested - start, 1),
                       "evaluate_s": round(end - tested, 1)})
    rows = fold_rows(result.folds, exp.env.initial_equity)
    print(json.dumps({"bench": "walkforward", "machine": {"cpus": os.cpu_count(),
                                                          "python": platform.python_version()},
                      "config": {**vars(args), "symbols": symbols,
                                 "experiment": exp.name,
                                 "reference": None if reference is None else "BTCUSDT"},
                      "targets": targets(rows, "deployed"),
                      "targets_policy": targets(rows, "policy"), "folds": rows,
                      "timing": timing,
                      "wall_s": round(total, 1)}, indent=1))


if __name__ == "__main__":
    main()
