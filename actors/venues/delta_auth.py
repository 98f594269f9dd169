"""Delta Exchange API keys and request signing.

Keys: the neutral handling of ``api_keys.py`` with Delta's defaults: environment
variables ``RAYTRADE_DELTA_API_KEY`` and ``RAYTRADE_DELTA_API_SECRET``, or
``RAYTRADE_DELTA_KEYS_FILE`` naming an owner-only (``chmod 600``) JSON or TOML file with
``api_key`` and ``api_secret``. A testnet (demo account) and a mainnet key pair live side
by side under two prefixes (``RAYTRADE_DELTA_TESTNET``...): Delta's keys work only on the
environment that issued them.

Signing (Delta's API documentation, "Authentication: Signing a Message",
https://docs.delta.exchange/#signing-a-message): every private REST request carries the
headers ``api-key``, ``timestamp`` (Unix time in whole **seconds**, as a decimal string)
and ``signature``, the hex HMAC-SHA256 with the secret of

    method + timestamp + path + query + body

where ``method`` is upper case, ``path`` the request path as sent (``/v2/orders``),
``query`` the query string with its leading ``?`` (empty without one) and ``body`` the JSON
body exactly as sent (empty for GET). Delta refuses a signature that reaches it more than
5 s after its timestamp (``expired_signature``). The private websocket authenticates
(``key-auth``) with the same signature over ``GET`` + timestamp + ``/live``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from raytrade.actors.venues.api_keys import ApiKeys
from raytrade.actors.venues.api_keys import load_keys as _load_keys

DEFAULT_PREFIX = "RAYTRADE_DELTA"
"""Environment variables ``<prefix>_API_KEY``, ``<prefix>_API_SECRET``, ``<prefix>_KEYS_FILE``."""
WS_AUTH_PATH = "/live"
"""The path the websocket ``auth`` message signs."""


def load_keys(*, prefix: str = DEFAULT_PREFIX, path: Path | str | None = None,
              environ: Mapping[str, str] | None = None) -> ApiKeys:
    """Delta keys (``api_keys.load_keys``; errors name Delta and the variable or file,
    never a value)."""
    return _load_keys(venue="Delta", prefix=prefix, path=path, environ=environ)


def signature_payload(method: str, timestamp: str, path: str, query: str = "",
                      body: str = "") -> str:
    """The text Delta signs (module docstring). ``query`` without its ``?``."""
    return method.upper() + timestamp + path + (f"?{query}" if query else "") + body


def signed_headers(keys: ApiKeys, method: str, timestamp: str, path: str, query: str = "",
                   body: str = "") -> dict[str, str]:
    """The authentication headers of one request."""
    return {"api-key": keys.api_key, "timestamp": timestamp,
            "signature": keys.sign(signature_payload(method, timestamp, path, query, body))}


def ws_auth_payload(keys: ApiKeys, timestamp: int) -> dict[str, str | int]:
    """The ``payload`` of the websocket ``key-auth`` message (the timestamp a JSON number,
    as the documentation's field list has it; signed as its decimal text)."""
    return {"api-key": keys.api_key, "timestamp": timestamp,
            "signature": keys.sign(signature_payload("GET", str(timestamp), WS_AUTH_PATH))}
