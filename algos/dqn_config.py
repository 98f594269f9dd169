"""ExperimentConfig -> RLlib ``DQNConfig``: the one place our config meets RLlib's."""

from __future__ import annotations

import dataclasses
from typing import Any

from ray.rllib.algorithms.dqn import DQNConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.tune.registry import register_env
from raytrade.algos.apex_dqn import ApeXDQN
from raytrade.algos.apex_epsilon import ApeXEnvRunner
from raytrade.algos.callbacks import TradingMetricsCallback
from raytrade.algos.conv_encoder import CONV_KEY, WindowConvDQNCatalog
from raytrade.algos.experiment import ExperimentConfig
from raytrade.envs.env_spec import EnvSpec
from raytrade.envs.errors import ConfigError
from raytrade.envs.registration import make_env

ENV_NAME = "raytrade_trading"


class ApeXDQNConfig(DQNConfig):
    """DQNConfig plus the Ape-X epsilon ladder read by :class:`ApeXEnvRunner`."""

    def __init__(self, algo_class: Any = None) -> None:
        super().__init__(algo_class=algo_class or ApeXDQN)
        self.apex_epsilon = 0.4
        self.apex_alpha = 7.0
        self.apex_decay_steps = 0
        self.live_enabled = False
        self.live_capacity = 100_000
        self.live_run_id: str | None = None
        self.live_feature_hash: str | None = None
        self.apex_async = True
        self.apex_max_updates_per_step = 16
        self.apex_beta_final = 1.0
        self.apex_beta_anneal_steps = 0
        self.apex_replay_layout = "episodes"
        self.apex_window = 0
        self.apex_bars_per_transition = 1.0
        self.apex_weights_every = 4
        self.env_runners(env_runner_cls=ApeXEnvRunner)

    def get_default_rl_module_spec(self) -> Any:
        """Stock DQN module, with a catalog that can build the window conv encoder."""
        spec: Any = super().get_default_rl_module_spec()
        spec.catalog_class = WindowConvDQNCatalog
        return spec

    def live(self, *, enabled: bool, capacity: int) -> ApeXDQNConfig:
        """Drain paper-trading experience into replay (see ``live_experience.py``)."""
        self.live_enabled = enabled
        self.live_capacity = capacity
        return self

    def live_run(self, run_id: str, feature_hash: str) -> ApeXDQNConfig:
        """The run's identity (its store URI: names the live queue) and the FeatureSpec hash
        live transitions must carry (see ``live_experience.py``)."""
        self.live_run_id = run_id
        self.live_feature_hash = feature_hash
        return self

    def compact(self, *, window: int, bars_per_transition: float,
                weights_every: int) -> ApeXDQNConfig:
        """Use the compact pipeline (``apex_compact.py``) for observations of ``window``
        bars whose decisions are about ``bars_per_transition`` bars apart."""
        self.apex_replay_layout = "compact"
        self.apex_window = window
        self.apex_bars_per_transition = bars_per_transition
        self.apex_weights_every = weights_every
        # its requests carry the global step count; no end-of-iteration state broadcast
        self._dont_auto_sync_env_runner_states = True
        # one request in flight per runner: a runner's fragments then arrive in order,
        # and a restart after a lost fragment is not followed by stale ones
        self.env_runners(max_requests_in_flight_per_env_runner=1)
        return self

    def apex(self, *, epsilon: float, alpha: float, decay_steps: int) -> ApeXDQNConfig:
        """Set the ladder (see ``apex_epsilon.py``)."""
        self.apex_epsilon = epsilon
        self.apex_alpha = alpha
        self.apex_decay_steps = decay_steps
        return self

    def apex_learning(self, *, async_sampling: bool, max_updates_per_step: int,
                      beta_final: float, beta_anneal_steps: int) -> ApeXDQNConfig:
        """Sampling mode, update cap per step and PER beta schedule (``apex_dqn.py``)."""
        self.apex_async = async_sampling
        # RLlib's end-of-iteration connector-state sync calls every runner synchronously,
        # which queues behind a slow runner's sample and stalls the iteration. Our env
        # connectors are stateless; the global step count travels with each request instead.
        self._dont_auto_sync_env_runner_states = async_sampling
        self.apex_max_updates_per_step = max_updates_per_step
        self.apex_beta_final = beta_final
        self.apex_beta_anneal_steps = beta_anneal_steps
        return self


