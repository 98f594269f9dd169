"""``PaperTrader``: the paper-trading session as a restartable Ray actor, and its launcher.

The actor owns one :class:`~raytrade.actors.paper_session.PaperSession` running on the
actor's event loop. Ray restarts a dead actor (``max_restarts=-1``); the supervisor
(``run_paper``) notices through ``status`` and calls ``start`` again, and the new session
rebuilds its state from the journal alone. With ``online_learning`` the actor pushes its
transitions, as plain numpy chunks tagged with the policy's FeatureSpec hash, to the
``LiveExperienceQueue`` of the run whose store it follows (found by the store URI, see
``live_experience.queue_address``) if that run is training on the cluster. This module does
not import RLlib: the conversion to RLlib episodes happens on the learner.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import ray
from raytrade.actors.alerts import Notifier
from raytrade.actors.paper_session import PaperConfig, PaperSession
from raytrade.actors.session_host import SessionHost
from raytrade.algos.live_experience import PushResult, TransitionChunk, queue_address

log = logging.getLogger(__name__)


class ExperiencePusher:
    """Sends transition chunks to the live-experience queue of the run ``run_id`` (its
    store URI). Fire and forget: the answer of each push is collected at the next one, so
    refusals (another FeatureSpec, shape or dtype than the learner's) are counted here too
    and logged once per reason. A queue that went away (the run ended) is looked up again.
    """

    def __init__(self, run_id: str, feature_hash: Callable[[], str | None]) -> None:
        self.address = queue_address(run_id)
        self.feature_hash = feature_hash
        self.queue: Any = None
        self.pending: list[Any] = []
        self.pushed = 0
        self.accepted = 0
        self.refused = 0
        self.unsent = 0
        self.last_refusal: str | None = None
        self._logged: set[str] = set()
        self._lock = threading.Lock()  # pushes come from the trader's thread, stats from
        # the actor's event loop

    def __call__(self, obs: npt.NDArray[np.float32], actions: npt.NDArray[np.int64],
                 rewards: npt.NDArray[np.float32]) -> None:
        with self._lock:
            self._collect()
            feature_hash = self.feature_hash()
            if feature_hash is None or not self._find():
                self.unsent += len(actions)
                return
            chunk = TransitionChunk.of(obs, actions, rewards, feature_hash)
            self.pending.append(self.queue.push.remote([chunk]))
            self.pushed += len(chunk)

    def _find(self) -> bool:
        if self.queue is None:
            try:
                self.queue = ray.get_actor(self.address.name, namespace=self.address.namespace)
            except ValueError:
                self._log_once("missing", "online learning on, but the run's live-experience "
                               "queue %s/%s is not running: transitions are not pushed",
                               self.address.namespace, self.address.name)
                return False
        return True

    def _collect(self) -> None:
        """Count the answers of finished pushes."""
        if not self.pending:
            return
        ready, self.pending = ray.wait(self.pending, num_returns=len(self.pending),
                                       timeout=0)
        for ref in ready:
            try:
                result: PushResult = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the queue (run) went away
                self.queue = None
                self._log_once("lost", "live-experience queue lost: %s", exc)
                continue
            self.accepted += result.accepted
            self.refused += result.refused
            if result.reason is not None:
                self.last_refusal = result.reason
                self._log_once(f"refused:{result.reason}", "the learner refused %d live "
                               "transitions: %s", result.refused, result.reason)

    def _log_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(message, *args)

    def stats(self) -> dict[str, Any]:
        """Transitions pushed, accepted and refused by the learner, not sent (no queue),
        and the last refusal's reason."""
        with self._lock:
            self._collect()
        return {"pushed": self.pushed, "accepted": self.accepted, "refused": self.refused,
                "unsent": self.unsent, "last_refusal": self.last_refusal}


@ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0)
class PaperTrader(SessionHost):
    """One symbol's paper trader on Ray (module docstring)."""

    label = "paper"

    def __init__(self, config: PaperConfig, store_uri: str, endpoint_url: str | None = None,
                 notifiers: Sequence[Notifier] = ()) -> None:
        super().__init__(config.actor, store_uri, endpoint_url, notifiers)
        self.config = config
        self.pusher = ExperiencePusher(self.store.uri, self._feature_hash)

    def _feature_hash(self) -> str | None:
        """The FeatureSpec hash of the policy the session trades (None before it has one)."""
        policy = self.session.executor.policy if self.session is not None else None
        return policy.feature_spec.hash if policy is not None else None

    def _new_session(self) -> PaperSession:
        return PaperSession(self.config, self.store, notifiers=self.notifiers,
                            push_transitions=self.pusher)

    async def status(self) -> dict[str, Any]:
        """The session's health, plus whether it runs and why it stopped."""
        health = self.session.health() if self.session is not None else {}
        return {**health, "running": self.running, "error": self.error,
                "pushed_transitions": self.pusher.pushed,
                "live_experience": self.pusher.stats()}

    async def stop(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Stop cleanly: flush the journal, close sockets, log open positions."""
        await self.stop_session(timeout_s)
        return await self.status()

    async def bar_times(self) -> dict[str, Any]:
        """The session's per-bar timings (``PaperSession.bar_times``: bar open time in ms,
        closed kline's arrival and step journaled, in seconds of the session's clock), with
        this actor's process id, its CPU time so far (seconds, every thread; per thread in
        ``thread_cpu_s``), the bars its session processed and torch's intra-op threads: what
        a benchmark of the deployment pools over actors (``scripts/bench_paper_actors.py``)."""
        import torch

        session = self.session
        # the per-thread walk reads /proc for every thread (1.0 ms of CPU measured for 26
        # threads): the process clock is read at its middle, so both cover one moment
        before = time.process_time()
        threads = thread_cpu_s()
        cpu_s = (before + time.process_time()) / 2
        return {"pid": os.getpid(), "torch_threads": torch.get_num_threads(),
                "cpu_s": cpu_s, "thread_cpu_s": threads,
                "processed": session.processed if session is not None else 0,
                "bar_times": list(session.bar_times) if session is not None else []}


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds so far of each thread of this process, summed by name (Linux
    ``/proc/self/task/*/schedstat``, ns; empty elsewhere): Python threads by their
    ``threading`` name (``main`` for the main thread), the others (Ray's C++ threads) by
    their kernel name. A thread that ended is no longer counted."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    names[threading.main_thread().native_id] = "main"
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").glob("*"):
        try:
            ns = int((task / "schedstat").read_text().split()[0])
            name = names.get(int(task.name)) or (task / "comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            continue
        out[name] = out.get(name, 0.0) + ns / 1e9
    return out


def actor_name(config: PaperConfig) -> str:
    """The Ray actor name of a paper trader."""
    return f"raytrade-paper-{config.actor}"


def run_paper(configs: Sequence[PaperConfig], store_uri: str, *,
              endpoint_url: str | None = None, notifiers: Sequence[Notifier] = (),
              duration_s: float | None = None, check_every_s: float = 5.0,
              stop_event: threading.Event | None = None) -> list[dict[str, Any]]:
    """Start one actor per config on the connected Ray, supervise until ``duration_s``,
    SIGINT/SIGTERM or ``stop_event``; stop them cleanly and return their final status."""
    actors = [PaperTrader.options(name=actor_name(c), get_if_exists=True).remote(  # type: ignore[attr-defined]
        c, store_uri, endpoint_url, list(notifiers)) for c in configs]
    return supervise([c.actor for c in configs], actors, duration_s=duration_s,
                     check_every_s=check_every_s, stop_event=stop_event)


def supervise(names: Sequence[str], actors: Sequence[Any], *, duration_s: float | None,
              check_every_s: float, stop_event: threading.Event | None
              ) -> list[dict[str, Any]]:
    """Start restartable trader actors (``start``/``status``/``stop`` methods), call
    ``start`` again every ``check_every_s`` (it restarts a session after a crash), log
    their status, and stop them cleanly at the end; their final statuses."""
    stop = stop_event or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    ray.get([a.start.remote() for a in actors])
    deadline = None if duration_s is None else time.monotonic() + duration_s
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        stop.wait(check_every_s if deadline is None else
                  max(0.0, min(check_every_s, deadline - time.monotonic())))
        for name, actor in zip(names, actors, strict=True):
            try:
                ray.get(actor.start.remote(), timeout=30)  # restarts after a crash
                status = ray.get(actor.status.remote(), timeout=30)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                log.warning("actor %s unavailable (restarting?): %s", name, exc)
                continue
            log.info("%s: %s equity %s position %s faults %s", name,
                     status.get("state"), (status.get("trader") or {}).get("equity"),
                     (status.get("trader") or {}).get("position"),
                     status.get("unresolved_faults"))
    finals = []
    for actor in actors:
        try:
            final = ray.get(actor.stop.remote(), timeout=60)
        except ray.exceptions.RayActorError as exc:
            final = {"error": str(exc)}
        trader = final.get("trader") or {}
        log.info("%s stopped: open position %s on %s, equity %s, journal flushed",
                 final.get("actor"), trader.get("position"), trader.get("symbol"),
                 trader.get("equity"))
        finals.append(final)
        ray.kill(actor, no_restart=True)
    return finals
