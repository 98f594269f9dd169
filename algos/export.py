"""Export a trained RLlib DQN module as a policy bundle folder.

The folder holds ``weights.safetensors`` (our tensor names, see ``qnetwork.py``) and
``manifest.json``, written last: the sha256 of every file, observation shape and dtype,
action positions, FeatureSpec and its hash, the normalizer, the network architecture, the
training step, evaluation metrics, the env's cost and risk settings, library versions.
``write_bundle`` assembles a folder under a temporary name and renames it into place, so
a reader never sees a half-written bundle; versioned publishing is ``policy_store.py``'s
job (``bundle_files`` gives it the bytes).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.manifest import BUNDLE_FORMAT, MANIFEST, WEIGHTS
from raytrade.algos.qnetwork import QNetwork
from raytrade.algos.storage.blobstore import LocalBlobStore, PreconditionFailedError
from raytrade.envs.errors import ConfigError
from raytrade.envs.features.normalizer import Normalizer
from raytrade.envs.observation import N_POSITION_STATE, POSITION_STATE_NAMES
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


def architecture(exp: ExperimentConfig, obs_dim: int, n_actions: int) -> dict[str, Any]:
    """The manifest's network description for ``exp``."""
    net = exp.network
    return {"type": "dueling_mlp" if exp.dqn.dueling else "mlp", "obs_dim": obs_dim,
            "n_actions": n_actions, "hidden": list(net.hidden), "activation": net.activation,
            "encoder": exp.encoder_spec(), "head_hidden": [], "head_activation": "relu"}


def json_safe(value: Any) -> Any:
    """Replace non-finite floats (an uncapped ``max_notional`` is inf) with None."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in ("raytrade", "numpy", "torch", "ray", "gymnasium", "safetensors"):
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "unknown"
    return out


def bundle_files(tensors: dict[str, np.ndarray], exp: ExperimentConfig,
                 normalizer: Normalizer, obs_dim: int, *, training: dict[str, Any],
                 evaluation: dict[str, Any] | None = None,
                 version: int | None = None) -> dict[str, bytes]:
    """The bundle's files by name: ``weights.safetensors`` and its ``manifest.json``."""
    normalizer.check_spec(exp.features)
    weights = save(tensors)
    env = exp.env
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": version,
        "created_ms": int(time.time() * 1000),
        "files": {WEIGHTS: hashlib.sha256(weights).hexdigest()},
        "observation": {"shape": [obs_dim], "dtype": "float32", "window": env.window,
                        "position_state": list(POSITION_STATE_NAMES)},
        "actions": {"positions": list(env.positions)},
        "feature_spec": exp.features.to_dict(),
        "feature_spec_hash": exp.features.hash,
        "normalizer": normalizer.to_dict(),
        "network": architecture(exp, obs_dim, len(env.positions)),
        "env": {"costs": dict(vars(env.costs)), "risk": dict(vars(env.risk)),
                "latency_bars": env.latency_bars, "reward": env.reward,
                "reward_scale": env.reward_scale},
        "training": training,
        "evaluation": evaluation,
        "experiment": exp.name,
        "libraries": _versions(),
    }
    text = json.dumps(json_safe(manifest), indent=1, default=float, allow_nan=False)
    return {WEIGHTS: weights, MANIFEST: text.encode()}


def write_bundle(folder: str | Path, tensors: dict[str, np.ndarray], exp: ExperimentConfig,
                 normalizer: Normalizer, obs_dim: int, *, training: dict[str, Any],
                 evaluation: dict[str, Any] | None = None) -> Path:
    """Write a bundle folder atomically (temporary folder, fsync, rename); refuse to
    replace an existing one."""
    target = Path(folder).resolve()
    files = bundle_files(tensors, exp, normalizer, obs_dim, training=training,
                         evaluation=evaluation)
    try:
        LocalBlobStore(target.parent).put_tree(f"{target.name}/", files, last=MANIFEST)
    except PreconditionFailedError as exc:
        raise ConfigError(f"{target} exists: bundles are immutable") from exc
    return target


def random_bundle(exp: ExperimentConfig, *, seed: int = 0,
                  training: dict[str, Any] | None = None,
                  normalizer: Normalizer | None = None) -> dict[str, bytes]:
    """A randomly initialized policy bundle for ``exp``, with ``normalizer`` or an identity
    one: for wiring and tests before a policy is trained (it trades noise)."""
    spec = exp.features
    obs_dim = exp.env.window * spec.n_features + N_POSITION_STATE
    torch.manual_seed(int(np.random.default_rng(seed).integers(2**31)))
    net = QNetwork(architecture(exp, obs_dim, len(exp.env.positions)))
    tensors = {k: v.detach().numpy().copy() for k, v in net.named_linear_tensors().items()}
    n = spec.n_features
    if normalizer is None:
        normalizer = Normalizer(names=spec.names, spec_hash=spec.hash, mean=np.zeros(n),
                                std=np.ones(n), clip=5.0, fitted_rows=0, fit_start_ts=0,
                                fit_end_ts=0)
    return bundle_files(tensors, exp, normalizer, obs_dim,
                        training=training or {"iteration": 0, "random_init_seed": seed})
