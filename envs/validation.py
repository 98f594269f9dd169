"""Validate raw bar rows into a :class:`BarTable`, or repair them explicitly.

Rules, checked in this order; the first broken rule raises a
:class:`~raytrade.envs.errors.DataValidationError` naming the file, the rows and the rule:

1. ``sorted_unique``: open times strictly increasing (no duplicates, no going back);
2. ``regular_interval``: every step between open times equals the interval, except a step
   across a closure of the trading calendar (``envs/calendar.py``): one whose skipped bars
   all lie in closures (a forex weekend, a holiday) is accepted; a step that skips even one
   bar the calendar expects is a gap and refused;
3. ``finite``: no NaN or infinite open, high, low, close or volume;
4. ``positive_prices``: open, high, low, close > 0;
5. ``nonnegative_volume``: volume >= 0;
6. ``high_ge_open_close``: high >= max(open, close);
7. ``low_le_open_close``: low <= min(open, close).

The interval is the one named in the file name when there is one, else the most common
step between open times. Repair mode (:func:`repair_raw`) changes only two things and
reports each change: it drops rows that exactly repeat an earlier row (same time and
values), and it fills gaps with flat bars (open = high = low = close = previous close,
volume 0) marked ``filled``, only where the calendar expects a bar: a closure is never
filled. Everything else still fails: nothing is repaired silently.

Bars inside a closure (a broker's quote just after the Friday close) are accepted, never
refused: they are real trades. :func:`closure_report` counts them and the closures a
file steps across; the repair report carries the same counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from raytrade.envs.bars import BarTable, FloatArray, IntArray
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.errors import DataValidationError
from raytrade.envs.intervals import ms_to_interval
from raytrade.envs.loaders import RawBars

RULES = ("sorted_unique", "regular_interval", "finite", "positive_prices",
         "nonnegative_volume", "high_ge_open_close", "low_le_open_close")


@dataclass(frozen=True)
class RepairChange:
    """One change the repair mode made. ``kind`` is ``"dropped_duplicate"`` or ``"filled_gap"``."""

    kind: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} at {self.where}: {self.detail}"


@dataclass
class RepairReport:
    """Everything the repair mode changed in one file."""

    source: str
    changes: list[RepairChange] = field(default_factory=list)
    closures: int = 0
    """Steps across a closure of the calendar (weekends, holidays), accepted as they are."""
    bars_in_closures: int = 0
    """Bars lying wholly inside a closure (kept: a broker's late quote is still a trade)."""

    @property
    def dropped(self) -> int:
        """Number of exact duplicate rows dropped."""
        return sum(1 for c in self.changes if c.kind == "dropped_duplicate")

    @property
    def filled(self) -> int:
        """Number of bars synthesized to fill gaps."""
        return sum(int(c.detail.split()[0]) for c in self.changes if c.kind == "filled_gap")


def infer_interval(raw: RawBars) -> int:
    """The bar interval in ms: the file name's, else the most common positive step."""
    if raw.interval_hint_ms is not None:
        return raw.interval_hint_ms
    steps = np.diff(np.unique(raw.ts))
    if len(steps) == 0:
        raise DataValidationError(raw.source, "regular_interval", [],
                                  "one bar and no interval in the file name: "
                                  "cannot tell the interval")
    values, counts = np.unique(steps, return_counts=True)
    return int(values[np.argmax(counts)])


def _fail(raw: RawBars, rule: str, positions: IntArray, detail: str) -> DataValidationError:
    locs = [int(raw.locations[p]) for p in positions]
    first = raw.where(positions[:1])[0] if len(positions) else ""
    return DataValidationError(raw.source, rule, locs,
                               f"{detail} ({len(positions)} rows; first at {first})")


def first_broken_rule(ts: IntArray, ohlcv: FloatArray, interval_ms: int,
                      calendar: TradingCalendar = ALWAYS) -> tuple[str, IntArray, str] | None:
    """The first broken rule as ``(rule, row positions, detail)``, or None if all hold.

    Pure and vectorized: the file validator and the streaming feature pipeline both call it,
    so live bars and historical files obey one set of rules. ``calendar`` says which longer
    steps are closures rather than gaps (the 24/7 default: none).
    """
    steps = np.diff(ts)
    bad = np.flatnonzero(steps <= 0) + 1
    if len(bad):
        dup = int(np.sum(steps == 0))
        return ("sorted_unique", bad, f"open times must strictly increase; {dup} duplicates, "
                                      f"{len(bad) - dup} out of order")
    irregular = steps != interval_ms
    if not calendar.always and irregular.any():
        irregular &= ~calendar.closure_steps(ts, interval_ms)
    bad = np.flatnonzero(irregular) + 1
    if len(bad):
        if calendar.always:
            return ("regular_interval", bad,
                    f"expected a {ms_to_interval(interval_ms)} step, found "
                    f"{int(steps[bad[0] - 1])} ms (a gap or a misaligned bar; repair mode "
                    "fills whole-bar gaps)")
        a, b = int(ts[bad[0] - 1]), int(ts[bad[0]])
        missing = calendar.expected_between(a, b, interval_ms)
        return ("regular_interval", bad,
                f"expected a {ms_to_interval(interval_ms)} step, found "
                f"{int(steps[bad[0] - 1])} ms from {_iso(a)}: "
                + (f"{missing} bars the {calendar.describe()} calendar expects are missing "
                   "(a gap inside a session; repair mode fills whole-bar gaps)"
                   if (b - a) % interval_ms == 0 else "a misaligned bar"))
    o, h, lo, c, v = (ohlcv[:, j] for j in range(5))
    with np.errstate(invalid="ignore"):
        checks = (
            ("finite", ~np.isfinite(ohlcv).all(axis=1), "NaN or infinite value in OHLCV"),
            ("positive_prices", (ohlcv[:, :4] <= 0).any(axis=1), "a price is zero or negative"),
            ("nonnegative_volume", v < 0, "volume is negative"),
            ("high_ge_open_close", h < np.maximum(o, c), "high is below open or close"),
            ("low_le_open_close", lo > np.minimum(o, c), "low is above open or close"),
        )
    for rule, mask, detail in checks:
        bad = np.flatnonzero(mask)
        if len(bad):
            return rule, bad, detail
    return None


def validate_raw(raw: RawBars, interval_ms: int | None = None,
                 calendar: TradingCalendar = ALWAYS) -> BarTable:
    """Check every rule and return the immutable table (carrying ``calendar``), or raise on
    the first broken rule."""
    if len(raw) == 0:
        raise DataValidationError(raw.source, "finite", [], "no rows")
    iv = interval_ms or infer_interval(raw)
    broken = first_broken_rule(raw.ts, raw.ohlcv, iv, calendar)
    if broken is not None:
        rule, positions, detail = broken
        raise _fail(raw, rule, positions, detail)
    return BarTable.from_arrays(raw.ts, raw.ohlcv, interval_ms=iv, symbol=raw.symbol,
                                source=raw.source, filled=raw.filled, calendar=calendar)


def closure_report(table: BarTable) -> tuple[int, int]:
    """``(closures, bars_in_closures)`` of a validated table: the steps across a closure of
    its calendar, and the bars lying wholly inside one (accepted, counted)."""
    if table.calendar.always or len(table) == 0:
        return 0, 0
    closures = int(table.calendar.closure_steps(table.ts, table.interval_ms).sum())
    inside = int((~table.calendar.expected_mask(table.ts, table.interval_ms)).sum())
    return closures, inside


def repair_raw(raw: RawBars, interval_ms: int | None = None,
               calendar: TradingCalendar = ALWAYS) -> tuple[BarTable, RepairReport]:
    """Drop exact duplicates, fill whole-bar gaps where ``calendar`` expects bars (never a
    closure), then validate; report every change and count the closures.

    Raises:
        DataValidationError: a rule the repair mode does not fix is broken (conflicting
            duplicates, rows out of order, misaligned times, bad prices...).
    """
    report = RepairReport(raw.source)
    iv = interval_ms or infer_interval(raw)
    keep = np.ones(len(raw), dtype=bool)
    first_seen: dict[int, int] = {}
    for i, t in enumerate(raw.ts.tolist()):
        j = first_seen.setdefault(t, i)
        if j == i:
            continue
        same = np.array_equal(raw.ohlcv[i], raw.ohlcv[j], equal_nan=True)
        if not same:
            raise _fail(raw, "sorted_unique", np.array([i]),
                        f"two rows share open time {t} with different values "
                        f"({raw.where([j])[0]} and {raw.where([i])[0]}); not repairable")
        keep[i] = False
        report.changes.append(RepairChange("dropped_duplicate", raw.where([i])[0],
                                           f"exact repeat of {raw.where([j])[0]}"))
    ts, ohlcv, locs, filled = raw.ts[keep], raw.ohlcv[keep], raw.locations[keep], raw.filled[keep]
    steps = np.diff(ts)
    gaps = np.flatnonzero((steps > iv) & (steps % iv == 0)
                          & ~calendar.closure_steps(ts, iv))
    if len(gaps):
        parts_ts, parts_x, parts_loc, parts_fill = [], [], [], []
        start = 0
        for g in gaps.tolist():
            parts_ts.append(ts[start:g + 1])
            parts_x.append(ohlcv[start:g + 1])
            parts_loc.append(locs[start:g + 1])
            parts_fill.append(filled[start:g + 1])
            grid = ts[g] + iv * np.arange(1, int(steps[g] // iv), dtype=np.int64)
            new = grid[calendar.expected_mask(grid, iv)]  # a closure is never filled
            n = len(new)
            prev_close = ohlcv[g, 3]
            parts_ts.append(new)
            parts_x.append(np.tile([prev_close] * 4 + [0.0], (n, 1)))
            parts_loc.append(np.full(n, locs[g], dtype=np.int64))
            parts_fill.append(np.ones(n, dtype=bool))
            skipped = "" if n == len(grid) else \
                f" ({len(grid) - n} in closures of the {calendar.describe()} calendar left out)"
            report.changes.append(RepairChange(
                "filled_gap", f"{raw.location_kind} {int(locs[g])}",
                f"{n} bars from {_iso(int(new[0]))} to {_iso(int(new[-1]))} "
                f"filled flat at the previous close {prev_close}, volume 0{skipped}"))
            start = g + 1
        parts_ts.append(ts[start:])
        parts_x.append(ohlcv[start:])
        parts_loc.append(locs[start:])
        parts_fill.append(filled[start:])
        ts, ohlcv = np.concatenate(parts_ts), np.concatenate(parts_x)
        locs, filled = np.concatenate(parts_loc), np.concatenate(parts_fill)
    fixed = RawBars(source=raw.source, ts=ts, ohlcv=ohlcv, locations=locs,
                    location_kind=raw.location_kind, symbol=raw.symbol,
                    interval_hint_ms=raw.interval_hint_ms, filled=filled)
    table = validate_raw(fixed, iv, calendar)
    report.closures, report.bars_in_closures = closure_report(table)
    return table, report


def _iso(ms: int) -> str:
    return str(np.datetime64(ms, "ms")) + "Z"
