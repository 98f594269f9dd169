"""Immutable bars and bar tables: the one market-data type every part of raytrade shares.

Contract: ``ts`` is the bar's *open* time in integer milliseconds UTC;
``open, high, low, close, volume`` are float64; a bar is used only once it has closed,
i.e. at or after ``ts + interval_ms``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.errors import DataError
from raytrade.envs.intervals import ms_to_interval

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
OutArray = npt.NDArray[np.floating[Any]]  # kernel outputs: float64 scratch or float32 features

OHLCV = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed OHLCV bar. ``ts`` is the open time in ms UTC; prices in quote currency."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    def close_time(self, interval_ms: int) -> int:
        """The time (ms UTC) at which this bar closes and becomes usable."""
        return self.ts + interval_ms


def _frozen(array: npt.ArrayLike, dtype: type) -> npt.NDArray[np.generic]:
    out: npt.NDArray[np.generic] = np.array(array, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class BarTable:
    """A validated, immutable, regular series of bars for one symbol: one bar every
    ``interval_ms`` except across the closures of its trading ``calendar`` (weekends and
    holidays of a forex market; never for the 24/7 default).

    Attributes:
        symbol: exchange symbol such as ``"BTCUSDT"`` (``""`` when unknown).
        interval_ms: bar length in milliseconds.
        ts: bar open times, int64 ms UTC, strictly increasing by ``interval_ms``.
        open, high, low, close, volume: float64 arrays of the same length.
        filled: True where a bar was synthesized by the repair mode to fill a gap.
        source: where the bars came from (a file path or a description).
        calendar: when the market trades (``envs/calendar.py``); steps across its closures
            are not gaps.
    """

    symbol: str
    interval_ms: int
    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    filled: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    source: str = ""
    calendar: TradingCalendar = ALWAYS

    def __post_init__(self) -> None:
        n = len(self.ts)
        object.__setattr__(self, "ts", _frozen(self.ts, np.int64))
        for name in OHLCV:
            object.__setattr__(self, name, _frozen(getattr(self, name), np.float64))
        filled = self.filled if len(self.filled) == n else np.zeros(n, dtype=bool)
        object.__setattr__(self, "filled", _frozen(filled, np.bool_))
        for name in OHLCV:
            if len(getattr(self, name)) != n:
                raise DataError(f"{self.source or self.symbol}: column {name} has "
                                f"{len(getattr(self, name))} values, ts has {n}")

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def interval(self) -> str:
        """The bar interval as a string such as ``"5m"``."""
        return ms_to_interval(self.interval_ms)

    @property
    def start_ms(self) -> int:
        """Open time of the first bar (ms UTC)."""
        return int(self.ts[0])

    @property
    def end_ms(self) -> int:
        """Close time of the last bar (ms UTC), i.e. last open time plus the interval."""
        return int(self.ts[-1]) + self.interval_ms

    def ohlcv(self) -> FloatArray:
        """A float64 ``[T, 5]`` matrix of open, high, low, close, volume (a copy)."""
        return np.column_stack([self.open, self.high, self.low, self.close, self.volume])

    def slice(self, start: int, stop: int) -> BarTable:
        """Rows ``start:stop`` as a new table (positions, not times)."""
        return BarTable(
            symbol=self.symbol, interval_ms=self.interval_ms, ts=self.ts[start:stop],
            open=self.open[start:stop], high=self.high[start:stop], low=self.low[start:stop],
            close=self.close[start:stop], volume=self.volume[start:stop],
            filled=self.filled[start:stop], source=self.source, calendar=self.calendar,
        )

    def between(self, start_ms: int | None = None, end_ms: int | None = None) -> BarTable:
        """Bars with ``start_ms <= ts < end_ms`` (either bound optional)."""
        lo = 0 if start_ms is None else int(np.searchsorted(self.ts, start_ms, side="left"))
        hi = len(self) if end_ms is None else int(np.searchsorted(self.ts, end_ms, side="left"))
        return self.slice(lo, hi)

    def in_sessions(self, calendar: TradingCalendar) -> BarTable:
        """Around-the-clock bars (a generated market) as a market under ``calendar``
        trades: only the bars it expects, tagged with it; ``self`` when it never closes."""
        if calendar.always:
            return self
        keep = calendar.expected_mask(self.ts, self.interval_ms)
        return BarTable.from_arrays(self.ts[keep], self.ohlcv()[keep],
                                    interval_ms=self.interval_ms, symbol=self.symbol,
                                    source=self.source, calendar=calendar)

    def bar(self, i: int) -> Bar:
        """Row ``i`` as a :class:`Bar`."""
        return Bar(int(self.ts[i]), float(self.open[i]), float(self.high[i]),
                   float(self.low[i]), float(self.close[i]), float(self.volume[i]))

    def __iter__(self) -> Iterator[Bar]:
        for i in range(len(self)):
            yield self.bar(i)

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame with a tz-aware UTC ``timestamp`` column followed by OHLCV."""
        frame = pd.DataFrame({"timestamp": pd.to_datetime(self.ts, unit="ms", utc=True)})
        for name in OHLCV:
            frame[name] = getattr(self, name)
        return frame

    @classmethod
    def from_arrays(cls, ts: npt.ArrayLike, ohlcv: npt.ArrayLike, *, interval_ms: int,
                    symbol: str = "", source: str = "",
                    filled: npt.ArrayLike | None = None,
                    calendar: TradingCalendar = ALWAYS) -> BarTable:
        """Build a table from open times (ms) and a ``[T, 5]`` OHLCV matrix."""
        m = np.asarray(ohlcv, dtype=np.float64)
        if m.ndim != 2 or m.shape[1] != 5:
            raise DataError(f"{source or symbol}: OHLCV matrix must be [T, 5], got {m.shape}")
        fl = np.zeros(len(m), dtype=bool) if filled is None else np.asarray(filled, dtype=bool)
        return cls(symbol=symbol, interval_ms=interval_ms, ts=np.asarray(ts, dtype=np.int64),
                   open=m[:, 0], high=m[:, 1], low=m[:, 2], close=m[:, 3], volume=m[:, 4],
                   filled=fl, source=source, calendar=calendar)
