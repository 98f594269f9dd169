"""Hot-swap latency of the policy executor, on a local store and on an S3-compatible one
(moto's server on loopback, over HTTP); prints JSON.

A decision thread asks the executor for decisions back to back while its poll thread
follows ``candidate``; the main thread publishes ``--versions`` new bundles. Reported per
backend:

- ``swap_ms``: from ``publish()`` returning (the version is visible) to the first decision
  made by that version, p50 / p99 / max; the floor is the poll interval;
- ``publish_ms``: how long ``publish()`` itself took;
- ``decision_us``: decision latency outside swaps and during swaps (from publish to the
  first decision on the new version, when the executor downloads, validates and loads),
  p50 / p99 / max: a swap must not stall decisions.

Usage: ``python scripts/bench_hotswap.py [--versions 30] [--poll 0.05]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import threading
import time
from typing import Any

import numpy as np
import torch
from raytrade.actors.executor import PolicyExecutor
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.export import random_bundle
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.scripts.s3_local import MotoServer


def _pct(values: list[float], scale: float = 1.0) -> dict[str, float]:
    if not values:
        return {"n": 0}
    a = np.asarray(values) * scale
    return {"n": len(a), "p50": round(float(np.percentile(a, 50)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "max": round(float(a.max()), 3)}


def run_backend(store: PolicyStore, exp: ExperimentConfig, versions: int, poll_s: float,
                gap_s: float) -> dict[str, Any]:
    """Publish ``versions`` bundles while deciding continuously; the measurements."""
    bundles = [random_bundle(exp, seed=s) for s in range(versions + 1)]
    store.publish(bundles[0])
    executor = PolicyExecutor(store, "candidate", poll_interval_s=poll_s,
                              max_backoff_s=max(poll_s, 5.0)).start()
    policy = executor.policy
    assert policy is not None
    obs = policy.canned_observations(16, seed=1)
    log: list[tuple[float, float, int | None]] = []  # (start, seconds, version)
    stop = threading.Event()

    def decide() -> None:
        i = 0
        while not stop.is_set():
            t0 = time.perf_counter()
            d = executor.decide(obs[i % len(obs)])
            log.append((t0, time.perf_counter() - t0, d.version))
            i += 1

    worker = threading.Thread(target=decide, daemon=True)
    worker.start()
    time.sleep(0.5)
    published: list[tuple[int, float, float]] = []  # (version, start, visible)
    for files in bundles[1:]:
        t0 = time.perf_counter()
        v = store.publish(files)
        published.append((v, t0, time.perf_counter()))
        deadline = time.perf_counter() + 30
        while executor.version != v and time.perf_counter() < deadline:
            time.sleep(poll_s / 10)
        time.sleep(gap_s)
    stop.set()
    worker.join()
    executor.stop()
    swap, windows = [], []
    for v, _, visible in published:
        first = next((t for t, _, ver in log if ver == v), None)
        if first is not None:
            swap.append(first - visible)
            windows.append((visible, first))
    during: list[float] = []
    normal: list[float] = []
    for t, dt, _ in log:
        (during if any(a <= t <= b for a, b in windows) else normal).append(dt)
    return {"swap_ms": _pct(swap, 1e3),
            "publish_ms": _pct([b - a for _, a, b in published], 1e3),
            "decision_us": {"normal": _pct(normal, 1e6), "during_swap": _pct(during, 1e6)},
            "decisions": len(log), "missed_versions": versions - len(swap)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=30)
    parser.add_argument("--poll", type=float, default=0.05, help="poll interval, seconds")
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between publishes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    exp = ExperimentConfig.load(experiment_path("eth_btc_5m"))  # the real feature set
    exp = dataclasses.replace(exp, network=dataclasses.replace(exp.network, hidden=(256, 256)))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rt-hotswap-") as tmp:
        results["local"] = run_backend(PolicyStore(f"file://{tmp}"), exp, args.versions,
                                       args.poll, args.gap)
    with MotoServer() as s3:
        store = PolicyStore(f"s3://{s3.new_bucket()}/bench", endpoint_url=s3.endpoint_url)
        results["s3_moto"] = run_backend(store, exp, args.versions, args.poll, args.gap)
    print(json.dumps({"benchmark": "hotswap", "versions": args.versions,
                      "poll_interval_s": args.poll, "network": list(exp.network.hidden),
                      "machine": {"python": platform.python_version(),
                                  "cpus": os.cpu_count()},
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
