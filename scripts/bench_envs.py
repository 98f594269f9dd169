"""Environment speed, side by side in one run; prints JSON.

Every environment runs in its own fresh Python process (importing gym_trading_env turns
every warning into an error process-wide, so it must not share a process), on the bundled
BTCUSDT 5-minute bars, with positions [-1, 0, 1], a 10 bp fee and a 16-bar window:

- ``raytrade_scalar``: TradingEnv, full observation (16 x 73 features + 4 position
  state), fees, spread/impact slippage, risk rules;
- ``raytrade_vector64``: VectorTradingEnv with 64 sub-environments (env steps counted);
- ``gym_trading_env``: gym-trading-env's TradingEnv fed the same 73 normalized features,
  windows=16, trading_fees=0.001;
- ``gym_anytrading``: gym-anytrading's StocksEnv, window_size=16 (its own 2 features);
- ``minimal_numpy`` and ``minimal_numpy_vector64``: the least an env can do (slice a
  precomputed window, reward = position x return), as a ceiling for Python envs.

Reported per env: env steps per second over random actions (episodes reset as they end),
mean reset time (µs, including re-seeding), and resident memory added by building the env
(MB). Each env first takes 2,000 untimed warm-up steps (JIT compilation, caches). This is
a shared 2-core machine: compare ratios within one run, not absolute numbers across runs.
Usage: ``python scripts/bench_envs.py [--seconds S]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from raytrade.envs.market import MarketData, load_markets

WINDOW = 16


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _features() -> list[MarketData]:

    markets, _ = load_markets("sample:BTCUSDT", window=WINDOW)
    return markets


def _timed_loop(step, reset, n_envs: int, seconds: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    import numpy as np

    rng = np.random.default_rng(0)
    reset()
    warm = rng.integers(0, 3, size=(2000, n_envs) if n_envs > 1 else 2000)
    for a in warm:  # compile and fill caches before timing anything
        step(a)
    t_reset = time.perf_counter()
    for _ in range(50):
        reset()
    reset_us = (time.perf_counter() - t_reset) / 50 * 1e6
    reset()
    actions = rng.integers(0, 3, size=(100_000, n_envs) if n_envs > 1 else 100_000)
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for k in range(2000):
            step(actions[(steps // n_envs + k) % len(actions)])
        steps += 2000 * n_envs
    return steps / (time.perf_counter() - start), reset_us


def worker(name: str, seconds: float) -> dict[str, object]:
    """Build one env in this process and measure it."""
    import numpy as np

    if name in ("raytrade_scalar", "raytrade_vector64"):
        markets = _features()
        base = _rss_mb()
        if name == "raytrade_scalar":
            from raytrade.envs.trading_env import TradingEnv

            env = TradingEnv(markets, config={"window": WINDOW, "max_episode_steps": 2048})
            mem = _rss_mb() - base

            def step(a):  # type: ignore[no-untyped-def]
                _, _, term, trunc, _ = env.step(a)
                if term or trunc:
                    env.reset()

            rate, reset_us = _timed_loop(step, lambda: env.reset(seed=0), 1, seconds)
        else:
            from raytrade.envs.vector_env import VectorTradingEnv

            venv = VectorTradingEnv(64, markets, config={"window": WINDOW,
                                                         "max_episode_steps": 2048})
            mem = _rss_mb() - base
            rate, reset_us = _timed_loop(venv.step, lambda: venv.reset(seed=0), 64, seconds)
        return {"steps_per_s": rate, "reset_us": reset_us, "memory_mb": mem,
                "obs_dim": WINDOW * 73 + 4}
    if name == "gym_trading_env":
        markets = _features()
        m = markets[0]

        from raytrade.envs.io import load_bars
        from raytrade.envs.sample import sample_path

        bars = load_bars(sample_path("BTCUSDT"))
        df = bars.to_frame().set_index("timestamp")
        for j in range(m.z.shape[1]):
            df[f"feature_{j}"] = m.z[:, j]
        df = df.iloc[m.first:].copy()
        base = _rss_mb()
        import warnings

        from gym_trading_env.environments import TradingEnv as GymTradingEnv

        # its import sets warnings.filterwarnings("error") process-wide, which turns
        # pandas 3's deprecation notices inside it into crashes; undo that here only
        warnings.filterwarnings("ignore")

        env = GymTradingEnv(df, positions=[-1, 0, 1], windows=WINDOW, trading_fees=0.001,
                  borrow_interest_rate=0.0, verbose=0, max_episode_duration=2048)
        mem = _rss_mb() - base

        def step(a):  # type: ignore[no-untyped-def]
            _, _, term, trunc, _ = env.step(int(a))
            if term or trunc:
                env.reset()

        rate, reset_us = _timed_loop(step, lambda: env.reset(seed=0), 1, seconds)
        return {"steps_per_s": rate, "reset_us": reset_us, "memory_mb": mem,
                "obs_dim": int(np.prod(env.observation_space.shape))}
    if name == "gym_anytrading":
        from raytrade.envs.io import load_bars
        from raytrade.envs.sample import sample_path

        bars = load_bars(sample_path("BTCUSDT"))
        df = bars.to_frame().set_index("timestamp")
        df.columns = ["Open", "High", "Low", "Close", "Volume"]
        base = _rss_mb()
        from gym_anytrading.envs import StocksEnv

        env = StocksEnv(df=df, window_size=WINDOW, frame_bound=(WINDOW, len(df)))
        mem = _rss_mb() - base

        def step(a):  # type: ignore[no-untyped-def]
            _, _, term, trunc, _ = env.step(int(a) % 2)
            if term or trunc:
                env.reset()

        rate, reset_us = _timed_loop(step, lambda: env.reset(seed=0), 1, seconds)
        return {"steps_per_s": rate, "reset_us": reset_us, "memory_mb": mem,
                "obs_dim": int(np.prod(env.observation_space.shape)),
                "note": "2 actions (sell, buy), its own 2 features"}
    if name in ("minimal_numpy", "minimal_numpy_vector64"):
        markets = _features()
        m = markets[0]
        z = np.nan_to_num(m.z)
        close = m.market[1]
        ret = np.concatenate([np.diff(close) / close[:-1], [0.0]])
        pos = np.array([-1.0, 0.0, 1.0])
        n = 64 if name.endswith("64") else 1
        t = np.full(n, m.first)
        base = _rss_mb()
        mem = _rss_mb() - base
        if n == 1:
            state = {"t": m.first}

            def step(a):  # type: ignore[no-untyped-def]
                i = state["t"]
                obs = z[i - WINDOW + 1:i + 1].ravel()
                reward = pos[a] * ret[i]
                state["t"] = i + 1 if i + 1 < m.last else m.first
                return obs, reward, False, False, {}

            rate, reset_us = _timed_loop(step, lambda: state.update(t=m.first), 1, seconds)
        else:
            idx = np.arange(-WINDOW + 1, 1)

            def vstep(a):  # type: ignore[no-untyped-def]
                obs = z[(t[:, None] + idx[None, :])].reshape(n, -1)
                reward = pos[a] * ret[t]
                t[:] = np.where(t + 1 < m.last, t + 1, m.first)
                return obs, reward

            rate, reset_us = _timed_loop(vstep, lambda: t.fill(m.first), 64, seconds)
        return {"steps_per_s": rate, "reset_us": reset_us, "memory_mb": mem,
                "obs_dim": WINDOW * 73}
    raise SystemExit(f"unknown env {name}")


ENVS = ("raytrade_scalar", "raytrade_vector64", "gym_trading_env", "gym_anytrading",
        "minimal_numpy", "minimal_numpy_vector64")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per env")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.seconds)))
        return
    results: dict[str, object] = {}
    for name in ENVS:
        proc = subprocess.run([sys.executable, __file__, "--worker", name, "--seconds",
                               str(args.seconds)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0:
            results[name] = {"error": proc.stderr.strip().splitlines()[-1:]}
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    def rate(k: str) -> float:
        r = results.get(k, {})
        return float(r.get("steps_per_s", float("nan"))) if isinstance(r, dict) else float("nan")

    gte = rate("gym_trading_env")
    print(json.dumps({
        "benchmark": "envs",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "setup": {"data": "bundled BTCUSDT 5m", "positions": [-1, 0, 1], "fee_bps": 10,
                  "window": WINDOW},
        "results": results,
        "speedup_vs_gym_trading_env": {
            "raytrade_scalar": round(rate("raytrade_scalar") / gte, 1),
            "raytrade_vector64": round(rate("raytrade_vector64") / gte, 1)},
    }, indent=2))


if __name__ == "__main__":
    main()
