"""The policy executor: follows one store channel and serves decisions from the newest
policy it has validated, swapping weights without a restart.

Every poll reads the channel pointer. A new version is downloaded and validated away from
the decision path (manifest, checksums, safetensors weights, observation shape, action
positions and FeatureSpec hash equal to what it serves, finite Q-values on canned
observations); only then is the served policy replaced, by one reference assignment, so a
decision that is running keeps the version it started with and every ``Decision`` names
the version that made it. On any failure the last good policy stays:

- a version that fails validation is rejected for good (bundles are immutable) and
  reported; the executor keeps polling for the next one;
- a store that cannot be reached, or a version deleted while loading, is retried with
  exponential backoff and jitter, up to ``max_backoff_s``;
- a pointer to an older version is ignored unless the move was an explicit rollback.

Time comes from the injected ``clock`` (seconds), so tests and replays are deterministic.
Embedding it in a bot::

    store = PolicyStore("s3://bucket/runs/x")
    executor = PolicyExecutor(store, "live", poll_interval_s=30).start()
    if executor.decides_at(bar_open_ms):  # the bundle's decision interval
        decision = executor.decide(observation, current_position=position)
        broker.target(decision.position)  # decision.version made it

Passing the current position applies the bundle's decision rule (its switching margin,
``envs/decision.py``), the same function the training evaluation and the backtest use.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy.typing as npt
from raytrade.algos.manifest import PolicyRejectedError
from raytrade.algos.policy import Decision, Policy
from raytrade.algos.storage.blobstore import NotFoundError, StoreUnavailableError
from raytrade.algos.storage.policy_store import PolicyStore, version_name
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.errors import ConfigError, RaytradeError, TemporaryError

log = logging.getLogger(__name__)


class NoPolicyError(RaytradeError):
    """No validated policy is loaded yet: the caller must not trade."""


@dataclass(frozen=True)
class Compatibility:
    """What a policy must match to be swapped in: observation shape, action positions,
    FeatureSpec hash and trading rules (the live feature pipeline, the broker's costs, risk
    and latency, and online learning's rewards are built for these once; a policy trained
    under other rules needs a restarted trader, never a silent swap)."""

    obs_shape: tuple[int, ...]
    positions: tuple[float, ...]
    feature_spec_hash: str
    trading_rules: EnvConfig

    @classmethod
    def of(cls, policy: Policy) -> Compatibility:
        return cls(policy.obs_shape, policy.positions, policy.feature_spec_hash,
                   policy.manifest.env.trading_rules())

    def mismatch(self, policy: Policy) -> str | None:
        """Why ``policy`` does not fit, or None."""
        other = Compatibility.of(policy)
        for name in ("obs_shape", "positions", "feature_spec_hash"):
            if getattr(self, name) != getattr(other, name):
                return (f"incompatible {name}: serving {getattr(self, name)}, new version "
                        f"has {getattr(other, name)}")
        changed = self.trading_rules.differences(other.trading_rules)
        if changed:
            detail = ", ".join(f"{name} {_field(self.trading_rules, name)!r} -> "
                               f"{_field(other.trading_rules, name)!r}" for name in changed)
            return (f"incompatible trading rules ({detail}): the trader's broker and "
                    "rewards follow the serving policy's manifest; restart the trader to "
                    "adopt the new rules")
        return None


def _field(config: EnvConfig, path: str) -> object:
    value: object = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


@dataclass(frozen=True)
class ExecutorEvent:
    """Something an operator may want to hear about. ``kind``: ``swapped``, ``rejected``,
    ``unavailable`` (store or version unreachable; backing off) or ``ignored_older``."""

    kind: str
    version: int | None
    reason: str
    at: float


@dataclass
class ExecutorStatus:
    """A snapshot for dashboards and health checks (times from the executor's clock)."""

    channel: str
    version: int | None
    loaded_at: float | None
    policy_created_ms: int | None
    last_check_at: float | None
    last_success_at: float | None
    consecutive_failures: int
    next_check_at: float
    rejected: dict[int, str] = field(default_factory=dict)
    last_error: str | None = None


class PolicyExecutor:
    """Serves decisions from the newest validated version on ``channel``."""

    def __init__(self, store: PolicyStore, channel: str = "live", *,
                 poll_interval_s: float = 10.0, max_backoff_s: float = 300.0,
                 min_confidence: float = 0.0, temperature: float = 1.0,
                 expect: Compatibility | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_event: Callable[[ExecutorEvent], None] | None = None,
                 seed: int | None = None) -> None:
        if channel not in ("candidate", "paper", "live"):
            raise ConfigError(f"unknown channel {channel!r}")
        if not poll_interval_s > 0 or max_backoff_s < poll_interval_s:
            raise ConfigError("need poll_interval_s > 0 and max_backoff_s >= poll_interval_s")
        if not 0.0 <= min_confidence <= 1.0:
            raise ConfigError("min_confidence is a probability in [0, 1]")
        self.store = store
        self.channel = channel
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max_backoff_s
        self.min_confidence = min_confidence
        self.temperature = temperature
        self.expect = expect
        self.clock = clock
        self.on_event = on_event
        self.events: deque[ExecutorEvent] = deque(maxlen=256)
        self._rng = random.Random(seed)
        self._policy: Policy | None = None
        self._ignored: tuple[int, int] | None = None  # last older pointer ignored
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = ExecutorStatus(channel=channel, version=None, loaded_at=None,
                                      policy_created_ms=None, last_check_at=None,
                                      last_success_at=None, consecutive_failures=0,
                                      next_check_at=clock())

    # -- decisions --------------------------------------------------------------------
    @property
    def policy(self) -> Policy | None:
        """The policy being served (None until the first valid version loads)."""
        return self._policy

    @property
    def version(self) -> int | None:
        policy = self._policy
        return None if policy is None else policy.version

    def decide(self, obs: npt.ArrayLike, current_position: float | None = None) -> Decision:
        """A decision from the served policy (``NoPolicyError`` if none); the version is read
        once, so a concurrent swap never mixes two versions in one decision."""
        policy = self._policy
        if policy is None:
            raise NoPolicyError(f"no validated policy on channel {self.channel} yet")
        return policy.decide(obs, current_position, self.min_confidence)

    def decides_at(self, ts_ms: int) -> bool:
        """Whether the served policy's decision rule decides on the bar opening at
        ``ts_ms`` (``Policy.decides_at``); a caller holds its position on other bars.
        ``NoPolicyError`` if no policy is served."""
        policy = self._policy
        if policy is None:
            raise NoPolicyError(f"no validated policy on channel {self.channel} yet")
        return policy.decides_at(ts_ms)

    # -- following the channel --------------------------------------------------------
    def status(self) -> ExecutorStatus:
        """A copy of the current status."""
        s = self._status
        return ExecutorStatus(**{**vars(s), "rejected": dict(s.rejected)})

    def _emit(self, kind: str, version: int | None, reason: str) -> None:
        event = ExecutorEvent(kind, version, reason, self.clock())
        self.events.append(event)
        level = logging.INFO if kind == "swapped" else logging.WARNING
        log.log(level, "executor %s: %s %s: %s", self.channel, kind,
                version_name(version) if version is not None else "-", reason)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a broken notifier must not stop trading
                log.exception("executor event handler failed")

    def _backoff(self, now: float, reason: str, version: int | None) -> None:
        s = self._status
        s.consecutive_failures += 1
        s.last_error = reason
        delay = min(self.max_backoff_s, self.poll_interval_s * 2 ** s.consecutive_failures)
        s.next_check_at = now + delay * (0.5 + self._rng.random() / 2)
        self._emit("unavailable", version, f"{reason}; next try in "
                                           f"{s.next_check_at - now:.1f} s")

    def poll(self, *, force: bool = False) -> bool:
        """Check the channel once (unless backing off and not ``force``); swap in a new
        valid version. Returns True if the served version changed."""
        with self._poll_lock:
            now = self.clock()
            s = self._status
            if not force and now < s.next_check_at:
                return False
            s.last_check_at = now
            version: int | None = None
            try:
                pointer = self.store.channel(self.channel)
                if pointer is None:
                    return self._ok(now)
                version = pointer.version
                current = self.version
                if version == current or version in s.rejected:
                    return self._ok(now)
                if current is not None and version < current and pointer.kind != "rollback":
                    if self._ignored != (version, pointer.moved_ms):
                        self._ignored = (version, pointer.moved_ms)
                        self._emit("ignored_older", version, f"{self.channel} points to an "
                                   f"older version than {version_name(current)} without a "
                                   "rollback")
                    return self._ok(now)
                policy = self._load(version)
            except PolicyRejectedError as exc:
                assert version is not None
                s.rejected[version] = exc.reason
                s.last_error = str(exc)
                self._emit("rejected", version, exc.reason)
                return self._ok(now)
            except (NotFoundError, StoreUnavailableError, TemporaryError, OSError) as exc:
                self._backoff(now, str(exc), version)
                return False
            except ConfigError as exc:  # a malformed channel pointer: retry later
                self._backoff(now, str(exc), version)
                return False
            except Exception as exc:  # anything unforeseen: keep serving, back off
                log.exception("executor %s: unexpected failure", self.channel)
                self._backoff(now, f"unexpected {type(exc).__name__}: {exc}", version)
                return False
            self._policy = policy  # the swap: one reference assignment
            s.version, s.loaded_at = policy.version, now
            s.policy_created_ms = policy.manifest.created_ms
            self._emit("swapped", policy.version,
                       f"now serving {version_name(version)} (was "
                       f"{version_name(current) if current is not None else 'none'}; "
                       f"{pointer.kind} by {pointer.by}: {pointer.reason})")
            self._ok(now)
            return True

    def _ok(self, now: float) -> bool:
        s = self._status
        s.consecutive_failures = 0
        s.last_success_at = now
        s.next_check_at = now + self.poll_interval_s
        return False

    def _load(self, version: int) -> Policy:
        policy = Policy(self.store.files(version), version, temperature=self.temperature)
        expect = self.expect
        if expect is None and self._policy is not None:
            expect = Compatibility.of(self._policy)
        if expect is not None and (why := expect.mismatch(policy)) is not None:
            raise PolicyRejectedError(why, version)
        policy.check_finite()
        return policy

    def start(self) -> PolicyExecutor:
        """Poll in a daemon thread until ``stop``; returns self. Loads the current
        version first (synchronously) so a bot can trade right away."""
        if self._thread is not None:
            return self
        self.poll(force=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"executor-{self.channel}",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # keep serving the last good policy whatever happens
                log.exception("executor poll failed")
            wait = max(0.0, min(self.poll_interval_s,
                                self._status.next_check_at - self.clock()))
            self._stop.wait(wait if wait > 0 else self.poll_interval_s / 10)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop polling (decisions keep working on the last policy)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def __enter__(self) -> PolicyExecutor:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
