"""Bars from trades: one numba kernel for the offline resampler and the live bar builder.

A bar covers the trades with ``k * interval <= ts < (k + 1) * interval`` (buckets aligned to
the Unix epoch, as exchanges align klines): open is the first trade's price, close the
last, high and low the extremes, volume the summed size (base units). A bucket with no
trade is a flat bar at the previous close with volume 0, as exchanges report it. A bucket
is emitted only once it is over: a later trade arrives, or the clock passes its end
(``flush``). Trades must come in time order; an older trade is refused by the caller.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt
from raytrade.envs.bars import BarTable, FloatArray, IntArray
from raytrade.envs.errors import DataError

# kernel state: bucket start, open, high, low, close, volume, phase, last close
# phase: 0 no trade seen yet; 1 bucket has trades; 2 bucket open, no trade in it yet
S_START, S_OPEN, S_HIGH, S_LOW, S_CLOSE, S_VOL, S_HAS, S_PREV = range(8)
STATE_SIZE = 8


def new_trade_bar_state() -> FloatArray:
    """Fresh state: no bucket open, no previous close."""
    return np.zeros(STATE_SIZE, dtype=np.float64)


@numba.njit(cache=True)
def _emit_until(state: FloatArray, end: int, interval: int, out_ts: IntArray,
                out: FloatArray, n: int) -> int:  # pragma: no cover - compiled
    """Emit the open bucket and empty buckets that end at or before ``end``."""
    if state[S_HAS] == 0.0:
        return n
    start = int(state[S_START])
    while start + interval <= end:
        out_ts[n] = start
        out[n, 0] = state[S_OPEN]
        out[n, 1] = state[S_HIGH]
        out[n, 2] = state[S_LOW]
        out[n, 3] = state[S_CLOSE]
        out[n, 4] = state[S_VOL]
        n += 1
        prev = state[S_CLOSE]
        start += interval
        state[S_START] = start
        state[S_OPEN] = prev
        state[S_HIGH] = prev
        state[S_LOW] = prev
        state[S_CLOSE] = prev
        state[S_VOL] = 0.0
        state[S_PREV] = prev
        state[S_HAS] = 2.0
    return n


@numba.njit(cache=True)
def trade_bar_kernel(state: FloatArray, ts: IntArray, price: FloatArray, qty: FloatArray,
                     interval: int, flush_at: int, out_ts: IntArray,
                     out: FloatArray) -> int:  # pragma: no cover - compiled
    """Add trades, then emit every bucket over by ``flush_at`` (-1: only those closed by a
    later trade). Writes bars to ``out_ts``/``out[:, 5]``; returns how many."""
    n = 0
    for i in range(ts.shape[0]):
        t = ts[i]
        bucket = t - t % interval
        if state[S_HAS] != 0.0 and bucket >= state[S_START] + interval:
            n = _emit_until(state, bucket, interval, out_ts, out, n)
        p = price[i]
        if state[S_HAS] != 1.0:
            state[S_START] = bucket
            state[S_OPEN] = p
            state[S_HIGH] = p
            state[S_LOW] = p
            state[S_VOL] = 0.0
            state[S_HAS] = 1.0
        else:
            if p > state[S_HIGH]:
                state[S_HIGH] = p
            if p < state[S_LOW]:
                state[S_LOW] = p
        state[S_CLOSE] = p
        state[S_VOL] += qty[i]
    if flush_at >= 0:
        n = _emit_until(state, flush_at, interval, out_ts, out, n)
    return n


def _capacity(state: FloatArray, ts: IntArray, flush_at: int, interval: int) -> int:
    """Room for every bar this call can emit: from the open bucket (or the first trade)
    to the later of the last trade and ``flush_at``, plus one per trade."""
    first = int(state[S_START]) if state[S_HAS] != 0.0 else (int(ts[0]) if len(ts) else 0)
    last = int(ts[-1]) if len(ts) else first
    end = max(last, flush_at, first)
    return len(ts) + (end - first) // interval + 2


def trades_to_bars(ts: npt.ArrayLike, price: npt.ArrayLike, qty: npt.ArrayLike, *,
                   interval_ms: int, end_ms: int | None = None, symbol: str = "",
                   source: str = "") -> BarTable:
    """The offline resampler: bars of every bucket over by ``end_ms`` (default: the bucket
    of the last trade is still open and left out).

    Raises:
        DataError: trades not in time order, or a price or size that is not a finite
            positive (size: non-negative) number, naming the first bad row.
    """
    t = np.ascontiguousarray(ts, dtype=np.int64)
    p = np.ascontiguousarray(price, dtype=np.float64)
    q = np.ascontiguousarray(qty, dtype=np.float64)
    if not len(t) == len(p) == len(q):
        raise DataError(f"{source or symbol}: ts, price and qty lengths differ")
    check_trades(t, p, q, source or symbol)
    state = new_trade_bar_state()
    flush = -1 if end_ms is None else int(end_ms)
    cap = _capacity(state, t, flush, interval_ms)
    out_ts = np.empty(cap, dtype=np.int64)
    out = np.empty((cap, 5))
    n = trade_bar_kernel(state, t, p, q, interval_ms, flush, out_ts, out)
    return BarTable.from_arrays(out_ts[:n], out[:n], interval_ms=interval_ms, symbol=symbol,
                                source=source or "trades")


def check_trades(ts: IntArray, price: FloatArray, qty: FloatArray, source: str) -> None:
    """DataError naming the first trade out of time order or with a bad price or size."""
    if len(ts) > 1 and (np.diff(ts) < 0).any():
        i = int(np.flatnonzero(np.diff(ts) < 0)[0]) + 1
        raise DataError(f"{source}: trade {i} at {int(ts[i])} is older than the one before")
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(price) & (price > 0) & np.isfinite(qty) & (qty >= 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: trade {i} has price {price[i]!r} and size {qty[i]!r}")


class TradeBarBuilder:
    """The live face: trades in, closed bars out, through ``trade_bar_kernel``."""

    def __init__(self, interval_ms: int, symbol: str = "") -> None:
        self.interval_ms = interval_ms
        self.symbol = symbol
        self._state = new_trade_bar_state()
        self.last_trade_ts = -1

    def add(self, ts: int, price: float, qty: float, flush_at: int = -1
            ) -> list[tuple[int, float, float, float, float, float]]:
        """Add one trade (refused if older than the last); return bars now closed."""
        if ts < self.last_trade_ts:
            raise DataError(f"{self.symbol}: trade at {ts} is older than {self.last_trade_ts}")
        t = np.array([ts], dtype=np.int64)
        p = np.array([price])
        q = np.array([qty])
        check_trades(t, p, q, self.symbol)
        self.last_trade_ts = ts
        return self._run(t, p, q, flush_at)

    def flush(self, now_ms: int) -> list[tuple[int, float, float, float, float, float]]:
        """Bars whose bucket ended by ``now_ms`` (the clock passed the bucket's end)."""
        return self._run(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), now_ms)

    def _run(self, t: IntArray, p: FloatArray, q: FloatArray, flush_at: int
             ) -> list[tuple[int, float, float, float, float, float]]:
        cap = _capacity(self._state, t, flush_at, self.interval_ms)
        out_ts = np.empty(cap, dtype=np.int64)
        out = np.empty((cap, 5))
        n = trade_bar_kernel(self._state, t, p, q, self.interval_ms, flush_at, out_ts, out)
        return [(int(out_ts[i]), *(float(x) for x in out[i])) for i in range(n)]  # type: ignore[misc]
