"""A trained policy loaded from a bundle with torch and numpy only: no Ray, no pickle.

``manifest.read_bundle`` checks a bundle's files against its manifest and reads the typed
:class:`~raytrade.algos.manifest.BundleManifest` (``policy.manifest``), the only record the
policy reads: positions, observation shape, FeatureSpec, normalizer, network. ``Policy``
then rebuilds the Q-network (``qnetwork.py``) from the manifest and loads the weights
through safetensors, whose format holds only tensors: a pickle planted as weights fails to
parse and is refused.

Decision confidence: the probability of the greedy action under a Boltzmann (softmax)
policy over the Q-values, ``exp(Q_a / tau) / sum_b exp(Q_b / tau)``, with temperature
``tau`` in Q units (Q is in reward units: ``env.reward_scale`` times the discounted sum of
the manifest's ``env.reward``). It runs from ``1 / n_actions`` (Q-values tied: no
preference) to 1 (one action far ahead). ``decide`` keeps the current position when the
confidence is below ``min_confidence``.

The bundle's decision rule (``manifest.env.decision``, ``envs/decision.py``) is applied
by ``decide`` whenever the current position is given: the policy switches only when the Q
advantage of the new position over the held one pays the rule's margin. The same
``decision.choose`` runs in the training evaluation and the backtest, so a bundle
decides the same everywhere. ``decides_at`` says whether a bar is one of the rule's
decision bars (its interval); callers hold in between.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from raytrade.algos.manifest import (
    WEIGHTS,
    BundleManifest,
    PolicyRejectedError,
    read_bundle,
)
from raytrade.algos.qnetwork import QNetwork
from raytrade.envs.decision import choose, held_actions, is_decision_bar, switch_thresholds
from raytrade.envs.errors import RaytradeError


@dataclass(frozen=True)
class Decision:
    """One decision: what the policy wants and what the caller should do.

    ``action`` indexes ``positions``; it is the greedy action, or what the decision rule
    chose instead: the current position's action when ``held`` (the switch did not pay
    the rule's margin, or the confidence is below the minimum; ``why`` says which), or a
    cheaper switch the margin preferred. ``version`` made the decision.
    """

    version: int | None
    action: int
    position: float
    greedy_action: int
    q_values: tuple[float, ...]
    confidence: float
    held: bool
    why: str = "policy"
    """``policy`` (the rule's choice), ``margin`` (the rule kept or changed the greedy
    wish because a switch did not pay its margin) or ``low confidence``."""


def softmax_confidence(q: npt.NDArray[np.floating[Any]], temperature: float
                       ) -> npt.NDArray[np.float64]:
    """Per row, the Boltzmann probability of the greedy action (module docstring)."""
    z = np.asarray(q, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    out: npt.NDArray[np.float64] = 1.0 / p.sum(axis=-1)  # the greedy term is exp(0) = 1
    return out


class Policy:
    """A verified bundle, ready to act. Thread-safe for concurrent ``decide`` calls
    (inference only, no state)."""

    def __init__(self, files: Mapping[str, bytes], version: int | None = None, *,
                 temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError("temperature must be > 0")
        manifest = read_bundle(files, version)
        self.manifest: BundleManifest = manifest
        self.version = version if version is not None else manifest.version
        self.temperature = temperature
        self.positions = manifest.env.positions
        self.obs_shape = manifest.observation.shape
        self.feature_spec = manifest.feature_spec
        self.feature_spec_hash = manifest.feature_spec_hash
        self.normalizer = manifest.normalizer
        self.decision_rule = manifest.env.decision
        self.thresholds = switch_thresholds(manifest.env)
        try:
            self.network = QNetwork(manifest.network.architecture())
        except (TypeError, ValueError, RaytradeError) as exc:
            raise PolicyRejectedError(f"manifest does not describe a usable network: {exc}",
                                      version) from exc
        try:
            from safetensors import SafetensorError
            from safetensors.numpy import load

            tensors = load(bytes(files[WEIGHTS]))
        except (SafetensorError, ValueError, OSError) as exc:
            raise PolicyRejectedError(f"{WEIGHTS} is not a safetensors file ({exc}); weights "
                                 "are never unpickled", version) from exc
        try:
            self.network.load_tensors(tensors)
        except (RaytradeError, ValueError, TypeError) as exc:
            raise PolicyRejectedError(str(exc), version) from exc
        self.network.eval()

    @classmethod
    def from_folder(cls, folder: str | Path, version: int | None = None, *,
                    temperature: float = 1.0) -> Policy:
        """Load a bundle folder (every regular file in it)."""
        root = Path(folder)
        if not root.is_dir():
            raise PolicyRejectedError(f"{root} is not a bundle folder", version)
        files = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
        return cls(files, version, temperature=temperature)

    def q_values(self, obs: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Q-values ``[B, n_actions]`` for a ``[B, *obs_shape]`` batch (or one obs)."""
        batch = np.asarray(obs, dtype=np.float32)
        if batch.shape == self.obs_shape:
            batch = batch[None]
        if batch.shape[1:] != self.obs_shape:
            raise ValueError(f"observation shape {batch.shape[1:]} != {self.obs_shape}")
        with torch.inference_mode():
            return self.network.q_values(batch)

    def action_of(self, position: float) -> int:
        """The action whose target position is nearest ``position``."""
        return int(np.argmin(np.abs(np.asarray(self.positions) - position)))

    def decide(self, obs: npt.ArrayLike, current_position: float | None = None,
               min_confidence: float = 0.0) -> Decision:
        """The decision for one observation. With ``current_position`` the bundle's
        decision rule applies (module docstring) and the position is held when the
        confidence is below ``min_confidence``; without it, the plain greedy action."""
        q = self.q_values(obs)[0]
        greedy = int(np.argmax(q))
        confidence = float(softmax_confidence(q[None], self.temperature)[0])
        if current_position is None:
            return Decision(version=self.version, action=greedy,
                            position=self.positions[greedy], greedy_action=greedy,
                            q_values=tuple(float(v) for v in q), confidence=confidence,
                            held=False)
        held_action = int(held_actions(self.manifest.env, current_position)[0])
        action = int(choose(q[None], [held_action], self.thresholds)[0])
        why = "policy" if action == greedy else "margin"
        if confidence < min_confidence:
            action, why = held_action, "low confidence"
        return Decision(version=self.version, action=action, position=self.positions[action],
                        greedy_action=greedy, q_values=tuple(float(v) for v in q),
                        confidence=confidence, held=action == held_action != greedy,
                        why=why)

    def decides_at(self, ts_ms: int) -> bool:
        """Whether the bar opening at ``ts_ms`` is one of the rule's decision bars."""
        return is_decision_bar(ts_ms, self.feature_spec.interval_ms,
                               self.decision_rule.every_bars)

    def canned_observations(self, n: int = 64, seed: int = 0) -> npt.NDArray[np.float32]:
        """Deterministic probe inputs: zeros, large values of both signs, and seeded
        standard normals (normalized features are roughly N(0, 1))."""
        rng = np.random.default_rng(seed)
        rows = [np.zeros(self.obs_shape), np.full(self.obs_shape, 5.0),
                np.full(self.obs_shape, -5.0)]
        rows.extend(rng.standard_normal((n, *self.obs_shape)))
        return np.asarray(rows, dtype=np.float32)

    def check_finite(self) -> None:
        """``PolicyRejectedError`` if any Q-value on the canned observations is NaN or inf."""
        q = self.q_values(self.canned_observations())
        if not np.all(np.isfinite(q)):
            bad = int((~np.isfinite(q)).any(axis=1).sum())
            raise PolicyRejectedError(f"non-finite Q-values on {bad} of {len(q)} canned "
                                 "observations", self.version)
