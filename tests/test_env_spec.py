"""One env spec across the RLlib boundary: the runners train on the experiment's split, with
the normalizer fitted once in the driver, which the bundle ships."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from raytrade.algos.dqn_config import build_dqn_config, env_config
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.policy import Policy
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.algos.train import train
from raytrade.envs import market
from raytrade.envs.dataset import prepare_features
from raytrade.envs.env_spec import EnvSpec
from raytrade.envs.errors import ConfigError
from raytrade.envs.features.normalizer import Normalizer
from raytrade.envs.market import synthetic_source

SOURCE = "synthetic:regime:seed=7:n=6000"


def _experiment() -> ExperimentConfig:
    """synthetic_regime on a small market with a 60 / 20 / 20 split, one remote runner."""
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    return dataclasses.replace(
        exp, data=dataclasses.replace(exp.data, sources=(SOURCE,), train=0.6, validation=0.2),
        env=dataclasses.replace(exp.env, max_episode_steps=300),
        dqn=dataclasses.replace(exp.dqn, learning_starts=128, train_batch_size=32,
                                replay_ratio=0.25),
        resources=dataclasses.replace(exp.resources, num_env_runners=1,
                                      num_envs_per_env_runner=4, rollout_fragment_length=64),
        # one iteration does not beat flat after costs: publish anyway, the test reads the
        # bundle's normalizer and data ranges, not its merit
        selection=dataclasses.replace(exp.selection, require_beat_flat=False))


def _train_split_normalizer(exp: ExperimentConfig) -> tuple[Normalizer, Any, int]:
    """Independently of the env spec: the normalizer of the first 60 % of the bars, the
    raw features, and the index of the first bar after the cut."""
    bars, features, splits = prepare_features(synthetic_source(SOURCE).bars, None,
                                              exp.features, train=0.6, validation=0.2)
    assert splits.train.stop == round(0.6 * len(bars))
    norm = Normalizer.fit(features, exp.features, start=0, stop=splits.train.stop)
    return norm, features, splits.train.stop


def _probe(runner: Any) -> dict[str, Any]:
    """Inside a remote env runner: sample episodes with random actions and report the
    latest bar any step closed, and the runner's own normalized features."""
    latest = 0
    for _ in range(12):
        for episode in runner.sample(num_timesteps=1200, random_actions=True):
            latest = max([latest, *(int(i["ts"]) for i in episode.get_infos())])
    env = runner.env.unwrapped
    return {"latest_ts": latest, "z": np.asarray(env.markets[0].z),
            "last": [int(m.last) for m in env.markets]}


def test_runners_never_touch_a_bar_after_the_train_cut_and_the_bundle_ships_their_normalizer(
        tmp_path: Path, local_ray: None) -> None:
    exp = _experiment()
    expected, features, cut = _train_split_normalizer(exp)
    ts = synthetic_source(SOURCE).bars.ts
    spec = exp.fit_env_spec()
    algo = build_dqn_config(exp, spec).build_algo()
    try:
        [probe] = algo.env_runner_group.foreach_env_runner(_probe, local_env_runner=False)
    finally:
        algo.stop()
    # episodes reach the last training bar and never the first bar after the 60 % cut
    # (the old env_config dropped the fractions: runners used 70 %)
    assert probe["last"] == [cut - 2]
    assert ts[cut - 600] < probe["latest_ts"] < ts[cut]
    np.testing.assert_array_equal(probe["z"], expected.transform(features.values))
    # training publishes a bundle whose normalizer is exactly that one, with the data ranges
    before = market._prepared.cache_info().misses
    result = train(exp, tmp_path, iterations=1, eval_every=100, checkpoint_every=100,
                   progress=lambda _: None)
    # the driver prepares market data once: training, evaluation and publisher reuse it
    assert market._prepared.cache_info().misses == before
    policy = Policy(PolicyStore(tmp_path.as_uri()).files(result.published[0]))
    shipped = policy.normalizer
    np.testing.assert_array_equal(shipped.mean, expected.mean)
    np.testing.assert_array_equal(shipped.std, expected.std)
    assert shipped.fit_end_ts < ts[cut] and shipped.fitted_rows == expected.fitted_rows
    data = policy.manifest.data
    assert data is not None and (data.train, data.validation) == (0.6, 0.2)
    [ranges] = data.datasets
    assert (ranges.train.first_ts, ranges.train.last_ts, ranges.train.bars) == (
        int(ts[0]), int(ts[cut - 1]), cut)
    assert ranges.validation.first_ts == int(ts[cut])
    assert policy.manifest.env_spec().to_dict() == spec.to_dict()


def test_env_config_round_trips_and_refuses_what_it_does_not_know() -> None:
    exp = _experiment()
    spec = exp.fit_env_spec()
    config = env_config(spec, "validation")
    # what RLlib pickles to the runners is plain JSON
    again, split, num_envs = EnvSpec.from_env_config(json.loads(json.dumps(config)))
    assert again.to_dict() == spec.to_dict() and split == "validation" and num_envs is None
    assert again.markets("validation")[0].last == round(0.8 * 6000) - 2
    with pytest.raises(ConfigError, match=r"env_config\.split: missing"):
        EnvSpec.from_env_config({"env_spec": config["env_spec"]})
    with pytest.raises(ConfigError, match="num_envs"):
        EnvSpec.from_env_config(config | {"num_envs": 0})
    bad = json.loads(json.dumps(config))
    bad["env_spec"]["normalizer"]["mean"] = bad["env_spec"]["normalizer"]["mean"][:-1]
    with pytest.raises(ConfigError, match=r"env_config\.env_spec\.normalizer"):
        EnvSpec.from_env_config(bad)
    bad = json.loads(json.dumps(config))
    bad["env_spec"]["validation"] = 0.5
    with pytest.raises(ConfigError, match="sum below 1"):
        EnvSpec.from_env_config(bad)
    other = dataclasses.replace(exp, env=dataclasses.replace(exp.env, window=8))
    with pytest.raises(ConfigError, match="not made from this experiment"):
        build_dqn_config(other, spec)
