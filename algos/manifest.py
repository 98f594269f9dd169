"""The policy bundle's manifest, readable without torch or Ray: one typed, frozen
:class:`BundleManifest`, the format id, file names, and the checks a reader runs before
trusting a bundle (``verify_bundle`` / ``read_bundle``).

The manifest is the single record of what a policy needs to act and of what it was
trained under: the complete ``EnvConfig`` (positions, costs, risk rules, the reward and
every one of its parameters, window, latency, initial equity, episode settings), the
FeatureSpec and its hash, the fitted normalizer, the observation layout, the network,
the env id and version, the data it trained and was validated on, the package version
and git commit, the training step, its evaluation and the library versions. Export
(``export.py``) writes it; ``Policy``, the backtest, the paper side and the executor read
only it. Reading is strict (``envs/typed_json.py``): a missing or unknown field, or a
value of the wrong type, is refused with the field's path (``env.costs.fee_bps``); no
trading rule is ever read with a default.

``raytrade.policy/3`` and ``raytrade.policy/2`` are read by migrations (``MIGRATIONS``,
applied in turn until the current format): v3 lacked only the trading calendar
(``env.calendar``), and every v3 policy traded a market open around the clock, which is
the default calendar (``ALWAYS``); v2 also lacked the decision rule (``env.decision``),
and every v2 policy decided plain greedy on every bar, which is the default rule. Each
migration records what the bundle did. ``raytrade.policy/1`` is
refused, not migrated: it did not record the reward's
parameters (``dsr_eta``, ``drawdown_penalty``, ``turnover_penalty``), the initial equity,
the episode settings, the env id or the data ranges, and wrote an uncapped
``max_notional`` as null. Filling those in would invent the trading rules the policy was
trained under, which is the drift this format exists to end; the refusal says how to
re-export (``OLD_FORMATS``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.env_spec import DatasetRange, EnvSpec
from raytrade.envs.errors import ConfigError, RaytradeError
from raytrade.envs.features.normalizer import Normalizer
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.observation import N_POSITION_STATE, POSITION_STATE_NAMES
from raytrade.envs.typed_json import decode, encode

BUNDLE_FORMAT = "raytrade.policy/4"
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
REEXPORT = ("re-export it from its training run with `raytrade train --config "
            "EXPERIMENT.toml --store STORE --resume --iterations 1` (restores the newest "
            "checkpoint, trains one more iteration and publishes a " + BUNDLE_FORMAT +
            " bundle), or train the experiment again")

def _from_v3(data: dict[str, Any]) -> dict[str, Any]:
    """A ``raytrade.policy/3`` manifest read as v4. v3 had no trading calendar because
    every market was taken to trade around the clock, which is the default calendar
    (``envs.calendar.ALWAYS``); nothing else changed."""
    env = data.get("env")
    if not isinstance(env, dict):
        return data  # malformed: the strict reader names it
    return {**data, "format": "raytrade.policy/4",
            "env": {**env, "calendar": encode(ALWAYS)}}


def _from_v2(data: dict[str, Any]) -> dict[str, Any]:
    """A ``raytrade.policy/2`` manifest read as v3. v2 had no decision rule because its
    policies decided plain greedy on every bar, which is the default rule, and no
    ``training.tune`` because no search existed (null: not a search winner); nothing else
    changed, so the migration states what the bundle did, it invents nothing."""
    env = data.get("env")
    if not isinstance(env, dict):
        return data  # malformed: the strict reader names it
    training = data.get("training")
    if isinstance(training, dict):  # v2 had no search: no policy of it won a trial
        training = {**training, "tune": None}
    return {**data, "format": "raytrade.policy/3", "training": training,
            "env": {**env, "decision": {"margin": 0.0, "cost_multiple": 0.0,
                                        "every_bars": 1}}}


MIGRATIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "raytrade.policy/2": _from_v2,
    "raytrade.policy/3": _from_v3,
}
"""Older formats, each read by a tested migration to the next one, applied in turn up to
the current one (tests/test_manifest.py pins each old schema with its fixture)."""

OLD_FORMATS = {
    "raytrade.policy/1": "it does not record the reward's parameters (dsr_eta, "
                         "drawdown_penalty, turnover_penalty), initial_equity, the episode "
                         "settings, the env id or the data it trained on, so what it was "
                         "trained under cannot be known: " + REEXPORT,
}


class PolicyRejectedError(RaytradeError):
    """A bundle failed validation; ``reason`` says which check and why."""

    def __init__(self, reason: str, version: int | None = None) -> None:
        self.reason = reason
        self.version = version
        where = f"policy v{version:06d}: " if version is not None else "policy bundle: "
        super().__init__(where + reason)


def parse_manifest(data: bytes, version: int | None = None) -> dict[str, Any]:
    """The manifest's JSON object; ``PolicyRejectedError`` if it does not parse to one."""
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyRejectedError(f"manifest.json is malformed: {exc}", version) from exc
    if not isinstance(manifest, dict):
        raise PolicyRejectedError("manifest.json is not a JSON object", version)
    return manifest


