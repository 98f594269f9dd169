"""Seeded run data for the dashboard tests: what training, evaluation and a paper actor
publish, in their documented formats, written into a store."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from raytrade.actors.paper_export import upload_paper
from raytrade.algos.evaluation import evaluate
from raytrade.algos.export import random_bundle
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.envs.metrics import performance

from tests.live_setup import quick_experiment

T0 = 1_743_638_400_000  # 2025-04-03 00:00 UTC
BAR = 300_000


def train_rows(n: int) -> list[dict[str, Any]]:
    """``n`` iterations shaped like ``algos.train.iteration_metrics`` records."""
    return [{"iteration": i, "time_s": 2.0 * i, "env_steps_sampled": 1000.0 * i,
             "env_steps_trained": 4000.0 * i, "episode_return_mean": -5 + 0.1 * i,
             "qf_loss": 1.0 / i, "qf_mean": 0.01 * i, "td_error_mean": 0.5 / i,
             "episode_sharpe": math.nan if i % 3 else 0.1 * i, "sampled_per_s": 500.0,
             "trained_per_s": 2000.0, "replay_size": min(1000 * i, 50_000),
             "epsilon": {"0": 0.4, "1": 0.4 ** 8}} for i in range(1, n + 1)]


def _linear_q(seed: int) -> Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float64]]:
    """A fixed random linear Q-function: a greedy policy that trades often, as an
    undertrained one does."""
    weights: list[npt.NDArray[np.float64]] = []

    def q(obs: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        if not weights:
            weights.append(np.random.default_rng(seed).normal(size=(obs.shape[1], 3)))
        out: npt.NDArray[np.float64] = obs.astype(np.float64) @ weights[0]
        return out

    return q


@functools.lru_cache(maxsize=4)
def _evaluation_json(seed: int) -> tuple[str, str]:
    exp = quick_experiment()
    curves: dict[str, Any] = {}
    record = evaluate(_linear_q(seed), exp, "validation", seed=exp.seed, curves=curves)
    return json.dumps(record), json.dumps(curves)


def demo_evaluation(iteration: int, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """One validation evaluation as ``raytrade demo`` writes it: the record for
    ``metrics/eval.jsonl`` and the curves for ``metrics/eval_curves/`` (both with
    ``iteration``), made by ``algos.evaluation.evaluate`` itself on the bundled ETH and BTC
    data, for a random linear greedy policy (``seed``).

    Shaped like the demo's: the validation split has 3,888 bars per dataset, so curves are
    subsampled to 2,000 points; the random baseline and this greedy policy lose half their
    equity to costs and hit the drawdown halt (``max_drawdown = 0.5``), so their curves end
    early and are shorter. Computed once per process (about 1 s once features are cached).
    """
    record_json, curves_json = _evaluation_json(seed)
    record, curves = json.loads(record_json), json.loads(curves_json)
    record["iteration"] = curves["iteration"] = iteration
    return record, curves


def paper_rows(n: int, version: int, seed: int = 0) -> tuple[list[dict[str, Any]],
                                                             list[dict[str, Any]]]:
    """``n`` bars of an actor's equity export and its fills; each row carries the account's
    cumulative cost counters as ``paper_export.equity_records`` writes them (fee 0.5,
    slippage 0.1 and one ETH of notional per fill, borrow 0.01 per bar held)."""
    rng = np.random.default_rng(seed)
    close = 1800 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    position = np.where(np.arange(n) // 20 % 2 == 0, 1.0, 0.0)
    equity = 10_000 * np.exp(np.cumsum(np.r_[0, np.diff(np.log(close))] * position))
    fills = [{"fill_id": f"eth:ETHUSDT:{T0 + i * BAR}", "symbol": "ETHUSDT",
              "bar_ts": T0 + i * BAR, "target": float(position[i]),
              "qty": 1.0 if position[i] else -1.0, "price": float(close[i]),
              "notional": float(close[i]), "fee": 0.5, "slippage": 0.1}
             for i in range(1, n) if position[i] != position[i - 1]]
    filled = {f["bar_ts"]: f for f in fills}
    rows = []
    counters = {"fees": 0.0, "slippage": 0.0, "borrow": 0.0, "traded_notional": 0.0,
                "trades": 0}
    for i in range(n):
        ts = T0 + i * BAR
        if ts in filled:
            counters["fees"] += 0.5
            counters["slippage"] += 0.1
            counters["traded_notional"] += filled[ts]["notional"]
            counters["trades"] += 1
        if i:  # the first row is the first decision: nothing paid yet
            counters["borrow"] += 0.01 * float(position[i])
        rows.append({"ts": ts, "equity": float(equity[i]), "position": float(position[i]),
                     "version": version, "close": float(close[i]), **counters,
                     "halted": False})
    return rows, fills


def seed_store(store: PolicyStore, *, bars: int = 400) -> dict[str, Any]:
    """Versions on every channel, training metrics, two evaluations with their curves (as
    the demo writes them: see :func:`demo_evaluation`), and one paper actor; returns what
    the tests check against."""
    v1 = store.publish(random_bundle(quick_experiment(), seed=1), reason="iteration 10")
    v2 = store.publish(random_bundle(quick_experiment(), seed=2), reason="iteration 20")
    store.move("paper", v1, reason="seed: paper")
    store.move("live", v1, reason="seed: live", kind="force")
    lines = "".join(json.dumps(r) + "\n" for r in train_rows(30))
    store.blobs.put("metrics/train.jsonl", lines.encode())
    evals = [demo_evaluation(10, seed=1), demo_evaluation(20, seed=2)]
    store.blobs.put("metrics/eval.jsonl", "".join(json.dumps(e) + "\n" for e, _ in evals)
                    .encode())
    for _, curves in evals:  # as algos.train writes them
        store.blobs.put(f"metrics/eval_curves/{curves['iteration']:06d}_validation.json",
                        json.dumps(curves).encode())
    rows, fills = paper_rows(bars, v1)
    health = {"actor": "eth", "symbol": "ETHUSDT", "state": "running", "stale": False,
              "feed": {"state": "live", "counters": {"disconnects": 2, "rejected": 1,
                                                     "malformed": 3}},
              "trader": {"equity": rows[-1]["equity"], "position": rows[-1]["position"]},
              "executor": {"version": v1}, "unresolved_faults": []}
    upload_paper(store.blobs, "eth", {
        "equity.jsonl": "".join(json.dumps(r) + "\n" for r in rows).encode(),
        "trades.jsonl": "".join(json.dumps(f) + "\n" for f in fills).encode(),
        "health.json": json.dumps(health).encode()})
    perf = performance(np.array([r["equity"] for r in rows]),
                       np.array([r["position"] for r in rows]), BAR, fills=len(fills))
    last = rows[-1]
    cost_perf = performance(np.array([r["equity"] for r in rows]),
                            np.array([r["position"] for r in rows]), BAR,
                            fills=int(last["trades"]), fees=last["fees"],
                            slippage=last["slippage"], borrow=last["borrow"],
                            traded_notional=last["traded_notional"])
    return {"versions": (v1, v2), "paper_perf": perf, "paper_cost_perf": cost_perf,
            "fills": len(fills), "bars": bars,
            "evaluation": evals[-1][0], "curves": evals[-1][1]}
