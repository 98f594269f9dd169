"""Causal resampling against pandas, visibility of higher-timeframe bars, alignment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from raytrade.envs.bars import BarTable
from raytrade.envs.errors import ConfigError, DataError
from raytrade.envs.io import load_bars
from raytrade.envs.resample import align, resample, visible_higher
from raytrade.envs.sample import sample_path
from raytrade.scripts.cli import main


@pytest.mark.parametrize("to", ["15m", "1h", "4h", "1d"])
def test_resample_real_data_matches_pandas_complete_buckets(btc: BarTable, to: str) -> None:
    out = resample(btc, to)
    frame = btc.to_frame().set_index("timestamp")
    rule = {"15m": "15min", "1h": "1h", "4h": "4h", "1d": "1D"}[to]
    agg = frame.resample(rule).agg({"open": "first", "high": "max", "low": "min",
                                    "close": "last", "volume": "sum"})
    counts = frame["close"].resample(rule).count()
    need = out.interval_ms // btc.interval_ms
    expected = agg[counts == need]
    np.testing.assert_array_equal(out.ts, expected.index.as_unit("ms").asi8)
    np.testing.assert_allclose(out.ohlcv(), expected.to_numpy(), rtol=1e-12)
    assert out.ts[0] > btc.ts[0]  # the partial first bucket (from 17:05) is dropped


def test_resample_of_prefix_is_prefix_of_resample(btc: BarTable) -> None:
    full = resample(btc, "1h")
    rng = np.random.default_rng(1)
    for t in rng.integers(100, len(btc), size=20):
        part = resample(btc.slice(0, int(t)), "1h")
        np.testing.assert_array_equal(part.ts, full.ts[:len(part)])
        np.testing.assert_array_equal(part.ohlcv(), full.ohlcv()[:len(part)])


def test_visible_higher_bar_has_closed_by_base_close(btc: BarTable) -> None:
    htf, index = visible_higher(btc, "4h")
    base_close = btc.ts + btc.interval_ms
    seen = index >= 0
    assert np.all(htf.ts[index[seen]] + htf.interval_ms <= base_close[seen])
    nxt = index + 1
    has_next = nxt < len(htf)
    assert np.all(htf.ts[nxt[has_next]] + htf.interval_ms > base_close[has_next])


def test_resample_rejects_non_multiple_target(btc: BarTable) -> None:
    with pytest.raises(ConfigError):
        resample(btc, "7m")
    with pytest.raises(ConfigError):
        resample(btc, "5m")


def test_align_puts_symbols_on_one_clock() -> None:
    xrp = load_bars(sample_path("XRPUSDT"))
    btc = load_bars(sample_path("BTCUSDT"))
    a, b = align([xrp, btc])
    np.testing.assert_array_equal(a.ts, b.ts)
    assert len(a) == 25_919 and a.ts[0] == xrp.ts[0]


def test_align_rejects_mixed_intervals(btc: BarTable) -> None:
    with pytest.raises(DataError, match="different intervals"):
        align([btc, resample(btc, "1h")])


def test_cli_resample_writes_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from raytrade.envs.sample import sample_path
    out = tmp_path / "btc_1h.parquet"
    assert main(["data", "resample", str(sample_path("BTCUSDT")), "--to", "1h",
                 "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    table = load_bars(out)
    assert summary["bars"] == len(table) == 2159 and table.interval == "1h"
    assert pd.Timestamp(summary["first"]) == pd.Timestamp("2025-04-03 18:00", tz="UTC")
