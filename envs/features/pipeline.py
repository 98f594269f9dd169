"""Bars to a float32 feature matrix, in batch or one bar at a time, with one code path.

``FeaturePipeline.compute`` (training, backtests) and ``StreamingFeatures.update`` (live
actors) both advance the same :class:`StreamingFeatures` state through the same numba
kernels; the batch call simply passes every bar at once. Features at bar ``t`` therefore
depend only on bars ``<= t`` and are bit-identical whichever way they were computed.

Bars are checked before any state changes (the rules of ``validation.py``, plus
continuity with the previous call): a rejected bar leaves the state as it was.

Closures of the trading calendar (``envs/calendar.py``) are skipped, never filled: the
next bar after a forex weekend simply follows the Friday bar. Every feature counts bars,
not hours (returns over ``h`` bars, rolling windows, swings), so a series with a weekend
gives the same features as the same bars with no weekend between them; the one place
wall-clock time enters is the higher timeframes, whose buckets are clock-aligned
(``resample.py``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
from raytrade.envs.bars import Bar, BarTable, FloatArray, IntArray
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.errors import FeatureError
from raytrade.envs.features.kernel import BoolArray, KernelLayout, features_kernel
from raytrade.envs.features.kernel import F32Array as F32Array  # re-exported
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.resample import bucket_inputs
from raytrade.envs.validation import first_broken_rule

SPAN_BARS = 4096
"""Base bars (rounded up to whole days) whose calendar bucket inputs one table holds."""
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class FeatureMatrix:
    """Features of a bar table: ``values[t]`` is known at the close of bar ``ts[t]``.

    Attributes:
        values: float32 ``[T, F]``, read-only; NaN during warm-up.
        ts: bar open times (ms UTC).
        names: column names, in the spec's order.
        spec_hash: the hash of the FeatureSpec that produced them.
    """

    values: F32Array
    ts: IntArray
    names: tuple[str, ...]
    spec_hash: str

    @property
    def first_valid(self) -> int:
        """Index of the first row where every feature is finite (``len`` if none is)."""
        ok = np.isfinite(self.values).all(axis=1)
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            return len(self.values)
        return int(idx[0])

    def column(self, name: str) -> F32Array:
        """One feature column by name."""
        return self.values[:, self.names.index(name)]


class StreamingFeatures:
    """Feature state that advances one closed bar (or a chunk of bars) at a time.

    The whole state is one float64 array advanced by one compiled call
    (``kernel.features_kernel``), whether the call carries one bar or a million.
    ``update`` is the live path: it checks the common case (the next bar, valid prices)
    with scalar comparisons and writes the bar into preallocated buffers; anything else
    goes through ``update_many``'s full checks, which name the broken rule.
    """

    def __init__(self, spec: FeatureSpec, calendar: TradingCalendar = ALWAYS) -> None:
        self.spec = spec
        self.calendar = calendar
        self._base_ms = spec.interval_ms
        layout = KernelLayout.of(spec)
        self._ints = layout.ints.copy()  # writable like every copy(): one compiled signature
        self._floats = layout.floats.copy()
        self._state = layout.state.copy()
        self._htf_ms = layout.htf_ms
        n_htf = len(self._htf_ms)
        # one-bar buffers of ``update``; around the clock a bucket needs htf / base bars
        self._ts1 = np.zeros(1, dtype=np.int64)
        self._x1 = np.zeros((1, 5), dtype=np.float64)
        self._ref1 = np.zeros(1 if spec.reference_symbol else 0, dtype=np.float64)
        self._use1 = np.ones((n_htf, 1), dtype=bool)
        self._need1 = np.array([ms // self._base_ms for ms in self._htf_ms],
                               dtype=np.int64).reshape(n_htf, 1)
        self._last1 = np.zeros((n_htf, 1), dtype=bool)
        # a closing calendar's bucket inputs for a span of whole days, computed once per span
        self._span = (0, 0)
        self._span_inputs = (self._use1, self._need1, self._last1)
        self.last_ts: int | None = None

    def copy(self) -> StreamingFeatures:
        """An independent copy of the whole state (for what-if runs and checkpoints)."""
        return copy.deepcopy(self)

    def update(self, bar: Bar, reference: Bar | None = None) -> F32Array:
        """Features of one closed bar, as a float32 row of ``spec.n_features``.

        Raises:
            FeatureError: the bar is not the next one (gap, duplicate, out of order), breaks
                an OHLCV rule, or the reference bar is missing or for another time.
        """
        ts = bar.ts
        o, h, lo, c, v = bar.open, bar.high, bar.low, bar.close, bar.volume
        last = self.last_ts
        ref_close = math.nan if reference is None else reference.close
        # The common case, in scalars: the next bar in time (or the next after closures of
        # the calendar), every OHLCV rule of ``validation.py`` holding, and the reference
        # (when the spec has one) for the same time, finite and positive. NaN fails every
        # comparison, so it takes the slow path, whose checks name the broken rule.
        follows = ts == last + self._base_ms if last is not None else ts % self._base_ms == 0
        if ((follows or self._steps_over_closure(last, ts))
                and math.isfinite(o + h + lo + c + v) and v >= 0.0
                and lo > 0.0 and h >= o and h >= c and lo <= o and lo <= c
                and (reference is None or reference.ts == ts)
                and (not self.spec.reference_symbol
                     or (math.isfinite(ref_close) and ref_close > 0.0))):
            self._ts1[0] = ts
            x = self._x1
            x[0, 0], x[0, 1], x[0, 2], x[0, 3], x[0, 4] = o, h, lo, c, v
            if self.spec.reference_symbol:
                self._ref1[0] = ref_close
            if self.calendar.always:
                for i, htf_ms in enumerate(self._htf_ms):
                    self._last1[i, 0] = (ts + self._base_ms) % htf_ms == 0
                use, need, closes = self._use1, self._need1, self._last1
            else:
                use, need, closes = self._calendar_inputs(ts)
            out = np.empty((1, self.spec.n_features), dtype=np.float32)  # the caller keeps it
            features_kernel(self._ts1, x, self._ref1, use, need, closes, self._state,
                            self._ints, self._floats, out)
            self.last_ts = int(ts)
            row: F32Array = out[0]
            return row
        if reference is not None and reference.ts != ts:
            raise FeatureError(f"reference bar open time {reference.ts} differs from "
                               f"the bar's {ts}")
        ref = None if reference is None else np.array([ref_close], dtype=np.float64)
        row = self.update_many(np.array([ts], dtype=np.int64),
                               np.array([[o, h, lo, c, v]], dtype=np.float64), ref)[0]
        return row

    def update_many(self, ts: IntArray, ohlcv: FloatArray,
                    ref_close: FloatArray | None = None) -> F32Array:
        """Features of consecutive closed bars: ``ts[T]``, ``ohlcv[T, 5]`` -> ``[T, F]``."""
        # Writable inputs (a BarTable's arrays are read-only, so those are copied): numba
        # compiles one specialization per read-only combination, and a copy (cheap next to
        # the features) keeps batch and streaming on one compiled kernel.
        ts = np.require(ts, np.int64, ["C", "W"])
        x = np.require(ohlcv, np.float64, ["C", "W"])
        self._check(ts, x, ref_close)
        ref = (np.require(ref_close, np.float64, ["C", "W"])
               if self.spec.reference_symbol and ref_close is not None
               else np.zeros(0, dtype=np.float64))
        use, need, closes = self._bucket_inputs(ts)
        out = np.empty((len(ts), self.spec.n_features), dtype=np.float32)
        features_kernel(ts, x, ref, use, need, closes, self._state, self._ints, self._floats,
                        out)
        if len(ts):
            self.last_ts = int(ts[-1])
        return out

    def _steps_over_closure(self, last: int | None, ts: int) -> bool:
        """True when ``ts`` follows ``last`` across closures only (``_check``'s rule)."""
        return (last is not None and not self.calendar.always and ts > last
                and ts % self._base_ms == 0
                and self.calendar.expected_between(last, ts, self._base_ms) == 0)

    def _calendar_inputs(self, ts: int) -> tuple[BoolArray, IntArray, BoolArray]:
        """``_bucket_inputs`` of one bar under a closing calendar, from a table of whole
        days (about ``SPAN_BARS`` bars) computed once per span: per bar it would cost more
        than the features. Every bucket is whole inside the span (higher timeframes divide
        a day), and ``bucket_inputs`` treats each bar on its own, so the table's entry for
        a bar equals ``bucket_inputs`` of that bar alone."""
        if not self._htf_ms or _DAY_MS % self._base_ms:
            return self._bucket_inputs(self._ts1)
        start, stop = self._span
        if not start <= ts < stop:
            days = max(1, -(-SPAN_BARS * self._base_ms // _DAY_MS))
            start = ts // _DAY_MS * _DAY_MS
            stop = start + days * _DAY_MS
            grid = np.arange(start, stop, self._base_ms, dtype=np.int64)
            self._span, self._span_inputs = (start, stop), self._bucket_inputs(grid)
        k = (ts - start) // self._base_ms
        use, need, closes = self._span_inputs
        self._use1[:, 0] = use[:, k]
        self._need1[:, 0] = need[:, k]
        self._last1[:, 0] = closes[:, k]
        return self._use1, self._need1, self._last1

    def _bucket_inputs(self, ts: IntArray) -> tuple[BoolArray, IntArray, BoolArray]:
        """``resample.bucket_inputs`` of every higher timeframe, stacked ``[n_htf, T]``."""
        n_htf = len(self._htf_ms)
        use = np.empty((n_htf, len(ts)), dtype=bool)
        need = np.empty((n_htf, len(ts)), dtype=np.int64)
        closes = np.empty((n_htf, len(ts)), dtype=bool)
        for i, htf_ms in enumerate(self._htf_ms):
            use[i], need[i], closes[i] = bucket_inputs(ts, self._base_ms, htf_ms, self.calendar)
        return use, need, closes

    def _check(self, ts: IntArray, x: FloatArray, ref_close: FloatArray | None) -> None:
        if x.ndim != 2 or x.shape[1] != 5 or len(x) != len(ts):
            raise FeatureError(f"expected ohlcv of shape [{len(ts)}, 5], got {x.shape}")
        if len(ts) == 0:
            return
        if self.last_ts is not None and ts[0] != self.last_ts + self._base_ms and not (
                ts[0] > self.last_ts and self.calendar.expected_between(
                    self.last_ts, int(ts[0]), self._base_ms) == 0):
            raise FeatureError(
                f"bar at {int(ts[0])} does not follow the last bar at {self.last_ts} "
                f"(expected {self.last_ts + self._base_ms}): backfill the gap first")
        if ts[0] % self._base_ms:
            raise FeatureError(f"bar open time {int(ts[0])} is not aligned to the "
                               f"{self.spec.base_interval} interval")
        broken = first_broken_rule(ts, x, self._base_ms, self.calendar)
        if broken is not None:
            rule, rows, detail = broken
            raise FeatureError(f"bar {int(rows[0])} of this update (open time "
                               f"{int(ts[rows[0]])}) breaks rule '{rule}': {detail}")
        if self.spec.reference_symbol:
            if ref_close is None or len(ref_close) != len(ts):
                raise FeatureError(f"spec needs the reference close "
                                   f"({self.spec.reference_symbol}) for every bar")
            with np.errstate(invalid="ignore"):
                bad = np.flatnonzero(~(np.isfinite(ref_close) & (ref_close > 0)))
            if len(bad):
                raise FeatureError(f"reference close at open time {int(ts[bad[0]])} is "
                                   f"{ref_close[bad[0]]!r}: must be finite and positive")


class FeaturePipeline:
    """Batch face of the feature pipeline; ``stream()`` gives the live face."""

    def __init__(self, spec: FeatureSpec | None = None) -> None:
        self.spec = spec or FeatureSpec()

    def stream(self, calendar: TradingCalendar = ALWAYS) -> StreamingFeatures:
        """A fresh streaming state for this spec, skipping ``calendar``'s closures."""
        return StreamingFeatures(self.spec, calendar)

    def compute(self, bars: BarTable, reference: BarTable | None = None) -> FeatureMatrix:
        """Features of every bar of a validated table (and its aligned reference), its
        calendar's closures skipped.

        Raises:
            FeatureError: interval mismatch with the spec, or a reference that is missing
                or not aligned bar for bar (use ``resample.align`` first).
        """
        if bars.interval_ms != self.spec.interval_ms:
            raise FeatureError(f"{bars.source or bars.symbol}: bars are {bars.interval}, "
                               f"the FeatureSpec expects {self.spec.base_interval}")
        ref_close = None
        if self.spec.reference_symbol:
            if reference is None:
                raise FeatureError(f"the FeatureSpec needs reference bars "
                                   f"({self.spec.reference_symbol})")
            if len(reference) != len(bars) or not np.array_equal(reference.ts, bars.ts):
                raise FeatureError(f"reference {reference.symbol or reference.source} is not "
                                   f"aligned with {bars.symbol or bars.source}: align them first")
            ref_close = reference.close
        values = self.stream(bars.calendar).update_many(bars.ts, bars.ohlcv(), ref_close)
        values.setflags(write=False)
        return FeatureMatrix(values=values, ts=bars.ts, names=self.spec.names,
                             spec_hash=self.spec.hash)
