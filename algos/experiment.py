"""A typed experiment: one TOML file, frozen dataclasses, every field documented with units.

Sections: ``[data]``, ``[features]`` (FeatureSpec fields), ``[env]`` (EnvConfig fields,
with ``[env.costs]`` and ``[env.risk]``), ``[network]``, ``[dqn]``, ``[replay]``,
``[exploration]``, ``[resources]``, ``[fault_tolerance]``, ``[live]`` and ``[selection]``.
Missing fields take the documented defaults; unknown sections or fields are errors.
``dqn_config.build_dqn_config`` turns it into an RLlib ``DQNConfig`` in one place.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raytrade.algos.selection import METRICS
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.env_spec import EnvSpec
from raytrade.envs.errors import ConfigError, reject_unknown_fields
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.observation import POSITION_STATE_NAMES


@dataclass(frozen=True)
class DataConfig:
    """Where the bars come from and how they are split in time."""

    sources: tuple[str, ...] = ("sample:ETHUSDT", "sample:BTCUSDT")
    """Files, globs, ``sample:SYMBOL`` or ``synthetic:KIND[:seed=S][:n=N]``."""
    reference: str | None = None
    """Reference-asset file when the FeatureSpec uses one and no source is that symbol."""
    train: float = 0.7
    """Share of each series used for training (earliest bars)."""
    validation: float = 0.15
    """Share used for validation (after training); the rest is the test split."""


@dataclass(frozen=True)
class NetworkConfig:
    """The Q-network's MLP encoder."""

    hidden: tuple[int, ...] = (256, 256)
    """Units of each hidden layer."""
    activation: str = "relu"
    """Activation of the hidden layers (``relu``, ``tanh``, ``silu``)."""
    encoder: str = "mlp"
    """``mlp``: the flat observation through the hidden layers. ``conv1d``: a 1-D
    convolution over the feature window first (``window_conv.py``), then the hidden layers
    with the position state."""
    conv_channels: tuple[int, ...] = (32, 32)
    """Output channels of each Conv1d layer (``conv1d`` encoder)."""
    conv_kernel: int = 3
    """Kernel length in bars of every Conv1d layer; odd ('same' padding)."""


@dataclass(frozen=True)
class DQNSettings:
    """Learning rule: double, dueling, n-step DQN."""

    double_q: bool = True
    """Double Q-learning targets."""
    dueling: bool = True
    """Dueling value/advantage heads."""
    n_step: int = 3
    """Steps of real reward before bootstrapping."""
    gamma: float = 0.99
    """Discount per bar."""
    lr: float = 5e-4
    """Adam learning rate (the constant one, when ``lr_schedule`` is empty)."""
    lr_schedule: tuple[tuple[int, float], ...] = ()
    """Piecewise-linear learning rate: ``[[env_step, lr], ...]`` starting at step 0
    (RLlib's schedule format; constant after the last point). Empty = constant ``lr``."""
    train_batch_size: int = 256
    """Transitions per learner update (per learner)."""
    replay_ratio: float = 4.0
    """Transitions trained per transition sampled (RLlib's ``training_intensity``)."""
    target_update_freq: int = 2000
    """Env steps trained between target-network syncs."""
    learning_starts: int = 2000
    """Env steps sampled before the first update."""
    grad_clip: float = 40.0
    """Global gradient-norm clip."""
    max_updates_per_step: int = 16
    """Cap on learner updates per training step, so sampling results are collected often."""

    def lr_or_schedule(self) -> float | list[list[float]]:
        """What RLlib's ``lr`` takes: the constant, or the schedule as a list of pairs."""
        if not self.lr_schedule:
            return self.lr
        return [[int(t), float(v)] for t, v in self.lr_schedule]


@dataclass(frozen=True)
class ReplayConfig:
    """Prioritized replay (RLlib's ``PrioritizedEpisodeReplayBuffer``)."""

    capacity: int = 200_000
    """Transitions kept."""
    alpha: float = 0.6
    """Priority exponent (0 = uniform)."""
    beta: float = 0.4
    """Importance-sampling exponent at the start."""
    beta_final: float = 1.0
    """Importance-sampling exponent at the end of the anneal (1 = full correction)."""
    beta_anneal_steps: int = 0
    """Env steps added to replay over which beta goes linearly to ``beta_final`` (0 = constant
    ``beta``)."""


@dataclass(frozen=True)
class ExplorationConfig:
    """Ape-X epsilon ladder (``apex_epsilon.py``)."""

    epsilon: float = 0.4
    """Base epsilon of the ladder."""
    alpha: float = 7.0
    """Ladder exponent: runner i of N uses epsilon ** (1 + alpha * i / (N - 1))."""
    decay_steps: int = 0
    """Global env steps of a linear decay from 1 to each runner's rung (0 = none)."""


