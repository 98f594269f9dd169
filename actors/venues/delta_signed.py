"""Signed requests to Delta Exchange's REST API, with its errors turned into the order
side's control flow (``execution.py``).

Transport: blocking ``http.client`` connections kept alive (``http.KeepAlivePool``) and
used from a private thread pool, as the Binance client does (``binance_signed.py`` says
why). Every request sends a ``User-Agent`` (Delta's CDN answers 403 without one) and a
JSON body, compact, signed exactly as sent (``delta_auth.py``: method, timestamp, path,
query, body; the key travels only in the ``api-key`` header; no error message carries a
header).

Server time: Delta signs with whole seconds and refuses a signature more than 5 s from its
clock. Every reply's ``Request-In-Time`` header (the server's receive time, µs) updates the
offset ``server - midpoint(local send, local receive)`` unless its round trip took over a
second; requests are stamped with local time plus the offset. An ``expired_signature``
refusal (HTTP 401) is retried once with a fresh timestamp (nothing was placed), the offset
taken from that reply's header, or from the ``server_time`` (whole seconds) its context
carries when the header is missing; a second one is a ``ClockSkewError``.

Errors (HTTP status and Delta's ``error.code``; documentation "Errors" and "Place order
errors", https://docs.delta.exchange):
- 429: ``RateLimitedError`` with ``X-RATE-LIMIT-RESET`` (ms until Delta's 5-minute quota
  window resets) as ``retry_after_s``; until then requests are refused locally, since
  hammering on a spent quota only extends the wait;
- 401, 403 and the codes ``invalid_api_key``, ``unauthorized``, ``Signature Mismatch``,
  ``ip_not_whitelisted_for_api_key``, ``UnauthorizedApiAccess``: ``VenueAuthError``;
- timeouts, broken connections after sending, 5xx (JSON or a CDN's HTML page), 408:
  ``OrderFateUnknownError`` for a request marked ``unsafe`` (placing an order),
  ``RestUnavailableError`` otherwise; a connection that could not be opened sent nothing:
  temporary in both cases;
- any other 4xx: ``DeltaApiError`` with the status, code and context (the order side turns
  refusals into rejected orders);
- a 2xx reply that is not ``{"success": true, ...}`` JSON: ``MalformedReplyError``.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from raytrade.actors.venues.api_keys import ApiKeys
from raytrade.actors.venues.delta_auth import signed_headers
from raytrade.actors.venues.delta_rest import USER_AGENT, error_code, retry_after_s
from raytrade.actors.venues.execution import (
    RateLimitedError,
    VenueAuthError,
)
from raytrade.actors.venues.pooled_rest import PooledRestTransport
from raytrade.actors.venues.replies import MalformedReplyError
from raytrade.envs.errors import OperationalError, TemporaryError

log = logging.getLogger(__name__)

AUTH_CODES = frozenset({"invalid_api_key", "unauthorized", "Signature Mismatch",
                        "ip_not_whitelisted_for_api_key", "UnauthorizedApiAccess",
                        "InvalidApiKey"})
EXPIRED = "expired_signature"
MAX_CLOCK_RTT_S = 1.0
"""A reply slower than this (a held order reply) says too little about the server's clock:
its receive time could be anywhere in the round trip."""
Query = Mapping[str, str | int]


class DeltaApiError(OperationalError):
    """Delta refused a request with an error body (HTTP 4xx)."""

    def __init__(self, what: str, status: int, code: str, context: Any) -> None:
        detail = f", context {json.dumps(context, sort_keys=True)}" if context else ""
        super().__init__(f"{what}: HTTP {status}, Delta error {code or '(none)'}{detail}")
        self.what = what
        self.status = status
        self.code = code
        self.context = context


class ClockSkewError(TemporaryError):
    """``expired_signature`` again right after adopting the server's time."""


