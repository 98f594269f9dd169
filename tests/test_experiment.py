"""Experiment files, the Ape-X ladder, and the DQNConfig built from them."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from raytrade.algos.apex_epsilon import apex_epsilon, epsilon_schedule, runner_rung
from raytrade.algos.dqn_config import build_dqn_config, env_config
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.envs.errors import ConfigError
from raytrade.envs.registration import make_env


def test_apex_ladder_matches_the_paper_formula() -> None:
    eps = [apex_epsilon(i, 8) for i in range(8)]
    assert eps[0] == pytest.approx(0.4)
    assert eps[7] == pytest.approx(0.4 ** 8)
    assert eps[3] == pytest.approx(0.4 ** (1 + 7 * 3 / 7))
    assert all(a > b for a, b in itertools.pairwise(eps))
    assert apex_epsilon(0, 1) == 0.4
    assert epsilon_schedule(1, 2, decay_steps=1000) == [(0, 1.0), (1000, 0.4 ** 8)]
    assert runner_rung(1, 4) == (0, 4) and runner_rung(4, 4) == (3, 4)
    assert runner_rung(0, 0) == (0, 1)
    with pytest.raises(ConfigError):
        apex_epsilon(5, 4)


@pytest.mark.parametrize("name", ["eth_btc_5m", "eth_btc_5m_cluster", "synthetic_regime",
                                  "synthetic_regime_costly", "eurusd_1h"])
def test_shipped_experiments_load_and_build(name: str) -> None:
    exp = ExperimentConfig.load(experiment_path(name))
    config = build_dqn_config(exp)
    assert config.double_q and config.dueling and config.n_step == exp.dqn.n_step
    assert config.replay_buffer_config["type"] == "PrioritizedEpisodeReplayBuffer"
    assert config.training_intensity == exp.dqn.replay_ratio
    assert config.gym_env_vectorize_mode == "vector_entry_point"
    assert config.env_runner_cls.__name__ == "ApeXEnvRunner"
    env = make_env(env_config(exp.fit_env_spec()) | {"num_envs": 2})
    assert env.single_observation_space.shape == (exp.env.window * exp.features.n_features + 4,)


@pytest.mark.parametrize(("text", "message"), [
    ("[dqn]\nlearning_rate = 0.1\n", r"\[dqn\] fields \['learning_rate'\]"),
    ("[optimizer]\nlr = 0.1\n", r"experiment fields \['optimizer'\]"),
    ("[env]\nwindow = 0\n", "window"),
    ("[dqn]\ngamma = 1.5\n", "gamma"),
    ("[features]\nrsi_period = 1\n", "rsi_period"),
    ("[dqn\n", "not valid TOML"),
    ("[dqn]\nlr_schedule = [[100, 1e-3]]\n", "lr_schedule"),
    ("[dqn]\nlr_schedule = [[0, 1e-3], [0, 1e-4]]\n", "lr_schedule"),
    ("[dqn]\nlr_schedule = [[0, -1e-3]]\n", "lr_schedule"),
    ("[replay]\nbeta_final = 1.5\n", "beta"),
    ("[dqn]\nmax_updates_per_step = 0\n", "max_updates_per_step"),
    ("[network]\nencoder = \"lstm\"\n", "encoder"),
    ("[network]\nencoder = \"conv1d\"\nconv_kernel = 2\n", "conv_kernel"),
    ("[selection]\nmetric = \"sortino\"\n", r"selection.metric must be one of"),
    ("[selection]\npatience = -1\n", r"selection.patience must be >= 0"),
    ("[selection]\nmin_improvement = -0.01\n", r"min_improvement"),
    ("[selection]\nstop_after = 3\n", r"\[selection\] fields \['stop_after'\]"),
])
def test_bad_experiment_files_name_file_and_field(tmp_path: Path, text: str,
                                                  message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig.load(path)


def test_schedules_and_sampling_mode_reach_the_rllib_config(tmp_path: Path) -> None:
    path = tmp_path / "sched.toml"
    path.write_text("[dqn]\nlr_schedule = [[0, 1e-3], [50000, 1e-4]]\n"
                    "[replay]\nbeta = 0.5\nbeta_final = 0.9\nbeta_anneal_steps = 1000\n"
                    "layout = \"episodes\"\n[resources]\nasync_sampling = false\n")
    exp = ExperimentConfig.load(path)
    config = build_dqn_config(exp)
    assert config.lr == [[0, 1e-3], [50000, 1e-4]]
    assert config.replay_buffer_config["beta"] == 0.5
    assert (config.apex_beta_final, config.apex_beta_anneal_steps) == (0.9, 1000)
    assert config.apex_async is False and config._dont_auto_sync_env_runner_states is False
    assert config.apex_replay_layout == "episodes"
    default = build_dqn_config(ExperimentConfig())
    assert default.apex_async is True and default._dont_auto_sync_env_runner_states is True
    assert default.apex_replay_layout == "compact" and default.apex_window == 16
    # the compact pipeline is always asynchronous: asking for synchronous sampling with it
    # is a contradiction, not something to ignore
    bad = tmp_path / "bad.toml"
    bad.write_text("[resources]\nasync_sampling = false\n")
    with pytest.raises(ConfigError, match="layout"):
        ExperimentConfig.load(bad)
