"""Benchmark the feature pipeline; prints JSON.

- batch: seconds to compute the default FeatureSpec (73 features) for N bars (default
  1,000,000) on one core, after a warm-up call (numba JIT cache), best of ``--repeat``;
- streaming: per-bar latency of ``StreamingFeatures.update`` (µs): p50, p90, p99 and max
  of ``--stream-bars`` updates after a warm-up of 5,000 bars, each run on a fresh state;
  every statistic as median, min and max over ``--stream-repeats`` runs (>= 3 by
  default), never the best run;
- reference: TA-Lib computing only RSI, ATR, Bollinger bands and MACD on the same bars,
  side by side, to put the full pipeline's cost in context.

The record carries the machine's load average at the start and the end: the numbers are
only comparable under similar load. ``--quick`` is the CI size (it checks that every field
is reported, not the speed).

Bars: a seeded synthetic regime market (the asset) and a second one (the reference asset).
Usage: ``python scripts/bench_features.py [--bars N] [--stream-bars M] [--stream-repeats R]
[--repeat K] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np
from raytrade.envs.bars import Bar
from raytrade.envs.features import FeaturePipeline, FeatureSpec
from raytrade.envs.synthetic import planted_market
from raytrade.scripts.bench_stats import spread

WARMUP_BARS = 5000
PERCENTILES = (50, 90, 99)


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def stream_latency_us(pipe: FeaturePipeline, bars: list[Bar], refs: list[Bar],
                      warm: int) -> dict[str, float]:
    """p50/p90/p99/max (µs) of ``update`` over ``bars[warm:]`` on a fresh state."""
    state = pipe.stream()
    for i in range(warm):
        state.update(bars[i], refs[i])
    lat = np.empty(len(bars) - warm)
    clock = time.perf_counter
    for k in range(len(lat)):
        bar, ref = bars[warm + k], refs[warm + k]
        t0 = clock()
        state.update(bar, ref)
        lat[k] = clock() - t0
    lat *= 1e6
    out = {f"p{q}": float(np.percentile(lat, q)) for q in PERCENTILES}
    out["max"] = float(lat.max())
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark record (see the module docstring)."""
    load_before = os.getloadavg()
    spec = FeatureSpec()
    n_bars = max(args.bars, args.stream_bars + args.warmup)
    asset = planted_market(n_bars, seed=1, symbol="ASSETUSDT").bars
    ref = planted_market(n_bars, seed=2, symbol="BTCUSDT").bars
    pipe = FeaturePipeline(spec)

    t0 = time.perf_counter()
    pipe.compute(asset.slice(0, 1000), ref.slice(0, 1000))
    first_call = time.perf_counter() - t0
    batch_asset, batch_ref = asset.slice(0, args.bars), ref.slice(0, args.bars)
    batch = _best(lambda: pipe.compute(batch_asset, batch_ref), args.repeat)

    import talib  # reference implementation, C

    c, h, lo = batch_asset.close, batch_asset.high, batch_asset.low

    def talib_subset() -> None:
        talib.RSI(c, 14)
        talib.ATR(h, lo, c, 14)
        talib.BBANDS(c, 20, 2.0, 2.0)
        talib.MACD(c, 12, 26, 9)

    talib_time = _best(talib_subset, args.repeat)

    n = args.stream_bars + args.warmup
    bars = [asset.bar(i) for i in range(n)]
    refs = [ref.bar(i) for i in range(n)]
    runs = [stream_latency_us(pipe, bars, refs, args.warmup) for _ in range(args.stream_repeats)]
    streaming: dict[str, Any] = {"bars": args.stream_bars, "warmup_bars": args.warmup,
                                 "repeats": args.stream_repeats}
    for key in runs[0]:
        streaming[key] = spread([round(r[key], 2) for r in runs])

    return {
        "benchmark": "features",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "numba_threads": os.environ["NUMBA_NUM_THREADS"],
                    "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
                    "loadavg_1_5_15_after": [round(x, 2) for x in os.getloadavg()]},
        "spec": {"features": spec.n_features, "hash": spec.hash[:16]},
        "batch": {"bars": args.bars, "seconds": round(batch, 3),
                  "bars_per_second": round(args.bars / batch),
                  "first_call_seconds_incl_jit_or_cache_load": round(first_call, 3)},
        "streaming_update_us": streaming,
        "targets": {"streaming_p99_under_50us": streaming["p99"]["median"] < 50.0},
        "reference_talib_rsi_atr_bbands_macd": {"bars": args.bars,
                                                "seconds": round(talib_time, 3)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--stream-bars", type=int, default=50_000)
    parser.add_argument("--stream-repeats", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="CI size: 2,000 batch bars, 200 streamed after a 300-bar warm-up")
    args = parser.parse_args(argv)
    args.warmup = WARMUP_BARS
    if args.quick:
        args.bars, args.stream_bars, args.warmup, args.repeat = 2000, 200, 300, 1
    if min(args.bars, args.stream_bars, args.stream_repeats, args.repeat) < 1:
        parser.error("bars, stream-bars, stream-repeats and repeat must be >= 1")
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
