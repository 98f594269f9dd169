"""Bar intervals: parse ``"5m"``-style strings to milliseconds and back."""

from __future__ import annotations

import re

from raytrade.envs.errors import ConfigError

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PATTERN = re.compile(r"^(\d+)([smhdw])$")


def interval_to_ms(interval: str) -> int:
    """Milliseconds in an interval such as ``"5m"``, ``"1h"``, ``"4h"``, ``"1d"``.

    Raises:
        ConfigError: the string is not ``<positive integer><s|m|h|d|w>``.
    """
    match = _PATTERN.match(interval.strip())
    if match is None or int(match.group(1)) <= 0:
        raise ConfigError(f"bad interval {interval!r}: expected e.g. '1m', '5m', '1h', '4h', '1d'")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def ms_to_interval(ms: int) -> str:
    """The shortest ``"<n><unit>"`` string for a whole number of milliseconds."""
    if ms <= 0:
        raise ConfigError(f"interval must be positive, got {ms} ms")
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_MS[unit]
        if ms % size == 0:
            return f"{ms // size}{unit}"
    raise ConfigError(f"interval of {ms} ms is not a whole number of seconds")


def duration_text(ms: int) -> str:
    """A span of milliseconds for people, largest units first: ``"8d 3h 35m"``.

    Whole seconds are kept; zero units are left out; zero is ``"0m"``.
    """
    if ms < 0:
        raise ConfigError(f"a duration cannot be negative, got {ms} ms")
    parts = []
    rest = ms // 1_000
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts) or "0m"
