"""The bars the DWX EA simulator replays: read, checked, and kept with their closures.

A MetaTrader terminal's history has no bars while the market is closed (weekends,
holidays), so the simulator accepts any step between bars that is a whole number of bar
lengths; it still refuses what a terminal could never show: times out of order or off the
timeframe's grid, non-finite or non-positive prices, a high below the open/close or a low
above them, a negative volume.

Files: anything ``raytrade.envs.loaders.load_raw`` reads (CSV/Parquet with a named time
column), and the headed CSV whose first column is an unnamed UTC time
(``,Open,High,Low,Close,Volume``, as the ``backtesting`` package's ``EURUSD.csv``), which
this module parses itself, naming the line of any bad cell.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from raytrade.envs.errors import ConfigError, DataFormatError, DataValidationError
from raytrade.envs.loaders import load_raw

TIMEFRAME_SECONDS: dict[str, int] = {
    "M1": 60, "M5": 300, "M15": 900, "M30": 1800, "H1": 3600, "H4": 14400, "D1": 86400,
    "W1": 604800, "MN1": 2592000}
"""MetaTrader's timeframe names (``StringToTimeFrame`` in the EA) and their seconds."""


@dataclass(frozen=True)
class EaBars:
    """Replayed bars: open times in epoch seconds UTC and float OHLCV columns."""

    source: str
    timeframe: str
    seconds: int
    """The timeframe's length in seconds."""
    ts: npt.NDArray[np.int64]
    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]
    volume: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.ts)


def timeframe_seconds(timeframe: str) -> int:
    """Seconds in a MetaTrader timeframe name; ``ConfigError`` for an unknown one."""
    if timeframe not in TIMEFRAME_SECONDS:
        raise ConfigError(f"timeframe {timeframe!r} is not one of {sorted(TIMEFRAME_SECONDS)}")
    return TIMEFRAME_SECONDS[timeframe]


def load_ea_bars(path: str | Path, timeframe: str) -> EaBars:
    """Read and check ``path`` as bars of ``timeframe`` (module docstring for the rules)."""
    seconds = timeframe_seconds(timeframe)
    source = str(path)
    try:
        raw = load_raw(path)
        ts_ms, ohlcv = raw.ts, raw.ohlcv
        lines = [int(x) for x in raw.locations]
    except DataFormatError:
        if not _first_header_cell_empty(Path(path)):
            raise
        ts_ms, ohlcv, lines = _read_unnamed_time_csv(Path(path), source)
    ts = np.asarray(ts_ms, dtype=np.int64)
    if np.any(ts % 1000 != 0):
        bad = [lines[i] for i in np.flatnonzero(ts % 1000 != 0)]
        raise DataValidationError(source, "whole_seconds", bad, "bar times must be whole seconds")
    ts = ts // 1000
    values = np.asarray(ohlcv, dtype=np.float64)
    _check(source, timeframe, seconds, ts, values, lines)
    return EaBars(source, timeframe, seconds, ts, values[:, 0].copy(), values[:, 1].copy(),
                  values[:, 2].copy(), values[:, 3].copy(), values[:, 4].copy())


def _first_header_cell_empty(p: Path) -> bool:
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return False
    return bool(header) and header[0].strip() == ""


def _read_unnamed_time_csv(p: Path, source: str
                           ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], list[int]]:
    with open(p, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header = [c.strip().lower() for c in rows[0]]
    names = ("open", "high", "low", "close", "volume")
    missing = [n for n in names if n not in header]
    if missing:
        raise DataFormatError(source, f"unnamed time column but no {missing} columns; "
                                      f"found {rows[0]}")
    cols = [header.index(n) for n in names]
    ts: list[int] = []
    values: list[list[float]] = []
    lines: list[int] = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataValidationError(source, "columns", [line_no],
                                      f"{len(row)} cells, the header has {len(header)}")
        try:
            when = datetime.fromisoformat(row[0].strip())
        except ValueError as exc:
            raise DataValidationError(source, "timestamp", [line_no],
                                      f"time {row[0]!r} is not an ISO date-time") from exc
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        ts.append(round(when.timestamp() * 1000))
        cells: list[float] = []
        for name, col in zip(names, cols, strict=True):
            try:
                cells.append(float(row[col]))
            except ValueError as exc:
                raise DataValidationError(source, "numeric", [line_no],
                                          f"{name} {row[col]!r} is not a number") from exc
        values.append(cells)
        lines.append(line_no)
    if not ts:
        raise DataFormatError(source, "no bars")
    return (np.asarray(ts, dtype=np.int64), np.asarray(values, dtype=np.float64), lines)


def _check(source: str, timeframe: str, seconds: int, ts: npt.NDArray[np.int64],
           v: npt.NDArray[np.float64], lines: list[int]) -> None:
    def fail(rule: str, mask: Any, detail: str) -> None:
        rows = [lines[i] for i in np.flatnonzero(np.asarray(mask, dtype=bool))]
        if rows:
            raise DataValidationError(source, rule, rows, detail)

    if len(ts) < 2:
        raise DataFormatError(source, f"{len(ts)} bar(s); the simulator needs at least 2")
    o, h, lo, c, vol = (v[:, i] for i in range(5))
    fail("finite", ~np.isfinite(v).all(axis=1), "every price and volume must be a finite number")
    fail("positive_price", (v[:, :4] <= 0).any(axis=1), "prices must be above zero")
    fail("high_ge_open_close", h < np.maximum(o, c), "high below open or close")
    fail("low_le_open_close", lo > np.minimum(o, c), "low above open or close")
    fail("volume_nonnegative", vol < 0, "volume below zero")
    if seconds <= TIMEFRAME_SECONDS["D1"]:
        fail("on_grid", ts % seconds != 0, f"bar open time not on the {timeframe} grid")
    steps = np.diff(ts)
    order = np.concatenate([[False], steps <= 0])
    fail("increasing", order, "bar times must strictly increase")
    if seconds <= TIMEFRAME_SECONDS["D1"]:
        fail("whole_bars", np.concatenate([[False], steps % seconds != 0]),
             f"the step from the previous bar is not a whole number of {timeframe} bars")