@dataclass(frozen=True)
class PackageInfo:
    """The code that trained and exported the policy."""

    name: str
    version: str
    """The installed package version."""
    git_commit: str | None
    """``git rev-parse HEAD`` of the package's checkout; None when not in a git checkout."""


@dataclass(frozen=True)
class EnvIdentity:
    """The registered gymnasium id of the training env and its semantics version
    (``envs/registration.py``)."""

    id: str
    version: int


@dataclass(frozen=True)
class ObservationSpec:
    """The observation a policy takes: ``shape`` (flat: ``env.window`` feature rows, then
    the position state), float ``dtype``, and the names of the position-state values."""

    shape: tuple[int, ...]
    dtype: str
    position_state: tuple[str, ...]


@dataclass(frozen=True)
class EncoderSpec:
    """The Q-network's encoder: ``mlp`` (the other fields null) or ``conv1d`` over the
    feature window (``window`` rows of ``n_features``, then ``extra`` position values)."""

    kind: str
    window: int | None
    n_features: int | None
    extra: int | None
    channels: tuple[int, ...]
    kernel: int | None

    def to_dict(self) -> dict[str, Any]:
        """The form ``qnetwork.QNetwork`` and RLlib's catalog read."""
        if self.kind != "conv1d":
            return {"kind": self.kind}
        return {"kind": "conv1d", "window": self.window, "n_features": self.n_features,
                "extra": self.extra, "channels": list(self.channels), "kernel": self.kernel}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncoderSpec:
        """From ``ExperimentConfig.encoder_spec()``."""
        kind = str(data["kind"])
        if kind != "conv1d":
            return cls(kind=kind, window=None, n_features=None, extra=None, channels=(),
                       kernel=None)
        return cls(kind=kind, window=int(data["window"]), n_features=int(data["n_features"]),
                   extra=int(data["extra"]), channels=tuple(int(c) for c in data["channels"]),
                   kernel=int(data["kernel"]))


@dataclass(frozen=True)
class NetworkSpec:
    """The Q-network's architecture (``qnetwork.py`` rebuilds it from ``architecture()``)."""

    type: str
    """``dueling_mlp`` or ``mlp``."""
    obs_dim: int
    n_actions: int
    hidden: tuple[int, ...]
    activation: str
    encoder: EncoderSpec
    head_hidden: tuple[int, ...]
    head_activation: str

    def architecture(self) -> dict[str, Any]:
        """The dict ``QNetwork`` takes."""
        return {"type": self.type, "obs_dim": self.obs_dim, "n_actions": self.n_actions,
                "hidden": list(self.hidden), "activation": self.activation,
                "encoder": self.encoder.to_dict(), "head_hidden": list(self.head_hidden),
                "head_activation": self.head_activation}


@dataclass(frozen=True)
class DataInfo:
    """The data the policy trained on: the env spec's sources, reference and split
    fractions, and per dataset the training bars (episodes and the normalizer's fit) and
    the validation bars."""

    sources: tuple[str, ...]
    reference: str | None
    train: float
    validation: float
    datasets: tuple[DatasetRange, ...]


