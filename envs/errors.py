"""The raytrade exception hierarchy, in one place.

The class decides control flow (Freqtrade style): a ``TemporaryError`` may be retried,
an ``OperationalError`` stops and asks a human, and a ``DataError`` means the input is wrong
and nothing was done with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


class RaytradeError(Exception):
    """Base class of every error raytrade raises on purpose."""


class RaytradeWarning(UserWarning):
    """Base class of the warnings raytrade issues on purpose: the input is usable but
    something about it deserves a look (the command line prints them as one line)."""


class DataError(RaytradeError, ValueError):
    """Input data is wrong; nothing was written or traded on it."""


class DataFormatError(DataError):
    """A file could not be read as market data (not CSV/Parquet, empty, unknown columns).

    Attributes:
        source: the file (or stream) that was being read.
    """

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        self.message = message
        super().__init__(f"{source}: {message}")


class DataValidationError(DataError):
    """A validation rule failed for some rows of a file.

    Attributes:
        source: the file that broke the rule.
        rule: the short name of the broken rule (for example ``"high_ge_open_close"``).
        rows: the offending row locations as reported to the user (file line numbers for
            CSV, 0-based row positions otherwise).
    """

    def __init__(self, source: str, rule: str, rows: Sequence[int], detail: str) -> None:
        self.source = source
        self.rule = rule
        self.rows = list(rows)
        self.detail = detail
        shown = ", ".join(str(r) for r in self.rows[:5])
        more = f" and {len(self.rows) - 5} more" if len(self.rows) > 5 else ""
        super().__init__(f"{source}: rule '{rule}' broken at {shown}{more}: {detail}")


class FeatureError(DataError):
    """A bar given to the feature pipeline cannot be used (out of order, gap, bad value)."""


class ConfigError(RaytradeError, ValueError):
    """A configuration or specification is invalid."""


class TemporaryError(RaytradeError):
    """A transient failure (network, throttling); the caller may retry with backoff."""


class OperationalError(RaytradeError):
    """A failure that needs a human (credentials, corrupt state); do not retry blindly."""


class FetchError(OperationalError):
    """Downloading market data failed in a way retrying will not fix by itself."""


def reject_unknown_fields(kind: str, data: Mapping[str, object], allowed: Iterable[str]) -> None:
    """Raise :class:`ConfigError` naming every key of ``data`` not in ``allowed``.

    Configs are frozen and reject unknown fields at every boundary: a misspelt key must
    fail loudly, never be silently ignored.
    """
    allowed_set = set(allowed)
    unknown = sorted(set(data) - allowed_set)
    if unknown:
        raise ConfigError(f"unknown {kind} fields {unknown}; allowed: {sorted(allowed_set)}")
