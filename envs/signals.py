"""Run a user's target-position signal file through the shared accounting.

A signal file is a CSV (or Parquet) with a time column (same names and encodings as bar
files) and a ``position`` column: the target position, as a fraction of equity, wanted at
the close of that bar. It must have exactly one row per bar of the data, in order.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from raytrade.envs.bars import BarTable, FloatArray
from raytrade.envs.costs import CostModel
from raytrade.envs.errors import DataFormatError, DataValidationError
from raytrade.envs.execution import SimulationResult, simulate
from raytrade.envs.loaders import TIME_COLUMNS, _read_csv, _read_parquet, _times
from raytrade.envs.metrics import performance


def load_signals(path: str | Path, bars: BarTable) -> FloatArray:
    """The ``position`` column of a signal file, checked row by row against ``bars``.

    Raises:
        DataFormatError: unreadable file, or no time / ``position`` column.
        DataValidationError: a row's time differs from the bar at that position, the row
            count differs, or a position is not a finite number (naming the line).
    """
    source = str(path)
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(source, "no such file")
    if p.read_bytes()[:4] == b"PAR1":
        frame, offset, kind = _read_parquet(p, source), 0, "row"
    else:
        (frame, offset), kind = _read_csv(p, source), "line"
    frame = frame.rename(columns=lambda c: str(c).strip().lower())
    time_col = next((c for c in TIME_COLUMNS if c in frame.columns), None)
    if time_col is None or "position" not in frame.columns:
        raise DataFormatError(source, "a signal file needs a time column (one of "
                              f"{', '.join(TIME_COLUMNS)}) and a 'position' column; found "
                              f"{list(frame.columns)}")
    locations = np.arange(len(frame), dtype=np.int64) + offset
    ts = _times(frame[time_col], time_col, source, kind, locations)
    if len(ts) != len(bars):
        raise DataValidationError(source, "one_row_per_bar", [],
                                  f"{len(ts)} signal rows for {len(bars)} bars of {bars.source}")
    bad = np.flatnonzero(ts != bars.ts)
    if len(bad):
        first = int(bad[0])
        raise DataValidationError(
            source, "one_row_per_bar", [int(locations[b]) for b in bad],
            f"{kind} {int(locations[first])} is for "
            f"{pd.Timestamp(int(ts[first]), unit='ms', tz='UTC')} but bar {first} opens at "
            f"{pd.Timestamp(int(bars.ts[first]), unit='ms', tz='UTC')}")
    pos = pd.to_numeric(frame["position"], errors="coerce").to_numpy(dtype=np.float64,
                                                                      na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(pos))
    if len(bad):
        raise DataValidationError(source, "finite", [int(locations[b]) for b in bad],
                                  f"position at {kind} {int(locations[bad[0]])} is "
                                  f"{frame['position'].iloc[bad[0]]!r}, not a finite number")
    return pos


def summarize(result: SimulationResult, bars: BarTable) -> dict[str, Any]:
    """Final equity, costs, trade count and the shared metrics of a simulation."""
    s = result.start
    perf = performance(result.equity[s:], result.target[s:], bars.interval_ms,
                       traded_notional=float(result.turnover[-1]),
                       fills=int(result.trades[-1]), calendar=bars.calendar)

    def clean(x: float) -> float | None:
        return None if math.isnan(x) else round(float(x), 10)

    return {
        "bars": len(bars) - s,
        "first": pd.Timestamp(int(bars.ts[s]), unit="ms", tz="UTC").isoformat(),
        "last": pd.Timestamp(int(bars.ts[-1]), unit="ms", tz="UTC").isoformat(),
        "initial_equity": clean(result.equity[s]),
        "final_equity": clean(result.equity[-1]),
        "trades": int(result.trades[-1]),
        "fees": clean(result.fees[-1]),
        "slippage": clean(result.slippage[-1]),
        "borrow": clean(result.borrow[-1]),
        "turnover": clean(result.turnover[-1]),
        "realized_pnl": clean(result.realized[-1]),
        "unrealized_pnl": clean(result.unrealized[-1]),
        "metrics": perf.to_dict(),
    }


def simulate_signal_file(bars: BarTable, signals: str | Path, costs: CostModel,
                         latency_bars: int = 1,
                         initial_equity: float = 10_000.0) -> dict[str, Any]:
    """Load signals for ``bars``, simulate them and summarize; the ``raytrade simulate`` core."""
    targets = load_signals(signals, bars)
    result = simulate(bars, targets, costs=costs, latency_bars=latency_bars,
                      initial_equity=initial_equity)
    out = summarize(result, bars)
    out["config"] = {"data": bars.source, "signals": str(signals),
                     "latency_bars": latency_bars, "costs": costs.__dict__.copy()}
    return out
