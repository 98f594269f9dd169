"""Binance REST klines (``GET /api/v3/klines``): backfill after a gap and warm-up history.

Blocking HTTP (``http.py``) runs in a worker thread (``asyncio.to_thread``) so the event
loop and the websocket reader never wait on it. Pages of up to 1,000 bars are requested
until the range is covered. Failures are ``RestUnavailableError`` (temporary: the caller
holds and retries later); a reply that fails validation is a ``MessageRejectedError``
naming the row.

Binance includes the kline still in progress when the range reaches the current interval
(a partial close and volume, its close time in the future): ``fetch`` returns it like any
row, and the session accepts only bars whose close time has passed
(``actors/watchdog.py``).
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

from raytrade.actors.events import MessageRejectedError
from raytrade.actors.venues.http import get_json
from raytrade.actors.venues.schema import integer, ohlcv
from raytrade.envs.bars import Bar
from raytrade.envs.intervals import interval_to_ms

DEFAULT_REST = "https://api.binance.com"
PAGE = 1000


def parse_rest_klines(data: Any, symbol: str, interval_ms: int, source: str) -> list[Bar]:
    """Bars from a ``GET /api/v3/klines`` reply (arrays of 12 fields), validated like the
    stream; ``MessageRejectedError`` naming the row otherwise."""
    if not isinstance(data, list):
        raise MessageRejectedError(f"{source}: klines reply is not a JSON array", str(data))
    bars = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) < 6:
            raise MessageRejectedError(f"{source}: row {i} is not a kline array", str(row))
        fields = dict(zip(("t", "o", "h", "l", "c", "v"), row[:6], strict=True))
        try:
            t = integer(fields, "t", "")
            o, h, lo, c, v = ohlcv(fields, "")
        except MessageRejectedError as exc:
            raise MessageRejectedError(f"{source}: {symbol} row {i}: {exc.reason}",
                                       str(row)) from None
        if t % interval_ms:
            raise MessageRejectedError(f"{source}: {symbol} row {i}: open time {t} not "
                                       "aligned", str(row))
        bars.append(Bar(t, o, h, lo, c, v))
    return bars


class RestKlines:
    """Klines of one venue's REST API (Binance or anything speaking its protocol)."""

    def __init__(self, base_url: str | None = None, *, timeout_s: float = 10.0,
                 path: str = "/api/v3/klines") -> None:
        self.base = (base_url or DEFAULT_REST).rstrip("/")
        self.timeout_s = timeout_s
        self.path = path
        """The klines endpoint (spot ``/api/v3/klines``, USD-M futures ``/fapi/v1/klines``:
        the same rows)."""

    def _get(self, params: dict[str, str | int]) -> object:
        return get_json(f"{self.base}{self.path}?{urllib.parse.urlencode(params)}",
                        self.timeout_s)

    def fetch_sync(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar]:
        """Bars with ``start_ms <= open time < end_ms``, in order, the one in progress
        included if the range reaches it (blocking)."""
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
