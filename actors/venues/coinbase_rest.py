"""Coinbase Exchange REST candles (``GET /products/<id>/candles``): warm-up history and gap
backfill for the Coinbase feed (a ``protocol.BarHistory``).

Coinbase answers at most 300 candles per request, newest first, as
``[time_s, low, high, open, close, volume]``, and leaves out intervals without trades.
Those are filled the way the live bar builder (``envs/trade_bars.py``) fills them: a flat
bar at the previous close with volume 0; to know that close, each request starts one
interval early. Rows are validated like the stream (``MessageRejectedError`` names the row).
A range reaching past the current interval returns the candle in progress and flat bars
for intervals that have not happened yet: the session keeps only bars whose close time
has passed (``actors/watchdog.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import urllib.parse
from datetime import UTC, datetime
from typing import Any

from raytrade.actors.events import MessageRejectedError
from raytrade.actors.venues.http import get_json
from raytrade.actors.venues.schema import number, ohlcv
from raytrade.envs.bars import Bar
from raytrade.envs.errors import ConfigError
from raytrade.envs.intervals import interval_to_ms

DEFAULT_REST = "https://api.exchange.coinbase.com"
PAGE = 300
GRANULARITIES_S = (60, 300, 900, 3600, 21600, 86400)
GRANULARITIES = ("1m", "5m", "15m", "1h", "6h", "1d")
"""``GRANULARITIES_S`` as intervals."""


def parse_candles(data: Any, product: str, interval_ms: int, source: str) -> list[Bar]:
    """Bars, oldest first, from a candles reply; ``MessageRejectedError`` naming the row."""
    if not isinstance(data, list):
        raise MessageRejectedError(f"{source}: candles reply is not a JSON array", str(data))
    bars = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != 6:
            raise MessageRejectedError(f"{source}: {product} row {i} is not a candle array",
                                       str(row))
        fields = dict(zip(("t", "l", "h", "o", "c", "v"), row, strict=True))
        try:
            t_s = number(fields, "t", "")
            o, h, lo, c, v = ohlcv(fields, "")
        except MessageRejectedError as exc:
            raise MessageRejectedError(f"{source}: {product} row {i}: {exc.reason}",
                                       str(row)) from None
        t = int(t_s * 1000)
        if t_s != int(t_s) or t % interval_ms:
            raise MessageRejectedError(f"{source}: {product} row {i}: time {t_s} not aligned "
                                       "to the interval", str(row))
        bars.append(Bar(t, o, h, lo, c, v))
    bars.sort(key=lambda b: b.ts)
    for a, b in itertools.pairwise(bars):
        if a.ts == b.ts:
            raise MessageRejectedError(f"{source}: {product}: two candles at {a.ts}", "")
    return bars


def fill_empty(bars: list[Bar], start_ms: int, end_ms: int, interval_ms: int,
               prev_close: float | None) -> list[Bar]:
    """``bars`` with every missing interval in ``[start_ms, end_ms)`` after the first known
    close filled with a flat, zero-volume bar at that close."""
    by_ts = {b.ts: b for b in bars}
    out: list[Bar] = []
    close = prev_close
    for t in range(start_ms, end_ms, interval_ms):
        bar = by_ts.get(t)
        if bar is None and close is not None:
            bar = Bar(t, close, close, close, close, 0.0)
        if bar is not None:
            out.append(bar)
            close = bar.close
    return out


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CoinbaseCandles:
    """Candles of Coinbase Exchange (or anything speaking its protocol)."""

    def __init__(self, base_url: str | None = None, *, timeout_s: float = 10.0) -> None:
        self.base = (base_url or DEFAULT_REST).rstrip("/")
        self.timeout_s = timeout_s

    def fetch_sync(self, product: str, interval: str, start_ms: int, end_ms: int
                   ) -> list[Bar]:
        """Bars with ``start_ms <= open time < end_ms``, in order, gaps filled (blocking)."""
        interval_ms = interval_to_ms(interval)
        if interval_ms // 1000 not in GRANULARITIES_S:
            raise ConfigError(f"Coinbase candles come in {GRANULARITIES_S} s, not {interval}")
        out: list[Bar] = []
        prev: float | None = None
        cursor = start_ms - interval_ms  # one early: the close before the range
        while cursor < end_ms:
            page_end = min(end_ms, cursor + PAGE * interval_ms)
            query = urllib.parse.urlencode({"granularity": interval_ms // 1000,
                                            "start": _iso(cursor),
                                            "end": _iso(page_end - interval_ms)})
            url = f"{self.base}/products/{product}/candles?{query}"
            rows = parse_candles(get_json(url, self.timeout_s), product, interval_ms, url)
            rows = [b for b in rows if cursor <= b.ts < page_end]
            lead = [b for b in rows if b.ts < start_ms]
            if lead:
                prev = lead[-1].close
            page = fill_empty([b for b in rows if b.ts >= start_ms], max(cursor, start_ms),
                              page_end, interval_ms, out[-1].close if out else prev)
            out.extend(page)
            cursor = page_end
        return out

    async def fetch(self, product: str, interval: str, start_ms: int, end_ms: int
                    ) -> list[Bar]:
        """``fetch_sync`` in a worker thread."""
        return await asyncio.to_thread(self.fetch_sync, product, interval, start_ms, end_ms)
