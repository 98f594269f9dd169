"""Export a trained RLlib DQN module as a policy bundle folder.

The folder holds ``weights.safetensors`` (our tensor names, see ``qnetwork.py``) and
``manifest.json``, written last: a :class:`~raytrade.algos.manifest.BundleManifest` (the
complete EnvConfig, FeatureSpec, the normalizer of the env spec the runners trained in,
the data ranges, network, versions; see ``manifest.py``).
``write_bundle`` assembles a folder under a temporary name and renames it into place, so
a reader never sees a half-written bundle; versioned publishing is ``policy_store.py``'s
job (``bundle_files`` gives it the bytes).
"""

from __future__ import annotations

import functools
import hashlib
import math
import platform
import subprocess
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.manifest import (
    BUNDLE_FORMAT,
    MANIFEST,
    WEIGHTS,
    BundleManifest,
    DataInfo,
    EncoderSpec,
    EnvIdentity,
    NetworkSpec,
    ObservationSpec,
    PackageInfo,
    TrainingInfo,
    TuneInfo,
)
from raytrade.algos.qnetwork import QNetwork
from raytrade.algos.storage.blobstore import LocalBlobStore, PreconditionFailedError
from raytrade.envs.env_spec import EnvSpec
from raytrade.envs.errors import ConfigError
from raytrade.envs.features.normalizer import Normalizer
from raytrade.envs.observation import N_POSITION_STATE, POSITION_STATE_NAMES
from raytrade.envs.registration import ENV_VERSION, MULTI_ID, TRADING_ID
from safetensors.numpy import save


def rllib_tensors(state: dict[str, Any], dueling: bool) -> dict[str, np.ndarray]:
    """Map an RLlib DQN module state dict to our tensor names (Linear layers in order;
    the window conv encoder keeps its own parameter names under ``encoder.``)."""
    out: dict[str, np.ndarray] = {}
    parts = [("encoder", "encoder.net.mlp."), ("advantage", "af.net.mlp.")]
    if any(k.startswith("encoder.net.conv.") for k in state):  # window_conv.WindowConv
        out.update({f"encoder.{k[len('encoder.net.'):]}": np.ascontiguousarray(
            np.asarray(v, dtype=np.float32)) for k, v in state.items()
            if k.startswith("encoder.net.")})
        parts = parts[1:]
    if dueling:
        parts.append(("value", "vf.net.mlp."))
    for ours, prefix in parts:
        indices = sorted({int(k[len(prefix):].split(".")[0]) for k in state
                          if k.startswith(prefix) and k.endswith(".weight")})
        if not indices:
            raise ConfigError(f"no Linear layers under {prefix!r} in the module state")
        for i, idx in enumerate(indices):
            for kind in ("weight", "bias"):
                out[f"{ours}.{i}.{kind}"] = np.ascontiguousarray(
                    np.asarray(state[f"{prefix}{idx}.{kind}"], dtype=np.float32))
    return out


def architecture(exp: ExperimentConfig, obs_dim: int, n_actions: int) -> NetworkSpec:
    """The manifest's network description for ``exp``."""
    net = exp.network
    return NetworkSpec(type="dueling_mlp" if exp.dqn.dueling else "mlp", obs_dim=obs_dim,
                       n_actions=n_actions, hidden=tuple(net.hidden),
                       activation=net.activation,
                       encoder=EncoderSpec.from_dict(exp.encoder_spec()), head_hidden=(),
                       head_activation="relu")


