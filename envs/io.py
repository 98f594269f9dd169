"""Load validated bar tables from files and write them back, atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pandas as pd
from raytrade.envs.bars import BarTable
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.loaders import load_raw
from raytrade.envs.validation import RepairReport, closure_report, repair_raw, validate_raw


def load_bars(path: str | Path, *, interval_ms: int | None = None,
              calendar: TradingCalendar = ALWAYS) -> BarTable:
    """Read and validate one OHLCV file (CSV, ``.csv.gz`` or Parquet); raise on any broken
    rule. Steps across ``calendar``'s closures are accepted (24/7 default: none)."""
    return validate_raw(load_raw(path), interval_ms, calendar)


def load_bars_repaired(path: str | Path, *, interval_ms: int | None = None,
                       calendar: TradingCalendar = ALWAYS) -> tuple[BarTable, RepairReport]:
    """Read a file in repair mode: exact duplicates dropped, gaps inside sessions filled,
    all reported (closures counted, never filled)."""
    return repair_raw(load_raw(path), interval_ms, calendar)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 64 KiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_bars(table: BarTable, path: str | Path) -> Path:
    """Write a table as headed CSV (``.csv``/``.csv.gz``) or Parquet (``.parquet``).

    The file is written to a temporary name beside the target, flushed to disk and renamed,
    so a reader never sees half a file and a failure leaves nothing behind. A ``filled``
    column (0/1) is added when the table holds bars synthesized by the repair mode.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    frame = table.to_frame()
    if table.filled.any():
        frame["filled"] = table.filled.astype(int)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if target.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S+00:00")
            frame.to_csv(tmp, index=False, float_format="%.10g",
                         compression="gzip" if target.name.endswith(".gz") else None)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def describe(table: BarTable) -> dict[str, object]:
    """A short summary: symbol, interval, bar count, first and last open time (ISO UTC);
    with a calendar that closes, also the calendar, the closures stepped across and the
    bars found inside closures (accepted)."""
    out: dict[str, object] = {
        "file": table.source,
        "symbol": table.symbol or None,
        "interval": table.interval,
        "bars": len(table),
        "first": pd.Timestamp(table.start_ms, unit="ms", tz="UTC").isoformat(),
        "last": pd.Timestamp(int(table.ts[-1]), unit="ms", tz="UTC").isoformat(),
        "filled_bars": int(table.filled.sum()),
    }
    if not table.calendar.always:
        closures, inside = closure_report(table)
        out.update(calendar=table.calendar.describe(), closures=closures,
                   bars_in_closures=inside)
    return out
