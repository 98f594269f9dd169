"""Frame and field checks shared by every venue adapter: every frame and number from a
feed or REST reply passes here (a neutral module: venues never import each other).

Exchanges send prices and sizes as decimal strings. A value is accepted only if it is a
string or a JSON number (never a boolean or null), parses as a float, and is finite
(``"1e309"`` overflows to inf and is refused) and in range.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from raytrade.actors.events import MessageRejectedError


def parse_json(raw: str | bytes) -> Any:
    """The JSON value of a frame; a rejection for truncated text, trailing commas, binary
    garbage or anything else that is not JSON."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MessageRejectedError(f"malformed JSON ({exc.__class__.__name__})", raw) from None


def field(obj: Mapping[str, Any], key: str, raw: str | bytes) -> Any:
    """``obj[key]``, or a rejection naming the missing field."""
    if key not in obj:
        raise MessageRejectedError(f"missing field {key!r}", raw)
    return obj[key]


def number(obj: Mapping[str, Any], key: str, raw: str | bytes, *,
           positive: bool = False) -> float:
    """A finite float from a decimal string or JSON number; ``positive`` demands > 0,
    otherwise >= 0."""
    value = field(obj, key, raw)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MessageRejectedError(f"field {key!r} is {value!r}, not a number", raw)
    try:
        x = float(value)
    except ValueError:
        raise MessageRejectedError(f"field {key!r} is {value!r}, not a number", raw) from None
    if not math.isfinite(x):
        raise MessageRejectedError(f"field {key!r} is {value!r}, not finite", raw)
    if positive and x <= 0:
        raise MessageRejectedError(f"field {key!r} is {value!r}, must be > 0", raw)
    if x < 0:
        raise MessageRejectedError(f"field {key!r} is {value!r}, must be >= 0", raw)
    return x


def integer(obj: Mapping[str, Any], key: str, raw: str | bytes) -> int:
    """A non-negative JSON integer (times in ms, ids)."""
    value = field(obj, key, raw)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MessageRejectedError(f"field {key!r} is {value!r}, not a non-negative integer",
                                   raw)
    return value


def text(obj: Mapping[str, Any], key: str, raw: str | bytes) -> str:
    """A non-empty string field."""
    value = field(obj, key, raw)
    if not isinstance(value, str) or not value:
        raise MessageRejectedError(f"field {key!r} is {value!r}, not a non-empty string", raw)
    return value


def check_ohlc(o: float, h: float, lo: float, c: float, raw: str | bytes) -> None:
    """The OHLC rule every bar obeys: low <= open, close <= high."""
    if not (lo <= min(o, c) and h >= max(o, c) and lo <= h):
        raise MessageRejectedError(f"inconsistent OHLC o={o} h={h} l={lo} c={c}", raw)


def ohlcv(obj: Mapping[str, Any], raw: str | bytes) -> tuple[float, float, float, float,
                                                            float]:
    """Open, high, low, close (each > 0) and volume (>= 0) from keys ``o h l c v``, obeying
    the OHLC rule: the one validation of a bar's prices for every venue and reply."""
    o, h, lo, c = (number(obj, k, raw, positive=True) for k in "ohlc")
    v = number(obj, "v", raw)
    check_ohlc(o, h, lo, c, raw)
    return o, h, lo, c, v