def env_config(spec: EnvSpec, split: str = "train") -> dict[str, Any]:
    """The ``env_config`` dict ``registration.make_env`` receives on every runner: the
    one env spec (sources, split fractions, features, EnvConfig, the driver's
    normalizer) and the split."""
    return spec.env_config(split)


def model_config(exp: ExperimentConfig) -> dict[str, Any]:
    """RLlib's model config: its MLP settings, plus the window conv when asked for."""
    net = exp.network
    out = dataclasses.asdict(DefaultModelConfig(fcnet_hiddens=list(net.hidden),
                                                fcnet_activation=net.activation))
    encoder = exp.encoder_spec()
    if encoder["kind"] == "conv1d":
        out[CONV_KEY] = encoder
    return out


def build_dqn_config(exp: ExperimentConfig, spec: EnvSpec | None = None) -> ApeXDQNConfig:
    """The DQN (double, dueling, n-step, prioritized replay, Ape-X ladder) of ``exp``,
    sampling the env of ``spec`` (default: ``exp.fit_env_spec()``, which prepares the data
    and fits the normalizer here, in the driver)."""
    spec = spec or exp.fit_env_spec()
    if spec.env != exp.env or spec.features != exp.features:
        raise ConfigError("the env spec was not made from this experiment's [env] and "
                          "[features]")
    if exp.replay.layout == "compact" and not exp.resources.async_sampling:
        raise ConfigError("resources.async_sampling = false needs replay.layout = "
                          "\"episodes\": the compact pipeline always samples asynchronously")
    register_env(ENV_NAME, make_env)
    res, dqn, ft = exp.resources, exp.dqn, exp.fault_tolerance
    config = (
        ApeXDQNConfig()
        .environment(ENV_NAME, env_config=env_config(spec))
        .env_runners(num_env_runners=res.num_env_runners,
                     num_envs_per_env_runner=res.num_envs_per_env_runner,
                     rollout_fragment_length=res.rollout_fragment_length,
                     gym_env_vectorize_mode="vector_entry_point",
                     custom_resources_per_env_runner=dict(res.env_runner_resources),
                     sample_timeout_s=ft.sample_timeout_s)
        .fault_tolerance(restart_failed_env_runners=ft.restart_failed_env_runners,
                         max_num_env_runner_restarts=ft.max_env_runner_restarts,
                         delay_between_env_runner_restarts_s=ft.restart_delay_s)
        .learners(num_learners=res.num_learners, num_gpus_per_learner=res.num_gpus_per_learner,
                  custom_resources_per_learner=dict(res.learner_resources))
        .training(gamma=dqn.gamma, lr=dqn.lr_or_schedule(),
                  train_batch_size_per_learner=dqn.train_batch_size,
                  n_step=dqn.n_step, double_q=dqn.double_q, dueling=dqn.dueling,
                  target_network_update_freq=dqn.target_update_freq,
                  num_steps_sampled_before_learning_starts=dqn.learning_starts,
                  training_intensity=dqn.replay_ratio,
                  grad_clip=dqn.grad_clip,  # type: ignore[arg-type]  # RLlib says int; 40.0 is its default
                  replay_buffer_config={"type": "PrioritizedEpisodeReplayBuffer",
                                        "capacity": exp.replay.capacity,
                                        "alpha": exp.replay.alpha, "beta": exp.replay.beta})
        .rl_module(model_config=model_config(exp))
        .callbacks(TradingMetricsCallback)
        .debugging(seed=exp.seed)
    )
    config = config.apex(epsilon=exp.exploration.epsilon, alpha=exp.exploration.alpha,
                       decay_steps=exp.exploration.decay_steps) \
        .apex_learning(async_sampling=res.async_sampling,
                       max_updates_per_step=dqn.max_updates_per_step,
                       beta_final=exp.replay.beta_final,
                       beta_anneal_steps=exp.replay.beta_anneal_steps) \
        .live(enabled=exp.live.enabled, capacity=exp.live.capacity)
    if exp.replay.layout == "compact":
        config = config.compact(window=exp.env.window,
                                bars_per_transition=float(min(exp.env.decision.every_bars,
                                                              exp.env.window)),
                                weights_every=dqn.weights_every)
    return config
