"""Causal resampling to higher timeframes and aligning several symbols on one clock.

A higher-timeframe (HTF) bar covers the base bars whose open time falls in
``[k * htf_ms, (k + 1) * htf_ms)`` (buckets aligned to the Unix epoch, so ``1d`` bars open
at 00:00 UTC and ``4h`` bars at 00:00, 04:00, ... UTC). It becomes visible only when its
last base bar has closed, never earlier; buckets missing any base bar (the partial first
bucket of a file, or a gap) are dropped, never emitted half-built.

With a trading calendar that closes (``envs/calendar.py``) a bucket needs only the base
bars the calendar expects in it, and completes at the close of the last of them: the 4h
bucket 20:00-24:00 UTC of a summer Friday holds the one forex bar before the 21:00 close
and is emitted at its close, not left open over the weekend; a 1d bucket on Sunday holds
the first session hours. This is where wall-clock time matters to the features: buckets are
clock-aligned, so a higher-timeframe bar next to a closure covers fewer base bars. Base
bars lying wholly inside a closure (a broker's late quote) are left out of every bucket.

The aggregation is one numba kernel with explicit state, so the batch resampler here and
the streaming feature pipeline (``features/pipeline.py``) run exactly the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import numpy.typing as npt
from raytrade.envs.bars import BarTable, FloatArray, IntArray
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.errors import ConfigError, DataError
from raytrade.envs.intervals import interval_to_ms, ms_to_interval

AGG_STATE_SIZE = 8  # bucket start, open, high, low, close, volume, bar count, has bucket


def new_aggregator_state() -> FloatArray:
    """Fresh state for :func:`aggregate_kernel`."""
    return np.zeros(AGG_STATE_SIZE, dtype=np.float64)


@numba.njit(cache=True)
def aggregate_kernel(state: FloatArray, ts: IntArray, ohlcv: FloatArray, htf_ms: int,
                     use: npt.NDArray[np.bool_], need: IntArray, last: npt.NDArray[np.bool_],
                     out_ts: IntArray, out_ohlcv: FloatArray,
                     out_at: IntArray) -> int:  # pragma: no cover - compiled
    """Feed base bars into the bucket state; write each completed HTF bar to the outputs.

    Per base bar ``t``: ``use[t]`` False leaves it out (inside a closure), ``need[t]`` is
    the base bars its bucket must hold, ``last[t]`` True when its close ends the bucket
    (``bucket_inputs``). Returns the number K of HTF bars written: ``out_ts[:K]`` their
    open times, ``out_ohlcv[:K]`` their OHLCV and ``out_at[:K]`` the index (into ``ts``) of
    the base bar whose close completed each one. Output arrays must hold at least
    ``len(ts)`` rows.
    """
    k = 0
    for t in range(ts.shape[0]):
        if not use[t]:
            continue
        bucket = (ts[t] // htf_ms) * htf_ms
        if state[7] != 0.0 and state[0] != bucket:
            state[7] = 0.0  # the open bucket lost its last bar (gap): drop it
        if state[7] == 0.0:
            state[0] = bucket
            state[1] = ohlcv[t, 0]
            state[2] = ohlcv[t, 1]
            state[3] = ohlcv[t, 2]
            state[4] = ohlcv[t, 3]
            state[5] = ohlcv[t, 4]
            state[6] = 1.0
            state[7] = 1.0
        else:
            if ohlcv[t, 1] > state[2]:
                state[2] = ohlcv[t, 1]
            if ohlcv[t, 2] < state[3]:
                state[3] = ohlcv[t, 2]
            state[4] = ohlcv[t, 3]
            state[5] += ohlcv[t, 4]
            state[6] += 1.0
        if last[t]:
            if state[6] == need[t]:
                out_ts[k] = bucket
                for j in range(5):
                    out_ohlcv[k, j] = state[1 + j]
                out_at[k] = t
                k += 1
            state[7] = 0.0
    return k


def check_higher(base_ms: int, htf_ms: int) -> None:
    """Raise unless ``htf_ms`` is a whole multiple of ``base_ms`` that divides one day."""
    if htf_ms <= base_ms or htf_ms % base_ms != 0:
        raise ConfigError(f"cannot resample {ms_to_interval(base_ms)} bars to "
                          f"{ms_to_interval(htf_ms)}: the target must be a larger whole multiple")
    if 86_400_000 % htf_ms != 0:
        raise ConfigError(f"resampling to {ms_to_interval(htf_ms)} is not supported: the target "
                          "must divide one day (epoch-aligned buckets)")


def bucket_inputs(ts: IntArray, base_ms: int, htf_ms: int, calendar: TradingCalendar
                  ) -> tuple[npt.NDArray[np.bool_], IntArray, npt.NDArray[np.bool_]]:
    """Per base bar: whether it counts (not inside a closure), how many base bars its
    bucket needs (the ones the calendar expects there; ``htf / base`` around the clock) and
    whether its close completes the bucket (the last expected base bar in it)."""
    per = htf_ms // base_ms
    if calendar.always:
        return (np.ones(len(ts), dtype=bool), np.full(len(ts), per, dtype=np.int64),
                (ts + base_ms) % htf_ms == 0)
    use = calendar.expected_mask(ts, base_ms)
    buckets, inverse = np.unique((ts // htf_ms) * htf_ms, return_inverse=True)
    grid = (buckets[:, None] + base_ms * np.arange(per, dtype=np.int64)[None, :])
    expected = calendar.expected_mask(grid.ravel(), base_ms).reshape(grid.shape)
    need = expected.sum(axis=1).astype(np.int64)
    last_slot = per - 1 - np.argmax(expected[:, ::-1], axis=1)
    last_open = buckets + base_ms * last_slot
    return use, need[inverse], use & (ts == last_open[inverse])


def aggregate(state: FloatArray, ts: IntArray, ohlcv: FloatArray, base_ms: int,
              htf_ms: int, calendar: TradingCalendar = ALWAYS
              ) -> tuple[IntArray, FloatArray, IntArray]:
    """Python face of :func:`aggregate_kernel`: completed HTF bars and where they closed."""
    n = len(ts)
    out_ts = np.empty(n, dtype=np.int64)
    out_x = np.empty((n, 5), dtype=np.float64)
    out_at = np.empty(n, dtype=np.int64)
    use, need, last = bucket_inputs(ts, base_ms, htf_ms, calendar)
    k = aggregate_kernel(state, ts, ohlcv, htf_ms, use, need, last, out_ts, out_x, out_at)
    return out_ts[:k], out_x[:k], out_at[:k]


def resample(table: BarTable, to: str) -> BarTable:
    """The completed higher-timeframe bars of ``table`` (partial buckets dropped)."""
    htf_ms = interval_to_ms(to)
    check_higher(table.interval_ms, htf_ms)
    ts, x, _ = aggregate(new_aggregator_state(), table.ts, np.ascontiguousarray(table.ohlcv()),
                         table.interval_ms, htf_ms, table.calendar)
    if len(ts) == 0:
        raise DataError(f"{table.source or table.symbol}: no complete {to} bar in "
                        f"{len(table)} {table.interval} bars")
    return BarTable.from_arrays(ts, x, interval_ms=htf_ms, symbol=table.symbol,
                                source=f"{table.source}@{to}", calendar=table.calendar)


def to_interval(table: BarTable, interval: str) -> BarTable:
    """``table`` at ``interval``: as it is, or resampled (``resample``) from a finer interval
    that divides it. Models trained on, and feeds serving, a coarser interval than the
    files hold (1h from 5m) build their bars here.

    Raises:
        DataError: the table is coarser than ``interval``, its interval does not divide
            ``interval``, ``interval`` does not divide one day, or no complete bar of
            ``interval`` is in the table; names the file and both intervals.
    """
    target = interval_to_ms(interval)
    if table.interval_ms == target:
        return table
    name = table.source or table.symbol or "bars"
    if table.interval_ms > target or target % table.interval_ms:
        raise DataError(f"{name}: its {table.interval} bars cannot make {interval} bars: "
                        f"the target must be the file's interval or a whole multiple of it")
    try:
        return resample(table, interval)
    except ConfigError as exc:
        raise DataError(f"{name}: its {table.interval} bars cannot make {interval} bars: "
                        f"{exc}") from exc


def visible_higher(table: BarTable, to: str) -> tuple[BarTable, IntArray]:
    """Higher-timeframe bars and, per base bar, the index of the last one visible.

    ``index[t]`` is the newest HTF bar that had closed when base bar ``t`` closed, or -1
    when none had: a model deciding at the close of bar ``t`` may use exactly those.
    """
    htf_ms = interval_to_ms(to)
    check_higher(table.interval_ms, htf_ms)
    ts, x, at = aggregate(new_aggregator_state(), table.ts, np.ascontiguousarray(table.ohlcv()),
                          table.interval_ms, htf_ms, table.calendar)
    marks = np.full(len(table), -1, dtype=np.int64)
    marks[at] = np.arange(len(at))
    index = np.maximum.accumulate(marks) if len(marks) else marks
    htf = BarTable.from_arrays(ts, x, interval_ms=htf_ms, symbol=table.symbol,
                               source=f"{table.source}@{to}", calendar=table.calendar)
    return htf, index


def align(tables: Sequence[BarTable]) -> list[BarTable]:
    """Restrict several same-interval tables to the open times they all share.

    Used to put an asset and its reference asset (BTC for ETH) on one clock. Raises when
    intervals differ or no time is shared, or when the shared times leave a gap that the
    first table's calendar does not explain as a closure.
    """
    if not tables:
        return []
    intervals = {t.interval_ms for t in tables}
    if len(intervals) != 1:
        raise DataError("cannot align tables of different intervals: "
                        + ", ".join(f"{t.symbol or t.source}={t.interval}" for t in tables))
    common: npt.NDArray[np.int64] = tables[0].ts
    for t in tables[1:]:
        common = np.intersect1d(common, t.ts, assume_unique=True)
    if len(common) == 0:
        raise DataError("tables share no open time: "
                        + ", ".join(f"{t.symbol or t.source}" for t in tables))
    out = []
    for t in tables:
        keep = np.isin(t.ts, common, assume_unique=True)
        idx = np.flatnonzero(keep)
        # Shared times inside a regular series are contiguous only if nothing is missing;
        # validate that the result is still regular so features never see a hidden gap.
        steps = np.diff(t.ts[idx])
        irregular = steps != t.interval_ms
        if irregular.any() and not tables[0].calendar.always:
            irregular &= ~tables[0].calendar.closure_steps(t.ts[idx], t.interval_ms)
        if len(idx) > 1 and np.any(irregular):
            raise DataError(f"{t.symbol or t.source}: aligning leaves a gap; "
                            "repair the inputs first")
        out.append(t.slice(int(idx[0]), int(idx[-1]) + 1))
    return out