class SignedTransport(PooledRestTransport):
    """Requests to one Delta REST base URL (module docstring)."""

    def __init__(self, rest_url: str, keys: ApiKeys, *, timeout_s: float = 5.0,
                 pool_size: int = 4, max_idle_s: float = 50.0) -> None:
        super().__init__("Delta", rest_url, keys, timeout_s=timeout_s, pool_size=pool_size,
                         max_idle_s=max_idle_s)
        self._lock = threading.Lock()
        self.offset_s = 0.0
        """Server minus local time (s), from the last reply that told it."""
        self.backoff_until = 0.0
        """Monotonic time until which requests are refused after a 429."""
        self.counts = {"429": 0, "expired_signature": 0}

    @property
    def keys(self) -> ApiKeys:
        """The account's keys (the private websocket signs with them too)."""
        return self._keys

    def now_s(self) -> int:
        """The server's time now by the last offset: the signature timestamp."""
        return int(time.time() + self.offset_s)

    async def call(self, method: str, path: str, query: Query | None = None,
                   body: Mapping[str, Any] | None = None, *, signed: bool = False,
                   unsafe: bool = False) -> dict[str, Any]:
        """The reply envelope of ``method path`` (errors: module docstring), run on the
        transport's threads; ``unsafe`` marks a request whose repetition could act twice
        (placing an order)."""
        return await self.run(functools.partial(
            self.call_sync, method, path, query, body, signed=signed, unsafe=unsafe))

    def call_sync(self, method: str, path: str, query: Query | None = None,
                  body: Mapping[str, Any] | None = None, *, signed: bool = False,
                  unsafe: bool = False) -> dict[str, Any]:
        """``call``, blocking."""
        what = f"{method} {path}"
        wait = self.backoff_until - time.monotonic()
        if wait > 0:
            raise RateLimitedError(f"{what}: not sent, Delta's rate limit resets in "
                                   f"{wait:.2f} s", wait)
        # commas stay literal: the text signed is then the text sent, encoded or decoded
        qs = urllib.parse.urlencode(query or {}, safe=",", quote_via=urllib.parse.quote)
        payload = json.dumps(body, separators=(",", ":")) if body is not None else ""
        target = self._prefix + path
        for attempt in (0, 1):
            headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            if signed:
                headers.update(signed_headers(self._keys, method, str(self.now_s()), target,
                                              qs, payload))
            status, reply_headers, raw = self._exchange(
                method, target + (f"?{qs}" if qs else ""), headers, payload, what, unsafe)
            code, context = error_code(raw) if status >= 400 else ("", None)
            if status == 401 and code == EXPIRED and attempt == 0:
                self.counts["expired_signature"] += 1
                if "request-in-time" not in reply_headers:  # else already adopted, in µs
                    self._adopt_server_time(context)
                log.warning("%s: signature expired (server time %s); retrying once with the "
                            "server's clock", what, _server_time(context))
                continue
            if status == 401 and code == EXPIRED:
                raise ClockSkewError(f"{what}: {EXPIRED} again after adopting the server's "
                                     "time; nothing was placed")
            return self._interpret(what, status, reply_headers, raw, code, context, unsafe)
        raise AssertionError("unreachable")

    def _adopt_server_time(self, context: Any) -> None:
        server = _server_time(context)
        if server is not None:
            with self._lock:
                self.offset_s = server - time.time()

    def _exchange(self, method: str, target: str, headers: dict[str, str], payload: str,
                  what: str, unsafe: bool) -> tuple[int, dict[str, str], bytes]:
        """One HTTP exchange on a pooled connection (``http.KeepAlivePool.exchange``):
        status, headers (lower case), body; the reply's server time is observed."""
        sent = time.time()
        status, headers_list, raw = self._pool.exchange(method, target, headers,
                                                        payload.encode() or None, what, unsafe)
        reply_headers = {k.lower(): v for k, v in headers_list}
        self._observe_time(reply_headers.get("request-in-time"), sent, time.time())
        return status, reply_headers, raw

    def _observe_time(self, server_us: str | None, sent: float, received: float) -> None:
        """Adopt the offset a reply's ``Request-In-Time`` tells, unless its round trip was
        too slow to place the server's receive time within ``MAX_CLOCK_RTT_S``."""
        try:
            server = int(server_us) / 1e6 if server_us else None
        except ValueError:
            server = None
        if server is not None and server > 0 and received - sent <= MAX_CLOCK_RTT_S:
            with self._lock:
                self.offset_s = server - (sent + received) / 2.0

    def _interpret(self, what: str, status: int, headers: dict[str, str], raw: bytes,
                   code: str, context: Any, unsafe: bool) -> dict[str, Any]:
        """The envelope of a 2xx reply, or the error it stands for (module docstring)."""
        if 200 <= status < 300:
            data = self._json_reply(what, status, raw)
            if not isinstance(data, dict) or data.get("success") is not True:
                raise MalformedReplyError(f"{what}: HTTP {status} reply is not a success "
                                          f"envelope: {self._scrub(raw)!r}")
            return data
        detail = f"HTTP {status}" + (f", Delta error {code}" if code else
                                     f": {self._scrub(raw, 120)!r}")
        if status == 429:
            wait = retry_after_s(headers.get("x-rate-limit-reset"))
            with self._lock:
                self.counts["429"] += 1
                self.backoff_until = max(self.backoff_until, time.monotonic() + wait)
            raise RateLimitedError(f"{what}: {detail}; backing off {wait:.2f} s", wait)
        if status in (401, 403) or code in AUTH_CODES:
            raise VenueAuthError(f"{what}: {detail} (check the API key and secret, the "
                                 "key's trading permission and IP whitelist, and that the "
                                 "key belongs to this environment: testnet keys work on "
                                 "testnet only)")
        if status >= 500 or status == 408:
            raise self._server_failure(what, detail, unsafe)
        raise DeltaApiError(what, status, code, context)


def _server_time(context: Any) -> float | None:
    """``server_time`` (Unix seconds) of an ``expired_signature`` context."""
    value = context.get("server_time") if isinstance(context, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return float(value)
