"""Bars built from trades live equal the offline resampler's bars from the same trades."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from raytrade.envs.errors import DataError
from raytrade.envs.trade_bars import TradeBarBuilder, trades_to_bars

MS = 60_000


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40 * MS), st.floats(1.0, 1e5),
                          st.floats(0.0, 10.0)), min_size=1, max_size=200))
def test_streaming_trade_bars_equal_offline_resampler(trades: list[tuple[int, float, float]]
                                                      ) -> None:
    trades.sort(key=lambda t: t[0])
    ts = np.array([t[0] for t in trades])
    price = np.array([t[1] for t in trades])
    qty = np.array([t[2] for t in trades])
    end = int(ts[-1]) + 2 * MS
    offline = trades_to_bars(ts, price, qty, interval_ms=MS, end_ms=end)
    builder = TradeBarBuilder(MS)
    live = []
    for t, p, q in trades:
        live.extend(builder.add(t, p, q))
    live.extend(builder.flush(end))
    assert [b[0] for b in live] == offline.ts.tolist()
    assert np.array_equal(np.array([b[1:] for b in live]).reshape(-1, 5), offline.ohlcv())
    assert offline.volume.sum() == pytest.approx(qty.sum())


def test_trade_bars_empty_bucket_is_flat_at_previous_close() -> None:
    bars = trades_to_bars([0, 10, 3 * MS + 5], [10.0, 12.0, 11.0], [1.0, 2.0, 1.0],
                          interval_ms=MS, end_ms=4 * MS)
    assert bars.ts.tolist() == [0, MS, 2 * MS, 3 * MS]
    assert bars.ohlcv()[1].tolist() == [12.0, 12.0, 12.0, 12.0, 0.0]
    assert bars.ohlcv()[3].tolist() == [11.0, 11.0, 11.0, 11.0, 1.0]


def test_trade_bars_refuse_bad_and_out_of_order_trades() -> None:
    with pytest.raises(DataError, match="trade 1"):
        trades_to_bars([5, 1], [1.0, 1.0], [1.0, 1.0], interval_ms=MS)
    with pytest.raises(DataError, match="price"):
        trades_to_bars([1], [float("nan")], [1.0], interval_ms=MS)
    builder = TradeBarBuilder(MS, "X")
    builder.add(100, 1.0, 1.0)
    with pytest.raises(DataError, match="older"):
        builder.add(50, 1.0, 1.0)
