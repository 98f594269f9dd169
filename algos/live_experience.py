"""Live experience: paper-trading actors push their transitions to *their* training run.

``LiveExperienceQueue`` is a Ray actor holding transition chunks, bounded by a number of
transitions: when a push would overflow it, the oldest chunks are dropped and counted.
:class:`~raytrade.algos.apex_dqn.ApeXDQN` creates it at setup and drains it at the start of
every training step into the prioritized replay buffer, next to the env runners' samples.
Off unless ``[live] enabled = true``.

**Scoped to one run.** The queue's Ray name and namespace are derived from the run's
identity, the URI of its store (``queue_address``): the trainer publishes policies to that
store and the paper actors follow a channel of the same store, so both sides compute the
same address and nothing else does. Two runs on one cluster never see each other's queue,
and a paper actor of another run cannot feed this learner.

**Checked.** The learner tells the queue what it trains on (``TransitionSpec``: the
observation shape and dtype of its env, and the hash of its ``FeatureSpec``). A chunk whose
observations have another shape or dtype, or that was computed with another FeatureSpec, is
refused whole and counted (``refused``, with the last reason), never stored; the learner
reports the count as ``live_transitions_refused_lifetime`` and the paper actor in its
status. Chunks must also be internally consistent (``T + 1`` observations for ``T`` actions
and rewards, all finite).

**Plain numpy across the boundary.** Actors push ``TransitionChunk`` (numpy arrays and the
hash); the conversion to RLlib episodes happens on the learner side
(``apex_dqn.episode_from_transitions``), so the paper actor never imports RLlib. This
module imports Ray but not RLlib or torch.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import ray
from raytrade.envs.errors import ConfigError

INGESTED = "live_transitions_ingested"
INGESTED_LIFETIME = "live_transitions_ingested_lifetime"
REFUSED_LIFETIME = "live_transitions_refused_lifetime"
DROPPED_LIFETIME = "live_transitions_dropped_lifetime"


@dataclass(frozen=True)
class QueueAddress:
    """Where a run's queue lives on the cluster: a Ray actor name in a Ray namespace."""

    name: str
    namespace: str


def queue_address(run_id: str) -> QueueAddress:
    """The queue of the run identified by ``run_id`` (its store URI, as ``PolicyStore.uri``
    gives it). Deterministic, so the trainer and the paper actors agree; a digest, so any
    URI makes a valid Ray name."""
    if not run_id.strip():
        raise ConfigError("live experience needs the run's identity (its store URI)")
    digest = hashlib.sha256(run_id.strip().rstrip("/").encode()).hexdigest()[:16]
    return QueueAddress(name=f"raytrade-live-experience-{digest}",
                        namespace=f"raytrade-run-{digest}")


@dataclass(frozen=True)
class TransitionSpec:
    """What the learner trains on: one observation's shape and dtype, and the FeatureSpec
    hash the observations must have been computed with."""

    obs_shape: tuple[int, ...]
    obs_dtype: str
    feature_hash: str

    def refusal(self, chunk: TransitionChunk) -> str | None:
        """Why ``chunk`` does not fit this learner, or None if it does."""
        shape = tuple(chunk.observations.shape[1:])
        if shape != self.obs_shape:
            return f"observation shape {shape}, the learner's is {self.obs_shape}"
        if str(chunk.observations.dtype) != self.obs_dtype:
            return f"observation dtype {chunk.observations.dtype}, the learner's is " \
                   f"{self.obs_dtype}"
        if chunk.feature_hash != self.feature_hash:
            return f"FeatureSpec {chunk.feature_hash[:12]}, the learner's is " \
                   f"{self.feature_hash[:12]}"
        return None


