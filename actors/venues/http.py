"""Blocking JSON over HTTP for the venues' REST clients (a neutral module shared by every
venue; callers run it in a worker thread so the event loop never waits on it).

Every failure, network error, HTTP error status or a reply that is not JSON, is a
``RestUnavailableError`` (a ``TemporaryError``: the caller holds and retries later),
carrying the server's ``Retry-After`` hint when it sent one (429, 418, 5xx replies).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

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
