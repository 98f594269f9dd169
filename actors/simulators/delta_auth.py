"""How the loopback Delta exchange checks a signed request and a websocket ``key-auth``,
answering with Delta's own error bodies.

Delta's rule (docs.delta.exchange, "Authentication" / "Signing a Message"; source
github.com/delta-exchange/slate ``delta-exchange-api-docs.md``): the ``signature`` header
is the lowercase hex HMAC-SHA256, keyed by the API secret, of ``METHOD + timestamp +
requestPath + query string + body`` -- the query string with its leading ``?`` and exactly
as sent, the body exactly as sent -- and "Signature created in the last 5 seconds is
allowed". The ``timestamp`` header is Unix seconds. The private websocket authenticates
with ``{"type": "key-auth", "payload": {"api-key", "signature", "timestamp"}}`` signing
``"GET" + timestamp + "/live"`` ("Authenticating", "Current method").

The REST error bodies are those Delta sends today (recorded against the testnet in 2026):
``{"error":"unauthorized","success":false}`` without credentials,
``{"error":{"code":"invalid_api_key"},"success":false}`` for an unknown key,
``{"error":{"code":"expired_signature","context":{"request_time":..,"server_time":..}},
"success":false}`` outside the window (the docs still call it ``SignatureExpired``) and
``{"success":false,"error":{"code":"Signature Mismatch"}}`` for a wrong signature, all
HTTP 401; a request without ``User-Agent`` is refused by the CDN with HTTP 403 and an HTML
page. The ``key-auth`` replies carry ``type``, ``success``, ``status_code``, ``status`` and,
on failure, ``message``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SIGNATURE_WINDOW_S = 5
"""Seconds a signature stays valid (either side of the server clock)."""

CDN_FORBIDDEN_HTML = ("<html><head><title>403 Forbidden</title></head><body>"
                      "<h1>403 Forbidden</h1><p>Request blocked by CDN</p></body></html>")
"""What the CDN answers a request without ``User-Agent`` (not JSON)."""


def prehash(method: str, timestamp: str, path: str, query: str, body: str) -> str:
    """Delta's signed string; ``query`` without its ``?`` (added here when not empty)."""
    return method.upper() + timestamp + path + (f"?{query}" if query else "") + body


def sign(secret: str, message: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``message`` keyed by ``secret``."""
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DeltaError(Exception):
    """An error answer: HTTP ``status`` and ``body`` (Delta's JSON, or ``html``)."""

    status: int
    body: Mapping[str, Any] = field(default_factory=dict)
    html: str | None = None

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.body or self.html}"


def coded(status: int, code: str, context: Mapping[str, Any] | None = None) -> DeltaError:
    """``{"success": false, "error": {"code": code[, "context": context]}}``."""
    err: dict[str, Any] = {"code": code}
    if context is not None:
        err["context"] = dict(context)
    return DeltaError(status, {"success": False, "error": err})


def bad_schema(param: str, message: str) -> DeltaError:
    """400 ``bad_schema``: one field failed validation (the shape ccxt records)."""
    return coded(400, "bad_schema", {"schema_errors": [
        {"code": "validation_error", "message": message, "param": param}]})


def check_rest(headers: Mapping[str, str], method: str, path: str, query: str, body: str,
               secret_of: Callable[[str], str | None], now_s: float) -> str:
    """The account (API key) of a signed request, or ``DeltaError`` as Delta answers.

    ``headers`` are case-insensitive request headers; ``query``/``body`` as received;
    ``secret_of`` maps a key to its secret (None: unknown); ``now_s`` is the server clock.
    """
    if not headers.get("user-agent"):
        raise DeltaError(403, html=CDN_FORBIDDEN_HTML)
    key, ts, sig = (headers.get(h, "") for h in ("api-key", "timestamp", "signature"))
    if not key or not ts or not sig:
        raise DeltaError(401, {"error": "unauthorized", "success": False})
    secret = secret_of(key)
    if secret is None:
        raise coded(401, "invalid_api_key")
    try:
        request_time = int(ts)
    except ValueError:
        raise coded(401, "Signature Mismatch") from None
    if abs(now_s - request_time) > SIGNATURE_WINDOW_S:
        raise coded(401, "expired_signature", {"request_time": request_time,
                                               "server_time": int(now_s)})
    expected = sign(secret, prehash(method, ts, path, query, body))
    if not hmac.compare_digest(expected, sig.lower()):
        raise coded(401, "Signature Mismatch")
    return key


def key_auth_reply(status_code: int, status: str, message: str | None = None
                   ) -> dict[str, Any]:
    """One ``key-auth`` reply."""
    reply: dict[str, Any] = {"type": "key-auth", "success": status_code == 200,
                             "status_code": status_code, "status": status}
    if message is not None:
        reply["message"] = message
    return reply


def check_key_auth(payload: object, secret_of: Callable[[str], str | None], now_s: float
                   ) -> tuple[str | None, dict[str, Any]]:
    """The account a ``key-auth`` payload proves (None on failure) and the reply to send.
    The timestamp may be a number (as documented) or a decimal string (as Delta's own
    sample code sends it)."""
    if not isinstance(payload, dict):
        return None, key_auth_reply(400, "incomplete_payload", "Incomplete payload")
    key, ts, sig = payload.get("api-key"), payload.get("timestamp"), payload.get("signature")
    if not isinstance(key, str) or not key or not isinstance(sig, str) or not sig or \
            isinstance(ts, bool) or not isinstance(ts, int | str) or ts == "":
        return None, key_auth_reply(400, "incomplete_payload", "Incomplete payload")
    try:
        request_time = int(ts)
    except ValueError:
        return None, key_auth_reply(401, "invalid_signature", "Invalid Signature")
    if abs(now_s - request_time) > SIGNATURE_WINDOW_S:
        return None, key_auth_reply(408, "request_expired",
                                    "Timestamp header outside of allowed time window")
    secret = secret_of(key)
    if secret is None:
        return None, key_auth_reply(404, "api_key_not_found", "ApiKey not found")
    if not hmac.compare_digest(sign(secret, f"GET{request_time}/live"), sig.lower()):
        return None, key_auth_reply(401, "invalid_signature", "Invalid Signature")
    return key, key_auth_reply(200, "authenticated")
