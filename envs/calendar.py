"""Trading calendars: when a market is open, so that a closure is not mistaken for a gap.

A :class:`TradingCalendar` is ``always`` (crypto: open around the clock, the behaviour
every other module had before calendars existed) or ``forex``: a weekly session from
``weekly_open`` (Sunday 17:00 New York) to ``weekly_close`` (Friday 17:00 New York), read
in ``timezone`` so daylight-saving time moves the UTC hours (21:00 UTC in summer, 22:00 in
winter) and never the local ones. ``holidays`` close whole trading days: a forex trading
day is named by the date it ends on and runs from the ``weekly_close`` time of day on the
day before to that time on the day itself (``"12-25"`` closes Sunday 24th 17:00 to Monday
25th 17:00 New York when Christmas is a Monday, the day real EURUSD bars resume at 22:00
UTC). ``"MM-DD"`` repeats every year, ``"YYYY-MM-DD"`` is one date.

Bars follow a grid of open times: ``t = k * interval`` ms since the epoch (UTC). A bar
``[t, t + interval)`` is *expected* when the market is open at its middle,
``t + interval // 2``. Sessions open and close on whole hours, so a bar of an hour or less
is expected exactly when it overlaps a session; a longer bar counts where most of it
trades: a daily UTC bar of a Sunday (open from 21:00 or 22:00) is not expected, Monday's
to Friday's are (five a week, as forex daily data has them), and a 4h bar is expected
when its middle hour trades. A bar that is not expected may still come (a quote just
after the Friday close, a broker's Sunday daily bar): readers accept it and count it,
they never refuse it. Every question is
answered from the closures as sorted, merged UTC intervals ``[start, end)`` (built per year
with :mod:`zoneinfo` and cached), so validation of long files stays vectorized.

Annualization (:meth:`TradingCalendar.bars_per_year`): expected bars in a 365-day year,
the convention the metrics used for 24/7 markets (``365 * 24 h / interval``). For a
calendar with closures it is 365 times the mean expected bars per day over the 28 years
2000-01-01 to 2028-01-01, a whole cycle in which every date falls on every weekday equally
often, with the yearly holidays (``"MM-DD"``) in it; dated holidays are one-off and do not
change the rate. Forex 1h with Christmas and New Year: 1461 weeks of 120 bars, less 24 bars
for each of the two holidays in the 20 of 28 years it falls Monday to Friday, over 10227
days: ``(175320 - 960) / 10227 * 365 = 6222.9`` bars a year.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
from raytrade.envs.errors import ConfigError

KINDS = ("always", "forex")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MS_PER_DAY = 86_400_000
YEAR_DAYS = 365
CYCLE = (2000, 2028)
"""The years ``[2000, 2028)``: 28 years, 10227 days, every date on every weekday 4 times."""

_WEEKLY = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([01]\d|2[0-3]):([0-5]\d)$")
_HOLIDAY = re.compile(r"^(?:(\d{4})-)?(\d{2})-(\d{2})$")
Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _weekly(name: str, text: str) -> tuple[int, dt.time]:
    match = _WEEKLY.match(text)
    if match is None:
        raise ConfigError(f"TradingCalendar.{name}: {text!r} is not 'Day HH:MM' "
                          f"(Day one of {', '.join(DAYS)}; e.g. 'Sun 17:00')")
    return DAYS.index(match.group(1)), dt.time(int(match.group(2)), int(match.group(3)))


def _holiday(text: str) -> tuple[int | None, int, int]:
    match = _HOLIDAY.match(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(f"TradingCalendar.holidays: {text!r} is not 'MM-DD' (every year) "
                          "or 'YYYY-MM-DD' (one date)")
    year = int(match.group(1)) if match.group(1) else None
    month, day = int(match.group(2)), int(match.group(3))
    try:
        dt.date(year or 2000, month, day)  # 2000 is a leap year: 02-29 is a valid MM-DD
    except ValueError as exc:
        raise ConfigError(f"TradingCalendar.holidays: {text!r}: {exc}") from exc
    return year, month, day


@dataclass(frozen=True)
class TradingCalendar:
    """When the market trades: ``always`` (24/7) or ``forex`` (weekly session, holidays).

    A forex session and its holiday closures are read in ``timezone`` (module docstring).
    """

    kind: Literal["always", "forex"] = "always"
    """``always``: open around the clock (crypto; the other fields unused and left at their
    defaults). ``forex``: a weekly session from ``weekly_open`` to ``weekly_close`` with
    ``holidays`` closed."""
    timezone: str = "America/New_York"
    """The session clock (IANA name); daylight-saving time moves the UTC hours with it."""
    weekly_open: str = "Sun 17:00"
    """When the week's session opens, ``Day HH:MM`` in ``timezone``."""
    weekly_close: str = "Fri 17:00"
    """When the week's session closes, ``Day HH:MM`` in ``timezone``; its time of day also
    ends each trading day (a holiday closes the 24 hours before it on that date)."""
    holidays: tuple[str, ...] = ()
    """Whole trading days closed: ``"MM-DD"`` every year or ``"YYYY-MM-DD"`` once, e.g.
    ``["12-25", "01-01"]``."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"TradingCalendar.kind must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.holidays, list):
            object.__setattr__(self, "holidays", tuple(self.holidays))
        if self.kind == "always":
            if (self.timezone, self.weekly_open, self.weekly_close, self.holidays) != \
                    ("America/New_York", "Sun 17:00", "Fri 17:00", ()):
                raise ConfigError("TradingCalendar: kind 'always' is open around the clock; "
                                  "timezone, weekly_open, weekly_close and holidays apply "
                                  "only to kind 'forex'")
            return
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"TradingCalendar.timezone: unknown time zone "
                              f"{self.timezone!r}") from exc
        if _weekly("weekly_open", self.weekly_open) == _weekly("weekly_close",
                                                               self.weekly_close):
            raise ConfigError("TradingCalendar: weekly_open and weekly_close are the same "
                              "time (use kind 'always' for a market that never closes)")
        if not isinstance(self.holidays, tuple):
            raise ConfigError("TradingCalendar.holidays must be a list of dates")
        for h in self.holidays:
            _holiday(h)

    @classmethod
    def from_dict(cls, data: object) -> TradingCalendar:
        """From the ``[env.calendar]`` TOML table; ``ConfigError`` naming the field."""
        if not isinstance(data, dict):
            raise ConfigError(f"EnvConfig.calendar: expected a table, got "
                              f"{type(data).__name__}")
        known = ("kind", "timezone", "weekly_open", "weekly_close", "holidays")
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"EnvConfig.calendar.{unknown[0]}: unknown field (known: "
                              f"{', '.join(known)})")
        kwargs = dict(data)
        for name in ("kind", "timezone", "weekly_open", "weekly_close"):
            if name in kwargs and not isinstance(kwargs[name], str):
                raise ConfigError(f"EnvConfig.calendar.{name}: expected a string, got "
                                  f"{kwargs[name]!r}")
        if "holidays" in kwargs:
            days = kwargs["holidays"]
            if not isinstance(days, list | tuple) or not all(isinstance(d, str) for d in days):
                raise ConfigError(f"EnvConfig.calendar.holidays: expected a list of "
                                  f"'MM-DD' / 'YYYY-MM-DD' strings, got {days!r}")
            kwargs["holidays"] = tuple(days)
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"EnvConfig.calendar: {exc}") from exc

    @property
    def always(self) -> bool:
        """True for a market open around the clock (no closures at all)."""
        return self.kind == "always"

    # -- the closures -----------------------------------------------------------------
    def closures(self, start_ms: int, end_ms: int) -> tuple[Int64Array, Int64Array]:
        """Sorted, merged, disjoint closed intervals ``[starts[i], ends[i])`` (ms UTC)
        covering at least every closure that overlaps ``[start_ms, end_ms)``."""
        if self.always:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        first = _year_of(start_ms) - 1
        last = _year_of(end_ms) + 1
        return _closures(self, first, last)

    def is_open(self, ts_ms: int) -> bool:
        """True while the market trades at ``ts_ms`` (ms UTC)."""
        return bool(self.open_mask(np.array([ts_ms], np.int64))[0])

    def open_mask(self, ts_ms: npt.ArrayLike) -> BoolArray:
        """Vectorized :meth:`is_open` over an array of instants."""
        ts = np.asarray(ts_ms, dtype=np.int64)
        if self.always or len(ts) == 0:
            return np.ones(len(ts), dtype=bool)
        starts, ends = self.closures(int(ts.min()), int(ts.max()))
        idx = np.searchsorted(starts, ts, side="right") - 1
        inside = (idx >= 0) & (ts < ends[np.maximum(idx, 0)])
        out: BoolArray = ~inside
        return out

    def bar_expected(self, open_ms: int, interval_ms: int) -> bool:
        """True when the market is open at the middle of the bar
        ``[open_ms, open_ms + interval_ms)`` (module docstring)."""
        return bool(self.expected_mask(np.array([open_ms], np.int64), interval_ms)[0])

    def expected_mask(self, opens_ms: npt.ArrayLike, interval_ms: int) -> BoolArray:
        """Vectorized :meth:`bar_expected` over bar open times (False: the bar's middle
        lies inside a closure, e.g. a broker's quote just after the Friday close, or a
        daily bar of a Sunday)."""
        ts = np.asarray(opens_ms, dtype=np.int64)
        return self.open_mask(ts + int(interval_ms) // 2)

    def expected_between(self, a_open_ms: int, b_open_ms: int, interval_ms: int) -> int:
        """Expected bars of the grid strictly between two bar opens (0: the step is a
        closure, not a gap)."""
        return int(self.expected_between_many(np.array([a_open_ms], np.int64),
                                              np.array([b_open_ms], np.int64),
                                              interval_ms)[0])

    def expected_between_many(self, a_ms: npt.ArrayLike, b_ms: npt.ArrayLike,
                              interval_ms: int) -> Int64Array:
        """Vectorized :meth:`expected_between` over steps ``a[i] -> b[i]``: the grid opens
        ``a + k * interval`` (``k >= 1``) before ``b``, less those whose middle lies in a
        closure."""
        a = np.asarray(a_ms, dtype=np.int64)
        b = np.asarray(b_ms, dtype=np.int64)
        iv = int(interval_ms)
        between: Int64Array = np.maximum((b - a + iv - 1) // iv - 1, 0).astype(np.int64)
        if self.always or len(a) == 0:
            return between
        half = iv // 2
        starts, ends = self.closures(int(a.min()), int(b.max()) + iv)
        out = between.copy()
        for i in np.flatnonzero(between > 0).tolist():
            ai, m = int(a[i]), int(between[i])
            j0 = int(np.searchsorted(ends, ai + iv + half, side="right"))
            j1 = int(np.searchsorted(starts, int(b[i]) + half, side="left"))
            if j1 <= j0:
                continue
            s, e = starts[j0:j1], ends[j0:j1]
            # bars whose middle a + k * iv + half lies in [s, e): ceil((s - a - half) / iv)
            # to ceil((e - a - half) / iv) - 1, within 1..m
            k_lo = np.maximum(1, -((ai + half - s) // iv))
            k_hi = np.minimum(m, -((ai + half - e) // iv) - 1)
            out[i] = m - int(np.maximum(k_hi - k_lo + 1, 0).sum())
        return out

    def closure_steps(self, ts_ms: npt.ArrayLike, interval_ms: int) -> BoolArray:
        """For each step between consecutive bar opens (``len(ts) - 1`` of them): True when
        it is longer than one interval, on the grid, and every bar it skips lies inside a
        closure (a weekend, a holiday): a closure, not a gap."""
        ts = np.asarray(ts_ms, dtype=np.int64)
        steps = np.diff(ts)
        out = np.zeros(len(steps), dtype=bool)
        if self.always or len(steps) == 0:
            return out
        cand = np.flatnonzero((steps > interval_ms) & (steps % interval_ms == 0))
        if len(cand):
            n = self.expected_between_many(ts[cand], ts[cand + 1], interval_ms)
            out[cand[n == 0]] = True
        return out

    def start_for_bars(self, end_ms: int, n: int, interval_ms: int) -> int:
        """Open time of the earliest of the ``n`` expected bars that open before
        ``end_ms`` (on the grid; ``n <= 0`` gives the first grid open at or after
        ``end_ms``). Turns a warm-up size in bars into a span that skips closures."""
        iv = int(interval_ms)
        last = -(-int(end_ms) // iv) * iv - iv          # the last grid open before end_ms
        if n <= 0:
            return last + iv
        if self.always:
            return last - (n - 1) * iv
        found = 0
        top = last
        chunk = max(4 * n, 512)
        while True:
            opens = top - iv * np.arange(chunk, dtype=np.int64)
            ok = np.flatnonzero(self.expected_mask(opens, iv))
            if found + len(ok) >= n:
                return int(opens[ok[n - found - 1]])
            found += len(ok)
            top = int(opens[-1]) - iv

    def next_open_ms(self, ts_ms: int) -> int:
        """``ts_ms`` if the market is open then, else when it next opens (ms UTC)."""
        if self.always:
            return int(ts_ms)
        starts, ends = self.closures(int(ts_ms), int(ts_ms) + 14 * MS_PER_DAY)
        idx = int(np.searchsorted(starts, ts_ms, side="right")) - 1
        if idx >= 0 and ts_ms < int(ends[idx]):
            return int(ends[idx])
        return int(ts_ms)

    def bars_per_year(self, interval_ms: int) -> float:
        """Expected bars in a 365-day year (module docstring): ``365 * 24 h / interval``
        around the clock; with closures, 365 times the mean expected bars per day over
        the 28-year cycle 2000-2027 with the yearly holidays."""
        if self.always:
            return YEAR_DAYS * MS_PER_DAY / interval_ms
        return _bars_per_year(self, int(interval_ms))

    def describe(self) -> str:
        """One line for people: ``forex (Sun 17:00 to Fri 17:00 America/New_York; closed
        12-25, 01-01)`` or ``always (24/7)``."""
        if self.always:
            return "always (24/7)"
        closed = f"; closed {', '.join(self.holidays)}" if self.holidays else ""
        return (f"forex ({self.weekly_open} to {self.weekly_close} {self.timezone}"
                f"{closed})")


ALWAYS = TradingCalendar()
"""Open around the clock (crypto): no closures, ``365 * 24 h / interval`` bars a year."""


def _year_of(ms: int) -> int:
    return int(np.datetime64(int(ms), "ms").astype("datetime64[Y]").astype(np.int64)) + 1970


def _utc_ms(day: dt.date, at: dt.time, zone: ZoneInfo) -> int:
    local = dt.datetime.combine(day, at, tzinfo=zone)
    return int(local.astimezone(dt.UTC).timestamp() * 1000)


@functools.lru_cache(maxsize=256)
def _year_closures(cal: TradingCalendar, year: int,
                   yearly_only: bool = False) -> tuple[tuple[int, int], ...]:
    """The closures that start in local ``year``, unmerged: each week's close to the next
    open, and each holiday's trading day."""
    zone = ZoneInfo(cal.timezone)
    close_day, close_at = _weekly("weekly_close", cal.weekly_close)
    open_day, open_at = _weekly("weekly_open", cal.weekly_open)
    out: list[tuple[int, int]] = []
    day = dt.date(year, 1, 1)
    day += dt.timedelta(days=(close_day - day.weekday()) % 7)
    gap_days = (open_day - close_day) % 7
    if gap_days == 0 and open_at <= close_at:
        gap_days = 7
    while day.year == year:
        out.append((_utc_ms(day, close_at, zone),
                    _utc_ms(day + dt.timedelta(days=gap_days), open_at, zone)))
        day += dt.timedelta(days=7)
    for text in cal.holidays:
        h_year, month, mday = _holiday(text)
        if (h_year is not None and (yearly_only or h_year != year)) or \
                ((month, mday) == (2, 29) and not _leap(year)):
            continue
        date = dt.date(year, month, mday)
        out.append((_utc_ms(date - dt.timedelta(days=1), close_at, zone),
                    _utc_ms(date, close_at, zone)))
    return tuple(out)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _merge(pairs: list[tuple[int, int]]) -> tuple[Int64Array, Int64Array]:
    pairs.sort()
    starts: list[int] = []
    ends: list[int] = []
    for s, e in pairs:
        if starts and s <= ends[-1]:
            ends[-1] = max(ends[-1], e)
        else:
            starts.append(s)
            ends.append(e)
    return np.array(starts, np.int64), np.array(ends, np.int64)