@dataclass(frozen=True)
class TuneInfo:
    """The hyperparameter-search trial a policy won (``raytrade tune``, ``algos/tune.py``):
    chosen by its validation score, never by the test split."""

    trial_id: str
    """Ray Tune's id of the winning trial."""
    overrides: dict[str, Any]
    """The trial's values of the searched fields, by dotted path (``dqn.lr``)."""
    metric: str
    """The selection metric (``algos/selection.py``)."""
    score: float
    """The trial's best validation score by ``metric``: the one this bundle's weights got."""
    trials: int
    """Trials compared (every trial of the search, finished or stopped early)."""


@dataclass(frozen=True)
class TrainingInfo:
    """Where training stood when the bundle was exported (null: not applicable)."""

    iteration: int
    env_steps_sampled: int | None
    env_steps_trained: int | None
    random_init_seed: int | None
    """Set for a randomly initialized policy (``export.random_bundle``), which trades noise."""
    tune: TuneInfo | None
    """Set for the winner of a hyperparameter search: its trial and validation score."""


@dataclass(frozen=True)
class BundleManifest:
    """Everything a policy bundle says about itself (module docstring)."""

    format: str
    version: int | None
    """Store version, set by the policy store when it publishes (null before)."""
    created_ms: int
    files: dict[str, str]
    """sha256 hex digest of every other file of the bundle, by name."""
    experiment: str
    package: PackageInfo
    libraries: dict[str, str]
    env_id: EnvIdentity
    env: EnvConfig
    """The complete trading and reward rules of the training env."""
    feature_spec: FeatureSpec
    feature_spec_hash: str
    normalizer: Normalizer
    observation: ObservationSpec
    network: NetworkSpec
    data: DataInfo | None
    """Null only for a policy that never saw data (a random initialization)."""
    training: TrainingInfo
    evaluation: dict[str, Any] | None
    """Validation evaluation record (``evaluation.evaluate``), when one was run."""

    def __post_init__(self) -> None:
        if self.format != BUNDLE_FORMAT:
            raise ConfigError(f"format: {self.format!r} is not {BUNDLE_FORMAT}")
        if WEIGHTS not in self.files:
            raise ConfigError(f"files: must list {WEIGHTS} with its sha256")
        if self.feature_spec.hash != self.feature_spec_hash:
            raise ConfigError("feature_spec_hash: the feature_spec does not hash to it")
        try:
            self.normalizer.check_spec(self.feature_spec)
        except ConfigError as exc:
            raise ConfigError(f"normalizer: {exc}") from exc
        expected = (self.env.window * self.feature_spec.n_features + N_POSITION_STATE,)
        if self.observation.shape != expected:
            raise ConfigError(f"observation.shape: {list(self.observation.shape)}, but "
                              f"env.window and the features give {list(expected)}")
        if self.observation.position_state != POSITION_STATE_NAMES:
            raise ConfigError(f"observation.position_state: {self.observation.position_state}"
                              f" is not this reader's {POSITION_STATE_NAMES}")
        if self.observation.dtype != "float32":
            raise ConfigError(f"observation.dtype: {self.observation.dtype!r} (float32 only)")
        if self.network.obs_dim != expected[0]:
            raise ConfigError("network.obs_dim: differs from the observation shape")
        if self.network.n_actions != len(self.env.positions):
            raise ConfigError("network.n_actions: network outputs and env.positions disagree")
        if self.data is not None and self.data.datasets == ():
            raise ConfigError("data.datasets: empty")

    @property
    def positions(self) -> tuple[float, ...]:
        """Target position of each action (``env.positions``)."""
        return self.env.positions

    def env_spec(self) -> EnvSpec:
        """The env spec the policy trained in (``ConfigError`` for a random policy)."""
        if self.data is None:
            raise ConfigError("this bundle never saw data (data is null): no env spec")
        return EnvSpec(sources=self.data.sources, reference=self.data.reference,
                       train=self.data.train, validation=self.data.validation,
                       features=self.feature_spec, env=self.env, normalizer=self.normalizer)

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON values of every field."""
        out: dict[str, Any] = encode(self)
        return out

    def to_json(self) -> bytes:
        """The ``manifest.json`` bytes (strict JSON: non-finite floats as strings)."""
        return json.dumps(self.to_dict(), indent=1, allow_nan=False).encode()

    @classmethod
    def from_dict(cls, data: Any) -> BundleManifest:
        """Inverse of :meth:`to_dict`; ``ConfigError`` naming the field otherwise, with
        how to re-export a bundle of an older format."""
        while isinstance(data, dict) and data.get("format") in MIGRATIONS:
            data = MIGRATIONS[data["format"]](data)
        if isinstance(data, dict) and data.get("format") != BUNDLE_FORMAT:
            fmt = data.get("format")
            hint = OLD_FORMATS.get(fmt) if isinstance(fmt, str) else None
            raise ConfigError(f"format: {fmt!r} is not {BUNDLE_FORMAT}"
                              + (f": {hint}" if hint else " (unknown bundle format)"))
        try:
            return decode(cls, data, "")
        except ConfigError as exc:
            if "missing" in str(exc) or "unknown field" in str(exc):
                # the schema of a format never changes (tests/fixtures/manifest_v2.json
                # pins it): a field too many or too few is damage or another code version
                raise ConfigError(f"{exc}; a {BUNDLE_FORMAT} manifest has exactly this "
                                  f"reader's fields. If this code is older than the bundle, "
                                  f"upgrade raytrade; otherwise {REEXPORT}") from exc
            raise

    @classmethod
    def from_json(cls, text: bytes | str) -> BundleManifest:
        """Parse ``manifest.json`` bytes."""
        try:
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"manifest.json is malformed: {exc}") from exc
        return cls.from_dict(data)


def manifest_calendar(manifest: Mapping[str, Any]) -> TradingCalendar:
    """The trading calendar recorded in a parsed ``manifest.json`` (``env.calendar``), for
    readers that annualize a record without reading the whole bundle (the live gate, the
    dashboard). A format without the field (before ``raytrade.policy/4``) traded around the
    clock: ``ALWAYS``, as its migration says; a malformed one is refused with its path."""
    env = manifest.get("env")
    if not isinstance(env, Mapping) or "calendar" not in env:
        if manifest.get("format") in MIGRATIONS:
            return ALWAYS
        raise ConfigError("manifest.json: env.calendar: missing")
    return decode(TradingCalendar, env["calendar"], "env.calendar")


def read_bundle(files: Mapping[str, bytes], version: int | None = None) -> BundleManifest:
    """The typed manifest, after ``verify_bundle``'s checks; ``PolicyRejectedError``
    naming the first problem otherwise."""
    verify_bundle(files, version)
    return BundleManifest.from_json(files[MANIFEST])


def verify_bundle(files: Mapping[str, bytes], version: int | None = None) -> dict[str, Any]:
    """The parsed manifest (a plain dict, for the store to stamp its version into), after
    checking that it reads as a :class:`BundleManifest` and every file's sha256;
    ``PolicyRejectedError`` naming the first problem otherwise."""
    if MANIFEST not in files:
        raise PolicyRejectedError("no manifest.json (an incomplete upload is invisible)", version)
    manifest = parse_manifest(files[MANIFEST], version)
    try:
        typed = BundleManifest.from_dict(manifest)
    except RaytradeError as exc:
        raise PolicyRejectedError(f"manifest.json: {exc}", version) from exc
    if version is not None and typed.version not in (None, version):
        raise PolicyRejectedError(f"manifest says version {typed.version}, the "
                                  f"store folder says {version}", version)
    for name, digest in typed.files.items():
        if name not in files:
            raise PolicyRejectedError(f"manifest names {name}, which is missing", version)
        actual = hashlib.sha256(files[name]).hexdigest()
        if actual != digest:
            raise PolicyRejectedError(f"{name}: sha256 {actual[:12]}... does not match the "
                                      f"manifest's {str(digest)[:12]}... (truncated or "
                                      "altered)", version)
    return manifest
