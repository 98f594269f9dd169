"""A typed experiment: one TOML file, frozen dataclasses, every field documented with units.

Sections: ``[data]``, ``[features]`` (FeatureSpec fields), ``[env]`` (EnvConfig fields,
with ``[env.costs]`` and ``[env.risk]``), ``[network]``, ``[dqn]``, ``[replay]``,
``[exploration]``, ``[resources]``, ``[fault_tolerance]``, ``[live]``, ``[selection]`` and
``[tune]`` (with ``[tune.space]``). Missing fields take the documented defaults; unknown
sections or fields are errors. ``dqn_config.build_dqn_config`` turns it into an RLlib
``DQNConfig`` in one place.
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

from raytrade.algos.search_space import apply_overrides, parse_space
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
    """Files, globs, ``sample:SYMBOL`` (BTCUSDT, ETHUSDT, SOLUSDT, BNBUSDT, XRPUSDT) or
    ``synthetic:KIND[:seed=S][:n=N][:drift=BPS][:volume=X]`` (KIND ``regime``,
    ``mean_reversion`` or ``randomwalk``; ``drift`` in bp per bar, ``volume`` a multiplier
    of the bar volumes)."""
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
    """Episodes layout: cap on learner updates per training step, so sampling results are
    collected often. Compact layout: the most due updates the learner thread may lag
    behind sampling before runners wait for it (back-pressure keeps the ratio exact)."""
    weights_every: int = 4
    """Compact layout: learner updates between weight publications to the runners (each
    runner fetches a publication only when it is newer than its weights)."""

    def lr_or_schedule(self) -> float | list[list[float]]:
        """What RLlib's ``lr`` takes: the constant, or the schedule as a list of pairs."""
        if not self.lr_schedule:
            return self.lr
        return [[int(t), float(v)] for t, v in self.lr_schedule]


REPLAY_LAYOUTS = ("compact", "episodes")


