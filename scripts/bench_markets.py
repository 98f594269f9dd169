"""Real bars for many symbols, for the live-side benchmarks (``bench_paper.py``,
``bench_live.py``): the bundled markets, then copies of them under new names."""

from __future__ import annotations

import dataclasses

from raytrade.envs.bars import BarTable
from raytrade.envs.io import load_bars
from raytrade.envs.resample import align
from raytrade.envs.sample import sample_path


def markets(n_symbols: int, n_bars: int) -> tuple[list[BarTable], BarTable]:
    """``n_symbols`` traded tables (real bars; copies renamed past the bundled ones) and
    the BTCUSDT reference, aligned and cut to ``n_bars``."""
    paths = [str(sample_path(s)) for s in ("ETHUSDT", "BTCUSDT", "BNBUSDT", "SOLUSDT",
                                            "XRPUSDT")]
    tables = align([load_bars(p) for p in paths])
    btc = next(t for t in tables if t.symbol == "BTCUSDT")
    real = [t for t in tables if t.symbol != "BTCUSDT"] or [btc]
    out = []
    for k in range(n_symbols):
        base = real[k % len(real)]
        name = base.symbol if k < len(real) else f"{base.symbol[:3]}{k:02d}USDT"
        out.append(dataclasses.replace(base, symbol=name).slice(0, n_bars))
    return out, btc.slice(0, n_bars)
