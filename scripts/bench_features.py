"""Benchmark the feature pipeline; prints JSON.

- batch: seconds to compute the default FeatureSpec (73 features) for N bars (default
  1,000,000) on one core, after a warm-up call (numba JIT cache), best of ``--repeat``;
- streaming: per-bar latency of ``StreamingFeatures.update`` (µs, p50/p99/max) over
  ``--stream-bars`` bars after a warm-up of 5,000 bars;
- reference: TA-Lib computing only RSI, ATR, Bollinger bands and MACD on the same bars,
  side by side, to put the full pipeline's cost in context.

Bars: a seeded synthetic regime market (the asset) and a second one (the reference asset).
Usage: ``python scripts/bench_features.py [--bars N] [--stream-bars M] [--repeat K]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np
from raytrade.envs.features import FeaturePipeline, FeatureSpec
from raytrade.envs.synthetic import planted_market


def _best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--stream-bars", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    spec = FeatureSpec()
    asset = planted_market(args.bars, seed=1, symbol="ASSETUSDT").bars
    ref = planted_market(args.bars, seed=2, symbol="BTCUSDT").bars
    pipe = FeaturePipeline(spec)

    t0 = time.perf_counter()
    pipe.compute(asset.slice(0, 1000), ref.slice(0, 1000))
    first_call = time.perf_counter() - t0
    batch = _best(lambda: pipe.compute(asset, ref), args.repeat)

    import talib  # reference implementation, C

    c, h, lo = asset.close, asset.high, asset.low

    def talib_subset() -> None:
        talib.RSI(c, 14)
        talib.ATR(h, lo, c, 14)
        talib.BBANDS(c, 20, 2.0, 2.0)
        talib.MACD(c, 12, 26, 9)

    talib_time = _best(talib_subset, args.repeat)

    state = pipe.stream()
    n = min(args.stream_bars + 5000, args.bars)
    warm = 5000
    bars = [asset.bar(i) for i in range(n)]
    refs = [ref.bar(i) for i in range(n)]
    for i in range(warm):
        state.update(bars[i], refs[i])
    lat = np.empty(n - warm)
    for k, i in enumerate(range(warm, n)):
        t0 = time.perf_counter()
        state.update(bars[i], refs[i])
        lat[k] = time.perf_counter() - t0
    lat_us = lat * 1e6

    print(json.dumps({
        "benchmark": "features",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "numba_threads": os.environ["NUMBA_NUM_THREADS"]},
        "spec": {"features": spec.n_features, "hash": spec.hash[:16]},
        "batch": {"bars": args.bars, "seconds": round(batch, 3),
                  "bars_per_second": round(args.bars / batch),
                  "first_call_seconds_incl_jit_or_cache_load": round(first_call, 3)},
        "streaming_update_us": {"bars": len(lat_us),
                                "p50": round(float(np.percentile(lat_us, 50)), 1),
                                "p99": round(float(np.percentile(lat_us, 99)), 1),
                                "max": round(float(lat_us.max()), 1)},
        "reference_talib_rsi_atr_bbands_macd": {"bars": args.bars,
                                                "seconds": round(talib_time, 3)},
    }, indent=2))


if __name__ == "__main__":
    main()
