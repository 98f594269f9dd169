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
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from raytrade.envs.bars import Bar, BarTable, FloatArray, IntArray
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.errors import FeatureError
from raytrade.envs.features.reference import reference_kernel, reference_state
from raytrade.envs.features.regime import N_COLUMNS as N_REGIME
from raytrade.envs.features.regime import regime_kernel, regime_state
from raytrade.envs.features.smc import N_COLUMNS as N_SMC
from raytrade.envs.features.smc import smc_kernel, smc_state
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.features.structure import OUT_PER_LEVEL, structure_kernel, structure_state
from raytrade.envs.features.timeframe import (
    n_columns,
    timeframe_kernel,
    timeframe_params,
    timeframe_state,
)
from raytrade.envs.intervals import interval_to_ms
from raytrade.envs.resample import aggregate, new_aggregator_state
from raytrade.envs.validation import first_broken_rule

F32Array = npt.NDArray[np.float32]


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
    """Feature state that advances one closed bar (or a chunk of bars) at a time."""

    def __init__(self, spec: FeatureSpec, calendar: TradingCalendar = ALWAYS) -> None:
        self.spec = spec
        self.calendar = calendar
        self._base_ms = spec.interval_ms
        self._base_h, self._base_p = timeframe_params(
            spec.return_horizons, spec.vol_window, spec.rsi_period, spec.macd_fast,
            spec.macd_slow, spec.macd_signal, spec.atr_period, spec.bb_window,
            spec.volume_window)
        self._base_state = timeframe_state(self._base_p)
        self._htf_h, self._htf_p = timeframe_params(
            spec.htf_return_horizons, spec.vol_window, spec.rsi_period, spec.macd_fast,
            spec.macd_slow, spec.macd_signal, spec.atr_period, spec.bb_window,
            spec.volume_window)
        self._htf_ms = [interval_to_ms(tf) for tf in spec.higher_timeframes]
        self._htf_agg = [new_aggregator_state() for _ in self._htf_ms]
        self._htf_state = [timeframe_state(self._htf_p) for _ in self._htf_ms]
        self._htf_last = [np.full(n_columns(self._htf_h), np.nan) for _ in self._htf_ms]
        self._structure = structure_state(spec.pivot_levels)
        self._smc = smc_state(spec.ob_lookback)
        self._regime = regime_state(spec.regime_window, spec.regime_vol_long)
        self._ref_h = np.asarray(spec.reference_horizons, dtype=np.int64)
        self._ref = reference_state(self._ref_h, spec.corr_window)
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
        ref_close = None
        if reference is not None:
            if reference.ts != bar.ts:
                raise FeatureError(f"reference bar open time {reference.ts} differs from "
                                   f"the bar's {bar.ts}")
            ref_close = np.array([reference.close], dtype=np.float64)
        x = np.array([[bar.open, bar.high, bar.low, bar.close, bar.volume]], dtype=np.float64)
        row: F32Array = self.update_many(np.array([bar.ts], dtype=np.int64), x, ref_close)[0]
        return row

    def update_many(self, ts: IntArray, ohlcv: FloatArray,
                    ref_close: FloatArray | None = None) -> F32Array:
        """Features of consecutive closed bars: ``ts[T]``, ``ohlcv[T, 5]`` -> ``[T, F]``."""
        ts = np.ascontiguousarray(ts, dtype=np.int64)
        x = np.ascontiguousarray(ohlcv, dtype=np.float64)
        spec = self.spec
        self._check(ts, x, ref_close)
        t_len = len(ts)
        # Every kernel writes straight into its columns of one float32 matrix (numba rounds
        # float64 results to float32 on store, as astype would) to spare copies of T x F.
        out = np.empty((t_len, spec.n_features), dtype=np.float32)
        col = n_columns(self._base_h)
        timeframe_kernel(self._base_state, x, self._base_h, self._base_p, out[:, :col])
        width = n_columns(self._htf_h)
        for i, htf_ms in enumerate(self._htf_ms):
            out[:, col:col + width] = self._higher(i, htf_ms, ts, x)
            col += width
        if spec.reference_symbol:
            assert ref_close is not None
            width = len(self._ref_h) + 2
            reference_kernel(self._ref, x[:, 3], np.ascontiguousarray(ref_close, np.float64),
                             self._ref_h, spec.corr_window, out[:, col:col + width])
            col += width
        if spec.pivot_levels:
            width = spec.pivot_levels * OUT_PER_LEVEL
            raw = np.empty((t_len, width))  # swing prices stay float64: SMC compares closes
            structure_kernel(self._structure, x, spec.pivot_levels, raw)
            self._structure_columns(raw, x[:, 3], out[:, col:col + width])
            col += width
            level = (spec.smc_level - 1) * OUT_PER_LEVEL
            smc_kernel(self._smc, x, np.ascontiguousarray(raw[:, level]),
                       np.ascontiguousarray(raw[:, level + 1]), spec.ob_lookback,
                       out[:, col:col + N_SMC])
            col += N_SMC
        regime_kernel(self._regime, np.ascontiguousarray(x[:, 3]), spec.regime_window,
                      spec.regime_vol_short, spec.regime_vol_long, spec.er_threshold,
                      spec.vol_ratio_threshold, out[:, col:col + N_REGIME])
        col += N_REGIME
        if col != spec.n_features:  # pragma: no cover - guards spec/kernel drift
            raise AssertionError(f"pipeline produced {col} columns, spec names "
                                 f"{spec.n_features}")
        if t_len:
            self.last_ts = int(ts[-1])
        return out

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

    def _higher(self, i: int, htf_ms: int, ts: IntArray, x: FloatArray) -> FloatArray:
        """Higher-timeframe block, forward-filled so row t only sees HTF bars closed by t."""
        _, hx, at = aggregate(self._htf_agg[i], ts, x, self._base_ms, htf_ms, self.calendar)
        rows = np.empty((len(hx), n_columns(self._htf_h)))
        timeframe_kernel(self._htf_state[i], hx, self._htf_h, self._htf_p, rows)
        marks = np.full(len(ts), -1, dtype=np.int64)
        marks[at] = np.arange(len(at))
        idx = np.maximum.accumulate(marks) if len(marks) else marks
        filled = np.where((idx >= 0)[:, None], rows[np.maximum(idx, 0)] if len(rows) else
                          np.nan, self._htf_last[i][None, :])
        if len(rows):
            self._htf_last[i] = rows[-1].copy()
        return filled

    def _structure_columns(self, raw: FloatArray, close: FloatArray, out: F32Array) -> None:
        """Swing prices to log distances of the close; trend and strength pass through."""
        out[:] = raw
        for level in range(self.spec.pivot_levels):
            col = level * OUT_PER_LEVEL
            out[:, col] = np.log(close / raw[:, col])
            out[:, col + 1] = np.log(close / raw[:, col + 1])


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