@dataclass(frozen=True)
class TransitionChunk:
    """``T`` consecutive transitions of one trader: ``T + 1`` observations (the vectors the
    policy saw), ``T`` action indices and ``T`` rewards (the env's reward, same
    ``reward_scale``), and the hash of the FeatureSpec that computed the observations."""

    observations: npt.NDArray[Any]
    actions: npt.NDArray[np.int64]
    rewards: npt.NDArray[np.float32]
    feature_hash: str
    terminated: bool = False
    truncated: bool = False

    def __post_init__(self) -> None:
        obs, act, rew = self.observations, self.actions, self.rewards
        if obs.ndim < 2 or act.ndim != 1 or len(act) != len(rew) or len(obs) != len(act) + 1 \
                or len(act) == 0:
            raise ConfigError(f"need T+1 observations and T actions and rewards, got "
                              f"{obs.shape}, {act.shape}, {rew.shape}")
        if not np.isfinite(obs).all() or not np.isfinite(rew).all():
            raise ConfigError("live transitions contain NaN or inf")

    def __len__(self) -> int:
        return len(self.actions)

    @classmethod
    def of(cls, observations: npt.ArrayLike, actions: npt.ArrayLike, rewards: npt.ArrayLike,
           feature_hash: str) -> TransitionChunk:
        """A chunk from array-likes: observations keep their dtype (so a mismatch shows),
        actions become int64 and rewards float32."""
        return cls(np.asarray(observations), np.asarray(actions, dtype=np.int64),
                   np.asarray(rewards, dtype=np.float32), feature_hash)


@dataclass(frozen=True)
class PushResult:
    """What a push did: transitions accepted and refused, and why the last was refused."""

    accepted: int
    refused: int
    reason: str | None = None


@ray.remote(num_cpus=0)
class LiveExperienceQueue:
    """A bounded FIFO of transition chunks, measured in transitions (module docstring)."""

    def __init__(self, expected: TransitionSpec, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ConfigError("live queue capacity must be >= 1 transition")
        self.expected = expected
        self.capacity = capacity
        self.chunks: deque[TransitionChunk] = deque()
        self.size = 0
        self.pushed = 0
        self.dropped = 0
        self.drained = 0
        self.refused = 0
        self.last_refusal: str | None = None

    def configure(self, expected: TransitionSpec, capacity: int) -> None:
        """Re-arm for a learner (a resumed run finds its queue by name): held chunks that do
        not fit ``expected`` are refused and counted."""
        self.expected, self.capacity = expected, capacity
        kept: deque[TransitionChunk] = deque()
        for chunk in self.chunks:
            why = expected.refusal(chunk)
            if why is None:
                kept.append(chunk)
            else:
                self.refused += len(chunk)
                self.last_refusal = why
        self.chunks = kept
        self.size = sum(len(c) for c in kept)

    def push(self, chunks: list[TransitionChunk]) -> PushResult:
        """Add chunks that fit the learner; refuse (and count) the others."""
        accepted = refused = 0
        reason = None
        for chunk in chunks:
            n = len(chunk)
            why = self.expected.refusal(chunk)
            if why is not None:
                refused += n
                reason = self.last_refusal = why
                continue
            if n > self.capacity:
                self.dropped += n
                continue
            while self.size + n > self.capacity:
                old = self.chunks.popleft()
                self.size -= len(old)
                self.dropped += len(old)
            self.chunks.append(chunk)
            self.size += n
            accepted += n
        self.pushed += accepted
        self.refused += refused
        return PushResult(accepted, refused, reason)

    def drain(self, max_transitions: int) -> list[TransitionChunk]:
        """Remove and return the oldest chunks, up to ``max_transitions`` transitions."""
        out: list[TransitionChunk] = []
        taken = 0
        while self.chunks and taken + len(self.chunks[0]) <= max_transitions:
            chunk = self.chunks.popleft()
            self.size -= len(chunk)
            taken += len(chunk)
            out.append(chunk)
        self.drained += taken
        return out

    def stats(self) -> dict[str, Any]:
        """Counters (transitions): held, pushed (accepted), dropped (overflow), drained,
        refused (did not fit the learner), and the last refusal's reason."""
        return {"size": self.size, "pushed": self.pushed, "dropped": self.dropped,
                "drained": self.drained, "refused": self.refused,
                "last_refusal": self.last_refusal}