@dataclass(frozen=True)
class ResourcesConfig:
    """How much of the machine or cluster the run uses."""

    num_env_runners: int = 2
    """Remote env runners (0 samples in the driver)."""
    async_sampling: bool = True
    """Ape-X sampling: runners sample continuously and the learner never waits for the
    slowest one (``apex_dqn.py``); false = RLlib's synchronous sampling. Needs remote runners."""
    num_envs_per_env_runner: int = 16
    """Sub-envs stepped by each runner's VectorTradingEnv."""
    rollout_fragment_length: int = 32
    """Steps per sub-env per sample call."""
    num_learners: int = 0
    """Remote learners (0 trains in the driver)."""
    num_gpus_per_learner: float = 0.0
    """GPUs per learner (0 on CPU-only machines)."""
    env_runner_resources: Mapping[str, float] = field(default_factory=dict)
    """Custom Ray resources each env runner asks for, e.g. ``{rollout = 1}`` to place
    runners only on the cluster's ``cpu_rollout`` nodes (``cluster.yaml``)."""
    learner_resources: Mapping[str, float] = field(default_factory=dict)
    """Custom Ray resources each remote learner asks for."""


@dataclass(frozen=True)
class FaultToleranceConfig:
    """What happens when env runners fail (README "The fault model", training on Ray)."""

    restart_failed_env_runners: bool = True
    """Restart a crashed runner; it gets the current weights before it samples again."""
    max_env_runner_restarts: int = 1000
    """Restarts allowed over the whole run."""
    restart_delay_s: float = 1.0
    """Seconds between a failure and the restart (RLlib's default of 60 s is too slow)."""
    sample_timeout_s: float = 60.0
    """Seconds an iteration waits for samples before going on with what it has."""


@dataclass(frozen=True)
class LiveConfig:
    """Experience from paper-trading actors fed back to the learner."""

    enabled: bool = False
    """Drain the live-experience queue into replay every iteration."""
    capacity: int = 100_000
    """Transitions the queue holds before it drops the oldest."""


@dataclass(frozen=True)
class SelectionConfig:
    """Which policy of a run is kept and published (``train.py``, ``early_stopping.py``).
    Every choice reads validation evaluations only (``selection.py``)."""

    metric: str = "excess_log_growth"
    """Validation score (``selection.METRICS``): ``excess_log_growth`` (log growth of the
    greedy policy minus the flat baseline's, after costs, mean over datasets; > 0 beats
    staying out), ``log_growth`` (log of final / initial equity) or ``sharpe`` (annualized)."""
    patience: int = 0
    """Validation evaluations in a row without improvement before training stops early
    (0 = never stop early)."""
    min_improvement: float = 0.0
    """How far (in the metric's units, e.g. 0.001 = 0.1 % of log growth) a score must
    exceed the best so far, or the current candidate's, to count as better."""
    require_beat_flat: bool = True
    """Publish to ``candidate`` only a policy whose greedy run ended above the flat baseline
    after costs on every validation dataset (the paper gate's default evidence)."""


