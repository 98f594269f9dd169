"""Signed requests to Binance's REST API, with the exchange's errors turned into the
order side's control flow (``execution.py``).

Transport: blocking ``http.client`` connections kept alive in a small LIFO pool and used
from a private thread pool (``run_in_executor``). A request reuses the most recently used
connection, so the order path pays for no TCP (or TLS) handshake: on loopback a request
costs a few hundred microseconds, well inside the 20 ms bar-close-to-ack budget. Blocking
``http.client`` is chosen over a hand-written asyncio HTTP/1.1 client because it already
does TLS, chunked bodies and keep-alive bookkeeping correctly; the thread hop costs tens of
microseconds, and a private executor keeps other ``to_thread`` users from queueing ahead of
an order. A pooled connection the server has closed while idle is detected before use (its
socket reads as ready: EOF) and replaced.

Signing: ``timestamp`` (the server clock's estimate, ``binance_clock.ServerClock``) and
``recvWindow`` are appended to the parameters, the whole query string is signed
(HMAC-SHA256, ``binance_auth.ApiKeys.sign``) and ``signature`` appended last; the body is
empty. The API key travels only in the ``X-MBX-APIKEY`` header and no error message
carries the query string.

Errors (HTTP status and Binance ``code``):
- -1021 (timestamp outside recvWindow): resync the clock and retry once; a second -1021
  is a ``ClockSkewError`` (temporary; nothing was placed);
- 418: ``VenueBannedError``, and requests are refused locally until the ban ends;
  429 (or codes -1003/-1015 with another status): ``RateLimitedError(retry_after_s)``,
  and requests are refused locally until then;
- 401, -2014, -2015, -1022: ``VenueAuthError``;
- timeouts, broken connections after sending, 5xx, 408, -1006/-1007 (Binance's "execution
  status unknown"): ``OrderFateUnknownError`` for a request marked ``unsafe`` (placing an
  order: it may have been executed), ``RestUnavailableError`` (temporary) otherwise; a
  connection that could not even be opened sent nothing: temporary in both cases;
- any other 4xx with a Binance error body: ``BinanceApiError`` carrying ``code`` and
  ``msg`` (the order side turns refusals into rejected orders);
- a 2xx reply that is not JSON: ``MalformedReplyError`` naming the endpoint.
"""

from __future__ import annotations

import functools
import json
import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any, TypeVar

from raytrade.actors.venues.binance_auth import ApiKeys
from raytrade.actors.venues.binance_clock import RateLimitTracker, ServerClock
from raytrade.actors.venues.execution import (
    RateLimitedError,
    VenueAuthError,
    VenueBannedError,
)
from raytrade.actors.venues.http import decimal_text as decimal_text
from raytrade.actors.venues.pooled_rest import PooledRestTransport
from raytrade.actors.venues.replies import MalformedReplyError as MalformedReplyError
from raytrade.envs.errors import ConfigError, OperationalError, TemporaryError

log = logging.getLogger(__name__)

AUTH_CODES = frozenset({-2014, -2015, -1022})
"""API key format invalid, key/IP/permission refused, bad signature."""
UNKNOWN_FATE_CODES = frozenset({-1006, -1007})
"""Binance: "execution status unknown" (message bus / backend timeout)."""
TIMESTAMP_CODE = -1021
RATE_LIMIT_CODES = frozenset({-1003, -1015})
"""Too many requests / too many new orders: a rate limit whatever the HTTP status."""
Params = Mapping[str, str | int | float | bool]
T = TypeVar("T")


class BinanceApiError(OperationalError):
    """Binance refused a request with an error body (HTTP 4xx ``{"code", "msg"}``)."""

    def __init__(self, endpoint: str, status: int, code: int | None, msg: str) -> None:
        super().__init__(f"{endpoint}: HTTP {status}, Binance code {code}: {msg}")
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.msg = msg


class ClockSkewError(TemporaryError):
    """-1021 again right after a clock resync: nothing was sent through."""


class _Resync(Exception):  # noqa: N818 - internal control flow, never escapes
    pass


