"""Binance REST klines (``GET /api/v3/klines``): backfill after a gap and warm-up history.

Blocking HTTP with the standard library runs in a worker thread (``asyncio.to_thread``) so
the event loop and the websocket reader never wait on it. Pages of up to 1,000 bars are
requested until the range is covered. 429 and 418 replies carry ``Retry-After``; they and
any network error or 5xx become ``TemporaryError`` (the caller holds and retries later);
a reply that fails validation is a ``MessageRejectedError`` naming the row.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request

from raytrade.actors.binance import DEFAULT_REST, parse_rest_klines
from raytrade.envs.bars import Bar
from raytrade.envs.errors import TemporaryError
from raytrade.envs.intervals import interval_to_ms

PAGE = 1000


class RestUnavailableError(TemporaryError):
    """The REST endpoint failed; ``retry_after_s`` is the server's hint (0 if none)."""

    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def get_json(url: str, timeout_s: float) -> object:
    """GET ``url`` and parse JSON; every failure is a ``RestUnavailableError`` (with the
    server's ``Retry-After`` on 429/418/5xx replies)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        retry = exc.headers.get("Retry-After") if exc.headers else None
        raise RestUnavailableError(f"GET {url}: HTTP {exc.code}",
                                   float(retry) if retry else 0.0) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise RestUnavailableError(f"GET {url}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise RestUnavailableError(f"GET {url}: reply is not JSON ({exc})") from None


class RestKlines:
    """Klines of one venue's REST API (Binance or anything speaking its protocol)."""

    def __init__(self, base_url: str | None = None, *, timeout_s: float = 10.0) -> None:
        self.base = (base_url or DEFAULT_REST).rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, params: dict[str, str | int]) -> object:
        return get_json(f"{self.base}/api/v3/klines?{urllib.parse.urlencode(params)}",
                        self.timeout_s)

    def fetch_sync(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar]:
        """Closed bars with ``start_ms <= open time < end_ms``, in order (blocking)."""
        interval_ms = interval_to_ms(interval)
        out: list[Bar] = []
        cursor = start_ms
        while cursor < end_ms:
            data = self._get({"symbol": symbol, "interval": interval, "startTime": cursor,
                              "endTime": end_ms - 1, "limit": PAGE})
            page = parse_rest_klines(data, symbol, interval_ms, f"{self.base} klines")
            page = [b for b in page if cursor <= b.ts < end_ms]
            if not page:
                break
            out.extend(page)
            cursor = page[-1].ts + interval_ms
        return out

    async def fetch(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar]:
        """``fetch_sync`` in a worker thread."""
        return await asyncio.to_thread(self.fetch_sync, symbol, interval, start_ms, end_ms)