SECTIONS = {"data": DataConfig, "fault_tolerance": FaultToleranceConfig, "live": LiveConfig,
            "network": NetworkConfig, "dqn": DQNSettings,
            "replay": ReplayConfig, "exploration": ExplorationConfig,
            "resources": ResourcesConfig, "selection": SelectionConfig}


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one training run needs."""

    name: str = "experiment"
    """Run name (used for store paths and logs)."""
    seed: int = 0
    """Seed of RLlib, the envs and the random baselines."""
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureSpec = field(default_factory=FeatureSpec)
    env: EnvConfig = field(default_factory=EnvConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    dqn: DQNSettings = field(default_factory=DQNSettings)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    fault_tolerance: FaultToleranceConfig = field(default_factory=FaultToleranceConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> ExperimentConfig:
        """Build from parsed TOML; errors name the file and the section."""
        reject_unknown_fields(f"{source}: experiment", data,
                              (f.name for f in dataclasses.fields(cls)))
        kwargs: dict[str, Any] = {k: data[k] for k in ("name", "seed") if k in data}
        try:
            for section, kind in SECTIONS.items():
                values = dict(data.get(section, {}))
                reject_unknown_fields(f"{source}: [{section}]", values,
                                      (f.name for f in dataclasses.fields(kind)))
                kwargs[section] = kind(**{k: _frozen(v) for k, v in values.items()})
            kwargs["features"] = FeatureSpec.from_dict(dict(data.get("features", {})))
            kwargs["env"] = EnvConfig.from_dict(dict(data.get("env", {})))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        config = cls(**kwargs)
        config.check()
        return config

    @classmethod
    def load(cls, path: str | Path) -> ExperimentConfig:
        """Read a TOML experiment file."""
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: no such experiment file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
        return cls.from_dict(data, source=str(path))

    def fit_env_spec(self) -> EnvSpec:
        """The env spec of this experiment (``envs/env_spec.py``): ``[data]`` sources,
        reference and split fractions, ``[features]``, ``[env]``, and the normalizer fitted
        on the training split. Prepares the market data (cached per process)."""
        return EnvSpec.fit(sources=self.data.sources, reference=self.data.reference,
                           train=self.data.train, validation=self.data.validation,
                           features=self.features, env=self.env)

    def encoder_spec(self) -> dict[str, Any]:
        """The Q-network's encoder, as RLlib's catalog (``conv_encoder.py``) builds it and
        as bundle manifests describe it (``qnetwork.py`` rebuilds it)."""
        net = self.network
        if net.encoder != "conv1d":
            return {"kind": "mlp"}
        return {"kind": "conv1d", "window": self.env.window,
                "n_features": self.features.n_features, "extra": len(POSITION_STATE_NAMES),
                "channels": list(net.conv_channels), "kernel": net.conv_kernel}

    def check(self) -> None:
        """Cross-field rules."""
        if self.dqn.n_step < 1 or self.dqn.train_batch_size < 1 or self.dqn.replay_ratio <= 0:
            raise ConfigError("dqn.n_step, train_batch_size must be >= 1 and replay_ratio > 0")
        if not 0 < self.dqn.gamma <= 1 or self.dqn.lr <= 0:
            raise ConfigError("dqn.gamma must be in (0, 1] and lr > 0")
        if self.dqn.max_updates_per_step < 1:
            raise ConfigError("dqn.max_updates_per_step must be >= 1")
        schedule = self.dqn.lr_schedule
        if schedule and (any(len(p) != 2 or p[1] <= 0 for p in schedule)
                         or schedule[0][0] != 0
                         or any(b[0] <= a[0] for a, b in itertools.pairwise(schedule))):
            raise ConfigError("dqn.lr_schedule must be [[0, lr0], [step1, lr1], ...] with "
                              "increasing steps and positive rates")
        if not 0 <= self.replay.beta <= 1 or not 0 <= self.replay.beta_final <= 1 \
                or self.replay.beta_anneal_steps < 0 or not self.replay.alpha >= 0:
            raise ConfigError("replay.beta and beta_final must be in [0, 1], alpha >= 0 and "
                              "beta_anneal_steps >= 0")
        if self.replay.capacity < self.dqn.train_batch_size:
            raise ConfigError("replay.capacity must hold at least one training batch")
        if self.resources.num_envs_per_env_runner < 1 or \
                self.resources.rollout_fragment_length < 1:
            raise ConfigError("resources.num_envs_per_env_runner and rollout_fragment_length "
                              "must be >= 1")
        for kind in ("env_runner_resources", "learner_resources"):
            for name, amount in getattr(self.resources, kind).items():
                if not isinstance(amount, int | float) or amount <= 0 or \
                        name in ("CPU", "GPU", "memory", "object_store_memory"):
                    raise ConfigError(f"resources.{kind}: {name} = {amount!r} must be a "
                                      "custom resource with a positive amount")
        sel = self.selection
        if sel.metric not in METRICS:
            raise ConfigError(f"selection.metric must be one of {METRICS}, got {sel.metric!r}")
        if sel.patience < 0 or not (math.isfinite(sel.min_improvement)
                                    and sel.min_improvement >= 0):
            raise ConfigError("selection.patience must be >= 0 and min_improvement a finite "
                              "number >= 0")
        if not self.network.hidden or any(h < 1 for h in self.network.hidden):
            raise ConfigError("network.hidden needs at least one positive layer size")
        if self.network.activation not in ("relu", "tanh", "silu"):
            raise ConfigError("network.activation must be relu, tanh or silu")
        if self.network.encoder not in ("mlp", "conv1d"):
            raise ConfigError("network.encoder must be mlp or conv1d")
        if self.network.encoder == "conv1d" and (
                not self.network.conv_channels or min(self.network.conv_channels) < 1
                or self.network.conv_kernel < 1 or self.network.conv_kernel % 2 == 0):
            raise ConfigError("network.conv_channels must be positive and conv_kernel an "
                              "odd number >= 1")


def _frozen(value: Any) -> Any:
    """TOML arrays (nested too) as tuples, so the frozen dataclasses stay hashable."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value
