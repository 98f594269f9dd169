"""A learner thread that trains whenever the replay ratio allows, and reports its idle time.

Ape-X (Horgan et al. 2018) keeps the learner busy by running it beside sampling instead of
between samples. Here the driver's main thread collects fragments from the env runners
and adds them to replay, and this thread runs learner updates, each as soon as one is
*due* (the replay ratio allows it, ``apex_compact.py``); when none is due it waits on a
condition the main thread signals after every add. Torch releases the GIL inside its
kernels, so on a multi-core machine the update and the main thread's bookkeeping overlap.

Time accounting (seconds, ``perf_counter``): ``busy_s`` inside ``update()``, ``idle_s``
waiting for an update to become due, ``paused_s`` held by :meth:`paused` (checkpoints,
restores: not the learner's idleness). ``idle fraction = idle / (idle + busy)``.

An exception in ``update()`` stops the thread; :meth:`raise_if_failed` re-raises it in the
caller (the training step), so a failing learner fails the run instead of stalling it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

WAIT_S = 0.05
"""Longest single wait for a due update before re-checking (seconds)."""


@dataclass(frozen=True)
class LearnerTime:
    """Learner thread activity since the previous :meth:`LearnerThread.take_time`."""

    updates: int
    busy_s: float
    idle_s: float
    paused_s: float

    @property
    def idle_fraction(self) -> float:
        """Share of the learner's unpaused time spent waiting for a due update (NaN when
        it has not run at all)."""
        total = self.busy_s + self.idle_s
        return self.idle_s / total if total > 0 else float("nan")


class LearnerThread:
    """Runs ``update()`` whenever ``due() > 0`` (see the module docstring)."""

    def __init__(self, update: Callable[[], None], due: Callable[[], int],
                 name: str = "apex-learner", *, start_paused: bool = False) -> None:
        self._update, self._due = update, due
        self._cond = threading.Condition()
        self._stop = False
        self._pause = 1 if start_paused else 0
        self._active = False
        self._updates = 0
        self._busy = self._idle = self._paused = 0.0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def notify(self) -> None:
        """Wake the thread: new data may have made an update due."""
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._stop and (self._pause or self._due() <= 0):
                        t0 = time.perf_counter()
                        paused = bool(self._pause)  # pause and resume notify: a wait
                        self._cond.wait(WAIT_S)      # ends at every change of state
                        waited = time.perf_counter() - t0
                        if paused:
                            self._paused += waited
                        else:
                            self._idle += waited
                    if self._stop:
                        return
                    self._active = True
                t0 = time.perf_counter()
                try:
                    self._update()
                finally:
                    with self._cond:
                        self._busy += time.perf_counter() - t0
                        self._updates += 1
                        self._active = False
                        self._cond.notify_all()
        except BaseException as exc:
            self.error = exc

    def raise_if_failed(self) -> None:
        """Re-raise the learner's exception in the calling thread, if it failed."""
        if self.error is not None:
            raise RuntimeError(f"the learner thread failed: {self.error!r}") from self.error

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No update runs inside this block (waits for the current one to finish)."""
        with self._cond:
            self._pause += 1
            self._cond.notify_all()
            while self._active:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._pause -= 1
                self._cond.notify_all()

    @contextmanager
    def resumed(self) -> Iterator[None]:
        """Lift one pause (``start_paused`` counts as one) for this block; on leaving,
        pause again once the update in progress has finished."""
        with self._cond:
            if self._pause < 1:
                raise RuntimeError("resumed() needs a paused learner thread")
            self._pause -= 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._pause += 1
                self._cond.notify_all()
                while self._active:
                    self._cond.wait()

    def take_time(self) -> LearnerTime:
        """Activity since the last call (and reset the counters)."""
        with self._cond:
            out = LearnerTime(self._updates, self._busy, self._idle, self._paused)
            self._updates = 0
            self._busy = self._idle = self._paused = 0.0
        return out

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the current update and end the thread."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)
