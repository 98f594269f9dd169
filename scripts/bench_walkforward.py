"""Wall time of a walk-forward over the bundled ETH/BTC data on this machine; prints JSON.

The bundled ``eth_btc_5m`` experiment (full FeatureSpec, 2 env runners) over the 90 days
of bundled 5m bars, ``--train 60d --test 15d --step 15d`` (2 folds), each fold trained for
``--budget`` seconds. Reported: total wall time, and per fold the training, the
out-of-sample and in-sample evaluation (policy plus four baselines) and the fold's
out-of-sample result against buy-and-hold.

Usage: ``python scripts/bench_walkforward.py [--budget 60] [--train 60d] [--test 15d]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.algos.walkforward import duration_ms, run_walkforward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=60.0, help="training seconds per fold")
    ap.add_argument("--train", default="60d")
    ap.add_argument("--test", default="15d")
    ap.add_argument("--step", default="15d")
    args = ap.parse_args()
    exp = ExperimentConfig.load(experiment_path("eth_btc_5m"))
    marks: list[tuple[float, str]] = []

    def progress(line: str) -> None:
        if line.startswith("fold "):
            marks.append((time.perf_counter(), line))

    with tempfile.TemporaryDirectory(prefix="raytrade-bench-wf-") as tmp:
        store = PolicyStore((Path(tmp) / "store").as_uri())
        t0 = time.perf_counter()
        result = run_walkforward(exp, Path(tmp) / "folds", store,
                                 train_ms=duration_ms(args.train),
                                 test_ms=duration_ms(args.test),
                                 step_ms=duration_ms(args.step), time_budget_s=args.budget,
                                 progress=progress)
        total = time.perf_counter() - t0
    marks.append((t0 + total, "end"))
    folds: list[dict[str, Any]] = []
    for f in result.folds:
        start = next(t for t, m in marks if m.startswith(f"fold {f['index']}: training"))
        tested = next(t for t, m in marks if m.startswith(f"fold {f['index']}: published"))
        end = next(t for t, _ in marks if t > tested)  # the next fold starts, or the end
        eth = f["out_of_sample"]["ETHUSDT"]
        folds.append({"fold": f["index"], "train_s": round(tested - start, 1),
                      "evaluate_s": round(end - tested, 1), "iterations": f["iterations"],
                      "env_steps_trained": f["env_steps_trained"],
                      "eth_oos_return": round(eth["policy"]["total_return"], 4),
                      "eth_oos_buy_and_hold_return": round(eth["buy_and_hold"]
                                                           ["total_return"], 4),
                      "eth_oos_sharpe": eth["policy"]["sharpe"]})
    print(json.dumps({"bench": "walkforward", "machine": {"cpus": os.cpu_count(),
                                                          "python": platform.python_version()},
                      "config": vars(args), "folds": folds, "wall_s": round(total, 1)},
                     indent=2))


if __name__ == "__main__":
    main()
