"""Alerts on critical events, through pluggable notifiers (off unless one is configured).

Events: the drawdown halt, a drawdown beyond the alert level, a feed down for longer than
``feed_down_s``, and a rejected policy. Sending happens on a background thread with a
bounded queue, a few retries and a per-(kind, symbol) quiet period, so a slow or broken
endpoint never delays trading and a flapping feed does not flood a phone. Notifier
secrets (a Telegram bot token) never appear in logs or ``repr``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

log = logging.getLogger(__name__)

KINDS = ("halt", "drawdown", "feed_down", "policy_rejected", "journal")


@dataclass(frozen=True)
class Alert:
    """One alert. ``at`` in clock seconds."""

    kind: str
    actor: str
    symbol: str
    message: str
    at: float

    def text(self) -> str:
        """One human-readable line."""
        return f"[raytrade {self.actor}] {self.kind} {self.symbol}: {self.message}"


class Notifier(Protocol):
    """Delivers one alert or raises ``OSError``/``urllib.error.URLError``."""

    def send(self, alert: Alert) -> None:
        ...


def _post_json(url: str, body: dict[str, object], timeout_s: float) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        if resp.status >= 300:
            raise OSError(f"HTTP {resp.status}")


class WebhookNotifier:
    """POSTs the alert as JSON (``kind, actor, symbol, message, at``) to a URL."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def send(self, alert: Alert) -> None:
        _post_json(self.url, {**asdict(alert), "text": alert.text()}, self.timeout_s)

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.url.split('?')[0]!r})"


class TelegramNotifier:
    """Telegram Bot API ``sendMessage`` (``api_base`` may point at a local test server)."""

    def __init__(self, token: str, chat_id: str, *, api_base: str = "https://api.telegram.org",
                 timeout_s: float = 5.0) -> None:
        self._token = token
        self.chat_id = chat_id
        self.api_base = api_base.rstrip("/")
        self.timeout_s = timeout_s

    def send(self, alert: Alert) -> None:
        url = f"{self.api_base}/bot{self._token}/sendMessage"
        try:
            _post_json(url, {"chat_id": self.chat_id, "text": alert.text()}, self.timeout_s)
        except urllib.error.URLError as exc:  # the URL holds the token: drop it
            raise OSError(f"telegram sendMessage failed: {getattr(exc, 'reason', exc)}") \
                from None

    def __repr__(self) -> str:
        return f"TelegramNotifier(chat_id={self.chat_id!r}, token=***)"


class AlertDispatcher:
    """Queues alerts and sends them to every notifier on a background thread."""

    def __init__(self, notifiers: Sequence[Notifier], *, quiet_s: float = 300.0,
                 retries: int = 3, clock: Callable[[], float] = time.time,
                 max_queue: int = 100) -> None:
        self.notifiers = list(notifiers)
        self.quiet_s = quiet_s
        self.retries = retries
        self.clock = clock
        self.sent = 0
        self.failed = 0
        self.suppressed = 0
        self._last: dict[tuple[str, str], float] = {}
        self._queue: queue.Queue[Alert | None] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        """False when no notifier is configured (the default)."""
        return bool(self.notifiers)

    def alert(self, kind: str, actor: str, symbol: str, message: str) -> bool:
        """Queue an alert; False if quiet-period suppressed, disabled or the queue is full."""
        if kind not in KINDS:
            raise ValueError(f"unknown alert kind {kind!r}")
        log.warning("ALERT %s %s %s: %s", actor, kind, symbol, message)
        if not self.enabled:
            return False
        now = self.clock()
        key = (kind, symbol)
        if now - self._last.get(key, -1e18) < self.quiet_s:
            self.suppressed += 1
            return False
        self._last[key] = now
        self._start()
        try:
            self._queue.put_nowait(Alert(kind, actor, symbol, message, now))
        except queue.Full:
            self.suppressed += 1
            return False
        return True

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            for notifier in self.notifiers:
                self._deliver(notifier, item)
            self._queue.task_done()

    def _deliver(self, notifier: Notifier, alert: Alert) -> None:
        for attempt in range(self.retries):
            try:
                notifier.send(alert)
                self.sent += 1
                return
            except (OSError, urllib.error.URLError, ValueError) as exc:
                log.warning("alert via %r failed (try %d): %s", notifier, attempt + 1, exc)
                time.sleep(min(2.0, 0.2 * 2 ** attempt))
        self.failed += 1

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until queued alerts are delivered or given up (for shutdown and tests)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        """Deliver what is queued, then stop the thread."""
        if self._thread is not None:
            self.flush()
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None
