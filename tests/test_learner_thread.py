"""The learner thread: trains only while updates are due, pauses, reports idle time and
hands its failure to the caller."""

from __future__ import annotations

import threading
import time

import pytest
from raytrade.algos.learner_thread import LearnerThread


class Work:
    """Updates become due when the test adds them; each update takes ``cost_s``."""

    def __init__(self, cost_s: float = 0.0) -> None:
        self.lock = threading.Lock()
        self.due_count = 0
        self.done = 0
        self.cost_s = cost_s
        self.fail_at: int | None = None
        self.running = threading.Event()

    def due(self) -> int:
        with self.lock:
            return self.due_count

    def update(self) -> None:
        self.running.set()
        time.sleep(self.cost_s)
        with self.lock:
            if self.fail_at is not None and self.done + 1 == self.fail_at:
                raise ValueError("injected learner failure")
            self.due_count -= 1
            self.done += 1
        self.running.clear()

    def add(self, n: int) -> None:
        with self.lock:
            self.due_count += n


def wait_for(cond: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.002)


def test_learner_thread_runs_exactly_the_due_updates_and_reports_idle_time() -> None:
    work = Work(cost_s=0.01)
    thread = LearnerThread(work.update, work.due)
    thread.start()
    try:
        time.sleep(0.1)  # nothing due: idle
        work.add(5)
        thread.notify()
        wait_for(lambda: work.done == 5)
        time.sleep(0.05)
        spent = thread.take_time()
        assert work.done == 5 and work.due() == 0  # never more than due
        assert spent.updates == 5
        assert spent.busy_s >= 0.045
        assert spent.idle_s >= 0.1
        assert 0.5 < spent.idle_fraction < 1.0
        assert thread.take_time().updates == 0  # counters reset by take_time
    finally:
        thread.stop()
    assert not thread.alive


def test_learner_thread_paused_blocks_updates_until_released() -> None:
    work = Work(cost_s=0.02)
    thread = LearnerThread(work.update, work.due)
    thread.start()
    try:
        work.add(1000)
        thread.notify()
        work.running.wait(2.0)
        with thread.paused():
            frozen = work.done
            assert not work.running.is_set()  # the update in progress finished first
            time.sleep(0.1)
            assert work.done == frozen
        wait_for(lambda: work.done > frozen)
        assert thread.take_time().paused_s > 0.05
    finally:
        thread.stop()


def test_learner_thread_failure_is_raised_in_the_caller() -> None:
    work = Work()
    work.fail_at = 3
    thread = LearnerThread(work.update, work.due)
    thread.start()
    work.add(10)
    thread.notify()
    wait_for(lambda: not thread.alive)
    assert work.done == 2
    with pytest.raises(RuntimeError, match="learner thread failed") as info:
        thread.raise_if_failed()
    assert isinstance(info.value.__cause__, ValueError)


def test_learner_thread_started_paused_trains_only_inside_resumed() -> None:
    work = Work(cost_s=0.005)
    thread = LearnerThread(work.update, work.due, start_paused=True)
    thread.start()
    try:
        work.add(10_000)
        thread.notify()
        time.sleep(0.05)
        assert work.done == 0
        with thread.resumed():
            wait_for(lambda: work.done >= 3)
        frozen = work.done
        assert not work.running.is_set()  # left only after the update in progress
        time.sleep(0.05)
        assert work.done == frozen
        with pytest.raises(RuntimeError, match="paused"), thread.resumed(), thread.resumed():
            pass
    finally:
        thread.stop()
