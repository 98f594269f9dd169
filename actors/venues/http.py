"""Blocking JSON over HTTP for the venues' REST clients (a neutral module shared by every
venue; callers run it in a worker thread so the event loop never waits on it).

Every failure, network error, HTTP error status or a reply that is not JSON, is a
``RestUnavailableError`` (a ``TemporaryError``: the caller holds and retries later),
carrying the server's ``Retry-After`` hint when it sent one (429, 418, 5xx replies).

For the signed order clients (``binance_signed.py``, ``delta_signed.py``):
``KeepAlivePool``, idle keep-alive connections reused most recent first, and
``decimal_text``, a float as the plain decimal an exchange reads.
"""

from __future__ import annotations

import http.client
import json
import select
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal

from raytrade.actors.venues.execution import OrderFateUnknownError
from raytrade.envs.errors import TemporaryError


class RestUnavailableError(TemporaryError):
    """The REST endpoint failed; ``retry_after_s`` is the server's hint (0 if none)."""

    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def get_json(url: str, timeout_s: float) -> object:
    """GET ``url`` and parse JSON; every failure is a ``RestUnavailableError`` (module
    docstring)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        retry = exc.headers.get("Retry-After") if exc.headers else None
        exc.close()  # the raised error keeps ``exc`` as its context: free the socket now
        raise RestUnavailableError(f"GET {url}: HTTP {exc.code}",
                                   float(retry) if retry else 0.0) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise RestUnavailableError(f"GET {url}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise RestUnavailableError(f"GET {url}: reply is not JSON ({exc})") from None


class KeepAlivePool:
    """Idle keep-alive connections to one host, most recently used first (the signed REST
    clients: a request reuses the warmest connection and pays for no handshake)."""

    def __init__(self, scheme: str, host: str, port: int | None, timeout_s: float,
                 size: int, max_idle_s: float) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        self.timeout_s, self.size, self.max_idle_s = timeout_s, size, max_idle_s
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()
        self.opened = 0
        """Connections opened (the keep-alive test counts them)."""
        self.sent = 0
        """Requests sent (a stale connection's retry included)."""

    def get(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection and whether it was used before; a new one is connected here, so
        a failure to connect raises ``OSError`` before anything is sent."""
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn, since = self._idle.pop()
            if now - since <= self.max_idle_s and not dropped(conn):
                return conn, True
            conn.close()
        cls = (http.client.HTTPSConnection if self.scheme == "https"
               else http.client.HTTPConnection)
        conn = cls(self.host, self.port, timeout=self.timeout_s)
        conn.connect()
        self.opened += 1
        return conn, False

    def put(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def exchange(self, method: str, target: str, headers: dict[str, str],
                 body: bytes | None, what: str, unsafe: bool
                 ) -> tuple[int, list[tuple[str, str]], bytes]:
        """One HTTP exchange on a pooled connection: status, headers, body (blocking).

        A connection that cannot be opened sent nothing: ``RestUnavailableError``. A
        reused connection the server closed while idle is retried once on a new one,
        unless the request is ``unsafe`` (placing an order: it may have been read).
        Otherwise a failure after sending is ``OrderFateUnknownError`` for an ``unsafe``
        request and ``RestUnavailableError`` for any other."""
        for attempt in (0, 1):
            try:
                conn, reused = self.get()
            except OSError as exc:
                raise RestUnavailableError(f"{what}: cannot connect to {self.host} "
                                           f"({exc.__class__.__name__}: {exc}); nothing "
                                           "was sent") from None
            self.sent += 1
            try:
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                stale = reused and isinstance(exc, (http.client.RemoteDisconnected,
                                                    ConnectionResetError, BrokenPipeError))
                if stale and attempt == 0 and not unsafe:
                    continue  # an idle connection the server closed: once more on a new one
                why = f"{exc.__class__.__name__}: {exc}" if str(exc) else \
                    exc.__class__.__name__
                if unsafe:
                    raise OrderFateUnknownError(f"{what}: no reply ({why}); the order may "
                                                "have reached the exchange") from None
                raise RestUnavailableError(f"{what}: no reply ({why})") from None
            if resp.will_close:
                conn.close()
            else:
                self.put(conn)
            return resp.status, resp.getheaders(), raw
        raise AssertionError("unreachable")


def dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that reads as ready was closed (or broken) by the
    server."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def decimal_text(x: float) -> str:
    """``x`` as exchanges read decimals: the shortest plain decimal that round-trips
    (``1e-05`` -> ``0.00001``, ``100.0`` -> ``100``)."""
    text = format(Decimal(repr(float(x))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
