"""Time-based train / validation / test splits that never overlap.

Splits are contiguous ranges of bars in time order: train first, then validation, then
test. An optional embargo leaves ``embargo_bars`` unused bars between consecutive splits so
that nothing computed near the end of one split (a feature window, an n-step return) can
reach into the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from raytrade.envs.bars import IntArray
from raytrade.envs.errors import ConfigError


@dataclass(frozen=True)
class Split:
    """Bars ``start:stop`` (positions) with open times ``start_ts <= ts < end_ts`` (ms UTC)."""

    name: str
    start: int
    stop: int
    start_ts: int
    end_ts: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Splits:
    """The three splits of one series, in time order."""

    train: Split
    validation: Split
    test: Split

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter((self.train, self.validation, self.test))


def _make(ts: IntArray, interval_ms: int, bounds: list[tuple[str, int, int]]) -> Splits:
    parts = []
    for name, lo, hi in bounds:
        if hi <= lo:
            raise ConfigError(f"split '{name}' would be empty ({len(ts)} bars in all)")
        end_ts = int(ts[hi - 1]) + interval_ms
        parts.append(Split(name, lo, hi, int(ts[lo]), end_ts))
    return Splits(*parts)


def split_by_fraction(ts: IntArray, interval_ms: int, *, train: float = 0.7,
                      validation: float = 0.15, embargo_bars: int = 0) -> Splits:
    """Split by share of bars; the test split gets the rest (``1 - train - validation``)."""
    if not (0 < train < 1 and 0 < validation < 1 and train + validation < 1):
        raise ConfigError(f"fractions must be positive and sum below 1, got "
                          f"train={train}, validation={validation}")
    if embargo_bars < 0:
        raise ConfigError("embargo_bars must be >= 0")
    n = len(ts)
    a = round(n * train)
    b = round(n * (train + validation))
    return _make(ts, interval_ms, [("train", 0, a), ("validation", a + embargo_bars, b),
                                   ("test", b + embargo_bars, n)])


def split_by_time(ts: IntArray, interval_ms: int, *, validation_start_ms: int,
                  test_start_ms: int, embargo_bars: int = 0) -> Splits:
    """Split at two open times: train before ``validation_start_ms``, test from
    ``test_start_ms``."""
    if not validation_start_ms < test_start_ms:
        raise ConfigError("validation must start before test")
    a = int(np.searchsorted(ts, validation_start_ms, side="left"))
    b = int(np.searchsorted(ts, test_start_ms, side="left"))
    return _make(ts, interval_ms, [("train", 0, a), ("validation", a + embargo_bars, b),
                                   ("test", b + embargo_bars, len(ts))])
