"""The venue-neutral half of a signed REST transport (``binance_signed.SignedTransport``,
``delta_signed.SignedTransport``): a validated base URL, its keep-alive connection pool
(``http.KeepAlivePool``), the private thread pool the blocking requests run on, the reply
text scrubbed of the account's keys before any error shows it, and the two failures every
venue words alike (a 2xx reply that is not JSON; a server-side failure, which leaves an
order's fate unknown). Signing, clocks and each venue's error codes stay in the venue's
own module.

Why blocking ``http.client`` on a private executor rather than an asyncio HTTP client:
``binance_signed``'s docstring.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from raytrade.actors.venues.api_keys import ApiKeys
from raytrade.actors.venues.execution import OrderFateUnknownError
from raytrade.actors.venues.http import KeepAlivePool, RestUnavailableError
from raytrade.actors.venues.replies import MalformedReplyError
from raytrade.envs.errors import ConfigError, TemporaryError

T = TypeVar("T")


class PooledRestTransport:
    """Pooled connections and worker threads for one venue's REST base URL.

    Args:
        venue: the venue's name as errors and thread names show it ("Delta").
        rest_url: ``http(s)://host[:port][/prefix]``; the path prefixes every request.
        keys: the account's keys (only redacted here; the venue module signs).
        timeout_s: socket timeout per request (s, > 0).
        pool_size: pooled connections and worker threads.
        max_idle_s: an idle pooled connection older than this is not reused (s).

    Raises:
        ConfigError: the URL is not http(s)://host..., or ``timeout_s`` is not > 0.
    """

    def __init__(self, venue: str, rest_url: str, keys: ApiKeys, *, timeout_s: float,
                 pool_size: int, max_idle_s: float) -> None:
        url = urllib.parse.urlsplit(rest_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"{venue} REST URL {rest_url!r} must be http(s)://host[:port]")
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s}")
        self.rest_url = rest_url.rstrip("/")
        self._prefix = url.path.rstrip("/")
        self._keys = keys
        self.timeout_s = timeout_s
        self._pool = KeepAlivePool(url.scheme, url.hostname, url.port, timeout_s, pool_size,
                                   max_idle_s)
        self._executor = ThreadPoolExecutor(max_workers=pool_size,
                                            thread_name_prefix=f"{venue.lower()}-rest")

    @property
    def requests(self) -> int:
        """Requests sent (retries included)."""
        return self._pool.sent

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the transport's threads (blocking work that uses its connections)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _json_reply(self, what: str, status: int, raw: bytes) -> Any:
        """The JSON of a 2xx reply ``raw`` to request ``what``.

        Raises:
            MalformedReplyError: the body is not JSON (its scrubbed text is shown).
        """
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise MalformedReplyError(f"{what}: HTTP {status} reply is not JSON: "
                                      f"{self._scrub(raw)!r}") from None

    @staticmethod
    def _server_failure(what: str, detail: str, unsafe: bool,
                        retry_after_s: float = 0.0) -> TemporaryError:
        """The error for a failure on the server's side (5xx, 408, a venue's "status
        unknown"): for an ``unsafe`` request (placing an order) the order may have reached
        the exchange (``OrderFateUnknownError``), else a plain ``RestUnavailableError``."""
        if unsafe:
            return OrderFateUnknownError(f"{what}: {detail}; the order may have reached the "
                                         "exchange")
        return RestUnavailableError(f"{what}: {detail}", retry_after_s)

    def _scrub(self, text: str | bytes, limit: int = 300) -> str:
        """Reply text as it may be shown: the keys replaced, cut to ``limit`` characters."""
        s = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for secret in (self._keys.api_secret, self._keys.api_key):
            s = s.replace(secret, "<redacted>")
        return s[:limit]

    def close(self) -> None:
        """Close the pooled connections and stop the worker threads."""
        self._pool.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
