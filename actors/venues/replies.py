"""Field checks for exchanges' REST and private-stream replies, shared by every order
side (a neutral module: ``binance_replies.py`` and ``delta_replies.py`` build on it).

A reply that is not what the endpoint documents is a ``MalformedReplyError`` naming the
endpoint and the field: the order side never guesses a quantity or a status. Decimals may
arrive as strings (``"0.00100000"``) or JSON numbers, ids and times as integers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from raytrade.envs.errors import DataError


class MalformedReplyError(DataError):
    """A reply that is not what the endpoint documents (names the endpoint and field)."""


def obj(data: Any, where: str) -> Mapping[str, Any]:
    """``data`` as a JSON object."""
    if not isinstance(data, dict):
        raise MalformedReplyError(f"{where}: expected a JSON object, got "
                                  f"{type(data).__name__}")
    return data


def items(d: Mapping[str, Any], field: str, where: str
          ) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The objects of the array ``d[field]``, each with the place errors name
    (``<where> <field>[i]``); ``MalformedReplyError`` if it is not an array of objects."""
    rows = d.get(field)
    if not isinstance(rows, list):
        raise MalformedReplyError(f"{where}: field {field!r} is not an array")
    for i, row in enumerate(rows):
        at = f"{where} {field}[{i}]"
        yield at, obj(row, at)


def text(d: Mapping[str, Any], key: str, where: str) -> str:
    """A non-empty string field."""
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedReplyError(f"{where}: field {key!r} is {value!r}, not a non-empty "
                                  "string")
    return value


def decimal(d: Mapping[str, Any], key: str, where: str, *, signed: bool = False) -> float:
    """A finite decimal (string or JSON number), >= 0 unless ``signed``."""
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MalformedReplyError(f"{where}: field {key!r} is {value!r}, not a decimal")
    try:
        x = float(value)
    except ValueError:
        raise MalformedReplyError(f"{where}: field {key!r} is {value!r}, not a decimal") \
            from None
    if not math.isfinite(x) or (x < 0 and not signed):
        rule = "finite" if signed else "finite and >= 0"
        raise MalformedReplyError(f"{where}: field {key!r} is {value!r}, must be {rule}")
    return x


def integer(d: Mapping[str, Any], key: str, where: str) -> int:
    """An integer field (ids, times in ms)."""
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedReplyError(f"{where}: field {key!r} is {value!r}, not an integer")
    return value
