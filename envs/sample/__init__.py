"""Bundled real market data: 5-minute bars of five Binance spot markets, 2025-04-03 to
2025-07-02 UTC, as exported from the exchange's public kline API (gzip CSV, columns
``timestamp,open,high,low,close,volume``; ``timestamp`` is the bar's open time in ISO 8601
with a UTC offset). Every file passes validation without repair.

| symbol | bars |
|---|---|
| BTCUSDT | 25,920 |
| ETHUSDT | 25,920 |
| SOLUSDT | 25,920 |
| BNBUSDT | 25,920 |
| XRPUSDT | 25,920 (starts and ends 5 minutes after BTC: 25,919 bars aligned with it) |

Sources name them ``sample:SYMBOL`` (``envs/market.py``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from raytrade.envs.errors import DataFormatError

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
"""The bundled symbols (BTCUSDT is the default reference asset of the FeatureSpec)."""


def sample_path(symbol: str = "BTCUSDT") -> Path:
    """Path of the bundled gzip CSV of ``symbol`` (one of :data:`SYMBOLS`, any case)."""
    symbol = symbol.upper()
    if symbol not in SYMBOLS:
        raise DataFormatError(symbol, f"no bundled sample; available: {', '.join(SYMBOLS)}")
    name = f"{symbol}_5m_2025-04-03_2025-07-02.csv.gz"
    return Path(str(resources.files("raytrade.envs.sample").joinpath(name)))