def json_safe(value: Any) -> Any:
    """Plain JSON of a free-form record (an evaluation): numpy scalars as Python numbers,
    non-finite floats (a Sharpe ratio of a flat curve) as None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in ("numpy", "torch", "ray", "gymnasium", "safetensors"):
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "unknown"
    return out


@functools.lru_cache(maxsize=1)
def package_info() -> PackageInfo:
    """The installed raytrade version, and the git commit of its checkout when this very
    file is tracked in one (None otherwise: installed from a wheel, or sitting inside some
    other repository, whose commit would say nothing about this code)."""
    try:
        version = metadata.version("raytrade")
    except metadata.PackageNotFoundError:
        version = "unknown"
    here = Path(__file__).resolve()
    commit: str | None = None
    try:
        done = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=here.parent,
                              capture_output=True, text=True, timeout=10, check=False)
        lines = done.stdout.split()
        if done.returncode == 0 and len(lines) == 2 and len(lines[1]) == 40 and \
                (Path(lines[0]) / "algos" / here.name).resolve() == here:
            commit = lines[1]
    except (OSError, subprocess.SubprocessError):
        commit = None
    return PackageInfo(name="raytrade", version=version, git_commit=commit)


def training_info(training: Mapping[str, Any]) -> TrainingInfo:
    """A ``TrainingInfo`` from the trainer's counters (``iteration`` required; the env
    step counters, ``random_init_seed`` and a search winner's ``tune`` (a ``TuneInfo``)
    when known)."""
    unknown = sorted(set(training) - {"iteration", "env_steps_sampled", "env_steps_trained",
                                      "random_init_seed", "tune"})
    if unknown or "iteration" not in training:
        raise ConfigError(f"training info needs 'iteration' and knows env_steps_sampled, "
                          f"env_steps_trained, random_init_seed, tune; got {sorted(training)}")
    tune = training.get("tune")
    if tune is not None and not isinstance(tune, TuneInfo):
        raise ConfigError(f"training info 'tune' must be a TuneInfo, got {type(tune).__name__}")

    def count(key: str) -> int | None:
        value = training.get(key)
        return None if value is None else int(value)

    return TrainingInfo(iteration=int(training["iteration"]),
                        env_steps_sampled=count("env_steps_sampled"),
                        env_steps_trained=count("env_steps_trained"),
                        random_init_seed=count("random_init_seed"), tune=tune)


def data_info(spec: EnvSpec) -> DataInfo:
    """The manifest's data block: the spec's sources and fractions, and the bar ranges."""
    return DataInfo(sources=spec.sources, reference=spec.reference, train=spec.train,
                    validation=spec.validation, datasets=spec.data_ranges())


def bundle_files(tensors: dict[str, np.ndarray], exp: ExperimentConfig, spec: EnvSpec | None,
                 obs_dim: int, *, training: Mapping[str, Any],
                 evaluation: dict[str, Any] | None = None,
                 version: int | None = None,
                 normalizer: Normalizer | None = None) -> dict[str, bytes]:
    """The bundle's files by name: ``weights.safetensors`` and its ``manifest.json``.

    ``spec`` is the env spec the policy trained in (its normalizer ships in the bundle);
    None only for a policy that never saw data, which then needs ``normalizer``.
    """
    if spec is not None:
        if spec.env != exp.env or spec.features != exp.features:
            raise ConfigError("the env spec was not made from this experiment")
        if normalizer is not None and normalizer is not spec.normalizer:
            raise ConfigError("give the normalizer through the env spec only")
        normalizer = spec.normalizer
    if normalizer is None:
        raise ConfigError("a bundle needs the env spec it trained in, or a normalizer")
    normalizer.check_spec(exp.features)
    weights = save(tensors)
    env = exp.env
    manifest = BundleManifest(
        format=BUNDLE_FORMAT, version=version, created_ms=int(time.time() * 1000),
        files={WEIGHTS: hashlib.sha256(weights).hexdigest()}, experiment=exp.name,
        package=package_info(), libraries=_versions(),
        env_id=EnvIdentity(id=MULTI_ID if spec is not None and spec.several else TRADING_ID,
                           version=ENV_VERSION),
        env=env, feature_spec=exp.features, feature_spec_hash=exp.features.hash,
        normalizer=normalizer,
        observation=ObservationSpec(shape=(obs_dim,), dtype="float32",
                                    position_state=POSITION_STATE_NAMES),
        network=architecture(exp, obs_dim, len(env.positions)),
        data=None if spec is None else data_info(spec),
        training=training_info(training),
        evaluation=None if evaluation is None else json_safe(evaluation))
    return {WEIGHTS: weights, MANIFEST: manifest.to_json()}


def write_bundle(folder: str | Path, tensors: dict[str, np.ndarray], exp: ExperimentConfig,
                 spec: EnvSpec, obs_dim: int, *, training: Mapping[str, Any],
                 evaluation: dict[str, Any] | None = None) -> Path:
    """Write a bundle folder atomically (temporary folder, fsync, rename); refuse to
    replace an existing one."""
    target = Path(folder).resolve()
    files = bundle_files(tensors, exp, spec, obs_dim, training=training,
                         evaluation=evaluation)
    try:
        LocalBlobStore(target.parent).put_tree(f"{target.name}/", files, last=MANIFEST)
    except PreconditionFailedError as exc:
        raise ConfigError(f"{target} exists: bundles are immutable") from exc
    return target


def random_bundle(exp: ExperimentConfig, *, seed: int = 0,
                  training: dict[str, Any] | None = None,
                  spec: EnvSpec | None = None) -> dict[str, bytes]:
    """A randomly initialized policy bundle for ``exp``: for wiring and tests before a
    policy is trained (it trades noise). With ``spec`` (``exp.fit_env_spec()``) the bundle
    carries its fitted normalizer and data ranges; without, an identity normalizer and no
    data."""
    features = exp.features
    obs_dim = exp.env.window * features.n_features + N_POSITION_STATE
    torch.manual_seed(int(np.random.default_rng(seed).integers(2**31)))
    net = QNetwork(architecture(exp, obs_dim, len(exp.env.positions)).architecture())
    tensors = {k: v.detach().numpy().copy() for k, v in net.named_linear_tensors().items()}
    n = features.n_features
    normalizer = None
    if spec is None:
        normalizer = Normalizer(names=features.names, spec_hash=features.hash,
                                mean=np.zeros(n), std=np.ones(n), clip=5.0, fitted_rows=0,
                                fit_start_ts=0, fit_end_ts=0)
    return bundle_files(tensors, exp, spec, obs_dim,
                        training=training or {"iteration": 0, "random_init_seed": seed},
                        normalizer=normalizer)
