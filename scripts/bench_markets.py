"""Real bars for many symbols, for the live-side benchmarks (``bench_paper.py``,
``bench_paper_actors.py``, ``bench_live.py``): the bundled markets, then copies of them
under new names; and the paper benchmarks' experiment."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
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


def write_csvs(tables: list[BarTable], folder: Path) -> list[str]:
    """Each table as ``<folder>/<SYMBOL>_5m.csv`` (the replay server's input); the paths."""
    files = []
    for t in tables:
        path = folder / f"{t.symbol}_5m.csv"
        t.to_frame().to_csv(path, index=False)
        files.append(str(path))
    return files


def experiment(spec: str) -> ExperimentConfig:
    """The bundled ETH/BTC experiment; ``light``: no higher timeframes and two pivot levels
    (a warm-up of about 140 bars instead of about 9,400)."""
    exp = ExperimentConfig.load(experiment_path("eth_btc_5m"))
    if spec == "full":
        return exp
    features = dataclasses.replace(exp.features, higher_timeframes=(), pivot_levels=2,
                                   smc_level=1, regime_vol_long=96)
    return dataclasses.replace(exp, features=features)