class SignedTransport(PooledRestTransport):
    """Requests to one Binance REST base URL (module docstring).

    ``time_path``: the unsigned server-time endpoint (``/api/v3/time`` on spot,
    ``/fapi/v1/time`` on futures) the clock syncs against."""

    def __init__(self, rest_url: str, keys: ApiKeys, *, time_path: str,
                 timeout_s: float = 5.0, recv_window_ms: int = 5000,
                 time_resync_s: float = 600.0, pool_size: int = 4,
                 max_idle_s: float = 50.0) -> None:
        super().__init__("Binance", rest_url, keys, timeout_s=timeout_s,
                         pool_size=pool_size, max_idle_s=max_idle_s)
        if not 0 < recv_window_ms <= 60_000:
            raise ConfigError(f"recv_window_ms must be in (0, 60000], got {recv_window_ms}")
        self.recv_window_ms = recv_window_ms
        self.tracker = RateLimitTracker()
        self.clock = ServerClock(self._server_time, resync_s=time_resync_s)
        self._time_path = time_path

    @property
    def connections_opened(self) -> int:
        """TCP connections opened so far (keep-alive makes this small)."""
        return self._pool.opened

    async def call(self, method: str, path: str, params: Params | None = None, *,
                   signed: bool = False, api_key: bool = False, unsafe: bool = False) -> Any:
        """The JSON reply of ``method path`` (errors: module docstring), run on the
        transport's threads. ``signed`` adds timestamp, recvWindow and signature;
        ``api_key`` sends the key header without signing (listen keys); ``unsafe`` marks a
        request whose repetition could act twice (placing an order)."""
        return await self.run(functools.partial(
            self.call_sync, method, path, params, signed=signed, api_key=api_key,
            unsafe=unsafe))

    def call_sync(self, method: str, path: str, params: Params | None = None, *,
                  signed: bool = False, api_key: bool = False, unsafe: bool = False) -> Any:
        """``call``, blocking."""
        what = f"{method} {path}"
        self.tracker.check(what)
        for attempt in (0, 1):
            query = _encode(params or {})
            headers = {"User-Agent": "raytrade"}
            if signed or api_key:
                headers["X-MBX-APIKEY"] = self._keys.api_key
            if signed:
                stamp = (f"timestamp={self.clock.now_ms()}&recvWindow={self.recv_window_ms}")
                query = f"{query}&{stamp}" if query else stamp
                query += "&signature=" + self._keys.sign(query)
            target = self._prefix + path + (f"?{query}" if query else "")
            status, reply_headers, body = self._exchange(method, target, headers, what, unsafe)
            try:
                return self._interpret(what, status, reply_headers, body, unsafe)
            except _Resync:
                if attempt == 0:
                    log.warning("%s: timestamp outside recvWindow (-1021); resyncing the "
                                "clock and retrying once", what)
                    self.clock.invalidate()
                    continue
                raise ClockSkewError(f"{what}: timestamp outside recvWindow (-1021) again "
                                     "after a clock resync; nothing was sent through") from None
        raise AssertionError("unreachable")

    def _server_time(self) -> int:
        self.tracker.check(f"GET {self._time_path}")
        status, headers, body = self._exchange("GET", self._prefix + self._time_path,
                                               {"User-Agent": "raytrade"},
                                               f"GET {self._time_path}", False)
        try:
            data = self._interpret(f"GET {self._time_path}", status, headers, body, False)
        except _Resync:
            raise MalformedReplyError(f"GET {self._time_path}: -1021 on an unsigned "
                                      "request") from None
        value = data.get("serverTime") if isinstance(data, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise MalformedReplyError(f"GET {self._time_path}: field 'serverTime' is "
                                      f"{value!r}, not a positive integer")
        return value

    def _exchange(self, method: str, target: str, headers: dict[str, str], what: str,
                  unsafe: bool) -> tuple[int, list[tuple[str, str]], bytes]:
        """One HTTP exchange on a pooled connection (``http.KeepAlivePool.exchange``)."""
        return self._pool.exchange(method, target, headers, None, what, unsafe)

    def _interpret(self, what: str, status: int, headers: list[tuple[str, str]],
                   body: bytes, unsafe: bool) -> Any:
        """The JSON of a 2xx reply, or the error it stands for (module docstring)."""
        self.tracker.observe(headers)
        if 200 <= status < 300:
            return self._json_reply(what, status, body)
        code, msg = self._error_body(body)
        detail = f"HTTP {status}" + (f", Binance code {code}: {msg}" if code is not None
                                      else f": {msg}" if msg else "")
        header = {k.lower(): v for k, v in headers}
        if status == 418:
            wait = self.tracker.on_418(header.get("retry-after"), msg)
            raise VenueBannedError(f"{what}: {detail}; IP banned for {wait:.0f} s", wait)
        if status == 429 or code in RATE_LIMIT_CODES:
            wait = self.tracker.on_429(header.get("retry-after"))
            raise RateLimitedError(f"{what}: {detail}; backing off {wait:.1f} s", wait)
        if status == 401 or code in AUTH_CODES:
            raise VenueAuthError(f"{what}: {detail} (check the API key, its permissions and "
                                 "IP whitelist, and the secret)")
        if code == TIMESTAMP_CODE:
            raise _Resync()
        if status >= 500 or status == 408 or code in UNKNOWN_FATE_CODES:
            retry = header.get("retry-after")
            raise self._server_failure(what, detail, unsafe,
                                       float(retry) if retry and retry.isdigit() else 0.0)
        raise BinanceApiError(what, status, code, msg)

    def _error_body(self, body: bytes) -> tuple[int | None, str]:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None, self._scrub(body)
        if isinstance(data, dict) and isinstance(data.get("code"), int):
            return int(data["code"]), self._scrub(str(data.get("msg", "")))
        return None, self._scrub(body)


def _encode(params: Params) -> str:
    """``k=v&...`` in the given order; booleans as ``true``/``false``, floats as plain
    decimals (never exponent notation)."""
    parts = []
    for key, value in params.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = decimal_text(value)
        else:
            text = str(value)
        parts.append(f"{key}={urllib.parse.quote(text, safe='')}")
    return "&".join(parts)
