"""Speed of an Ape-X runner's sampling loop alone, on one core; prints JSON.

:class:`~raytrade.algos.compact_sampler.CompactSampler` steps a 64-env
``VectorTradingEnv`` (bundled BTCUSDT 5-minute bars, 73 features, 16-bar window, the
default env otherwise) with greedy actions from RLlib's DQN module (the stock
``DefaultDQNTorchRLModule`` with a 128x128 MLP, dueling, as the default experiment builds
it; ``--encoder conv1d`` for the window conv) through ``apex_epsilon.greedy_of``, epsilon
0.1, in fragments of ``--steps`` steps. torch runs on one thread, as in a runner.

Reported: env steps per second of wall time and per second of this process's CPU time
(median, min and max of ``--repeats`` timed runs of ``--seconds`` each; on a busy machine
the CPU-time rate is what one dedicated core would do), and per vector step the CPU time
of the env's ``step`` alone, of the greedy call alone, and of the rest (epsilon-greedy,
row checks, packing the fragment, episode bookkeeping); bytes per fragment and per
transition.
Usage: ``python scripts/bench_sampler.py [--seconds S] [--repeats R] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

N_ENVS = 64
WINDOW = 16


def build_module(obs_space: Any, act_space: Any, encoder: str) -> Any:
    """The DQN module a runner builds (inference only), for ``encoder`` mlp or conv1d."""
    import dataclasses

    from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import (
        DefaultDQNTorchRLModule,
    )
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from raytrade.algos.conv_encoder import CONV_KEY, WindowConvDQNCatalog

    model = dataclasses.asdict(DefaultModelConfig(fcnet_hiddens=[128, 128],
                                                  fcnet_activation="relu"))
    model.update(dueling=True, double_q=True, num_atoms=1, v_min=-10.0, v_max=10.0,
                 epsilon=[(0, 1.0), (10000, 0.05)])
    if encoder == "conv1d":
        n_features = (int(obs_space.shape[0]) - 4) // WINDOW
        model[CONV_KEY] = {"window": WINDOW, "n_features": n_features, "extra": 4,
                           "channels": [32], "kernel": 3}
    return DefaultDQNTorchRLModule(  # type: ignore[no-untyped-call]
        observation_space=obs_space, action_space=act_space, model_config=model,
        inference_only=True, catalog_class=WindowConvDQNCatalog)


def run(seconds: float, repeats: int, steps: int, encoder: str, quick: bool
        ) -> dict[str, Any]:
    import torch
    from raytrade.algos.apex_epsilon import greedy_of
    from raytrade.algos.compact_sampler import CompactSampler
    from raytrade.envs.market import load_markets
    from raytrade.envs.vector_env import VectorTradingEnv

    torch.set_num_threads(1)
    if quick:  # the synthetic experiment's market (its own 19 features), prepared fast
        import dataclasses

        from raytrade.algos.experiment import ExperimentConfig
        from raytrade.algos.experiments import experiment_path

        exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
        exp = dataclasses.replace(
            exp, data=dataclasses.replace(exp.data, sources=("synthetic:regime:seed=1:n=3000",)),
            env=dataclasses.replace(exp.env, window=WINDOW))
        markets = exp.fit_env_spec().markets("train")
    else:
        markets, _ = load_markets("sample:BTCUSDT", window=WINDOW)
    env = VectorTradingEnv(N_ENVS, markets, config={"window": WINDOW})
    module = build_module(env.single_observation_space, env.single_action_space, encoder)
    greedy = greedy_of(module)
    sampler = CompactSampler(env, greedy, window=WINDOW, seed=0)
    frag = sampler.sample(steps, 0.1)  # warm-up: compile, caches, first reset
    for _ in range(3):
        sampler.sample(steps, 0.1)
    rates, cpu_rates = [], []
    for _ in range(repeats):
        n = 0
        start, cpu = time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            frag = sampler.sample(steps, 0.1)
            n += frag.n_steps * frag.n_envs
        rates.append(n / (time.perf_counter() - start))
        cpu_rates.append(n / (time.process_time() - cpu))
    # the parts alone, on the same observations
    obs = env.reset(seed=0)[0]
    actions = np.asarray(greedy(obs))
    reps = 200 if not quick else 20
    t = time.process_time()
    for _ in range(reps):
        env.step(actions)
    env_us = (time.process_time() - t) / reps * 1e6
    t = time.process_time()
    for _ in range(reps):
        greedy(obs)
    greedy_us = (time.process_time() - t) / reps * 1e6
    step_us = N_ENVS / statistics.median(cpu_rates) * 1e6
    return {"encoder": encoder, "n_envs": N_ENVS, "window": WINDOW,
            "n_features": sampler.n_features, "fragment_steps": steps,
            "env_steps_per_s": statistics.median(rates), "env_steps_per_s_min": min(rates),
            "env_steps_per_s_max": max(rates),
            "env_steps_per_cpu_s": statistics.median(cpu_rates),
            "env_steps_per_cpu_s_min": min(cpu_rates),
            "env_steps_per_cpu_s_max": max(cpu_rates), "repeats": repeats,
            "vector_step_us": step_us, "env_step_us": env_us, "greedy_us": greedy_us,
            "sampler_rest_us": step_us - env_us - greedy_us,
            "fragment_bytes": frag.nbytes,
            "bytes_per_transition": frag.nbytes / max(frag.env_steps, 1)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=32, help="vector steps per fragment")
    p.add_argument("--encoder", choices=("mlp", "conv1d"), default="mlp")
    p.add_argument("--quick", action="store_true",
                   help="CI: a small synthetic market and short runs (checks it runs)")
    args = p.parse_args(argv)
    seconds = 0.2 if args.quick else args.seconds
    print(json.dumps(run(seconds, args.repeats, args.steps, args.encoder, args.quick)))


if __name__ == "__main__":
    main()
