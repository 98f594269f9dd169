"""Delta Exchange REST candles (``GET /v2/history/candles``): warm-up history and gap
backfill for the Delta feed (a ``protocol.BarHistory``), and the public JSON GET the
venue's REST clients share.

Format: Delta's API documentation, "Historical data / OHLC Candles"
(https://docs.delta.exchange/#get-ohlc-candles): query ``resolution`` (``5m``),
``symbol`` (``BTCUSD``), ``start`` and ``end`` in Unix **seconds**, both inclusive bounds
on the bar's open time; the reply ``{"success": true, "result": [{"time": open s, "open",
"high", "low", "close", "volume"}, ...]}`` lists at most 2,000 bars, newest first. The
range is requested in windows of at most ``PAGE`` bars, each row checked (aligned open
time, finite positive prices obeying the OHLC rule, volume >= 0, no open time twice):
a row that fails is a ``MessageRejectedError`` naming the URL, the row and the rule.

The reply includes the bar still forming when the range reaches it: ``fetch`` returns it
like any row, and the session keeps only bars whose close time has passed
(``actors/watchdog.py``). Intervals without trades may be missing from the reply; they are
not invented here (the session counts what is still missing as a gap).

Errors: an unknown symbol (HTTP 400 ``invalid_contract``) is a ``ConfigError`` naming it;
HTTP 429 is a ``RestUnavailableError`` carrying ``X-RATE-LIMIT-RESET`` (milliseconds until
Delta's rate-limit window resets) as its ``retry_after_s``; any other failure is a
``RestUnavailableError`` (temporary: the caller holds and retries).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from raytrade.actors.events import MessageRejectedError
from raytrade.actors.venues.http import RestUnavailableError
from raytrade.actors.venues.schema import check_ohlc, integer, number
from raytrade.envs.bars import Bar
from raytrade.envs.errors import ConfigError
from raytrade.envs.intervals import interval_to_ms

DEFAULT_REST = "https://api.india.delta.exchange"
"""Delta Exchange India's REST API (production)."""
PAGE = 2000
"""Delta answers at most 2,000 candles per request."""
RESOLUTIONS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "1d", "1w")
"""Resolutions served by both the REST candles and the ``candlestick_<res>`` channel."""
USER_AGENT = "raytrade"
"""Delta's CDN refuses requests without a User-Agent (HTTP 403)."""


def error_code(body: bytes) -> tuple[str, Any]:
    """``(code, context)`` of a Delta error body (``{"success": false, "error": {"code",
    "context"}}`` or a bare ``"error": "<code>"``); ``("", None)`` when it is not one."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "", None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, str):
        return err, None
    if isinstance(err, dict):
        return str(err.get("code", "")), err.get("context")
    return "", None


def retry_after_s(reset_ms: str | None) -> float:
    """Seconds from an ``X-RATE-LIMIT-RESET`` header (milliseconds); 1 s when absent or
    unreadable."""
    try:
        value = float(reset_ms) / 1000.0 if reset_ms is not None else 1.0
    except ValueError:
        return 1.0
    return value if 0.0 <= value < 3600.0 else 1.0


def get_result(url: str, timeout_s: float) -> Any:
    """The ``result`` of a public Delta GET (module docstring for the errors)."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT,
                                               "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        status, reset = exc.code, exc.headers.get("X-RATE-LIMIT-RESET") if exc.headers else None
        code, context = error_code(exc.read())
        exc.close()
        if code == "invalid_contract":
            raise ConfigError(f"GET {url}: Delta has no such product (HTTP {status}, "
                              f"{code})") from None
        detail = f"GET {url}: HTTP {status}" + (f", {code}" if code else "") + \
            (f" {context}" if context else "")
        raise RestUnavailableError(detail, retry_after_s(reset) if status == 429 else 0.0) \
            from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise RestUnavailableError(f"GET {url}: {exc}") from None
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RestUnavailableError(f"GET {url}: reply is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("success") is not True or "result" not in data:
        raise MessageRejectedError(f"GET {url}: not a Delta success envelope "
                                   "({'success': true, 'result': ...})", body[:200].decode(
                                       "utf-8", "replace"))
    return data["result"]


def parse_candles(data: Any, symbol: str, interval_ms: int, source: str) -> list[Bar]:
    """Bars, oldest first, from a candles ``result``; ``MessageRejectedError`` naming the
    row and the rule otherwise."""
    if not isinstance(data, list):
        raise MessageRejectedError(f"{source}: candles result is not a JSON array", str(data))
    bars = []
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise MessageRejectedError(f"{source}: {symbol} row {i} is not a candle object",
                                       str(row))
        try:
            t_s = integer(row, "time", "")
            o, h, lo, c = (number(row, k, "", positive=True)
                           for k in ("open", "high", "low", "close"))
            v = number(row, "volume", "")
            check_ohlc(o, h, lo, c, "")
        except MessageRejectedError as exc:
            raise MessageRejectedError(f"{source}: {symbol} row {i}: {exc.reason}",
                                       str(row)) from None
        if (t_s * 1000) % interval_ms:
            raise MessageRejectedError(f"{source}: {symbol} row {i}: open time {t_s} s is "
                                       "not aligned to the interval", str(row))
        bars.append(Bar(t_s * 1000, o, h, lo, c, v))
    bars.sort(key=lambda b: b.ts)
    for a, b in itertools.pairwise(bars):
        if a.ts == b.ts:
            raise MessageRejectedError(f"{source}: {symbol}: two candles open at {a.ts} ms",
                                       "")
    return bars


class DeltaCandles:
    """Candles of Delta Exchange (or its loopback simulator): module docstring."""

    def __init__(self, base_url: str | None = None, *, timeout_s: float = 10.0) -> None:
        self.base = (base_url or DEFAULT_REST).rstrip("/")
        self.timeout_s = timeout_s

    def fetch_sync(self, symbol: str, interval: str, start_ms: int, end_ms: int
                   ) -> list[Bar]:
        """Bars with ``start_ms <= open time < end_ms``, oldest first, the forming one
        included if the range reaches it (blocking)."""
        if interval not in RESOLUTIONS:
            raise ConfigError(f"Delta candles come in {RESOLUTIONS}, not {interval}")
        interval_ms = interval_to_ms(interval)
        out: list[Bar] = []
        cursor = start_ms - start_ms % interval_ms
        if cursor < start_ms:
            cursor += interval_ms
        while cursor < end_ms:
            page_end = min(end_ms, cursor + PAGE * interval_ms)
            last_open = page_end - 1 - (page_end - 1) % interval_ms  # inclusive bound
            query = urllib.parse.urlencode({"resolution": interval, "symbol": symbol,
                                            "start": cursor // 1000,
                                            "end": last_open // 1000})
            url = f"{self.base}/v2/history/candles?{query}"
            rows = parse_candles(get_result(url, self.timeout_s), symbol, interval_ms, url)
            out.extend(b for b in rows if cursor <= b.ts < page_end)
            cursor = page_end  # windows, not the last row: a quiet window is no end
        return out

    async def fetch(self, symbol: str, interval: str, start_ms: int, end_ms: int
                    ) -> list[Bar]:
        """``fetch_sync`` in a worker thread."""
        return await asyncio.to_thread(self.fetch_sync, symbol, interval, start_ms, end_ms)
