"""Alerts on critical events, through pluggable notifiers (off unless one is configured).

Events: the drawdown halt, a drawdown beyond the alert level, a feed down for longer than
``feed_down_s``, and a rejected policy. Sending happens on a background thread with a
bounded queue, a few retries and a per-(kind, symbol) quiet period, so a slow or broken
endpoint never delays trading and a flapping feed does not flood a phone.

Notifier secrets never appear in logs, ``repr``/``vars`` dumps or error messages: a
Telegram bot token, and the whole webhook URL (Slack and Discord put the credential in the
path), are kept as :class:`Secret`; a failed delivery raises ``OSError`` naming only the
host and the cause, with every part of the URL scrubbed and no chained urllib exception
(those carry the URL).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

log = logging.getLogger(__name__)

KINDS = ("halt", "drawdown", "feed_down", "policy_rejected", "journal", "live_halt",
         "reconciliation", "command_invalid")


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
    """Delivers one alert or raises (the built-in notifiers raise ``OSError``). Any
    exception counts as a failed try and its message is logged, so it must hold no
    secret."""

    def send(self, alert: Alert) -> None:
        ...


class Secret:
    """A string that never shows itself: ``repr``, ``str`` and f-strings give ``***``, so a
    secret kept in an attribute stays out of ``repr``/``vars`` dumps and log lines;
    ``reveal()`` returns it for the one place that sends it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself (only to send it)."""
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _secret_parts(url: str) -> list[str]:
    """Every form in which ``url``'s secret can appear in an error message: the whole URL,
    its user info, path, query and each longer path or query segment (Slack and Discord
    put the webhook token in the path, others in the query), longest first."""
    parts = urllib.parse.urlsplit(url)
    found = {url, parts.path, parts.query, parts.fragment,
             parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""}
    for piece in (*parts.path.split("/"), *parts.query.replace("=", "&").split("&")):
        if len(piece) >= 6:
            found.add(piece)
            found.add(urllib.parse.unquote(piece))
    return sorted((f for f in found if f), key=len, reverse=True)


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _post_json(url: str, body: dict[str, object], timeout_s: float, label: str) -> None:
    """POST ``body`` as JSON to ``url``; on any failure ``OSError`` whose message names
    ``label`` and the cause with every part of ``url`` that may hold a secret replaced by
    ``***``, raised with no chained exception (urllib's errors carry the URL)."""
    failure: str | None = None
    try:
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            if resp.status >= 300:
                failure = f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        failure = f"HTTP {exc.code} {exc.reason}"
        exc.close()
    except urllib.error.URLError as exc:
        reason = exc.reason
        failure = (f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException)
                   else str(reason))
    except Exception as exc:  # any failure, reported without the URL
        failure = f"{type(exc).__name__}: {exc}"
    if failure is not None:  # raised outside the except: no __context__ holding the URL
        raise OSError(f"{label} failed: {_scrub(failure, _secret_parts(url))}")


class WebhookNotifier:
    """POSTs the alert as JSON (``kind, actor, symbol, message, at``) to a URL.

    The URL is a secret: Slack (``hooks.slack.com/services/T../B../<token>``) and Discord
    (``discord.com/api/webhooks/<id>/<token>``) carry the credential in the path. It is
    kept as a :class:`Secret`; ``repr``, log lines and error messages show only the host.
    """

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self._url = Secret(url)
        self.host = urllib.parse.urlsplit(url).hostname or "?"
        self.timeout_s = timeout_s

    def send(self, alert: Alert) -> None:
        _post_json(self._url.reveal(), {**asdict(alert), "text": alert.text()},
                   self.timeout_s, f"webhook to {self.host}")

    def __repr__(self) -> str:
        return f"WebhookNotifier(host={self.host!r}, url=***)"


class TelegramNotifier:
    """Telegram Bot API ``sendMessage`` (``api_base`` may point at a local test server).
    The bot token (part of the request URL) is kept as a :class:`Secret`."""

    def __init__(self, token: str, chat_id: str, *, api_base: str = "https://api.telegram.org",
                 timeout_s: float = 5.0) -> None:
        self._token = Secret(token)
        self.chat_id = chat_id
        self.api_base = api_base.rstrip("/")
        self.timeout_s = timeout_s

    def send(self, alert: Alert) -> None:
        url = f"{self.api_base}/bot{self._token.reveal()}/sendMessage"
        _post_json(url, {"chat_id": self.chat_id, "text": alert.text()}, self.timeout_s,
                   "telegram sendMessage")

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
            except Exception as exc:  # a broken notifier must not stop the alerts
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