@dataclass(frozen=True)
class ReplayConfig:
    """Prioritized replay: ``compact`` (``algos/compact_replay.py``: each bar's features
    stored once per stream, runners sending compact fragments, a learner thread;
    ``algos/apex_compact.py``) or ``episodes`` (RLlib's ``PrioritizedEpisodeReplayBuffer``
    and episode sampling, the stock path, kept for comparison)."""

    layout: str = "compact"
    """``compact`` or ``episodes``."""

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
    slowest one (``apex_dqn.py``); false = RLlib's synchronous sampling (only with
    ``replay.layout = "episodes"``). Needs remote runners."""
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
    min_evidence_t: float = 0.0
    """With ``require_beat_flat``, also require the greedy policy's validation returns to
    be this many standard errors above zero on every dataset (``t_stat`` of
    ``envs/metrics.py``: per-decision returns, flat periods included), so that a lucky
    hold on a market without an edge is not published (0: off; ignored without
    ``require_beat_flat``). A floor, not a significance level: selection keeps the best of
    many checkpoints and cost multiples on the same split. In annualized Sharpe terms it
    asks for ``min_evidence_t / sqrt(validation years)``: about 10 for 2 on 13.5 days."""
    calibrate_cost_multiples: tuple[float, ...] = ()
    """Decision-rule ``cost_multiple`` values to try on validation for every evaluated
    policy (``decision_calibration.py``): each policy keeps the one that scores best on
    validation (the configured one is always tried; a smaller multiple must beat a larger
    one by more than ``min_improvement``, so ties go to the larger, which usually trades
    less), and its bundle carries that rule. Empty: the configured rule only."""


TUNE_SCHEDULERS = ("asha", "pbt")
"""Schedulers ``[tune] scheduler`` accepts."""
PBT_FIXED_PREFIXES = ("network.", "features.", "data.", "resources.", "env.window",
                      "env.positions", "seed")
"""Paths population-based training cannot mutate: an exploit copies another trial's
weights and replay, which only fit a network of the same shape on the same data."""


@dataclass(frozen=True)
class TuneSettings:
    """Hyperparameter search with ``raytrade tune`` (``tune.py``) on Ray Tune."""

    space: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Search space, ``[tune.space]``: ``"dotted.path" = {distribution = values}`` over any
    experiment field, e.g. ``"dqn.lr" = {loguniform = [1e-4, 1e-3]}``, ``"dqn.n_step" =
    {choice = [1, 3, 5]}``, ``"env.costs.fee_bps" = {uniform = [1, 10]}``, ``"dqn.n_step" =
    {randint = [1, 6]}`` (high exclusive). Checked at load time (``search_space.py``)."""
    scheduler: str = "asha"
    """``asha`` (stop the worst trials early at rungs) or ``pbt`` (population-based
    training: copy the best trials' weights and perturb their hyperparameters)."""
    num_samples: int = 8
    """Trials (configurations sampled from the space)."""
    max_concurrent: int = 0
    """Trials running at once (0: as many as the cluster's free CPUs hold)."""
    max_iterations: int = 100
    """Training iterations of one trial (its ``Algorithm.train()`` calls)."""
    max_trial_s: float | None = None
    """Seconds of training of one trial in one session (none: no limit)."""
    time_budget_s: float | None = None
    """Seconds of the whole search (none: until every trial ends); trials still running
    then stop where they are, and the winner is chosen from what every trial reported."""
    eval_every: int = 10
    """Iterations between the validation evaluations each trial reports to Tune (each
    report carries a checkpoint)."""
    num_env_runners: int | None = None
    """Env runners of each trial, overriding ``[resources] num_env_runners`` (0 samples
    in the trial's own process and turns asynchronous sampling off); none: the
    experiment's. A trial asks Ray for RLlib's resource request of its experiment (one
    CPU for the trial, one per env runner, the learners)."""
    grace_period: int = 20
    """ASHA: iterations a trial trains before it can be stopped."""
    reduction_factor: float = 3.0
    """ASHA: 1 / the share of trials promoted at each rung."""
    perturbation_interval: int = 20
    """PBT: iterations between exploit/explore steps (a multiple of ``eval_every``)."""
    quantile_fraction: float = 0.25
    """PBT: share of trials that copy one of the top share."""
    resample_probability: float = 0.25
    """PBT: chance an explored value is drawn afresh from the space instead of
    perturbed."""

    def check(self, root: type[Any]) -> None:
        """The rules of every field; the space's paths checked against ``root``."""
        dims = parse_space(self.space, root)
        for dim in dims:
            if dim.path == "name" or dim.path.startswith("tune."):
                raise ConfigError(f"[tune.space] {dim.path!r}: the run name and the [tune] "
                                  "table itself cannot be searched")
        if self.scheduler not in TUNE_SCHEDULERS:
            raise ConfigError(f"[tune] scheduler must be one of {TUNE_SCHEDULERS}, got "
                              f"{self.scheduler!r}")
        if self.num_samples < 1 or self.max_iterations < 1 or self.eval_every < 1 \
                or self.max_concurrent < 0:
            raise ConfigError("[tune] num_samples, max_iterations and eval_every must be "
                              ">= 1 and max_concurrent >= 0")
        for name in ("max_trial_s", "time_budget_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"[tune] {name} must be > 0 (omit it for no limit)")
        if self.num_env_runners is not None and self.num_env_runners < 0:
            raise ConfigError("[tune] num_env_runners must be >= 0")
        if self.grace_period < 1 or not self.reduction_factor > 1:
            raise ConfigError("[tune] grace_period must be >= 1 and reduction_factor > 1")
        if self.scheduler == "pbt":
            if self.perturbation_interval < 1 or \
                    self.perturbation_interval % self.eval_every != 0:
                raise ConfigError("[tune] perturbation_interval must be a positive multiple "
                                  "of eval_every (PBT exploits at reported checkpoints)")
            if not 0 < self.quantile_fraction <= 0.5 or \
                    not 0 <= self.resample_probability <= 1:
                raise ConfigError("[tune] quantile_fraction must be in (0, 0.5] and "
                                  "resample_probability in [0, 1]")
            for dim in dims:
                if dim.path.startswith(PBT_FIXED_PREFIXES):
                    raise ConfigError(f"[tune.space] {dim.path!r}: population-based "
                                      "training copies weights between trials, so it cannot "
                                      f"search fields under {PBT_FIXED_PREFIXES}; use asha")


SECTIONS = {"data": DataConfig, "fault_tolerance": FaultToleranceConfig, "live": LiveConfig,
            "network": NetworkConfig, "dqn": DQNSettings,
            "replay": ReplayConfig, "exploration": ExplorationConfig,
            "resources": ResourcesConfig, "selection": SelectionConfig,
            "tune": TuneSettings}


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
    tune: TuneSettings = field(default_factory=TuneSettings)
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
        if self.dqn.max_updates_per_step < 1 or self.dqn.weights_every < 1:
            raise ConfigError("dqn.max_updates_per_step and weights_every must be >= 1")
        if self.replay.layout not in REPLAY_LAYOUTS:
            raise ConfigError(f"replay.layout must be one of {REPLAY_LAYOUTS}, got "
                              f"{self.replay.layout!r}")
        if self.replay.layout == "compact" and not self.resources.async_sampling:
            raise ConfigError("resources.async_sampling = false needs replay.layout = "
                              "\"episodes\": the compact pipeline always samples "
                              "asynchronously")
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
        if not (math.isfinite(sel.min_evidence_t) and sel.min_evidence_t >= 0):
            raise ConfigError("selection.min_evidence_t must be a finite number >= 0, got "
                              f"{sel.min_evidence_t!r}")
        if any(isinstance(m, bool) or not isinstance(m, int | float) or not math.isfinite(m)
               or m < 0 for m in sel.calibrate_cost_multiples):
            raise ConfigError("selection.calibrate_cost_multiples must be finite numbers >= 0, "
                              f"got {list(sel.calibrate_cost_multiples)!r}")
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
        self.tune.check(type(self))
        if sel.calibrate_cost_multiples and "env.decision.cost_multiple" in self.tune.space:
            raise ConfigError("[tune.space] 'env.decision.cost_multiple': with [selection] "
                              "calibrate_cost_multiples every evaluated policy chooses its "
                              "multiple on validation, and the multiple does not change "
                              "training; remove one of the two")
        if self.tune.space:
            # every edge of every dimension must make a valid experiment (checked here, at
            # load time, not in a trial an hour into the search)
            base = dataclasses.replace(self, tune=TuneSettings())
            for dim in parse_space(self.tune.space, type(self)):
                for value in dim.endpoints():
                    try:
                        apply_overrides(base, {dim.path: value}).check()
                    except ConfigError as exc:
                        raise ConfigError(f"[tune.space] {dim.path!r} = {value!r}: {exc}") \
                            from exc


def _frozen(value: Any) -> Any:
    """TOML arrays (nested too) as tuples, so the frozen dataclasses stay hashable."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value