@functools.lru_cache(maxsize=64)
def _closures(cal: TradingCalendar, first: int, last: int,
              yearly_only: bool = False) -> tuple[Int64Array, Int64Array]:
    pairs = [p for y in range(first, last + 1) for p in _year_closures(cal, y, yearly_only)]
    starts, ends = _merge(pairs)
    starts.flags.writeable = False
    ends.flags.writeable = False
    return starts, ends


@functools.lru_cache(maxsize=64)
def _bars_per_year(cal: TradingCalendar, iv: int) -> float:
    t0 = int(np.datetime64(f"{CYCLE[0]}-01-01", "ms").astype(np.int64))
    t1 = int(np.datetime64(f"{CYCLE[1]}-01-01", "ms").astype(np.int64))
    starts, ends = _closures(cal, CYCLE[0] - 1, CYCLE[1], yearly_only=True)
    grid0 = -(-t0 // iv) * iv                      # first grid open at or after t0
    total = (t1 - grid0 + iv - 1) // iv             # grid opens in [t0, t1)
    half = iv // 2
    # grid bars whose middle grid0 + k * iv + half lies in a closure [s, e), k in [0, total)
    k_lo = np.maximum(0, -((grid0 + half - starts) // iv))
    k_hi = np.minimum(total - 1, -((grid0 + half - ends) // iv) - 1)
    closed = int(np.maximum(k_hi - k_lo + 1, 0).sum())
    days = (t1 - t0) / MS_PER_DAY
    return (total - closed) / days * YEAR_DAYS
